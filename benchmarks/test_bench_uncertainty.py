"""Replicate trials drawn from the published precision of typical values
(``ks.simulate_trials``): W6.

W6: 100 replicate trials (smoke: 4) x 1 000 patients (smoke: 50) x W2's course
(six 40-min 0.5 mg/kg infusions on days 0, 3, 7, 10, 14, 17, output every 5 min
over 21 days), metrics only (``ks.Metrics(above=100)``), on ``kamp_2020_meta``: the
bundled model with published precision (the abstract's 95 % CIs of CL and V). It
has one compartment and no IIV (``Population(iiv=False)``: patients differ by
covariates), so its kernel is cheaper than W4's three-compartment Domino.

Timed: ``ks.simulate_trials`` (drawing the typical values, every trial's patients,
lowering, the metrics kernel and the Dataset) after a first call, timed apart
(``first_call_s``). Baseline, in the same run: what a user would write without
it, a loop of one ``ks.simulate(..., output=ks.Metrics())`` per trial with a model
carrying that trial's typical values; its metrics are also the check (bit for
bit).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w

MODEL = "kamp_2020_meta"
SEED = 2026


def sizes(smoke: tuple[int, int], full: tuple[int, int]):
    return [
        pytest.param(*smoke, id=f"smoke-{smoke[0]}x{smoke[1]}"),
        pytest.param(*full, id=f"full-{full[0]}x{full[1]}", marks=pytest.mark.slow),
    ]


def loop_baseline(reg, t, pop, replicates: int) -> np.ndarray:
    """One ks.simulate per trial, the model's typical values replaced by hand."""
    model = ks.load_model(MODEL)
    typical = ks.draw_typical_values(model, replicates, pop.seed)
    out = []
    for k in range(replicates):
        params = dict(model.parameters)
        for name, v in typical.items():
            params[name] = dataclasses.replace(params[name], value=float(v[k]))
        m = dataclasses.replace(model, parameters=params)
        p = dataclasses.replace(pop, offset=k * pop.n)
        ds = ks.simulate(
            m,
            reg,
            times=t,
            population=p,
            output=ks.Metrics(above=100),
            progress=False,
        )
        out.append(ds.cmax.values)
    return np.stack(out)


@pytest.mark.parametrize("replicates, n", sizes((4, 50), (100, 1000)))
def test_w6_trials(benchmark, replicates, n):
    reg, t = w.w2_regimen()
    pop = ks.Population(n, seed=SEED, iiv=False)
    out = ks.Metrics(above=100)
    t0 = time.perf_counter()
    ks.simulate_trials(MODEL, reg, ks.Population(2, seed=1, iiv=False), 2, output=out)
    first_s = time.perf_counter() - t0
    c0 = time.process_time()
    ds = benchmark.pedantic(
        ks.simulate_trials,
        args=(MODEL, reg, pop, replicates),
        kwargs={"times": t, "output": out},
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    cpu = time.process_time() - c0
    assert ds.cmax.shape == (replicates, n, 1, 6)
    assert (ds.status == 0).all()
    ci = ks.trial_ci(ds.cmax.isel(analyte=0, dose=0), "median", level=0.9)
    assert ci.lower < ci.estimate < ci.upper
    # the baseline, in this run: its numbers are the check
    t0 = time.perf_counter()
    c1 = time.process_time()
    ref = loop_baseline(reg, t, pop, replicates)
    loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c1
    np.testing.assert_array_equal(ds.cmax.values, ref)
    benchmark.extra_info.update(
        {
            "workload": "W6: replicate trials x patients x W2 course, metrics only, "
            "kamp_2020_meta",
            "replicates": replicates,
            "patients_per_trial": n,
            "first_call_s": first_s,
            "cpu_s_all_rounds": cpu,
            "rounds": 6,
            "loop_baseline_s": loop_s,
            "loop_baseline_cpu_s": loop_cpu,
            "median_cmax1_ci90_ng_ml": [
                float(ci.estimate),
                float(ci.lower),
                float(ci.upper),
            ],
        }
    )
    if benchmark.stats is not None:
        benchmark.extra_info["ratio_loop_over_ketasim"] = (
            loop_s / benchmark.stats.stats.median
        )
