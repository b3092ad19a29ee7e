"""Validation of a model against published observations (``ketasim validate``).

Each bundled model has a sibling data file ``models/observations/<id>.toml`` listing
the published observations it should reproduce: the study, the regimen, the
population, the statistic (mean, geometric mean, median or a typical value), the
value with its unit, where in the paper it was read, and a tolerance with its
justification. :func:`validate` simulates each observation for the typical subject
and, when the model has inter-individual variability, for a virtual population
with the observation's covariates; it compares the paper's statistic with the same
statistic of the simulation and says pass or fail.

Observation file schema (``schema_version = 1``)::

    schema_version = 1
    model = "clements_nimmo_1981"         # the model file's id
    reproduces = "..."                     # what the model reproduces (summary)
    cannot = "..."                         # what it cannot (summary)

    [[references]]                         # the sources of the observations
    key = "rolan2014"
    citation = "Rolan P, ... Br J Clin Pharmacol 2014;77(6):1011-1016."
    doi = "10.1111/bcp.12264"              # optional

    [[observations]]
    id = "rolan2014_sl_tmax"               # unique in the file
    study = "Rolan 2014: 8 healthy men"
    reference = "rolan2014"                # a references key
    source = "abstract: median Tmax 0.75 h (range 0.25-1.0)"
    doses = [{amount = "25 mg", route = "sublingual"}]   # Dose arguments; time
                                           # and duration as "40 min", "6 h"
    covariates = {weight = 70}             # the simulated subjects' covariates
                                           # (others: the model's reference values)
    analyte = "ketamine"
    metric = "tmax"                        # see METRICS
    statistic = "median"                   # typical | mean | geometric mean (geomean)
                                           # | median | percentile (with
                                           # percentile = 95, in (0, 100)) | the
                                           # spread across subjects: sd (in
                                           # the metric's unit), geometric sd
                                           # (unit "1", >= 1)
    value = 0.75
    unit = "h"
    n = 8                                  # optional: subjects in the study
    spread = "range 0.25-1.0 h"            # optional: the paper's spread, as text
    tolerance = {range = [0.25, 1.0]}      # {range = [lo, hi]} in `unit`,
                                           # {fold = f} (obs/f .. obs*f) or
                                           # {relative = r} (obs(1-r) .. obs(1+r))
    tolerance_reason = "..."               # why this tolerance (required)
    role = "calibration"                   # independent | self | calibration
    known_limitation = "..."               # optional: expected to fail, and why
    relative_to = {covariates = {weight = 75}}  # optional: a ratio (unit "1"), the
                                           # metric over the same metric with these
                                           # of doses / covariates / window replaced,
                                           # per subject (same seed, same subjects)

A ``relative_to`` observation checks a published ratio: dose proportionality (AUC
of 84 mg over AUC of 28 mg), accumulation (Cmax in the last dosing interval over
Cmax in the first, ``window`` replaced), a covariate effect (exposure at 55 kg over
exposure at 75 kg: a geometric mean ratio). ``sd`` and ``geometric sd`` compare the
spread of the metric across the virtual population with the spread the paper
reports (SD; geometric SD, the exp of the SD of the logs); a model without
inter-individual variability predicts no spread (0 and 1).

Roles: ``independent`` observations come from a study the model was not fitted to;
``self`` ones are the model's own paper's summary statistics (they catch
transcription and unit errors, not model error); ``calibration`` ones were used to
choose a parameter in the model file (a reproduced calibration target is not
evidence). An observation with ``known_limitation`` is reported ``known-fail``
when it fails (and ``fixed`` when it passes). A covariate ratio the model cannot
respond to (the ratio is exactly 1 for every subject: no effect of the replaced
covariates on the metric, or none it resolves, as a Tmax on the time grid) is
``uninformative`` when 1 is within its tolerance: it would pass
whatever the published value, so it is not counted as reproduced. ``validate``
passes when no observation has status ``fail``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import _analytes
from .model import Model
from .modelfile import ModelFileError, list_models, load_model, models_dir
from .units import parse_unit

__all__ = [
    "METRICS",
    "Observation",
    "format_summary",
    "format_table",
    "load_observations",
    "validate",
]

#: metric -> (canonical unit, what it is)
METRICS: dict[str, tuple[str, str]] = {
    "concentration": ("ng/mL", "concentration at `time`"),
    "cmax": ("ng/mL", "peak concentration (within `window` if given)"),
    "tmax": ("h", "time of the peak after t = 0 (within `window` if given)"),
    "auc": (
        "ng*h/mL",
        "area under the curve over `window` (default [0, inf]; inf extrapolates "
        "the terminal log-linear phase)",
    ),
    "clearance": ("L/h", "dose / AUC(0-inf) after an intravenous regimen"),
    "vss": ("L", "volume at steady state, CL x (AUMC/AUC - infusion duration/2)"),
    "half_life": ("h", "terminal half-life, log-linear fit over `window`"),
    "bioavailability": (
        "1",
        "dose-normalised AUC(0-inf) of `doses` over that of `reference_doses`",
    ),
}
STATISTICS = (
    "typical",
    "mean",
    "geometric mean",
    "median",
    "percentile",
    "sd",
    "geometric sd",
)
#: statistics of the spread across subjects (not of the metric's location)
SPREAD_STATISTICS = ("sd", "geometric sd")
#: the statuses of a row of :func:`validate`, in the order they are counted
STATUSES = ("pass", "fail", "known-fail", "fixed", "uninformative")
#: other spellings of a statistic
_STATISTIC_ALIASES = {
    "geomean": "geometric mean",
    "geometric_mean": "geometric mean",
    "gsd": "geometric sd",
    "geometric_sd": "geometric sd",
}
#: what ``relative_to`` may replace
_RELATIVE_KEYS = ("doses", "covariates", "window")
ROLES = ("independent", "self", "calibration")
#: subjects in the population simulated for observations of a model with IIV
POPULATION_N = 200
#: hours simulated for metrics needing AUC to infinity unless `horizon` is given
DEFAULT_HORIZON_H = 72.0
_AUC_UNITS = {"ng*h/mL": 1.0, "ug*h/L": 1.0, "µg*h/L": 1.0, "ng*min/mL": 1 / 60}


class ObservationError(ModelFileError):
    """An observation file is malformed (names the file and key)."""


@dataclass(frozen=True)
class Observation:
    """One published observation a model should reproduce (see module docs)."""

    id: str
    study: str
    reference: str
    source: str
    doses: tuple[dict, ...]
    analyte: str
    metric: str
    statistic: str
    value: float
    unit: str
    tolerance: dict
    tolerance_reason: str
    role: str
    covariates: dict = field(default_factory=dict)
    time: float | None = None
    window: tuple[float, float] | None = None
    reference_doses: tuple[dict, ...] = ()
    horizon: float | None = None
    n: int | None = None
    percentile: float | None = None
    spread: str = ""
    population: str = ""
    known_limitation: str = ""
    relative_to: dict | None = None

    def bounds(self) -> tuple[float, float]:
        """Accepted interval for the prediction, in the observation's unit."""
        tol = self.tolerance
        if "range" in tol:
            lo, hi = tol["range"]
            return float(lo), float(hi)
        if "fold" in tol:
            return self.value / tol["fold"], self.value * tol["fold"]
        r = tol["relative"]
        return self.value * (1 - r), self.value * (1 + r)


# ---- reading ----------------------------------------------------------------------


def observations_dir() -> Path:
    """Folder of the observation files (``models/observations``)."""
    return models_dir() / "observations"


def _hours(value: Any, file: Path, key: str, *, inf: bool = False) -> float:
    """A time as hours, finite and >= 0: a number (h) or a string with a unit;
    ``"inf"`` only where ``inf`` (the end of an AUC window)."""
    if inf and isinstance(value, str) and value.strip() == "inf":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ObservationError(file, key, f"must be a time; got {value!r}")
    if isinstance(value, str):
        try:
            num, unit = value.split()
            u = parse_unit(unit)
            h = float(num) * u.factor
        except ValueError as exc:
            raise ObservationError(
                file, key, f"must be hours or e.g. '40 min'; got {value!r}"
            ) from exc
        if u.dimension != "time" or u.per_kg:
            raise ObservationError(file, key, f"must be a time; got {value!r}")
    else:
        h = float(value)
    if math.isnan(h) or h < 0 or (h == math.inf and not inf):
        end = " (or 'inf')" if inf else ""
        raise ObservationError(
            file, key, f"must be a finite time >= 0 h{end}; got {value!r}"
        )
    return h


_REQUIRED = (
    "id",
    "study",
    "reference",
    "source",
    "doses",
    "analyte",
    "metric",
    "statistic",
    "value",
    "unit",
    "tolerance",
    "tolerance_reason",
    "role",
)
_OPTIONAL = (
    "covariates",
    "time",
    "window",
    "reference_doses",
    "horizon",
    "n",
    "percentile",
    "spread",
    "population",
    "known_limitation",
    "relative_to",
)


def _number(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def _check_tolerance(tol: dict, file: Path, key: str) -> None:
    """A range [lo, hi] of numbers with lo < hi, a fold > 1 or a relative in (0, 1)."""
    if "range" in tol:
        r = tol["range"]
        if not (
            isinstance(r, list) and len(r) == 2 and all(map(_number, r)) and r[0] < r[1]
        ):
            raise ObservationError(
                file, key, f"range must be two numbers [lo, hi] with lo < hi; got {r!r}"
            )
    if "fold" in tol and not (_number(tol["fold"]) and tol["fold"] > 1):
        raise ObservationError(
            file, key, f"fold must be > 1 (a number); got {tol['fold']!r}"
        )
    if "relative" in tol and not (_number(tol["relative"]) and 0 < tol["relative"] < 1):
        raise ObservationError(
            file, key, f"relative must be in (0, 1) (a number); got {tol['relative']!r}"
        )


def _window(w, file: Path, key: str) -> tuple[float, float]:
    """``[start, end]`` as hours (end may be ``"inf"``), start < end."""
    if not isinstance(w, list) or len(w) != 2:
        raise ObservationError(file, key, f"must be two times [start, end]; got {w!r}")
    out = (_hours(w[0], file, f"{key}[0]"), _hours(w[1], file, f"{key}[1]", inf=True))
    if not out[0] < out[1]:
        raise ObservationError(file, key, f"must start before its end; got {w!r}")
    return out


def _dose_specs(specs, file: Path, key: str) -> tuple[dict, ...]:
    """A list of dose tables, each a valid :class:`~ketasim.Dose` (amount with
    its unit, known keys), checked where the file gives it; whether the model
    has the route is checked when it is simulated."""
    import warnings

    from .dosing import Dose

    if not isinstance(specs, list) or not specs:
        raise ObservationError(
            file,
            key,
            f'must be a list of doses such as [{{amount = "10 mg", route = "iv"}}]; '
            f"got {specs!r}",
        )
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ObservationError(
                file,
                f"{key}[{i}]",
                f'must be a table such as {{amount = "10 mg", route = "iv"}}; got '
                f"{spec!r}",
            )
        try:
            with warnings.catch_warnings():  # a plausibility warning: at simulation
                warnings.simplefilter("ignore")
                Dose(**spec)
        except (TypeError, ValueError) as exc:
            raise ObservationError(file, f"{key}[{i}]", str(exc)) from None
    return tuple(specs)


def _check_routes(model: Model, obs: Observation, file: Path, at: str) -> None:
    """Every dose of ``obs`` uses a route ``model`` defines (said with the file
    and key; the simulation would say it without them)."""
    rel = (obs.relative_to or {}).get("doses", ())
    for key, specs in (
        ("doses", obs.doses),
        ("reference_doses", obs.reference_doses),
        ("relative_to.doses", rel),
    ):
        for j, spec in enumerate(specs):
            route = spec.get("route", "iv")
            if route not in model.routes:
                raise ObservationError(
                    file,
                    f"{at}.{key}[{j}]",
                    f"route {route!r} is not a route of model {model.id!r}; its "
                    f"routes are {', '.join(model.routes)}",
                )


def _covariates(cov, file: Path, key: str) -> dict:
    """A covariates table (name -> number in the covariate's unit), checked as a
    simulation checks covariates, where the file gives it."""
    import re

    from ._validate import covariate_values
    from .model import KNOWN_COVARIATES

    if not isinstance(cov, dict):
        raise ObservationError(
            file, key, f"must be a table such as {{weight = 70}}; got {cov!r}"
        )
    out = {}
    for name, v in cov.items():
        if name not in KNOWN_COVARIATES:
            raise ObservationError(
                file,
                f"{key}.{name}",
                f"unknown covariate {name!r}; known: {', '.join(KNOWN_COVARIATES)}",
            )
        try:
            out[name] = float(covariate_values(name, v))
        except (TypeError, ValueError) as exc:
            msg = re.sub(r" for subject \d+", "", str(exc))  # one value, no subject
            raise ObservationError(file, f"{key}.{name}", msg) from None
    return out


def _relative_to(rel, file: Path, key: str) -> dict:
    """The ``relative_to`` table: one or more of doses, covariates, window."""
    if not isinstance(rel, dict) or not rel or set(rel) - set(_RELATIVE_KEYS):
        raise ObservationError(
            file,
            key,
            f"must be a table of one or more of {_RELATIVE_KEYS}; got {rel!r}",
        )
    out = dict(rel)
    if "doses" in out:
        out["doses"] = _dose_specs(out["doses"], file, f"{key}.doses")
    if "covariates" in out:
        out["covariates"] = _covariates(out["covariates"], file, f"{key}.covariates")
    if "window" in out:
        out["window"] = _window(out["window"], file, f"{key}.window")
    return out


def _observation(raw: dict, file: Path, i: int, refs: set[str]) -> Observation:
    at = f"observations[{i}]"
    unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise ObservationError(
            file, f"{at}.{sorted(unknown)[0]}", "unknown key", f"known: {_REQUIRED}"
        )
    for k in _REQUIRED:
        if k not in raw:
            raise ObservationError(file, f"{at}.{k}", "is required")
    kw = dict(raw)
    kw["statistic"] = _STATISTIC_ALIASES.get(kw["statistic"], kw["statistic"])
    if kw["metric"] not in METRICS:
        raise ObservationError(
            file, f"{at}.metric", f"unknown metric {kw['metric']!r}", f"{list(METRICS)}"
        )
    if kw["statistic"] not in STATISTICS:
        raise ObservationError(
            file,
            f"{at}.statistic",
            f"must be one of {STATISTICS}; got {kw['statistic']!r}",
        )
    q = kw.get("percentile")
    if (kw["statistic"] == "percentile") != (q is not None):
        raise ObservationError(
            file,
            f"{at}.percentile",
            "is required with statistic = 'percentile' and only with it",
        )
    if q is not None and (
        isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 100
    ):
        raise ObservationError(
            file, f"{at}.percentile", f"must be a number in (0, 100); got {q!r}"
        )
    if kw["role"] not in ROLES:
        raise ObservationError(
            file, f"{at}.role", f"must be one of {ROLES}; got {kw['role']!r}"
        )
    if kw["reference"] not in refs:
        raise ObservationError(
            file, f"{at}.reference", f"{kw['reference']!r} is not a references key"
        )
    v = kw["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ObservationError(file, f"{at}.value", f"must be a number; got {v!r}")
    kw["value"] = float(v)
    if isinstance(kw["analyte"], str):  # a common name is an alias (esketamine)
        kw["analyte"] = _analytes.canonical(kw["analyte"]) or kw["analyte"]
    if "covariates" in kw:
        kw["covariates"] = _covariates(kw["covariates"], file, f"{at}.covariates")
    if "relative_to" in kw:
        kw["relative_to"] = _relative_to(kw["relative_to"], file, f"{at}.relative_to")
        if kw["unit"] != "1":
            raise ObservationError(
                file,
                f"{at}.unit",
                f"an observation with relative_to is a ratio: unit must be '1'; "
                f"got {kw['unit']!r}",
            )
    elif kw["statistic"] == "geometric sd":
        if kw["unit"] != "1":
            raise ObservationError(
                file,
                f"{at}.unit",
                f"a geometric SD (the exp of the SD of the logs) has no unit: unit "
                f"must be '1'; got {kw['unit']!r}",
            )
        if kw["value"] < 1:
            raise ObservationError(
                file,
                f"{at}.value",
                f"a geometric SD (the exp of the SD of the logs) is >= 1; got "
                f"{kw['value']:g} (an SD of the logs, s, is the geometric SD exp(s))",
            )
    else:
        _convert(1.0, kw["metric"], kw["unit"], 70.0, file, f"{at}.unit")
    tol = kw["tolerance"]
    if (
        not isinstance(tol, dict)
        or len(tol) != 1
        or next(iter(tol))
        not in (
            "range",
            "fold",
            "relative",
        )
    ):
        raise ObservationError(
            file,
            f"{at}.tolerance",
            f"must be one of {{range = [lo, hi]}}, {{fold = f}}, {{relative = r}}; "
            f"got {tol!r}",
        )
    _check_tolerance(tol, file, f"{at}.tolerance")
    if "range" not in tol and not kw["value"] > 0:
        raise ObservationError(
            file,
            f"{at}.tolerance",
            f"a {next(iter(tol))} tolerance needs a value > 0 (it scales the value); "
            f"got value {kw['value']:g}: give the accepted interval as a range",
        )
    if not str(kw["tolerance_reason"]).strip():
        raise ObservationError(file, f"{at}.tolerance_reason", "must say why")
    kw["doses"] = _dose_specs(kw["doses"], file, f"{at}.doses")
    if "reference_doses" in kw:
        kw["reference_doses"] = _dose_specs(
            kw["reference_doses"], file, f"{at}.reference_doses"
        )
    kw["reference_doses"] = tuple(kw.get("reference_doses", ()))
    if kw["metric"] == "bioavailability" and not kw["reference_doses"]:
        raise ObservationError(
            file, f"{at}.reference_doses", "bioavailability needs reference_doses"
        )
    if kw["metric"] == "concentration":
        if "time" not in kw:
            raise ObservationError(file, f"{at}.time", "concentration needs a time")
        kw["time"] = _hours(kw["time"], file, f"{at}.time")
    if "window" in kw:
        kw["window"] = _window(kw["window"], file, f"{at}.window")
    if "n" in kw:
        n = kw["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ObservationError(
                file, f"{at}.n", f"must be a whole number of subjects >= 1; got {n!r}"
            )
    if "horizon" in kw:
        kw["horizon"] = _hours(kw["horizon"], file, f"{at}.horizon")
    rel = kw.get("relative_to")
    if rel is not None and all(
        (dict(kw.get("covariates", {})) | v == dict(kw.get("covariates", {})))
        if k == "covariates"
        else v == kw.get(k)
        for k, v in rel.items()
    ):
        raise ObservationError(
            file,
            f"{at}.relative_to",
            f"replaces nothing (the observation's own {', '.join(rel)}): the ratio "
            f"would be 1 whatever the model; give the reference regimen's doses, "
            f"covariates or window",
        )
    return Observation(**kw)


def load_observations(
    model: str, *, file: str | Path | None = None
) -> tuple[dict, list[Observation]]:
    """The observation file of bundled ``model`` (or ``file``): (header,
    observations).

    The header holds ``reproduces``, ``cannot`` and ``references`` (key -> entry).
    A model without a file raises :class:`ObservationError`."""
    file = Path(file) if file is not None else observations_dir() / f"{model}.toml"
    if not file.exists():
        raise ObservationError(
            file,
            "",
            f"model {model!r} has no observation file",
            f"write {file} (schema in ketasim.validation)",
        )
    try:
        with open(file, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ObservationError(file, "", f"is not valid TOML: {exc}") from exc
    if raw.get("schema_version") != 1:
        raise ObservationError(file, "schema_version", "must be 1")
    if raw.get("model") != model:
        raise ObservationError(
            file,
            "model",
            f"must be {model!r} (the file stem); got {raw.get('model')!r}",
        )
    refs = {r["key"]: r for r in raw.get("references", [])}
    obs = [
        _observation(o, file, i, set(refs))
        for i, o in enumerate(raw.get("observations", []))
    ]
    ids = [o.id for o in obs]
    if len(set(ids)) != len(ids):
        raise ObservationError(file, "observations", "ids must be unique")
    header = {
        "reproduces": raw.get("reproduces", ""),
        "cannot": raw.get("cannot", ""),
        "references": refs,
        "file": file,
    }
    return header, obs


# ---- simulating ---------------------------------------------------------------------


def _convert(x, metric: str, unit: str, weight, file=None, key=""):
    """``x`` in the metric's canonical unit -> ``unit`` (per kg divides by weight)."""
    if metric == "auc":
        if unit not in _AUC_UNITS:
            raise ObservationError(
                file, key, f"AUC unit must be one of {list(_AUC_UNITS)}; got {unit!r}"
            )
        return x / _AUC_UNITS[unit]
    if metric in ("concentration", "cmax"):
        if unit not in ("ng/mL", "ug/L", "µg/L"):
            raise ObservationError(
                file, key, f"concentration unit must be ng/mL or ug/L; got {unit!r}"
            )
        return x
    want = {
        "tmax": "time",
        "half_life": "time",
        "clearance": "clearance",
        "vss": "volume",
        "bioavailability": "dimensionless",
    }[metric]
    try:
        u = parse_unit(unit)
    except ValueError as exc:
        raise ObservationError(file, key, str(exc)) from exc
    if u.dimension != want or (u.per_kg and want in ("time", "dimensionless")):
        raise ObservationError(
            file, key, f"a {metric} needs a {want} unit; got {unit!r}"
        )
    y = x / u.factor
    return y / weight if u.per_kg else y


def _doses(specs: tuple[dict, ...]):
    from .dosing import Dose, Regimen

    return Regimen([Dose(**spec) for spec in specs])


def _grid(regimen, horizon: float, extra: list[float]) -> np.ndarray:
    """Output times: every minute for 12 h after each dose, then every 0.1 h."""
    pts = [np.arange(0.0, horizon, 0.1), [horizon], extra]
    for t in regimen.times:
        pts.append(t + np.arange(0.0, min(12.0, horizon - t), 1 / 60))
    g = np.unique(np.concatenate([np.asarray(p, float) for p in pts]))
    return g[(g >= 0) & (g <= horizon)]


def _terminal(t, c, lo, hi):
    """Log-linear terminal slope (1/h) of the rows of c over [lo, hi]."""
    sel = (t >= lo) & (t <= hi)
    tt = t[sel]
    lc = np.log(np.maximum(c[:, sel], 1e-300))
    tm = tt - tt.mean()
    slope = (lc - lc.mean(axis=1, keepdims=True)) @ tm / (tm @ tm)
    return -slope


def _auc_inf(t, c, lam):
    auc = np.trapezoid(c, t, axis=1)
    aumc = np.trapezoid(c * t, t, axis=1)
    cl, tl = c[:, -1], t[-1]
    return auc + cl / lam, aumc + cl * tl / lam + cl / lam**2


def _run(model, regimen, cov: dict, times, population: bool, seed: int, n: int):
    import ketasim as ks

    if population:
        # covariates the observation does not give take the model's reference
        # values, as for the typical subject (not the adult distribution)
        cov = dict(model.covariates) | dict(cov)
        table = {k: np.full(n, float(v)) for k, v in cov.items()}
        pop = ks.Population(n, seed=seed, covariates=table, iov=False)
        return ks.simulate(model, regimen, times=times, population=pop)
    return ks.simulate(
        model, regimen, times=times, subjects=ks.Subjects(covariates=cov or None)
    )


def _run_quiet_about_others(model, analyte: str, *args):
    """:func:`_run`, passing on every warning except a ModelLimitWarning about
    another analyte than the observed one (flint_2017's S-norketamine after a
    bolus when the observation is about S-ketamine: not this observation's
    concern)."""
    import warnings

    from ._warn import ModelLimitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _run(model, *args)
    for w in caught:
        about = getattr(w.message, "analyte", None)  # the analyte it names
        if issubclass(w.category, ModelLimitWarning) and about not in (None, analyte):
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def _metric(model, obs: Observation, population: bool, seed: int, n: int) -> np.ndarray:
    """The observation's metric per simulated subject, in the metric's canonical
    unit (see METRICS); with ``relative_to``, the per-subject ratio to the same
    metric with those fields replaced (the same seed draws the same subjects)."""
    if obs.relative_to is None:
        return _one_metric(model, obs, population, seed, n)
    from dataclasses import replace

    rel = dict(obs.relative_to)
    if "covariates" in rel:
        rel["covariates"] = dict(obs.covariates) | rel["covariates"]
    # both regimens over the same span (the longer window), so that no dose of
    # either falls after the simulated times
    ends = [w[1] for w in (obs.window, rel.get("window")) if w and math.isfinite(w[1])]
    horizon = max([obs.horizon or DEFAULT_HORIZON_H, *ends])
    ref = replace(obs, relative_to=None, horizon=horizon, **rel)
    num = replace(obs, relative_to=None, horizon=horizon)
    return _one_metric(model, num, population, seed, n) / _one_metric(
        model, ref, population, seed, n
    )


def _one_metric(
    model, obs: Observation, population: bool, seed: int, n: int
) -> np.ndarray:
    """:func:`_metric` of one regimen (no ``relative_to``)."""
    regimen = _doses(obs.doses)
    w = obs.window
    horizon = obs.horizon or DEFAULT_HORIZON_H
    if w is not None and math.isfinite(w[1]):
        horizon = max(horizon, w[1])
    extra = [obs.time] if obs.time is not None else []
    times = _grid(regimen, horizon, extra)
    # an analyte the model refuses after these doses (fanta_2015: S-norketamine
    # after oral doses) is left out, unless the observation is about it
    from .routes import refused_analytes

    refused = {a for d in regimen.doses for a in refused_analytes(model, d.route)}
    refused.discard(obs.analyte)
    if refused:
        model = model.without_analytes(*sorted(refused))
    ds = _run_quiet_about_others(
        model, obs.analyte, regimen, obs.covariates, times, population, seed, n
    )
    if obs.analyte not in ds.analyte.values:
        raise ObservationError(
            None,
            f"{obs.id}.analyte",
            f"model {model.id!r} has no analyte {obs.analyte!r}; it has "
            f"{list(ds.analyte.values)}",
        )
    c = ds.concentration.sel(analyte=obs.analyte).values  # (subject, time) ng/mL
    t = ds.time.values
    m = obs.metric
    if m == "concentration":
        return c[:, np.searchsorted(t, obs.time)]
    if m in ("cmax", "tmax"):
        lo, hi = w if w is not None else (0.0, math.inf)
        sel = (t >= lo) & (t <= hi)
        i = np.argmax(c[:, sel], axis=1)
        return c[:, sel].max(axis=1) if m == "cmax" else t[sel][i]
    last = (t[-1] * 0.5, t[-1])
    if m == "auc" and w is not None and math.isfinite(w[1]):
        sel = (t >= w[0]) & (t <= w[1])
        return np.trapezoid(c[:, sel], t[sel], axis=1)
    lam = _terminal(t, c, *(w if (m == "half_life" and w) else last))
    if m == "half_life":
        return math.log(2) / lam
    auc, aumc = _auc_inf(t, c, lam)
    if m == "auc":
        return auc
    dose_mg = ds.dose_mg.sum("dose").values  # per subject, base
    if m == "clearance":
        return dose_mg / (auc * 1e-3)
    if m == "vss":
        tinf = np.mean([d.duration or 0.0 for d in regimen])
        return dose_mg / (auc * 1e-3) * (aumc / auc - tinf / 2)
    # bioavailability: same subjects (same seed) on the reference regimen
    ref = _doses(obs.reference_doses)
    rds = _run(model, ref, obs.covariates, _grid(ref, horizon, []), population, seed, n)
    rc = rds.concentration.sel(analyte=obs.analyte).values
    rt = rds.time.values
    rauc, _ = _auc_inf(rt, rc, _terminal(rt, rc, rt[-1] * 0.5, rt[-1]))
    return (auc / dose_mg) / (rauc / rds.dose_mg.sum("dose").values)


def _statistic(x: np.ndarray, statistic: str, q: float | None = None) -> float:
    if statistic == "sd":
        return float(np.std(x, ddof=1))
    if statistic == "geometric sd":
        return float(np.exp(np.std(np.log(x), ddof=1)))
    if statistic == "percentile":
        return float(np.percentile(x, q))
    if statistic == "geometric mean":
        return float(np.exp(np.mean(np.log(x))))
    if statistic == "mean":
        return float(np.mean(x))
    return float(np.median(x))


def validate(
    model: str | Path | Model | None = None,
    *,
    observations: str | Path | None = None,
    n: int = POPULATION_N,
    seed: int = 2026,
) -> xr.Dataset:
    """Simulate the published observations of ``model`` (default: every bundled
    model) and compare.

    ``model`` is a bundled model name, a model-file path or a :class:`Model`;
    ``observations`` an observation file (default: the bundled
    ``models/observations/<id>.toml`` of the model's id), e.g. your own model
    checked against your own observations.

    Returns a Dataset along ``observation`` with ``observed``, ``predicted`` (the
    paper's statistic of the simulation: the typical subject for ``typical`` or a
    model without IIV, else of ``n`` virtual patients drawn with ``seed``),
    ``typical``, the population's 5th/50th/95th percentiles (NaN without IIV; NaN,
    as ``typical``, on a row of a spread statistic, sd or geometric sd, whose
    metric's values are not in the row's unit or not its statistic), the
    accepted ``lower``/``upper`` bounds, ``passed`` and ``status`` (pass, fail,
    known-fail, fixed, uninformative: see the module docstring), with
    per-observation ``unit``, ``model``, ``metric``, ``analyte``, ``role``,
    ``statistic``, ``study``, ``source`` and
    ``known_limitation`` coordinates; ``attrs["models"]`` names the models checked
    (space-separated; one without observations has no row). Values are in each
    row's ``unit`` (a ``relative_to`` ratio and a geometric SD are unitless,
    ``"1"``);
    :func:`format_table` and :func:`format_summary` print it.

    Examples
    --------
    >>> import ketasim as ks
    >>> res = ks.validate("hijazi_2003")  # doctest: +SKIP
    >>> bool((res.status != "fail").all())  # doctest: +SKIP
    True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise ValueError(
            f"n (virtual patients per observation) must be an int >= 10; got {n!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    if model is not None and not isinstance(model, (str, Path, Model)):
        raise TypeError(
            f"model must be a bundled model name, a model-file path, a Model or "
            f"None for all; got {type(model).__name__}"
        )
    if observations is not None and model is None:
        raise ValueError(
            "observations= needs model=: name the model the file's observations "
            "are simulated with"
        )
    names = list_models() if model is None else [model]
    rows = []
    for name in names:
        m = load_model(name)
        _, obs = load_observations(m.id, file=observations)
        has_iiv = any(v.omega > 0 for v in m.variability)
        file = (
            Path(observations) if observations else observations_dir() / f"{m.id}.toml"
        )
        for i, o in enumerate(obs):
            _check_routes(m, o, file, f"observations[{i}]")
            weight = float(o.covariates.get("weight", 70.0))

            def conv(x, o=o, weight=weight):
                # a ratio, or a geometric SD (unchanged by a unit's scale): no
                # unit to convert
                if o.relative_to is not None or o.statistic == "geometric sd":
                    return x
                return _convert(x, o.metric, o.unit, weight)

            typ = conv(float(_metric(m, o, False, seed, n)[0]))
            pcts = (math.nan,) * 3
            pred = typ
            spread = o.statistic in SPREAD_STATISTICS
            if spread:  # no IIV: no spread
                pred = 1.0 if o.statistic == "geometric sd" else 0.0
            if has_iiv:
                x = conv(_metric(m, o, True, seed, n))
                pcts = tuple(float(v) for v in np.percentile(x, [5, 50, 95]))
                if o.statistic != "typical":
                    pred = _statistic(x, o.statistic, o.percentile)
            if spread:  # the typical subject and percentiles are of the metric,
                typ, pcts = math.nan, (math.nan,) * 3  # not of its spread
            lo, hi = o.bounds()
            ok = bool(lo <= pred <= hi)
            if ok and _blind_to(o, typ, x if has_iiv else None):
                status = "uninformative"
            elif o.known_limitation:
                status = "fixed" if ok else "known-fail"
            else:
                status = "pass" if ok else "fail"
            rows.append((m.id, o, pred, typ, pcts, lo, hi, ok, status))

    def col(f, dtype=float):
        return np.array([f(r) for r in rows], dtype=dtype)

    coords = {
        "observation": [r[1].id for r in rows],
        "model": ("observation", [r[0] for r in rows]),
        "metric": ("observation", [r[1].metric for r in rows]),
        "analyte": ("observation", [r[1].analyte for r in rows]),
        "unit": ("observation", [r[1].unit for r in rows]),
        "statistic": ("observation", [r[1].statistic for r in rows]),
        "role": ("observation", [r[1].role for r in rows]),
        "study": ("observation", [r[1].study for r in rows]),
        "source": ("observation", [r[1].source for r in rows]),
        "known_limitation": (
            "observation",
            [r[1].known_limitation for r in rows],
        ),
    }
    per_row = "the row's `unit` coordinate"
    ds = xr.Dataset(
        {
            "observed": ("observation", col(lambda r: r[1].value)),
            "predicted": ("observation", col(lambda r: r[2])),
            "typical": ("observation", col(lambda r: r[3])),
            "p05": ("observation", col(lambda r: r[4][0])),
            "p50": ("observation", col(lambda r: r[4][1])),
            "p95": ("observation", col(lambda r: r[4][2])),
            "lower": ("observation", col(lambda r: r[5])),
            "upper": ("observation", col(lambda r: r[6])),
            "passed": ("observation", col(lambda r: r[7], bool)),
            "status": ("observation", col(lambda r: r[8], object).astype(str)),
        },
        coords=coords,
    )
    long = {
        "observed": "published value (the paper's statistic)",
        "predicted": "simulated value of the paper's statistic",
        "typical": "typical subject",
        "p05": "population 5th percentile",
        "p50": "population median",
        "p95": "population 95th percentile",
        "lower": "lowest accepted prediction",
        "upper": "highest accepted prediction",
    }
    for k, v in long.items():
        ds[k].attrs = {"long_name": v, "units": per_row}
    ds["passed"].attrs = {"long_name": "prediction within [lower, upper]"}
    ds.attrs["population_n"] = n
    ds.attrs["seed"] = seed
    # the models checked, space-separated (one with no observation has no row)
    ds.attrs["models"] = " ".join(load_model(name).id for name in names)
    return ds


def _blind_to(obs: Observation, typical: float, subjects) -> bool:
    """True when ``obs`` is a covariate ratio the model cannot respond to: only
    covariates are replaced and the ratio is 1 (to 1e-12) for the typical subject
    and every virtual patient: the model has no effect of those covariates on
    this metric (or none the metric resolves, e.g. a Tmax read on the time grid),
    so the observation would pass whatever its published value near 1."""
    rel = obs.relative_to
    if rel is None or set(rel) != {"covariates"} or obs.statistic in SPREAD_STATISTICS:
        return False
    vals = [typical] if subjects is None else [typical, *np.ravel(subjects)]
    return all(abs(v - 1.0) <= 1e-12 for v in vals)


def format_table(ds: xr.Dataset) -> str:
    """The result of :func:`validate` as a plain-text table."""
    w = max([30, *(len(str(v)) for v in ds.observation.values)])
    head = (
        f"{'model':<20} {'observation':<{w}} {'metric':<15} {'observed':>10} "
        f"{'predicted':>10} {'accepted':>21} {'unit':<9} {'role':<11} status"
    )
    lines = [head, "-" * len(head)]
    for i in range(ds.sizes["observation"]):
        r = ds.isel(observation=i)
        acc = f"[{float(r.lower):.3g}, {float(r.upper):.3g}]"
        lines.append(
            f"{r.model.values!s:<20} {r.observation.values!s:<{w}} "
            f"{r.metric.values!s:<15} {float(r.observed):>10.4g} "
            f"{float(r.predicted):>10.4g} {acc:>21} {r.unit.values!s:<9} "
            f"{r.role.values!s:<11} {r.status.values}"
        )
    n = ds.sizes["observation"]
    if n == 0:
        lines.append(
            "0 observations: no published observation was read for this model "
            "(its file in models/observations/ says why)"
        )
        return "\n".join(lines)
    counts = {s: int((ds.status == s).sum()) for s in STATUSES}
    lines.append(
        f"{n} observations: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    )
    return "\n".join(lines)


def format_summary(ds: xr.Dataset, observations: str | Path | None = None) -> str:
    """Per model of :func:`validate`'s result: what its observation file says it
    reproduces and cannot reproduce, its counts by status, and each known-fail with
    its reason (``observations``: the file used, if not the bundled one)."""
    import textwrap

    def wrap(text: str, first: str) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()),
            width=88,
            initial_indent=first,
            subsequent_indent="    ",
        )

    lines: list[str] = []
    models = ds.attrs.get("models", "").split() or list(
        dict.fromkeys(str(v) for v in ds.model.values)
    )
    for mid in models:
        header, _ = load_observations(mid, file=observations)
        sel = ds.isel(observation=np.flatnonzero(ds.model.values == mid))
        status = [str(s) for s in sel.status.values]
        counts = ", ".join(
            f"{status.count(s)} {s}" for s in STATUSES if status.count(s)
        )
        roles = [str(r) for r in sel.role.values]
        indep = sum(
            r == "independent" and s in ("pass", "fixed")
            for r, s in zip(roles, status, strict=True)
        )
        if not status:
            lines.append(f"{mid}: no published observation read")
        else:
            lines.append(
                f"{mid}: {counts} ({indep} of {roles.count('independent')} "
                f"independent observations reproduced)"
            )
        lines += wrap(header.get("reproduces", "") or "-", "  reproduces: ")
        lines += wrap(header.get("cannot", "") or "-", "  cannot: ")
        for oid, s, why in zip(
            sel.observation.values, status, sel.known_limitation.values, strict=True
        ):
            if s in ("known-fail", "fail"):
                lines += wrap(str(why) or "no documented reason", f"  {s} {oid}: ")
    return "\n".join(lines)
