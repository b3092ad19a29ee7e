"""Benchmark sizes and session fixtures.

Every benchmark is parametrised by size: a small *smoke* size that always runs (the
default ``--benchmark-disable`` run executes each body once and checks its result)
and the *full* size of the workload (benchmarks/README.md), marked ``slow`` and
skipped unless ``-m slow`` is given or ``KETASIM_FULL_BENCH=1`` is set. Nothing here
fails on wall time.

Session fixtures:

* ``first_call``: the first ``simulate`` of each solver path in this process, timed
  apart from the benchmarks (numba compile or on-disk cache load + a tiny W1 run),
  with what it was (compile / cache load / already compiled by earlier tests).
* ``scipy_times``: the scipy LSODA loop's seconds per patient for each workload,
  measured in this run (shared with ``test_scipy_lsoda_baseline``), from which the
  ketasim benchmarks record "scipy extrapolated / ketasim" ratios.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from . import workloads as w

# ketasim writes the module files of its cached ODE kernels to KETASIM_CACHE_DIR:
# keep the test run's inside the checkout (git-ignored), not in the user's cache
os.environ.setdefault(
    "KETASIM_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".ketasim-cache")
)


def _full_requested(config) -> bool:
    markexpr = (config.getoption("-m") or "").replace(" ", "")
    wants_slow = "slow" in markexpr and "notslow" not in markexpr
    return wants_slow or os.environ.get("KETASIM_FULL_BENCH") == "1"


def pytest_collection_modifyitems(config, items):
    if _full_requested(config):
        return
    skip = pytest.mark.skip(
        reason="full size: run with -m slow or KETASIM_FULL_BENCH=1"
    )
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _dispatchers(path: str) -> list:
    """The numba dispatchers behind a path (the ODE kernels are built per state
    count and right-hand side: one per ``ode.solver(n, rhs)`` built so far)."""
    if path == "ode":
        from ketasim._kernels import ode

        return [k.solve_population for k in ode._SOLVERS.values()]
    from ketasim._kernels import linear

    # the numba kernel the thread pool runs (population_linear and
    # population_linear_metrics are plain Python around it); its trajectory and
    # metrics compiles differ in the last state-count tuple (nm: () or not)
    return [linear.block_linear]


class FirstCall:
    """First ``simulate`` in this process per path: "exact", "ode" or "metrics"
    (exact, ``output=ks.Metrics(...)``), on W1."""

    def __init__(self):
        self._seen: dict[str, dict] = {}

    def __call__(self, path: str) -> dict:
        if path not in self._seen:
            import ketasim as ks

            # dispatchers of this path compiled before this call: the call below
            # is a compile or cache load only if it compiles one not among them
            # (ODE solvers built for other models by earlier tests do not count)
            before = {(id(d), s) for d in _dispatchers(path) for s in d.signatures}
            dose, times = w.w1()

            kw = {
                "exact": {"solver": ks.Exact()},
                "ode": {"solver": ks.ODE()},
                "metrics": {"output": ks.Metrics(above=100.0)},
            }[path]

            def run():
                return ks.simulate(w.MODEL, dose, times=times, progress=False, **kw)

            t = time.perf_counter()
            run()
            first = time.perf_counter() - t
            t = time.perf_counter()
            run()
            second = time.perf_counter() - t
            # signatures, not dispatchers: one kernel serves the exact and the
            # metrics path (different state-count tuples)
            new = [
                (d, s)
                for d in _dispatchers(path)
                for s in d.signatures
                if (id(d), s) not in before
            ]
            if not new:
                kind = "already compiled in this process (earlier tests)"
            elif any(d.stats.cache_hits.get(s, 0) for d, s in new):
                kind = "numba cache load"
            elif all(d.stats.cache_path is None for d, s in new):
                kind = "numba compile (this path is not disk-cached)"
            else:
                kind = "numba compile (cold cache)"
            self._seen[path] = {
                "first_call_s": first,
                "first_call_kind": kind,
                "first_call_workload": "W1, one patient",
                "second_call_s": second,
            }
        return self._seen[path]


@pytest.fixture(scope="session")
def first_call() -> FirstCall:
    return FirstCall()


class ScipyTimes:
    """Seconds per patient of the hand-written scipy LSODA loop, per workload."""

    def __init__(self):
        self._per_patient: dict[str, tuple[float, int]] = {}

    def record(self, name: str, per_patient_s: float, patients: int) -> None:
        old = self._per_patient.get(name)
        if old is None or patients >= old[1]:
            self._per_patient[name] = (per_patient_s, patients)

    def get(self, name: str, patients: int = 20, rounds: int = 3) -> tuple[float, int]:
        """(seconds per patient, patients timed); times the loop if not yet done."""
        if name not in self._per_patient:
            m = 1 if name == "W1" else patients
            params, times = scipy_inputs(name, m)
            ts = []
            for _ in range(rounds):
                t = time.perf_counter()
                w.scipy_loop(params, w.COURSES[name], times, m)
                ts.append(time.perf_counter() - t)
            self.record(name, statistics.median(ts) / m, m)
        return self._per_patient[name]


def scipy_inputs(name: str, m: int):
    """(per-patient parameters, output times) for the scipy loop on ``m`` patients."""
    params = (
        {k: np.full(m, v) for k, v in w.TYPICAL.items()}
        if name == "W1"
        else w.w2_parameters(m)
    )
    return params, w.COURSES[name].times()


@pytest.fixture(scope="session")
def scipy_times() -> ScipyTimes:
    return ScipyTimes()
