"""Scenario files (TOML): scenarios, regimens, populations, output times, metrics.

Validated as strictly as model files: unknown keys, wrong types and bad values raise
:class:`ScenarioFileError` naming the file and the key path. See
``examples/*.toml`` for complete files.

```toml
schema_version = 1
title = "six infusions with boosters"

[output]
end = "42 d"            # output times: 0 to end every step
step = "5 min"
per = "session"         # metrics table: per "dose", "session" or "course"
window = 0              # optional, per dose/session: which one (0 first, -1 last)
above = 100.0           # optional: time above this level: ng/mL, or with a unit
                        # ("0.1 mg/L", or molar: "0.4 umol/L")
analyte = "ketamine"    # optional: default, each scenario's first analyte

[population]            # default for every scenario; a scenario may override
n = 1000
seed = 1
female = 0.5
age = [18, 65]
iiv = false             # domino has no inter-individual variability: typical
                        # patients differing by covariates (omit it for a model
                        # with variability)

[[scenarios]]
name = "course + boosters"
model = "domino"        # bundled name or path (relative to this file)
[scenarios.regimen]
protocol = "six_infusion_course"   # | clinic_course | esketamine_induction | doses
dose = "0.5 mg/kg"
[scenarios.regimen.then]           # optional continuation
protocol = "boosters"
every = "2 weeks"
count = 3
```
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _analytes, protocols
from .dosing import Dose, Regimen
from .modelfile import ModelFileError, _Table
from .population import Population
from .scenario import Scenario
from .units import UnitError, parse_quantity, parse_unit, to_ng_per_ml

__all__ = ["ScenarioFile", "ScenarioFileError", "load_scenarios"]

PROTOCOLS = (
    "six_infusion_course",
    "clinic_course",
    "esketamine_induction",
    "boosters",
    "home_course",
    "doses",
)


class ScenarioFileError(ModelFileError):
    """A scenario file is malformed; ``file`` and ``key`` say where."""


@dataclass(frozen=True)
class ScenarioFile:
    title: str
    scenarios: tuple[Scenario, ...]
    times: np.ndarray
    per: str
    window: int
    above: float | str | None  # ng/mL, or a molar level as written
    analyte: str | None
    path: Path | None


class _T(_Table):
    def fail(self, message, key=None, hint=""):
        k = f"{self.path}.{key}" if key and self.path else (key or self.path)
        raise ScenarioFileError(self.file, k or "<top>", message, hint)


def _call(t: _T, fn, **kw):
    try:
        return fn(**kw)
    except (ValueError, TypeError) as exc:
        t.fail(str(exc))
        raise AssertionError from exc


def _dose(t: _T) -> Dose:
    kw = {
        "route": t.take("route", str, required=False, default="iv"),
        "time": t.take("time", (str, int, float), required=False, default=0.0),
        "salt": t.take("salt", str, required=False, default="base"),
        # the weight an mg/kg dose scales with (ketasim.bodysize)
        "weight_basis": t.take("weight_basis", str, required=False, default="total"),
    }
    amount = t.take("amount", (str, list))
    dur = t.take("duration", (str, int, float), required=False)
    dev = t.take("device", int, required=False)
    t.done()
    if isinstance(amount, list):
        amount = tuple(amount)
    return _call(t, Dose, amount=amount, duration=dur, device=dev, **kw)


def _regimen(t: _T) -> Regimen:
    proto = t.take("protocol", str, choices=PROTOCOLS)
    then = t.take("then", dict, required=False)
    after = t.take("after", (str, int, float), required=False, default=0.0)
    if "after" in t.data and then is None:
        t.fail(
            "applies to a `then` continuation; add [....then] or drop `after`", "after"
        )
    if proto == "doses":
        items = t.take("doses", list)
        if not items:  # a scenario without doses would simulate zeros silently
            t.fail(
                "is empty",
                "doses",
                "add at least one [[....doses]] table with an amount",
            )
        doses = [
            _dose(_T(d, f"{t.path}.doses[{i}]", t.file)) for i, d in enumerate(items)
        ]
        reg = _call(t, Regimen, doses=doses)
    elif proto == "six_infusion_course":
        kw = _kwargs(
            t,
            {
                "dose": str,
                "duration": str,
                "sessions_per_week": int,
                "sessions": int,
                "salt": str,
                "route": str,
                "clock": (str, list),
            },
        )
        reg = _call(t, protocols.six_infusion_course, **kw)
    elif proto == "clinic_course":
        dose = _dose(_T(t.take("dose", dict), f"{t.path}.dose", t.file))
        kw = _kwargs(
            t, {"sessions_per_week": int, "sessions": int, "clock": (str, list)}
        )
        reg = _call(t, protocols.clinic_course, dose=dose, **kw)
    elif proto == "esketamine_induction":
        kw = _kwargs(
            t,
            {
                "dose": str,
                "first_dose": str,
                "weeks": int,
                "continuation_weeks": int,
                "maintenance_every": str,
                "maintenance_sessions": int,
                "maintenance_dose": str,
                "device": str,
                "device_interval": str,
                "route": str,
            },
        )
        reg = _call(t, protocols.esketamine_induction, **kw)
    elif proto == "home_course":
        dose = _dose(_T(t.take("dose", dict), f"{t.path}.dose", t.file))
        kw = _kwargs(
            t,
            {
                "per_week": int,
                "weeks": int,
                "clock": (str, list),
                "first_day": int,
                "origin": str,
            },
        )
        reg = _call(t, protocols.home_course, dose=dose, **kw)
    else:  # boosters
        d = t.take("dose", dict, required=False)
        dose = None if d is None else _dose(_T(d, f"{t.path}.dose", t.file))
        kw = _kwargs(t, {"every": str, "count": int})
        reg = _call(t, protocols.boosters, dose=dose, **kw)
    plus = t.take("plus", list, required=False, default=[])
    t.done()
    if then is not None:
        nxt = _regimen(_T(then, f"{t.path}.then", t.file))
        reg = _call(t, reg.then, other=nxt, after=after)
    for j, item in enumerate(plus):  # merged by time, as Regimen + Regimen
        reg = reg + _regimen(_T(item, f"{t.path}.plus[{j}]", t.file))
    return reg


def _with_route(model, name: str, pws: tuple, kw: dict):
    return model.with_route(name, *pws, **kw)


def _routes(t: _T, model):
    """``[scenarios.routes.<name>]``: routes added to (or replacing one of) the
    scenario's model with Model.with_route; the scenario runs the NEW model. Keys
    of one pathway (bioavailability, ka or tmax, lag, duration, into, depot), or
    ``[[....pathways]]`` tables with those keys plus ``fraction``; and
    ``description``, ``evidence``, ``id``."""
    from .routes import Absorption

    keys = ("bioavailability", "ka", "tmax", "lag", "duration", "into", "depot")
    num = (str, int, float)
    types = {"bioavailability": (int, float), "into": str, "depot": str}

    def pathway(pt: _T, with_fraction: bool) -> dict:
        kw = {}
        for k in keys + (("fraction",) if with_fraction else ()):
            v = pt.take(
                k, types.get(k, num) if k != "fraction" else num, required=False
            )
            if v is not None:
                kw[k] = v
        return kw

    for name in list(t.data):
        rt = _T(t.take(name, dict), f"{t.path}.{name}", t.file)
        meta = {
            k: rt.take(k, str, required=False)
            for k in ("description", "evidence", "id")
        }
        meta = {k: v for k, v in meta.items() if v is not None}
        items = rt.take("pathways", list, required=False)
        if items is not None:
            pws = []
            for j, item in enumerate(items):
                pt = _T(item, f"{rt.path}.pathways[{j}]", t.file)
                kw = pathway(pt, True)
                pt.done()
                pws.append(_call(pt, Absorption, **kw))
            rt.done()
            model = _call(rt, _with_route, model=model, name=name, pws=pws, kw=meta)
        else:
            kw = pathway(rt, False)
            rt.done()
            model = _call(rt, _with_route, model=model, name=name, pws=(), kw=kw | meta)
    t.done()
    return model


def _kwargs(t: _T, spec: dict) -> dict:
    out = {}
    for key, typ in spec.items():
        v = t.take(key, typ, required=False)
        if v is not None:
            out[key] = v
    return out


def _population(t: _T, base: dict | None) -> Population | None:
    spec = dict(base or {})
    for key, typ in (
        ("n", int),
        ("seed", int),
        ("female", float),
        ("asian", float),
        ("japanese", float),
        ("iiv", bool),
        ("iov", bool),
    ):
        v = t.take(key, typ, required=False)
        if v is not None:
            spec[key] = v
    age = t.take("age", list, required=False)
    if age is not None:
        if len(age) != 2 or not all(
            isinstance(a, int | float) and not isinstance(a, bool) for a in age
        ):
            t.fail(
                f"must be [low, high] years (two numbers); got {age!r}",
                "age",
                "e.g. age = [18, 65]",
            )
        spec["age"] = (float(age[0]), float(age[1]))
    t.done()
    if not spec:
        return None
    for key in ("n", "seed"):
        if key not in spec:
            t.fail("is missing (a population needs n and seed)", key)
    return _call(t, Population, **spec), spec


def _above(o: _T, value) -> float | str:
    """``output.above``: ng/mL (a number, or a mass concentration string, converted)
    or a molar string such as ``"1 umol/L"``, kept as written: the scenarios run
    as curves (``ks.Trajectories()``) and :func:`ketasim.compare` converts it per
    analyte by its molecular weight, as :func:`ketasim.metrics` does."""
    if isinstance(value, str):
        try:
            q = parse_quantity(value, what="output.above", default_unit="ng/mL")
            u = parse_unit(q.unit)
        except (ValueError, TypeError) as exc:
            o.fail(str(exc), "above")
        if u.dimension == "molar concentration" and not u.per_kg:
            if not (math.isfinite(q.value) and q.value >= 0):
                o.fail(f"must be a finite concentration >= 0; got {value!r}", "above")
            return value
    try:
        return to_ng_per_ml(value, what="output.above")
    except UnitError:
        o.fail(
            f"must be a concentration: a number (ng/mL), a mass concentration "
            f"such as '100 ng/mL' or '0.1 mg/L', or a molar one such as "
            f"'0.4 umol/L'; got {value!r}",
            "above",
        )
    except (ValueError, TypeError) as exc:
        o.fail(str(exc), "above")
    raise AssertionError  # o.fail raised


def load_scenarios(path: str | Path) -> ScenarioFile:
    """Read and validate a scenario file.

    Raises
    ------
    ScenarioFileError
        Naming the file, the key path and how to fix it.
    """
    from .modelfile import load_model
    from .simulate import grid

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(p, "<toml>", f"not valid TOML: {exc}") from None
    top = _T(data, "", p)
    if top.take("schema_version", int) != 1:
        top.fail(
            "unsupported schema version",
            "schema_version",
            "this ketasim reads schema_version = 1",
        )
    title = top.take("title", str, required=False, default=p.stem)
    o = _T(top.take("output", dict), "output", p)
    end = o.take("end", str)
    step = o.take("step", str, required=False, default="5 min")
    per = o.take(
        "per",
        str,
        required=False,
        default="session",
        choices=("dose", "session", "course"),
    )
    window = o.take("window", int, required=False, default=0)
    if per == "course" and "window" in o.data:
        o.fail("applies to per = 'dose' or 'session', not to the course", "window")
    above = o.take("above", (float, int, str), required=False)
    if above is not None:
        above = _above(o, above)
    analyte = o.take("analyte", str, required=False)
    o.done()
    try:
        times = grid(end=end, step=step)
    except (ValueError, TypeError) as exc:  # name both keys: either may be at fault
        o.fail(f"end = {end!r}, step = {step!r}: {exc}")
    if not times[-1] > 0:  # one output time: no exposure to compare
        o.fail(
            f"must be after 0 h, the start of the course; got {end!r}",
            "end",
            'e.g. end = "21 d"',
        )
    base = None
    pop_default = None
    if "population" in data:
        res = _population(_T(top.take("population", dict), "population", p), None)
        if res is not None:
            pop_default, base = res
    scenarios = []
    for i, item in enumerate(top.take("scenarios", list)):
        t = _T(item, f"scenarios[{i}]", p)
        name = t.take("name", str)
        mref = t.take("model", str)
        if not mref.strip():
            t.fail(
                "is empty",
                "model",
                "give a bundled model name such as "
                "'domino' or the path of a .toml model file",
            )
        cand = p.parent / mref
        try:
            model = load_model(cand if mref.endswith(".toml") else mref)
        except OSError as exc:  # no such file, a directory, unreadable
            t.fail(
                f"cannot load model {mref!r}: {exc}",
                "model",
                "give a bundled model name such as 'domino' or the path of a "
                ".toml model file, relative to the scenario file",
            )
        if "routes" in item:  # your own routes on this scenario's model
            model = _routes(
                _T(t.take("routes", dict), f"scenarios[{i}].routes", p), model
            )
        reg = _regimen(_T(t.take("regimen", dict), f"scenarios[{i}].regimen", p))
        pop = pop_default
        if "population" in item:
            res = _population(
                _T(t.take("population", dict), f"scenarios[{i}].population", p), base
            )
            pop = None if res is None else res[0]
        t.done()
        scenarios.append(
            _call(
                t,
                Scenario,
                name=name,
                model=model,
                regimen=reg,
                population=pop,
                times=times,
            )
        )
    if not scenarios:
        top.fail("is empty", "scenarios", "add at least one [[scenarios]] table")
    if analyte is not None:  # an alias (esketamine) names its canonical analyte
        names = dict.fromkeys(a for sc in scenarios for a in sc.model.analyte_names)
        try:
            analyte = _analytes.resolve(analyte, names, "the scenarios' models")
        except ValueError as exc:
            o.fail(str(exc), "analyte")
    top.done()
    return ScenarioFile(title, tuple(scenarios), times, per, window, above, analyte, p)
