"""Dose planning (ketasim.planning): find_dose against closed forms and an
independent solve_ivp + brentq, the TCI designer against a hand-written
scipy.linalg.expm controller, and elasticities against closed forms."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.optimize import brentq

import ketasim as ks
from ketasim.planning import (
    Target,
    elasticities,
    find_dose,
    plot_tornado,
    sweep,
    tci,
    tci_performance,
    tornado,
)

from .test_simulate import one_compartment as _one_compartment

MODEL = "clements_nimmo_1981"
# clements_nimmo_1981 as published in opentiva (the model file's comment):
# V1 = 1.7522 L/kg, k10, k12, k21 = 0.0109, 0.0186, 0.0137 /min
V1_70 = 1.7522 * 70.0
K10, K12, K21 = (k * 60.0 for k in (0.0109, 0.0186, 0.0137))  # 1/h
V1S = np.array([60.0, 90.0, 120.0, 75.0, 150.0, 100.0, 80.0])  # L, 7 subjects


@pytest.fixture
def one_compartment(tmp_path):
    """V 50 L, CL 10 L/h, iv into the central compartment."""
    return _one_compartment(tmp_path)


def _bolus_subjects():
    return ks.Subjects(covariates={"weight": 70.0}, parameters={"V1": (V1S, "L")})


# ---- find_dose: closed forms ---------------------------------------------------
# an iv bolus of D mg: Cmax = 1000 D / V1 ng/mL at t = 0 (the value after the dose)


@pytest.mark.parametrize(
    "target,dose_mg",
    [
        (Target("cmax", "150 ng/mL"), 0.150 * np.median(V1S)),
        (Target("cmax", "0.15 mg/L", statistic="mean"), 0.150 / np.mean(1.0 / V1S)),
        (
            Target("cmax", "300 ng/mL", statistic="p95"),
            0.300 / np.quantile(1.0 / V1S, 0.95),
        ),
        # 90 % of 7 subjects is all 7: the largest V1 must reach 100 ng/mL
        (Target("cmax", 0.9, statistic="pta", threshold="100 ng/mL"), 0.1 * V1S.max()),
        # P(Cmax <= 200) >= 0.8: 6 of 7 must stay below, the smallest V1 may not
        (
            Target("cmax", "80 %", statistic="pta", threshold="200 ng/mL", above=False),
            0.2 * np.sort(V1S)[1],
        ),
    ],
)
def test_find_dose_matches_the_closed_form(target, dose_mg):
    found = find_dose(
        MODEL, ks.Dose.bolus("10 mg"), target, subjects=_bolus_subjects(), times=[0, 1]
    )
    assert found.method == "linear scaling" and found.evaluations == 1
    assert found.dose.unit == "mg"
    assert found.dose.amount == pytest.approx(dose_mg, rel=1e-12)
    assert found.factor == pytest.approx(dose_mg / 10.0, rel=1e-12)
    cmax = 1000.0 * found.dose.amount / V1S
    if target.statistic == "pta":
        hit = cmax >= target.level if target.above else cmax <= target.level
        assert hit.mean() >= 0.8 and found.achieved == hit.mean()


def test_find_dose_per_kg_keeps_the_unit_and_the_proportions():
    reg = ks.Regimen([ks.Dose.bolus("1 mg/kg"), ks.Dose.bolus("0.5 mg/kg", time=1.0)])
    found = find_dose(MODEL, reg, Target("cmax", "150 ng/mL", per="dose"), times=[0, 1])
    # typical 70-kg patient: 1000 * x * 70 / V1 = 150
    assert found.dose.unit == "mg/kg"
    assert found.dose.amount == pytest.approx(0.150 * V1_70 / 70.0, rel=1e-4)
    assert found.regimen.doses[1].amount == pytest.approx(found.dose.amount / 2)


@pytest.mark.parametrize(
    "target",
    [
        Target("cmax", "150 ng/mL"),
        Target("auc", "0.5 mg*h/L", statistic="p5"),
        Target("cmax", 0.9, statistic="pta", threshold="100 ng/mL"),
    ],
)
def test_brentq_search_agrees_with_linear_scaling_on_the_same_patients(target):
    pop = ks.Population(40, seed=5, iov=False)
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    kw = dict(population=pop, times=ks.grid("3 h", "5 min"))
    lin = find_dose(MODEL, dose, target, **kw)
    search = find_dose(MODEL, dose, target, method="search", rtol=1e-9, **kw)
    assert search.method == "brentq" and search.evaluations > 2
    assert search.factor == pytest.approx(lin.factor, rel=1e-6)


def _mm():
    from examples.michaelis_menten import MODEL as MM
    from examples.michaelis_menten import rhs

    return ks.model_from_dict(MM).with_rhs(rhs)


def test_find_dose_on_a_michaelis_menten_model_against_solve_ivp_and_brentq():
    """Saturable elimination is not linear in dose: the search is used, and it
    agrees with a dose solved here from solve_ivp (rtol 1e-11) by brentq."""
    v, vmax, km, T = 3.0 * 70.0, 40.0, 0.15, 2.0 / 3.0  # L, mg/h, mg/L, h

    def cmax_ng_ml(dose_mg):  # end of the infusion (concentration rises until then)
        sol = solve_ivp(
            lambda t, x: [dose_mg / T - vmax * (x[0] / v) / (km + x[0] / v)],
            (0.0, T),
            [0.0],
            method="LSODA",
            rtol=1e-11,
            atol=1e-14,
        )
        return 1000.0 * sol.y[0, -1] / v

    want = brentq(lambda d: cmax_ng_ml(d) - 400.0, 1.0, 500.0, xtol=1e-10)
    found = find_dose(
        _mm(),
        ks.Dose.infusion("10 mg", duration="40 min"),
        Target("cmax", "400 ng/mL"),
        times=ks.grid("2 h", "10 min"),
        solver=ks.ODE(rtol=1e-10, atol=1e-12),
        rtol=1e-10,
    )
    assert found.method == "brentq"
    assert found.dose.amount == pytest.approx(want, rel=1e-6)
    # not proportional: a linear extrapolation from 10 mg would be wrong
    assert abs(cmax_ng_ml(10.0) * found.factor - 400.0) > 1.0
    with pytest.raises(ValueError, match=r"method='linear' needs a model linear"):
        find_dose(
            _mm(),
            ks.Dose.bolus("10 mg"),
            Target("cmax", "400 ng/mL"),
            method="linear",
        )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(metric="tmax", value="1 h"), ValueError, r"metric must be one of"),
        (dict(metric="cmax", value="150 ng/mL", statistic="p101"), ValueError, "p0"),
        (dict(metric="cmax", value=0.9, statistic="pta"), ValueError, "threshold="),
        (
            dict(metric="cmax", value=1.0, statistic="pta", threshold=100),
            ValueError,
            r"must be in \(0, 1\)",
        ),
        (
            dict(metric="cmax", value="150 ng/mL", threshold=100),
            ValueError,
            r"threshold= is the level of statistic='pta'",
        ),
        (
            dict(metric="cmax", value="0 ng/mL"),
            ValueError,
            r"value must be a level > 0",
        ),
        (dict(metric="trough", value=1, per="course"), ValueError, "no per='course'"),
        (dict(metric="cmax", value=1, window=-1), ValueError, r"window must be >= 0"),
    ],
)
def test_target_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Target(**kwargs)


def test_find_dose_refuses_wrong_units_and_misplaced_options():
    with pytest.raises(ks.UnitError, match=r"value of an AUC target must be an AUC"):
        Target("auc", "150 ng/mL")
    with pytest.raises(ks.UnitError, match=r"must be a concentration"):
        Target("cmax", "150 mg")
    with pytest.raises(ValueError, match=r"bracket= is for the root search"):
        find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            Target("cmax", 150.0),
            times=[0, 1],
            bracket=(0.5, 2.0),
        )
    with pytest.raises(ValueError, match=r"bracket must be \(low, high\) factors with"):
        find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            Target("cmax", 150.0),
            method="search",
            times=[0, 1],
            bracket=(2.0, 1.0),
        )


def test_find_dose_refuses_a_missing_window():
    with pytest.raises(ValueError, match=r"window=3 does not exist: the regimen has 1"):
        find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            Target("cmax", "150 ng/mL", window=3),
            times=[0, 1],
        )


# ---- TCI: a hand-written controller ----------------------------------------------


def _reference_tci(target, h, n_steps):
    """Bailey-Shafer plasma TCI for the typical 70-kg clements_nimmo_1981 patient,
    written from the published rate constants with scipy.linalg.expm."""
    A = np.array([[-(K10 + K12), K21], [K12, -K21]])
    E = expm(A * h)
    G = np.linalg.solve(A, E - np.eye(2)) @ np.array([1.0, 0.0])  # mg per mg/h
    c = np.array([1000.0 / V1_70, 0.0])  # ng/mL per mg
    x, rates = np.zeros(2), []
    for _ in range(n_steps):
        r = max(0.0, (target - c @ E @ x) / (c @ G))
        x = E @ x + G * r
        rates.append(r)
    return np.array(rates)


def test_plasma_tci_matches_a_hand_written_controller_and_holds_the_target():
    plan = tci(MODEL, "150 ng/mL", duration="40 min", step="10 s")
    ref = _reference_tci(150.0, 10.0 / 3600.0, 240)
    np.testing.assert_allclose(plan.rates.values, ref, rtol=1e-9)
    assert plan.rates.attrs["units"] == "mg/h"
    assert len(plan.regimen) == 240 and plan.reached == pytest.approx(10.0 / 3600)
    # the engine, given the plan, holds 150 ng/mL at every step end
    t = np.arange(241) * (10.0 / 3600.0)
    ds = ks.simulate(MODEL, plan.regimen, times=t)
    np.testing.assert_allclose(ds.concentration.values[0, 0, 1:], 150.0, rtol=1e-9)


def test_plasma_tci_respects_a_pump_limit():
    plan = tci(MODEL, "150 ng/mL", max_rate="1200 mg/h")
    assert plan.rates.values.max() == pytest.approx(1200.0)
    ref = _reference_tci(150.0, 10.0 / 3600.0, 240)
    assert plan.rates.values[0] < ref[0]  # the limit binds at the start
    assert plan.predicted.values[0] < 150.0
    assert plan.predicted.values[-1] == pytest.approx(150.0, rel=1e-9)


def test_effect_site_tci_peaks_at_the_target_without_overshoot():
    """Effect site with ke0 = 0.652 /min (Domino's, opentiva): an independent
    expm propagation of plasma + effect site at 1-s resolution, fed the plan's
    rates, never exceeds the target by more than what happens between 10-s step
    ends, is within 1 % of it from ``reached`` on, and sits on it afterwards."""
    ke0 = 0.652 * 60.0
    plan = tci(MODEL, "150 ng/mL", site="effect", ke0=(0.652, "1/min"))
    assert plan.ke0 == pytest.approx(ke0)
    A = np.array(
        [
            [-(K10 + K12), K21, 0.0],
            [K12, -K21, 0.0],
            [ke0 * 1000.0 / V1_70, 0.0, -ke0],
        ]
    )
    sub = 10
    dt = 10.0 / 3600.0 / sub
    M = np.zeros((4, 4))
    M[:3, :3], M[0, 3] = A * dt, dt
    X = expm(M)
    E, G = X[:3, :3], X[:3, 3]
    x, ce = np.zeros(3), []
    for r in plan.rates.values:
        for _ in range(sub):
            x = E @ x + G * r
            ce.append(x[2])
    ce = np.array(ce)
    ends = ce[sub - 1 :: sub]
    after = np.arange(1, 241) * 10.0 / 3600.0 >= plan.reached - 1e-12
    assert np.all(np.abs(ends[after] - 150.0) <= 1.5) and ends.max() <= 150.0 + 1e-9
    np.testing.assert_allclose(ends[-200:], 150.0, rtol=1e-8)  # held
    assert ce.max() <= 150.0 * (1.0 + 1e-3)
    np.testing.assert_allclose(plan.predicted.values, ends, rtol=1e-9)


def test_tci_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"an effect-site target needs ke0"):
        tci("kamp_2020_meta", "150 ng/mL", site="effect")  # no effect site, no ke0
    with pytest.raises(ValueError, match=r"ke0 needs its unit"):
        tci(MODEL, "150 ng/mL", site="effect", ke0=0.5)
    with pytest.raises(ValueError, match=r"whole number of steps"):
        tci(MODEL, "150 ng/mL", duration="40 min", step="7 s")
    with pytest.raises(ValueError, match=r"designed for one subject; subjects= desc"):
        tci(MODEL, "150 ng/mL", subjects=ks.Subjects(covariates={"weight": [60, 70]}))
    with pytest.raises(ValueError, match=r"target must be a level > 0"):
        tci(MODEL, "0 ng/mL")


def test_tci_performance_against_the_engine_and_varvel_by_hand():
    plan = tci(MODEL, "150 ng/mL", duration="20 min")
    pop = ks.Population(30, seed=4, iov=False)
    perf = tci_performance(MODEL, plan, pop)
    t = np.arange(121) * (10.0 / 3600.0)
    ds = ks.simulate(MODEL, plan.regimen, population=pop, times=t)
    c = ds.concentration.values[:, 0, :]
    np.testing.assert_allclose(perf.level.values, c, rtol=1e-9, atol=1e-9)
    pe = 100.0 * (c[:, 1:] - 150.0) / 150.0  # window: from the first step end
    np.testing.assert_allclose(perf.mdpe.values, np.median(pe, axis=1), rtol=1e-9)
    np.testing.assert_allclose(
        perf.mdape.values, np.median(np.abs(pe), axis=1), rtol=1e-9
    )
    assert float(perf.mdape_population) == pytest.approx(
        np.median(np.median(np.abs(pe), axis=1))
    )
    np.testing.assert_allclose(
        perf.level_p95.values, np.percentile(c, 95, axis=0), rtol=1e-12
    )
    assert perf.mdpe.attrs["units"] == "%" and perf.level.attrs["units"] == "ng/mL"


# ---- sensitivity ---------------------------------------------------------------


def test_elasticities_of_a_one_compartment_infusion_match_the_closed_form(
    one_compartment,
):
    """Cmax = R/CL (1 - exp(-a)), a = CL T / V: d ln Cmax / d ln CL = -1 + a
    exp(-a) / (1 - exp(-a)) and d ln Cmax / d ln V = -a exp(-a) / (1 - exp(-a))."""
    T, CL, V = 2.0, 10.0, 50.0
    a = CL * T / V
    w = a * math.exp(-a) / (1.0 - math.exp(-a))
    el = elasticities(
        one_compartment,
        ks.Dose.infusion("100 mg", duration="2 h"),
        times=ks.grid("4 h", "30 min"),
    )
    assert el.elasticity.sel(parameter="CL").item() == pytest.approx(-1.0 + w, rel=1e-7)
    assert el.elasticity.sel(parameter="V").item() == pytest.approx(-w, rel=1e-7)
    assert el.population.attrs["units"] == "1"


def test_elasticities_of_a_bolus_peak_and_of_auc():
    """Two-compartment bolus: Cmax at t = 0 is D / V1 (elasticity -1 for V1, 0
    for the rest); the AUC to infinity is D / CL."""
    pop = ks.Population(5, seed=2, iov=False)
    el = elasticities(MODEL, ks.Dose.bolus("20 mg"), population=pop, times=[0, 1])
    np.testing.assert_allclose(el.elasticity.sel(parameter="V1"), -1.0, rtol=1e-8)
    for p in ("CL", "Q", "V2", "F_IN"):
        np.testing.assert_allclose(el.elasticity.sel(parameter=p), 0.0, atol=1e-8)
    auc = elasticities(
        MODEL,
        ks.Dose.bolus("20 mg"),
        metric="auc",
        per="course",
        parameters=["CL", "V1"],
        times=ks.grid("400 h", "1 h"),
    )
    assert auc.elasticity.sel(parameter="CL").item() == pytest.approx(-1.0, abs=1e-6)
    assert auc.elasticity.sel(parameter="V1").item() == pytest.approx(0.0, abs=1e-6)


def test_sweep_labels_a_dimension_with_units(one_compartment):
    d = ks.Dose.bolus("100 mg")
    sw = sweep(one_compartment, d, "V", ["25 L", "50 L", "100 L"], times=[0, 1])
    assert sw.V.attrs["units"] == "L" and list(sw.V.values) == [25.0, 50.0, 100.0]
    np.testing.assert_allclose(
        sw.cmax.isel(session=0, analyte=0, subject=0), [4000.0, 2000.0, 1000.0]
    )
    rel = sweep(one_compartment, d, "V", [0.5, 2.0], relative=True, times=[0, 1])
    np.testing.assert_allclose(rel.cmax.squeeze(), [4000.0, 1000.0])
    doses = sweep(one_compartment, d, "dose", ["50 mg", "200 mg"], times=[0, 1])
    assert doses.dose.attrs["units"] == "mg"
    np.testing.assert_allclose(doses.cmax.squeeze(), [1000.0, 4000.0])
    with pytest.raises(ValueError, match=r"values\[0\] = '1 mg/kg' is mg/kg"):
        sweep(one_compartment, d, "dose", ["1 mg/kg"], times=[0, 1])
    with pytest.raises(ValueError, match=r"values of 'V' must be a volume with its"):
        sweep(one_compartment, d, "V", ["10 L/h"], times=[0, 1])
    with pytest.raises(ValueError, match=r"'Vc' is not a parameter of model 'one'"):
        sweep(one_compartment, d, "Vc", ["1 L"], times=[0, 1])


def test_tornado_orders_by_swing_and_plots(one_compartment, tmp_path):
    T, CL, V, R = 2.0, 10.0, 50.0, 50.0

    def cmax(cl, v):
        return 1000.0 * R / cl * (1.0 - math.exp(-cl * T / v))

    td = tornado(
        one_compartment,
        ks.Dose.infusion("100 mg", duration="2 h"),
        times=ks.grid("4 h", "30 min"),
    )
    assert td.attrs["base"] == pytest.approx(cmax(CL, V), rel=1e-12)
    want = {
        "CL": [cmax(0.8 * CL, V), cmax(1.2 * CL, V)],
        "V": [cmax(CL, 0.8 * V), cmax(CL, 1.2 * V)],
    }
    # a = CL T / V = 0.4: elasticity of V -0.81, of CL -0.19, so V swings more
    assert list(td.parameter.values) == ["V", "CL"]
    for p, (lo, hi) in want.items():
        assert td.sel(parameter=p).values == pytest.approx([lo, hi], rel=1e-12)
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_tornado(td)
    ax.figure.savefig(tmp_path / "t.png")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CL", "V"]  # V on top


def test_effect_site_tci_takes_ke0_from_the_model(tmp_path):
    """A model parameter ke0 (0.5 /min) is used as a ke0 argument would be, and
    tci_performance uses each patient's own value."""
    base = tmp_path / "base"
    base.mkdir()
    text = _one_compartment(base).path.read_text() + (
        '[parameters.ke0]\nvalue = 0.5\nunit = "1/min"\ndescription = "ke0"\n'
        'source = "test"\ngrade = "choice"\n'
    )
    path = tmp_path / "one_ke0.toml"
    path.write_text(text.replace('id = "one"', 'id = "one_ke0"'))
    model = ks.load_model(path)
    plan = tci(model, "2 mg/L", site="effect")
    ref = tci(model, "2 mg/L", site="effect", ke0="0.5 1/min")
    assert plan.ke0_source == "model" and ref.ke0_source == "argument"
    assert plan.ke0 == pytest.approx(30.0)
    np.testing.assert_allclose(plan.rates.values, ref.rates.values, rtol=1e-12)
    pop = ks.Population(3, seed=1, iiv=False)
    a = tci_performance(model, plan, pop)
    b = tci_performance(model, ref, pop)
    np.testing.assert_allclose(a.level.values, b.level.values, rtol=1e-12)


def test_tci_performance_refuses_iiv_on_a_model_without_it():
    plan = tci("domino", "150 ng/mL", duration="1 min")
    with pytest.raises(ValueError, match=r"model 'domino' has no inter-individual"):
        tci_performance("domino", plan, ks.Population(5, seed=1))
    with pytest.raises(TypeError, match=r"plan must be a TCIPlan"):
        tci_performance("domino", plan.regimen, ks.Population(5, seed=1, iiv=False))


@pytest.mark.parametrize(
    "model,analyte,ke0_per_h",
    [
        ("domino", "ketamine", 0.652 * 60.0),  # [effect_sites] ke0 (opentiva)
        # a half-life site: ke0 = ln 2 / 11.8 min (Olofsen 2012, simons_2022)
        ("simons_2022", "s_ketamine", math.log(2.0) / (11.8 / 60.0)),
    ],
)
def test_effect_site_tci_uses_the_models_effect_site(model, analyte, ke0_per_h):
    sub = ks.Subjects(covariates={"weight": 70.0})
    plan = tci(model, "100 ng/mL", site="effect", analyte=analyte, subjects=sub)
    ref = tci(
        model,
        "100 ng/mL",
        site="effect",
        analyte=analyte,
        subjects=sub,
        ke0=(ke0_per_h, "1/h"),
    )
    assert plan.ke0_source == "model" and plan.ke0 == pytest.approx(ke0_per_h)
    np.testing.assert_allclose(plan.rates.values, ref.rates.values, rtol=1e-9)


def test_plasma_tci_warns_when_the_pump_limit_cannot_reach_the_target():
    # 1 mg/h for 10 min into V1 = 122.7 L cannot approach 150 ng/mL; it used to
    # return reached = nan without a word
    with pytest.warns(
        ks.ValidityWarning,
        match=r"the plasma target 150 ng/mL is not reached within the plan \(10 min\) "
        r"at max_rate 1 mg/h: the predicted plasma level at the end is 1\.182 ng/mL; "
        r"raise max_rate or lengthen duration",
    ):
        plan = tci(MODEL, "150 ng/mL", max_rate="1 mg/h", duration="10 min")
    assert math.isnan(plan.reached) and "target not reached" in repr(plan)
    # the level it names is the constant 1 mg/h infusion's, by expm (independent)
    A = np.array([[-(K10 + K12), K21], [K12, -K21]])
    T = 10.0 / 60.0
    x = np.linalg.solve(A, expm(A * T) - np.eye(2)) @ np.array([1.0, 0.0])
    assert float(plan.predicted[-1]) == pytest.approx(1000.0 * x[0] / V1_70, rel=1e-9)


def test_trough_of_the_last_session_says_no_session_follows_it():
    with pytest.raises(
        ValueError,
        match=r"trough of session 1 is NaN for every subject: a trough is the level "
        r"just before the next session's first dose, and session 1 is the last of 1 "
        r"\(no session follows it\)",
    ):
        find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            Target("trough", "1 ng/mL"),
            times=np.linspace(0.0, 48.0, 49),
        )


def test_elasticities_refuse_an_empty_parameter_list():
    with pytest.raises(
        ValueError, match=r"parameters must name at least one parameter; got \[\]"
    ):
        elasticities(MODEL, ks.Dose.bolus("10 mg"), parameters=[], times=[0, 1])


def test_molar_targets_convert_by_the_analytes_molecular_weight():
    # nmol/L x (g/mol) / 1000 = ng/mL; ketamine base C13H16ClNO, 237.72 g/mol
    mw = ks.load_model(MODEL).analytes[0].mw
    assert mw == pytest.approx(237.72, abs=0.01)
    target = Target("cmax", "0.63 umol/L")
    assert repr(target) == "Target(median session 1 cmax = 0.63 umol/L)"
    with pytest.raises(ValueError, match=r"the level '0.63 umol/L' is molar"):
        _ = target.level
    assert target.in_ng_per_ml(mw).level == pytest.approx(630.0 * mw / 1000.0)
    dose = ks.Dose.bolus("10 mg")
    molar = find_dose(MODEL, dose, target, times=[0.0, 1.0])
    mass = find_dose(MODEL, dose, Target("cmax", 630.0 * mw / 1000.0), times=[0.0, 1.0])
    assert molar.factor == pytest.approx(mass.factor, rel=1e-12)
    plan = tci(MODEL, "0.6 umol/L", duration="10 min")
    assert plan.target == pytest.approx(600.0 * mw / 1000.0, rel=1e-12)
    with pytest.raises(ks.UnitError, match=r"must be a concentration such as 100"):
        Target("cmax", "0.63 umol/kg")
