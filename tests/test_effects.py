"""Effect sites and pharmacodynamic endpoints against closed forms, solve_ivp and
hand-written equations; their model-file schema; effect metrics."""

import copy
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import ketasim as ks
from ketasim.modelfile import ModelFileError

V, K, KE0 = 10.0, 0.5, 2.0  # L, 1/h, 1/h
MW = 237.73


def _p(value, unit):
    return {
        "value": value,
        "unit": unit,
        "description": "d",
        "source": "s",
        "grade": "choice",
    }


def base(**extra):
    """One compartment (V, elimination k) of ketamine with an effect site."""
    d = {
        "schema_version": 1,
        "id": "one",
        "name": "one",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "test",
        "sampling": "venous",
        "grade": "choice",
        "references": [{"key": "x", "citation": "test"}],
        "parameters": {
            "V": _p(V, "L"),
            "k": _p(K, "1/h"),
            "ke0": _p(KE0, "1/h"),
            "C50": _p(0.2, "mg/L"),
        },
        "compartments": {
            "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
        },
        "flows": [{"from": "central", "k": "k"}],
        "routes": {"iv": {"kind": "intravenous", "target": "central"}},
        "analytes": {"ketamine": {"compartment": "central", "mw": MW}},
        "effect_sites": {"ce": {"analyte": "ketamine", "ke0": "ke0"}},
    }
    d.update(extra)
    return d


def endpoint(model="sigmoid_emax", drivers=None, **kw):
    e = {
        "model": model,
        "unit": "cm",
        "long_name": "drug high (VAS)",
        "baseline": 0.0,
        "emax": 10.0,
        "gamma": 2.0,
        "drivers": drivers or [{"site": "ce", "c50": "C50"}],
        "source": "test",
        "grade": "choice",
    }
    if model != "sigmoid_emax":
        e.pop("gamma")
    if model == "linear":
        e.pop("emax")
    e.update(kw)
    return e


T = np.linspace(0.0, 8.0, 81)
SITES = ks.Trajectories(effects=True)  # effect sites of a model without [effects]


def test_effect_site_matches_one_compartment_closed_form():
    """Bolus into one compartment: Ce = C0 ke0/(ke0-k) (e^-kt - e^-ke0 t)."""
    ds = ks.simulate(
        ks.model_from_dict(base()), ks.Dose.bolus("100 mg"), times=T, output=SITES
    )
    c0 = 100.0 / V * 1000.0  # ng/mL
    want = c0 * KE0 / (KE0 - K) * (np.exp(-K * T) - np.exp(-KE0 * T))
    got = ds.effect_site_concentration.sel(effect_site="ce").values[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert ds.effect_site_concentration.attrs["units"] == "ng/mL"
    assert str(ds.effect_site_analyte.values[0]) == "ketamine"


def test_constant_plasma_concentration_closed_form():
    """No flow leaves the central compartment (the model's only flow drains
    another one): Cp = D/V stays constant and Ce = Cp (1 - e^-ke0 t)."""
    d = base(flows=[{"from": "other", "k": "k"}])
    d["compartments"]["other"] = {"role": "peripheral"}
    ds = ks.simulate(
        ks.model_from_dict(d), ks.Dose.bolus("50 mg"), times=T, output=SITES
    )
    cp = 50.0 / V * 1000.0
    np.testing.assert_allclose(ds.concentration.values[0, 0], cp, rtol=1e-14)
    want = cp * (1.0 - np.exp(-KE0 * T))
    got = ds.effect_site_concentration.values[0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def test_two_compartment_infusion_against_solve_ivp():
    """A 2-compartment model with a 40-min infusion, the effect site checked
    against scipy's solve_ivp at rtol 1e-11."""
    d = base()
    d["parameters"].update(
        {"Q": _p(20.0, "L/h"), "V2": _p(40.0, "L"), "CL": _p(8.0, "L/h")}
    )
    d["compartments"]["peripheral"] = {"role": "peripheral", "volume": "V2"}
    d["flows"] = [
        {"from": "central", "cl": "CL"},
        {"from": "central", "to": "peripheral", "cl": "Q"},
        {"from": "peripheral", "to": "central", "cl": "Q"},
    ]
    t = np.linspace(0.0, 6.0, 37)
    ds = ks.simulate(
        ks.model_from_dict(d),
        ks.Dose.infusion("35 mg", duration="40 min"),
        times=t,
        output=SITES,
    )
    rate, tinf = 35.0 / (40 / 60), 40 / 60

    def rhs(tt, x):
        a1, a2, ce = x
        r = rate if tt < tinf else 0.0
        cp = a1 / V * 1000.0
        return [
            r - (8.0 + 20.0) / V * a1 + 20.0 / 40.0 * a2,
            20.0 / V * a1 - 20.0 / 40.0 * a2,
            KE0 * (cp - ce),
        ]

    want = np.empty_like(t)
    x0 = [0.0, 0.0, 0.0]
    for a, b in ((0.0, tinf), (tinf, t[-1])):  # the input switches at tinf
        sol = solve_ivp(rhs, (a, b), x0, rtol=1e-11, atol=1e-12, dense_output=True)
        sel = (t >= a) & (t <= b)
        want[sel] = sol.sol(t[sel])[2]
        x0 = sol.y[:, -1]
    got = ds.effect_site_concentration.values[0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


def test_ode_solver_carries_the_effect_site():
    m = ks.model_from_dict(base())
    dose = ks.Dose.bolus("100 mg")
    exact = ks.simulate(m, dose, times=T, output=SITES).effect_site_concentration
    ode = ks.simulate(
        m, dose, times=T, output=SITES, solver=ks.ODE(rtol=1e-10, atol=1e-12)
    )
    np.testing.assert_allclose(
        ode.effect_site_concentration.values, exact.values, rtol=1e-7, atol=1e-6
    )


def test_half_life_is_ln2_over_ke0():
    d = base()
    d["parameters"]["t12"] = _p(math.log(2) / KE0 * 60.0, "min")
    d["effect_sites"]["ce"] = {"analyte": "ketamine", "half_life": "t12"}
    m = ks.model_from_dict(d)
    assert m.ke0() == pytest.approx(KE0, rel=1e-14)
    assert m.ke0("ketamine") == m.ke0("ce")  # a site may be named by its analyte
    a = ks.simulate(m, ks.Dose.bolus("10 mg"), times=T, output=SITES)
    b = ks.simulate(
        ks.model_from_dict(base()), ks.Dose.bolus("10 mg"), times=T, output=SITES
    )
    np.testing.assert_allclose(
        a.effect_site_concentration.values,
        b.effect_site_concentration.values,
        rtol=1e-12,
        atol=1e-12,
    )


def test_effect_sites_are_opt_in_without_effects():
    """A model with effect sites but no [effects] (a ke0 for targeting) runs as
    before unless asked: no extra state, no extra output."""
    m = ks.model_from_dict(base())
    ds = ks.simulate(m, ks.Dose.bolus("10 mg"), times=T)
    assert "effect_site_concentration" not in ds and "effect" not in ds
    with pytest.raises(ValueError, match=r"^Trajectories\(out=\.\.\.\) holds conc"):
        ks.Trajectories(out=np.empty((1, 1, T.size)), effects=True)
    d = base()
    d.pop("effect_sites")
    with pytest.raises(
        ValueError, match=r"^Trajectories\(effects=True\) but model 'one' has no"
    ):
        ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("1 mg"), times=T, output=SITES)


def test_ke0_refusals():
    with pytest.raises(ValueError, match=r"^model 'domino' has no effect site 'x'"):
        ks.load_model("domino").ke0("x")
    d = base()
    d.pop("effect_sites")
    with pytest.raises(ValueError, match=r"model 'one' has no effect site \(no "):
        ks.model_from_dict(d).ke0()


def test_individual_ke0_from_iiv():
    """Each subject's effect site uses its own ke0 (IIV on ke0)."""
    d = base(
        variability={"ke0": {"distribution": "lognormal", "cv": 0.5, "source": "s"}}
    )
    m = ks.model_from_dict(d)
    ds = ks.simulate(
        m,
        ks.Dose.bolus("100 mg"),
        times=T,
        population=ks.Population(3, seed=2),
        output=SITES,
    )
    ke0 = ds.parameters.sel(parameter="ke0").values
    assert np.unique(ke0).size == 3
    c0 = 100.0 / V * 1000.0
    for s in range(3):
        want = c0 * ke0[s] / (ke0[s] - K) * (np.exp(-K * T) - np.exp(-ke0[s] * T))
        np.testing.assert_allclose(
            ds.effect_site_concentration.values[s, 0], want, rtol=1e-11, atol=1e-8
        )


# ---- pharmacodynamics -----------------------------------------------------------


def test_sigmoid_emax_on_the_effect_site():
    d = base(effects={"high": endpoint(baseline=1.0)})
    ds = ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("100 mg"), times=T)
    ce = ds.effect_site_concentration.values[0, 0]
    x = ce / 200.0  # C50 0.2 mg/L = 200 ng/mL
    want = 1.0 + 10.0 * x**2 / (1.0 + x**2)
    np.testing.assert_allclose(ds.effect.values[0, 0], want, rtol=1e-13)
    e = ks.effect(ds)
    assert e.attrs["units"] == "cm" and e.attrs["long_name"] == "drug high (VAS)"
    assert ds.effect.attrs["units"] == "cm"
    # the baseline is a number in the endpoint's unit, and says so
    assert float(ds.endpoint_baseline.values[0]) == 1.0
    assert ds.endpoint_baseline.attrs["units"] == "cm"


def test_endpoints_in_different_units_carry_no_single_units_label():
    # one convention for arrays whose unit varies along a dimension: no units
    # attribute, long_name points to the per-element unit coordinate
    d = base(
        effects={
            "high": endpoint(baseline=1.0),
            "bis": endpoint(unit="1", long_name="BIS", baseline=95.0, emax=-60.0),
        }
    )
    ds = ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("100 mg"), times=T)
    assert list(ds.endpoint_unit.values) == ["cm", "1"]
    for name in ("effect", "endpoint_baseline"):
        assert "units" not in ds[name].attrs
        assert ds[name].attrs["long_name"].endswith("(units: see endpoint_unit)")
    assert ks.effect(ds, "bis").attrs["units"] == "1"


def two_analytes(**extra):
    """Parent (V, k) forming a metabolite (Vm, km) by a fraction 0.8 of k."""
    d = base(**extra)
    d["parameters"].update(
        {
            "Vm": _p(20.0, "L"),
            "km": _p(0.3, "1/h"),
            "C50m": _p(1.0, "nmol/mL"),
            "ke0m": _p(1.0, "1/h"),
        }
    )
    d["compartments"]["metab"] = {
        "role": "metabolite",
        "volume": "Vm",
        "analyte": "norketamine",
    }
    d["flows"] = [
        {"from": "central", "to": "metab", "k": "k", "fraction": 0.8},
        {"from": "metab", "k": "km"},
    ]
    d["analytes"]["norketamine"] = {"compartment": "metab", "mw": 223.70}
    d["effect_sites"]["cem"] = {"analyte": "norketamine", "ke0": "ke0m"}
    return d


@pytest.mark.parametrize("interaction", ["agonistic", "antagonistic"])
def test_parent_metabolite_interaction(interaction):
    """Simons 2022: agonistic EFF = Ce,K/C50,K + Ce,NK/C50,NK; antagonistic EFF =
    Ce,K / (C50,K (1 + Ce,NK/C100,NK)); the metabolite's C50 in nmol/mL converts
    with its molecular weight (1 nmol/mL = 223.70 ng/mL)."""
    key = "c50" if interaction == "agonistic" else "c100"
    ep = endpoint(
        interaction=interaction,
        drivers=[{"site": "ce", "c50": "C50"}, {"site": "cem", key: "C50m"}],
    )
    ds = ks.simulate(
        ks.model_from_dict(two_analytes(effects={"e": ep})),
        ks.Dose.bolus("100 mg"),
        times=T,
    )
    ck, cn = ds.effect_site_concentration.values[0]
    if interaction == "agonistic":
        x = ck / 200.0 + cn / 223.70
    else:
        x = ck / (200.0 * (1.0 + cn / 223.70))
    np.testing.assert_allclose(
        ds.effect.values[0, 0], 10.0 * x**2 / (1.0 + x**2), rtol=1e-12
    )


def test_linear_additive_and_direct_drivers():
    """Linear: E = E0 + Σ change_i C_i / at_i, here on the plasma concentrations
    (a direct effect) of parent and metabolite pushing opposite ways."""
    d = two_analytes()
    d["parameters"]["atK"] = _p(100.0, "ng/mL")
    d["parameters"]["atN"] = _p(50.0, "ng/mL")
    d["effects"] = {
        "pain": endpoint(
            "linear",
            baseline=7.0,
            drivers=[
                {"analyte": "ketamine", "at": "atK", "change": -3.8},
                {"analyte": "norketamine", "at": "atN", "change": 1.5},
            ],
        )
    }
    ds = ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("100 mg"), times=T)
    ck, cn = ds.concentration.values[0]
    np.testing.assert_allclose(
        ds.effect.values[0, 0], 7.0 - 3.8 * ck / 100.0 + 1.5 * cn / 50.0, rtol=1e-13
    )
    assert int(ds.endpoint_direction.values[0]) == 0  # mixed


def test_emax_lowering_effect():
    d = base(effects={"pain": endpoint("emax", baseline=8.0, emax=-6.0)})
    ds = ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("100 mg"), times=T)
    x = ds.effect_site_concentration.values[0, 0] / 200.0
    np.testing.assert_allclose(
        ds.effect.values[0, 0], 8.0 - 6.0 * x / (1 + x), rtol=1e-13
    )
    assert int(ds.endpoint_direction.values[0]) == -1


# ---- metrics ----------------------------------------------------------------------


def direct_emax():
    """A direct (plasma) Emax effect on C = C0 e^-kt: it falls below L when
    C = C50 L / (Emax - L), at t = ln(C0 / C) / k."""
    ep = endpoint("emax", drivers=[{"analyte": "ketamine", "c50": "C50"}])
    return ks.model_from_dict(base(effects={"e": ep}))


def test_discharge_time_and_time_above_closed_form():
    t = np.linspace(0.0, 12.0, 12001)
    ds = ks.simulate(direct_emax(), ks.Dose.bolus("100 mg"), times=t)
    c0, level = 1e4, 4.0
    c_at = 200.0 * level / (10.0 - level)
    want = math.log(c0 / c_at) / K
    got = ks.discharge_time(ds, level, endpoint="e").values[0]
    assert got == pytest.approx(want, rel=1e-6)
    above = ks.effect_time_above(ds, "4 cm").values[0]
    assert above == pytest.approx(want, rel=1e-6)
    below = ks.effect_time_above(ds, 4.0, below=True).values[0]
    assert below == pytest.approx(12.0 - want, rel=1e-6)
    conc = ks.discharge_time(ds, "0.5 mg/L", analyte="ketamine").values[0]
    assert conc == pytest.approx(math.log(1e4 / 500.0) / K, rel=1e-6)


def test_discharge_time_window_and_nan():
    reg = ks.Regimen([ks.Dose.bolus("100 mg"), ks.Dose.bolus("100 mg", time=2.0)])
    ds = ks.simulate(direct_emax(), reg, times=np.linspace(0, 6, 601))
    first = ks.discharge_time(ds, 4.0, endpoint="e", dose=0)
    assert np.isnan(first.values[0])  # still above when the second dose comes
    assert "not yet below 4 cm" in first.attrs["note"]
    assert ks.discharge_time(ds, 9.9, endpoint="e", dose=1).values[0] == 0.0


def test_peak_effect_of_the_effect_site():
    """The effect-site peak: t = ln(ke0/k)/(ke0 - k)."""
    t = np.linspace(0.0, 6.0, 6001)
    ds = ks.simulate(
        ks.model_from_dict(base(effects={"e": endpoint()})),
        ks.Dose.bolus("100 mg"),
        times=t,
    )
    tp = math.log(KE0 / K) / (KE0 - K)
    ce = 1e4 * KE0 / (KE0 - K) * (math.exp(-K * tp) - math.exp(-KE0 * tp))
    x = ce / 200.0
    p = ks.peak_effect(ds)
    assert p.time_of_peak_effect.values[0] == pytest.approx(tp, abs=1e-3)
    assert p.peak_effect.values[0] == pytest.approx(10 * x**2 / (1 + x**2), rel=1e-9)
    assert p.peak_effect.attrs["units"] == "cm"


def test_effect_metric_refusals():
    ds = ks.simulate(direct_emax(), ks.Dose.bolus("100 mg"), times=T)
    with pytest.raises(ValueError, match=r"^level '4 mA' is not in the unit of "):
        ks.effect_time_above(ds, "4 mA")
    with pytest.raises(ValueError, match=r"^no endpoint 'x' in this result; it has e$"):
        ks.peak_effect(ds, "x")
    with pytest.raises(TypeError, match=r"^discharge_time needs exactly one of "):
        ks.discharge_time(ds, 1.0)
    with pytest.raises(ValueError, match=r"^dose=3 but this result has 1 doses"):
        ks.discharge_time(ds, 1.0, endpoint="e", dose=3)
    plain = ks.simulate("domino", ks.Dose.bolus("10 mg"), times=T)
    with pytest.raises(ValueError, match=r"^this result has no 'effect'"):
        ks.peak_effect(plain)


# ---- model-file schema ------------------------------------------------------------


def refused(d, message):
    with pytest.raises(ModelFileError, match=message):
        ks.model_from_dict(d)


def test_schema_refusals():
    d = base()
    d["effect_sites"]["ce"]["half_life"] = "ke0"
    refused(
        d,
        r"\[effect_sites\.ce\] needs exactly one of ke0 .* got \['ke0', 'half_life'\]",
    )
    d = base()
    d["effect_sites"]["ce"]["ke0"] = "V"
    refused(
        d, r"\[effect_sites\.ce\.ke0\] needs a rate constant; parameter 'V' is a volume"
    )
    d = base()
    d["effect_sites"]["ce"]["analyte"] = "s_norketamine"
    refused(
        d, r"\[effect_sites\.ce\.analyte\] names an undefined analyte 's_norketamine'"
    )
    d = base(effects={"e": endpoint(drivers=[{"site": "ce", "c50": "k"}])})
    refused(
        d, r"\[effects\.e\.drivers\[0\]\.c50\] needs a concentration; parameter 'k'"
    )
    d = base(effects={"e": endpoint(interaction="antagonistic")})
    refused(
        d, r"\[effects\.e\.interaction\] antagonistic needs an emax or sigmoid_emax"
    )
    d = base(effects={"e": endpoint(drivers=[{"site": "ce", "c100": "C50"}])})
    refused(d, r"\[effects\.e\.drivers\[0\]\.c50\] is missing")
    d = base(effects={"e": endpoint(gamma=0)})
    refused(d, r"\[effects\.e\.gamma\] must be a steepness in \(0, 100\]; got 0\.0")
    d = base(
        effects={
            "e": endpoint(drivers=[{"site": "ce", "analyte": "ketamine", "c50": "C50"}])
        }
    )
    refused(d, r"\[effects\.e\.drivers\[0\]\] needs exactly one of site")
    d = base(
        variability={
            "ke0": {
                "distribution": "lognormal",
                "cv": 0.3,
                "iov_cv": 0.2,
                "source": "s",
            }
        }
    )
    refused(
        d,
        r"\[variability\.ke0\] gives 'ke0', the ke0 of effect site 'ce', "
        r"inter-occasion",
    )
    d = copy.deepcopy(base())
    d["parameters"]["ke0"]["value"] = -1.0
    refused(d, r"\[effect_sites\.ce\.ke0\] parameter 'ke0' must be > 0")


@pytest.mark.parametrize(
    ("model_id", "per_min"),
    [
        ("clements_nimmo_1981", 5.2),
        ("domino", 0.652),
        ("hijazi_2003", 4.773),
        ("herd_2007", 2.995),
        ("hornik_2018", 4.212),
    ],
)
def test_bundled_ke0_in_per_hour(model_id, per_min):
    """The code-sourced (OpenTIVA, tpeak 1 min) ke0 of the IV sets, in 1/h."""
    assert ks.load_model(model_id).ke0() == pytest.approx(per_min * 60.0, rel=1e-14)


def test_simons_pain_endpoint_is_for_iv_only():
    """simons_2022's Olofsen 2012 pain endpoint: computed after IV S-ketamine
    (checked against its linear equation), NaN with a note after a film dose,
    where S-norketamine far exceeds the data it was estimated on (and a
    ValidityWarning when the effects were asked for)."""
    t = ks.grid("3 h", "10 min")
    iv = ks.simulate(
        "simons_2022", ks.Dose.infusion("20 mg", duration="20 min"), times=t
    )
    ck, cn = iv.effect_site_concentration.values[0]
    want = -3.8 * ck / 100.0 + 1.5 * cn / 50.0
    np.testing.assert_allclose(iv.effect.values[0, 0], want, rtol=1e-13)
    with pytest.raises(ValueError, match=r"^side must be 'below' or 'above'; endpo"):
        ks.discharge_time(iv, -0.5, endpoint="pain_change")
    back = ks.discharge_time(iv, -0.5, endpoint="pain_change", side="above")
    e, tt = iv.effect.values[0, 0], iv.time.values
    i = np.flatnonzero(e < -0.5).max()  # the last output time below -0.5 cm
    cross = tt[i] + (tt[i + 1] - tt[i]) * (e[i] + 0.5) / (e[i] - e[i + 1])
    assert back.values[0] == pytest.approx(cross, rel=1e-12)
    assert ks.load_model("simons_2022").ke0("s_ketamine_pain") == pytest.approx(
        math.log(2) / (11.8 / 60), rel=1e-14
    )
    film_dose = ks.Dose.bolus("50 mg", route="sublingual")
    film = ks.simulate("simons_2022", film_dose, times=t)  # no warning by default
    assert np.isnan(film.effect.values).all()
    assert "estimated after route(s) iv only" in film.effect.attrs["note"]
    assert np.isfinite(film.concentration.values).all()
    with pytest.warns(ks.ValidityWarning, match=r"effect 'pain_change' is NaN: "):
        ks.simulate("simons_2022", film_dose, times=t, output=SITES)


def test_endpoint_routes_must_exist():
    d = base(effects={"e": endpoint(routes=["nasal"], routes_note="x")})
    refused(
        d, r"\[effects\.e\.routes\] must list routes of this model; got \['nasal'\]"
    )


def test_effect_sites_refused_with_time_varying_flows():
    d = base(
        time_effects=[{"parameter": "k", "slope": 0.01, "unit": "1/h", "source": "s"}]
    )
    with pytest.raises(
        ValueError,
        match=r"^model 'one' has effect sites and time-varying flows; effect sites "
        r"join the constant rate matrix",
    ):
        ks.simulate(ks.model_from_dict(d), ks.Dose.bolus("1 mg"), times=T, output=SITES)
