"""Scenarios: model + regimen + population + output times, run side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from . import _analytes
from .dosing import Dose, Regimen
from .metrics import failed_note, metrics, present_analytes
from .model import Model
from .modelfile import load_model
from .options import Metrics
from .population import Population

__all__ = ["Scenario", "compare", "run_scenarios"]


@dataclass(frozen=True)
class Scenario:
    """One arm of a comparison.

    Parameters
    ----------
    name : str
        Label in the ``scenario`` dimension and in tables.
    model : Model, str or Path
        Model (or bundled name / file).
    regimen : Regimen or Dose
    population : Population, optional
        Default: one typical 70 kg subject.
    times : array_like, optional
        Output times (h); default every 5 min to 24 h after the last dose.
    """

    name: str
    model: Model | str | Path
    regimen: Regimen | Dose
    population: Population | None = None
    times: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"scenario name must be a non-empty string; got {self.name!r}"
            )
        object.__setattr__(self, "model", load_model(self.model))
        if isinstance(self.regimen, Dose):
            object.__setattr__(self, "regimen", Regimen([self.regimen]))
        if not isinstance(self.regimen, Regimen):
            raise TypeError(
                f"regimen must be a Regimen or Dose; got {type(self.regimen).__name__}"
            )

    def run(self, **kw) -> xr.Dataset:
        """Simulate this scenario: :func:`ketasim.simulate` on its model, regimen,
        population and times; keyword arguments (``solver=ks.ODE(...)``,
        ``output=ks.Trajectories(...)``, ``errors``, ``chunks``, ``progress``) go
        to it."""
        from .simulate import simulate

        return simulate(
            self.model, self.regimen, population=self.population, times=self.times, **kw
        )


def run_scenarios(scenarios, *, progress: bool | str = "auto", **kw) -> xr.Dataset:
    """Run each scenario; return one Dataset with a ``scenario`` dimension.

    Scenarios may use different models, routes and analytes (missing analytes are
    NaN) and different doses (``dose`` is padded with NaN); output times must agree
    (give each the same ``times``) so the curves share one axis. Keyword arguments
    (``solver=ks.ODE(rtol=...)``, ``output=ks.Trajectories(auc=True)``,
    ``errors``, ...) go to :func:`simulate`; the output must be curves
    (:class:`~ketasim.Trajectories`, the default).

    Examples
    --------
    >>> import ketasim as ks
    >>> t = ks.grid("2 d", "10 min")
    >>> ds = ks.run_scenarios([
    ...     ks.Scenario("iv 35 mg", "domino", ks.Dose.bolus("35 mg"), times=t),
    ...     ks.Scenario("nasal 56 mg", "domino",
    ...                 ks.Dose.bolus("56 mg", route="intranasal"), times=t)])
    >>> ds.concentration.dims
    ('scenario', 'subject', 'analyte', 'time')
    """
    scenarios = list(scenarios)
    names = _check_scenarios(scenarios, kw)
    parts = _run_each(scenarios, names, progress, kw)
    parts, differ = _per_subject_coordinates(parts)
    parts, weights, mw_attrs = _split_molecular_weights(parts)
    out = _concat(parts)
    out = out.assign_coords(scenario=("scenario", names)).set_coords(differ)
    if len(parts) > 1 and weights:
        out.coords["molecular_weight"] = _molecular_weights(
            out, scenarios, weights, mw_attrs
        )
    # provenance differs per scenario: keep it as coordinates along `scenario`
    keys = dict.fromkeys(k for _, a in parts for k in a)
    for k in keys:
        vals = [a.get(k, "") for _, a in parts]
        out.coords[k] = ("scenario", [str(v) for v in vals])
    out.attrs["scenarios"] = "; ".join(
        f"{s.name}: model {s.model.id}, {len(s.regimen)} doses, "
        f"{s.population.n if s.population else 1} subjects"
        for s in scenarios
    )
    return out


def _check_scenarios(scenarios: list, kw: dict) -> list[str]:
    """At least one scenario, curves as the output, unique names."""
    if not scenarios:
        raise ValueError("run_scenarios needs at least one Scenario")
    if isinstance(kw.get("output"), Metrics):
        raise ValueError(
            "run_scenarios combines concentration curves; for "
            "metrics-only runs call ks.simulate(..., "
            "output=ks.Metrics(...)) for each scenario (sc.model, "
            "sc.regimen, sc.population)"
        )
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique; got {names}")
    return names


def _run_each(scenarios: list, names: list[str], progress, kw: dict) -> list:
    """(Dataset, its provenance attrs) per scenario, on one time axis, without the
    individual parameters (their names differ between models)."""
    parts = []
    times = None
    for sc in scenarios:
        if not isinstance(sc, Scenario):
            raise TypeError(f"expected Scenario objects; got {type(sc).__name__}")
        ds = sc.run(progress=progress, **kw)
        if times is None:
            times = ds.time.values
        elif not np.array_equal(times, ds.time.values):
            raise ValueError(
                f"scenario {sc.name!r} has different output times from "
                f"{names[0]!r}; give every scenario the same times="
            )
        ds = ds.drop_vars(
            [
                v
                for v in ("parameters", "parameter", "parameter_unit", "occasion")
                if v in ds.variables
            ]
        )
        per_scenario = {k: v for k, v in ds.attrs.items() if k != "ketasim_version"}
        ds.attrs = {"ketasim_version": ds.attrs["ketasim_version"]}
        parts.append((ds, per_scenario))
    return parts


def _per_subject_coordinates(parts: list) -> tuple[list, list[str]]:
    """Per-subject coordinates (covariates) that differ between scenarios, e.g.
    different Populations, become variables (they get a scenario dimension);
    concat would keep the first scenario's values for all of them."""
    per_subject = dict.fromkeys(
        k
        for p, _ in parts
        for k, v in p.coords.items()
        if k != "subject" and v.dims == ("subject",)
    )
    first = parts[0][0]
    same_subjects = all(
        np.array_equal(p.subject.values, first.subject.values) for p, _ in parts
    )
    differ = [
        k
        for k in per_subject
        if not same_subjects
        or not all(
            k in p.coords
            and k in first.coords
            and p[k].shape == first[k].shape
            and _equal(p[k].values, first[k].values)
            for p, _ in parts
        )
    ]
    if differ:
        parts = [
            (p.reset_coords([k for k in differ if k in p.coords]), a) for p, a in parts
        ]
    return parts, differ


def _split_molecular_weights(parts: list) -> tuple[list, dict, dict]:
    """Molecular weights per analyte over all scenarios, taken off the parts when
    there are several (concat would keep the first scenario's, NaN for the
    analytes only other scenarios have)."""
    first = parts[0][0]
    mw_attrs = (
        first.molecular_weight.attrs if "molecular_weight" in first.coords else {}
    )
    weights: dict[str, set] = {}
    for p, _ in parts:
        if "molecular_weight" in p.coords:
            for a, w in zip(p.analyte.values, p.molecular_weight.values, strict=True):
                weights.setdefault(str(a), set()).add(float(w))
    if len(parts) > 1 and weights:
        parts = [
            (p.drop_vars("molecular_weight", errors="ignore"), a) for p, a in parts
        ]
    return parts, weights, mw_attrs


def _concat(parts: list) -> xr.Dataset:
    """One Dataset along a new ``scenario`` dimension."""
    if len(parts) == 1:  # no copy of a possibly large result
        out = parts[0][0].expand_dims("scenario")
        for name in ("concentration", "auc", "amount", "observed"):
            if name in out:
                out[name].attrs = dict(parts[0][0][name].attrs)
        return out
    return xr.concat(
        [p[0] for p in parts],
        dim="scenario",
        join="outer",
        combine_attrs="drop_conflicts",
        coords="minimal",
        compat="override",
        data_vars="all",
    )


def _molecular_weights(out, scenarios: list, weights: dict, mw_attrs: dict):
    """The molecular_weight coordinate on the union of the analytes: per analyte,
    or per (scenario, analyte) when one analyte has two weights."""
    if any(len(w) > 1 for w in weights.values()):  # one analyte, two weights
        return (
            ("scenario", "analyte"),
            [
                [
                    float(sc.model.analytes[sc.model.analyte_names.index(str(a))].mw)
                    if str(a) in sc.model.analyte_names
                    else np.nan
                    for a in out.analyte.values
                ]
                for sc in scenarios
            ],
            mw_attrs,
        )
    return (
        "analyte",
        [
            next(iter(weights[str(a)])) if str(a) in weights else np.nan
            for a in out.analyte.values
        ],
        mw_attrs,
    )


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    try:
        return np.array_equal(a, b, equal_nan=True)
    except TypeError:  # strings: NaN does not arise
        return np.array_equal(a, b)


def compare(
    ds: xr.Dataset,
    *,
    per: str = "course",
    window: int = 0,
    analyte: str | None = None,
    above: float | str | None = None,
    q=(5, 50, 95),
    unit: str = "ng/mL",
) -> ComparisonTable:
    """Scenario × metric table: median [P5, P95] over subjects.

    Metrics: Cmax, AUC, Tmax over the whole course (``per="course"``), or of one
    session or dose (``per="session"`` / ``"dose"``): ``window`` picks which, 0 for
    the first (default), -1 for each scenario's last; plus the time above
    ``above`` (ng/mL, or a string with its unit, as in :func:`ketasim.metrics`).
    ``unit``: "ng/mL" (Cmax in ng/mL, AUC in ng·h/mL) or "nmol/L" (nmol/L,
    nmol·h/L). The table's title names the window; each column its unit.

    Subjects whose solve failed (``status`` != 0, kept with ``errors="keep"``)
    are left out, and a line under the table says how many ("2 of 1000 subjects
    failed (status != 0) and are left out ..."; also ``to_dataset().attrs
    ["left_out"]``). A window that starts at or after the last output time, or
    has no Cmax for any subject, is refused (it has no output time).

    A result of ``simulate(..., output=ks.Metrics())`` holds metrics per dose only:
    compare it with ``per="dose"`` (its time above is fixed by simulate, so
    ``above`` is refused).
    """
    if "scenario" not in ds.dims:
        ds = ds.expand_dims(scenario=["scenario"])
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(
            f"window must be a whole number (0 = first, -1 = last); got {window!r}"
        )
    if per == "course" and window != 0:
        raise ValueError(
            f"window={window} picks a dose or a session; give "
            f"per='dose' or per='session' with it"
        )
    if analyte is None:
        analyte = str(ds.analyte.values[0])
    analyte = _analytes.resolve(analyte, ds.analyte.values, "these results")
    streamed = "concentration" not in ds and "cmax" in ds  # output=Metrics()
    if streamed:
        _check_streamed(ds, per, above)
    rows = []
    notes = []
    for s in ds.scenario.values:
        one = ds.sel(scenario=s)
        if "dose" in one.dims:
            one = one.isel(dose=np.flatnonzero(np.isfinite(one.dose_time.values)))
            one = one.assign(dose_session=one.dose_session.astype(np.int64))
        if streamed:
            m = _streamed_metrics(one, unit).sel(analyte=analyte)
        else:
            have = present_analytes(one)
            if analyte not in have:
                raise ValueError(
                    f"scenario {str(s)!r} has no analyte {analyte!r} (it "
                    f"has {', '.join(map(repr, have))}); compare "
                    f"scenarios of one analyte at a time with "
                    f"analyte=..."
                )
            m = metrics(one, per, above=above, unit=unit).sel(analyte=analyte)
        if per == "course":
            m = m.isel(course=0)
        else:
            count = m.sizes[per]
            if not -count <= window < count:
                raise ValueError(
                    f"window={window} but scenario {str(s)!r} has "
                    f"{count} {per}s (window 0 to {count - 1}, or "
                    f"-1 for the last)"
                )
            m = m.isel({per: window})
            start = float(m[f"{per}_start"])
            if "time" in one.coords and start >= one.time.values[-1]:
                raise ValueError(
                    f"window={window} picks {per} {window % count + 1} of "
                    f"{count} in scenario {str(s)!r}, which starts at {start:g} h, "
                    f"at or after the last output time ({one.time.values[-1]:g} "
                    f"h): it has no output time, so no metric. Extend the output "
                    f"times (times=) past it, or pick an earlier window"
                )
        if not np.isfinite(m.cmax.values).any():
            what = (
                "over the course"
                if per == "course"
                else f"in the {per} of window={window}"
            )
            raise ValueError(
                f"scenario {str(s)!r} has no Cmax {what} for any subject: no output "
                f"time falls in it, or every subject failed (status != 0). Give "
                f"output times inside it (times=), or check the status"
            )
        note = failed_note(m)
        if note:
            notes.append(f"{s}: {note}" if ds.sizes["scenario"] > 1 else note)
        rows.append((str(s), m))
    cols = [("Cmax", "cmax"), ("Tmax", "tmax"), ("AUC", "auc")]
    if above is not None:  # the level as metrics read it ("time above 50 ng/mL")
        level = rows[0][1].time_above.attrs["long_name"].removeprefix("time above ")
        cols.append((f"time > {level}", "time_above"))
    label = (
        "over the course"
        if per == "course"
        else f"{per} {window + 1}"
        if window >= 0
        else f"last {per}"
        if window == -1
        else f"{per} {window} (-1 is the last)"
    )
    return ComparisonTable(rows, cols, q, analyte, label, notes)


def _check_streamed(ds: xr.Dataset, per: str, above) -> None:
    """compare on a result of simulate(output=Metrics()): it holds metrics per dose
    only, with its time above computed (or not) by simulate."""
    if per != "dose":
        raise ValueError(
            f"this result is from simulate(output=ks.Metrics()), which "
            f"keeps metrics per dose only; compare it with per='dose' "
            f"(got per={per!r}), or simulate the curves "
            f"(output=ks.Trajectories(), the default) for metrics per "
            f"session or course"
        )
    if above is not None:
        raise ValueError(
            f"this result is from simulate(output=ks.Metrics()): its "
            f"levels were fixed when it was simulated, so compare "
            f"cannot compute the time above {above!r}; simulate with "
            f"output=ks.Metrics(above={above!r}) instead"
        )


def _streamed_metrics(one: xr.Dataset, unit: str) -> xr.Dataset:
    """The per-dose metrics of a ks.Metrics() result as :func:`metrics` gives
    them: failed subjects NaN, ``status`` attached, in ``unit``."""
    from .metrics import UNITS, UnitError, _molecular_weights

    if not isinstance(unit, str) or unit not in UNITS:
        raise UnitError(
            f"unit must be 'ng/mL' or 'nmol/L' (the unit of Cmax; AUC "
            f"follows); got {unit!r}"
        )
    m = one[["cmax", "tmax", "auc"]].copy(deep=True)
    m.coords["dose_start"] = ("dose", one.dose_time.values, {"units": "h"})
    if "status" in one:
        status = np.asarray(one.status.values, dtype=float)
        failed = np.isfinite(status) & (status != 0)
        for name in m.data_vars:
            m[name].values[failed] = np.nan
        m.coords["status"] = ("subject", status)
    if unit != "ng/mL":
        mw = _molecular_weights(one.assign(concentration=one.cmax), f"unit={unit!r}")
        for name in ("cmax", "auc"):
            m[name].values[...] = m[name].values / mw[None, :, None] * 1000.0
            m[name].attrs["units"] = unit if name == "cmax" else UNITS[unit]
    return m


def _fmt(v: float) -> str:
    """Three significant digits without scientific notation in the usual range."""
    if not np.isfinite(v):
        return "nan"
    if v == 0 or 1e-3 <= abs(v) < 1e7:
        digits = max(0, 2 - int(np.floor(np.log10(abs(v))))) if v else 0
        return f"{round(v, digits):.{digits}f}"
    return f"{v:.3g}"


class ComparisonTable:
    """The result of :func:`compare`: prints as text, renders as HTML in notebooks,
    and converts to an xarray Dataset (``.to_dataset()``)."""

    def __init__(self, rows, cols, q, analyte, label, notes=()):
        self.q = q
        # subjects left out (failed solves), printed under the table
        self.notes = list(notes)
        self.analyte = analyte
        self.label = label  # which window: "over the course", "session 1", ...
        self.columns = [
            f"{label} ({rows[0][1][var].attrs['units']})" for label, var in cols
        ]
        self.data = {}
        for name, m in rows:
            self.data[name] = [np.nanpercentile(m[var].values, q) for _, var in cols]

    def to_dataset(self) -> xr.Dataset:
        names = list(self.data)
        arr = np.array([self.data[n] for n in names])  # (scenario, metric, q)
        out = xr.Dataset(
            {"value": (("scenario", "metric", "percentile"), arr)},
            coords={
                "scenario": names,
                "metric": self.columns,
                "percentile": list(self.q),
            },
        )
        if self.notes:
            out.attrs["left_out"] = "; ".join(self.notes)
        return out

    def _cells(self):
        for name, vals in self.data.items():
            yield name, [f"{_fmt(v[1])} [{_fmt(v[0])}, {_fmt(v[2])}]" for v in vals]

    def __str__(self) -> str:
        head = ["scenario"] + self.columns
        body = [[n] + c for n, c in self._cells()]
        w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{x}}}" for x in w)
        lines = [
            f"{self.analyte}, {self.label}: median [P{self.q[0]}, "
            f"P{self.q[2]}] over patients",
            fmt.format(*head),
            fmt.format(*["-" * x for x in w]),
        ]
        lines += [fmt.format(*r) for r in body]
        lines += self.notes
        return "\n".join(line.rstrip() for line in lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ["scenario"] + self.columns)
        body = "".join(
            "<tr><td>" + n + "</td>" + "".join(f"<td>{c}</td>" for c in cs) + "</tr>"
            for n, cs in self._cells()
        )
        return (
            f"<p>{self.analyte}, {self.label}: median [P{self.q[0]}, "
            f"P{self.q[2]}]</p><table><tr>{head}</tr>{body}</table>"
            + "".join(f"<p>{n}</p>" for n in self.notes)
        )
