"""Matplotlib figures for simulation results. Every function returns the Figure
(so notebooks display it) and labels axes with units.

A course (several dosing sessions) is drawn as two panels: the first session
zoomed, with its percentile band, beside the course overview, where each
session's Cmax spread (P5-P95 over patients) is marked at its peak: over weeks a
40-minute infusion is a spike too thin to show a band. Time axes are in the unit
that fits the window (min for a session of a few hours, h up to three days, days
beyond). Legends sit outside the panels, below the figure, so they cover no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from . import _analytes
from .metrics import check_percentiles
from .units import ng_per_ml_to_nmol_per_l

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with ketasim
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_bands", "plot_exposure", "plot_scenarios"]

#: the zoomed session ends when the median falls below this fraction of its peak
#: (or at the next session): the rise, the peak and most of the decline
ZOOM_FRACTION = 0.1
LAYOUTS = ("grid", "overlay")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _time_unit(span: float) -> tuple[float, str]:
    """Hours per axis unit and its name for a window ``span`` h long: min up to
    4 h, h up to 72 h, days beyond."""
    if span <= 4.0:
        return 1.0 / 60.0, "min"
    if span <= 72.0:
        return 1.0, "h"
    return 24.0, "days"


def _time_axis(t: np.ndarray) -> tuple[np.ndarray, str]:
    """``t`` (h) in the unit that fits its span, and the axis label."""
    factor, unit = _time_unit(float(t[-1] - t[0]) if t.size else 0.0)
    return t / factor, f"time ({unit})"


def _present(ds: xr.Dataset) -> list[str]:
    from .metrics import present_analytes

    return present_analytes(ds) or [str(ds.analyte.values[0])]


def _drug(name: str, ds: xr.Dataset, analyte: str | None) -> str:
    """The analyte drawn for scenario ``name``: ``analyte`` (a canonical name or
    an alias), or the scenario's own first analyte (its model's parent drug)."""
    if analyte is None:
        return _present(ds)[0]
    where = f"scenario {name!r}" if name else "these results"
    return _analytes.resolve(analyte, ds.analyte.values, where)


def _parts(ds) -> list[tuple[str, xr.Dataset]]:
    """(name, Dataset) per scenario of run_scenarios results, a Dataset with a
    scenario dimension, or one result (named by its scenario or model)."""
    from .results import ScenarioResults
    from .scenario import _parts as parts

    if isinstance(ds, ScenarioResults) or "scenario" in ds.dims:
        return parts(ds)
    if "scenario" in ds.coords or "scenario" in ds.attrs:
        return parts(ds)
    return [(str(ds.attrs.get("model_id", "result")), ds)]


def _curves(ds: xr.Dataset, analyte: str, unit: str) -> tuple[np.ndarray, str]:
    """(subject, time) concentrations of ``analyte`` in ``unit`` and the unit."""
    from .metrics import UNITS, UnitError

    if unit not in UNITS:
        raise UnitError(f"unit must be 'ng/mL' or 'nmol/L'; got {unit!r}")
    analyte = _analytes.resolve(analyte, ds.analyte.values, "these results")
    c = ds.concentration.sel(analyte=analyte)
    have = c.attrs.get("units", "ng/mL")
    values = np.asarray(c.values, dtype=float)
    if unit != have:
        if have != "ng/mL":
            raise UnitError(
                f"cannot draw concentrations labelled {have!r} in {unit}; pass "
                f"the ng/mL result of ks.simulate"
            )
        mw = float(ds.molecular_weight.sel(analyte=analyte))
        values = ng_per_ml_to_nmol_per_l(values, mw)
    return values, unit


def _sessions(ds: xr.Dataset) -> np.ndarray:
    """Start times (h) of the dosing sessions inside the output times."""
    if "dose_time" not in ds or "dose_session" not in ds:
        return np.array([])
    times = np.asarray(ds.dose_time.values, dtype=float)
    sess = np.asarray(ds.dose_session.values)
    ok = np.isfinite(times)
    times, sess = times[ok], sess[ok]
    starts = np.array([times[sess == k].min() for k in np.unique(sess)])
    return np.sort(starts[starts < ds.time.values[-1]])


def _zoom(t: np.ndarray, med: np.ndarray, starts: np.ndarray) -> tuple:
    """The first session's window (h): its start, when the median falls below
    ``ZOOM_FRACTION`` of its peak after the peak (at the latest the next
    session), and the next session's start."""
    s0 = float(starts[0])
    s1 = float(starts[1] if starts.size > 1 else t[-1])
    sel = np.flatnonzero((t >= s0) & (t <= s1))
    if sel.size < 2:
        return s0, s1, s1
    m = med[sel]
    k = int(np.nanargmax(m)) if np.isfinite(m).any() else 0
    low = np.flatnonzero(m[k:] < ZOOM_FRACTION * m[k])
    end = t[sel[k + low[0]]] if low.size else t[sel[-1]]
    return s0, max(float(end), float(t[sel[min(k + 1, sel.size - 1)]])), s1


def _band(ax, x, c, color, label, spaghetti, q, marker=None):
    """Median and P-band over subjects (rows of ``c``) against ``x``; returns
    the legend handles: "median" and the band, or with a ``label`` (a scenario
    overlaid on others) the median line named by it alone."""
    import warnings

    with warnings.catch_warnings():  # failed subjects' NaN times
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        lo, med, hi = np.nanpercentile(c, q, axis=0)
    marker = marker or ("o" if x.size < 3 else None)  # a line needs two points
    (line,) = ax.plot(
        x, med, color=color, lw=1.5, marker=marker, label=label or "median"
    )
    handles = [line]
    if c.shape[0] > 1:
        band = ax.fill_between(x, lo, hi, color=color, alpha=0.3, lw=0)
        if not label:
            band.set_label(f"P{q[0]}–P{q[2]}")
            handles.append(band)
    for i in range(min(spaghetti, c.shape[0])):
        ax.plot(x, c[i], color=color, lw=0.5, alpha=0.5, marker=marker)
    ax.grid(alpha=0.3)
    return handles


def _peaks(ax, ds, analyte, unit, q, color, factor):
    """Each session's Cmax over patients, P-range as a bar at the median peak
    time, on the course overview; returns the legend handle (None: no
    metrics)."""
    from .metrics import metrics

    m = metrics(ds, "session", unit=unit).sel(analyte=analyte)
    cmax, tmax = m.cmax.values, m.tmax.values
    ok = np.isfinite(cmax).any(axis=0)
    if not ok.any():
        return None
    lo, med, hi = np.nanpercentile(cmax[:, ok], q, axis=0)
    x = (m.session_start.values[ok] + np.nanmedian(tmax[:, ok], axis=0)) / factor
    bars = ax.errorbar(
        x,
        med,
        yerr=[med - lo, hi - med],
        fmt="o",
        ms=3,
        color=color,
        capsize=3,
        lw=1,
        label=f"session Cmax, median and P{q[0]}–P{q[2]}",
    )
    return bars


def _draw(axes, ds, analyte, unit, color, label, spaghetti, q, zoom):
    """One result on its panels: ``axes`` = [course] or [first session, course]
    (``zoom`` the first session's window, h). Returns the legend handles."""
    c, unit = _curves(ds, analyte, unit)
    t = ds.time.values
    handles = []
    if zoom is not None:
        s0, s1, factor, name = zoom
        sel = (t >= s0) & (t <= s1)
        handles += _band(
            axes[0], (t[sel] - s0) / factor, c[:, sel], color, label, spaghetti, q
        )
        axes[0].set_xlabel(f"time after the first session's start ({name})")
        axes[0].set_ylabel(f"{analyte} ({unit})")
    ax = axes[-1]
    factor, name = _time_unit(float(t[-1] - t[0]))
    h = _band(ax, t / factor, c, color, label, spaghetti, q)
    if zoom is None:
        handles += h
    elif (bars := _peaks(ax, ds, analyte, unit, q, color, factor)) is not None:
        handles.append(bars)
    ax.set_xlabel(f"time ({name})")
    ax.set_ylabel(f"{analyte} ({unit})")
    return handles


def _common(zooms: dict) -> dict:
    """The first-session windows of several results made one length (the
    longest; each at most up to its own next session) in one time unit, so the
    zoomed panels share an axis: ``name -> (start, end, h per unit, unit)``."""
    span = max((z[1] - z[0] for z in zooms.values() if z), default=0.0)
    factor, name = _time_unit(span)
    return {
        k: None if z is None else (z[0], min(z[0] + span, z[2]), factor, name)
        for k, z in zooms.items()
    }


def _course_zoom(ds, analyte, unit, q) -> tuple | None:
    """The first session's window (see :func:`_zoom`) when ``ds`` is a course
    (two sessions or more inside its output times), else None."""
    starts = _sessions(ds)
    if starts.size < 2:
        return None
    c, _ = _curves(ds, analyte, unit)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        med = np.nanmedian(c, axis=0)
    return _zoom(ds.time.values, med, starts)


def _legend(fig, handles, ncol=None) -> None:
    """One legend for the figure, outside (below) the panels."""
    seen = {}
    for h in handles:
        seen.setdefault(h.get_label(), h)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncol=ncol or min(len(seen), 3),
            fontsize=8,
            frameon=False,
        )


def plot_bands(
    ds: xr.Dataset,
    analyte: str | None = None,
    *,
    spaghetti: int = 5,
    q: Sequence[float] = (5, 50, 95),
    ax: Axes | None = None,
    log: bool = False,
    unit: str = "ng/mL",
) -> Figure:
    """Median and percentile band over subjects, with a few individual curves.

    A course (two sessions or more) without ``ax`` gets two panels: the first
    session zoomed (time in min or h from its start) beside the course overview
    (days), where each session's Cmax P-range over patients is marked. With
    ``ax`` the whole time axis is drawn on it. ``unit``: "ng/mL" or "nmol/L".
    ``q``: the (low, 50, high) percentiles of the band, default (5, 50, 95).
    """
    if not isinstance(ds, xr.Dataset) or "scenario" in ds.dims:
        first = ds.scenario.values[0]
        raise ValueError(
            "plot_bands draws one result; for scenario results use "
            "plot_scenarios(ds), or select one scenario first: "
            f"ds.sel(scenario={str(first)!r})"
        )
    check_percentiles(q, band=True)  # drawn as median and P<q0>-P<q2> band
    plt = _plt()
    analyte = _drug("", ds, analyte)
    zoom = _course_zoom(ds, analyte, unit, q) if ax is None else None
    zoom = _common({"": zoom})[""]
    if ax is None:
        fig, axes = plt.subplots(
            1,
            2 if zoom else 1,
            figsize=(11 if zoom else 8, 4.2),
            layout="constrained",
            squeeze=False,
            width_ratios=[1, 2] if zoom else None,
        )
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax]
    handles = _draw(axes, ds, analyte, unit, "C0", "", spaghetti, q, zoom)
    if zoom:
        axes[0].set_title("first session", fontsize=10)
        axes[1].set_title("course", fontsize=10)
    for a in axes:
        if log:
            a.set_yscale("log")
    if ax is None:
        _legend(fig, handles)
    else:
        ax.legend(handles=handles, fontsize=8, loc="best")
    return fig


def plot_scenarios(
    ds,
    analyte: str | None = None,
    *,
    q: Sequence[float] = (5, 50, 95),
    spaghetti: int = 0,
    log: bool = False,
    layout: str = "grid",
    sharey: bool = False,
    unit: str = "ng/mL",
) -> Figure:
    """Scenarios side by side: median and percentile band of each scenario's own
    analyte (or ``analyte``), in ``unit`` ("ng/mL" or "nmol/L": molar puts
    different drugs on one scale).

    ``layout="grid"`` (default): a row per scenario; ``"overlay"``: the
    scenarios in one row of panels, one colour each. A course is drawn as its
    first session zoomed beside the overview (see :func:`plot_bands`); every
    panel of a column shares its time axis, and ``sharey=True`` shares the
    concentration axis of all panels. ``ds``: the results of
    :func:`ketasim.run_scenarios`, or one result.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    check_percentiles(q, band=True)  # drawn as median and P<q0>-P<q2> band
    plt = _plt()
    parts = _parts(ds)
    drugs = {name: _drug(name, one, analyte) for name, one in parts}
    zooms = _common(
        {name: _course_zoom(one, drugs[name], unit, q) for name, one in parts}
    )
    course = any(z is not None for z in zooms.values())
    ncol = 2 if course else 1
    nrow = 1 if layout == "overlay" else len(parts)
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(11 if course else 7, 1.0 + 3.0 * nrow),
        layout="constrained",
        squeeze=False,
        sharex="col",
        sharey="all" if sharey else False,
        width_ratios=[1, 2] if course else None,
    )
    mixed = len(set(drugs.values())) > 1
    handles = []
    for k, (name, one) in enumerate(parts):
        row = axes[0 if layout == "overlay" else k]
        color = f"C{k}" if layout == "overlay" else "C0"
        label = name if layout == "overlay" else ""
        zoom = zooms[name]
        panels = list(row) if zoom is not None or not course else [row[1]]
        handles += _draw(
            panels, one, drugs[name], unit, color, label, spaghetti, q, zoom
        )
        if layout == "grid":
            title = f"{name} ({drugs[name]})" if mixed else name
            if course:
                row[0].set_title(f"{title}: first session", fontsize=10)
                row[1].set_title(f"{title}: course", fontsize=10)
            else:
                row[0].set_title(title, fontsize=10)
    if layout == "overlay":
        band = f"median, P{q[0]}–P{q[2]} band"
        if course:
            axes[0][0].set_title(f"first session ({band})", fontsize=10)
            axes[0][1].set_title("course", fontsize=10)
        else:
            axes[0][0].set_title(band, fontsize=10)
    for a in axes.flat:  # shared time axes, but every panel keeps its tick labels
        a.xaxis.set_tick_params(labelbottom=True)
    if layout == "overlay" and mixed:
        for a in axes.flat:
            a.set_ylabel(f"concentration ({unit})")
    for a in axes.flat:
        if log:
            a.set_yscale("log")
    _legend(fig, handles, ncol=3 if layout == "grid" else 2)
    return fig


def plot_exposure(
    ds,
    metric: str = "cmax",
    *,
    per: str = "session",
    analyte: str | None = None,
    unit: str = "ng/mL",
) -> Figure:
    """Distribution over patients of a per-session (or per-dose) metric: one box per
    session, scenarios side by side, each scenario's own analyte (or
    ``analyte``).

    ``unit`` ("ng/mL" or "nmol/L") goes to :func:`ketasim.metrics`: Cmax and trough
    in it, AUC in ng·h/mL or nmol·h/L; the y axis names the unit. Failed subjects
    (NaN metrics) are left out of the boxes."""
    from .metrics import metrics

    plt = _plt()
    parts = _parts(ds)
    fig, ax = plt.subplots(figsize=(9, 4.4), layout="constrained")
    width = 0.8 / len(parts)
    units = ""
    windows = 0
    drugs = {name: _drug(name, one, analyte) for name, one in parts}
    mixed = len(set(drugs.values())) > 1
    handles = []
    for k, (name, one) in enumerate(parts):
        an = drugs[name]  # each scenario's own drug
        m = metrics(one, per, unit=unit)[metric].sel(analyte=an)
        units = m.attrs.get("units", "")
        data = [m.values[:, w][np.isfinite(m.values[:, w])] for w in range(m.shape[1])]
        pos = np.arange(len(data)) + 1 + (k - (len(parts) - 1) / 2) * width
        bp = ax.boxplot(
            data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False
        )
        for patch in bp["boxes"]:
            patch.set_facecolor(f"C{k}")
            patch.set_alpha(0.5)
        windows = max(windows, len(data))
        (h,) = ax.plot(
            [],
            [],
            color=f"C{k}",
            lw=6,
            alpha=0.5,
            label=f"{name} ({an})" if mixed else name,
        )
        handles.append(h)
    ax.set_xticks(np.arange(1, windows + 1))
    ax.set_xticklabels([str(i) for i in range(1, windows + 1)])
    ax.set_xlabel(per)
    what = " / ".join(sorted(set(drugs.values())))
    ax.set_ylabel(f"{what} {metric} ({units})")
    ax.grid(alpha=0.3, axis="y")
    _legend(fig, handles)
    return fig
