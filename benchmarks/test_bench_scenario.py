"""Issue-4 workloads: W2 through Population + Scenario + metrics against the core
kernel on the same patients, and a 5 000-patient two-scenario comparison; the
cost of run_scenarios over three drugs against its simulate calls."""

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
        return ds, ks.metrics(ds["W2"], "session")

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


def _three_drugs(n: int):
    """Racemic ketamine, esketamine spray and S-ketamine infusions: three models,
    five analyte curves per patient (the comparison padding made cost 4-5x)."""
    t = ks.grid("21 d", "5 min")
    pop = ks.Population(n, seed=5)
    return [
        ks.Scenario(
            "racemic ketamine iv",
            "domino",
            ks.six_infusion_course(),
            population=ks.Population(n, seed=5, iiv=False),
            times=t,
        ),
        ks.Scenario(
            "esketamine spray",
            "perez_ruixo_2021",
            ks.esketamine_induction("84 mg", weeks=3, continuation_weeks=0),
            population=pop,
            times=t,
        ),
        ks.Scenario(
            "S-ketamine iv",
            "fanta_2015",
            ks.six_infusion_course(dose="0.25 mg/kg"),
            population=pop,
            times=t,
        ),
    ]


def _peak(fn) -> tuple[float, object]:
    """Peak bytes numpy and Python allocate while ``fn`` runs (tracemalloc), and
    its result."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("n", [50, pytest.param(2_000, marks=pytest.mark.slow)])
def test_scenario_comparison_cost(benchmark, n):
    """run_scenarios over three drugs against the sum of its three simulate calls,
    in time (medians, same run) and peak traced memory (results kept, as a
    comparison keeps them)."""
    sc = _three_drugs(n)

    def simulations():
        return [s.run(progress=False) for s in sc]

    def comparison():
        return ks.run_scenarios(sc, progress=False)

    res = benchmark.pedantic(comparison, rounds=3, iterations=1, warmup_rounds=1)
    alone = simulations()
    for s, ds in zip(sc, alone, strict=True):  # the same numbers, unpadded
        np.testing.assert_array_equal(res[s.name].concentration, ds.concentration)
    del alone
    sims_s = _median_time(simulations)
    sims_peak, _ = _peak(simulations)
    comp_peak, _ = _peak(comparison)
    benchmark.extra_info["simulations_s"] = sims_s
    benchmark.extra_info["peak_ratio_run_scenarios_over_simulations"] = (
        comp_peak / sims_peak
    )
    benchmark.extra_info["simulations_peak_mb"] = sims_peak / 1e6
    if benchmark.stats is not None:
        benchmark.extra_info["ratio_run_scenarios_over_simulations"] = (
            benchmark.stats.stats.median / sims_s
        )
