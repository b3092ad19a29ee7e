"""Run the full-size benchmarks and print the README's Markdown tables.

    python benchmarks/report.py [--json results.json]

1. ``pytest benchmarks -m slow --benchmark-enable`` in a subprocess: W1; W2 (10 000
   patients) end to end, into a reused ``Trajectories(out=...)`` buffer, and on the
   ODE path; W3; W4 (1 000 000 patients, metrics only); the Population + Scenario
   pipeline benchmarks of ``test_bench_scenario.py``; and the hand-written scipy
   LSODA loop on 20 patients, extrapolated to the full size. Every benchmark also
   checks its result (see ``test_bench_core.py``).
2. W4 once more in a fresh process for its peak memory (ru_maxrss).
3. ``first_call.py``: the first ``simulate`` per solver path in fresh processes with
   a cold and a warm numba cache (compile time apart from run time).

Prints the machine, medians and minima of the timed rounds, and the ratio of the
extrapolated scipy loop to ketasim's median. Takes about 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import first_call  # noqa: E402

W4_RSS = """
import resource, time
import ketasim as ks
from benchmarks import workloads as w
reg, times = w.w2_regimen()
p = w.w2_parameters(1_000_000)
kw = dict(times=times, output=ks.Metrics(above=100.0), progress=False)
small = w.with_units({k: v[:1000] for k, v in p.items()})
ks.simulate(w.MODEL, reg, subjects=ks.Subjects(parameters=small), **kw)
t = time.perf_counter()
ks.simulate(w.MODEL, reg, subjects=ks.Subjects(parameters=w.with_units(p)), **kw)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

# rows of test_bench_scenario.py (no "workload" in their extra_info)
LABELS = {
    "test_w2_population_scenario_metrics": "W2 via Population + run_scenarios + "
    "per-session metrics",
    "test_two_scenario_comparison": "two-scenario comparison (ks.compare)",
    "test_scenario_comparison_cost": "run_scenarios, three drugs (domino, "
    "perez_ruixo_2021, fanta_2015), 21 d every 5 min",
    "test_find_dose_linear_costs_one_simulation": "find_dose (median session-1 Cmax "
    "= 150 ng/mL), W2 course, linear model",
    "test_tci_plan_40_min_at_10_s": "tci plan, 40 min at 10-s steps, one subject",
}
ORDER = [
    "test_w1_exact",
    "test_w2_exact_fresh",
    "test_w2_exact_out_buffer",
    "test_w2_ode",
    "test_w3_exact",
    "test_w3_exact_out_buffer",
    "test_w4_metrics",
    "test_w2_population_scenario_metrics",
    "test_two_scenario_comparison",
    "test_scenario_comparison_cost",
    "test_w5_estimate",
    "test_w6_trials",
    "test_w7_time_varying_weight",
    "test_find_dose_linear_costs_one_simulation",
    "test_tci_plan_40_min_at_10_s",
    "test_scipy_lsoda_baseline",
]


def machine() -> str:
    """CPU (with the name LLVM compiles for and its widest vector unit: "AMD EPYC"
    alone names several generations), cores, numba threads and versions."""
    cpu = platform.processor() or "unknown CPU"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    import numba
    import numpy
    import scipy
    from llvmlite import binding

    vector = next(
        (
            name
            for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
            if flag in flags
        ),
        "",
    )
    host = binding.get_host_cpu_name() + (f", {vector}" if vector else "")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"{cpu} ({host}), {os.cpu_count()} cores ({usable} usable), numba "
        f"threads {numba.get_num_threads()}; Python {platform.python_version()}, "
        f"numba {numba.__version__}, numpy {numpy.__version__}, "
        f"scipy {scipy.__version__}"
    )


def _s(x: float) -> str:
    return f"{x:.3g}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _n(n) -> str:
    return f"{int(n):,}".replace(",", " ")


def rows(data: dict) -> list[str]:
    def key(b):
        base = b["name"].split("[")[0]
        return (ORDER.index(base) if base in ORDER else len(ORDER), b["name"])

    out = []
    for b in sorted(data["benchmarks"], key=key):
        ex, st = b["extra_info"], b["stats"]
        base = b["name"].split("[")[0]
        label = ex.get("workload") or LABELS.get(base, b["name"])
        n = ex.get("patients") or (b.get("params") or {}).get("n")
        if base == "test_scipy_lsoda_baseline":
            size = f"{_n(n)} patient(s) timed"
        elif n is not None:
            size = f"{_n(n)} patients" if n > 1 else "1 patient"
        else:
            size = "-"
        scipy_s = ex.get("scipy_lsoda_s_extrapolated")
        if base == "test_scipy_lsoda_baseline":
            to = ex.get("extrapolated_to_patients", n)
            scipy_cell = f"{_s(scipy_s)} (to {_n(to)})" if scipy_s else "-"
        else:
            scipy_cell = f"{_s(scipy_s)}" if scipy_s else "-"
        ratio = ex.get("ratio_scipy_extrapolated_over_ketasim")
        notes = []
        if ratio:
            notes.append(f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×")
        if "ratio_pipeline_over_core" in ex:
            notes.append(f"{ex['ratio_pipeline_over_core']:.2f}× the core simulate")
        if "ratio_run_scenarios_over_simulations" in ex:
            notes.append(
                f"{ex['ratio_run_scenarios_over_simulations']:.2f}× the time and "
                f"{ex['peak_ratio_run_scenarios_over_simulations']:.2f}× the peak "
                f"memory ({ex['simulations_peak_mb']:.0f} MB) of its simulate calls"
            )
        if "ratio_loop_over_ketasim" in ex:
            notes.append(
                f"{ex['ratio_loop_over_ketasim']:.1f}× faster than a loop of "
                "simulate calls"
            )
        if "ratio_over_constant_covariates" in ex:
            notes.append(
                f"{ex['ratio_over_constant_covariates']:.1f}× the same subjects "
                "with constant covariates"
            )
        if "ratio_wall" in ex:  # find_dose against one simulate + metrics
            notes.append(
                f"{ex['ratio_wall']:.2f}× (wall), {ex['ratio_cpu']:.2f}× (CPU) one "
                "simulate + metrics"
            )
        if "replicates" in ex:
            size = f"{_n(ex['replicates'])} trials × {_n(ex['patients_per_trial'])}"
        ratio_cell = "; ".join(notes) or "-"
        out.append(
            f"| {label} | {size} | {_s(st['median'])} | {_s(st['min'])} | "
            f"{st['rounds']} | {scipy_cell} | {ratio_cell} |"
        )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also keep pytest-benchmark's JSON here")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(args.json).resolve() if args.json else Path(tmp) / "bench.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "benchmarks",
                "-m",
                "slow",
                "--benchmark-enable",
                f"--benchmark-json={js}",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            check=True,
            stdout=sys.stderr,
        )
        data = json.loads(js.read_text())
    w4_s, w4_kb = map(
        float,
        subprocess.run(
            [sys.executable, "-c", W4_RSS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(),
    )
    fc = first_call.measure()
    load1 = os.getloadavg()

    print(
        f"Machine: {machine()}. Load average (1 min) {load0[0]:.2f} before, "
        f"{load1[0]:.2f} after the run; shared machine, so medians.\n"
    )
    print(
        "| workload | size | median (s) | min (s) | rounds | scipy LSODA loop, "
        "extrapolated (s) | scipy extrapolated / ketasim median |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows(data)))
    print(
        f"\nW4 alone in a fresh process: {w4_s:.1f} s, peak RSS "
        f"{w4_kb / 1024:.0f} MB.\n"
    )
    print(
        "First `simulate` calls in fresh processes (W1, one patient; 1st − 2nd = "
        "compile or cache load):\n"
    )
    print(first_call.table(fc))
    print("""
Notes: times exclude compilation (one untimed warm-up round; the first call of each
solver path is timed apart, table above). Sizes: W2 = 10 000 patients × 6 049 output
times, W3 = 10 000 × 8 065, W4 = 1 000 000 patients, metrics only. The scipy baseline
is a hand-written per-patient `solve_ivp(method="LSODA", rtol=1e-6, atol=1e-9)` loop
(3-compartment ODE in Python, integrated piecewise between dose events, read with
`t_eval`), timed on 20 patients (W1: 1) in the same run and extrapolated linearly to
the full size, so the ratio column is scipy extrapolated / ketasim median. The ODE
row is ketasim's adaptive solver (rtol 1e-6, atol 1e-9). "Fresh result" rows allocate
the result each round; "out buffer" rows reuse a caller-owned buffer
(`ks.Trajectories(out=buf)`); "concentrations only" also skips the per-dose
AUC/pre-dose pass (`ks.Trajectories(dose_windows=False)`).""")


if __name__ == "__main__":
    main()
