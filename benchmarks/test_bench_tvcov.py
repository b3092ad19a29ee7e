"""Time-varying covariates on the exact path: W7.

W7: W2's schedule with a flat dose (six 40-min 40 mg infusions on days 0, 3, 7, 10,
14, 17, output every 5 min over 21 days) on ``clements_nimmo_1981`` for 2 000
subjects (smoke: 20) whose weight drops by 10 % on day 9: a
``ks.Subjects(covariates=...)`` table with ``id`` and ``time`` columns, two rows per
subject; exact solver, ``Trajectories(dose_windows=False)``. The dose is flat
because with per-kg doses, every parameter of this model scaling with weight, the
concentrations would barely move.

Baseline, in the same run: the same subjects with their day-0 weights held constant
(one row each), the run a user gets without a covariate change. Its curves are also
the check: before day 9 both runs are the same to the last bits of rounding, and
after it the changed run differs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w

MODEL = "clements_nimmo_1981"
CHANGE_H = 9 * 24.0


def tables(n: int) -> tuple[dict, dict]:
    """(time-varying table, constant table) for ``n`` subjects, 55-105 kg."""
    w0 = np.linspace(55.0, 105.0, n)
    ids = np.arange(1, n + 1)
    varying = {
        "id": np.repeat(ids, 2),
        "time": np.tile([0.0, CHANGE_H], n),
        "weight": np.column_stack([w0, 0.9 * w0]).ravel(),
    }
    return varying, {"weight": w0}


def run(reg, t, covariates):
    return ks.simulate(
        MODEL,
        reg,
        times=t,
        subjects=ks.Subjects(covariates=covariates),
        output=ks.Trajectories(dose_windows=False),
        progress=False,
    )


@pytest.mark.parametrize("n", [20, pytest.param(2_000, marks=pytest.mark.slow)])
def test_w7_time_varying_weight(benchmark, n):
    _, t = w.w2_regimen()
    dose = ks.Dose.infusion("40 mg", duration="40 min")
    reg = ks.Regimen.at(list(w.W2_DAYS), dose, unit="d")
    varying, constant = tables(n)
    run(reg, t, tables(2)[0])  # compile apart from the timed rounds
    run(reg, t, tables(2)[1])
    ds = benchmark.pedantic(run, args=(reg, t, varying), rounds=3, iterations=1)
    t0 = time.perf_counter()
    base = run(reg, t, constant)
    base_s = time.perf_counter() - t0

    c = ds.concentration.sel(analyte="ketamine").values
    b = base.concentration.sel(analyte="ketamine").values
    before = t < CHANGE_H
    np.testing.assert_allclose(c[:, before], b[:, before], rtol=1e-12, atol=0)
    after = t > CHANGE_H + 24.0  # the day-10 infusion onwards
    assert np.all(np.abs(c[:, after] / b[:, after] - 1.0) > 1e-3)

    benchmark.extra_info.update(
        {
            "workload": "W7: W2 schedule, 40 mg, weight changing on day 9, exact path, "
            "clements_nimmo_1981",
            "patients": n,
            "constant_covariates_s": base_s,
        }
    )
    if benchmark.stats is not None:
        benchmark.extra_info["ratio_over_constant_covariates"] = (
            benchmark.stats.stats.median / base_s
        )
