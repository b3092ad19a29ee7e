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
  The trapezoid cannot split the area at a dose time that is not an output time
  (the curve jumps or turns inside a grid interval): per dose or session, the two
  windows that meet there get a NaN AUC, and ``attrs["method"]`` names them and
  the time. Include the dose times in ``times`` (or use a model the exact solver
  runs) for their AUC; the course AUC has no split and is always given. At a
  dose time on the grid the curve holds the level after the dose, so before a
  bolus that raises the plasma level at once (iv) the earlier window's last
  interval runs up to that level: an error that shrinks with the grid step, as
  the trapezoid's own does (a fine grid before boluses, or the exact solver,
  removes it).
- Trough: the exact concentration just before the next session's first dose (before
  every dose given at that time: a value at a dose time is the state after it).
- Time above / within a window: linear interpolation between grid points.
- A window with no output time between its start and the next window's start has
  NaN Cmax, Tmax and time above / within (they are read on the grid), and a NaN
  trapezoid AUC; the exact AUC is still given. The streaming metrics-only kernel
  gives the same NaN.

Failed subjects: a subject whose solve failed (``status`` != 0, kept with
``errors="keep"``) has every metric NaN, whatever part of its curve was computed;
the result carries ``status`` as a ``subject`` coordinate, and :func:`summary`,
:func:`pta` and :func:`ketasim.compare` say how many subjects they left out.

Units: ``metrics`` reads ``concentration`` in ng/mL, as ``simulate`` returns it, and
refuses a Dataset whose ``units`` attributes say otherwise (e.g. concentrations
replaced by ``ds.pk.molar()``). ``unit="nmol/L"`` gives Cmax and trough in nmol/L and
AUC in nmol·h/L: the ng/mL values (the exact per-dose AUC and pre-dose levels
included) divided by each analyte's ``molecular_weight`` (g/mol) × 1000.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .units import (
    Quantity,
    UnitError,
    ng_per_ml_to_nmol_per_l,
    parse_quantity,
    parse_unit,
    to_ng_per_ml,
)

__all__ = ["metrics", "pta", "summary"]

PER = ("dose", "session", "course")
TIE_RTOL = 1e-9
#: result units: concentration unit -> its AUC unit
UNITS = {"ng/mL": "ng*h/mL", "nmol/L": "nmol*h/L"}
# what metrics reads: the variables simulate writes, in the units it writes them
_INPUT_UNITS = {"concentration": "ng/mL", "predose": "ng/mL", "dose_auc": "ng*h/mL"}


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


def metrics(
    ds: xr.Dataset,
    per: str = "session",
    *,
    above: float | str | None = None,
    within: tuple[float | str, float | str] | None = None,
    unit: str = "ng/mL",
) -> xr.Dataset:
    """Cmax, Tmax, AUC and trough (and time above/within thresholds) per ``per``
    window, as a Dataset (subject, analyte, ``per``) with units.

    Parameters
    ----------
    ds : xarray.Dataset or ScenarioResults
        A trajectories result of :func:`ketasim.simulate`: ``concentration`` in
        ng/mL (as simulate returns it; a Dataset labelled otherwise is refused),
        ``dose_time`` and ``dose_session``, and, from the exact solver,
        ``dose_auc`` and ``predose``. The results of :func:`ketasim.run_scenarios`
        give a :class:`~ketasim.ScenarioResults` of metrics, one per scenario.
    per : {"dose", "session", "course"}
        The windows (see the module documentation).
    above : float or str, optional
        Level for ``time_above`` (h): a number is ng/mL; a string carries its unit,
        a mass concentration (``"0.1 mg/L"``) or a molar one (``"400 nmol/L"``,
        converted per analyte by its molecular weight). With ``unit="nmol/L"`` a
        bare number is refused: write the unit.
    within : (low, high), optional
        Levels for ``time_within`` (h), each as for ``above``; low < high.
    unit : {"ng/mL", "nmol/L"}
        Unit of Cmax and trough; AUC is in ng·h/mL or nmol·h/L. Molar values are
        the ng/mL ones (the exact per-dose AUC and pre-dose levels included)
        divided by the analyte's ``molecular_weight`` (g/mol) × 1000.

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
    >>> ks.metrics(ds, per="session", unit="nmol/L").auc.attrs["units"]
    'nmol*h/L'
    """
    from .results import ScenarioResults

    if isinstance(ds, ScenarioResults):  # run_scenarios: metrics per scenario
        return ds.map(metrics, per, above=above, within=within, unit=unit)
    _check_input(ds)
    _check_options(unit, within)
    if "scenario" in ds.dims:  # levels convert per scenario (its analytes' weights)
        return _per_scenario(ds, per, above, within, unit)
    ds = _without_padding(ds)
    levels = _levels(ds, above, within, unit)
    starts, groups = _windows(ds, per)
    edges = _edges(ds, starts)
    out = _peaks(ds, per, starts, edges)
    out["auc"] = _auc(ds, groups, edges, per, starts)
    if per != "course":
        out["trough"] = _trough(ds, groups, per)
    for name, (lo, hi, label) in levels.items():
        out[name] = _time_between(ds, edges, lo, hi, per, label)
    _mask_windows(ds, out, starts, edges)
    _mask_failed(ds, out)
    if unit != "ng/mL":
        _to_molar(ds, out, unit)
    return out


def _check_options(unit: str, within) -> None:
    """Refuse a result unit metrics does not give and a ``within`` that is not a
    pair, before any level is read."""
    if not isinstance(unit, str) or unit not in UNITS:
        raise UnitError(
            f"unit must be 'ng/mL' or 'nmol/L' (the unit of Cmax and "
            f"trough; AUC follows); got {unit!r}"
        )
    if within is not None and (
        isinstance(within, str) or not hasattr(within, "__len__") or len(within) != 2
    ):
        raise TypeError(
            f"within must be a pair (low, high) of concentrations in "
            f"ng/mL or strings with a unit; got {within!r}"
        )


def _per_scenario(ds: xr.Dataset, per: str, above, within, unit: str) -> xr.Dataset:
    """:func:`metrics` of a scenario Dataset: each scenario on its own (a molar
    level converts by its own analytes' weights; its dose table without the other
    scenarios' padding), then concatenated along ``scenario``."""
    parts = [
        metrics(
            ds.sel(scenario=s).dropna("dose", how="all")
            if "dose" in ds.dims
            else ds.sel(scenario=s),
            per,
            above=above,
            within=within,
            unit=unit,
        ).drop_vars("molecular_weight", errors="ignore")
        for s in ds.scenario.values
    ]
    out = xr.concat(
        parts, dim="scenario", join="outer", coords="different", compat="equals"
    )
    for name in ("auc", "trough"):  # exact in one scenario, on the grid in another
        methods = [p[name].attrs.get("method") for p in parts if name in p]
        if len(set(methods)) > 1:
            out[name].attrs["method"] = "; ".join(
                f"{s}: {m}" for s, m in zip(ds.scenario.values, methods, strict=True)
            )
    if unit != "ng/mL":
        out.coords["molecular_weight"] = ds.molecular_weight
    return out


def _levels(
    ds: xr.Dataset, above, within, unit: str
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The time-above and time-within levels as ``name -> (low, high, long_name)``,
    ng/mL per analyte (``high`` inf for time above); a (low, high) pair with low >=
    high is refused, naming the analyte."""
    levels = {}
    if above is not None:
        lo, text = _level(ds, above, "above", unit)
        levels["time_above"] = (lo, np.full_like(lo, np.inf), f"time above {text}")
    if within is not None:
        (lo, lo_text), (hi, hi_text) = (_level(ds, w, "within", unit) for w in within)
        wrong = np.flatnonzero(~(lo < hi) & np.isfinite(lo) & np.isfinite(hi))
        if wrong.size:
            raise ValueError(
                f"within must be (low, high) with low < high; got "
                f"{within!r} (for analyte "
                f"{str(ds.analyte.values[wrong[0]])!r}: {lo[wrong[0]]:g} "
                f"and {hi[wrong[0]]:g} ng/mL)"
            )
        levels["time_within"] = (lo, hi, f"time within [{lo_text}, {hi_text}]")
    return levels


def _peaks(
    ds: xr.Dataset, per: str, starts: np.ndarray, edges: np.ndarray
) -> xr.Dataset:
    """The result Dataset with its coordinates, ``cmax`` and ``tmax`` per window,
    read on the output grid by the kernel (the Tmax tie rule: first maximum)."""
    from ._kernels.metrics import window_peaks

    c = ds.concentration
    W = starts.size
    cmax = np.full(c.shape[:2] + (W,), np.nan)
    tmax = np.full_like(cmax, np.nan)
    window_peaks(
        np.ascontiguousarray(c.values),
        ds.time.values,
        edges.astype(np.int64),
        np.asarray(starts, dtype=float),
        TIE_RTOL,
        cmax,
        tmax,
    )
    tmax[np.isnan(cmax)] = np.nan  # no values (failed subject, padded analyte)
    out = xr.Dataset(coords={"subject": ds.subject, "analyte": ds.analyte})
    out.coords[per] = np.arange(W)
    out.coords[f"{per}_start"] = (per, starts, {"units": "h"})
    out["cmax"] = (
        ("subject", "analyte", per),
        cmax,
        {"units": "ng/mL", "long_name": f"Cmax per {per} (output grid)"},
    )
    out["tmax"] = (
        ("subject", "analyte", per),
        tmax,
        {
            "units": "h",
            "long_name": f"Tmax after {per} start (first maximum on the output grid)",
        },
    )
    return out


def _mask_windows(
    ds: xr.Dataset, out: xr.Dataset, starts: np.ndarray, edges: np.ndarray
) -> None:
    """NaN (in place) where the grid has nothing to read: windows with no output
    time from their start to the next window's start (the exact AUC still holds),
    windows at or after the last output time (not simulated, or empty), and the
    trough before a window that was not simulated."""
    t = ds.time.values
    nogrid = edges[1:] <= edges[:-1]
    empty = starts >= t[-1]
    for name in ("cmax", "tmax", "auc", "time_above", "time_within"):
        if name in out:
            out[name].values[:, :, empty] = np.nan
            if name != "auc" or "dose_auc" not in ds:
                out[name].values[:, :, nogrid] = np.nan
    if "trough" in out:  # the level before a window that was not simulated
        out["trough"].values[:, :, :-1][:, :, starts[1:] > t[-1]] = np.nan


def _to_molar(ds: xr.Dataset, out: xr.Dataset, unit: str) -> None:
    """Cmax, trough and AUC of ``out`` (in place) from ng/mL to ``unit``, as
    ds.pk.molar(): ng/mL / (g/mol) x 1000 = nmol/L."""
    mw = _molecular_weights(ds, f"unit={unit!r}")
    out.coords["molecular_weight"] = ds.molecular_weight
    for name in ("cmax", "trough", "auc"):
        if name in out:
            out[name].values[...] = ng_per_ml_to_nmol_per_l(
                out[name].values, mw[None, :, None]
            )
            out[name].attrs["units"] = unit if name != "auc" else UNITS[unit]


def _mask_failed(ds: xr.Dataset, out: xr.Dataset) -> None:
    """Every metric of a subject whose solve failed (``status`` != 0, kept with
    ``errors="keep"``) is NaN: its curve stops where the solver stopped, so a
    maximum or an area read from what is left would be a wrong number. ``status``
    goes along as a ``subject`` coordinate, so that :func:`summary`, :func:`pta`
    and :func:`ketasim.compare` can say how many subjects they left out."""
    if "status" not in ds:
        return
    status = np.asarray(ds.status.values, dtype=float)  # NaN: a scenario's padding
    failed = np.isfinite(status) & (status != 0)
    for name in out.data_vars:
        if out[name].dims[:1] == ("subject",):
            out[name].values[failed] = np.nan
    out.coords["status"] = (
        "subject",
        status,
        {"long_name": "solver status (0 = ok; the metrics of other subjects are NaN)"},
    )


def failed_note(da, dim: str = "subject") -> str | None:
    """``"2 of 1000 subjects failed (status != 0) and are left out"``, from the
    ``status`` coordinate metrics attach; None when none failed or it is absent."""
    if "status" not in da.coords:
        return None
    status = np.asarray(da.coords["status"].values, dtype=float)
    total = int(np.isfinite(status).sum())  # padding subjects are not subjects
    bad = int((np.isfinite(status) & (status != 0)).sum())
    if not bad:
        return None
    return (
        f"{bad} of {total} subjects failed (status != 0) and are left out "
        f"(their metrics are NaN)"
    )


def check_units(ds: xr.Dataset, want: dict, who: str, hint: str = "") -> None:
    """Refuse variables of ``ds`` whose ``units`` attribute is not the one ``who``
    reads them in (``want``: name -> unit); missing variables are skipped. A value
    under a false unit label would otherwise pass through as a wrong number."""
    for name, unit in want.items():
        if name not in ds:
            continue
        got = ds[name].attrs.get("units")
        if got == unit:
            continue
        if got is None:
            raise UnitError(
                f"ds.{name} has no units attribute; {who} reads it in "
                f"{unit}. If the values are {unit}, set "
                f"ds.{name}.attrs['units'] = {unit!r}"
            )
        fix = (
            hint
            if "mol" in str(got) and hint
            else f"; convert the values to {unit} and set ds.{name}.attrs['units'] = "
            f"{unit!r}"
        )
        raise UnitError(
            f"{who} reads ds.{name} in {unit}, as ks.simulate returns "
            f"it; its units attribute is {got!r}{fix}"
        )


def _check_input(ds) -> None:
    """Refuse what is not a ketasim trajectories Dataset in the units metrics
    reads (a relabelled or converted one would give numbers under a false unit)."""
    if isinstance(ds, xr.DataArray):
        molar = ds.attrs.get("units") == "nmol/L"
        raise TypeError(
            "metrics needs the Dataset from ks.simulate (concentrations with their "
            f"dose table); got a DataArray{' in nmol/L' if molar else ''} "
            f"{ds.name or ''}".rstrip()
            + ". For molar metrics pass the simulate "
            "Dataset and unit='nmol/L'"
        )
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"metrics needs an xarray Dataset from ks.simulate or "
            f"ks.run_scenarios; got {type(ds).__name__}"
        )
    if "concentration" not in ds:
        if ds.attrs.get("output") == "metrics" or "cmax" in ds:
            raise ValueError(
                "ds holds metrics already (cmax, tmax, auc, predose per dose, from "
                "simulate(..., output=ks.Metrics())), not concentration curves; for "
                "metrics per session or course simulate with "
                "output=ks.Trajectories() (the default)"
            )
        raise ValueError(
            f"ds has no 'concentration' variable; metrics needs a "
            f"result of ks.simulate or ks.run_scenarios (got variables "
            f"{', '.join(map(str, ds.data_vars)) or 'none'})"
        )
    for name in ("dose_time", "dose_session"):
        if name not in ds.variables:
            raise ValueError(
                f"ds has no {name!r}: metrics needs the dose table of "
                f"ks.simulate's result to find the windows"
            )
    check_units(
        ds,
        _INPUT_UNITS,
        "metrics",
        " (for molar metrics pass the ng/mL Dataset from ks.simulate with "
        "unit='nmol/L'; ds.pk.molar() is for the curves)",
    )


def _without_padding(ds: xr.Dataset) -> xr.Dataset:
    """A scenario of a model without exact dose windows (ODE) inside a scenario
    Dataset has ``dose_auc`` and ``predose`` all NaN, padding from the other
    scenarios: drop them, so that its AUC and troughs come from its curves instead
    of being NaN under an "exact" label. (A simulated dose always has a pre-dose
    level; only doses after the last output time have NaN.)"""
    if "predose" not in ds:
        return ds
    simulated = ds.dose_time.values <= ds.time.values[-1]
    if (
        simulated.any()
        and ds.predose.isel(dose=simulated).isnull().all()
        and ds.concentration.notnull().any()
    ):
        return ds.drop_vars([v for v in ("predose", "dose_auc") if v in ds])
    return ds


def _molecular_weights(ds: xr.Dataset, why: str) -> np.ndarray:
    """Each analyte's molecular weight (g/mol) from the ``molecular_weight``
    coordinate; NaN for analytes without values (a scenario's padding)."""
    if "molecular_weight" not in ds.variables:
        raise ValueError(
            f"{why} needs each analyte's molecular weight; ds has no "
            f"'molecular_weight' (g/mol, on analyte) as ks.simulate "
            f"results have"
        )
    mw = ds["molecular_weight"]
    if mw.dims != ("analyte",):
        raise ValueError(
            f"{why}: ds.molecular_weight must be one value per analyte; "
            f"got dimensions {mw.dims}"
        )
    if mw.attrs.get("units") != "g/mol":
        raise UnitError(
            f"{why}: ds.molecular_weight must be in g/mol; its units "
            f"attribute is {mw.attrs.get('units')!r}"
        )
    vals = np.array(mw.values, dtype=float)
    names = [str(a) for a in ds.analyte.values]
    have = set(present_analytes(ds))
    for k, name in enumerate(names):
        if name not in have:
            vals[k] = np.nan
        elif not (np.isfinite(vals[k]) and vals[k] > 0):
            raise ValueError(
                f"{why}: analyte {name!r} has molecular_weight "
                f"{vals[k]!r} g/mol; it must be finite and > 0"
            )
    return vals


def _level(ds: xr.Dataset, value, what: str, unit: str) -> tuple[np.ndarray, str]:
    """A concentration level as ng/mL per analyte, and its text for labels. A
    number is ng/mL; a string carries its unit (mass, or molar: converted by each
    analyte's molecular weight). With a molar ``unit`` a bare number is refused."""
    if getattr(value, "ndim", None) == 0:  # numpy or xarray scalar
        value = value.item()
    K = ds.analyte.size
    bare = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(value, str):
        try:
            float(value)
            bare = True
        except ValueError:
            q = parse_quantity(value, what=what, default_unit="ng/mL")
            u = parse_unit(q.unit)
            if u.dimension == "molar concentration" and not u.per_kg:
                nmol = q.value * (u.factor / parse_unit("nmol/L").factor)
                if not (math.isfinite(nmol) and nmol >= 0):
                    raise ValueError(
                        f"{what} must be a finite concentration >= 0; got {value!r}"
                    ) from None
                mw = _molecular_weights(ds, f"{what}={value!r}")
                return nmol * mw / 1000.0, f"{nmol:g} nmol/L"
    if bare and unit != "ng/mL":
        raise UnitError(
            f"{what}={value!r} has no unit; with unit={unit!r} write it, "
            f"e.g. '{value} {unit}' or '{value} ng/mL' (a bare number "
            f"is ng/mL)"
        )
    ng = to_ng_per_ml(value, what=what)
    return np.full(K, ng), f"{ng:g} ng/mL"


def _auc(ds, groups, edges, dim, starts) -> xr.DataArray:
    if "dose_auc" in ds:
        # doses after the last output time have no AUC (NaN); a window's AUC sums
        # its simulated doses (the last of them runs to the last output time)
        da = ds.dose_auc.values
        simulated = ds.dose_time.values < ds.time.values[-1]  # non-empty windows
        vals = np.stack([da[:, :, g[simulated[g]]].sum(axis=2) for g in groups], axis=2)
        method = "exact (integrated in the kernel)"
    else:
        t = ds.time.values
        cv = ds.concentration.values
        vals = np.stack(
            [
                np.trapezoid(cv[:, :, a : b + 1], t[a : b + 1], axis=2)
                if b > a
                else np.zeros(cv.shape[:2])
                for a, b in zip(
                    edges[:-1], np.minimum(edges[1:], t.size - 1), strict=True
                )
            ],
            axis=2,
        )
        method = "trapezoid on the output grid"
        if dim != "course":
            # a dose time between two output times: the curve jumps (or turns)
            # inside a grid interval, and the trapezoid cannot split the area there;
            # the windows it starts or ends get NaN rather than a share of their
            # neighbour's area (the course AUC has no split, and stays)
            off = ~np.isin(starts, t) & (starts < t[-1])
            cut = off | np.append(off[1:], False)
            if cut.any():
                vals[:, :, cut] = np.nan
                which = ", ".join(str(w) for w in np.flatnonzero(cut))
                times = ", ".join(f"{x:g}" for x in starts[off])
                method += (
                    f"; NaN for {dim} {which}: the {dim} start at {times} h "
                    f"is not an output time, so the area cannot be split "
                    f"there from the curve (include the dose times in "
                    f"times=, or use a model the exact solver runs)"
                )
    return xr.DataArray(
        vals,
        dims=("subject", "analyte", dim),
        attrs={"units": "ng*h/mL", "long_name": f"AUC per {dim}", "method": method},
    )


def _trough(ds, groups, dim) -> xr.DataArray:
    """Concentration just before the next window's first dose (NaN for the last)."""
    S, K = ds.concentration.shape[:2]
    vals = np.full((S, K, len(groups)), np.nan)
    if "predose" in ds:
        pre = ds.predose.values
        for w in range(len(groups) - 1):
            vals[:, :, w] = pre[:, :, groups[w + 1][0]]
        method = "exact (the level just before the dose)"
    else:  # ODE models: the last output before the next dose
        method = "the last output time before the next dose"
        t = ds.time.values
        cv = ds.concentration.values
        starts = ds.dose_time.values
        for w in range(len(groups) - 1):
            tn = starts[groups[w + 1][0]]
            j = np.searchsorted(t, tn, side="left")
            vals[:, :, w] = cv[:, :, max(j - 1, 0)]
    return xr.DataArray(
        vals,
        dims=("subject", "analyte", dim),
        attrs={
            "units": "ng/mL",
            "long_name": f"trough before the next {dim}",
            "method": method,
        },
    )


def _time_between(ds, edges, lo, hi, dim, name) -> xr.DataArray:
    """Time (h) per window with the concentration above ``lo`` and not above
    ``hi`` (ng/mL, one level per analyte)."""
    t = ds.time.values
    cv = ds.concentration.values
    S, K = cv.shape[:2]
    W = edges.size - 1
    out = np.zeros((S, K, W))
    for s0 in range(0, S, 512):  # bounded temporaries on big populations
        c = cv[s0 : s0 + 512]
        inside = _interval_time(c, t, lo) - _interval_time(c, t, hi)
        cum = np.concatenate([np.zeros(c.shape[:2] + (1,)), np.cumsum(inside, 2)], 2)
        for w in range(W):
            a, b = edges[w], min(edges[w + 1], t.size - 1)
            if a < t.size:  # else the window starts after the last output time
                out[s0 : s0 + 512, :, w] = cum[:, :, max(b, a)] - cum[:, :, a]
    return xr.DataArray(
        out, dims=("subject", "analyte", dim), attrs={"units": "h", "long_name": name}
    )


def _interval_time(c, t, level):
    """Time within each grid interval during which the linear interpolant > level
    (``c`` (subject, analyte, time), ``level`` one per analyte; inf: never)."""
    dt = np.diff(t)
    level = np.asarray(level, dtype=float)
    if np.all(np.isposinf(level)):
        return np.zeros(c.shape[:2] + (t.size - 1,))
    level = level[None, :, None]
    a, b = c[:, :, :-1] - level, c[:, :, 1:] - level
    both = (a > 0) & (b > 0)
    cross = (a > 0) != (b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(cross, np.maximum(a, b) / np.abs(b - a), 0.0)
    return np.where(both, dt, frac * dt)


def check_percentiles(q, *, band: bool = False, what: str = "q") -> tuple[float, ...]:
    """The caller's percentiles (0-100, not fractions) as a tuple of floats.

    ``band=True``: exactly (low, 50, high) with low < 50 < high, as the tables and
    figures that label the middle one "median" and the outer two the band need.
    Percentiles all at or below 1 (such as ``(0.05, 0.5, 0.95)``, the fractions
    ``numpy.quantile`` takes) are refused: read as percent they would give P0.05,
    P0.5 and P0.95 without a word.
    """
    example = "(5, 50, 95)"
    if isinstance(q, (str, bytes)) or not isinstance(q, Sequence | np.ndarray):
        raise TypeError(
            f"{what} must be a sequence of percentiles (0-100) such as {example}; "
            f"got {q!r}"
        )
    vals = []
    for p in q:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
            raise TypeError(
                f"{what} must hold numbers (percentiles, 0-100) such as {example}; "
                f"got {q!r}"
            )
        if not (math.isfinite(p) and 0 <= p <= 100):
            raise ValueError(
                f"{what} must hold percentiles from 0 to 100 such as {example}; "
                f"got {p!r} in {q!r}"
            )
        vals.append(float(p))
    if not vals:
        raise ValueError(f"{what} must hold at least one percentile; got {q!r}")
    if max(vals) <= 1 and any(v > 0 for v in vals):
        raise ValueError(
            f"{what} is in percent (0-100); got {q!r}, which would be "
            f"{', '.join(f'P{v:g}' for v in vals)}. For fractions multiply by 100: "
            f"{tuple(round(v * 100, 10) for v in vals)!r} (for percentiles that low, "
            f"use DataArray.quantile)"
        )
    if band and not (len(vals) == 3 and vals[0] < 50 == vals[1] < vals[2]):
        raise ValueError(
            f"{what} must be three percentiles (low, 50, high) with low < 50 < high, "
            f"such as {example}: the middle one is shown as the median and the "
            f"outer two as the band; got {q!r}"
        )
    return tuple(vals)


def _need_units(da, what: str) -> None:
    """``da`` must be a DataArray labelled with its unit (``attrs["units"]``), or
    the summary would carry none (``ds.parameters`` keeps its units in the
    ``parameter_unit`` coordinate; older xarray drops attributes in reductions)."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(
            f"{what} takes one metric as an xarray DataArray (e.g. m.cmax); got "
            f"{type(da).__name__}"
        )
    if "units" not in da.attrs:
        raise ValueError(
            f"{what}: {da.name or 'this DataArray'!r} has no attrs['units'], so its "
            f"result would carry no unit; label it with its unit, e.g. "
            f"da.assign_attrs(units='L/h') (a reduction that dropped it: "
            f".sum(..., keep_attrs=True))"
        )


def summary(
    da: xr.DataArray, q: Sequence[float] = (5, 50, 95), dim: str = "subject"
) -> xr.DataArray:
    """Population percentiles of a metric (default P5, median, P95), keeping units.

    ``q``: percentiles from 0 to 100 (not fractions: ``(0.05, 0.5, 0.95)`` is
    refused, see :func:`check_percentiles`); the result's ``quantile`` coordinate
    holds them, in percent.

    NaN values (a failed subject, a window without output times) are left out of
    the percentiles. When subjects failed (``status`` != 0, kept with
    ``errors="keep"``; :func:`metrics` makes all their metrics NaN and attaches
    ``status``), the result says so in ``attrs["left_out"]``, e.g. ``"2 of 1000
    subjects failed (status != 0) and are left out (their metrics are NaN)"``:
    an attribute rather than a warning, so that it stays with the numbers.
    """
    check_percentiles(q)  # percent, not fractions; the coordinate keeps q as given
    _need_units(da, "summary")
    with warnings.catch_warnings():  # a window or analyte with no value: NaN
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        out = da.quantile(np.asarray(q) / 100.0, dim=dim)
    out = out.assign_coords(quantile=("quantile", list(q), {"units": "percent"}))
    out.attrs = dict(da.attrs)
    note = failed_note(da, dim)
    if note:
        out.attrs["left_out"] = note
    return out


def pta(
    da: xr.DataArray,
    threshold: float | str,
    *,
    above: bool = True,
    dim: str = "subject",
) -> xr.DataArray:
    """Probability of target attainment: fraction of subjects with the metric
    >= ``threshold`` (or <= when ``above=False``).

    ``threshold`` is a number in the metric's units (``da.attrs["units"]``), or a
    string with a unit of the same kind, converted to them (``"30 min"`` for a Tmax
    in h, ``"0.1 mg/L"`` for a Cmax in ng/mL). A mass level for a molar metric (or
    the reverse) is refused: compute the metric with ``unit=`` in the level's unit.

    NaN values (failed subjects, whose metrics are NaN; windows without output
    times) are not counted, in the numerator or the denominator: the coordinate
    ``n_subjects`` gives how many were counted, and ``long_name`` says "over n of
    N subjects" (N: the subjects of ``da``; a scenario's padding subjects, with a
    NaN ``status``, are not among them).
    """
    if not isinstance(above, (bool, np.bool_)):
        raise TypeError(f"above must be True or False; got {above!r}")
    level = _threshold(da, threshold)
    hit = (da >= level) if above else (da <= level)
    out = hit.where(da.notnull()).mean(dim)
    counted = da.notnull().sum(dim)
    if "status" in da.coords:
        total = np.isfinite(np.asarray(da.coords["status"].values, dtype=float))
        total = (
            int(total.sum(axis=da.coords["status"].dims.index(dim)).max())
            if total.ndim > 1
            else int(total.sum())
        )
    else:
        total = da.sizes[dim]
    lo, hi = (
        int(counted.min()) if counted.size else 0,
        int(counted.max()) if counted.size else 0,
    )
    n = f"{lo}" if lo == hi else f"{lo} to {hi}"
    op = ">=" if above else "<="
    text = f"{da.name or 'metric'} {op} {level:g} {da.attrs.get('units', '')}"
    out.attrs = {
        "units": "1",
        "long_name": f"P({text.rstrip()}) over {n} of {total} subjects",
    }
    note = failed_note(da, dim)
    if note:
        out.attrs["left_out"] = note
    out.coords["n_subjects"] = counted.assign_attrs(
        long_name="subjects counted (metric not NaN)"
    )
    return out


def _unit(text: str):
    """Factor and dimensions of a unit that may multiply factors before its first
    ``/``, as metrics write AUC units (``"ng*h/mL"``)."""
    num, _, den = text.partition("/")
    parts = [parse_unit(p) for p in num.split("*")]
    if den:
        parts.append(parse_unit("1/" + den))
    factor, dims = 1.0, np.zeros(5, dtype=int)
    for u in parts:
        factor *= u.factor
        dims += u.dims
    return factor, tuple(int(d) for d in dims)


def _threshold(da: xr.DataArray, value) -> float:
    """A pta threshold in the units of ``da``."""
    if getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(
            f"threshold must be a number in the metric's units or a "
            f"string with a unit; got {type(value).__name__} {value!r}"
        )
    units = da.attrs.get("units")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            num, _, text = value.strip().partition(" ")
            try:
                num = float(num)
            except ValueError:
                raise UnitError(
                    f"cannot read threshold {value!r}; write a number "
                    f"and a unit, e.g. '100 ng/mL'"
                ) from None
            q = Quantity(num, text.strip())
            if units is None:
                raise UnitError(
                    f"threshold {value!r} has a unit, but the metric has "
                    f"no units attribute to convert it to; give a number "
                    f"in the metric's units"
                ) from None
            try:
                got = _unit(q.unit)
            except UnitError as exc:
                raise UnitError(f"threshold {value!r}: {exc}") from None
            want = _unit(units)
            if got[1] != want[1]:
                raise UnitError(
                    f"threshold {value!r} is not in a unit of the "
                    f"metric's kind ({units}); compute the metric with "
                    f"unit= in the threshold's unit, or convert the "
                    f"threshold"
                ) from None
            value = q.value * got[0] / want[0]
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite; got {value!r}")
    if value < 0:  # every attainment of a concentration, AUC or time is then 1
        raise ValueError(
            f"threshold must be >= 0: concentrations, AUCs and times "
            f"are never negative; got {value:g} {units or ''}".rstrip()
        )
    return float(value)
