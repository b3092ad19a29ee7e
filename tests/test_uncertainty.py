"""Replicate trials drawn from the published precision of typical values
(``[precision]``, ``ks.simulate_trials``, ``ks.trial_ci``).

Oracles: the one-compartment closed form (infusion peak, AUC = dose / CL), the
normal / log-normal quantiles of the drawn typical values (scipy.stats), and the
published confidence intervals they came from."""

from __future__ import annotations

import copy
import tomllib

import numba
import numpy as np
import pytest
from scipy import stats

import ketasim as ks
from ketasim.modelfile import ModelFileError, model_from_dict

Z95 = stats.norm.ppf(0.975)
# Kamp 2020 abstract: CL 79 L/h (95 % CI 69-90), V 252 L (95 % CI 200-304)
SE_CL, SE_V = (90 - 69) / (2 * Z95), (304 - 200) / (2 * Z95)
DOSE_MG, T_INF = 35.0, 40 / 60  # a 35 mg infusion over 40 min


@pytest.fixture(scope="module")
def kamp_dict() -> dict:
    with open(ks.load_model("kamp_2020_meta").path, "rb") as f:
        return tomllib.load(f)


def _with_precision(d: dict, precision: dict) -> ks.Model:
    d = copy.deepcopy(d)
    d["precision"] = precision
    return model_from_dict(d)


def test_kamp_precision_read_from_the_published_intervals():
    m = ks.load_model("kamp_2020_meta")
    got = {p.parameter: (p.se, p.scale, p.grade) for p in m.precision}
    assert got["CL"][0] == pytest.approx(SE_CL, rel=1e-12)
    assert got["V"][0] == pytest.approx(SE_V, rel=1e-12)
    assert {v[1] for v in got.values()} == {"linear"}


def test_drawn_typical_values_follow_the_published_precision():
    typ = ks.draw_typical_values("kamp_2020_meta", 4000, 3)
    cl = typ["CL"]
    # mean within 4 standard errors of the mean, SD within 5 % (4.5 SE of an SD)
    assert abs(cl.mean() - 79) < 4 * SE_CL / np.sqrt(cl.size)
    assert cl.std(ddof=1) == pytest.approx(SE_CL, rel=0.05)
    assert typ["V"].std(ddof=1) == pytest.approx(SE_V, rel=0.05)
    # the 95 % interval of the draws is the published one
    lo, hi = np.quantile(typ["V"], [0.025, 0.975])
    assert lo == pytest.approx(200, rel=0.02) and hi == pytest.approx(304, rel=0.02)
    # independent between parameters
    assert abs(np.corrcoef(cl, typ["V"])[0, 1]) < 4 / np.sqrt(cl.size)


def test_log_scale_draws_are_lognormal(kamp_dict):
    m = _with_precision(
        kamp_dict,
        {
            "CL": {"rse": 0.2, "scale": "log", "source": "test", "grade": "C"},
            "V": {"ci95": [200, 304], "scale": "log", "source": "test", "grade": "C"},
        },
    )
    typ = ks.draw_typical_values(m, 4000, 5)
    assert np.log(typ["CL"]).std(ddof=1) == pytest.approx(0.2, rel=0.05)
    assert np.median(typ["CL"]) == pytest.approx(79, rel=0.02)
    sd_log_v = (np.log(304) - np.log(200)) / (2 * Z95)
    assert np.log(typ["V"]).std(ddof=1) == pytest.approx(sd_log_v, rel=0.05)
    assert typ["V"].min() > 0


def test_trial_peaks_equal_the_one_compartment_closed_form():
    dose = ks.Dose.infusion(f"{DOSE_MG} mg", duration="40 min")
    t = ks.grid("3 h", "10 min")
    ds = ks.simulate_trials(
        "kamp_2020_meta", dose, ks.Population(4, seed=2, iiv=False), 5, times=t
    )
    assert ds.cmax.dims == ("replicate", "subject", "analyte", "dose")
    assert ds.cmax.attrs["units"] == "ng/mL"
    w = ds.weight.values  # (replicate, subject)
    cl = ds.typical_CL.values[:, None] * (w / 70) ** 0.75
    v = ds.typical_V.values[:, None] * (w / 70)
    # peak at the end of the infusion (on the grid): rate / CL (1 - exp(-CL/V T))
    ref = DOSE_MG / T_INF / cl * -np.expm1(-cl / v * T_INF) * 1000
    np.testing.assert_allclose(ds.cmax.values[..., 0, 0], ref, rtol=1e-9)
    # the replicates differ (their typical values were drawn)
    assert np.unique(ds.typical_CL.values).size == 5


def test_ci_of_the_median_auc_is_the_quantile_of_dose_over_cl():
    # identical 70 kg patients: every trial's median AUC is dose / CL_k, and CL_k
    # is normal (79, SE_CL), so the interval's ends are dose / (79 +- z SE_CL)
    dose = ks.Dose.bolus(f"{DOSE_MG} mg")
    pop = ks.Population(3, seed=11, iiv=False, covariates={"weight": [70.0] * 3})
    ds = ks.simulate_trials(
        "kamp_2020_meta", dose, pop, 2000, times=ks.grid("200 h", "1 h")
    )
    ci = ks.trial_ci(ds.auc.isel(analyte=0, dose=0), "median", level=0.9)
    z = stats.norm.ppf(0.95)
    assert ci.upper.item() == pytest.approx(DOSE_MG / (79 - z * SE_CL) * 1e3, rel=0.01)
    assert ci.lower.item() == pytest.approx(DOSE_MG / (79 + z * SE_CL) * 1e3, rel=0.01)
    assert ci.estimate.item() == pytest.approx(DOSE_MG / 79 * 1e3, rel=0.01)
    assert ci.lower.attrs["units"] == "ng*h/mL" == ci.statistic.attrs["units"]
    np.testing.assert_allclose(
        ci.statistic.values, DOSE_MG / ds.typical_CL.values * 1e3, rtol=1e-9
    )


def test_same_numbers_for_any_chunking_thread_count_and_replicate_count():
    reg = ks.six_infusion_course()
    pop = ks.Population(5, seed=4, iiv=False)
    t = ks.grid("17.5 d", "30 min")
    base = ks.simulate_trials("kamp_2020_meta", reg, pop, 4, times=t)
    chunked = ks.simulate_trials(
        "kamp_2020_meta", reg, pop, 4, times=t, output=ks.Metrics(chunk=3)
    )
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ks.simulate_trials("kamp_2020_meta", reg, pop, 4, times=t)
    finally:
        numba.set_num_threads(before)
    fewer = ks.simulate_trials("kamp_2020_meta", reg, pop, 2, times=t)
    for other in (chunked, one):
        np.testing.assert_array_equal(base.cmax.values, other.cmax.values)
        np.testing.assert_array_equal(base.auc.values, other.auc.values)
    # replicate k is the same trial whatever the number of replicates
    np.testing.assert_array_equal(base.cmax.values[:2], fewer.cmax.values)
    np.testing.assert_array_equal(base.weight.values[:2], fewer.weight.values)
    # and trials are new patients
    assert not np.array_equal(base.weight.values[0], base.weight.values[1])


def test_refusals():
    dose = ks.Dose.bolus("35 mg")
    pop = ks.Population(3, seed=1, iiv=False)
    with pytest.raises(
        ValueError,
        match=r"model 'domino' gives no published precision of its typical values "
        r"\(no \[precision\] section in its model file\), so replicate trials cannot "
        r"be drawn\. Choose a model that gives it \(bundled: kamp_2020_meta\)",
    ):
        ks.simulate_trials("domino", dose, ks.Population(3, seed=1), 2)
    with pytest.raises(ValueError, match=r"gives no published precision"):
        ks.draw_typical_values("domino", 2, 1)
    with pytest.raises(ValueError, match=r"replicates must be a whole number from 1"):
        ks.simulate_trials("kamp_2020_meta", dose, pop, 0)
    with pytest.raises(TypeError, match=r"output must be ks.Metrics\(...\)"):
        ks.simulate_trials("kamp_2020_meta", dose, pop, 2, output=ks.Trajectories())
    with pytest.raises(TypeError, match=r"population must be a ketasim.Population"):
        ks.simulate_trials("kamp_2020_meta", dose, 3, 2)
    ds = ks.simulate_trials("kamp_2020_meta", dose, pop, 2, times=[0, 1, 2])
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
        ks.trial_ci(ds.cmax, level=90)
    with pytest.raises(ValueError, match=r"statistic must be 'median', 'mean'"):
        ks.trial_ci(ds.cmax, statistic="max")
    with pytest.raises(ValueError, match=r"'replicate' and 'subject' dimensions"):
        ks.trial_ci(ds.cmax.isel(replicate=0))


def test_a_draw_outside_the_valid_range_is_refused_not_clamped(kamp_dict):
    m = _with_precision(
        kamp_dict, {"V": {"se": 200, "scale": "linear", "source": "t", "grade": "C"}}
    )
    with pytest.raises(ValueError, match=r"replicate \d+ drew V = -[\d.]+ L"):
        ks.draw_typical_values(m, 200, 1)


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"scale": "linear", "source": "s", "grade": "P"}, "needs exactly one of"),
        (
            {"se": 1, "rse": 0.1, "scale": "linear", "source": "s", "grade": "P"},
            "needs exactly one of se, rse, ci95; got se, rse",
        ),
        (
            {"ci95": [80, 90], "scale": "linear", "source": "s", "grade": "P"},
            r"must contain the typical value \(79 L/h\)",
        ),
        ({"rse": 0.1, "scale": "logit", "source": "s", "grade": "P"}, "must be one of"),
        ({"rse": 0.1, "scale": "log", "source": "s", "grade": "U"}, "must be one of"),
        ({"rse": -0.1, "scale": "log", "source": "s", "grade": "P"}, "finite and > 0"),
        ({"rse": 0.1, "scale": "log", "grade": "P"}, "source.*is missing"),
    ],
)
def test_precision_section_is_read_strictly(kamp_dict, entry, match):
    with pytest.raises(ModelFileError, match=match):
        _with_precision(kamp_dict, {"CL": entry})
    with pytest.raises(
        ModelFileError, match=r"precision\.Vx.*is not a defined parameter"
    ):
        _with_precision(kamp_dict, {"Vx": {"rse": 0.1}})


def test_dask_partitions_give_the_same_numbers():
    reg = ks.six_infusion_course()
    pop = ks.Population(4, seed=9, iiv=False)
    t = ks.grid("17.5 d", "1 h")
    eager = ks.simulate_trials("kamp_2020_meta", reg, pop, 5, times=t)
    for chunks in (1, 2, 5):
        lazy = ks.simulate_trials("kamp_2020_meta", reg, pop, 5, times=t, chunks=chunks)
        assert lazy.cmax.chunks is not None
        assert lazy.cmax.attrs["units"] == "ng/mL"
        got = lazy.compute()
        for name in ("cmax", "auc", "tmax", "predose", "weight", "patient"):
            np.testing.assert_array_equal(got[name].values, eager[name].values)
        assert got.attrs["population"] == eager.attrs["population"]
    with pytest.raises(ValueError, match=r"chunks must be a whole number of trials"):
        ks.simulate_trials("kamp_2020_meta", reg, pop, 5, times=t, chunks=0)


def test_correlated_estimates_are_drawn_with_their_correlation(kamp_dict):
    d = copy.deepcopy(kamp_dict)
    d["precision_correlations"] = [
        {"parameters": ["V", "CL"], "correlation": 0.6, "source": "test"}
    ]
    m = model_from_dict(d)
    typ = ks.draw_typical_values(m, 4000, 8)
    r = np.corrcoef(typ["V"], typ["CL"])[0, 1]
    # SE of a sample correlation: (1 - r^2) / sqrt(n), 0.0101 here
    assert r == pytest.approx(0.6, abs=0.045)
    assert typ["CL"].std(ddof=1) == pytest.approx(SE_CL, rel=0.05)
    assert typ["V"].std(ddof=1) == pytest.approx(SE_V, rel=0.05)
    bad = copy.deepcopy(d)
    bad["precision_correlations"][0]["correlation"] = 1.0
    with pytest.raises(ModelFileError, match=r"must be in \(-1, 1\); got 1\.0"):
        model_from_dict(bad)
    bad["precision_correlations"][0] = {
        "parameters": ["V", "ka"],
        "correlation": 0.1,
        "source": "t",
    }
    with pytest.raises(ModelFileError, match=r"'ka' has no \[precision\.ka\] entry"):
        model_from_dict(bad)


def test_a_covariates_table_is_the_same_cohort_in_every_trial():
    pop = ks.Population(3, seed=1, iiv=False, covariates={"weight": [50.0, 70, 90]})
    dose = ks.Dose.bolus("35 mg")
    ds = ks.simulate_trials("kamp_2020_meta", dose, pop, 3, times=[0, 1, 2])
    np.testing.assert_array_equal(ds.weight.values, np.tile([50.0, 70, 90], (3, 1)))
    np.testing.assert_array_equal(ds.patient.values, np.arange(9).reshape(3, 3))
    assert ds.typical_CL.attrs["units"] == "L/h"
    assert ds.typical_V.attrs["units"] == "L"
