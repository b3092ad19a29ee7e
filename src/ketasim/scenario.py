"""Scenarios: model + regimen + population + output times, run side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from . import _analytes
from .dosing import Dose, Regimen
from .metrics import check_percentiles, failed_note, metrics, present_analytes
from .model import Model
from .modelfile import load_model
from .population import Population
from .results import ScenarioResults

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

        own = sorted(set(kw) & {"model", "regimen", "population", "times"})
        if own:
            raise TypeError(
                f"{', '.join(own)} belong to each Scenario(name, model, regimen, "
                f"population=..., times=...), not to run()/run_scenarios(); got "
                f"{', '.join(f'{k}=' for k in own)} for scenario {self.name!r}"
            )
        return simulate(
            self.model, self.regimen, population=self.population, times=self.times, **kw
        )


def run_scenarios(scenarios, *, progress: bool | str = "auto", **kw) -> ScenarioResults:
    """Run each scenario; return their results side by side, by name.

    Each scenario's result is its :func:`simulate` result as it is (its own
    analytes, doses, patients and output times), with ``attrs["scenario"]`` its
    name, in a :class:`~ketasim.ScenarioResults`: nothing is padded to the other
    scenarios' shapes, so a comparison costs what its simulations cost.
    Scenarios may use different models, drugs, routes, populations and output
    times. Keyword arguments (``solver=ks.ODE(rtol=...)``,
    ``output=ks.Trajectories(auc=True)`` or ``ks.Metrics(...)``, ``errors``,
    ``chunks``, ...) go to :func:`simulate` for every scenario.

    :func:`compare` tabulates the results (each scenario's own analyte, or one
    named), :func:`ketasim.metrics` gives their metrics per scenario, the plots
    draw them, and :func:`ketasim.save` writes them to one compressed file.

    Examples
    --------
    >>> import ketasim as ks
    >>> t = ks.grid("2 d", "10 min")
    >>> res = ks.run_scenarios([
    ...     ks.Scenario("iv 35 mg", "domino", ks.Dose.bolus("35 mg"), times=t),
    ...     ks.Scenario("nasal 56 mg", "domino",
    ...                 ks.Dose.bolus("56 mg", route="intranasal"), times=t)])
    >>> list(res)
    ['iv 35 mg', 'nasal 56 mg']
    >>> res["nasal 56 mg"].concentration.dims
    ('subject', 'analyte', 'time')
    """
    scenarios = list(scenarios)
    if not scenarios:
        raise ValueError("run_scenarios needs at least one Scenario")
    for sc in scenarios:
        if not isinstance(sc, Scenario):
            raise TypeError(f"expected Scenario objects; got {type(sc).__name__}")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique; got {names}")
    out = {}
    for sc in scenarios:
        ds = sc.run(progress=progress, **kw)
        ds.attrs["scenario"] = sc.name
        out[sc.name] = ds
    return ScenarioResults(out)


def compare(
    ds: xr.Dataset | ScenarioResults,
    *,
    per: str = "course",
    window: int = 0,
    analyte: str | None = None,
    above: float | str | None = None,
    q=(5, 50, 95),
    unit: str = "ng/mL",
) -> ComparisonTable:
    """Scenario × metric table: median [P5, P95] over subjects.

    ``ds``: the results of :func:`run_scenarios`, a :func:`simulate` result (one
    row, named by its model id), or a Dataset with a ``scenario`` dimension.

    Metrics: Cmax, AUC, Tmax over the whole course (``per="course"``), or of one
    session or dose (``per="session"`` / ``"dose"``): ``window`` picks which, 0 for
    the first (default), -1 for each scenario's last; plus the time above
    ``above`` (ng/mL, or a string with its unit, as in :func:`ketasim.metrics`).
    ``unit``: "ng/mL" (Cmax in ng/mL, AUC in ng·h/mL) or "nmol/L" (nmol/L,
    nmol·h/L). The table's title names the window; each column its unit.
    ``q``: the (low, 50, high) percentiles of the band, default (5, 50, 95).

    ``analyte``: by default each scenario's own first analyte (its model's parent
    drug: ketamine for a racemic ketamine model, esketamine for an esketamine
    one), so scenarios of different drugs sit side by side; when they differ the
    table has an ``analyte`` column. Name one (``analyte="norketamine"``) to
    compare that analyte in every scenario (each must have it).

    Subjects whose solve failed (``status`` != 0, kept with ``errors="keep"``)
    are left out, and a line under the table says how many ("2 of 1000 subjects
    failed (status != 0) and are left out ..."; also ``to_dataset().attrs
    ["left_out"]``). A window that starts at or after the last output time, or
    has no Cmax for any subject, is refused (it has no output time).

    A result of ``simulate(..., output=ks.Metrics())`` holds metrics per dose only:
    compare it with ``per="dose"`` (its time above is fixed by simulate, so
    ``above`` is refused).
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(
            f"window must be a whole number (0 = first, -1 = last); got {window!r}"
        )
    if per == "course" and window != 0:
        raise ValueError(
            f"window={window} picks a dose or a session; give "
            f"per='dose' or per='session' with it"
        )
    check_percentiles(q, band=True)  # the title says "median [P<q0>, P<q2>]"
    parts = _parts(ds)
    _check_analyte(parts, analyte)
    rows = []
    notes = []
    for s, one in parts:
        m, an = _row(s, one, per, window, analyte, above, unit)
        note = failed_note(m)
        if note:
            notes.append(f"{s}: {note}" if len(parts) > 1 else note)
        rows.append((s, m, an))
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
    return ComparisonTable(rows, cols, q, label, notes)


def _parts(ds) -> list[tuple[str, xr.Dataset]]:
    """(name, Dataset) per scenario, each without other scenarios' padding."""
    if isinstance(ds, ScenarioResults):
        return list(ds.items())
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"compare takes the results of ks.run_scenarios or a ks.simulate "
            f"result; got {type(ds).__name__}"
        )
    if "scenario" not in ds.dims:
        name = (
            str(ds.scenario.values)
            if "scenario" in ds.coords
            else str(ds.attrs.get("scenario", ds.attrs.get("model_id", "scenario")))
        )
        return [(name, ds)]
    parts = []
    for s in ds.scenario.values:  # a padded Dataset with a scenario dimension
        one = ds.sel(scenario=s)
        if "dose" in one.dims:
            one = one.isel(dose=np.flatnonzero(np.isfinite(one.dose_time.values)))
            one = one.assign(dose_session=one.dose_session.astype(np.int64))
        parts.append((str(s), one))
    return parts


def _present(one: xr.Dataset) -> list[str]:
    """The analytes a scenario has values for."""
    if "concentration" not in one and "cmax" in one:  # output=Metrics()
        return [str(a) for a in one.analyte.values]
    return present_analytes(one)


def _check_analyte(parts: list, analyte) -> None:
    """A named analyte must be a string some scenario has."""
    if analyte is None:
        return
    if not isinstance(analyte, str):
        raise TypeError(
            f"analyte must be an analyte name (str) or None (each scenario's "
            f"own); got {type(analyte).__name__} {analyte!r}"
        )
    have = dict.fromkeys(a for _, one in parts for a in _present(one))
    _analytes.resolve(analyte, have, "these results")


def _row(s: str, one, per: str, window: int, analyte, above, unit: str):
    """The metrics of scenario ``s`` in the window compared, and its analyte."""
    streamed = "concentration" not in one and "cmax" in one  # output=Metrics()
    if streamed:
        _check_streamed(one, per, above)
    have = _present(one)
    an = have[0]
    if analyte is not None:
        try:
            an = _analytes.resolve(analyte, have, f"scenario {s!r}")
        except ValueError:
            raise ValueError(
                f"scenario {s!r} has no analyte {analyte!r} (it has "
                f"{', '.join(map(repr, have))}); leave analyte= out to compare "
                f"each scenario's own analyte, or compare the scenarios that "
                f"have it"
            ) from None
    if streamed:
        m = _streamed_metrics(one, unit).sel(analyte=an)
    else:
        m = metrics(one, per, above=above, unit=unit).sel(analyte=an)
    if per == "course":
        m = m.isel(course=0)
    else:
        count = m.sizes[per]
        if not -count <= window < count:
            raise ValueError(
                f"window={window} but scenario {s!r} has "
                f"{count} {per}s (window 0 to {count - 1}, or "
                f"-1 for the last)"
            )
        m = m.isel({per: window})
        start = float(m[f"{per}_start"])
        if "time" in one.coords and start >= one.time.values[-1]:
            raise ValueError(
                f"window={window} picks {per} {window % count + 1} of "
                f"{count} in scenario {s!r}, which starts at {start:g} h, "
                f"at or after the last output time ({one.time.values[-1]:g} "
                f"h): it has no output time, so no metric. Extend the output "
                f"times (times=) past it, or pick an earlier window"
            )
    if not np.isfinite(m.cmax.values).any():
        what = (
            "over the course" if per == "course" else f"in the {per} of window={window}"
        )
        raise ValueError(
            f"scenario {s!r} has no Cmax {what} for any subject: no output "
            f"time falls in it, or every subject failed (status != 0). Give "
            f"output times inside it (times=), or check the status"
        )
    return m, an


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
    from .metrics import UNITS, UnitError, _to_molar

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
        _to_molar(one.assign(concentration=one.cmax), m, unit)
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

    def __init__(self, rows, cols, q, label, notes=()):
        self.q = q
        # subjects left out (failed solves), printed under the table
        self.notes = list(notes)
        #: scenario name -> the analyte its row compares
        self.analytes = {name: an for name, _, an in rows}
        one = set(self.analytes.values())
        #: the analyte of every row, or None when the scenarios' analytes differ
        self.analyte = next(iter(one)) if len(one) == 1 else None
        self.label = label  # which window: "over the course", "session 1", ...
        self.columns = [
            f"{label} ({rows[0][1][var].attrs['units']})" for label, var in cols
        ]
        #: the unit of each column (metric)
        self.units = [str(rows[0][1][var].attrs["units"]) for _, var in cols]
        self.data = {}
        for name, m, _ in rows:
            self.data[name] = [np.nanpercentile(m[var].values, q) for _, var in cols]

    def to_dataset(self) -> xr.Dataset:
        names = list(self.data)
        arr = np.array([self.data[n] for n in names])  # (scenario, metric, q)
        out = xr.Dataset(
            {"value": (("scenario", "metric", "percentile"), arr)},
            coords={
                "scenario": names,
                "analyte": ("scenario", [self.analytes[n] for n in names]),
                "metric": self.columns,
                "metric_unit": ("metric", self.units),
                "percentile": ("percentile", list(self.q), {"units": "%"}),
            },
        )
        # one unit per metric: a single units label would be false for the rest.
        # The package's convention for an array whose unit varies along a
        # dimension (as simulate's parameters and dose_amount): no units
        # attribute (CF: units must be one parseable unit), long_name names the
        # per-element unit coordinate
        if len(set(self.units)) == 1:
            out["value"].attrs["units"] = self.units[0]
        else:
            out["value"].attrs["long_name"] = "metric value (units: see metric_unit)"
        if self.notes:
            out.attrs["left_out"] = "; ".join(self.notes)
        return out

    def _title(self) -> str:
        what = self.analyte or "each scenario's own analyte"
        return f"{what}, {self.label}: median [P{self.q[0]}, P{self.q[2]}]"

    def _cells(self):
        for name, vals in self.data.items():
            cells = [f"{_fmt(v[1])} [{_fmt(v[0])}, {_fmt(v[2])}]" for v in vals]
            if self.analyte is None:
                cells.insert(0, self.analytes[name])
            yield name, cells

    def _head(self) -> list[str]:
        return (
            ["scenario"]
            + (["analyte"] if self.analyte is None else [])
            + (self.columns)
        )

    def __str__(self) -> str:
        head = self._head()
        body = [[n] + c for n, c in self._cells()]
        w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{x}}}" for x in w)
        lines = [
            f"{self._title()} over patients",
            fmt.format(*head),
            fmt.format(*["-" * x for x in w]),
        ]
        lines += [fmt.format(*r) for r in body]
        lines += self.notes
        return "\n".join(line.rstrip() for line in lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self._head())
        body = "".join(
            "<tr><td>" + n + "</td>" + "".join(f"<td>{c}</td>" for c in cs) + "</tr>"
            for n, cs in self._cells()
        )
        return f"<p>{self._title()}</p><table><tr>{head}</tr>{body}</table>" + "".join(
            f"<p>{n}</p>" for n in self.notes
        )
