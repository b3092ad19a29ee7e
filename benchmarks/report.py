"""Run the full-size benchmarks and print the README's Markdown table.

    python benchmarks/report.py

It runs ``pytest benchmarks -m slow --benchmark-enable`` (W1, W2 fresh and into a
reused buffer, W2 on the ODE path, W3, the Population + Scenario + metrics pipeline
on W2, a 5 000-patient two-scenario comparison), W4 (1 000 000 patients,
metrics only, peak memory), and the first ``simulate`` in a fresh process with a
cold and a warm numba cache. The scipy LSODA loop is timed on 20 patients in the
same run and extrapolated to the full size (labelled). Machine, thread count and
medians are printed with the table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_CALL = """
import time
t0 = time.perf_counter()
import ketasim as ks
t1 = time.perf_counter()
ks.simulate("domino", ks.six_infusion_course(), times=ks.grid("21 d", "5 min"))
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""

W4 = """
import resource, time, ketasim as ks
from benchmarks import workloads as w
reg, times = w.w2_regimen()
model = "benchmarks/w2_iiv.toml"
ks.simulate(model, reg, population=ks.Population(64, seed=1), times=times,
            output="metrics", above=100)
t = time.perf_counter()
m = ks.simulate(model, reg, population=ks.Population(1_000_000, seed=1), times=times,
                output="metrics", above=100, progress=False)
el = time.perf_counter() - t
print(el, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _py(code: str, env=None) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def main() -> None:
    import numba

    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "bench.json"
        subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-m", "slow",
                        "--benchmark-enable", f"--benchmark-json={js}", "-q",
                        "-p", "no:cacheprovider"], cwd=ROOT, check=True)
        data = json.loads(js.read_text())
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            cold = _py(FIRST_CALL, env).split()
            warm = _py(FIRST_CALL, env).split()
    w4_s, w4_mb = _py(W4).split()
    print(f"Machine: {_cpu()}, {os.cpu_count()} cores, numba threads "
          f"{numba.get_num_threads()}, Python {platform.python_version()}, "
          f"numba {numba.__version__}.\n")
    print("| workload | size | median (s) | min (s) | scipy LSODA loop, "
          "extrapolated (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        scipy_s = ex.get("scipy_lsoda_s_extrapolated")
        ratio = ex.get("ratio_scipy_over_ketasim")
        core = ex.get("ratio_pipeline_over_core")
        note = f"{scipy_s:.0f}" if scipy_s else "-"
        rat = f"{ratio:.0f}x" if ratio else (f"{core:.2f}x the core kernel" if core
                                             else "-")
        print(f"| {b['name']} | {b['params']} | {b['stats']['median']:.3f} | "
              f"{b['stats']['min']:.3f} | {note} | {rat} |")
    print(f"| W4 metrics-only | 1 000 000 patients | {float(w4_s):.1f} (one run) | - "
          f"| - | peak RSS {float(w4_mb):.0f} MB |")
    print(f"\nFirst simulate in a fresh process (import + compile or cache load + "
          f"run): cold numba cache {float(cold[1]):.1f} s, warm cache "
          f"{float(warm[1]):.2f} s (import alone {float(warm[0]):.2f} s).")


if __name__ == "__main__":
    main()
