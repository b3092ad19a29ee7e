"""Stage 3 of a run: the kernels. Lowered arrays in, numbers out.

``run_trajectories`` fills the (subject, output, time) buffer with the exact
propagation (:func:`run_exact`, here) or the ODE kernels
(:func:`ketasim._run_ode.run_ode`); ``run_metrics_chunk`` streams per-dose metrics.
Each subject's status says whether its numbers can be trusted; ``check_status``
turns failures into a :class:`SolveError` naming them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._lower import Lowered, check_magnitude, with_auc
from ._progress import compile_notice
from ._times import late_doses
from .dosing import Regimen
from .model import Model

STATUS = {
    1: "the ODE solver reached max_steps; raise ks.ODE(max_steps=...) or loosen its "
    "rtol/atol",
    2: "the ODE step size underflowed; the problem may be ill-posed or need the "
    "stiff method (ks.ODE(method='rosenbrock'))",
    3: "the state became non-finite (NaN/inf); check the parameters and the rhs",
    4: "the exact propagation gave a non-finite value: the doses or rates overflow "
    "double precision; check the dose amounts and units, the parameters, and the "
    "dose and output times (hours)",
    5: "a compartment amount went negative beyond the tolerance (below -(atol + "
    "rtol x its largest amount so far) after an accepted step), so the solution "
    "is not trustworthy from there on; use ks.ODE(method='rosenbrock') for a "
    "stiff model, tighter rtol/atol, or check that the rhs never removes more "
    "drug than a compartment holds",
}
EXACT_TEXT = (
    "exact: matrix-exponential propagation (Taylor polynomial with "
    "scaling and squaring)"
)
PROGRESS_MIN_WORK = 5e7  # output values (or ODE work units) before a bar is shown
# cold compile of each kernel (s, CPU of a first W1 call on an empty numba cache,
# 2-core Xeon, 2026-12-07, benchmarks/first_call.py; exact and metrics remeasured after
# the compile-level cuts: 11.0 and 13.0 s), said by the notice of a first call
# (ketasim._progress.compile_notice)
COMPILE_S = {"exact": 11, "metrics": 13, "ode": 13}


class SolveError(RuntimeError):
    """A kernel reported failure for one or more subjects, or a user's rhs raised
    an exception inside the ODE kernel.

    Status codes (``status`` in a result kept with ``errors="keep"``): 1 the ODE
    solver reached ``max_steps``; 2 its step size underflowed; 3 a state became
    non-finite; 4 the exact propagation gave a non-finite value; 5 an amount went
    negative beyond the tolerance, below -(atol + rtol × that state's largest
    magnitude so far in the subject's run), after an accepted ODE step. The values
    of a failed subject are NaN from the failure on. An exception in a user rhs
    has no status: it raises SolveError whatever ``errors`` says."""


@dataclass
class Run:
    """What the kernels produced for a trajectory run: ``buf`` (subject, output,
    time) holds the K concentrations, then K cumulative AUCs (``auc``), then the
    compartment amounts (``amounts``); ``status`` per subject (0 = ok);
    ``nsteps`` the ODE's accepted steps (None on the exact path); ``windows`` the
    exact per-dose (pre-dose level, AUC), or None; ``solver`` its description."""

    buf: np.ndarray
    status: np.ndarray
    nsteps: np.ndarray | None
    windows: tuple | None
    solver: str


def run_trajectories(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    low: Lowered,
    params: dict,
    n: int,
    solver,
    output,
    progress,
) -> Run:
    """Concentrations (and AUC, amounts) of the ``n`` lowered subjects at ``t``
    with ``solver`` (Exact or ODE); ``output`` is a Trajectories. ``params`` are
    the individual parameters (occasion 1's with IOV), which the ODE path's rhs
    and time effects see."""
    A, obs_cmt, obs_scale = _observed_outputs(model, low, n, output, params)
    buf = _buffer(output, (n, obs_cmt.size, t.size))
    status = np.zeros(n, dtype=np.int64)
    # doses whose concentrations or AUC would overflow are refused by name here;
    # the kernels' status codes stay a last line of defence
    check_magnitude(model, regimen, low, t[-1])
    if solver.name == "exact":
        want = bool(regimen.doses and output.dose_windows)
        with compile_notice(
            f"exact solver for {A.shape[2]}-state systems", progress, COMPILE_S["exact"]
        ) as notice:
            if notice is not None:
                # a run of no subjects first: the kernels compile (or load from
                # the cache) here, before any progress bar
                low0 = _no_subjects(low)
                run_exact_slice(
                    A[:0], low0, t, obs_cmt, obs_scale[:0], buf[:0], status[:0]
                )
                if want:
                    dose_windows(low0, regimen, t, 0, output.auc)
        run_exact(A, low, t, obs_cmt, obs_scale, buf, status, progress)
        windows = dose_windows(low, regimen, t, n, output.auc) if want else None
        return Run(buf, status, None, windows, EXACT_TEXT)
    from ._run_ode import run_ode

    nsteps = run_ode(
        model,
        regimen,
        t,
        low,
        A,
        params,
        obs_cmt,
        obs_scale,
        buf,
        status,
        solver,
        output.auc,
        progress,
    )
    return Run(
        buf,
        status,
        nsteps,
        None,
        f"ode: {solver.method} (Dormand-Prince 5(4) / Rodas4)",
    )


def _observed_outputs(model: Model, low: Lowered, n: int, output, params=None):
    """The rate matrices and the kernel's outputs: the analytes' compartments and
    their scales (amount -> ng/mL), then with ``output.auc`` the AUC states
    (which extend the matrices), then one state per effect site (ng/mL), then
    with ``output.amounts`` every compartment (scale 1, mg)."""
    A, obs_cmt, obs_scale = low.A, low.obs_cmt, low.obs_scale
    ncmt = len(low.compartments)
    if output.auc:
        if model.rhs is not None:
            raise ValueError(
                "ks.Trajectories(auc=True) needs a model built from "
                "flows; for a user rhs integrate the returned "
                "concentrations (e.g. scipy's trapezoid)"
            )
        A, auc_cmt, auc_scale = with_auc(low)
        obs_cmt = np.concatenate([obs_cmt, auc_cmt])
        obs_scale = np.ascontiguousarray(np.hstack([obs_scale, auc_scale]))
    from ._effects import effects_on, with_effect_sites

    if model.effect_sites and effects_on(model, output):
        if model.rhs is not None or model.time_effects:
            raise ValueError(
                f"model {model.id!r} has effect sites and "
                f"{'a user rhs' if model.rhs is not None else 'time-varying flows'}; "
                f"effect sites join the constant rate matrix of a model built from "
                f"flows, so they are not supported here"
            )
        A, obs_cmt, obs_scale = with_effect_sites(
            model, low, A, obs_cmt, obs_scale, params, n
        )
    if output.amounts:
        obs_cmt = np.concatenate([obs_cmt, np.arange(ncmt, dtype=np.int64)])
        obs_scale = np.ascontiguousarray(np.hstack([obs_scale, np.ones((n, ncmt))]))
    return A, obs_cmt, obs_scale


def _buffer(output, shape: tuple) -> np.ndarray:
    """The caller's ``Trajectories(out=...)`` buffer, checked, or a new one."""
    out = output.out
    if out is None:
        return np.empty(shape)  # its size was checked before the subjects were built
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float64
        and out.shape == shape
        and out.flags.c_contiguous
    ):
        got = (
            f"{type(out).__name__} {getattr(out, 'dtype', '')} "
            f"{getattr(out, 'shape', '')}"
        )
        raise ValueError(
            f"ks.Trajectories(out=...) must be a C-contiguous float64 "
            f"array of shape {shape} (subjects, analytes, times); got "
            f"{got}"
        )
    return out


def run_exact(A, low: Lowered, t, obs_cmt, obs_scale, buf, status, progress) -> None:
    """The exact propagation, a slice of subjects at a time (for the progress
    bar; each subject's arithmetic is the same in any slicing)."""
    n = buf.shape[0]
    for a, b, bar in chunks(
        n, n * t.size * (8 if n < 2 else 1), progress, "simulating"
    ):
        s = slice(a, b)
        run_exact_slice(
            A[s], _subset(low, s), t, obs_cmt, obs_scale[s], buf[s], status[s]
        )
        bar.update(b - a)


def run_exact_slice(A, low: Lowered, t, obs_cmt, obs_scale, buf, status) -> None:
    """The exact kernel on these subjects (all of ``low``'s rows)."""
    from ._kernels.linear import population_linear, states

    population_linear(
        A,
        *_events(low),
        t,
        obs_cmt,
        obs_scale,
        buf,
        status,
        states(A.shape[2]),
        states(A.shape[2]),
    )


def _events(low: Lowered) -> tuple:
    """``low``'s event table in the kernels' argument order: time (h),
    compartment, kind, value (mg or mg/h)."""
    return low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value


def _with_auc_outputs(low: Lowered) -> tuple:
    """``low``'s rate matrices with the AUC states added, and the outputs to
    observe: its observed compartments and scales, then the AUC states."""
    A, auc_cmt, auc_scale = with_auc(low)
    obs_cmt = np.concatenate([low.obs_cmt, auc_cmt])
    obs_scale = np.ascontiguousarray(np.hstack([low.obs_scale, auc_scale]))
    return A, obs_cmt, obs_scale


def _subset(low: Lowered, s: slice) -> Lowered:
    """The per-subject arrays of ``low`` for the subjects ``s``."""
    from dataclasses import replace

    return replace(
        low,
        A=low.A[s],
        ev_time=low.ev_time[s],
        ev_cmt=low.ev_cmt[s],
        ev_kind=low.ev_kind[s],
        ev_value=low.ev_value[s],
        obs_scale=low.obs_scale[s],
        dose_mg=low.dose_mg[s],
    )


def _no_subjects(low: Lowered) -> Lowered:
    return _subset(low, slice(0, 0))


def dose_windows(low: Lowered, regimen: Regimen, t: np.ndarray, n: int, same: bool):
    """Exact per-dose quantities from a second, cheap kernel run whose only output
    times are the dose times: the concentration just before each dose and the AUC
    between consecutive doses (integrator states, not trapezoids). It runs the
    trajectories' kernel, compiled already (a kernel of its own cost ~7 s more in
    every first call): ``same``, the trajectories ran with these AUC states
    (``Trajectories(auc=True)``); otherwise their kernel was compiled for the
    model's n states and takes the generic loops for these n + K (the unrolled
    loops' arithmetic, in the same order; with so few outputs their speed hardly
    matters)."""
    from ._kernels.linear import population_linear, states

    starts = np.array(regimen.times)
    end = t[-1]
    before = np.nextafter(starts, -np.inf).clip(0.0)
    aux_t = np.concatenate([before, starts.clip(max=end), [end]])
    order = np.argsort(aux_t, kind="stable")
    K = low.obs_cmt.size
    A, obs_cmt, obs_scale = _with_auc_outputs(low)
    aux = np.empty((n, 2 * K, aux_t.size))
    status = np.zeros(n, dtype=np.int64)
    population_linear(
        A,
        *_events(low),
        np.ascontiguousarray(aux_t[order]),
        obs_cmt,
        obs_scale,
        aux,
        status,
        states(A.shape[2] if same else low.A.shape[2]),
        states(A.shape[2] if same else low.A.shape[2]),
    )
    vals = np.empty_like(aux)
    vals[:, :, order] = aux
    D = starts.size
    predose = vals[:, :K, :D]
    predose[:, :, starts <= 0.0] = 0.0  # nothing is in the body before t = 0
    cum = vals[:, K:, D:]  # AUC at each dose start (clipped to end), then at end
    dose_auc = cum[:, :, 1:] - cum[:, :, :-1]
    predose[:, :, late_doses(starts, t)] = np.nan  # not simulated (GridWarning)
    dose_auc[:, :, starts >= end] = np.nan  # and an empty window at t[-1]
    return np.ascontiguousarray(predose), np.ascontiguousarray(dose_auc)


def run_metrics_chunk(
    low: Lowered,
    t: np.ndarray,
    starts: np.ndarray,
    level: float,
    out: tuple,
    status: np.ndarray,
    progress=False,
) -> None:
    """Per-dose metrics of one chunk of lowered subjects (lowered with
    ``markers=True``), written into ``out`` = (cmax, tmax, time above, cumulative
    AUC at each dose start and at the end, pre-dose level), the chunk's slices.
    ``progress``: as simulate's, for the notice of a first compile."""
    from ._kernels.linear import population_linear_metrics, states
    from .metrics import TIE_RTOL

    K = low.obs_cmt.size
    A, obs_cmt, obs_scale = _with_auc_outputs(low)
    cmax, tmax, tab, aucs, pre = out
    notice = compile_notice(
        f"metrics kernel for {A.shape[2]}-state systems",
        progress,
        COMPILE_S["metrics"],
    )
    with notice:
        population_linear_metrics(
            A,
            *_events(low),
            t,
            obs_cmt,
            obs_scale,
            starts,
            TIE_RTOL,
            level,
            cmax,
            tmax,
            tab,
            aucs,
            pre,
            status,
            states(A.shape[2]),
            states(A.shape[2] - K),
        )


def chunks(n: int, work: float, progress, label: str):
    """Subject slices for the kernel; with a progress bar (a long run, > ~50 M
    output values, in a terminal or notebook; or progress=True), about 50 of them,
    otherwise one slice. Results do not depend on the slicing: each subject's
    arithmetic is the same."""
    from ._progress import Bar, show

    bar_on = show(progress, work > PROGRESS_MIN_WORK)
    step = max(1, -(-n // 50)) if bar_on else n
    step = max(step, min(n, 64))  # keep the kernel's subject blocks full
    with Bar(n, label, bar_on) as bar:
        for a in range(0, n, step):
            yield a, min(n, a + step), bar


def subject_list(idx: np.ndarray, limit: int = 5) -> str:
    """'subject 3' or 'subjects 0, 4, 9 ... (12 in all)'."""
    if idx.size == 1:
        return f"subject {idx[0]}"
    more = f" ... ({idx.size} in all)" if idx.size > limit else ""
    return "subjects " + ", ".join(str(i) for i in idx[:limit]) + more


def time_effect_text(model: Model) -> str:
    return ", ".join(
        f"{name} x (1 + {slope:g} t)" for name, slope in model.time_effects
    )


def check_status(model: Model, run: Run, t: np.ndarray, errors: str) -> None:
    """With ``errors="raise"``, a SolveError naming the failed subjects."""
    if errors == "raise" and run.status.any():
        raise SolveError(
            failure_message(
                model, run.status, run.buf, t, "exact" if run.nsteps is None else "ode"
            )
        )


def failure_message(
    model: Model, status: np.ndarray, buf: np.ndarray, t: np.ndarray, solver: str
) -> str:
    """SolveError text: per status code, the subjects (first few), from which
    output time their values are NaN, and what produced it."""
    bad = np.flatnonzero(status)
    parts = []
    for c in sorted(set(status[bad].tolist())):
        idx = np.flatnonzero(status == c)
        why = STATUS.get(c, "unknown status")
        if c == 3 and model.rhs is not None:
            name = getattr(model.rhs, "__name__", "rhs")
            why = (
                f"the state became non-finite (NaN/inf): the model's rhs {name} "
                f"returned non-finite derivatives (e.g. a division by a state or "
                f"parameter that reached 0) or the parameters are extreme"
            )
        elif c == 3 and model.time_effects:
            why += (
                f"; this model's parameters change in time "
                f"({time_effect_text(model)}, t in h after the first dose), "
                f"up to the last output time {t[-1]:g} h: check the time "
                f"effects' slopes"
            )
        s = idx[0]
        nan = np.isnan(buf[s, 0]) if buf.shape[1] else np.zeros(t.size, bool)
        since = ""
        if nan.any() and solver == "ode":  # the ODE kernel fills NaN from there
            since = f" (NaN from t = {t[int(np.argmax(nan))]:g} h" + (
                f" for subject {s})" if idx.size > 1 else ")"
            )
        parts.append(f"status {c} for {subject_list(idx)}{since}: {why}")
    return (
        f"{bad.size} of {status.size} subjects failed: {'; '.join(parts)}. "
        f"Pass errors='keep' to keep their rows (NaN) with the status."
    )
