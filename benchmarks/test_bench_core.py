"""pytest-benchmark suite for W1–W3 and the scipy baseline (DESIGN §8).

Small sizes run in the default test suite (``--benchmark-disable``: each body runs
once and its result is checked); full sizes are ``slow``. The first call in a process
(numba compile or cache load) is timed apart and stored in ``extra_info``; the scipy
LSODA loop is timed on a few patients in the same run and extrapolated (labelled).
"""

import time

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w

SMALL, FULL = 64, 10_000
_first: dict[str, float] = {}


def _first_call(key, fn):
    if key not in _first:
        t = time.perf_counter()
        fn()
        _first[key] = time.perf_counter() - t
    return _first[key]


def _run(benchmark, fn, rounds):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


def test_w1_exact(benchmark):
    dose, times = w.w1()
    fn = lambda: ks.simulate("domino", dose, times=times)  # noqa: E731
    benchmark.extra_info["first_call_s"] = _first_call("w1", fn)
    ds = _run(benchmark, fn, 20)
    ref = w.scipy_patient({"V1": w.V1, "k10": w.K10, "k12": w.K12, "k21": w.K21,
                           "k13": w.K13, "k31": w.K31}, times)
    got = ds.concentration.values[0, 0]
    big = ref > 1e-3 * ref.max()
    assert np.max(np.abs(got[big] - ref[big]) / ref[big]) < 1e-4  # LSODA at 1e-6


def _w2(benchmark, n, *, reuse_out, solver="exact"):
    params = w.w2_parameters(n)
    reg, times = w.w2_regimen()
    out = np.empty((n, 1, times.size)) if reuse_out else None
    # into a reused buffer: concentrations only (no per-dose AUC pass), the
    # "compute into out=" figure; the fresh-result run includes everything
    fn = lambda: ks.simulate("domino", reg, times=times, parameters=params,  # noqa: E731
                             solver=solver, out=out, dose_windows=not reuse_out)
    benchmark.extra_info["first_call_s"] = _first_call(f"w2-{solver}-{n}", fn)
    benchmark.extra_info["patients"] = n
    ds = _run(benchmark, fn, 5 if n == FULL else 3)
    # the scipy baseline on a few of the same patients, in the same run
    m = 2 if n == SMALL else 20
    t0 = time.perf_counter()
    refs = [w.scipy_patient({k: v[i] for k, v in params.items()}, times)
            for i in range(m)]
    per_patient = (time.perf_counter() - t0) / m
    benchmark.extra_info["scipy_lsoda_s_extrapolated"] = per_patient * n
    if benchmark.stats is not None:
        med = benchmark.stats.stats.median
        benchmark.extra_info["ratio_scipy_over_ketasim"] = per_patient * n / med
    for i, ref in enumerate(refs):
        got = ds.concentration.values[i, 0]
        big = ref > 1e-3 * ref.max()
        assert np.max(np.abs(got[big] - ref[big]) / ref[big]) < 1e-3
    return ds


@pytest.mark.parametrize("n", [SMALL, pytest.param(FULL, marks=pytest.mark.slow)])
def test_w2_exact_fresh(benchmark, n):
    _w2(benchmark, n, reuse_out=False)


@pytest.mark.parametrize("n", [SMALL, pytest.param(FULL, marks=pytest.mark.slow)])
def test_w2_exact_out_buffer(benchmark, n):
    ds = _w2(benchmark, n, reuse_out=True)
    params = w.w2_parameters(n)
    reg, times = w.w2_regimen()
    fresh = ks.simulate("domino", reg, times=times,
                        parameters={k: v[:3] for k, v in params.items()})
    np.testing.assert_array_equal(ds.concentration.values[:3], fresh.concentration)


@pytest.mark.parametrize("n", [SMALL, pytest.param(FULL, marks=pytest.mark.slow)])
def test_w2_ode(benchmark, n):
    _w2(benchmark, n, reuse_out=True, solver="ode")


@pytest.mark.parametrize("n", [SMALL, pytest.param(FULL, marks=pytest.mark.slow)])
def test_w3_exact(benchmark, n):
    params = w.w2_parameters(n)
    reg, times = w.w3_regimen()
    out = np.empty((n, 1, times.size))
    fn = lambda: ks.simulate("domino", reg, times=times, parameters=params,  # noqa: E731
                             out=out)
    benchmark.extra_info["first_call_s"] = _first_call(f"w3-{n}", fn)
    ds = _run(benchmark, fn, 5 if n == FULL else 3)
    # bioavailability invariant on the typical subject: AUC ratio nasal/IV = 0.48
    one = {k: v[:1] for k, v in params.items()}
    t = ks.grid("300 h", "1 h")
    a = ks.simulate("domino", ks.Dose.bolus("56 mg", route="intranasal"), times=t,
                    parameters=one, auc=True).auc[0, 0, -1]
    b = ks.simulate("domino", ks.Dose.bolus("56 mg"), times=t, parameters=one,
                    auc=True).auc[0, 0, -1]
    assert float(a / b) == pytest.approx(0.48, rel=1e-9)
    assert np.all(np.isfinite(ds.concentration.values))
