"""Matplotlib figures for simulation Datasets. Every function returns the Figure
(so notebooks display it) and labels axes with units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from . import _analytes

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with ketasim
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_bands", "plot_exposure", "plot_scenarios"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _time_axis(t: np.ndarray) -> tuple[np.ndarray, str]:
    return (t / 24.0, "time (days)") if t[-1] > 72 else (t, "time (h)")


def _present(ds: xr.Dataset) -> list[str]:
    from .metrics import present_analytes

    return present_analytes(ds) or [str(ds.analyte.values[0])]


def _band(ax, ds, analyte, color, label, spaghetti, q):
    analyte = _analytes.resolve(analyte, ds.analyte.values, "these results")
    c = ds.concentration.sel(analyte=analyte)
    x, xlabel = _time_axis(ds.time.values)
    lo, med, hi = np.nanpercentile(c.values, q, axis=0)
    marker = "o" if x.size < 3 else None  # a line needs two points
    if c.shape[0] > 1:
        ax.fill_between(
            x, lo, hi, color=color, alpha=0.25, lw=0, label=f"{label} P{q[0]}–P{q[2]}"
        )
    ax.plot(x, med, color=color, lw=1.5, marker=marker, label=f"{label} median")
    for i in range(min(spaghetti, c.shape[0])):
        ax.plot(x, c.values[i], color=color, lw=0.5, alpha=0.5, marker=marker)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{analyte} ({c.attrs.get('units', 'ng/mL')})")
    ax.grid(alpha=0.3)


def plot_bands(
    ds: xr.Dataset,
    analyte: str | None = None,
    *,
    spaghetti: int = 5,
    q: Sequence[float] = (5, 50, 95),
    ax: Axes | None = None,
    log: bool = False,
) -> Figure:
    """Median and percentile band over subjects, with a few individual curves."""
    if "scenario" in ds.dims:
        raise ValueError(
            "plot_bands draws one result; for a scenario Dataset use "
            "plot_scenarios(ds), or select one scenario first: "
            f"ds.sel(scenario={str(ds.scenario.values[0])!r})"
        )
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4))
    fig = ax.figure
    analyte = analyte or _present(ds)[0]
    _band(ax, ds, analyte, "C0", "", spaghetti, q)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return fig


def plot_scenarios(
    ds: xr.Dataset,
    analyte: str | None = None,
    *,
    q: Sequence[float] = (5, 50, 95),
    spaghetti: int = 0,
    log: bool = False,
    sharey: bool = True,
) -> Figure:
    """One panel per scenario (shared axes), median and percentile band."""
    plt = _plt()
    if "scenario" not in ds.dims:  # one result: one panel
        ds = (
            ds.expand_dims("scenario")
            if "scenario" in ds.coords  # ds.sel(...)
            else ds.expand_dims(scenario=[ds.attrs.get("model_id", "result")])
        )
    names = [str(s) for s in ds.scenario.values]
    fig, axes = plt.subplots(
        1, len(names), figsize=(5 * len(names), 4), sharey=sharey, squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        one = ds.sel(scenario=name)
        an = analyte or _present(one)[0]
        _band(ax, one, an, "C0", "", spaghetti, q)
        ax.set_title(name, fontsize=10)
        if log:
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_exposure(
    ds: xr.Dataset,
    metric: str = "cmax",
    *,
    per: str = "session",
    analyte: str | None = None,
    unit: str = "ng/mL",
) -> Figure:
    """Distribution over patients of a per-session (or per-dose) metric: one box per
    session, scenarios side by side.

    ``unit`` ("ng/mL" or "nmol/L") goes to :func:`ketasim.metrics`: Cmax and trough
    in it, AUC in ng·h/mL or nmol·h/L; the y axis names the unit. Failed subjects
    (NaN metrics) are left out of the boxes."""
    from .metrics import metrics

    plt = _plt()
    if "scenario" not in ds.dims:
        ds = (
            ds.expand_dims("scenario")
            if "scenario" in ds.coords  # ds.sel(...)
            else ds.expand_dims(scenario=[ds.attrs.get("model_id", "result")])
        )
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [str(s) for s in ds.scenario.values]
    width = 0.8 / len(names)
    units = ""
    windows = 0
    drugs = {
        name: _analytes.resolve(analyte, ds.analyte.values, "these results")
        if analyte is not None
        else _present(ds.sel(scenario=name))[0]
        for name in names
    }
    mixed = len(set(drugs.values())) > 1
    for k, name in enumerate(names):
        one = ds.sel(scenario=name)
        if "dose" in one.dims:
            one = one.isel(dose=np.flatnonzero(np.isfinite(one.dose_time.values)))
            one = one.assign(dose_session=one.dose_session.astype(np.int64))
        an = drugs[name]  # each scenario's own drug
        m = metrics(one, per, unit=unit)[metric].sel(analyte=an)
        units = m.attrs.get("units", "")
        data = [m.values[:, w][np.isfinite(m.values[:, w])] for w in range(m.shape[1])]
        pos = np.arange(len(data)) + 1 + (k - (len(names) - 1) / 2) * width
        bp = ax.boxplot(
            data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False
        )
        for patch in bp["boxes"]:
            patch.set_facecolor(f"C{k}")
            patch.set_alpha(0.5)
        windows = max(windows, len(data))
        ax.plot(
            [],
            [],
            color=f"C{k}",
            lw=6,
            alpha=0.5,
            label=f"{name} ({an})" if mixed else name,
        )
    ax.set_xticks(np.arange(1, windows + 1))
    ax.set_xticklabels([str(i) for i in range(1, windows + 1)])
    ax.set_xlabel(per)
    what = " / ".join(sorted(set(drugs.values())))
    ax.set_ylabel(f"{what} {metric} ({units})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
