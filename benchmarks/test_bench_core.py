"""pytest-benchmark suite for workloads W1–W4 (benchmarks/README.md) and the
hand-written scipy baseline.

Each benchmark has a smoke size (runs in the default test suite, where
``--benchmark-disable`` executes the body once) and the full size (``slow``); both
check what they ran against a tight-tolerance scipy reference on the same patients
(patients 0, 1 and the last one). Timing is ``benchmark.pedantic`` after one warm-up
round; the first call of each solver path in the process (numba compile or cache
load) is timed apart by the ``first_call`` fixture and stored as
``extra_info["first_call_s"]``. The scipy LSODA loop is timed in the same run on a few
patients (``test_scipy_lsoda_baseline``); its per-patient time × the full size is
stored as ``scipy_lsoda_s_extrapolated`` with the ratio to ketasim.

    python -m pytest benchmarks -m slow --benchmark-enable    # full sizes
    python benchmarks/report.py                               # the README table
"""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w
from .conftest import scipy_inputs

SMOKE, FULL = 64, 10_000  # patients in W2/W3
W4_SMOKE, W4_FULL = 1_000, 1_000_000  # patients in W4 (metrics only)
W4_ABOVE = 100.0  # ng/mL, the time-above threshold
SCIPY_SMOKE, SCIPY_FULL = 2, 20  # patients the scipy loop is timed on
ROUNDS = {"W1": 30, "W2": 7, "W2-ode": 5, "W3": 5, "W4": 3, "scipy": 3}

# Tolerances of the checks (relative, where the reference exceeds 1e-3 of its peak).
# The reference is LSODA at rtol 1e-11: ketasim's exact path agrees to ~1e-9; the
# ODE path at rtol 1e-6 to ~3e-6; the baseline LSODA at rtol 1e-6 to ~2e-5.
EXACT_TOL, ODE_TOL, BASELINE_TOL = 1e-7, 1e-5, 1e-4

HAVE_ODE = importlib.util.find_spec("ketasim._kernels.ode") is not None
needs_ode = pytest.mark.skipif(
    not HAVE_ODE, reason="ketasim._kernels.ode (solver=ks.ODE()) is not importable yet"
)


def sizes(smoke: int, full: int):
    return [
        pytest.param(smoke, id=f"smoke-{smoke}"),
        pytest.param(full, id=f"full-{full}", marks=pytest.mark.slow),
    ]


def _time(benchmark, fn, rounds: int):
    """Timed rounds after one untimed warm-up (the first call in the process was
    already made and timed by the ``first_call`` fixture)."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


def _check_vs_reference(name: str, conc: np.ndarray, tol: float) -> float:
    """conc (n, T) against the tight scipy reference on patients 0, 1 and n-1."""
    n = conc.shape[0]
    worst = 0.0
    for i in sorted({0, min(1, n - 1), n - 1}):
        err = w.rel_error(conc[i], w.reference(name, i))
        assert err < tol, f"{name} patient {i}: relative error {err:.2e} > {tol:g}"
        worst = max(worst, err)
    return worst


def _info(benchmark, label: str, n: int, times: np.ndarray, first: dict, **more):
    benchmark.extra_info.update(
        {
            "workload": label,
            "patients": n,
            "output_times": int(times.size),
            **first,
            **more,
        }
    )


def _ratio(benchmark, scipy_times, name: str, n: int, note: str = "") -> None:
    """scipy per-patient time (same run) × n over ketasim's median: only when timed."""
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    per_patient, m = scipy_times.get(name, patients=SCIPY_FULL)
    extrapolated = per_patient * n
    benchmark.extra_info.update(
        {
            "scipy_lsoda_per_patient_s": per_patient,
            "scipy_lsoda_patients_timed": m,
            "scipy_lsoda_s_extrapolated": extrapolated,
            "scipy_note": f"scipy LSODA loop timed on {m} patient(s) in this run, "
            f"extrapolated linearly to {n}{note}",
            "ratio_scipy_extrapolated_over_ketasim": extrapolated
            / benchmark.stats.stats.median,
        }
    )


def _params(n: int) -> dict[str, tuple]:
    """W2 parameters as ``ks.Subjects(parameters=...)`` takes them: (values, unit)."""
    return w.with_units(w.w2_parameters(n))


# --- the hand-written scipy baseline --------------------------------------------


@pytest.mark.parametrize(
    "name, m, n",
    [
        pytest.param("W1", 1, 1, id="W1-smoke-1"),
        pytest.param("W1", 1, 1, id="W1-full-1", marks=pytest.mark.slow),
        pytest.param("W2", SCIPY_SMOKE, SMOKE, id=f"W2-smoke-{SCIPY_SMOKE}"),
        pytest.param(
            "W2", SCIPY_FULL, FULL, id=f"W2-full-{SCIPY_FULL}", marks=pytest.mark.slow
        ),
        pytest.param("W3", SCIPY_SMOKE, SMOKE, id=f"W3-smoke-{SCIPY_SMOKE}"),
        pytest.param(
            "W3", SCIPY_FULL, FULL, id=f"W3-full-{SCIPY_FULL}", marks=pytest.mark.slow
        ),
    ],
)
def test_scipy_lsoda_baseline(benchmark, first_call, scipy_times, name, m, n):
    """The per-patient solve_ivp(LSODA) loop on the first m patients."""
    first_call("exact")  # keep the first ketasim call of the process timed apart
    params, times = scipy_inputs(name, m)
    course = w.COURSES[name]
    conc = benchmark.pedantic(
        w.scipy_loop,
        args=(params, course, times, m),
        rounds=ROUNDS["scipy"],
        iterations=1,
        warmup_rounds=1,
    )
    err = _check_vs_reference(name, conc, BASELINE_TOL)
    # the baseline solves the same problem as ketasim (same patients, same doses)
    reg, ks_times = w.ketasim_inputs(name)
    np.testing.assert_array_equal(ks_times, times)
    ds = ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(parameters=w.with_units(params)),
        progress=False,
    )
    assert w.rel_error(conc, ds.concentration.values[:, 0]) < BASELINE_TOL
    benchmark.extra_info.update(
        {
            "workload": f"{name} scipy LSODA loop (rtol 1e-6, atol 1e-9)",
            "patients": m,
            "output_times": int(times.size),
            "max_rel_error_vs_reference": err,
        }
    )
    if benchmark.stats is not None:
        per_patient = benchmark.stats.stats.median / m
        scipy_times.record(name, per_patient, m)
        benchmark.extra_info.update(
            {
                "scipy_lsoda_per_patient_s": per_patient,
                "scipy_lsoda_s_extrapolated": per_patient * n,
                "extrapolated_to_patients": n,
                "scipy_note": f"timed on {m} patient(s), extrapolated linearly to {n}",
            }
        )


# --- ketasim ------------------------------------------------------------------------


@pytest.mark.parametrize("n", sizes(1, 1))
def test_w1_exact(benchmark, first_call, scipy_times, n):
    dose, times = w.w1()
    assert times.size == 24 * 60 + 1

    def fn():
        return ks.simulate(w.MODEL, dose, times=times, progress=False)

    first = first_call("exact")
    ds = _time(benchmark, fn, ROUNDS["W1"])
    err = _check_vs_reference("W1", ds.concentration.values[:, 0], EXACT_TOL)
    _info(
        benchmark,
        "W1 exact (one patient, 24 h every 1 min)",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W1", n)


@pytest.mark.parametrize("n", sizes(SMOKE, FULL))
def test_w2_exact_fresh(benchmark, first_call, scipy_times, n):
    """End to end: a new 484 MB (at full size) result every round, with the default
    per-dose pass (exact dose AUC and pre-dose levels)."""
    params = _params(n)
    reg, times = w.w2_regimen()
    assert times.size == 6049

    def fn():
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=params),
            progress=False,
        )

    first = first_call("exact")
    ds = _time(benchmark, fn, ROUNDS["W2"])
    conc = ds.concentration.values[:, 0]
    assert conc.shape == (n, 6049) and np.all(np.isfinite(conc))
    err = _check_vs_reference("W2", conc, EXACT_TOL)
    # the per-dose pass: six doses, AUC to the next dose positive
    assert ds.dose_auc.shape == (n, 1, 6) and np.all(ds.dose_auc.values > 0)
    _info(
        benchmark,
        "W2 exact, fresh result",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W2", n)


@pytest.mark.parametrize(
    "windows",
    [
        pytest.param(True, id="all-outputs"),
        pytest.param(False, id="concentrations-only"),
    ],
)
@pytest.mark.parametrize("n", sizes(SMOKE, FULL))
def test_w2_exact_out_buffer(benchmark, first_call, scipy_times, n, windows):
    """Into one caller-owned buffer reused every round (no allocation, no first touch
    of fresh pages). ``all-outputs`` has the same options as the fresh benchmark;
    ``concentrations-only`` also skips the per-dose pass
    (``Trajectories(dose_windows=False)``)."""
    params = _params(n)
    reg, times = w.w2_regimen()
    out = np.zeros((n, 1, times.size))

    def fn():
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=params),
            output=ks.Trajectories(dose_windows=windows, out=out),
            progress=False,
        )

    first = first_call("exact")
    ds = _time(benchmark, fn, ROUNDS["W2"])
    assert np.shares_memory(ds.concentration.values, out)
    fresh = ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(parameters=params),
        progress=False,
    )
    np.testing.assert_array_equal(out, fresh.concentration.values)
    if windows:
        np.testing.assert_array_equal(ds.dose_auc.values, fresh.dose_auc.values)
    else:
        assert "dose_auc" not in ds
    err = _check_vs_reference("W2", out[:, 0], EXACT_TOL)
    what = "all outputs" if windows else "concentrations only"
    _info(
        benchmark,
        f"W2 exact, into a reused out buffer ({what})",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W2", n)


@needs_ode
@pytest.mark.parametrize("n", sizes(SMOKE, FULL))
def test_w2_ode(benchmark, first_call, scipy_times, n):
    """The adaptive ODE path (rtol 1e-6, atol 1e-9) on W2, into a reused buffer."""
    params = _params(n)
    reg, times = w.w2_regimen()
    out = np.zeros((n, 1, times.size))

    def fn():
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=params),
            solver=ks.ODE(rtol=1e-6, atol=1e-9),
            output=ks.Trajectories(out=out),
            progress=False,
        )

    first = first_call("ode")
    ds = _time(benchmark, fn, ROUNDS["W2-ode"])
    assert ds.attrs["solver"].startswith("ode") and ds.attrs["rtol"] == 1e-6
    assert np.all(ds.status.values == 0)
    err = _check_vs_reference("W2", out[:, 0], ODE_TOL)
    # every patient against the exact path
    exact = ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(parameters=params),
        output=ks.Trajectories(dose_windows=False),
        progress=False,
    ).concentration.values
    worst = max(w.rel_error(out[i, 0], exact[i, 0]) for i in range(n))
    assert worst < ODE_TOL, f"ODE vs exact: {worst:.2e}"
    _info(
        benchmark,
        "W2 ODE (rtol 1e-6, atol 1e-9), into an out buffer",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
        max_rel_error_vs_exact_all=worst,
        median_ode_steps_per_patient=float(np.median(ds.ode_steps.values)),
    )
    _ratio(benchmark, scipy_times, "W2", n)


@pytest.mark.parametrize("n", sizes(SMOKE, FULL))
def test_w3_exact(benchmark, first_call, scipy_times, n):
    """Intranasal course, end to end (fresh result every round)."""
    params = _params(n)
    reg, times = w.w3_regimen()
    assert times.size == 28 * 24 * 12 + 1

    def fn():
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=params),
            progress=False,
        )

    first = first_call("exact")
    ds = _time(benchmark, fn, ROUNDS["W3"])
    conc = ds.concentration.values[:, 0]
    assert conc.shape == (n, times.size) and np.all(np.isfinite(conc))
    err = _check_vs_reference("W3", conc, EXACT_TOL)
    # bioavailability on the first patient: AUC(nasal) / AUC(IV bolus) = F exactly
    one = {k: (v[:1], u) for k, (v, u) in params.items()}
    t = ks.grid("300 h", "1 h")
    a = ks.simulate(
        w.MODEL,
        ks.Dose.bolus("56 mg", route="intranasal"),
        times=t,
        subjects=ks.Subjects(parameters=one),
        output=ks.Trajectories(auc=True),
        progress=False,
    ).auc[0, 0, -1]
    b = ks.simulate(
        w.MODEL,
        ks.Dose.bolus("56 mg"),
        times=t,
        subjects=ks.Subjects(parameters=one),
        output=ks.Trajectories(auc=True),
        progress=False,
    ).auc[0, 0, -1]
    assert float(a / b) == pytest.approx(w.F_IN, rel=1e-9)
    _info(
        benchmark,
        "W3 exact, intranasal, fresh result",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W3", n)


@pytest.mark.parametrize("n", sizes(SMOKE, FULL))
def test_w3_exact_out_buffer(benchmark, first_call, scipy_times, n):
    """W3 into one caller-owned buffer reused every round, concentrations only
    (``Trajectories(dose_windows=False)``), as the W2 row of the same name."""
    params = _params(n)
    reg, times = w.w3_regimen()
    out = np.zeros((n, 1, times.size))

    def fn():
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=params),
            output=ks.Trajectories(dose_windows=False, out=out),
            progress=False,
        )

    first = first_call("exact")
    ds = _time(benchmark, fn, ROUNDS["W3"])
    assert np.shares_memory(ds.concentration.values, out)
    fresh = ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(parameters=params),
        progress=False,
    )
    np.testing.assert_array_equal(out, fresh.concentration.values)
    err = _check_vs_reference("W3", out[:, 0], EXACT_TOL)
    _info(
        benchmark,
        "W3 exact, into a reused out buffer (concentrations only)",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W3", n)


def _window_metrics(
    conc: np.ndarray, times: np.ndarray, starts: np.ndarray, above: float
):
    """Per-dose Cmax, Tmax and time above from one trajectory on its grid."""
    edges = np.searchsorted(times, np.append(starts, np.inf))
    edges[-1] = times.size
    cmax, tmax, tab = [], [], []
    for a, b in itertools.pairwise(edges):
        seg = conc[a:b]
        j = int(np.argmax(seg))
        cmax.append(seg[j])
        tmax.append(times[a + j] - times[a])
        # linear interpolation between grid points, up to the next dose's start
        c0, c1 = (
            conc[a : min(b + 1, times.size) - 1],
            conc[a + 1 : min(b + 1, times.size)],
        )
        dt = np.diff(times[a : min(b + 1, times.size)])
        both = (c0 > above) & (c1 > above)
        cross = (c0 > above) != (c1 > above)
        frac = np.where(
            cross,
            np.abs(np.maximum(c0, c1) - above) / np.where(cross, np.abs(c1 - c0), 1.0),
            0.0,
        )
        tab.append(float(np.sum(dt * both) + np.sum(dt * frac * cross)))
    return np.array(cmax), np.array(tmax), np.array(tab)


@pytest.mark.parametrize("n", sizes(W4_SMOKE, W4_FULL))
def test_w4_metrics(benchmark, first_call, scipy_times, n):
    """W2 regimen, metrics only: per-dose Cmax, Tmax, exact AUC, pre-dose level and
    time above 100 ng/mL streamed per subject chunk; no trajectories are stored."""
    params = _params(n)
    reg, times = w.w2_regimen()

    def run(p):
        return ks.simulate(
            w.MODEL,
            reg,
            times=times,
            subjects=ks.Subjects(parameters=p),
            output=ks.Metrics(above=W4_ABOVE),
            progress=False,
        )

    first = first_call("metrics")
    # warm-up at the smoke size
    run({k: (v[:W4_SMOKE], u) for k, (v, u) in params.items()})
    m = benchmark.pedantic(
        run, args=(params,), rounds=ROUNDS["W4"], iterations=1, warmup_rounds=0
    )
    assert m.cmax.shape == (n, 1, 6) and np.all(m.status.values == 0)
    # patients 0, 1 and n-1 against their W2 trajectories (exact path, same patients)
    idx = [0, 1, n - 1]
    ds = ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(
            parameters={k: (v[idx], u) for k, (v, u) in params.items()}
        ),
        progress=False,
    )
    starts = np.array(reg.times)
    for row, i in enumerate(idx):
        conc = ds.concentration.values[row, 0]
        cmax, tmax, tab = _window_metrics(conc, times, starts, W4_ABOVE)
        np.testing.assert_allclose(m.cmax.values[i, 0], cmax, rtol=1e-12)
        np.testing.assert_array_equal(m.tmax.values[i, 0], tmax)
        np.testing.assert_allclose(m.time_above.values[i, 0], tab, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            m.auc.values[i, 0], ds.dose_auc.values[row, 0], rtol=1e-10
        )
        np.testing.assert_allclose(
            m.predose.values[i, 0], ds.predose.values[row, 0], rtol=1e-10, atol=1e-12
        )
    ref_cmax = _window_metrics(w.reference("W2", 0), times, starts, W4_ABOVE)[0]
    err = w.rel_error(m.cmax.values[0, 0], ref_cmax)
    assert err < EXACT_TOL
    _info(
        benchmark,
        "W4 metrics only (W2 regimen; no trajectories)",
        n,
        times,
        first,
        max_rel_error_vs_reference=err,
    )
    _ratio(benchmark, scipy_times, "W2", n, note=" (scipy computes the trajectories)")


def test_w2_population_is_nested():
    """The scipy subset is the first patients of the full population, and the IIV is
    what the workload says (30 % CV log-normal on CL, V1, Q2, V2, Q3, V3)."""
    small, big = w.w2_parameters(20), w.w2_parameters(SMOKE)
    for k in small:
        np.testing.assert_array_equal(small[k], big[k][:20])
    p = w.w2_parameters(20_000)
    cl = p["k10"] * p["V1"]
    v3 = p["k13"] * p["V1"] / p["k31"]
    omega = np.sqrt(np.log1p(w.CV**2))
    for x, typical in ((cl, w.K10 * w.V1), (v3, w.K13 * w.V1 / w.K31), (p["V1"], w.V1)):
        assert np.median(x) == pytest.approx(typical, rel=0.02)
        assert np.std(np.log(x)) == pytest.approx(omega, rel=0.03)
