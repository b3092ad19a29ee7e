"""Effect metrics: peak effect, time above (or below) an effect level, and the
time after a dose at which a concentration or an effect falls below a level
("discharge readiness").

All read the output grid of a trajectory result of a model with ``[effects]``
(``effect``: subject, endpoint, time) or its ``concentration``; crossing times are
linearly interpolated between output times, as :func:`ketasim.metrics` does for
the time above a concentration. A failed subject (``status`` != 0) gets NaN.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import xarray as xr

from . import _analytes
from .units import to_ng_per_ml

__all__ = ["discharge_time", "effect", "effect_time_above", "peak_effect"]


def _endpoint(ds: xr.Dataset, endpoint: str | None) -> str:
    if "effect" not in ds or "endpoint" not in ds.dims:
        raise ValueError(
            "this result has no 'effect' (subject, endpoint, time): simulate a "
            "model with [effects] (e.g. 'simons_2022') with "
            "output=ks.Trajectories()"
        )
    names = [str(e) for e in ds.endpoint.values]
    if endpoint is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(
            f"this result has {len(names)} endpoints ({', '.join(names)}); "
            f"name one with endpoint=..."
        )
    if not isinstance(endpoint, str):
        raise TypeError(
            f"endpoint must be a name (str); got {type(endpoint).__name__} {endpoint!r}"
        )
    if endpoint not in names:
        raise ValueError(
            f"no endpoint {endpoint!r} in this result; it has {', '.join(names)}"
        )
    return endpoint


def effect(ds: xr.Dataset, endpoint: str | None = None) -> xr.DataArray:
    """One endpoint's effect (subject, time) with its own ``units`` and
    ``long_name`` (``ds.effect`` holds every endpoint, whose units may differ).

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory result of a model with ``[effects]``.
    endpoint : str, optional
        The endpoint's name; may be omitted when there is one.
    """
    name = _endpoint(ds, endpoint)
    da = ds.effect.sel(endpoint=name)
    return da.assign_attrs(
        units=str(ds.endpoint_unit.sel(endpoint=name).values),
        long_name=str(ds.endpoint_long_name.sel(endpoint=name).values),
    )


def _failed(ds: xr.Dataset, values: np.ndarray) -> np.ndarray:
    if "status" in ds:
        values = np.array(values, dtype=float)
        values[np.asarray(ds.status.values) != 0] = np.nan
    return values


def peak_effect(ds: xr.Dataset, endpoint: str | None = None) -> xr.Dataset:
    """The largest effect of each subject over the output grid, in the drug's
    direction (the maximum of an effect the drug raises, the minimum of one it
    lowers; for an endpoint whose drivers push both ways, the value farthest
    from baseline), and its time (h; of equal extremes the first).

    Returns
    -------
    xarray.Dataset
        ``peak_effect`` (subject; the endpoint's unit) and ``time_of_peak_effect``
        (subject; h).
    """
    da = effect(ds, endpoint)
    name = _endpoint(ds, endpoint)
    direction = int(ds.endpoint_direction.sel(endpoint=name).values)
    base = float(ds.endpoint_baseline.sel(endpoint=name).values)
    v = np.asarray(da.transpose("subject", "time").values, dtype=float)
    key = v * direction if direction else np.abs(v - base)
    with np.errstate(invalid="ignore"):
        filled = np.where(np.isnan(key), -np.inf, key)
    i = np.argmax(filled, axis=1)
    rows = np.arange(v.shape[0])
    peak = v[rows, i]
    when = np.asarray(ds.time.values, dtype=float)[i]
    bad = np.isnan(v).any(axis=1)
    peak = _failed(ds, np.where(bad, np.nan, peak))
    when = np.where(np.isnan(peak), np.nan, when)
    out = xr.Dataset(coords={"subject": ds.subject})
    out["peak_effect"] = (
        "subject",
        peak,
        {"units": da.attrs["units"], "long_name": f"peak {da.attrs['long_name']}"},
    )
    out["time_of_peak_effect"] = (
        "subject",
        when,
        {"units": "h", "long_name": f"time of peak {da.attrs['long_name']}"},
    )
    out.coords["endpoint"] = name
    return out


def _effect_level(ds: xr.Dataset, name: str, level, what: str) -> float:
    """A level in the endpoint's unit: a number, or ``"<number> <unit>"`` with
    the endpoint's own unit."""
    unit = str(ds.endpoint_unit.sel(endpoint=name).values)
    value = level
    if isinstance(level, str):
        parts = level.strip().split(None, 1)
        try:
            value = float(parts[0])
        except (ValueError, IndexError):
            raise ValueError(
                f"{what} must be a number in {unit} or a string such as "
                f"'2 {unit}'; got {level!r}"
            ) from None
        if len(parts) == 2 and parts[1].strip() != unit:
            raise ValueError(
                f"{what} {level!r} is not in the unit of endpoint {name!r} "
                f"({unit}); give it in {unit}"
            )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{what} must be a number in {unit}; got {type(level).__name__} {level!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite; got {level!r}")
    return float(value)


def _time_above(v: np.ndarray, t: np.ndarray, level: float) -> np.ndarray:
    """Time (h) each row of ``v`` (subject, time) spends above ``level``, the curve
    linear between output times; NaN where a row has NaN."""
    a, b = v[:, :-1], v[:, 1:]
    dt = np.diff(t)[None, :]
    up_a, up_b = a > level, b > level
    with np.errstate(invalid="ignore", divide="ignore"):
        part = np.where(
            up_a & up_b,
            dt,
            np.where(
                up_a & ~up_b,
                dt * (a - level) / (a - b),
                np.where(~up_a & up_b, dt * (b - level) / (b - a), 0.0),
            ),
        )
    out = part.sum(axis=1)
    out[np.isnan(v).any(axis=1)] = np.nan
    return out


def effect_time_above(
    ds: xr.Dataset,
    level: float | str,
    *,
    endpoint: str | None = None,
    below: bool = False,
) -> xr.DataArray:
    """Time (h) each subject's effect spends above ``level`` over the output grid
    (``below=True``: below it, e.g. a pain score under a target), the effect
    linear between output times.

    ``level`` is in the endpoint's unit (a number, or ``"2 cm"`` with that unit).
    """
    name = _endpoint(ds, endpoint)
    lv = _effect_level(ds, name, level, "level")
    if not isinstance(below, bool):
        raise TypeError(f"below must be True or False; got {below!r}")
    da = effect(ds, name)
    v = np.asarray(da.transpose("subject", "time").values, dtype=float)
    t = np.asarray(ds.time.values, dtype=float)
    got = _time_above(-v, t, -lv) if below else _time_above(v, t, lv)
    unit = da.attrs["units"]
    word = "below" if below else "above"
    return xr.DataArray(
        _failed(ds, got),
        dims=("subject",),
        coords={"subject": ds.subject, "endpoint": name},
        attrs={"units": "h", "long_name": f"time {word} {lv:g} {unit} of {name}"},
    )


def discharge_time(
    ds: xr.Dataset,
    level: float | str,
    *,
    endpoint: str | None = None,
    analyte: str | None = None,
    dose: int = -1,
    side: str | None = None,
) -> xr.DataArray:
    """Time (h) after the start of dose ``dose`` at which an effect (``endpoint``)
    or a plasma concentration (``analyte``) returns to ``level`` and stays on
    its ``side`` until the next dose (the last dose: until the last output
    time): "discharge readiness".

    It is 0 when the curve never leaves that side after the dose, and NaN (with
    ``attrs["note"]``) for a subject still on the far side at the window's last
    output time (simulate longer). The crossing is linearly interpolated
    between output times.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory result.
    level : float or str
        An effect level in the endpoint's unit, or a concentration (a number in
        ng/mL, or e.g. ``"50 ng/mL"``, ``"0.05 mg/L"``, or a molar level such as
        ``"200 nmol/L"``, converted by the analyte's molecular weight).
    endpoint, analyte : str
        Exactly one: the effect endpoint or the analyte (a name or an alias such
        as ``"esketamine"``) whose curve is read.
    dose : int, default -1
        Which dose's window (0 the first, -1 the last).
    side : {"below", "above"}, optional
        The side of ``level`` the curve must settle on: by default "below" for a
        concentration or an effect the drug raises, "above" for an effect it
        lowers (a pain score returning up towards baseline); required for an
        endpoint whose drivers push both ways.
    """
    if (endpoint is None) == (analyte is None):
        raise TypeError(
            "discharge_time needs exactly one of endpoint= (an effect) or "
            "analyte= (a plasma concentration)"
        )
    t = np.asarray(ds.time.values, dtype=float)
    if endpoint is not None:
        name = _endpoint(ds, endpoint)
        lv = _effect_level(ds, name, level, "level")
        curve = effect(ds, name)
        unit = curve.attrs["units"]
        what = name
        direction = int(ds.endpoint_direction.sel(endpoint=name).values)
        default = {1: "below", -1: "above"}.get(direction)
    else:
        what = _analytes.resolve(analyte, ds.analyte.values, "this result")
        mw = (  # a molar level ("100 nmol/L") converts by the analyte's weight
            float(ds.molecular_weight.sel(analyte=what))
            if "molecular_weight" in ds.coords
            else None
        )
        lv = to_ng_per_ml(level, what="level", mw=mw)
        curve = ds.concentration.sel(analyte=what)
        unit = "ng/mL"
        default = "below"
    side = side if side is not None else default
    if side not in ("below", "above"):
        raise ValueError(
            "side must be 'below' or 'above'"
            + (
                f"; endpoint {what!r} has drivers pushing both ways, so name "
                f"the side to settle on"
                if side is None
                else f"; got {side!r}"
            )
        )
    if "dose_time" not in ds or ds.dose_time.size == 0:
        raise ValueError("this result has no doses (dose_time); nothing to time")
    starts = np.asarray(ds.dose_time.values, dtype=float)
    if isinstance(dose, bool) or not isinstance(dose, numbers.Integral):
        raise TypeError(f"dose must be a whole number (0 first, -1 last); got {dose!r}")
    if not -starts.size <= dose < starts.size:
        raise ValueError(
            f"dose={dose} but this result has {starts.size} doses (0 to "
            f"{starts.size - 1}, or -1 for the last)"
        )
    d = dose % starts.size
    t0 = starts[d]
    later = starts[starts > t0]
    t1 = later.min() if later.size else t[-1]
    keep = (t >= t0) & (t <= t1)
    tw = t[keep]
    v = np.asarray(curve.transpose("subject", "time").values, dtype=float)[:, keep]
    if side == "above":  # settle above the level: the mirror image settles below
        v, lv_cmp = -v, -lv
    else:
        lv_cmp = lv
    out = np.full(v.shape[0], np.nan)
    if tw.size:
        above = v > lv_cmp
        any_above = above.any(axis=1)
        last = tw.size - 1 - np.argmax(above[:, ::-1], axis=1)
        for s in range(v.shape[0]):
            if np.isnan(v[s]).any():
                continue
            if not any_above[s]:
                out[s] = 0.0
            elif last[s] == tw.size - 1:
                continue  # still above at the window's end: NaN
            else:
                i = last[s]
                a, b = v[s, i], v[s, i + 1]
                out[s] = tw[i] + (tw[i + 1] - tw[i]) * (a - lv_cmp) / (a - b) - t0
    out = _failed(ds, out)
    attrs = {
        "units": "h",
        "long_name": f"time after dose {d} from which {what} stays {side} "
        f"{lv:g} {unit} until the next dose",
    }
    n_open = int(np.sum(np.isnan(out)))
    if n_open:
        attrs["note"] = (
            f"{n_open} subject(s) NaN: not yet {side} {lv:g} {unit} at the "
            f"window's last output time, or failed (status != 0); simulate longer"
        )
    return xr.DataArray(
        out, dims=("subject",), coords={"subject": ds.subject}, attrs=attrs
    )
