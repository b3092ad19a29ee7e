"""DESIGN §8 workloads W1–W3 and the hand-written scipy baseline.

The scipy baseline is written here by hand, independent of ketasim: the 3-compartment
ODE per patient with ``solve_ivp(method="LSODA", rtol=1e-6, atol=1e-9)``, integrated
piecewise between infusion switches and read at the output times with ``t_eval``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import solve_ivp

import ketasim as ks

V1, K10, K12, K21, K13, K31 = 0.063, 0.4381, 0.5921, 0.2470, 0.5900, 0.0146  # /min
W2_DAYS = [0, 3, 7, 10, 14, 17]


def w1():
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    return dose, ks.grid("24 h", "1 min")


def w2_parameters(n: int, seed: int = 2026) -> dict[str, np.ndarray]:
    """Log-normal 30 % CV on CL, V1, Q2, V2, Q3, V3 around the Domino values, as
    per-subject micro-constants in the model file's units (L/kg, 1/min)."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.log1p(0.3**2))
    cl, q2, q3 = K10 * V1, K12 * V1, K13 * V1
    v2, v3 = q2 / K21, q3 / K31
    e = lambda: np.exp(rng.normal(0.0, sd, n))  # noqa: E731
    CL, v1, Q2, V2, Q3, V3 = cl * e(), V1 * e(), q2 * e(), v2 * e(), q3 * e(), v3 * e()
    return {"V1": v1, "k10": CL / v1, "k12": Q2 / v1, "k21": Q2 / V2, "k13": Q3 / v1,
            "k31": Q3 / V3}


def w2_regimen():
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    return ks.Regimen.at(W2_DAYS, dose, unit="d"), ks.grid("21 d", "5 min")


def w3_regimen():
    dose = ks.Dose.bolus("56 mg", route="intranasal")
    return (ks.Regimen.at([0, 3, 7, 10, 14, 17, 21, 24], dose, unit="d"),
            ks.grid("28 d", "5 min"))


def scipy_patient(p: dict[str, float], times: np.ndarray, weight: float = 70.0
                  ) -> np.ndarray:
    """Concentration (ng/mL) of one W2 patient with scipy LSODA."""
    k = {name: p[name] * 60.0 for name in ("k10", "k12", "k21", "k13", "k31")}
    v1 = p["V1"] * weight
    rate = 0.5 * weight / (40 / 60)

    def f(t, x, r):
        return [r - (k["k10"] + k["k12"] + k["k13"]) * x[0] + k["k21"] * x[1]
                + k["k31"] * x[2], k["k12"] * x[0] - k["k21"] * x[1],
                k["k13"] * x[0] - k["k31"] * x[2]]

    switches = sorted({d * 24.0 for d in W2_DAYS} | {d * 24.0 + 40 / 60
                                                      for d in W2_DAYS})
    edges = [0.0] + [s for s in switches if 0 < s < times[-1]] + [times[-1]]
    out = np.zeros(times.size)
    x = [0.0, 0.0, 0.0]
    for a, b in itertools.pairwise(edges):
        on = any(d * 24.0 <= a < d * 24.0 + 40 / 60 for d in W2_DAYS)
        mask = (times >= a) & (times < b)
        # one solve per segment: the output times plus the segment end, whose state
        # starts the next segment
        t_eval = np.append(times[mask], b)
        sol = solve_ivp(f, (a, b), x, method="LSODA", rtol=1e-6, atol=1e-9,
                        t_eval=t_eval, args=(rate if on else 0.0,))
        out[mask] = sol.y[0, :-1] / v1 * 1000.0
        x = sol.y[:, -1]
    out[times == times[-1]] = x[0] / v1 * 1000.0
    return out
