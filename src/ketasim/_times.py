"""Stage 1a of a run: the output times. ``grid`` builds them, ``check_times``
validates the caller's, ``default_times`` picks them for a regimen, and
``warn_late_doses`` says which doses start after the last of them."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._warn import GridWarning, in_chunk, stacklevel
from .dosing import MAX_TIME_H, Regimen
from .units import parse_quantity, parse_unit


def late_doses(starts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Doses that start after the last output time: not simulated (GridWarning;
    every per-dose value NaN). A dose at the last output time is simulated (its
    pre-dose level is the previous window's trough) but its window is empty, so
    its window metrics are NaN too (``starts >= t[-1]``)."""
    return np.asarray(starts, dtype=float) > t[-1]


def warn_late_doses(regimen: Regimen, t: np.ndarray) -> None:
    """A GridWarning when doses start after the last output time ``t[-1]`` (once
    per call: not inside a Dask chunk)."""
    starts = np.array(regimen.times, dtype=float)
    late = np.flatnonzero(late_doses(starts, t))
    if late.size and not in_chunk():
        end = t[-1]
        need = math.ceil(starts[-1] / 24.0)
        warnings.warn(
            f"{late.size} of {starts.size} doses start after the last output time "
            f"({end:g} h = {end / 24:.3g} d), the first of them doses[{late[0]}] at "
            f"{starts[late[0]]:g} h: they are not simulated and their per-dose "
            f"metrics (Cmax, Tmax, AUC, pre-dose level, time above) are NaN. Extend "
            f'the output times past {starts[-1]:g} h (e.g. ks.grid("{need + 1} d", '
            f'"5 min")) or leave those doses out of the regimen.',
            GridWarning,
            stacklevel=stacklevel(),
        )


GRID_MAX_POINTS = 10_000_000  # a year every 5 s; 80 MB of times, 80 MB per subject
# and analyte of results: more is a mistyped step (a '1e-9 h' step over a day would
# be 179 GiB), so grid() refuses it with the count rather than trying to allocate


def grid(end, step, *, start=0.0) -> np.ndarray:
    """Output times in hours from ``start`` every ``step`` up to ``end``: the last
    time is the last whole step at or before ``end``, so ``end`` itself is included
    only when the span is a whole number of steps (``grid("1 h", "25 min")`` ends at
    50 min; metrics "over the course" then end there too).

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
        shown = (
            f"{count:,}"
            if count < 1e12
            else f"{count:.3g}"
            if math.isfinite(count)
            else "more than 1e308"
        )
        raise ValueError(
            f"grid from {t0:g} h to {t1:g} h every {step!r} would have "
            f"{shown} points; at most {GRID_MAX_POINTS:,} are allowed "
            f"({count * 8 / 2**30:.3g} "
            f"GiB for the times alone, that much again per subject and analyte). "
            f"Use a longer step or a shorter span, or pass the times you need as "
            f"an array"
        )
    n = int(count)
    k = np.arange(n, dtype=float)
    if u.factor < 1:  # min, s: divide by the whole number of units per hour
        return t0 + k * q.value / round(1.0 / u.factor)
    return t0 + k * (q.value * u.factor)


def default_times(regimen: Regimen) -> np.ndarray:
    """Every 5 min until 24 h after the end of the last dose; a regimen so long
    that this would exceed GRID_MAX_POINTS (95 years) asks for ``times=``."""
    last = max((d.time + (d.duration or 0.0) for d in regimen.doses), default=0.0)
    count = (last + 24.0) * 12 + 1
    if count > GRID_MAX_POINTS:
        raise ValueError(
            f"the default output times (every 5 min until 24 h after the last dose "
            f"ends at {last:g} h) would be {count:.4g} points, more than "
            f"{GRID_MAX_POINTS:,}; pass times= (e.g. ks.grid(...) with a longer "
            f"step)"
        )
    return grid(last + 24.0, "5 min")


def check_times(times) -> np.ndarray:
    """The caller's output times as a C-contiguous float64 array of hours: 1-D,
    non-empty, finite, sorted, within [0, MAX_TIME_H]."""
    if isinstance(times, str):
        raise TypeError(
            f"times must be an array of hours; got the string {times!r}. "
            f"For a regular grid use ks.grid({times!r}, '5 min')"
        )
    try:
        t = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"times must be an array of hours (numbers); got "
            f"{type(times).__name__} {times!r:.80}"
        ) from None
    if t.ndim != 1 or t.size == 0:
        raise ValueError(
            f"times must be a non-empty 1-D array of hours; got shape {t.shape}"
        )
    bad = ~np.isfinite(t)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"times must be finite; times[{i}] = {t[i]}")
    if t[0] < 0:
        raise ValueError(
            f"times are hours after t = 0 and must be >= 0; got times[0] = {t[0]:g}"
        )
    late = t > MAX_TIME_H  # 1e300 h spans overflow the AUC, blamed on the dose
    if late.any():
        i = int(np.argmax(late))
        raise ValueError(
            f"times must be at most {MAX_TIME_H:g} h (about 114 years "
            f"after t = 0); got times[{i}] = {t[i]:.10g} h. Check their "
            f"unit: times are hours"
        )
    dec = np.diff(t) < 0
    if dec.any():
        i = int(np.argmax(dec)) + 1
        raise ValueError(
            f"times must be sorted: times[{i}] = {t[i]:g} h comes after "
            f"times[{i - 1}] = {t[i - 1]:g} h; use np.sort(times)"
        )
    return np.ascontiguousarray(t)
