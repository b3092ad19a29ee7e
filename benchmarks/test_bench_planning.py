"""Issue-19 planning workloads: ``find_dose`` on a linear model against one
population simulation plus its metrics (the baseline, timed in the same run), and
a 40-min target-controlled infusion plan at 10-s control steps for one subject.

Nothing here fails on time; the ratios and times are recorded in
``benchmark.extra_info`` and printed (``-s``)."""

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import ketasim as ks

from . import workloads as w

MODEL = Path(__file__).with_name("w2_iiv.toml")


def _times(fn, k=3):
    """Median wall and CPU seconds of ``k`` calls (after one warm-up call)."""
    fn()
    wall, cpu = [], []
    for _ in range(k):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


@pytest.mark.parametrize("n", [64, pytest.param(2_000, marks=pytest.mark.slow)])
def test_find_dose_linear_costs_one_simulation(benchmark, n):
    """Median session-1 Cmax = 150 ng/mL on W2's course and population: one
    population run + metrics, then exact scaling."""
    model = ks.load_model(MODEL)
    reg, times = w.w2_regimen()
    pop = ks.Population(n, seed=11)
    target = ks.Target("cmax", "150 ng/mL")

    def baseline():
        ds = ks.simulate(model, reg, population=pop, times=times, progress=False)
        return ks.metrics(ds, "session")

    def find():
        return ks.find_dose(model, reg, target, population=pop, times=times)

    found = benchmark.pedantic(find, rounds=3, iterations=1, warmup_rounds=1)
    assert found.evaluations == 1 and found.achieved == pytest.approx(150.0)
    # the dose found, simulated, gives the target (an independent run)
    ds = ks.simulate(model, found.regimen, population=pop, times=times)
    cmax = ks.metrics(ds, "session").cmax.isel(session=0, analyte=0)
    assert float(cmax.median()) == pytest.approx(150.0, rel=1e-9)
    base_wall, base_cpu = _times(baseline)
    find_wall, find_cpu = _times(find)
    benchmark.extra_info.update(
        baseline_wall_s=base_wall,
        baseline_cpu_s=base_cpu,
        find_dose_wall_s=find_wall,
        find_dose_cpu_s=find_cpu,
        ratio_wall=find_wall / base_wall,
        ratio_cpu=find_cpu / base_cpu,
    )
    print(
        f"\nfind_dose n={n}: {find_wall:.3f} s wall ({find_cpu:.3f} s CPU); one "
        f"simulation + metrics {base_wall:.3f} s wall ({base_cpu:.3f} s CPU); "
        f"ratio {find_wall / base_wall:.3f} wall, {find_cpu / base_cpu:.3f} CPU"
    )


def test_tci_plan_40_min_at_10_s(benchmark):
    """A plasma TCI plan (150 ng/mL, 240 steps) and an effect-site one (ke0
    0.652 /min), one subject, after warm-up (the model loaded once)."""
    model = ks.load_model("clements_nimmo_1981")
    plan = benchmark.pedantic(
        ks.tci,
        args=(model, "150 ng/mL"),
        kwargs=dict(duration="40 min", step="10 s"),
        rounds=20,
        iterations=1,
        warmup_rounds=2,
    )
    assert plan.rates.size == 240
    np.testing.assert_allclose(plan.predicted.values, 150.0, rtol=1e-9)

    def effect():
        return ks.tci(model, "150 ng/mL", site="effect", ke0="0.652 1/min")

    plasma_wall, plasma_cpu = _times(
        lambda: ks.tci(model, "150 ng/mL", duration="40 min", step="10 s"), k=20
    )
    effect_wall, effect_cpu = _times(effect, k=20)
    benchmark.extra_info.update(
        plasma_wall_s=plasma_wall,
        plasma_cpu_s=plasma_cpu,
        effect_wall_s=effect_wall,
        effect_cpu_s=effect_cpu,
    )
    print(
        f"\nTCI 40 min / 10 s: plasma {1e3 * plasma_wall:.1f} ms wall "
        f"({1e3 * plasma_cpu:.1f} ms CPU), effect site {1e3 * effect_wall:.1f} ms "
        f"wall ({1e3 * effect_cpu:.1f} ms CPU)"
    )
