"""Issue-4 workloads: W2 through Population + Scenario + metrics against the core
kernel on the same patients, and a 5 000-patient two-scenario comparison."""

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w

MODEL = Path(__file__).with_name("w2_iiv.toml")


def _median_time(fn, k=3):
    ts = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


@pytest.mark.parametrize("n", [64, pytest.param(10_000, marks=pytest.mark.slow)])
def test_w2_population_scenario_metrics(benchmark, n):
    model = ks.load_model(MODEL)
    reg, times = w.w2_regimen()
    pop = ks.Population(n, seed=11)

    def pipeline():
        ds = ks.run_scenarios(
            [ks.Scenario("W2", model, reg, population=pop, times=times)], progress=False
        )
        return ds, ks.metrics(ds, "session")

    ds, m = benchmark.pedantic(pipeline, rounds=3, iterations=1, warmup_rounds=1)
    # the same patients through the core: individual parameters read back
    one = ds.sel(scenario="W2")
    with pytest.warns(ks.GridWarning):  # two output times: only parameters needed
        pars = ks.simulate(model, reg, population=pop, times=times[:2]).parameters
    # read back in canonical absolute units (L, L/h), as `parameters` reports them
    explicit = {
        k: (pars.sel(parameter=k).values, pars.parameter_unit.sel(parameter=k).item())
        for k in ("V1", "CL", "Q2", "V2", "Q3", "V3")
    }
    table = ks.Subjects(covariates={"weight": one.weight.values}, parameters=explicit)

    def core():
        return ks.simulate(
            model,
            reg,
            times=times,
            subjects=table,
            progress=False,
        )

    ref = core()
    # the same numbers by both paths: rounding only
    np.testing.assert_allclose(
        one.concentration.values, ref.concentration.values, rtol=1e-10, atol=1e-9
    )
    benchmark.extra_info["core_kernel_s"] = _median_time(core)
    if benchmark.stats is not None:
        benchmark.extra_info["ratio_pipeline_over_core"] = (
            benchmark.stats.stats.median / benchmark.extra_info["core_kernel_s"]
        )
    assert m.auc.attrs["method"].startswith("exact")
    assert np.all(m.cmax.values > 0)


@pytest.mark.parametrize("n", [100, pytest.param(5_000, marks=pytest.mark.slow)])
def test_two_scenario_comparison(benchmark, n):
    pop = ks.Population(n, seed=3)
    t = ks.grid("21 d", "5 min")
    sc = [
        ks.Scenario(
            "six infusions", MODEL, ks.six_infusion_course(), population=pop, times=t
        ),
        ks.Scenario(
            "eight infusions 3/wk",
            MODEL,
            ks.six_infusion_course(sessions=8, sessions_per_week=3),
            population=pop,
            times=t,
        ),
    ]

    def job():
        return ks.compare(ks.run_scenarios(sc, progress=False), above=100)

    table = benchmark.pedantic(job, rounds=3, iterations=1, warmup_rounds=1)
    text = str(table)
    assert "six infusions" in text and "eight infusions" in text
