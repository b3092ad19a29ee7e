"""Exposure metrics per dose, per session and per course, and population summaries.

Windows: a dose's window runs from its start to the next dose's start (the last to
the last output time); a session's from its first dose to the next session; the
course's from t = 0 to the last output time. A window that starts after the last
output time was not simulated: all its metrics are NaN (``simulate`` warns with a
``GridWarning``), and so is the trough of the window before it. A window that starts
at the last output time is empty: its metrics are NaN, while the level just before
it is the previous window's trough.

- Cmax and Tmax are read on the output grid (use a fine grid around peaks). Tie
  rule: walking forward in time, Tmax moves to a later output time only when the
  concentration exceeds the running maximum by more than a relative 1e-9; so of
  equal peaks the first wins. Repeated equal doses give peaks that differ by
  rounding (~1e-16 relative) or by a residue of earlier doses far below clinical
  relevance; without the tolerance the course Tmax would jump to whichever session
  happened to round highest. The streaming metrics-only kernel applies the same
  rule, so both paths give the same Tmax. Tmax is in h after the window start.
- AUC is exact for linear models: ``simulate`` integrates the concentration as an
  extra kernel state and stores ``dose_auc``; without it (ODE models) the trapezoid
  rule on the output grid is used and the result says so in ``attrs["method"]``.
- Trough: the exact concentration just before the next session's first dose.
- Time above / within a window: linear interpolation between grid points.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .units import to_ng_per_ml

__all__ = ["metrics", "pta", "summary"]

PER = ("dose", "session", "course")
TIE_RTOL = 1e-9


def present_analytes(ds: xr.Dataset) -> list[str]:
    """Analytes with any value in ``ds`` (a scenario Dataset pads the analytes of
    other scenarios' models with NaN), in the Dataset's order."""
    c = ds.concentration
    other = [d for d in c.dims if d != "analyte"]
    keep = np.asarray(c.notnull().any(dim=other))
    return [str(a) for a in ds.analyte.values[keep]]


def _windows(ds: xr.Dataset, per: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Window start times (h) and, per window, the dose indices it spans."""
    if per not in PER:
        raise ValueError(f"per must be one of {PER}; got {per!r}")
    starts = ds.dose_time.values
    ndose = starts.size
    if per == "course" or ndose == 0:
        return np.array([0.0]), [np.arange(ndose)]
    if per == "dose":
        return starts, [np.array([i]) for i in range(ndose)]
    sess = ds.dose_session.values
    firsts = [int(np.flatnonzero(sess == k)[0]) for k in np.unique(sess)]
    return starts[firsts], [np.flatnonzero(sess == k) for k in np.unique(sess)]


def _edges(ds, starts):
    t = ds.time.values
    e = np.searchsorted(t, starts, side="left")
    return np.append(e, t.size)


def metrics(ds: xr.Dataset, per: str = "session", *, above: float | str | None = None,
            within: tuple | None = None) -> xr.Dataset:
    """Cmax, Tmax, AUC and trough (and time above/within thresholds, ng/mL) per
    ``per`` window, as a Dataset (subject, analyte, ``per``) with units.

    Examples
    --------
    >>> import ketasim as ks
    >>> ds = ks.simulate("domino", ks.six_infusion_course(),
    ...                  times=ks.grid("21 d", "1 min"))
    >>> m = ks.metrics(ds, per="session")
    >>> print(m.cmax.isel(subject=0, analyte=0).round(1).values)
    [208.4 208.4 208.4 208.4 208.4 208.4]
    >>> m.auc.attrs["units"], m.auc.attrs["method"]
    ('ng*h/mL', 'exact (integrated in the kernel)')
    """
    if above is not None:
        above = to_ng_per_ml(above, what="above")
    if within is not None:
        if isinstance(within, str) or not hasattr(within, "__len__") or \
                len(within) != 2:
            raise TypeError(f"within must be a pair (low, high) of concentrations in "
                            f"ng/mL; got {within!r}")
        within = tuple(to_ng_per_ml(w, what="within") for w in within)
        if not within[0] < within[1]:
            raise ValueError(f"within must be (low, high) with low < high; got "
                             f"{within!r}")
    if "scenario" in ds.dims:
        parts = [metrics(ds.sel(scenario=s).dropna("dose", how="all")
                         if "dose" in ds.dims else ds.sel(scenario=s), per,
                         above=above, within=within)
                 for s in ds.scenario.values]
        return xr.concat(parts, dim="scenario", join="outer")
    starts, groups = _windows(ds, per)
    edges = _edges(ds, starts)
    c = ds.concentration
    t = ds.time.values
    W = starts.size
    cmax = np.full(c.shape[:2] + (W,), np.nan)
    tmax = np.full_like(cmax, np.nan)
    from ._kernels.metrics import window_peaks

    window_peaks(np.ascontiguousarray(c.values), t, edges.astype(np.int64),
                 np.asarray(starts, dtype=float), TIE_RTOL, cmax, tmax)
    dim = per
    out = xr.Dataset(coords={"subject": ds.subject, "analyte": ds.analyte})
    out.coords[dim] = np.arange(W)
    out.coords[f"{dim}_start"] = (dim, starts, {"units": "h"})
    out["cmax"] = (("subject", "analyte", dim), cmax,
                   {"units": "ng/mL", "long_name": f"Cmax per {per} (output grid)"})
    out["tmax"] = (("subject", "analyte", dim), tmax,
                   {"units": "h", "long_name": f"Tmax after {per} start (first "
                    "maximum on the output grid)"})
    out["auc"] = _auc(ds, groups, edges, dim)
    if per != "course":
        out["trough"] = _trough(ds, groups, dim)
    if above is not None:
        out["time_above"] = _time_between(ds, edges, above, np.inf, dim,
                                          f"time above {above:g} ng/mL")
    if within is not None:
        lo, hi = within
        out["time_within"] = _time_between(ds, edges, lo, hi, dim,
                                           f"time within [{lo:g}, {hi:g}] ng/mL")
    empty = starts >= t[-1]  # windows with no output time after their start
    for name in ("cmax", "tmax", "auc", "time_above", "time_within"):
        if name in out:
            out[name].values[:, :, empty] = np.nan
    if "trough" in out:  # the level before a window that was not simulated
        out["trough"].values[:, :, :-1][:, :, starts[1:] > t[-1]] = np.nan
    return out


def _auc(ds, groups, edges, dim) -> xr.DataArray:
    if "dose_auc" in ds:
        # doses after the last output time have no AUC (NaN); a window's AUC sums
        # its simulated doses (the last of them runs to the last output time)
        da = ds.dose_auc.values
        simulated = ds.dose_time.values < ds.time.values[-1]  # non-empty windows
        vals = np.stack([da[:, :, g[simulated[g]]].sum(axis=2) for g in groups],
                        axis=2)
        method = "exact (integrated in the kernel)"
    else:
        t = ds.time.values
        cv = ds.concentration.values
        vals = np.stack([np.trapezoid(cv[:, :, a:b + 1], t[a:b + 1], axis=2)
                         if b > a else np.zeros(cv.shape[:2])
                         for a, b in zip(edges[:-1], np.minimum(edges[1:],
                                                                t.size - 1),
                                         strict=True)], axis=2)
        method = "trapezoid on the output grid"
    return xr.DataArray(vals, dims=("subject", "analyte", dim), attrs={
        "units": "ng*h/mL", "long_name": f"AUC per {dim}", "method": method})


def _trough(ds, groups, dim) -> xr.DataArray:
    """Concentration just before the next window's first dose (NaN for the last)."""
    S, K = ds.concentration.shape[:2]
    vals = np.full((S, K, len(groups)), np.nan)
    if "predose" in ds:
        pre = ds.predose.values
        for w in range(len(groups) - 1):
            vals[:, :, w] = pre[:, :, groups[w + 1][0]]
    else:  # ODE models: interpolate on the grid
        t = ds.time.values
        cv = ds.concentration.values
        starts = ds.dose_time.values
        for w in range(len(groups) - 1):
            tn = starts[groups[w + 1][0]]
            j = np.searchsorted(t, tn, side="left")
            vals[:, :, w] = cv[:, :, max(j - 1, 0)]
    return xr.DataArray(vals, dims=("subject", "analyte", dim), attrs={
        "units": "ng/mL", "long_name": f"trough before the next {dim}"})


def _time_between(ds, edges, lo, hi, dim, name) -> xr.DataArray:
    t = ds.time.values
    cv = ds.concentration.values
    S, K = cv.shape[:2]
    W = edges.size - 1
    out = np.zeros((S, K, W))
    for s0 in range(0, S, 512):  # bounded temporaries on big populations
        c = cv[s0:s0 + 512]
        inside = _interval_time(c, t, lo) - _interval_time(c, t, hi)
        cum = np.concatenate([np.zeros(c.shape[:2] + (1,)), np.cumsum(inside, 2)], 2)
        for w in range(W):
            a, b = edges[w], min(edges[w + 1], t.size - 1)
            if a < t.size:  # else the window starts after the last output time
                out[s0:s0 + 512, :, w] = cum[:, :, max(b, a)] - cum[:, :, a]
    return xr.DataArray(out, dims=("subject", "analyte", dim),
                        attrs={"units": "h", "long_name": name})


def _interval_time(c, t, level):
    """Time within each grid interval during which the linear interpolant > level."""
    dt = np.diff(t)
    if not np.isfinite(level):
        return np.zeros(c.shape[:2] + (t.size - 1,))
    a, b = c[:, :, :-1] - level, c[:, :, 1:] - level
    both = (a > 0) & (b > 0)
    cross = (a > 0) != (b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(cross, np.maximum(a, b) / np.abs(b - a), 0.0)
    return np.where(both, dt, frac * dt)


def summary(da: xr.DataArray, q=(5, 50, 95), dim: str = "subject") -> xr.DataArray:
    """Population percentiles of a metric (default P5, median, P95), keeping units."""
    out = da.quantile(np.asarray(q) / 100.0, dim=dim)
    out = out.assign_coords(quantile=("quantile", list(q), {"units": "percent"}))
    out.attrs = dict(da.attrs)
    return out


def pta(da: xr.DataArray, threshold: float, *, above: bool = True,
        dim: str = "subject") -> xr.DataArray:
    """Probability of target attainment: fraction of subjects with the metric
    >= ``threshold`` (or <= when ``above=False``), in the metric's units."""
    hit = (da >= threshold) if above else (da <= threshold)
    out = hit.where(da.notnull()).mean(dim)
    op = ">=" if above else "<="
    out.attrs = {"units": "1", "long_name": f"P({da.name or 'metric'} {op} "
                 f"{threshold:g} {da.attrs.get('units', '')})"}
    return out
