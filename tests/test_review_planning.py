"""Review checks of planning and body size by closed forms written here:
one-compartment infusion Cmax and AUC for find_dose, the STANPUMP first-step and
maintenance rates for a plasma TCI, the effect-site plan's peak, elasticities, and
the Devine / Janmahasatian / adjusted weight formulas by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ketasim as ks
from ketasim import bodysize as bs

V, K, KE0 = 10.0, 0.5, 2.0  # L, 1/h, 1/h


def _p(value, unit):
    return {"value": value, "unit": unit, "description": "d", "source": "s",
            "grade": "choice"}  # fmt: skip


MODEL = ks.model_from_dict(
    {
        "schema_version": 1,
        "id": "one_plan",
        "name": "one_plan",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "test",
        "sampling": "venous",
        "grade": "choice",
        "references": [{"key": "x", "citation": "test"}],
        "parameters": {"V": _p(V, "L"), "k": _p(K, "1/h"), "ke0": _p(KE0, "1/h")},
        "compartments": {
            "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
        },
        "flows": [{"from": "central", "k": "k"}],
        "routes": {"iv": {"kind": "intravenous", "target": "central"}},
        "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
        "effect_sites": {"ce": {"analyte": "ketamine", "ke0": "ke0"}},
    }
)
DUR = 2 / 3  # h (40 min)
INFUSION = ks.Dose.infusion("10 mg", duration="40 min")


@pytest.mark.parametrize("method", ["linear", "search"])
def test_find_dose_cmax_is_the_infusion_closed_form(method):
    # Cmax = D / DUR / (k V) (1 - exp(-k DUR)), mg/L
    found = ks.find_dose(
        MODEL,
        INFUSION,
        ks.Target("cmax", "150 ng/mL"),
        times=ks.grid("3 h", "1 min"),
        method=method,
        **({"rtol": 1e-9} if method == "search" else {}),
    )
    expected = 0.150 * K * V * DUR / (1 - math.exp(-K * DUR))
    assert found.dose.amount == pytest.approx(expected, rel=1e-7)
    assert found.units == "ng/mL"


def test_find_dose_auc_in_another_unit():
    # AUC(0-inf) = D / (k V); 0.3 mg*h/L = 300 ng*h/mL; course AUC over 60 h
    found = ks.find_dose(
        MODEL,
        INFUSION,
        ks.Target("auc", "0.3 mg*h/L", per="course"),
        times=ks.grid("60 h", "5 min"),
    )
    assert found.dose.amount == pytest.approx(0.3 * K * V, rel=1e-9)


def test_plasma_tci_rates_are_stanpump_closed_forms():
    h = 10 / 3600
    plan = ks.tci(MODEL, "150 ng/mL", duration="40 min", step="10 s")
    assert plan.rates.attrs["units"] == "mg/h"
    assert plan.predicted.attrs["units"] == "ng/mL"
    # first step brings C to target at its end; then k V C holds it
    first = 0.150 * K * V / (1 - math.exp(-K * h))
    assert float(plan.rates[0]) == pytest.approx(first, rel=1e-9)
    np.testing.assert_allclose(plan.rates.values[1:], 0.150 * K * V, rtol=1e-9)
    np.testing.assert_allclose(plan.predicted.values, 150.0, rtol=1e-9)


def test_effect_site_tci_peaks_at_the_target_without_overshoot():
    plan = ks.tci(MODEL, "150 ng/mL", duration="3 h", step="10 s", site="effect")
    assert plan.ke0 == pytest.approx(KE0)
    t = np.arange(0.0, 3.0 + 1e-9, 10 / 3600)
    ds = ks.simulate(MODEL, plan.regimen, times=t, output=ks.Trajectories(effects=True))
    ce = ds.effect_site_concentration.sel(effect_site="ce").values[0]
    assert ce.max() == pytest.approx(150.0, rel=1e-6)
    assert ce[t >= 1.5] == pytest.approx(150.0, rel=1e-2)


def test_elasticities_of_a_bolus():
    t = ks.grid("60 h", "5 min")
    cmax = ks.elasticities(MODEL, ks.Dose.bolus("10 mg"), metric="cmax", times=t)
    auc = ks.elasticities(
        MODEL, ks.Dose.bolus("10 mg"), metric="auc", per="course", times=t
    )
    # Cmax = D / V; AUC = D / (k V)
    assert cmax.population.sel(parameter="V").item() == pytest.approx(-1, abs=1e-7)
    assert cmax.population.sel(parameter="k").item() == pytest.approx(0, abs=1e-7)
    assert auc.population.sel(parameter="k").item() == pytest.approx(-1, abs=1e-6)
    assert auc.population.attrs["units"] == "1"


# ---- body size, by hand ------------------------------------------------------------


@pytest.mark.parametrize(
    "h_cm, female, ibw",
    [
        (152.4, 0, 50.0),
        (152.4, 1, 45.5),
        (182.88, 0, 50 + 2.3 * 12),
        (170.18, 1, 45.5 + 2.3 * 7),
    ],
)
def test_devine_by_hand(h_cm, female, ibw):
    assert float(bs.ideal_body_weight(h_cm, female)) == pytest.approx(ibw, rel=1e-12)


def test_janmahasatian_by_hand():
    # 100 kg, 1.60 m: BMI 39.0625 kg/m2
    bmi = 100 / 1.6**2
    assert float(bs.lean_body_weight(100, 160, 0)) == pytest.approx(
        9270 * 100 / (6680 + 216 * bmi)
    )
    assert float(bs.lean_body_weight(100, 160, 1)) == pytest.approx(
        9270 * 100 / (8780 + 244 * bmi)
    )


@settings(max_examples=60, deadline=None)
@given(
    h=st.floats(152.4, 210.0),
    bmi=st.floats(16.0, 70.0),
    female=st.sampled_from([0, 1]),
)
def test_body_size_orderings(h, bmi, female):
    w = bmi * (h / 100) ** 2
    lbw = float(bs.lean_body_weight(w, h, female))
    ibw = float(bs.ideal_body_weight(h, female))
    abw = float(bs.adjusted_body_weight(w, h, female))
    assert 0 < lbw < w
    assert abw == pytest.approx(ibw + 0.4 * (w - ibw))
    assert min(ibw, w) <= abw <= max(ibw, w)
    # dosing_weight picks the same numbers per subject
    cov = {
        "weight": np.array([w]),
        "height": np.array([h]),
        "female": np.array([female]),
    }
    assert float(bs.dosing_weight("lean", cov)[0]) == pytest.approx(lbw)
    assert float(bs.dosing_weight("adjusted", cov)[0]) == pytest.approx(abw)


def test_lean_dose_in_mg_is_mg_per_kg_times_lean_weight():
    subj = ks.Subjects(covariates={"weight": 150.0, "height": 175.0, "female": 0})
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min", weight_basis="lean")
    ds = ks.simulate(MODEL, d, subjects=subj, times=[0.0, 1.0])
    bmi = 150 / 1.75**2
    assert ds.dose_mg.item() == pytest.approx(0.5 * 9270 * 150 / (6680 + 216 * bmi))
    assert ds.dose_mg.attrs["units"] == "mg"
