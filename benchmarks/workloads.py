"""Benchmark workloads W1–W3 (defined in benchmarks/README.md) and the hand-written
scipy baseline.

Every workload is first written down as plain numbers (:class:`Course`); the ketasim
inputs (``ks.Regimen``, ``ks.grid``) and the scipy baseline are both built from those
numbers, so the baseline never calls ketasim.

* W1: one 70 kg patient, 0.5 mg/kg over 40 min, output every 1 min for 24 h.
* W2: ``n`` patients, log-normal IIV (30 % CV) on CL, V1, Q2, V2, Q3, V3 around the
  Domino typical values; six 40-min 0.5 mg/kg infusions on days 0, 3, 7, 10, 14, 17;
  output every 5 min over 21 days (6 049 points).
* W3: the W2 patients' disposition, intranasal 56 mg (F 0.48, ka 2.5 /h, the model's
  ``intranasal`` route) on days 0, 3, 7, 10, 14, 17, 21, 24; every 5 min over 28 days.

The scipy baseline (:func:`scipy_patient`) is what a user would write by hand: the
3-compartment ODE (plus a nasal depot for W3) as a Python function, one
``solve_ivp(method="LSODA", rtol=1e-6, atol=1e-9)`` per piece between dose events
(infusion on/off, nasal doses), read at the output times with ``t_eval``.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

import ketasim as ks

MODEL = "domino"
WEIGHT = 70.0  # kg
# models/domino.toml (opentiva Domino set): V1 in L/kg, rate constants in 1/min
V1, K10, K12, K21, K13, K31 = 0.063, 0.4381, 0.5921, 0.2470, 0.5900, 0.0146
TYPICAL = {"V1": V1, "k10": K10, "k12": K12, "k21": K21, "k13": K13, "k31": K31}
F_IN, KA_IN = 0.48, 2.5  # intranasal bioavailability, absorption rate constant 1/h
CV = 0.30
SEED = 2026
W2_DAYS = (0, 3, 7, 10, 14, 17)
W3_DAYS = (0, 3, 7, 10, 14, 17, 21, 24)

# The scipy baseline's tolerances (the brief's "hand-written scipy loop") and a tight
# setting used only as the accuracy reference in the checks: LSODA at rtol 1e-6 has a
# global error of ~2e-5 relative over 21 days, too loose to check ketasim to 1e-5.
BASELINE_TOL = {"rtol": 1e-6, "atol": 1e-9}
REFERENCE_TOL = {"rtol": 1e-11, "atol": 1e-14}


@dataclass(frozen=True)
class Course:
    """A dosing course as plain numbers: dose times (h), amount per dose (mg/kg if
    ``per_kg``), infusion duration (h, 0 for a first-order route), route, and the
    output grid (end in h, step in min)."""

    name: str
    dose_times_h: tuple[float, ...]
    amount: float
    per_kg: bool
    duration_h: float
    route: str  # "iv" (infusion into central) or "intranasal" (F into a depot)
    end_h: float
    step_min: float

    def times(self) -> np.ndarray:
        """The output times without ketasim (for checking ``ks.grid``)."""
        n = round(self.end_h * 60 / self.step_min) + 1
        return np.arange(n) * self.step_min / 60.0

    def dose_mg(self, weight: float = WEIGHT) -> float:
        return self.amount * weight if self.per_kg else self.amount


W1 = Course("W1", (0.0,), 0.5, True, 40 / 60, "iv", 24.0, 1.0)
W2 = Course(
    "W2", tuple(24.0 * d for d in W2_DAYS), 0.5, True, 40 / 60, "iv", 21 * 24.0, 5.0
)
W3 = Course(
    "W3",
    tuple(24.0 * d for d in W3_DAYS),
    56.0,
    False,
    0.0,
    "intranasal",
    28 * 24.0,
    5.0,
)
COURSES = {"W1": W1, "W2": W2, "W3": W3}


# --- ketasim inputs, exactly as the workloads are specified -------------------------


def w1():
    """(dose, times) of W1."""
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    return dose, ks.grid("24 h", "1 min")


def w2_regimen():
    """(regimen, times) of W2: 6 049 output times."""
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    return ks.Regimen.at(list(W2_DAYS), dose, unit="d"), ks.grid("21 d", "5 min")


def w3_regimen():
    """(regimen, times) of W3: 8 065 output times."""
    dose = ks.Dose.bolus("56 mg", route="intranasal")
    return ks.Regimen.at(list(W3_DAYS), dose, unit="d"), ks.grid("28 d", "5 min")


def ketasim_inputs(name: str):
    """(regimen or dose, times) for workload ``name``."""
    return {"W1": w1, "W2": w2_regimen, "W3": w3_regimen}[name]()


def w2_parameters(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Per-subject parameters of the W2/W3 population, in the model file's units.

    CL = k10·V1, Q2 = k12·V1, V2 = Q2/k21, Q3 = k13·V1, V3 = Q3/k31 (per kg) each get
    an independent log-normal factor exp(η), η ~ N(0, ω²), ω² = log(1 + CV²) (median
    at the typical value), and are converted back to V1 (L/kg) and k10 = CL/V1,
    k12 = Q2/V1, k21 = Q2/V2, k13 = Q3/V1, k31 = Q3/V3 (1/min). The draws are one
    (n, 6) block from ``np.random.default_rng(seed)``, filled row by row, so the
    first m patients are the same for every n >= m (the scipy subset is the first
    patients of the full population).
    """
    rng = np.random.default_rng(seed)
    omega = np.sqrt(np.log1p(CV**2))
    eta = rng.standard_normal((n, 6)) * omega
    cl, q2, q3 = K10 * V1, K12 * V1, K13 * V1
    typical = np.array([cl, V1, q2, q2 / K21, q3, q3 / K31])
    CL, v1, Q2, V2, Q3, V3 = (typical * np.exp(eta)).T
    return {
        "V1": v1,
        "k10": CL / v1,
        "k12": Q2 / v1,
        "k21": Q2 / V2,
        "k13": Q3 / v1,
        "k31": Q3 / V3,
    }


#: Units of ``w2_parameters`` (the model file's): ketasim refuses bare numbers for
#: per-kg parameters and for parameters stated in a unit other than its canonical one.
W2_UNITS = {
    "V1": "L/kg",
    "k10": "1/min",
    "k12": "1/min",
    "k21": "1/min",
    "k13": "1/min",
    "k31": "1/min",
}


def with_units(params: dict[str, np.ndarray]) -> dict[str, tuple]:
    """``params`` as ``ks.Subjects(parameters=...)`` takes them: (values, unit)
    pairs."""
    return {k: (v, W2_UNITS[k]) for k, v in params.items()}


def subject(params: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Patient ``i``'s parameters as scalars."""
    return {k: float(v[i]) for k, v in params.items()}


# --- the hand-written scipy baseline (no ketasim below this line) -------------------


def scipy_patient(
    p: dict[str, float],
    course: Course,
    times: np.ndarray,
    *,
    weight: float = WEIGHT,
    rtol: float = BASELINE_TOL["rtol"],
    atol: float = BASELINE_TOL["atol"],
) -> np.ndarray:
    """Central concentration (ng/mL) of one patient at ``times`` (h) with scipy LSODA.

    ``p``: V1 (L/kg) and k10, k12, k21, k13, k31 (1/min). States are amounts in mg:
    central, peripheral 1, peripheral 2 (and the nasal depot for the intranasal
    route, which receives F × dose and empties into central at ka). The integration
    restarts at every dose event, so no step crosses a discontinuity; a nasal dose
    given at an output time is already in the depot at that time.
    """
    k10, k12, k21, k13, k31 = (p[k] * 60.0 for k in ("k10", "k12", "k21", "k13", "k31"))
    k1 = k10 + k12 + k13
    v1 = p["V1"] * weight  # L
    dose = course.dose_mg(weight)
    nasal = course.route == "intranasal"

    def rhs_iv(t, x, rate):
        c, a2, a3 = x
        return [
            rate - k1 * c + k21 * a2 + k31 * a3,
            k12 * c - k21 * a2,
            k13 * c - k31 * a3,
        ]

    def rhs_nasal(t, x, rate):
        c, a2, a3, d = x
        absorbed = KA_IN * d
        return [
            absorbed - k1 * c + k21 * a2 + k31 * a3,
            k12 * c - k21 * a2,
            k13 * c - k31 * a3,
            -absorbed,
        ]

    rhs = rhs_nasal if nasal else rhs_iv
    starts = np.asarray(course.dose_times_h, dtype=float)
    ends = starts + course.duration_h
    end = float(times[-1])
    cuts = {0.0, end, *starts.tolist()}
    if not nasal:
        cuts |= set(ends.tolist())
    edges = sorted(c for c in cuts if 0.0 <= c <= end)
    x = np.zeros(4 if nasal else 3)
    out = np.empty(times.size)
    for a, b in itertools.pairwise(edges):
        if nasal:
            x[3] += F_IN * dose * np.count_nonzero(starts == a)
            rate = 0.0
        else:
            running = np.count_nonzero((starts <= a) & (a < ends))
            rate = dose / course.duration_h * running
        mask = (times >= a) & (times < b)
        # the output times in [a, b) and the piece's end, whose state starts the next
        t_eval = np.append(times[mask], b)
        sol = solve_ivp(
            rhs,
            (a, b),
            x,
            method="LSODA",
            t_eval=t_eval,
            args=(rate,),
            rtol=rtol,
            atol=atol,
        )
        if not sol.success:
            raise RuntimeError(f"LSODA failed on [{a}, {b}] h: {sol.message}")
        out[mask] = sol.y[0, :-1]
        x = sol.y[:, -1].copy()
    out[times == end] = x[0]
    return out / v1 * 1000.0  # mg/L -> ng/mL


def scipy_loop(
    params: dict[str, np.ndarray], course: Course, times: np.ndarray, m: int, **tol
) -> np.ndarray:
    """The baseline over the first ``m`` patients: (m, times) concentrations."""
    return np.stack(
        [scipy_patient(subject(params, i), course, times, **tol) for i in range(m)]
    )


def rel_error(got: np.ndarray, ref: np.ndarray, floor: float = 1e-3) -> float:
    """Largest relative difference where ``ref`` exceeds ``floor`` × its peak."""
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    big = ref > floor * ref.max()
    return float(np.max(np.abs(got[big] - ref[big]) / ref[big]))


@functools.lru_cache(maxsize=64)
def reference(name: str, i: int) -> np.ndarray:
    """Tight-tolerance LSODA (``REFERENCE_TOL``) for patient ``i`` of workload
    ``name`` (W1: the typical patient), the accuracy reference of the checks."""
    course = COURSES[name]
    p = dict(TYPICAL) if name == "W1" else subject(w2_parameters(i + 1), i)
    return scipy_patient(p, course, course.times(), **REFERENCE_TOL)
