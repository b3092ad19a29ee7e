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


def test_compare_in_nmol_is_ng_per_ml_over_mw_and_carries_each_unit():
    res = ks.run_scenarios(
        [ks.Scenario("s", "hasan_2021_s", ks.Dose.bolus("10 mg"), times=T)]
    )
    ng = ks.compare(res).to_dataset()
    nmol = ks.compare(res, unit="nmol/L").to_dataset()
    assert list(ng.metric_unit.values) == ["ng/mL", "h", "ng*h/mL"]
    assert list(nmol.metric_unit.values) == ["nmol/L", "h", "nmol*h/L"]
    # mixed units along metric: no units attr (CF), long_name points to metric_unit
    assert "units" not in nmol.value.attrs
    assert nmol.value.attrs["long_name"] == "metric value (units: see metric_unit)"
    assert nmol.percentile.attrs["units"] == "%"
    mw = 237.73  # S-ketamine free base, g/mol
    # one typical subject: Cmax = 10 mg / V, AUC(0-6 h) = 10 mg / CL (1 - e^-6k)
    cl, v = 1620 * 60 / 1000, 6.6 * 70
    cmax_ng = 10.0 / v * 1000
    auc_ng = 10.0 / cl * (1 - np.exp(-cl / v * 6.0)) * 1000
    np.testing.assert_allclose(
        ng.value.values[0, [0, 2], 1], [cmax_ng, auc_ng], rtol=1e-3
    )
    np.testing.assert_allclose(
        nmol.value.values[0, [0, 2], :], ng.value.values[0, [0, 2], :] / mw * 1000
    )
