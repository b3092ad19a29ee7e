"""``simulate``: validate -> individual parameters -> lower -> kernel -> Dataset."""

from __future__ import annotations

import contextvars
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from ._lower import Lowered, check_magnitude, lower, sessions, with_auc
from .dosing import MAX_TIME_H, Dose, Regimen
from .model import KNOWN_COVARIATES, Model
from .modelfile import load_model
from .options import ODE, Exact, Metrics, Subjects, Trajectories
from .population import Population
from .units import parse_quantity, parse_unit, to_ng_per_ml

__all__ = ["GridWarning", "SolveError", "ValidityWarning", "grid", "simulate"]

SOLVERS = ("auto", "exact", "ode")
ODE_METHODS = {"auto": 0, "dopri5": 1, "rosenbrock": 2}
_STATUS = {
    1: "the ODE solver reached max_steps; raise max_steps or loosen rtol/atol",
    2: "the ODE step size underflowed; the problem may be ill-posed or need the "
       "stiff method (ode_method='rosenbrock')",
    3: "the state became non-finite (NaN/inf); check the parameters and the rhs",
    4: "the exact propagation gave a non-finite value: the doses or rates overflow "
       "double precision; check the dose amounts and units, the parameters, and the "
       "dose and output times (hours)",
    5: "a compartment amount went negative beyond the tolerance (below -(atol + "
       "rtol x its largest amount so far) after an accepted step), so the solution "
       "is not trustworthy from there on; use ode_method='rosenbrock' for a stiff "
       "model, tighter rtol/atol, or check that the rhs never removes more drug "
       "than a compartment holds",
}


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


def _subject_list(idx: np.ndarray, limit: int = 5) -> str:
    """'subject 3' or 'subjects 0, 4, 9 ... (12 in all)'."""
    if idx.size == 1:
        return f"subject {idx[0]}"
    more = f" ... ({idx.size} in all)" if idx.size > limit else ""
    return "subjects " + ", ".join(str(i) for i in idx[:limit]) + more


def _failure_message(model: Model, status: np.ndarray, buf: np.ndarray,
                     t: np.ndarray, solver: str) -> str:
    """SolveError text: per status code, the subjects (first few), from which
    output time their values are NaN, and what produced it."""
    bad = np.flatnonzero(status)
    parts = []
    for c in sorted(set(status[bad].tolist())):
        idx = np.flatnonzero(status == c)
        why = _STATUS.get(c, "unknown status")
        if c == 3 and model.rhs is not None:
            name = getattr(model.rhs, "__name__", "rhs")
            why = (f"the state became non-finite (NaN/inf): the model's rhs {name} "
                   f"returned non-finite derivatives (e.g. a division by a state or "
                   f"parameter that reached 0) or the parameters are extreme")
        elif c == 3 and model.time_effects:
            why += (f"; this model's parameters change in time "
                    f"({_time_effect_text(model)}, t in h after the first dose), "
                    f"up to the last output time {t[-1]:g} h: check the time "
                    f"effects' slopes")
        s = idx[0]
        nan = np.isnan(buf[s, 0]) if buf.shape[1] else np.zeros(t.size, bool)
        since = ""
        if nan.any() and solver == "ode":  # the ODE kernel fills NaN from there
            since = (f" (NaN from t = {t[int(np.argmax(nan))]:g} h" +
                     (f" for subject {s})" if idx.size > 1 else ")"))
        parts.append(f"status {c} for {_subject_list(idx)}{since}: {why}")
    return (f"{bad.size} of {status.size} subjects failed: {'; '.join(parts)}. "
            f"Pass errors='keep' to keep their rows (NaN) with the status.")


def _time_effect_text(model: Model) -> str:
    return ", ".join(f"{name} x (1 + {slope:g} t)" for name, slope in
                     model.time_effects)


def _check_time_effects(model: Model, t0: float, t_end: float) -> None:
    """A linear time effect, parameter x (1 + slope (t - t0)), must keep its
    parameter positive until the last output time: a negative slope reaches 0 at
    t0 + 1/|slope|, after which the model would create drug."""
    for name, slope in model.time_effects:
        factor = 1.0 + slope * (t_end - t0)
        if not factor > 0:
            raise ValueError(
                f"time_effects of model {model.id!r}: {name} x (1 + {slope:g} t) "
                f"(t in h after the first dose at {t0:g} h) reaches 0 at "
                f"{t0 - 1.0 / slope:g} h, before the last output time {t_end:g} h; "
                f"the model does not hold that long. End the output times earlier")


def _check_rhs_parameters(model: Model, p: np.ndarray) -> None:
    """The parameter vectors a user rhs receives (S, P) are finite; else name the
    parameter and the subjects."""
    bad = ~np.isfinite(p)
    if bad.any():
        s, k = (int(x[0]) for x in np.nonzero(bad))
        name = model.parameter_names[k]
        raise ValueError(
            f"parameter {name!r} is {p[s, k]} for "
            f"{_subject_list(np.flatnonzero(bad[:, k]))}; the model's rhs needs "
            f"finite parameter values. Check the overrides or covariates that "
            f"produced it")


def _kernel_exception(model, kernels, exc, status, span, p, x0, low, obs_scale,
                      args) -> SolveError:
    """A SolveError for an exception raised inside the ODE kernel (by a user's
    rhs: ketasim's own kernels never raise), re-raised by numba (``exc``, a
    SystemError whose cause is the original) or lost in a worker thread (None;
    ``status`` -1 marks the subjects it cut short). Those subjects are run again
    one at a time, serially, to name the first whose integration raises."""
    orig = exc
    if isinstance(exc, SystemError):
        orig = exc.__cause__ or exc.__context__ or exc
    a, b = span
    t, obs_cmt, rtol, atol, method, jac_const, max_steps = args
    subject = ""
    out = np.empty((obs_cmt.size, t.size))
    cut = np.flatnonzero(status[a:b] == -1) + a
    for s in (cut if cut.size else range(a, b)):
        try:
            kernels.solve_subject(p[s], x0[s], low.ev_time[s], low.ev_cmt[s],
                                  low.ev_kind[s], low.ev_value[s], t, obs_cmt,
                                  obs_scale[s], rtol, atol, method, jac_const,
                                  max_steps, out)
        except Exception as again:  # the same failure, now attributable
            subject = f" for subject {s}"
            orig = again
            break
    if orig is None:  # the serial run did not raise again: nothing to name
        return SolveError(
            f"the ODE kernel stopped early for {_subject_list(cut)} without a "
            f"status (an exception in the model's rhs that numba did not pass on)")
    what = f"{type(orig).__name__}: {orig}" if str(orig) else type(orig).__name__
    if model.rhs is None:
        return SolveError(f"the ODE kernel raised {what}{subject}; ketasim's own "
                          f"kernels never should (a bug: please report it with the "
                          f"call)")
    name = getattr(model.rhs, "__name__", "rhs")
    return SolveError(
        f"the model's rhs {name}(t, x, p, dxdt) raised {what}{subject} while "
        f"integrating. The rhs is called at any time and state the solver tries "
        f"(amounts may be slightly below 0 within atol), so it must not raise: "
        f"return finite derivatives for every such input")


class ValidityWarning(UserWarning):
    """Patients lie outside the covariate ranges a model was estimated on."""


class GridWarning(UserWarning):
    """Doses start after the last output time: they are not simulated, and their
    per-dose metrics are NaN."""


# while a Dask task simulates its chunk: the index of the chunk's first subject in
# the whole run (the call itself has warned already); None outside chunks
_CHUNK_START = contextvars.ContextVar("ketasim_chunk_start", default=None)


def _stacklevel() -> int:
    """``warnings.warn`` stacklevel of the first caller outside ketasim, so that a
    warning points at the user's line whichever path issued it."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and (
            frame.f_globals.get("__name__", "") + ".").startswith("ketasim."):
        frame, level = frame.f_back, level + 1
    return level


def _late(starts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Doses that start after the last output time: not simulated (GridWarning;
    every per-dose value NaN). A dose at the last output time is simulated (its
    pre-dose level is the previous window's trough) but its window is empty, so
    its window metrics are NaN too (``starts >= t[-1]``)."""
    return np.asarray(starts, dtype=float) > t[-1]


def _warn_late_doses(regimen: Regimen, t: np.ndarray) -> None:
    starts = np.array(regimen.times, dtype=float)
    late = np.flatnonzero(_late(starts, t))
    if late.size and _CHUNK_START.get() is None:
        end = t[-1]
        need = math.ceil(starts[-1] / 24.0)
        warnings.warn(
            f"{late.size} of {starts.size} doses start after the last output time "
            f"({end:g} h = {end / 24:.3g} d), the first of them doses[{late[0]}] at "
            f"{starts[late[0]]:g} h: they are not simulated and their per-dose "
            f"metrics (Cmax, Tmax, AUC, pre-dose level, time above) are NaN. Extend "
            f"the output times past {starts[-1]:g} h (e.g. ks.grid(\"{need + 1} d\", "
            f"\"5 min\")) or leave those doses out of the regimen.",
            GridWarning, stacklevel=_stacklevel())


GRID_MAX_POINTS = 10_000_000  # a year every 5 s; 80 MB of times, 80 MB per subject
# and analyte of results: more is a mistyped step (a '1e-9 h' step over a day would
# be 179 GiB), so grid() refuses it with the count rather than trying to allocate


def grid(end, step, *, start=0.0) -> np.ndarray:
    """Output times in hours from ``start`` to ``end`` inclusive every ``step``.

    Multiples are formed as ``k * value / divisor`` in the step's own unit, so whole
    hours land exactly (``grid("24 h", "5 min")[12] == 1.0``) and event times such as
    day 3 coincide with grid points instead of missing them by an ulp.

    At most :data:`GRID_MAX_POINTS` (10 million) points: a longer grid raises a
    ValueError giving the count, before anything is allocated.

    Examples
    --------
    >>> grid("1 h", "20 min")
    array([0.        , 0.33333333, 0.66666667, 1.        ])
    """
    q = parse_quantity(step, what="step", default_unit="h")
    u = parse_unit(q.unit)
    if u.dimension != "time" or not q.value > 0 or not math.isfinite(q.value):
        raise ValueError(f"step must be a positive time such as '5 min'; got {step!r}")
    from .units import to_hours

    t0 = to_hours(start, what="start")
    t1 = to_hours(end, what="end")
    if t1 < t0:
        raise ValueError(f"end ({t1:g} h) must not be before start ({t0:g} h)")
    h = q.value * u.factor
    span = (t1 - t0) / h * (1 + 1e-12)  # inf for '1e308 h' every '1e-10 h'
    count = math.floor(span) + 1 if math.isfinite(span) else math.inf
    if count > GRID_MAX_POINTS:
        # exact up to a trillion; beyond, 3 digits (a 1e300 h span has 300 digits)
        shown = (f"{count:,}" if count < 1e12 else f"{count:.3g}"
                 if math.isfinite(count) else "more than 1e308")
        raise ValueError(
            f"grid from {t0:g} h to {t1:g} h every {step!r} would have "
            f"{shown} points; at most {GRID_MAX_POINTS:,} are allowed "
            f"({count * 8 / 2**30:.3g} "
            f"GiB for the times alone, that much again per subject and analyte). "
            f"Use a longer step or a shorter span, or pass the times you need as "
            f"an array")
    n = int(count)
    k = np.arange(n, dtype=float)
    if u.factor < 1:  # min, s: divide by the whole number of units per hour
        return t0 + k * q.value / round(1.0 / u.factor)
    return t0 + k * (q.value * u.factor)


def _default_times(regimen: Regimen) -> np.ndarray:
    """Every 5 min until 24 h after the end of the last dose; a regimen so long
    that this would exceed GRID_MAX_POINTS (95 years) asks for ``times=``."""
    last = max((d.time + (d.duration or 0.0) for d in regimen.doses), default=0.0)
    count = (last + 24.0) * 12 + 1
    if count > GRID_MAX_POINTS:
        raise ValueError(
            f"the default output times (every 5 min until 24 h after the last dose "
            f"ends at {last:g} h) would be {count:.4g} points, more than "
            f"{GRID_MAX_POINTS:,}; pass times= (e.g. ks.grid(...) with a longer "
            f"step)")
    return grid(last + 24.0, "5 min")


def _physical_memory() -> int | None:
    """Bytes of physical memory, or None where the OS does not say."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # e.g. Windows
        return None


# The most memory simulate() may use at its peak (the float64 output buffer,
# subjects x outputs x times x 8 bytes, and every per-subject array: covariates,
# parameters, dose events, per-dose values, the observed copy): half the machine's
# physical memory, or 8 GiB where that is unknown. A larger request is refused
# before any per-subject array is allocated, with the size and the ways to proceed
# (fewer subjects or times, output="metrics", chunks=).
RESULT_MAX_BYTES = (_physical_memory() or 16 * 2**30) // 2

_LIMIT_TEXT = "(half of this machine's memory)"


def _per_subject_bytes(model: Model, regimen: Regimen, *, occasions: int,
                       outputs: int, solver: str) -> int:
    """Bytes of the per-subject arrays besides the output buffer, an upper
    estimate of their peak: covariates (drawn: their uniforms and intermediates),
    individual parameters per occasion with their random effects, the lowered dose
    events (4 tables, built from per-dose lists, so twice), the rate matrices (and
    their full-model temporaries), observation scales, doses in mg, the exact
    per-dose windows (two auxiliary tables and their copies), status, steps,
    subject labels and, on the ODE path, its parameter vectors."""
    K = len(model.analytes)
    C = len(model.compartment_names)
    P = len(model.parameters)
    D = len(regimen.doses)
    events = sum(2 * len(model.routes[d.route].pathways) + 2
                 if d.route in model.routes else 4 for d in regimen.doses)
    n = (24  # covariates: 7 values, 6 uniforms and intermediates
         + P * (3 * occasions + 2)  # parameters, etas and IOV etas per occasion
         + 2 * 4 * events  # ev_time, ev_cmt, ev_kind, ev_value (and their lists)
         + occasions * (C + K) ** 2 + 2 * C * C  # A (with AUC states), temporaries
         + outputs + D  # obs_scale, dose_mg
         + 3 * 2 * K * (2 * D + 1)  # exact per-dose windows: aux, vals, copies
         + 3)  # status, ode_steps, subject
    if solver == "ode":
        n += 3 * (C + K) ** 2 + C  # p (A - t0 A1, A1), x0
    return 8 * n


def _check_memory(n: int, per_subject: int, detail: str, ways: str) -> None:
    """Refuse a run whose peak, ``n`` subjects x ``per_subject`` bytes, exceeds
    :data:`RESULT_MAX_BYTES`, before any per-subject array is allocated.
    ``detail`` says what a subject's bytes are; ``ways`` how to proceed."""
    size = n * per_subject
    if size > RESULT_MAX_BYTES:
        raise ValueError(
            f"the result would need {size / 2**30:.3g} GiB at its peak ({n} subjects "
            f"x {per_subject:,} bytes: {detail}), more than the limit of "
            f"{RESULT_MAX_BYTES / 2**30:.3g} GiB {_LIMIT_TEXT}. {ways}")


_WAYS = ("Use fewer subjects or fewer output times (a longer step, or only the "
         "times you need), output='metrics' (per-dose metrics in bounded memory), "
         "or chunks= (a lazy Dask result computed and written chunk by chunk)")


def _check_trajectory_memory(model: Model, regimen: Regimen, t: np.ndarray, n: int,
                             *, occasions: int, auc: bool, amounts: bool,
                             residual: bool, out_given: bool, solver: str) -> None:
    """The peak of an in-memory trajectory run: the output buffer (analytes, AUC
    states, compartment amounts) x times, the observed copy with
    ``residual=True`` (its noise is drawn in bounded blocks), and the other
    per-subject arrays (:func:`_per_subject_bytes`)."""
    from ._lower import reachable

    K = len(model.analytes)
    if amounts:
        targets = {pw.target for d in regimen.doses if d.route in model.routes
                   for pw in model.routes[d.route].pathways}
        ncmt = (len(reachable(model, targets)) if model.rhs is None
                else len(model.compartment_names))
    else:
        ncmt = 0
    outputs = K * (1 + auc) + ncmt
    what = "concentrations" + ", AUC" * auc + ", amounts" * amounts
    buffer = 0 if out_given else 8 * outputs * t.size
    # residual=True: the observed copy, and the draws of one block of subjects
    # with the generator's temporaries (about 6 arrays), shared by the n subjects
    block = min(n, _residual_block(t.size))
    observed = (8 * K * t.size + -(-6 * 8 * 3 * t.size * block // n)
                if residual else 0)
    other = _per_subject_bytes(model, regimen, occasions=occasions, outputs=outputs,
                               solver=solver)
    detail = (f"{outputs} outputs ({what}) x {t.size} times x 8 bytes"
              if not out_given else "the out= buffer is yours")
    if residual:
        detail += (f", {K} analytes x {t.size} times x 8 bytes for the observed "
                   f"concentrations (residual=True)")
    detail += f", {other:,} bytes of parameters, covariates, dose events and " \
              f"per-dose values"
    _check_memory(n, buffer + observed + other, detail, _WAYS)


def _occasions(model: Model, regimen: Regimen, population) -> int:
    """Occasions whose parameters a run draws: one per dosing session with
    inter-occasion variability (a population with ``iov=True`` and a model with
    IOV), else 1."""
    if population is None or not population.iov or not regimen.doses or not any(
            v.iov_omega > 0 for v in model.variability):
        return 1
    return int(sessions(regimen).max()) + 1


def _check_metrics_memory(model: Model, regimen: Regimen, n: int, chunk: int,
                          occasions: int) -> None:
    """The peak of ``output='metrics'``: per subject, its per-dose values (Cmax,
    Tmax, time above, pre-dose level, cumulative AUC and its differences: about 6
    x analytes x doses), status, label and covariates, kept for all ``n``; plus
    the working arrays of one chunk of ``chunk`` subjects."""
    K, W = len(model.analytes), len(regimen.doses)
    kept = 8 * (6 * K * W + K + 9)
    work = _per_subject_bytes(model, regimen, occasions=occasions,
                              outputs=2 * K, solver="exact")
    per = kept + -(-min(n, chunk) * work // n)
    _check_memory(n, per, f"{K} analytes x {W} doses x 6 per-dose values x 8 "
                  f"bytes, covariates and status, and the working arrays of "
                  f"{min(n, chunk)} subjects at a time", (
                      "Use fewer subjects, or chunks= (a lazy Dask result computed "
                      "and written chunk by chunk)"))


def _check_times(times) -> np.ndarray:
    if isinstance(times, str):
        raise TypeError(f"times must be an array of hours; got the string {times!r}. "
                        f"For a regular grid use ks.grid({times!r}, '5 min')")
    try:
        t = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"times must be an array of hours (numbers); got "
                        f"{type(times).__name__} {times!r:.80}") from None
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array of hours; got shape "
                         f"{t.shape}")
    bad = ~np.isfinite(t)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"times must be finite; times[{i}] = {t[i]}")
    if t[0] < 0:
        raise ValueError(f"times are hours after t = 0 and must be >= 0; got "
                         f"times[0] = {t[0]:g}")
    late = t > MAX_TIME_H  # 1e300 h spans overflow the AUC, blamed on the dose
    if late.any():
        i = int(np.argmax(late))
        raise ValueError(f"times must be at most {MAX_TIME_H:g} h (about 114 years "
                         f"after t = 0); got times[{i}] = {t[i]:.10g} h. Check their "
                         f"unit: times are hours")
    dec = np.diff(t) < 0
    if dec.any():
        i = int(np.argmax(dec)) + 1
        raise ValueError(f"times must be sorted: times[{i}] = {t[i]:g} h comes after "
                         f"times[{i - 1}] = {t[i - 1]:g} h; use np.sort(times)")
    return np.ascontiguousarray(t)


def _subjects(model: Model, covariates, parameters, *, warn: bool = True,
              defaults: bool = True):
    """Number of subjects, covariate arrays and parameter overrides, validated;
    a ValidityWarning for given covariates outside the model's ranges (``warn``).

    ``defaults``: the covariates not given are the model's reference values, and
    ``_validate.check_defaulted_covariates`` refuses one that does not describe the
    patient (outside the model's validity range; an adult reference weight for a
    child). False when a Population supplies the covariates (only the parameter
    overrides are read here).

    Covariates are checked by ``_validate.covariate_values`` (finite, plausible,
    flags 0/1). Overrides come back in canonical units (``_validate.parameter_values``
    reads the user's units): ``name`` -> absolute values (L, L/h, 1/h, h, fraction),
    ``name + "/kg"`` -> values per kg of body weight, which
    ``Model.individual_parameters`` multiplies by each subject's weight (a
    population's patients have theirs only there)."""
    from ._validate import (
        check_defaulted_covariates,
        check_derived_weight,
        covariate_values,
        is_table,
        noun,
        parameter_values,
    )

    for arg, table in (("covariates", covariates), ("parameters", parameters)):
        if table is not None and not is_table(table):
            raise TypeError(f"{arg} must be a mapping (name -> value or per-subject "
                            f"array), e.g. a dict; got {type(table).__name__}")
    covariates = {} if covariates is None else dict(covariates)  # a DataFrame too
    parameters = {} if parameters is None else dict(parameters)
    for name in covariates:
        if name not in KNOWN_COVARIATES:
            raise ValueError(f"unknown covariate {name!r}; known covariates: "
                             f"{', '.join(KNOWN_COVARIATES)}")
    for name in parameters:
        if name not in model.parameters:
            raise ValueError(f"model {model.id!r} has no parameter {name!r}; its "
                             f"parameters: {', '.join(model.parameters)}")
    arrays = {}
    for name, v in covariates.items():
        arrays[("covariate", name)] = np.atleast_1d(covariate_values(name, v))
    per_kg = {}
    for name, v in parameters.items():
        a, per_kg[name] = parameter_values(model, name, v)
        arrays[("parameter", name)] = np.atleast_1d(a)
    sizes = {a.size for a in arrays.values() if a.size != 1}
    if len(sizes) > 1:
        lens = {f"{k[1]}": a.size for k, a in arrays.items() if a.size != 1}
        raise ValueError(f"per-subject arrays must all have the same length; got "
                         f"{lens}")
    n = sizes.pop() if sizes else 1
    cov = {}
    used = set(model.covariates) | {"weight"}
    for name in used:
        if name in covariates:
            cov[name] = np.broadcast_to(arrays[("covariate", name)], (n,)).copy()
        elif name in model.covariates:
            cov[name] = np.full(n, model.covariates[name])
        else:
            # no weight given and none in the model: unknown, so an mg/kg dose is
            # refused by name (lower) instead of being scaled by a made-up weight
            cov[name] = np.full(n, np.nan)
    for name in covariates:
        cov.setdefault(name, np.broadcast_to(arrays[("covariate", name)], (n,)).copy())
    derived = "weight" not in covariates and {"height", "bmi"} <= set(covariates)
    if derived:  # as Population does: weight from height (cm) and BMI (kg/m^2)
        cov["weight"] = cov["bmi"] * (cov["height"] / 100.0) ** 2
        check_derived_weight(cov["weight"])
    if defaults:
        check_defaulted_covariates(
            model, set(covariates) | ({"weight"} if derived else set()), cov)
    if warn and _CHUNK_START.get() is None:  # the covariates given (as a
        # Population's) and weight when derived from them
        from .population import validity_messages

        given = set(covariates) | ({"weight"} if derived else set())
        for msg in validity_messages(model, {k: cov[k] for k in given}):
            warnings.warn(msg, ValidityWarning, stacklevel=_stacklevel())
    fractions = {pw.fraction for r in model.routes.values() for pw in r.pathways} | \
        {pw.later_devices for r in model.routes.values() for pw in r.pathways} | \
        {f.fraction for f in model.flows}
    mtt = {f.rate for f in model.flows if f.kind == "mtt"}
    over = {}
    for name in parameters:
        v = np.broadcast_to(arrays[("parameter", name)], (n,))
        p = model.parameters[name]
        unit = p.canonical_unit.removesuffix("/kg") + ("/kg" if per_kg[name] else "")
        strict = p.dimension in ("volume", "clearance", "rate constant") or name in mtt
        if np.any(v <= 0) if strict else np.any(v < 0):
            i = int(np.argmax(v <= 0 if strict else v < 0))
            why = ("a mean transit time" if name in mtt and p.dimension == "time"
                   else f"a {noun(p.dimension)}")
            raise ValueError(f"parameters[{name!r}] is {why} and must be "
                             f"{'> 0' if strict else '>= 0'}; got {v[i]:g} {unit} "
                             f"(subject {i})")
        if name in fractions and name not in model.fractions_above_one \
                and np.any(v > 1):
            i = int(np.argmax(v > 1))
            raise ValueError(f"parameters[{name!r}] is a fraction of a dose or a flow "
                             f"(bioavailability, formation share) and must be <= 1; "
                             f"got {v[i]:g} (subject {i})")
        over[name + "/kg" if per_kg[name] else name] = v
    return n, cov, over


def _with_units(model: Model, over: dict, n: int) -> dict:
    """``_subjects``' overrides as ``name -> (values (n,), canonical unit)``, the
    form a Dask chunk's ``simulate(parameters=...)`` reads back unchanged (factor
    1, so bit for bit)."""
    out = {}
    for key, v in over.items():
        name = key.removesuffix("/kg")
        if v.size not in (1, n):
            raise ValueError(f"parameters[{name!r}] needs 1 or {n} values (one per "
                             f"subject); got {v.size}")
        unit = model.parameters[name].canonical_unit.removesuffix("/kg")
        out[name] = (np.broadcast_to(v, (n,)), unit + ("/kg" if key != name else ""))
    return out


_MOVED = {
    "covariates": "subjects=ks.Subjects(covariates=...)",
    "parameters": "subjects=ks.Subjects(parameters=...)",
    "rtol": "solver=ks.ODE(rtol=...)",
    "atol": "solver=ks.ODE(atol=...)",
    "ode_method": "solver=ks.ODE(method=...)",
    "max_steps": "solver=ks.ODE(max_steps=...)",
    "amounts": "output=ks.Trajectories(amounts=True)",
    "auc": "output=ks.Trajectories(auc=True)",
    "residual": "output=ks.Trajectories(residual=True)",
    "out": "output=ks.Trajectories(out=...)",
    "dose_windows": "output=ks.Trajectories(dose_windows=...)",
    "above": "output=ks.Metrics(above=...)",
    "chunk": "output=ks.Metrics(chunk=...)",
}


def simulate(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    times=None,
    population: Population | None = None,
    subjects: Subjects | None = None,
    solver: Exact | ODE | None = None,
    output: Trajectories | Metrics | None = None,
    errors: str = "raise",
    chunks: int | None = None,
    progress: bool | str = "auto",
    **moved,
) -> xr.Dataset:
    """Simulate plasma concentrations for one subject, a table of subjects or a
    virtual population.

    Parameters
    ----------
    model : Model, str or Path
        A model, a bundled model name (``"domino"``) or a model-file path.
    regimen : Regimen or Dose
        The doses; routes must be defined by the model.
    times : array_like, optional
        Output times in h after t = 0, sorted, >= 0 and at most
        :data:`~ketasim.dosing.MAX_TIME_H` (1e6 h, about 114 years). Default:
        every 5 min until 24 h after the end of the last dose.
    population : Population, optional
        Virtual patients: covariates, inter-individual variability and
        inter-occasion variability (one draw per dosing session) from one seed.
    subjects : Subjects, optional
        Known subjects instead: covariates and individual parameters per row, no
        random effects (:class:`~ketasim.Subjects`). Not combined with
        ``population``. Without either, one subject with the model's reference
        covariates and typical parameters.
    solver : Exact or ODE, optional
        :class:`~ketasim.Exact` (matrix-exponential propagation; linear
        time-invariant models, no tolerance) or :class:`~ketasim.ODE` (adaptive
        integration with its tolerances). Default: ``Exact()`` for linear
        time-invariant models, ``ODE()`` for models with a user rhs or time
        effects.
    output : Trajectories or Metrics, optional
        :class:`~ketasim.Trajectories` (default: concentration curves, with
        optional amounts, cumulative AUC, residual-error samples, an ``out=``
        buffer) or :class:`~ketasim.Metrics` (per-dose Cmax, Tmax, AUC, pre-dose
        level and time above, streamed in chunks; exact solver only).
    errors : {"raise", "keep"}
        On solver failure raise :class:`SolveError`, or keep NaN rows and report
        them in ``status``.
    chunks : int, optional
        Return a Dask-backed Dataset whose per-subject variables are computed
        ``chunks`` subjects at a time, lazily, on whatever Dask scheduler is active
        (threads by default, or a ``dask.distributed`` cluster once a ``Client`` is
        created). Same numbers as the in-memory run. Write it with
        ``ds.to_zarr(...)`` or ``ds.to_netcdf(...)`` to stream to disk.
    progress : bool or "auto"
        A progress bar on stderr for long runs. ``"auto"``: only in a terminal or a
        notebook, never when output is redirected (tests, batch jobs).

    Returns
    -------
    xarray.Dataset
        ``concentration`` (subject, analyte, time) in ng/mL (or, with
        ``Metrics``, per-dose metrics (subject, analyte, dose)), ``parameters``,
        ``status``, the dose table, covariates as ``subject`` coordinates and
        provenance attributes: ``model_id``, ``model_name``, ``model_drug``,
        ``model_enantiomer``, ``model_sampling``, ``model_grade``, ``model_file``,
        ``model_sha256``, ``references`` (the model's citations), ``ketasim_version``,
        ``solver``, ``time_convention``; ``rtol``, ``atol`` and ``atol_units`` on the
        ODE path; ``seed`` and ``population`` when a ``population`` is given.

    Examples
    --------
    >>> import ketasim as ks
    >>> dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    >>> ds = ks.simulate("domino", dose, times=ks.grid("2 h", "20 min"))
    >>> print(ds.concentration.sel(analyte="ketamine").round(1).values)
    [[  0.  209.6 240.3  55.1  45.8  40.4  35.8]]
    >>> ds = ks.simulate("domino", dose, subjects=ks.Subjects(covariates={"weight": 90}),
    ...                  solver=ks.ODE(rtol=1e-8), output=ks.Trajectories(auc=True))
    """
    if moved:
        name = next(iter(moved))
        where = _MOVED.get(name)
        if where is None:
            raise TypeError(f"simulate() got an unexpected keyword argument {name!r}")
        raise TypeError(f"simulate() no longer takes {name}=; write {where}")
    if solver is not None and not isinstance(solver, Exact | ODE):
        raise TypeError(f"solver must be ks.Exact() or ks.ODE(...); got {solver!r}"
                        f" ({type(solver).__name__})")
    if output is None:
        output = Trajectories()
    if not isinstance(output, Trajectories | Metrics):
        raise TypeError(f"output must be ks.Trajectories(...) or ks.Metrics(...); "
                        f"got {output!r} ({type(output).__name__})")
    if subjects is not None and not isinstance(subjects, Subjects):
        raise TypeError(f"subjects must be ks.Subjects(covariates=..., "
                        f"parameters=...); got {type(subjects).__name__}")
    if subjects is not None and population is not None:
        raise ValueError("give either population= (virtual patients) or subjects= "
                         "(known patients), not both; a population's own covariate "
                         "table goes to Population(covariates=...)")
    sub = subjects if subjects is not None else Subjects()
    ode = solver if isinstance(solver, ODE) else ODE()
    kw = dict(rtol=ode.rtol, atol=ode.atol, ode_method=ode.method,
              max_steps=ode.max_steps,
              solver="auto" if solver is None else solver.name)
    if isinstance(output, Metrics):
        kw.update(output="metrics", above=output.above, chunk=output.chunk)
    else:
        kw.update(amounts=output.amounts, auc=output.auc, residual=output.residual,
                  out=output.out, dose_windows=output.dose_windows)
    return _simulate(model, regimen, times=times, population=population,
                     covariates=sub.covariates, parameters=sub.parameters,
                     errors=errors, progress=progress, chunks=chunks, **kw)


def _simulate(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    times=None,
    population: Population | None = None,
    covariates: Mapping | None = None,
    parameters: Mapping | None = None,
    residual: bool = False,
    solver: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    ode_method: str = "auto",
    max_steps: int = 100_000,
    amounts: bool = False,
    auc: bool = False,
    out: np.ndarray | None = None,
    errors: str = "raise",
    progress: bool | str = "auto",
    output: str = "trajectories",
    above: float | str | None = None,
    chunk: int = 65_536,
    chunks: int | None = None,
    dose_windows: bool = True,
) -> xr.Dataset:
    """The simulation with its options unpacked (see :func:`simulate`)."""
    from ._validate import check_bool

    # a string such as "no" would read as True; numpy booleans become bools
    residual, amounts, auc, dose_windows = (
        check_bool(v, k) for k, v in (("residual", residual), ("amounts", amounts),
                                      ("auc", auc), ("dose_windows", dose_windows)))
    model = load_model(model)
    if isinstance(regimen, Dose):
        regimen = Regimen([regimen])
    if not isinstance(regimen, Regimen):
        raise TypeError(f"regimen must be a Regimen or a Dose; got "
                        f"{type(regimen).__name__}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
    if ode_method not in ODE_METHODS:
        raise ValueError(f"ode_method must be one of {tuple(ODE_METHODS)}; got "
                         f"{ode_method!r}")
    if errors not in ("raise", "keep"):
        raise ValueError(f"errors must be 'raise' or 'keep'; got {errors!r}")
    if not (0 < rtol < 1 and 0 < atol < math.inf):
        raise ValueError(f"rtol must be in (0, 1) and atol finite and > 0; got "
                         f"rtol={rtol}, atol={atol}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 1:
        raise ValueError(f"max_steps must be a whole number >= 1; got {max_steps!r}")
    if model.rhs is None and not model.flows:
        raise ValueError(f"model {model.id!r} has no flows and no rhs; add flows to "
                         "the model file or attach an rhs with model.with_rhs(f)")
    if solver == "auto":
        solver = "exact" if model.linear_time_invariant else "ode"
    if solver == "exact" and not model.linear_time_invariant:
        why = "a user rhs" if model.rhs is not None else "time-varying parameters"
        raise ValueError(f"the exact solver needs a linear time-invariant model; "
                         f"this model has {why}, so use solver='ode'")
    t = _check_times(_default_times(regimen) if times is None else times)
    _warn_late_doses(regimen, t)
    if population is not None and not isinstance(population, Population):
        raise TypeError(f"population must be a ketasim.Population; got "
                        f"{type(population).__name__}")
    if chunks is not None:
        if out is not None:
            raise ValueError("chunks= builds a lazy Dask result; it cannot fill out=")
        if population is not None:
            # the lazy result keeps its subject labels and every patient's
            # covariates in memory (coordinates), drawn with their intermediates
            _check_memory(population.n, 8 * 32, "subject labels and covariates, "
                          "which a lazy result keeps in memory as coordinates",
                          "Split the population into runs of fewer subjects "
                          "(population.subset(start, stop)) and write each")
        return _simulate_dask(model, regimen, t, chunks, population, covariates,
                              parameters, dict(
                                  residual=residual, solver=solver, rtol=rtol,
                                  atol=atol, ode_method=ode_method,
                                  max_steps=max_steps, amounts=amounts, auc=auc,
                                  errors=errors, output=output, above=above,
                                  chunk=chunk, dose_windows=dose_windows))
    if output not in ("trajectories", "metrics"):
        raise ValueError(f"output must be 'trajectories' or 'metrics'; got {output!r}")
    if output == "metrics":
        if solver == "ode" or not model.linear_time_invariant:
            raise ValueError("output='metrics' needs the exact solver (a linear "
                             "time-invariant model)")
        if out is not None or amounts or auc or residual:
            raise ValueError("output='metrics' stores no trajectories: out=, "
                             "amounts=, auc= and residual= do not apply")
        return _simulate_metrics(model, regimen, t, population, covariates,
                                 parameters, above, chunk, progress, errors)
    if above is not None:
        raise ValueError("above= applies to output='metrics'; for trajectories use "
                         "ks.metrics(ds, above=...)")
    if population is not None:
        if covariates is not None:
            raise ValueError("give covariates either to Population(covariates=...) or "
                             "to simulate(covariates=...), not both")
    if residual and not model.residual:
        raise ValueError(f"model {model.id!r} defines no residual error model; "
                         "residual=True needs a [residual.<analyte>] table")
    memory = dict(auc=auc, amounts=amounts, residual=residual,
                  out_given=out is not None, solver=solver)
    if population is not None:
        # before anything per patient is drawn: a Population of 3e9 patients
        # would otherwise fail in numpy's allocator (or be killed by the OS)
        _check_trajectory_memory(model, regimen, t, population.n,
                                 occasions=_occasions(model, regimen, population),
                                 **memory)
        n, cov, over, params = _population_params(model, regimen, population,
                                                  parameters)
    else:
        # the subjects' table is the caller's, already in memory; what is built
        # from it (parameters, events, results) is checked before it is built
        n, cov, over = _subjects(model, covariates, parameters)
        _check_trajectory_memory(model, regimen, t, n, occasions=1, **memory)
        params = model.individual_parameters(cov, overrides=over, n=n)

    low = lower(model, regimen, params, cov["weight"], n, prune=model.rhs is None)
    if isinstance(params, list):
        if model.rhs is not None and any(
                not np.array_equal(params[0][k], q[k])
                for q in params[1:] for k in model.parameters):
            raise ValueError("inter-occasion variability on the parameters of a "
                             "user rhs is not implemented: the rhs sees one value per "
                             "subject. Simulate with Population(iov=False), or one "
                             "session at a time")
    # `parameters` reports every occasion's values (IOV: an occasion dimension);
    # the ODE path's rhs and time effects see one value per subject, occasion 1's
    # (an rhs with IOV is refused above; IOV on rates needs the exact solver)
    occ_params = params
    if isinstance(params, list):
        params = params[0]
    K = low.obs_cmt.size
    A, obs_cmt, obs_scale = low.A, low.obs_cmt, low.obs_scale
    ncmt = len(low.compartments)
    if auc:
        if model.rhs is not None:
            raise ValueError("auc=True needs a model built from flows; for a user rhs "
                             "integrate the returned concentrations (e.g. scipy's "
                             "trapezoid)")
        A, auc_cmt, auc_scale = with_auc(low)
        obs_cmt = np.concatenate([obs_cmt, auc_cmt])
        obs_scale = np.ascontiguousarray(np.hstack([obs_scale, auc_scale]))
    if amounts:
        obs_cmt = np.concatenate([obs_cmt, np.arange(ncmt, dtype=np.int64)])
        obs_scale = np.ascontiguousarray(np.hstack([obs_scale, np.ones((n, ncmt))]))
    shape = (n, obs_cmt.size, t.size)
    extra = amounts or auc
    if out is not None and not extra:
        if not (isinstance(out, np.ndarray) and out.dtype == np.float64
                and out.shape == shape and out.flags.c_contiguous):
            got = (f"{type(out).__name__} {getattr(out, 'dtype', '')} "
                   f"{getattr(out, 'shape', '')}")
            raise ValueError(f"out must be a C-contiguous float64 array of shape "
                             f"{shape} (subjects, analytes, times); got {got}")
        buf = out
    elif out is not None:
        raise ValueError("out= holds concentrations only; it cannot be combined "
                         "with amounts=True or auc=True")
    else:
        buf = np.empty(shape)  # its size was checked before the subjects were built
    status = np.zeros(n, dtype=np.int64)
    # doses whose concentrations or AUC would overflow are refused by name here;
    # the kernels' status codes stay a last line of defence
    check_magnitude(model, regimen, low, t[-1])

    if solver == "exact":
        from ._kernels.linear import population_linear, states

        for a, b, bar in _chunks(n, n * t.size * (8 if n < 2 else 1), progress,
                                 "simulating"):
            population_linear(A[a:b], low.ev_time[a:b], low.ev_cmt[a:b],
                              low.ev_kind[a:b], low.ev_value[a:b], t, obs_cmt,
                              obs_scale[a:b], buf[a:b], status[a:b],
                              states(A.shape[2]), states(A.shape[2]))
            bar.update(b - a)
        solver_desc = ("exact: matrix-exponential propagation (Taylor polynomial with "
                       "scaling and squaring)")
        nsteps = None
        windows = (_dose_windows(low, regimen, t, n)
                   if regimen.doses and dose_windows else None)
    else:
        from ._kernels import ode

        if A.shape[1] != 1:
            raise ValueError("inter-occasion variability on rate parameters needs "
                             "the exact solver (solver='exact')")
        A = A[:, 0]
        nstate = A.shape[-1] if model.rhs is None else ncmt
        jac_const = model.rhs is None and not model.time_effects
        if jac_const:
            rhs = None  # the kernels' own dxdt = A x
            p = np.ascontiguousarray(A.reshape(n, -1))
        elif model.rhs is None:
            from ._kernels.ltv import rhs_ltv

            A1 = model.time_derivative_matrices(params, n)
            sel = [model.compartment_index(c) for c in low.compartments]
            A1 = A1[:, sel][:, :, sel]
            if auc:
                A1 = np.pad(A1, ((0, 0), (0, K), (0, K)))
            rhs = rhs_ltv
            # parameter x (1 + slope t), t in h after the first dose:
            # A(t) = A + (t - t0) A1 = (A - t0 A1) + t A1
            t0 = float(regimen.times[0]) if regimen.doses else 0.0
            _check_time_effects(model, t0, float(t[-1]))
            p = np.ascontiguousarray(np.hstack([(A - t0 * A1).reshape(n, -1),
                                                A1.reshape(n, -1)]))
        else:
            rhs = _compiled(model.rhs)
            p = np.ascontiguousarray(np.stack([params[k] for k in model.parameters],
                                              axis=1))
        if model.rhs is not None:
            _check_rhs_parameters(model, p)
        kernels = ode.solver(nstate, rhs)
        x0 = np.zeros((n, nstate))
        nsteps = np.zeros(n, dtype=np.int64)
        from numba.core.errors import NumbaError

        args = (t, obs_cmt, float(rtol), float(atol), ODE_METHODS[ode_method],
                jac_const, int(max_steps))
        a = b = 0
        try:
            for a, b, bar in _chunks(n, n * 3000, progress, "integrating"):
                # the kernel writes every subject's status; one left at -1 was cut
                # short by an exception in the rhs, which numba's parallel kernel
                # does not always re-raise (from a worker thread it can be lost)
                status[a:b] = -1
                kernels.solve_population(
                    p[a:b], x0[a:b], low.ev_time[a:b], low.ev_cmt[a:b],
                    low.ev_kind[a:b], low.ev_value[a:b], t, obs_cmt, obs_scale[a:b],
                    float(rtol), float(atol), ODE_METHODS[ode_method], jac_const,
                    int(max_steps), buf[a:b], status[a:b], nsteps[a:b])
                if (status[a:b] == -1).any():
                    raise _kernel_exception(model, kernels, None, status, (a, b), p,
                                            x0, low, obs_scale, args)
                bar.update(b - a)
        except SolveError:
            raise
        except NumbaError as exc:
            if model.rhs is None:
                raise
            name = getattr(model.rhs, "__name__", "rhs")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TypeError(
                f"numba could not compile the model's rhs {name}(t, x, p, dxdt): "
                f"{first} -- the rhs must be plain numeric code numba can compile "
                f"(numpy arrays and math; no Python objects), writing dxdt in "
                f"place; numba's full message follows") from exc
        except Exception as exc:  # raised inside the kernel: by a user's rhs
            # (numba's parallel kernel wraps it in a SystemError, the original
            # as its cause)
            raise _kernel_exception(model, kernels, exc, status, (a, b), p, x0, low,
                                    obs_scale, args) from exc
        solver_desc = f"ode: {ode_method} (Dormand-Prince 5(4) / Rodas4)"
        windows = None
    bad = np.flatnonzero(status)
    if bad.size and errors == "raise":
        raise SolveError(_failure_message(model, status, buf, t, solver))
    subjects = (population.subjects if population is not None
                else np.arange(n) + (_CHUNK_START.get() or 0))
    ds = _to_dataset(model, regimen, t, low, occ_params, cov, buf, K, auc, status,
                     nsteps, solver_desc, rtol, atol, solver, subjects)
    if windows is not None:
        predose, dose_auc = windows
        ds["predose"] = _var(("subject", "analyte", "dose"), predose, {
            "units": "ng/mL", "long_name": "concentration just before the dose"})
        ds["dose_auc"] = _var(("subject", "analyte", "dose"), dose_auc, {
            "units": "ng*h/mL", "long_name": "exact AUC from the dose to the next "
            "dose (the last: to the last output time)"})
    if population is not None:
        ds.attrs["seed"] = int(population.seed)
        ds.attrs["population"] = repr(population)
    if residual:
        seed = population.seed if population is not None else 0
        ds["observed"] = _observed(model, ds.concentration, seed, subjects)
    return ds


def _chunk(start: int, *args, **kw) -> xr.Dataset:
    """One Dask task's ``simulate`` of the subjects from ``start`` on, without the
    call's warnings (issued once by the call itself); subjects keep their indices
    in the whole run (their residual noise is drawn by index). Module level, so
    that workers import it by name."""
    token = _CHUNK_START.set(start)
    try:
        return _simulate(*args, **kw)
    finally:
        _CHUNK_START.reset(token)


def _simulate_dask(model, regimen, t, chunks, population, covariates, parameters,
                   kw) -> xr.Dataset:
    """A lazy Dataset: one Dask task per subject chunk runs the ordinary in-memory
    simulation of those subjects (counter-based random streams make a chunk's
    patients identical to the same patients in a whole run)."""
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise ImportError("chunks= needs Dask: pip install 'ketasim[dask]'") from None
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be a whole number of subjects >= 1; got "
                         f"{chunks!r}")
    if population is not None:
        n = population.n
        _, _, over_all = _subjects(model, None, parameters, warn=False,
                                   defaults=False)
    else:
        # every covariate, given or defaulted (reference values, weight derived
        # from height and BMI): each chunk then sees exactly its patients' values
        n, cov_all, over_all = _subjects(model, covariates, parameters)
    over = _with_units(model, over_all, n)

    def part(a, b):
        p = {k: (v[a:b], u) for k, (v, u) in over.items()}
        if population is not None:
            return _chunk(a, model, regimen, times=t, population=population.subset(
                a, b), parameters=p or None, progress=False, **kw)
        # an unknown weight (NaN: no weight in the model, none given) stays
        # unknown in the chunk, which refuses mg/kg doses as the whole call does
        c = {k: v[a:b] for k, v in cov_all.items() if not np.isnan(v).all()}
        return _chunk(a, model, regimen, times=t, covariates=c or None,
                      parameters=p or None, progress=False, **kw)

    bounds = [(a, min(n, a + chunks)) for a in range(0, n, chunks)]
    head = part(0, 1)  # metadata only: one subject (chunks do not warn; this does)
    if population is not None:
        cov = population.covariates_for(population.subjects)
        for msg in population.check_validity(model, cov):
            warnings.warn(msg, ValidityWarning, stacklevel=_stacklevel())
    tasks = [dask.delayed(part, pure=True)(a, b) for a, b in bounds]
    data = {}
    for name, var in head.data_vars.items():
        if "subject" not in var.dims:
            data[name] = var
            continue
        assert var.dims[0] == "subject"
        blocks = [da.from_delayed(tk[name].data, shape=(b - a,) + var.shape[1:],
                                  dtype=var.dtype)
                  for tk, (a, b) in zip(tasks, bounds, strict=True)]
        data[name] = (var.dims, da.concatenate(blocks, axis=0), var.attrs)
    coords = {k: v for k, v in head.coords.items() if "subject" not in v.dims}
    coords["subject"] = ("subject", (population.subjects if population is not None
                                     else np.arange(n)))
    for k, v in head.coords.items():
        if "subject" in v.dims and k != "subject":
            vals = (population.covariates_for(population.subjects)[k]
                    if population is not None else
                    np.broadcast_to(cov_all.get(k, v.values[:1]), (n,)))
            coords[k] = ("subject", np.asarray(vals), v.attrs)
    # the attributes of the in-memory result, nothing more: a computed lazy result
    # is identical to it (the chunking is in ds.chunks)
    ds = xr.Dataset(data, coords=coords, attrs=dict(head.attrs))
    if population is not None:  # the head chunk's attrs describe one patient
        ds.attrs["population"] = repr(population)
    return ds


def _simulate_metrics(model, regimen, t, population, covariates, parameters, above,
                      chunk, progress, errors) -> xr.Dataset:
    """Metrics-only simulation, chunk by chunk over subjects (bounded memory)."""
    from ._kernels.linear import population_linear_metrics, states
    from ._lower import with_auc
    from ._progress import Bar, show
    from .metrics import TIE_RTOL

    if not regimen.doses:
        raise ValueError("output='metrics' needs at least one dose")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a whole number >= 1; got {chunk!r}")
    if population is not None:
        if covariates is not None:
            raise ValueError("give covariates either to Population(covariates=...) "
                             "or to simulate(covariates=...), not both")
        n = population.n
        cov_all = None
    else:
        n, cov_all, over_all = _subjects(model, covariates, parameters)
    starts = np.array(regimen.times, dtype=float)
    W = starts.size
    K = len(model.analytes)
    _check_metrics_memory(model, regimen, n, chunk,
                          _occasions(model, regimen, population))
    shape = (n, K, W)
    # the kernel writes every window that holds an output time; the others (no
    # output time between the dose and the next) keep NaN, as on the post-hoc path
    cmax, tmax = np.full(shape, np.nan), np.full(shape, np.nan)
    tab = np.full(shape, np.nan)
    pre = np.full(shape, np.nan)
    aucs = np.full((n, K, W + 1), np.nan)
    status = np.zeros(n, dtype=np.int64)
    level = np.nan if above is None else _metrics_level(above)
    covs: dict[str, np.ndarray] = {}
    with Bar(n, "simulating (metrics)", show(progress, n * t.size > 5e7)) as bar:
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            if population is not None:
                # this chunk's labels only (population.subjects is all n)
                idx = np.arange(population.offset + a, population.offset + b)
                _, cov, _, params = _population_params(model, regimen, population,
                                                       parameters, idx, warn=False)
            else:
                cov = {k: v[a:b] for k, v in cov_all.items()}
                params = model.individual_parameters(
                    cov, overrides={k: v[a:b] for k, v in over_all.items()}, n=b - a)
            for k, v in cov.items():
                covs.setdefault(k, np.empty(n))[a:b] = v
            low = lower(model, regimen, params, cov["weight"], b - a, markers=True)
            check_magnitude(model, regimen, low, t[-1])  # an overflow, by name
            A, auc_cmt, auc_scale = with_auc(low)
            obs_cmt = np.concatenate([low.obs_cmt, auc_cmt])
            obs_scale = np.ascontiguousarray(np.hstack([low.obs_scale, auc_scale]))
            population_linear_metrics(
                A, low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value, t, obs_cmt,
                obs_scale, starts, TIE_RTOL, level, cmax[a:b], tmax[a:b], tab[a:b],
                aucs[a:b], pre[a:b], status[a:b], states(A.shape[2]),
                states(A.shape[2] - K))
            bar.update(b - a)
    if population is not None and _CHUNK_START.get() is None:  # all, once
        from .population import validity_messages

        for msg in validity_messages(model, covs):
            warnings.warn(msg, ValidityWarning, stacklevel=_stacklevel())
    bad = np.flatnonzero(status)
    if bad.size and errors == "raise":
        raise SolveError(f"{bad.size} of {n} subjects failed (first: subject "
                         f"{bad[0]}): {_STATUS[4]}")
    # windows that start after the last output time were not simulated: the last
    # simulated dose's AUC runs to the last output time (the kernel's final slot);
    # their metrics, and those of a window starting at t[-1] (empty), are NaN
    late = _late(starts, t)
    empty = starts >= t[-1]
    aucs[:, :, :-1][:, :, late] = aucs[:, :, -1:]
    pre[:, :, starts <= 0.0] = 0.0
    auc_w = aucs[:, :, 1:] - aucs[:, :, :-1]
    for a in (cmax, tmax, tab, auc_w):
        a[:, :, empty] = np.nan
    pre[:, :, late] = np.nan
    for a in (cmax, tmax, tab, auc_w, pre):  # errors="keep": a failed subject's
        a[bad] = np.nan  # numbers up to the failure are not its metrics
    dims = ("subject", "analyte", "dose")
    data = {
        "cmax": (dims, cmax, {"units": "ng/mL", "long_name": "Cmax per dose "
                              "(output grid)"}),
        "tmax": (dims, tmax, {"units": "h", "long_name": "Tmax after dose start "
                              "(tie rule: first of equal peaks)"}),
        "auc": (dims, auc_w, {"units": "ng*h/mL", "long_name": "exact AUC from the "
                              "dose to the next (last: to the last output time)",
                              "method": "exact (integrated in the kernel)"}),
        "predose": (dims, pre, {"units": "ng/mL", "long_name": "concentration just "
                                "before the dose"}),
        "status": ("subject", status, {"long_name": "solver status (0 = ok)"}),
        "dose_time": ("dose", starts, {"units": "h"}),
        "dose_session": ("dose", sessions(regimen)),
    }
    if above is not None:
        data["time_above"] = (dims, tab, {"units": "h", "long_name": f"time above "
                                          f"{level:g} ng/mL (linear interpolation)"})
    coords = {"subject": ("subject", population.subjects if population is not None
                          else np.arange(n)),
              "analyte": ("analyte", list(model.analyte_names)),
              "dose": ("dose", np.arange(W)),
              "molecular_weight": ("analyte", [x.mw for x in model.analytes],
                                   {"units": "g/mol"})}
    for k, v in covs.items():
        coords[k] = ("subject", v, {"units": KNOWN_COVARIATES[k]})
    attrs = {**_model_attrs(model), "output": "metrics",
             "solver": "exact: matrix-exponential propagation, metrics streamed",
             "grid": f"{t.size} output times from {t[0]:g} to {t[-1]:g} h"}
    if population is not None:
        attrs["seed"] = int(population.seed)
        attrs["population"] = repr(population)
    return xr.Dataset({k: _var(*v) for k, v in data.items()}, coords=_coords(coords),
                      attrs=attrs)


def _metrics_level(above) -> float:
    """The time-above level of metrics mode: one level in ng/mL for every analyte
    (the kernel's), so a molar level, a different mass level per analyte, is
    refused here with the way to get it."""
    if isinstance(above, str):
        from .units import UnitError

        try:
            molar = parse_unit(parse_quantity(above, what="above",
                                              default_unit="ng/mL").unit
                               ).dimension == "molar concentration"
        except UnitError:
            molar = False  # to_ng_per_ml says what is wrong
        if molar:
            raise UnitError(
                f"above={above!r} is a molar level; in output='metrics' above= is "
                f"one level in ng/mL for every analyte (a molar level is a different "
                f"mass level per analyte). Give it in ng/mL, or simulate the curves "
                f"and use ks.metrics(ds, 'dose', above={above!r})")
    return to_ng_per_ml(above, what="above")


def _population_params(model, regimen, population, parameters, idx=None,
                       warn=True):
    """Covariates, IIV and per-session IOV for the patients ``idx`` (default: all)
    of ``population``; ``parameters`` overrides have 1 or population.n values."""
    idx = population.subjects if idx is None else idx
    n = idx.size
    cov = population.covariates_for(idx)
    if warn and _CHUNK_START.get() is None:  # a Dask call warns once, for all
        for msg in population.check_validity(model, cov):
            warnings.warn(msg, ValidityWarning, stacklevel=_stacklevel())
    _, _, over = _subjects(model, None, parameters, defaults=False)
    for name, v in over.items():
        if v.size not in (1, population.n):
            raise ValueError(f"parameter {name!r} needs 1 or {population.n} values; "
                             f"got {v.size}")
    rel = idx - population.offset
    over = {k: np.broadcast_to(v, (population.n,))[rel] for k, v in over.items()}
    etas = population.etas(model, idx)
    n_occ = int(sessions(regimen).max()) + 1 if regimen.doses else 1
    iov = population.iov_etas(model, idx, n_occ)
    if not iov:
        return n, cov, over, model.individual_parameters(cov, etas, over, n=n)
    per_occ = []
    for m in range(n_occ):
        e = dict(etas)
        for name, z in iov.items():
            e[name] = e.get(name, 0.0) + z[:, m]
        per_occ.append(model.individual_parameters(cov, e, over, n=n))
    return n, cov, over, per_occ


def _residual_block(T: int) -> int:
    """Subjects whose residual draws (3 per time) are made at once: about 2
    million draws, 16 MB each for the few temporaries of the generator."""
    return max(1, 2**21 // (3 * T))


def _observed(model, conc: xr.DataArray, seed: int,
              subjects: np.ndarray) -> xr.DataArray:
    """Concentrations with residual error: C (1 + prop ε1) exp(exp ε2) + add ε3,
    drawn per subject index (a patient's noise is the same in any chunking)."""
    from .population import normals

    S, K, T = conc.shape
    out = np.array(conc.values)
    # the draws (3 per time) and their temporaries come a block of subjects at a
    # time, so residual=True costs one copy of the concentrations and the block's
    # working arrays, as the memory check counts; a subject's draws do not depend
    # on the block
    block = _residual_block(T)
    for k, name in enumerate(model.analyte_names):
        spec = model.residual.get(name)
        if spec is None:
            continue
        for a in range(0, S, block):
            b = min(S, a + block)
            z = normals(seed, "residual", subjects[a:b], 3 * T, offset=3 * T * k)
            c = out[a:b, k, :]
            c *= 1.0 + spec.get("proportional", 0.0) * z[:, :T]
            c *= np.exp(spec.get("exponential", 0.0) * z[:, T:2 * T])
            c += spec.get("additive_ng_per_ml", 0.0) * z[:, 2 * T:]
    return xr.DataArray(out, dims=conc.dims, attrs={
        "units": "ng/mL", "long_name": "simulated observed concentration (with "
        "residual error; may be negative with an additive error, not censored)"})


def _dose_windows(low: Lowered, regimen: Regimen, t: np.ndarray, n: int):
    """Exact per-dose quantities from a second, cheap kernel run whose only output
    times are the dose times: the concentration just before each dose and the AUC
    between consecutive doses (integrator states, not trapezoids). With so few
    outputs its speed hardly matters, so it runs the generic loops, one step per
    output (no output loops for long runs): one small kernel for every model, not
    one more compile per state count."""
    from ._kernels.linear import generic_states, population_linear

    starts = np.array(regimen.times)
    end = t[-1]
    before = np.nextafter(starts, -np.inf).clip(0.0)
    aux_t = np.concatenate([before, starts.clip(max=end), [end]])
    order = np.argsort(aux_t, kind="stable")
    A, auc_cmt, auc_scale = with_auc(low)
    K = low.obs_cmt.size
    obs_cmt = np.concatenate([low.obs_cmt, auc_cmt])
    obs_scale = np.ascontiguousarray(np.hstack([low.obs_scale, auc_scale]))
    aux = np.empty((n, 2 * K, aux_t.size))
    status = np.zeros(n, dtype=np.int64)
    population_linear(A, low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value,
                      np.ascontiguousarray(aux_t[order]), obs_cmt, obs_scale, aux,
                      status, generic_states(), ())
    vals = np.empty_like(aux)
    vals[:, :, order] = aux
    D = starts.size
    predose = vals[:, :K, :D]
    predose[:, :, starts <= 0.0] = 0.0  # nothing is in the body before t = 0
    cum = vals[:, K:, D:]  # AUC at each dose start (clipped to end), then at end
    dose_auc = cum[:, :, 1:] - cum[:, :, :-1]
    predose[:, :, _late(starts, t)] = np.nan  # not simulated (GridWarning)
    dose_auc[:, :, starts >= end] = np.nan  # and an empty window at t[-1]
    return np.ascontiguousarray(predose), np.ascontiguousarray(dose_auc)


PROGRESS_MIN_WORK = 5e7  # output values (or ODE work units) before a bar is shown


def _chunks(n: int, work: float, progress, label: str):
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


_rhs_cache: dict = {}


def _compiled(rhs):
    """One numba dispatcher per user function: a new wrapper per call would make
    numba recompile the whole population kernel each time."""
    from numba.core.registry import CPUDispatcher

    if isinstance(rhs, CPUDispatcher):
        return rhs
    hit = _rhs_cache.get(rhs)
    if hit is None:
        import numba

        hit = _rhs_cache[rhs] = numba.njit(rhs)
    return hit


def _var(dims, data, attrs=None) -> xr.Variable:
    """A Variable of a plain numpy array, built on xarray's fast path: it skips the
    duck-array checks that import dask.array (~0.5 s of the first simulate when
    dask is installed). Everything passed here is already a numpy array of its
    final dtype, so those checks would change nothing."""
    dims = (dims,) if isinstance(dims, str) else dims
    return xr.Variable(dims, np.asarray(data), attrs, fastpath=True)


def _coords(coords: Mapping) -> xr.Coordinates:
    """Coordinates from ``{name: (dims, values[, attrs])}`` with the pandas index of
    every dimension coordinate built here, as xarray would build it: ``pd.Index``
    of the values, and the coordinate keeps the values' numpy dtype. xarray's own
    path first asks whether the values are a dask collection, which imports dask
    (~0.1 s of the first simulate when it is installed)."""
    from xarray.indexes import PandasIndex

    variables, indexes = {}, {}
    for name, spec in coords.items():
        var = _var(*spec)
        if var.dims == (name,):
            values = var.values
            index = pd.Index(values, dtype=object if values.dtype.kind == "O" else None)
            built = PandasIndex(index, name, coord_dtype=values.dtype)
            var = built.create_variables({name: var})[name]
            indexes[name] = built
        variables[name] = var
    return xr.Coordinates(variables, indexes=indexes)


def _model_attrs(model: Model) -> dict:
    """Provenance every result carries: the model, its paper, ketasim's version."""
    return {
        "model_id": model.id,
        "model_name": model.name,
        "model_drug": model.drug,
        "model_enantiomer": model.enantiomer,
        "model_sampling": model.sampling,
        "model_grade": model.grade,
        "model_file": str(model.path) if model.path else "",
        "model_sha256": model.sha256,
        "references": "\n".join(
            r.citation + (f" doi:{r.doi}" if r.doi else "") for r in model.references),
        "ketasim_version": __version__,
    }


def _to_dataset(model, regimen, t, low: Lowered, params, cov, buf, K, auc, status,
                nsteps, solver_desc, rtol, atol, solver, subjects) -> xr.Dataset:
    """The trajectory result. ``params``: the individual parameters, or with
    inter-occasion variability a list of them per occasion (dosing session),
    reported with an ``occasion`` dimension: every session's values, not the
    first session's under a label that does not say so."""
    analytes = list(model.analyte_names)
    per_occasion = isinstance(params, list)
    occ = params if per_occasion else [params]
    names = list(occ[0])
    table = np.stack([np.stack([p[k] for k in names], axis=1) for p in occ], axis=1)
    if per_occasion:
        parameters = (("subject", "occasion", "parameter"), table, {
            "long_name": "individual parameters per occasion (canonical units, see "
                         "parameter_unit); inter-occasion variability draws them "
                         "anew for each dosing session (occasion = dose_session)"})
    else:
        parameters = (("subject", "parameter"), table[:, 0], {
            "long_name": "individual parameters (canonical units, see "
                         "parameter_unit)"})
    params = occ[0]
    coords = {
        "subject": ("subject", np.asarray(subjects, dtype=np.int64)),
        "analyte": ("analyte", analytes),
        "time": ("time", t, {"units": "h", "long_name": "time after t = 0"}),
        "molecular_weight": ("analyte", [a.mw for a in model.analytes],
                             {"units": "g/mol"}),
        "parameter": ("parameter", list(params)),
        "parameter_unit": ("parameter", [model.parameters[k].canonical_unit.replace(
            "/kg", "") for k in params]),
        "dose": ("dose", np.arange(len(regimen.doses))),
    }
    if per_occasion:
        coords["occasion"] = ("occasion", np.arange(len(occ)), {
            "long_name": "dosing session whose parameters these are (dose_session)"})
    for name, v in cov.items():
        coords[name] = ("subject", v, {"units": KNOWN_COVARIATES[name]})
    conc = buf[:, :K, :] if buf.shape[1] != K else buf
    data = {
        "concentration": (("subject", "analyte", "time"), conc,
                          {"units": "ng/mL", "long_name": "plasma concentration"}),
        "parameters": parameters,
        "status": ("subject", status, {"long_name": "solver status (0 = ok)"}),
        "dose_time": ("dose", np.array(regimen.times, dtype=float),
                      {"units": "h", "long_name": "dose start"}),
        "dose_amount": ("dose", np.array([d.amount for d in regimen.doses]),
                        {"long_name": "dose as prescribed (see dose_unit, dose_salt)"}),
        "dose_unit": ("dose", [d.unit for d in regimen.doses]),
        "dose_salt": ("dose", [d.salt for d in regimen.doses]),
        "dose_route": ("dose", [d.route for d in regimen.doses]),
        "dose_session": ("dose", sessions(regimen), {
            "long_name": "dosing session (devices of one session share it)"}),
        "dose_device": ("dose", np.array([d.device or 0 for d in regimen.doses],
                                         dtype=np.int64),
                        {"long_name": "nasal-spray device within its session (0: "
                         "not a device)"}),
        "dose_duration": ("dose", np.array([np.nan if d.duration is None
                                            else d.duration for d in regimen.doses]),
                          {"units": "h", "long_name": "infusion duration (NaN: bolus "
                           "or route-defined input)"}),
        "dose_mg": (("subject", "dose"), low.dose_mg,
                    {"units": "mg", "long_name": "base amount given, before "
                     "bioavailability"}),
    }
    k2 = K
    if auc:
        k2 = 2 * K
        data["auc"] = (("subject", "analyte", "time"), buf[:, K:k2, :],
                       {"units": "ng*h/mL", "long_name": "cumulative AUC from t = 0"})
    if buf.shape[1] != k2:
        data["amount"] = (("subject", "compartment", "time"), buf[:, k2:, :],
                          {"units": "mg", "long_name": "amount in compartment"})
        coords["compartment"] = ("compartment", list(low.compartments))
    if nsteps is not None:
        data["ode_steps"] = ("subject", nsteps, {"long_name": "accepted ODE steps"})
    attrs = {
        **_model_attrs(model),
        "solver": solver_desc,
        "time_convention": "value at a dose time is the state after the dose",
    }
    if solver == "ode":
        attrs["rtol"] = float(rtol)
        attrs["atol"] = float(atol)
        attrs["atol_units"] = "mg"
    return xr.Dataset({k: _var(*v) for k, v in data.items()},
                      coords=_coords(coords), attrs=attrs)
