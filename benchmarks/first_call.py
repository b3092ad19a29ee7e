"""Compile time apart from run time: the first ``simulate`` calls in fresh processes.

    python benchmarks/first_call.py          # prints a Markdown table

Fresh Python processes share one new, empty ``NUMBA_CACHE_DIR``:

* **cold**: nothing cached, every kernel is compiled by numba;
* **warm**: nine later processes, which load what the first one cached on disk
  (median of each time; below the table, the range of import + first exact call
  over those processes, since a shared host's noise is of the order of 0.1 s).

Each process times ``import ketasim``, then, on W1 (one patient), the first and the
second ``simulate`` for the exact path (``solver=ks.Exact()``), the ODE path
(``solver=ks.ODE()``) and the metrics-only path (``output=ks.Metrics(above=100)``),
in that order. first − second is the compile (or cache-load) cost;
the second call is the run time. First calls also give the process's CPU time
(all threads), which a loaded shared host stretches far less than the wall time.
The ODE kernels for ketasim's own right-hand sides (here the linear one) are
cached as well, in module files written per state count
(``ketasim/_kernels/ode.py``); only a user's own right-hand side compiles in every
process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import ketasim as ks
res = {"import_s": time.perf_counter() - t0}
dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
times = ks.grid("24 h", "1 min")
paths = {"exact": {"solver": ks.Exact()}, "ode": {"solver": ks.ODE()},
         "metrics": {"output": ks.Metrics(above=100.0)}}
for name, kw in paths.items():
    for which in ("first", "second"):
        t = time.perf_counter()
        c = time.process_time()
        ks.simulate("domino", dose, times=times, progress=False, **kw)
        res[f"{name}_{which}_s"] = time.perf_counter() - t
        res[f"{name}_{which}_cpu_s"] = time.process_time() - c
        if name == "exact" and which == "first":
            # xarray's duck-array and index checks import dask while building a
            # Dataset when dask is installed (the [dask] extra); simulate avoids them
            res["dask_imported"] = "dask" in sys.modules
print(json.dumps(res))
"""


def measure(warm_runs: int = 9) -> dict[str, dict]:
    """{"cold": {...}, "warm": {...}} seconds: one process on an empty cache, then
    the median of ``warm_runs`` processes on the cache it left; "warm" also holds
    ``runs`` and ``first_total_s`` (import + first exact call of each process)."""
    # Python may write bytecode for ketasim's modules, as any installed package has
    # (pip compiles it at install time); with PYTHONDONTWRITEBYTECODE set, which
    # some environments do, every process would compile them from source (~0.1 s)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run() -> dict:
        r = subprocess.run(
            [sys.executable, "-c", CHILD],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(r.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory(prefix="ketasim-numba-cache-") as cache:
        env["NUMBA_CACHE_DIR"] = cache
        env["KETASIM_CACHE_DIR"] = cache  # the ODE kernels' module files
        out = {"cold": run()}
        warm = [run() for _ in range(warm_runs)]
    out["warm"] = {
        k: (
            statistics.median(r[k] for r in warm)
            if isinstance(warm[0][k], float)
            else warm[0][k]
        )
        for k in warm[0]
    }
    out["warm"]["runs"] = warm_runs
    out["warm"]["first_total_s"] = sorted(
        r["import_s"] + r["exact_first_s"] for r in warm
    )
    return out


def table(res: dict[str, dict]) -> str:
    rows = [
        "| numba cache | import ketasim (s) | exact: 1st call, wall (CPU) (s) "
        "| exact: 2nd (s) | ODE: 1st call, wall (CPU) (s) | ODE: 2nd (s) "
        "| metrics: 1st call, wall (CPU) (s) "
        "| metrics: 2nd (s) | dask imported by the 1st call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    warm = res["warm"]
    names = {
        "cold": "cold (empty NUMBA_CACHE_DIR)",
        "warm": f"warm (later processes, median of {warm['runs']})",
    }
    for label, r in res.items():
        cells = [f"{r['import_s']:.2f}"]
        for p in ("exact", "ode", "metrics"):
            # wall (CPU of the process: on a shared host, wall stretches with the
            # load while the CPU time of a compile stays near what it costs)
            cells += [
                f"{r[f'{p}_first_s']:.2f} ({r[f'{p}_first_cpu_s']:.2f})",
                f"{r[f'{p}_second_s']:.4f}",
            ]
        cells.append("yes" if r.get("dask_imported") else "no")
        rows.append(f"| {names[label]} | " + " | ".join(cells) + " |")
    totals = warm["first_total_s"]
    rows.append(
        f"\nImport + first exact call, warm cache: median "
        f"{statistics.median(totals):.2f} s, range {totals[0]:.2f}–"
        f"{totals[-1]:.2f} s over {warm['runs']} processes."
    )
    return "\n".join(rows)


def main() -> None:
    print(table(measure()))


if __name__ == "__main__":
    main()
