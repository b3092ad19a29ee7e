"""Workload W2 side by side: ketasim against the ODE tools a researcher would reach
for (numbalsoda, scipy, R deSolve), in one run on one machine.

Run: ``python benchmarks/peers.py [--n 10000] [--repeats 3]``. Every tool gets the
same W2 patients (``workloads.w2_parameters``: 10 000 by default), the same dosing
(six 0.5 mg/kg 40-min infusions over 21 days) and output grid (every 5 min, 6 049
times) and, where it has tolerances, ``rtol=1e-6, atol=1e-9``. The ODE tools
integrate piece by piece between dose events (infusion on/off), as
``workloads.scipy_patient`` does, so no step crosses a discontinuity.

- ketasim exact and ODE: ``ks.simulate`` on all patients (a fresh result).
- numbalsoda (LSODA called from a numba loop, right-hand side a numba ``cfunc``):
  all patients.
- scipy ``solve_ivp(method="LSODA")`` per patient (``workloads.scipy_patient``):
  the first ``--scipy`` patients, extrapolated linearly.
- deSolve ``lsoda`` in R with the right-hand side an R function, as its manual
  shows: the first ``--desolve`` patients, extrapolated linearly; skipped with a
  note when ``Rscript`` or deSolve is missing.

Each timing is the median of ``--repeats`` runs after one untimed warm-up (compile
excluded; scipy has none to exclude); wall and CPU time are printed, CPU being the
steadier figure on a shared machine. Every tool's concentrations are checked
against the tight-tolerance LSODA reference (``workloads.reference``) on patients 0
and 1 (relative error where the reference exceeds 1e-3 of its peak).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ketasim as ks
from benchmarks import workloads as w


def _timed(fn, repeats: int, warmup: bool = True):
    """(median wall s, median CPU s, last result) over ``repeats`` runs after one
    warm-up (compiles; none for scipy, which compiles nothing)."""
    out = fn() if warmup else None
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out


def _pieces(course: w.Course, times: np.ndarray):
    """(start, end, infusions running, output-time indices in [start, end)) per
    piece between dose events."""
    starts = np.asarray(course.dose_times_h)
    ends = starts + course.duration_h
    end = float(times[-1])
    edges = sorted({0.0, end, *starts.tolist(), *ends.tolist()})
    out = []
    for a, b in itertools.pairwise(edges):
        running = int(np.count_nonzero((starts <= a) & (a < ends)))
        idx = np.nonzero((times >= a) & (times < b))[0]
        out.append((a, b, running, idx))
    return out


def ketasim_run(params, solver=None):
    reg, times = w.w2_regimen()
    kw = {} if solver is None else {"solver": solver}
    return lambda: ks.simulate(
        w.MODEL,
        reg,
        times=times,
        subjects=ks.Subjects(parameters=w.with_units(params)),
        progress=False,
        **kw,
    ).concentration.values[:, 0]


def numbalsoda_run(params):
    """All patients with numbalsoda's LSODA inside one numba-compiled loop."""
    import numba as nb
    from numbalsoda import lsoda, lsoda_sig

    @nb.cfunc(lsoda_sig)
    def rhs(t, x, dx, p):
        # p: k10, k12, k21, k13, k31 (1/h), infusion rate (mg/h)
        dx[0] = p[5] - (p[0] + p[1] + p[3]) * x[0] + p[2] * x[1] + p[4] * x[2]
        dx[1] = p[1] * x[0] - p[2] * x[1]
        dx[2] = p[3] * x[0] - p[4] * x[2]

    funcptr = rhs.address
    times = w.W2.times()
    pieces = _pieces(w.W2, times)
    # per piece: the times handed to LSODA (start, the output times inside, end)
    # and where the outputs go
    t_evals = [np.unique(np.r_[a, times[idx], b]) for a, b, _, idx in pieces]
    # 1 where the piece's start is not an output time (LSODA returns it first)
    first_out = [
        int(t[0] != times[idx[0]]) if idx.size else 0
        for t, (*_, idx) in zip(t_evals, pieces, strict=True)
    ]
    rates = np.array([r for _, _, r, _ in pieces], dtype=float)
    idxs = [idx for *_, idx in pieces]
    k = np.stack([params[n] * 60.0 for n in ("k10", "k12", "k21", "k13", "k31")], 1)
    v1 = params["V1"] * w.WEIGHT
    dose_rate = w.W2.dose_mg() / w.W2.duration_h
    t_list = nb.typed.List(t_evals)
    i_list = nb.typed.List(idxs)
    f_list = np.array(first_out, dtype=np.int64)

    @nb.njit
    def loop(k, v1, rates, t_list, i_list, f_list, nt):
        out = np.empty((k.shape[0], nt))
        data = np.empty(6)
        for s in range(k.shape[0]):
            x = np.zeros(3)
            data[:5] = k[s]
            for j in range(len(t_list)):
                data[5] = rates[j] * dose_rate
                usol, ok = lsoda(funcptr, x, t_list[j], data=data, rtol=1e-6, atol=1e-9)
                if not ok:
                    raise RuntimeError("numbalsoda failed")
                idx = i_list[j]
                for q in range(idx.size):
                    out[s, idx[q]] = usol[f_list[j] + q, 0]
                x = usol[-1].copy()
            out[s, nt - 1] = x[0]
            out[s] /= v1[s] / 1000.0
        return out

    return lambda: loop(k, v1, rates, t_list, i_list, f_list, times.size)


def scipy_run(params, m):
    times = w.W2.times()
    return lambda: w.scipy_loop(params, w.W2, times, m)


DESOLVE = r"""
suppressMessages(library(deSolve))
args <- commandArgs(trailingOnly = TRUE)
p <- read.csv(args[1]); pieces <- read.csv(args[2])
times <- scan(args[3], quiet = TRUE); repeats <- as.integer(args[4])
dose_rate <- as.numeric(args[5]); weight <- as.numeric(args[6])
rhs <- function(t, x, q) {
  list(c(q[6] - (q[1] + q[2] + q[4]) * x[1] + q[3] * x[2] + q[5] * x[3],
         q[2] * x[1] - q[3] * x[2],
         q[4] * x[1] - q[5] * x[3]))
}
run <- function() {
  out <- matrix(NA_real_, nrow(p), length(times))
  for (s in seq_len(nrow(p))) {
    k <- as.numeric(p[s, c("k10", "k12", "k21", "k13", "k31")]) * 60
    x <- c(0, 0, 0)
    for (j in seq_len(nrow(pieces))) {
      a <- pieces$a[j]; b <- pieces$b[j]
      inside <- which(times >= a & times < b)
      te <- unique(c(a, times[inside], b))
      sol <- lsoda(x, te, rhs, c(k, pieces$running[j] * dose_rate),
                   rtol = 1e-6, atol = 1e-9)
      out[s, inside] <- sol[match(times[inside], sol[, 1]), 2]
      x <- as.numeric(sol[nrow(sol), 2:4])
    }
    out[s, length(times)] <- x[1]
    out[s, ] <- out[s, ] / (p$V1[s] * weight) * 1000
  }
  out
}
invisible(run())
walls <- c(); cpus <- c()
for (r in seq_len(repeats)) {
  t0 <- proc.time(); out <- run(); d <- proc.time() - t0
  walls <- c(walls, d[["elapsed"]]); cpus <- c(cpus, d[["user.self"]] + d[["sys.self"]])
}
cat(median(walls), median(cpus), "\n")
write.table(out[1:min(2, nrow(out)), ], args[7], row.names = FALSE, col.names = FALSE)
cat(R.version.string, "deSolve", as.character(packageVersion("deSolve")), "\n")
"""


def desolve_run(params, m, repeats):
    """(wall, cpu, concentrations of patients 0 and 1, version) or None."""
    if shutil.which("Rscript") is None:
        return None
    times = w.W2.times()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cols = ("V1", "k10", "k12", "k21", "k13", "k31")
        rows = [",".join(cols)] + [
            ",".join(repr(float(params[c][i])) for c in cols) for i in range(m)
        ]
        (d / "p.csv").write_text("\n".join(rows) + "\n")
        pieces = ["a,b,running"] + [
            f"{a!r},{b!r},{r}" for a, b, r, _ in _pieces(w.W2, times)
        ]
        (d / "pieces.csv").write_text("\n".join(pieces) + "\n")
        np.savetxt(d / "times.txt", times, fmt="%.17g")
        (d / "run.R").write_text(DESOLVE)
        run = subprocess.run(
            [
                "Rscript",
                str(d / "run.R"),
                str(d / "p.csv"),
                str(d / "pieces.csv"),
                str(d / "times.txt"),
                str(repeats),
                repr(w.W2.dose_mg() / w.W2.duration_h),
                repr(w.WEIGHT),
                str(d / "out.txt"),
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            print("deSolve failed:", run.stderr.strip()[-500:])
            return None
        lines = run.stdout.strip().splitlines()
        wall, cpu = map(float, lines[0].split())
        conc = np.loadtxt(d / "out.txt", ndmin=2)
        return wall, cpu, conc, lines[1].strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="W2 patients")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy", type=int, default=20, help="patients timed on scipy")
    ap.add_argument("--desolve", type=int, default=100, help="patients timed on R")
    args = ap.parse_args(argv)
    params = w.w2_parameters(args.n)
    refs = [w.reference("W2", i) for i in (0, 1)]
    rows = []

    def add(name, how, timed, wall, cpu, conc):
        err = max(w.rel_error(conc[i], refs[i]) for i in range(2))
        scale = args.n / timed
        rows.append((name, how, timed, wall * scale, cpu * scale, err))

    wall, cpu, c = _timed(ketasim_run(params), args.repeats)
    add("ketasim, exact", "`ks.simulate`, matrix exponential", args.n, wall, cpu, c)
    wall, cpu, c = _timed(
        ketasim_run(params, ks.ODE(rtol=1e-6, atol=1e-9)), args.repeats
    )
    add("ketasim, ODE", "`ks.simulate`, `ks.ODE(rtol=1e-6)`", args.n, wall, cpu, c)
    try:
        fn = numbalsoda_run(params)
    except ImportError as e:
        print(f"numbalsoda not installed ({e}): skipped")
    else:
        wall, cpu, c = _timed(fn, args.repeats)
        add("numbalsoda", "LSODA from a numba loop", args.n, wall, cpu, c)
    m = min(args.scipy, args.n)
    wall, cpu, c = _timed(scipy_run(params, m), args.repeats, warmup=False)
    add("scipy", "`solve_ivp(LSODA)` per patient", m, wall, cpu, c)
    m = min(args.desolve, args.n)
    r = desolve_run(params, m, args.repeats)
    if r is None:
        print("R deSolve not available: skipped")
    else:
        wall, cpu, c, version = r
        add("deSolve", f"`lsoda`, R function ({version})", m, wall, cpu, c)

    base = rows[0][3]
    print(
        f"W2, {args.n} patients x 6 049 times; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"numba threads {numba.get_num_threads()}"
    )
    print()
    print(
        "| tool | how | patients timed | wall (s) | CPU (s) "
        "| wall / ketasim exact | CPU / ketasim exact | max rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    cpu_base = rows[0][4]
    for name, how, timed, wall, cpu, err in rows:
        print(
            f"| {name} | {how} | {timed} | {wall:.3g} | {cpu:.3g} | "
            f"{wall / base:,.0f}× | {cpu / cpu_base:,.0f}× | {err:.1e} |"
        )
    print(
        "\nwall and CPU: the whole population (tools timed on fewer patients "
        "extrapolated linearly); CPU counts every thread."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
