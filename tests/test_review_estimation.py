"""Review checks of MAP estimation by a one-dimensional oracle written here: one
compartment, log-normal IIV on V only, additive error. With f = a exp(-eta)
(a = D/V e^-kt), the MAP eta solves d/deta [(y - f)^2 / s^2 + eta^2 / w2] = 0,
found by scipy's brentq; its Gauss-Newton variance is 1 / (f^2 / s^2 + 1 / w2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

import ketasim as ks

V, K, W2, SD = 10.0, 0.5, 0.09, 20.0  # L, 1/h, omega^2, ng/mL
DOSE, T_OBS = 100.0, 2.0  # mg, h


def _p(value, unit):
    return {"value": value, "unit": unit, "description": "d", "source": "s",
            "grade": "choice"}  # fmt: skip


MODEL = ks.model_from_dict(
    {
        "schema_version": 1,
        "id": "one_map",
        "name": "one_map",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "test",
        "sampling": "venous",
        "grade": "choice",
        "references": [{"key": "x", "citation": "test"}],
        "parameters": {"V": _p(V, "L"), "k": _p(K, "1/h")},
        "compartments": {
            "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
        },
        "flows": [{"from": "central", "k": "k"}],
        "routes": {"iv": {"kind": "intravenous", "target": "central"}},
        "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
        "variability": {
            "V": {"distribution": "lognormal", "omega2": W2, "source": "s"}
        },
        "residual": {
            "ketamine": {"additive": SD, "additive_unit": "ng/mL", "source": "s"}
        },
    }
)
A = DOSE / V * math.exp(-K * T_OBS) * 1000.0  # typical prediction, ng/mL


def _estimate(y: float):
    obs = {"subject": [7], "time": [T_OBS], "concentration": [y]}
    return ks.estimate(MODEL, obs, doses=ks.Dose.bolus(f"{DOSE} mg"))


@pytest.mark.parametrize("ratio", [0.3, 1.0, 1.7, 4.0])
def test_map_eta_and_its_se_match_the_one_dimensional_oracle(ratio):
    y = ratio * A

    def grad(eta):  # d/deta of (y - A e^-eta)^2 / SD^2 + eta^2 / W2, halved
        f = A * math.exp(-eta)
        return (y - f) * f / SD**2 + eta / W2

    eta = brentq(grad, -5.0, 5.0, xtol=1e-14)
    est = _estimate(y)
    assert int(est.status.item()) == 0
    got = est.eta.sel(eta_parameter="V").item()
    assert got == pytest.approx(eta, abs=1e-6)
    f = A * math.exp(-eta)
    assert est.ipred.values.ravel()[0] == pytest.approx(f, rel=1e-6)
    assert est.pred.values.ravel()[0] == pytest.approx(A, rel=1e-9)
    se = math.sqrt(1.0 / (f**2 / SD**2 + 1.0 / W2))
    assert est.eta_se.sel(eta_parameter="V").item() == pytest.approx(se, rel=1e-4)
    v = est.parameters.sel(parameter="V").item()
    assert v == pytest.approx(V * math.exp(eta), rel=1e-6)
    assert est.ipred.attrs["units"] == "ng/mL"


def test_typical_data_give_eta_zero_and_subject_order_does_not_matter():
    assert _estimate(A).eta.item() == pytest.approx(0.0, abs=1e-8)
    ys = np.array([0.5, 2.0, 1.2]) * A
    fwd = ks.estimate(
        MODEL,
        {"subject": [1, 2, 3], "time": [T_OBS] * 3, "concentration": ys},
        doses=ks.Dose.bolus(f"{DOSE} mg"),
    )
    rev = ks.estimate(
        MODEL,
        {"subject": [3, 2, 1], "time": [T_OBS] * 3, "concentration": ys[::-1]},
        doses=ks.Dose.bolus(f"{DOSE} mg"),
    )
    np.testing.assert_allclose(
        fwd.eta.sel(subject=[1, 2, 3]).values, rev.eta.sel(subject=[1, 2, 3]).values
    )
