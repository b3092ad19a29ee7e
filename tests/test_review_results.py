"""Review checks of saved results and scenarios: a saved result reopens
identical (values, dtypes, units, attributes); misplaced arguments and missing
folders are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import ketasim as ks

T = ks.grid("6 h", "30 min")


def test_run_scenarios_refuses_a_shared_population_by_name():
    sc = ks.Scenario("a", "kamp_2020_meta", ks.Dose.bolus("10 mg"), times=T)
    with pytest.raises(TypeError, match=r"population belong to each Scenario.*'a'"):
        ks.run_scenarios([sc], population=ks.Population(3, seed=1))
    with pytest.raises(TypeError, match=r"times belong to each Scenario.*times="):
        ks.run_scenarios([sc], times=T)


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    ds = ks.simulate("kamp_2020_meta", ks.Dose.bolus("10 mg"), times=T)
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=r"folder .*such' does not exist"):
        ks.save(ds, missing / "x.nc")


def test_saved_scenarios_reopen_identical_with_their_units(tmp_path):
    pop = ks.Population(4, seed=3, iiv=False)
    res = ks.run_scenarios(
        [
            ks.Scenario("rac", "kamp_2020_meta", ks.Dose.bolus("10 mg"), pop, T),
            ks.Scenario("s", "hasan_2021_s", ks.Dose.bolus("10 mg"), pop, T),
        ]
    )
    back = ks.open_results(ks.save(res, tmp_path / "r.nc"))
    assert list(back) == ["rac", "s"]
    for name in res:
        got = back[name].load()
        assert got.identical(res[name])
        assert got.concentration.attrs["units"] == "ng/mL"
    # kamp_2020_meta has no IIV: every patient's bolus Cmax is 10 mg / 252 L
    # (all 70-kg-scaled by their own weight: V = 252 * weight / 70)
    rac = back["rac"]
    c0 = rac.concentration.sel(analyte="ketamine").isel(time=0).values
    np.testing.assert_allclose(c0, 10.0 / (252.0 * rac.weight.values / 70.0) * 1e3)
