"""Review checks of effect sites by closed forms written here: a one-compartment
model (V, k) with an effect site (ke0), including the degenerate ke0 == k, a
constant-rate infusion, and superposition of two doses."""

from __future__ import annotations

import numpy as np
import pytest

import ketasim as ks

V, K = 10.0, 0.5  # L, 1/h
SITES = ks.Trajectories(effects=True)
T = np.linspace(0.0, 10.0, 101)


def _p(value, unit):
    return {"value": value, "unit": unit, "description": "d", "source": "s",
            "grade": "choice"}  # fmt: skip


def _model(ke0: float):
    return ks.model_from_dict(
        {
            "schema_version": 1,
            "id": "one_site",
            "name": "one_site",
            "drug": "ketamine",
            "enantiomer": "racemic",
            "population": "test",
            "sampling": "venous",
            "grade": "choice",
            "references": [{"key": "x", "citation": "test"}],
            "parameters": {
                "V": _p(V, "L"),
                "k": _p(K, "1/h"),
                "ke0": _p(ke0, "1/h"),
            },
            "compartments": {
                "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
            },
            "flows": [{"from": "central", "k": "k"}],
            "routes": {"iv": {"kind": "intravenous", "target": "central"}},
            "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
            "effect_sites": {"ce": {"analyte": "ketamine", "ke0": "ke0"}},
        }
    )


def _ce(model, regimen):
    ds = ks.simulate(model, regimen, times=T, output=SITES)
    da = ds.effect_site_concentration
    assert da.attrs["units"] == "ng/mL"
    return da.sel(effect_site="ce").values[0]


def test_bolus_with_ke0_equal_to_k_is_c0_k_t_exp():
    # dCe/dt = k (C0 e^-kt - Ce), Ce(0) = 0  =>  Ce = C0 k t e^-kt
    c0 = 100.0 / V * 1000.0  # ng/mL
    np.testing.assert_allclose(
        _ce(_model(K), ks.Dose.bolus("100 mg")),
        c0 * K * T * np.exp(-K * T),
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize("ke0", [0.1, 2.0, 30.0])
def test_constant_infusion_closed_form(ke0):
    rate, dur = 50.0, 4.0  # mg/h for 4 h
    css = rate / (K * V) * 1000.0  # ng/mL
    t = T[T <= dur]
    expected = css * (1 - (ke0 * np.exp(-K * t) - K * np.exp(-ke0 * t)) / (ke0 - K))
    got = _ce(_model(ke0), ks.Dose.infusion(f"{rate * dur} mg", duration="4 h"))
    np.testing.assert_allclose(got[T <= dur], expected, rtol=1e-9, atol=1e-9)


def test_superposition_and_dose_linearity():
    m = _model(2.0)
    a = ks.Dose.bolus("30 mg")
    b = ks.Dose.infusion("70 mg", duration="1 h", time=3.0)
    both = _ce(m, ks.Regimen([a, b]))
    np.testing.assert_allclose(
        both, _ce(m, ks.Regimen([a])) + _ce(m, ks.Regimen([b])), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        _ce(m, ks.Dose.bolus("90 mg")), 3 * _ce(m, a), rtol=1e-12, atol=1e-9
    )
