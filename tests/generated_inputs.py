"""Generated inputs: valid and invalid doses, regimens, simulate arguments, model-file
mutations, scenario-file mutations and NONMEM tables, each run end to end and its
outcome classified.

Every generated input is a :class:`Case`: a callable that feeds the input to ketasim
(and simulates, so a silently accepted input shows in the result), the names of the
field it touches (argument, key path, column, parameter or covariate) and what the
input deserves: ``"valid"`` (must be accepted), ``"invalid"`` (must be refused) or
``"either"`` (accepted with a valid result, or refused naming the field). The outcome
is one of :data:`OUTCOMES`:

``accepted-valid``
    accepted; concentrations finite and >= 0, status 0, ``units`` attributes present.
``refused-named``
    refused with a ketasim error class (DoseError, ModelFileError, UnitError,
    SolveError) or ValueError/TypeError whose message names the field.

Anything else is a defect: ``silent-acceptance`` (an invalid input accepted),
``invalid-result`` (accepted, but the result is non-finite, negative, has a non-zero
status, lacks units or fails a check of its own run: :class:`ResultError`),
``refused-unnamed`` (a documented error class whose message does not name the
field), ``refused-valid`` (a valid input refused), ``foreign-error`` (any other
exception: ZeroDivisionError, LinAlgError, KeyError, SystemError, ...) and
``timeout`` (no answer within :data:`TIMEOUT_S`).

The default test suite runs a small profile of these generators
(``tests/test_properties.py``). The large profile, >= 10 000 inputs, runs on demand
and prints a table of counts per generator and outcome, then every defect with its
reproducer::

    python -m tests.generated_inputs --n 10000 --seed 0

``--n`` is the total over the generators, shared in proportion to :data:`WEIGHTS`
(a generator whose distinct inputs run out stops early; model mutations, run last,
make up the difference); ``--seed`` makes the run reproducible; ``--out FILE`` also
writes the defects as JSON lines. The exit status is 1 when any defect was found.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import signal
import sys
import tempfile
import tomllib
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import ketasim as ks
from ketasim.modelfile import models_dir
from ketasim.units import Quantity

from .tomlwrite import dumps

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: seconds one case may take before it counts as a ``timeout`` defect
TIMEOUT_S = 120

OUTCOMES = (
    "accepted-valid",
    "refused-named",
    "silent-acceptance",
    "invalid-result",
    "refused-unnamed",
    "refused-valid",
    "foreign-error",
    "timeout",
)
GOOD = frozenset({"accepted-valid", "refused-named"})


@dataclass
class Case:
    """One generated input.

    Attributes
    ----------
    generator : str
        Which generator made it.
    label : str
        A short reproducer (the mutation, or the call).
    run : callable
        Feeds the input to ketasim and returns the result Dataset(s) to check.
    fields : tuple of str
        Names one of which a refusal must mention (case-insensitive).
    expect : {"valid", "invalid", "either"}
    area : str
        Which part of ketasim owns the field (for routing defects).
    """

    generator: str
    label: str
    run: Callable
    fields: tuple[str, ...]
    expect: str
    area: str = ""


@dataclass
class Outcome:
    kind: str
    detail: str = ""
    warnings: list[str] = field(default_factory=list)


class ResultError(Exception):
    """A generated input's result failed a check made inside its run (a wrong units
    label, a value off its independent oracle): an ``invalid-result``."""


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` swallows it."""


def _documented(exc: BaseException) -> bool:
    """ketasim's own error classes, or a plain ValueError/TypeError (the project's
    documented classes). numpy's LinAlgError subclasses ValueError but is not one
    of them."""
    t = type(exc)
    return t in (ValueError, TypeError) or (
        isinstance(exc, ValueError | TypeError | RuntimeError)
        and t.__module__.startswith("ketasim")
    )


def names_field(message: str, fields) -> bool:
    low = message.lower()
    return any(f.lower() in low for f in fields if f)


def check_result(res) -> str | None:
    """``None`` for a valid result, else what is wrong with it."""
    if isinstance(res, ks.ScenarioResults):  # run_scenarios: one Dataset per scenario
        res = list(res.values())
    items = res if isinstance(res, list | tuple) else [res]
    for ds in items:
        if ds is None:
            continue
        if "cmax" in ds and "concentration" not in ds:  # a metrics table
            for name in ("cmax", "auc", "tmax"):
                if not ds[name].attrs.get("units"):
                    return f"{name} has no units attribute"
                v = np.asarray(ds[name].values, dtype=float)
                if np.any(np.isinf(v)) or np.any(v[np.isfinite(v)] < 0):
                    return f"{name} has infinite or negative values"
            continue
        if "concentration" not in ds:
            return "no concentration variable"
        c = ds.concentration
        if c.attrs.get("units") != "ng/mL":
            return f"concentration units attribute is {c.attrs.get('units')!r}"
        v = np.asarray(c.values, dtype=float)
        if "scenario" in c.dims:  # padding: analytes or subjects one scenario lacks
            v = np.moveaxis(v, c.dims.index("scenario"), 0)
            keep = [x[~np.all(np.isnan(x), axis=(1, 2))] for x in v]
            keep = [x[:, ~np.all(np.isnan(x), axis=(0, 2))] for x in keep]
            v = np.concatenate([x.ravel() for x in keep]) if keep else v
        if v.size and not np.all(np.isfinite(v)):
            return f"{int(np.sum(~np.isfinite(v)))} non-finite concentrations"
        if v.size and np.min(v) < -1e-9 * max(1.0, float(np.max(np.abs(v)))):
            return f"negative concentration {np.min(v):.4g} ng/mL"
        if "status" in ds:
            s = np.asarray(ds.status.values, dtype=float)
            s = s[np.isfinite(s)]
            if np.any(s != 0):
                return f"status {sorted(set(s.astype(int).tolist()))}"
        if "time" in ds.coords and ds.time.attrs.get("units") not in ("h", None):
            return f"time units {ds.time.attrs.get('units')!r}"
    return None


def classify(case: Case) -> Outcome:
    """Run ``case`` and classify what happened (never raises for a ketasim error;
    KeyboardInterrupt still stops the run)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = case.run()
        except _Timeout:
            return Outcome("timeout", f"no answer in {TIMEOUT_S} s")
        except ResultError as exc:
            return Outcome("invalid-result", str(exc))
        except Exception as exc:  # classified below: only the documented classes pass
            text = f"{type(exc).__name__}: {exc}"
            if not _documented(exc):
                return Outcome("foreign-error", text)
            if case.expect == "valid":
                return Outcome("refused-valid", text)
            if names_field(str(exc), case.fields):
                return Outcome("refused-named", text)
            return Outcome("refused-unnamed", text)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    ws = [f"{w.category.__name__}: {w.message}" for w in caught]
    if case.expect == "invalid":
        return Outcome("silent-acceptance", "accepted", ws)
    problem = check_result(res)
    if problem:
        return Outcome("invalid-result", problem, ws)
    return Outcome("accepted-valid", "", ws)


def _alarm(signum, frame):
    raise _Timeout


# ---------------------------------------------------------------------------------
# shared pieces


@cache
def model(name: str) -> ks.Model:
    return ks.load_model(name)


@cache
def model_dict(name: str) -> dict:
    return tomllib.loads((models_dir() / f"{name}.toml").read_text())


MODELS = tuple(sorted(p.stem for p in models_dir().glob("*.toml")))
TIMES = np.array([0.0, 0.25, 1.0, 3.0, 8.0, 24.0])
NAN, INF = float("nan"), float("inf")


def _fmt_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _get(d, path):
    for p in path:
        d = d[p]
    return d


def _set(d, path, value=None, delete=False):
    d = copy.deepcopy(d)
    node = _get(d, path[:-1])
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


def _leaves(d, path=()):
    """Key paths of every leaf (lists of scalars are leaves)."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _tables(d, path=()):
    """Key paths of every table (dict), the top included."""
    if isinstance(d, dict):
        yield path
        for k, v in d.items():
            yield from _tables(v, (*path, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            if isinstance(v, dict):
                yield from _tables(v, (*path, i))


# numeric mutations: label -> value (a function of the current value)
NUMERIC = {
    "negative": lambda v: -abs(v) if isinstance(v, int | float) and v else -1.0,
    "zero": lambda v: 0 if isinstance(v, int) else 0.0,
    "nan": lambda v: NAN,
    "inf": lambda v: INF,
    "-inf": lambda v: -INF,
    "huge": lambda v: 1e300,
    "tiny": lambda v: 1e-300,
    "1.5": lambda v: 1.5,
    "string": lambda v: "abc",
    "bool": lambda v: True,
    "list": lambda v: [1.0, 2.0],
}
# expectation per numeric category for the mutations that are not always invalid
# (nan, inf, -inf, string, bool and list always are)
_E, _I = "either", "invalid"
CATEGORY = {
    "positive": {"negative": _I, "zero": _I, "huge": _E, "tiny": _E, "1.5": _E},
    "nonnegative": {"negative": _I, "zero": _E, "huge": _E, "tiny": _E, "1.5": _E},
    "fraction": {"negative": _I, "zero": _E, "huge": _I, "tiny": _E, "1.5": _I},
    "correlation": {"negative": _E, "zero": _E, "huge": _I, "tiny": _E, "1.5": _I},
    "finite": {"negative": _E, "zero": _E, "huge": _E, "tiny": _E, "1.5": _E},
    "factor": {"negative": _I, "zero": _E, "huge": _E, "tiny": _E, "1.5": _E},
    "plausible": {"negative": _I, "zero": _E, "huge": _I, "tiny": _E, "1.5": _E},
    "flag": {"negative": _I, "zero": _E, "huge": _I, "tiny": _I, "1.5": _I},
    "version": {"negative": _I, "zero": _I, "huge": _I, "tiny": _I, "1.5": _I},
    # whole numbers >= 1 (floats are refused); no "huge": 1e300 compartments or
    # patients would only measure memory
    "count": {"negative": _I, "zero": _I, "tiny": _I, "1.5": _I},
    "whole": {"negative": _E, "zero": _E, "huge": _I, "tiny": _I, "1.5": _I},
    "seed": {"negative": _I, "zero": _E, "huge": _I, "tiny": _I, "1.5": _I},
}


def numeric_expect(category: str, mutation: str) -> str | None:
    """Expectation of ``mutation`` on a number of ``category``; None: not generated."""
    table = CATEGORY[category]
    if mutation in ("nan", "inf", "-inf", "string", "bool", "list"):
        return _I
    return table.get(mutation)


# ---------------------------------------------------------------------------------
# doses

DOSE_FIELDS = ("amount", "route", "time", "duration", "salt", "device")


@st.composite
def doses(draw):
    """One Dose on domino (iv, intranasal) or perez_ruixo_2021 (intranasal 28-mg
    devices), at most one field invalid, simulated."""
    mname = draw(st.sampled_from(["domino", "perez_ruixo_2021"]))
    m = model(mname)
    route = draw(st.sampled_from(sorted(m.routes)))
    device_route = m.routes[route].device_mg is not None
    iv = m.routes[route].intravenous
    bad = draw(st.sampled_from((None, *DOSE_FIELDS)))
    expect = "valid"
    # valid choices
    if device_route:
        amount = draw(st.sampled_from(["28 mg", (28, "mg"), Quantity(28.0, "mg")]))
    else:
        num = draw(st.floats(0.0, 100.0, allow_nan=False))
        unit = draw(st.sampled_from(["mg", "mg/kg"]))
        if unit == "mg/kg":
            num = num / 50
        amount = draw(
            st.sampled_from([f"{num!r} {unit}", (num, unit), Quantity(num, unit)])
        )
    time = draw(st.sampled_from([0.0, 1.5, "90 min", "1 d", (2, "h"), "0.5 h"]))
    duration = draw(st.sampled_from([None, "40 min", 0.5, (1, "h")])) if iv else None
    salt = draw(st.sampled_from(["base", "hcl"])) if not device_route else "base"
    # one Dose alone is device 1 of its session: a later device needs the ones
    # before it within the hour
    device = 1 if device_route else None
    route_arg = route
    if bad == "amount":
        amount, expect = draw(
            st.sampled_from(
                [
                    ("-5 mg", _I),
                    ("nan mg", _I),
                    ("inf mg", _I),
                    (35, _I),
                    (35.0, _I),
                    ("35 mL", _I),
                    ("35 min", _I),
                    ("35 kg", _I),
                    ("lots", _I),
                    (None, _I),
                    (True, _I),
                    ([35, "mg"], _I),
                    ((NAN, "mg"), _I),
                    ((-1, "mg/kg"), _I),
                    ("1e307 mg", _E),
                    ("35 mg/L", _I),
                    ("35", _I),
                    ((35, "L"), _I),
                    ("0.5 mg/kg/h", _I),
                    (("5 min", "mg"), _I),
                    ((35, 3), _I),
                    (Quantity("abc", "mg"), _I),
                    (Quantity(35.0, "furlong"), _I),
                    ("35 furlongs", _I),
                    ("35 mg extra", _I),
                    ((35, "mg/kg/kg"), _I),
                ]
            )
        )
    elif bad == "route":
        route_arg, expect = draw(
            st.sampled_from([("rectal", _I), ("", _I), (None, _I), (3, _I), ("IV", _I)])
        )
    elif bad == "time":
        time, expect = draw(
            st.sampled_from(
                [
                    (-1.0, _I),
                    ("-2 h", _I),
                    (NAN, _I),
                    (INF, _I),
                    ("3 kg", _I),
                    ("soon", _I),
                    (None, _I),
                    (True, _I),
                    ("1e300 h", _E),
                    ((1, "mg"), _I),
                ]
            )
        )
    elif bad == "duration":
        duration, expect = draw(
            st.sampled_from(
                [
                    (0.0, _I),
                    (-0.5, _I),
                    ("-40 min", _I),
                    (NAN, _I),
                    (INF, _I),
                    ("40 mg", _I),
                    ("quick", _I),
                    (True, _I),
                    ("1e-300 h", _E),
                ]
            )
        )
        if not iv and duration is not None:
            expect = _I  # a duration on an extravascular route
    elif bad == "salt":
        salt, expect = draw(
            st.sampled_from(
                [("HCL", _E), ("sulfate", _I), ("", _I), (None, _I), (1, _I)]
            )
        )
    elif bad == "device":
        if device_route:
            device, expect = draw(
                st.sampled_from(
                    [
                        (None, _I),
                        (0, _I),
                        (-1, _I),
                        (1.5, _I),
                        (True, _I),
                        ("1", _I),
                        (2, _I),
                        (3, _I),
                    ]
                )
            )
        else:
            device, expect = draw(st.sampled_from([(1, _I), (2, _I), (0, _I)]))
    kw = {
        "route": route_arg,
        "time": time,
        "duration": duration,
        "salt": salt,
        "device": device,
    }
    label = f"simulate({mname!r}, Dose({amount!r}, **{kw!r}))"

    def run():
        d = ks.Dose(amount, **kw)
        return ks.simulate(m, d, times=TIMES + d.time)

    area = (
        "dosing.py / _lower.check_routes"
        if bad in ("device", "route")
        else "dosing.py / units.py"
    )
    fields = (bad,) if bad else DOSE_FIELDS
    if bad == "amount" and device_route:  # "takes one 28-mg device per Dose; got
        fields = ("amount", "device")  # ... mg" is about the amount
    return Case("doses", label, run, fields, expect, area)


# ---------------------------------------------------------------------------------
# regimens and protocols


@st.composite
def regimens(draw):
    """Regimen constructors and protocol builders, one argument possibly invalid."""
    kind = draw(
        st.sampled_from(
            ["list", "every", "at", "then", "six", "boosters", "clinic", "induction"]
        )
    )
    bad = draw(st.booleans())
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl")
    mname = "domino"
    if kind == "list":
        times = draw(
            st.lists(st.floats(0, 72, allow_nan=False), min_size=1, max_size=4)
        )
        amounts = [f"{draw(st.integers(1, 50))} mg" for _ in times]
        if not bad:
            times = sorted(times)
        expect = _I if bad and times != sorted(times) else "valid"
        field_ = ("doses", "order")
        pairs = list(zip(amounts, times, strict=True))
        label = f"Regimen([Dose.bolus(a, time=t) for a, t in {pairs}])"

        def build():
            return ks.Regimen([ks.Dose.bolus(a, time=t) for a, t in pairs])
    elif kind == "every":
        n = draw(st.integers(1, 5))
        interval = draw(st.sampled_from(["12 h", 6, "1 d", (30, "min")]))
        expect = "valid"
        field_ = ("n", "interval")
        if bad:
            which = draw(st.sampled_from(["n", "interval"]))
            field_ = (which,)
            if which == "n":
                n = draw(st.sampled_from([0, -1, 1.5, True, "3", None]))
            else:
                interval = draw(
                    st.sampled_from([0, -6, "0 h", "1 mg", NAN, INF, "weekly", None])
                )
            expect = _I
        label = f"Regimen.every(dose, interval={interval!r}, n={n!r})"

        def build():
            return ks.Regimen.every(d, interval=interval, n=n)
    elif kind == "at":
        times = sorted(  # distinct: Regimen.at refuses a time twice
            draw(
                st.lists(
                    st.sampled_from([0, 1.5, 12, 24, 72]),
                    min_size=1,
                    max_size=4,
                    unique=True,
                )
            )
        )
        unit = draw(st.sampled_from(["h", "d", "min"]))
        expect, field_ = "valid", ("times", "unit")
        if bad:
            which = draw(st.sampled_from(["times", "unit"]))
            field_ = (which,)
            if which == "times":
                times = [*times, draw(st.sampled_from([-1, NAN, INF, "x", None]))]
            else:
                unit = draw(st.sampled_from(["mg", "fortnight", "", 3]))
            expect = _I
        label = f"Regimen.at({times!r}, dose, unit={unit!r})"

        def build():
            return ks.Regimen.at(times, d, unit=unit)
    elif kind == "then":
        after = draw(st.sampled_from([0, "3 d", 12.0]))
        expect, field_ = "valid", ("after",)
        if bad:
            after, expect = draw(
                st.sampled_from(
                    [
                        (-1, _E),
                        ("-3 d", _E),
                        (NAN, _I),
                        ("3 mg", _I),
                        ("later", _I),
                        (None, _I),
                    ]
                )
            )
        label = (
            f"six_infusion_course(sessions=1).then(boosters(count=1), after={after!r})"
        )

        def build():
            return ks.six_infusion_course(sessions=1).then(
                ks.boosters(count=1), after=after
            )
    elif kind == "six":
        kw = {
            "dose": "0.5 mg/kg",
            "duration": "40 min",
            "sessions_per_week": 2,
            "sessions": 2,
        }
        expect, field_ = "valid", tuple(kw)
        if bad:
            key, val = draw(
                st.sampled_from(
                    [
                        ("dose", "-0.5 mg/kg"),
                        ("dose", "0.5 mL/kg"),
                        ("dose", 0.5),
                        ("duration", "0 min"),
                        ("duration", "-40 min"),
                        ("duration", "4 mg"),
                        ("sessions", 0),
                        ("sessions", -1),
                        ("sessions", 1.5),
                        ("sessions", True),
                        ("sessions_per_week", 0),
                        ("sessions_per_week", 8),
                        ("sessions_per_week", "2"),
                    ]
                )
            )
            kw[key] = val
            field_, expect = (key,), _I
        label = f"six_infusion_course(**{kw!r})"

        def build():
            return ks.six_infusion_course(**kw)
    elif kind == "boosters":
        kw = {"every": "2 weeks", "count": 2}
        expect, field_ = "valid", tuple(kw)
        if bad:
            key, val = draw(
                st.sampled_from(
                    [
                        ("every", "0 d"),
                        ("every", "-1 week"),
                        ("every", "2 mg"),
                        ("every", NAN),
                        ("count", 0),
                        ("count", -2),
                        ("count", 2.5),
                        ("count", True),
                    ]
                )
            )
            kw[key] = val
            field_, expect = (key,), _I
        label = f"boosters(**{kw!r})"

        def build():
            return ks.boosters(**kw)
    elif kind == "clinic":
        kw = {"sessions_per_week": 2, "sessions": 2}
        expect, field_ = "valid", tuple(kw)
        if bad:
            key, val = draw(
                st.sampled_from(
                    [
                        ("sessions", 0),
                        ("sessions", 1.5),
                        ("sessions_per_week", 0),
                        ("sessions_per_week", 9),
                        ("clock", "25:00"),
                        ("clock", "noonish"),
                        ("clock", "-1 h"),
                    ]
                )
            )
            kw[key] = val
            field_, expect = (key,), _I
        label = f"clinic_course(Dose.bolus('35 mg'), **{kw!r})"

        def build():
            return ks.clinic_course(ks.Dose.bolus("35 mg"), **kw)
    else:
        mname = "perez_ruixo_2021"
        kw = {"dose": "56 mg", "first_dose": "56 mg", "weeks": 1}
        expect, field_ = "valid", tuple(kw)
        if bad:
            key, val = draw(
                st.sampled_from(
                    [
                        ("dose", "50 mg"),
                        ("dose", "-56 mg"),
                        ("dose", "56 mL"),
                        ("first_dose", "0 mg"),
                        ("weeks", 0),
                        ("weeks", -1),
                        ("weeks", 1.5),
                        ("device_interval", "-5 min"),
                        ("device_interval", "5 mg"),
                        ("maintenance_every", "0 d"),
                    ]
                )
            )
            kw[key] = val
            field_, expect = (key,), _I
        label = f"esketamine_induction(**{kw!r})"

        def build():
            return ks.esketamine_induction(**kw)

    def run():
        reg = build()
        end = max((x.time + (x.duration or 0.0) for x in reg.doses), default=0.0)
        return ks.simulate(mname, reg, times=np.linspace(0.0, end + 12.0, 40))

    return Case("regimens", label, run, field_, expect, "dosing.py / protocols.py")


# ---------------------------------------------------------------------------------
# simulate arguments: subjects, population, solver and output nouns, times

COVARIATES = {  # name -> (valid values, invalid values)
    "weight": (
        [70.0, 45, np.array([60.0, 80.0])],
        [-70.0, 0.0, 1e300, NAN, "70 kg", np.array([60.0, -1.0]), 5000.0],
    ),
    "age": ([40.0, 18, 80.0], [-5.0, 1e300, NAN, "40 y", 400.0]),
    "height": ([170.0, 155.0], [-170.0, 0.0, 1e300, "170 cm", 3000.0]),
    "bmi": ([24.0, 31.0], [-24.0, 0.0, 1e300, "24"]),
    "female": ([0, 1, np.array([0, 1])], [2, -1, 0.5, "yes", np.array([0, 3])]),
}
#: plausible human covariate ranges (age y, height cm, weight kg, BMI kg/m2): a
#: number outside is an error, inside may only warn (ValidityWarning)
PLAUSIBLE = {
    "age": (0.0, 120.0),
    "height": (30.0, 250.0),
    "weight": (0.3, 400.0),
    "bmi": (8.0, 100.0),
}
PARAMETERS = {  # domino: valid and invalid overrides per parameter
    "k10": (
        ["26.3 1/h", (26.3, "1/h"), "0.4381 1/min", Quantity(26.3, "1/h")],
        ["-26 1/h", "26 L/h", "nan 1/h", "fast", (26.3, "mg"), "0 1/h"],
    ),
    "V1": (
        ["4.41 L", (4.4, "L"), "0.063 L/kg"],
        ["-4.41 L", "0 L", "4 1/h", "4.41 kg", "inf L"],
    ),
    "F_IN": (["0.5 1", 0.5], [1.5, -0.1, "50 L", NAN]),
}
#: fields of the option nouns: noun -> field -> (valid values, invalid values)
OPTIONS = {
    "ODE": {
        "rtol": (
            [1e-6, 1e-8, np.float64(1e-4)],
            [0.0, 1.0, -1e-6, NAN, INF, "1e-6", True, None, 1e-20],
        ),
        "atol": ([1e-9, 1e-12], [0.0, -1e-9, INF, NAN, "1e-9", False]),
        "method": (["auto", "dopri5", "rosenbrock"], ["rk45", "Dopri5", 1, None]),
        # a valid count that is small enough to stop the solver is a failure the
        # result reports (status), not an input error: valid counts are large
        "max_steps": ([100_000, np.int64(20_000)], [0, -5, 2.5, True, "100", 1e300]),
    },
    "Trajectories": {
        "amounts": ([True, False, np.True_], ["yes", "no", 1, 0, None]),
        "auc": ([True, False, np.False_], ["yes", "no", 1, 0, None]),
        # domino has no residual error model: True is refused, by name
        "residual": ([False], ["yes", 1, None, True]),
        "dose_windows": ([True, False], ["no", 0, None]),
        "out": (["buffer"], [[0.0] * 6, "wrong shape", "float32", "with auc"]),
    },
    "Metrics": {
        "above": (
            [None, 10, 10.5, "0.1 mg/L", np.float64(20)],
            [-5, NAN, INF, "400 nmol/L", "100 min", [50, 100], "high"],
        ),
        "chunk": ([1, 1000, np.int64(7)], [0, -1, 2.5, True, "10", None]),
    },
}
#: a wrong noun (or a keyword that moved into one) for each argument of simulate
WRONG = {
    "solver": ["ode", "exact", "auto", ks.Trajectories(), 1],
    "output": ["metrics", "trajectories", ks.Exact(), 0, {"above": 10}],
    "subjects": [{"weight": 70.0}, ks.Population(3, seed=1), [70.0]],
    "moved": [
        ("rtol", 1e-6),
        ("atol", 1e-9),
        ("ode_method", "dopri5"),
        ("max_steps", 10),
        ("amounts", True),
        ("auc", True),
        ("residual", True),
        ("out", None),
        ("dose_windows", False),
        ("above", 10),
        ("chunk", 10),
        ("covariates", {"weight": 70.0}),
        ("parameters", {"k10": "26 1/h"}),
    ],
}


@dataclass(frozen=True)
class Noun:
    """A configuration noun to build inside the case's run (so a refusal at
    construction is classified like any other), printed as the call to write."""

    name: str
    kw: dict

    def __repr__(self) -> str:
        return (
            f"ks.{self.name}("
            + ", ".join(f"{k}={v!r}" for k, v in self.kw.items())
            + ")"
        )

    def build(self):
        return getattr(ks, self.name)(**self.kw)


def _out_buffer(kind: str, n_times: int):
    """The ``out`` field's values: a fitting buffer or a wrong one."""
    if kind == "wrong shape":
        return np.empty((1, 1, n_times + 1))
    if kind == "float32":
        return np.empty((1, 1, n_times), dtype=np.float32)
    return np.empty((1, 1, n_times))


def _option(draw, call, bad):
    """A solver or output noun with one field drawn (valid, or invalid when
    ``bad``); returns the field's name and the area that owns it."""
    noun = draw(st.sampled_from(sorted(OPTIONS)))
    key = draw(st.sampled_from(sorted(OPTIONS[noun])))
    good, wrong = OPTIONS[noun][key]
    v = draw(st.sampled_from(wrong if bad else good))
    if noun == "ODE" and key in ("rtol", "atol") and draw(st.booleans()):
        # a drawn number instead: rtol in (0, 1), atol finite and > 0 (mg)
        wrong = (
            st.one_of(st.floats(-1e3, 0.0), st.floats(1.0, 1e6))
            if key == "rtol"
            else st.floats(-1e3, 0.0)
        )
        v = draw(wrong if bad else st.floats(1e-10, 1e-3))
    kw = {key: v}
    if key == "out":
        if v == "with auc":  # a buffer holds concentrations only
            kw = {"out": _out_buffer("buffer", TIMES.size), "auc": True}
        elif isinstance(v, str):
            kw = {"out": _out_buffer(v, TIMES.size)}
    target = "solver" if noun == "ODE" else "output"
    call[target] = Noun(noun, kw)
    return (key,), "options.py" if bad else "simulate.py"


def _wrong_argument(draw, call):
    """A value of the wrong kind for solver, output or subjects, a keyword that
    moved into a noun, or subjects together with a population."""
    which = draw(st.sampled_from([*sorted(WRONG), "both"]))
    if which == "both":
        call["population"] = Noun("Population", {"n": 3, "seed": 1})
        call["subjects"] = Noun("Subjects", {"covariates": {"weight": 70.0}})
        return ("subjects",)
    v = draw(st.sampled_from(WRONG[which]))
    if which == "moved":
        call[v[0]] = v[1]
        return (v[0],)
    call[which] = v
    return (which,)


@st.composite
def simulate_args(draw):
    """The arguments of simulate: covariates and parameter overrides (ks.Subjects),
    Population fields, the fields of the solver and output nouns, output times, and
    arguments of the wrong kind, one of them possibly invalid."""
    what = draw(
        st.sampled_from(
            ["covariate", "parameter", "population", "option", "wrong", "times"]
        )
    )
    bad = what == "wrong" or draw(st.booleans())
    dose = ks.Dose.bolus("0.5 mg/kg")
    call = {"model": "domino", "regimen": dose, "times": TIMES}
    area = "_subjects.py / population.py"
    if what == "covariate":
        name = draw(st.sampled_from(sorted(COVARIATES)))
        good, wrong = COVARIATES[name]
        v = draw(st.sampled_from(wrong if bad else good))
        if name in PLAUSIBLE and draw(st.booleans()):  # a drawn number instead
            lo, hi = PLAUSIBLE[name]
            # a child's age without a weight is refused (domino's default weight
            # is an adult's), so a valid drawn age is an adult's
            ok_lo = 18.0 if name == "age" else lo
            v = draw(
                st.one_of(
                    st.floats(-1e6, lo, exclude_max=True),
                    st.floats(hi, 1e6, exclude_min=True),
                )
                if bad
                else st.floats(ok_lo, hi)
            )
        call["subjects"] = Noun("Subjects", {"covariates": {name: v}})
        if name == "female":
            call["model"] = "perez_ruixo_2021"
            call["regimen"] = ks.Dose.bolus("20 mg")
        field_ = (name,)
    elif what == "parameter":
        name = draw(st.sampled_from(sorted(PARAMETERS)))
        good, wrong = PARAMETERS[name]
        v = draw(st.sampled_from(wrong if bad else good))
        if name == "k10" and draw(st.booleans()):  # a drawn value with its unit
            x = draw(st.floats(-1e3, 0.0) if bad else st.floats(0.01, 1e3))
            v = draw(st.sampled_from([f"{x!r} 1/h", (x, "1/min")]))
        call["subjects"] = Noun("Subjects", {"parameters": {name: v}})
        if name == "F_IN":
            call["regimen"] = ks.Dose.bolus("20 mg", route="intranasal")
        field_ = (name,)
        area = "_subjects.py (parameter units)"
    elif what == "population":
        kw = {"n": 3, "seed": 1}
        field_ = tuple(kw)
        if bad:
            key, val = draw(
                st.sampled_from(
                    [
                        ("n", 0),
                        ("n", -1),
                        ("n", 2.5),
                        ("n", True),
                        ("seed", -1),
                        ("seed", 1.5),
                        ("female", 1.5),
                        ("female", -0.1),
                        ("female", NAN),
                        ("asian", 2.0),
                        ("age", (-5, 40)),
                        ("age", (40, 18)),
                        ("age", (18, 1e300)),
                        ("age", (NAN, 40)),
                        ("iiv", "no"),
                        ("iov", "yes"),
                        ("iiv", 0),
                        ("iov", None),
                    ]
                )
            )
            kw[key] = val
            field_ = (key,)
        call["model"] = "perez_ruixo_2021"
        call["regimen"] = ks.Dose.bolus("20 mg")
        call["population"] = Noun("Population", kw)
    elif what == "option":
        field_, area = _option(draw, call, bad)
    elif what == "wrong":
        field_ = _wrong_argument(draw, call)
        area = "simulate.py (public arguments)"
    else:
        t = (
            draw(
                st.sampled_from(
                    [
                        [3.0, 1.0],
                        [-1.0, 1.0],
                        [NAN, 1.0],
                        [],
                        "24 h",
                        [[1.0]],
                        ["a", "b"],
                        [0.0, 1e-9, 2e-9],
                    ]
                )
            )
            if bad
            else draw(st.sampled_from([[0.0, 1.0], np.linspace(0, 5, 11), [2.5]]))
        )
        call["times"] = t
        field_ = ("times",)
        area = "_times.py"
    expect = _I if bad else "valid"
    if what == "times" and bad and call["times"] == [0.0, 1e-9, 2e-9]:
        expect = "either"
    label = "simulate(" + ", ".join(f"{k}={v!r}" for k, v in call.items()) + ")"

    def run():
        kw = {k: v.build() if isinstance(v, Noun) else v for k, v in call.items()}
        return ks.simulate(kw.pop("model"), kw.pop("regimen"), **kw)

    return Case("simulate_args", label, run, field_, expect, area)


# ---------------------------------------------------------------------------------
# metrics arguments


@cache
def _curves():
    """Two sessions on domino, every 30 min for 5 days (computed once)."""
    return ks.simulate(
        "domino", ks.six_infusion_course(sessions=2), times=ks.grid("5 d", "30 min")
    )


METRICS_ARGS = {  # argument -> (valid values, invalid values)
    "per": (["dose", "session", "course"], ["week", 1, None, "Session"]),
    "above": (
        [None, 10, 10.5, "0.1 mg/L", "400 nmol/L", np.float64(20)],
        [-1, NAN, INF, "100 min", "high", True, "10 ng/mL/kg", [10, 20]],
    ),
    "within": (
        [(10, 100), ("10 ng/mL", "0.1 mg/L")],
        [(100, 10), (NAN, 1), (1,), "10-100", (10, "1 h"), (-5, 10)],
    ),
    "unit": (["ng/mL", "nmol/L"], ["mg/L", "nM", 3, "ng/ml/kg", None]),
}


@st.composite
def metrics_args(draw):
    """ks.metrics on a simulated result with one argument possibly invalid; also
    ks.pta thresholds and molar curves (ds.pk.molar()) fed to metrics."""
    kw = {"per": "session"}
    what = draw(st.sampled_from([*METRICS_ARGS, "pta", "molar input"]))
    bad = draw(st.booleans())
    expect = _I if bad else "valid"
    fields: tuple = (what,)
    if what in METRICS_ARGS:
        good, wrong = METRICS_ARGS[what]
        kw[what] = draw(st.sampled_from(wrong if bad else good))
        label = f"ks.metrics(ds, **{kw!r})"

        def run():
            m = ks.metrics(_curves(), **kw)
            if kw.get("unit") == "nmol/L":  # the ng/mL values / MW (g/mol) * 1000
                ng = ks.metrics(_curves(), per=kw["per"])
                mw = _curves().molecular_weight
                for name, unit in (("cmax", "nmol/L"), ("auc", "nmol*h/L")):
                    if m[name].attrs.get("units") != unit:
                        raise ResultError(
                            f"{name} labelled "
                            f"{m[name].attrs.get('units')!r}, not {unit}"
                        )
                    want = (ng[name] / mw * 1000.0).values
                    if not np.allclose(
                        m[name].values, want, rtol=1e-12, equal_nan=True
                    ):
                        raise ResultError(
                            f"{name} in nmol/L is not the ng/mL value / MW x 1000"
                        )
            elif m.cmax.attrs.get("units") != "ng/mL":
                raise ResultError(f"cmax labelled {m.cmax.attrs.get('units')!r}")
            return m
    elif what == "pta":
        thr = draw(
            st.sampled_from(["-1 ng/mL", NAN, "1 h", "x", True])
            if bad
            else st.sampled_from([100, "100 ng/mL", "0.1 mg/L"])
        )
        fields = ("threshold",)
        label = f"ks.pta(ks.metrics(ds).cmax, {thr!r})"

        def run():
            ks.pta(ks.metrics(_curves()).cmax, thr)
            return None
    else:
        expect, fields = _I, ("concentration", "ng/mL", "nmol/L")
        label = "ks.metrics(ds.pk.molar())"

        def run():
            return ks.metrics(_curves().pk.molar())

    return Case("metrics_args", label, run, fields, expect, "metrics.py")


# ---------------------------------------------------------------------------------
# the command line


class CliOutputError(Exception):
    """``ketasim`` printed a traceback or more than one line for an error, or raised
    (not a documented error class: a defect)."""


CLI_FLAGS = {  # flag -> (valid values, invalid values, names a message may use)
    "--dose": (
        ["35 mg", "0.5 mg/kg"],
        ["-5 mg", "5 parsecs", "5", "lots", "nan mg", "5 mL"],
        ("--dose", "dose", "amount"),
    ),
    "--duration": (
        ["40 min", "1 h"],
        ["0 min", "-40 min", "40 mg", "soon", "40"],
        ("--duration", "duration"),
    ),
    "--route": (["iv", "intranasal"], ["rectal", ""], ("--route", "route")),
    "--salt": (["base", "hcl"], ["sulfate", ""], ("--salt", "salt")),
    "--device": ([], ["1", "0", "-1", "x"], ("--device", "device")),
    "--every": (
        ["12 h", "1 d"],
        ["0 h", "-1 d", "1 mg", "often", "12"],
        ("--every", "every", "interval"),
    ),
    "--count": (["2", "3"], ["0", "-1", "1.5", "x"], ("--count", "count")),
    "--n": (["2", "5"], ["0", "-3", "2.5", "x"], ("--n", "n must", "patients")),
    "--seed": (["0", "7"], ["-1", "x"], ("--seed", "seed")),
    "--horizon": (
        ["6 h", "1 d"],
        ["-1 h", "0 h", "1 kg", "x", "nan h", "24"],
        ("--horizon", "horizon"),
    ),
    "--step": (
        ["30 min", "1 h"],
        ["0 min", "-5 min", "5 kg", "1e-9 h", "5"],
        ("--step", "step"),
    ),
    "--model": (
        ["domino", "clements_nimmo_1981"],
        ["nope", "", "."],
        ("--model", "model"),
    ),
}


@st.composite
def cli_args(draw):
    """``ketasim simulate`` with one flag possibly invalid: exit 0, or exit 1/2 with
    one line ``ketasim: error: ...`` naming the flag."""
    argv = {
        "--model": "domino",
        "--dose": "35 mg",
        "--n": "3",
        "--seed": "1",
        "--horizon": "6 h",
        "--step": "30 min",
    }
    flag = draw(st.sampled_from(sorted(CLI_FLAGS)))
    good, wrong, fields = CLI_FLAGS[flag]
    bad = draw(st.booleans()) or not good
    argv[flag] = draw(st.sampled_from(wrong if bad else good))
    if flag == "--duration" and not bad:
        argv["--dose"] = "0.5 mg/kg"
    if flag in ("--every", "--count"):  # they go together
        argv.setdefault("--every", "12 h")
        argv.setdefault("--count", "2")
    expect = _I if bad else "valid"
    line = ["simulate"] + [x for k, v in argv.items() for x in (k, v)]
    if argv["--model"] == "domino":  # no IIV: typical patients, said so
        line.append("--no-iiv")

    def run():
        import contextlib
        import io

        from ketasim.cli import main

        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(line)
        except SystemExit as exc:  # argparse outside the one-line path
            raise CliOutputError(f"SystemExit {exc.code}: {err.getvalue()!r}") from None
        except Exception as exc:
            raise CliOutputError(
                f"ketasim raised {type(exc).__name__}: {exc}"
            ) from None
        text = err.getvalue().strip()
        if rc == 0:
            return None
        if len(text.splitlines()) != 1 or not text.startswith("ketasim: error: "):
            raise CliOutputError(f"exit {rc} with stderr {text[:300]!r}")
        raise ValueError(text)

    return Case(
        "cli_args",
        "ketasim " + " ".join(repr(x) if " " in x or not x else x for x in line),
        run,
        fields,
        expect,
        "cli.py",
    )


# ---------------------------------------------------------------------------------
# model-file mutations

FREE_TEXT = {
    "description",
    "source",
    "citation",
    "note",
    "long_name",
    "name",
    "population",
    "doi",
    "title",
    "above_one",
}
ENUMS = {
    "drug",
    "enantiomer",
    "sampling",
    "grade",
    "kind",
    "role",
    "distribution",
    "formation",
    "model",
    "per",
    "protocol",
    "salt",
}
NAMED_TABLES = {
    "parameters",
    "compartments",
    "routes",
    "analytes",
    "variability",
    "covariates",
    "residual",
    "validity",
}


def _fraction_parameters(d: dict) -> set[str]:
    out = set()
    for f in d.get("flows", []):
        if isinstance(f.get("fraction"), str):
            out.add(f["fraction"])
    for r in d.get("routes", {}).values():
        for pw in [r, *r.get("pathways", [])]:
            for key in ("fraction", "later_devices"):
                if isinstance(pw.get(key), str) and pw[key] != "rest":
                    out.add(pw[key])
    return out


def model_category(d: dict, path: tuple) -> str | None:
    """The numeric category of the number at ``path`` in a model dict."""
    top, leaf = path[0], path[-1]
    if path == ("schema_version",):
        return "version"
    if top == "parameters" and leaf == "value":
        unit = d["parameters"][path[1]]["unit"]
        try:
            dim = ks.units.parse_unit(unit).dimension
        except ks.UnitError:
            return "finite"
        if dim == "dimensionless":
            if "above_one" in d["parameters"][path[1]]:  # an apparent fraction the
                return "nonnegative"  # file lets exceed 1, with its reason
            return "fraction" if path[1] in _fraction_parameters(d) else "finite"
        return "positive"
    if top in ("variability", "residual"):
        return "nonnegative"
    if top == "analytes" and leaf == "mw":
        return "positive"
    if top == "covariates" and leaf == "reference":
        return "flag" if path[1] in ("female", "asian", "japanese") else "plausible"
    if top == "covariate_effects":
        eff = d["covariate_effects"][path[1]]
        if leaf == "reference":
            return "positive" if eff.get("model") == "power" else "finite"
        return "factor" if leaf == "factor" else "finite"
    if top == "correlations":
        return "correlation" if leaf == "correlation" else "finite"
    if top == "time_effects":
        return "finite"
    if top == "compartments" and leaf == "count":
        return "count"
    if top == "references" and leaf == "year":
        return "whole"
    return "finite"


def _field_names(path: tuple) -> tuple[str, ...]:
    """Names a message may use for the field at ``path``: the key path, the table's
    entry name (a parameter, compartment, route ... name) and a distinctive leaf."""
    names = [_fmt_path(path)]
    if len(path) > 1:
        names.append(
            _fmt_path(path[:-1])
            if isinstance(path[-1], str) and path[-1] in ("value",)
            else ""
        )
    if path[0] in NAMED_TABLES and len(path) > 1:
        names.append(str(path[1]))
    ints = [i for i, p in enumerate(path) if isinstance(p, int)]
    if ints:
        names.append(_fmt_path(path[: ints[-1] + 1]))
    leaf = path[-1]
    if isinstance(leaf, str) and leaf not in {
        "value",
        "unit",
        "source",
        "to",
        "from",
        "target",
        "kind",
        "model",
        "reference",
        "parameters",
        "description",
        "key",
    }:
        names.append(leaf)
    return tuple(n for n in names if n)


def _string_mutations(d: dict, path: tuple, value) -> list[tuple[str, object, str]]:
    leaf = path[-1]
    if leaf in FREE_TEXT:
        return [("number", 3, _I), ("empty", "", _E), ("other text", "zzz", _E)]
    if leaf == "id":
        return [("number", 3, _I), ("other id", "zzz", _E)]
    if leaf == "unit":
        return [
            ("unknown unit", "1/fortnight", _I),
            ("number", 1, _I),
            ("wrong dimension", "mg", _I),
            ("empty", "", _I),
            ("per kg", "L/kg", _E),
        ]
    if leaf == "additive_unit":
        return [("unknown unit", "furlong", _I), ("wrong dimension", "min", _I)]
    if leaf == "device":
        return [
            ("negative", "-28 mg", _I),
            ("zero", "0 mg", _I),
            ("time", "28 min", _I),
            ("number", 28, _I),
            ("nan", "nan mg", _I),
            ("huge", "1e300 mg", _E),
        ]
    if leaf == "fraction":  # a parameter name or a number in [0, 1] ("rest" too)
        return [
            ("undefined", "zzz", _I),
            ("number 0.5", 0.5, _E),
            ("number 1.5", 1.5, _I),
            ("number -0.5", -0.5, _I),
            ("nan", NAN, _I),
            ("inf", INF, _I),
        ]
    if leaf == "key":  # a renamed key breaks the entries citing it: they are named
        return [("number", 3, _I), ("other key", "zzz-renamed", _E)]
    return [("number", 3, _I), ("empty", "", _I), ("undefined", "zzz", _I)]


def _model_mutations(d: dict):
    """Every (path, label, value-or-delete, expect) for model dict ``d``."""
    out = []
    for path in _leaves(d):
        v = _get(d, path)
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            cat = model_category(d, path)
            for mut, fn in NUMERIC.items():
                e = numeric_expect(cat, mut)
                if e is not None:
                    out.append((path, mut, fn(v), e))
        elif isinstance(v, str):
            out += [
                (path, lab, val, e) for lab, val, e in _string_mutations(d, path, v)
            ]
        elif isinstance(v, list) and path[0] == "validity":
            lo, hi = v
            for i in (0, 1):
                for mut in ("negative", "nan", "inf", "huge", "string"):
                    new = list(v)
                    new[i] = NUMERIC[mut](v[i])
                    ok = (
                        all(
                            isinstance(x, int | float)
                            and not isinstance(x, bool)
                            and math.isfinite(x)
                            for x in new
                        )
                        and new[0] <= new[1]
                    )
                    out.append(((*path, i), mut, new, _E if ok else _I))
            out.append((path, "swapped", [hi, lo], _I if lo < hi else _E))
            out.append((path, "three values", [lo, hi, hi], _I))
        elif isinstance(v, list) and path[0] == "correlations":
            out.append((path, "unknown parameter", ["zzz", v[1]], _I))
            out.append((path, "same parameter twice", [v[0], v[0]], _I))
        out.append((path, "removed", None, _E))
    for path in _tables(d):
        out.append(((*path, "colour"), "unknown key", "blue", _I))
    return out


def _non_psd(d: dict):
    """Three pairwise correlations no covariance matrix has (0.9, 0.9, -0.9)."""
    names = [
        p
        for p, v in d.get("variability", {}).items()
        if any(k in v for k in ("cv", "omega", "omega2"))
    ]
    if len(names) < 3:
        return None
    a, b, c = names[:3]
    new = copy.deepcopy(d)
    new["correlations"] = [
        {"parameters": [a, b], "correlation": 0.9, "source": "t"},
        {"parameters": [a, c], "correlation": 0.9, "source": "t"},
        {"parameters": [b, c], "correlation": -0.9, "source": "t"},
    ]
    return new


@cache
def _all_model_mutations(name: str):
    d = model_dict(name)
    out = _model_mutations(d)
    if _non_psd(d) is not None:
        out.append((("correlations",), "not positive semi-definite", "non-psd", _I))
    return tuple(out)


def _model_regimen(m: ks.Model) -> ks.Regimen:
    """One dose on every route of ``m`` (a device dose on device routes)."""
    out = []
    for k, (rname, r) in enumerate(sorted(m.routes.items())):
        if r.device_mg is not None:
            out.append(
                ks.Dose.bolus(
                    f"{r.device_mg!r} mg", route=rname, time=2.0 * k, device=1
                )
            )
        else:
            out.append(ks.Dose.bolus("0.3 mg/kg", route=rname, time=2.0 * k))
    return ks.Regimen(out)


def predictable(m: ks.Model, reg: ks.Regimen) -> ks.Model:
    """``m`` without the analytes it refuses after ``reg``'s routes (fanta_2015:
    S-norketamine after oral doses), so every route can be exercised."""
    from ketasim.routes import refused_analytes

    drop = sorted({a for d in reg.doses for a in refused_analytes(m, d.route)})
    return m.without_analytes(*drop) if drop else m


def _simulate_model(m: ks.Model):
    reg = _model_regimen(m)
    m = predictable(m, reg)
    times = np.linspace(0.0, reg.doses[-1].time + 24.0, 25)
    iiv = any(v.omega > 0 for v in m.variability)  # else refused (no IIV)
    pop = (
        ks.Population(3, seed=1, iiv=iiv)
        if m.variability or m.covariate_effects
        else None
    )
    return ks.simulate(m, reg, times=times, population=pop)


@st.composite
def model_mutations(draw):
    """One field of one bundled model's TOML dict mutated, loaded with
    ``model_from_dict`` and simulated on every route of the model."""
    name = draw(st.sampled_from(MODELS))
    muts = _all_model_mutations(name)
    path, label, value, expect = draw(st.sampled_from(muts))
    d = model_dict(name)
    if value == "non-psd":
        new = _non_psd(d)
    else:
        new = _set(d, path, value, delete=label == "removed")
    if label == "removed":
        fields = (str(path[-1]), _fmt_path(path))
    else:
        fields = _field_names(path)
    if value == "zzz-renamed":
        fields = (*fields, value)
    shown = "<deleted>" if label == "removed" else repr(value)
    area = "modelfile.py / model.py"

    def run():
        return _simulate_model(ks.model_from_dict(new))

    return Case(
        "model_mutations",
        f"{name}: {_fmt_path(path)} = {shown} ({label})",
        run,
        fields,
        expect,
        area,
    )


# ---------------------------------------------------------------------------------
# scenario-file mutations


def _scenario_bases() -> dict[str, dict]:
    """The example files and a minimal file, made cheap: 3 patients, 3 days."""
    bases = {
        "minimal": {
            "schema_version": 1,
            "output": {"end": "3 d", "step": "1 h"},
            "population": {"n": 3, "seed": 1},
            "scenarios": [
                {
                    "name": "a",
                    "model": "domino",
                    "regimen": {"protocol": "six_infusion_course", "sessions": 1},
                }
            ],
        },
        "doses": {
            "schema_version": 1,
            "output": {"end": "2 d", "step": "30 min", "per": "dose", "above": 10.0},
            "scenarios": [
                {
                    "name": "b",
                    "model": "domino",
                    "regimen": {
                        "protocol": "doses",
                        "doses": [
                            {
                                "amount": "20 mg",
                                "route": "iv",
                                "time": 0,
                                "duration": "30 min",
                                "salt": "hcl",
                            },
                            {
                                "amount": "0.2 mg/kg",
                                "route": "intranasal",
                                "time": "1 d",
                            },
                        ],
                    },
                }
            ],
        },
        "induction": {
            "schema_version": 1,
            "output": {"end": "3 d", "step": "1 h", "per": "session"},
            "population": {
                "n": 2,
                "seed": 3,
                "iiv": True,
                "iov": False,
                "female": 0.5,
                "asian": 0.2,
                "japanese": 0.1,
                "age": [20, 60],
            },
            "scenarios": [
                {
                    "name": "c",
                    "model": "perez_ruixo_2021",
                    "regimen": {
                        "protocol": "esketamine_induction",
                        "weeks": 1,
                        "dose": "56 mg",
                        "device_interval": "5 min",
                    },
                }
            ],
        },
    }
    for p in sorted(EXAMPLES.glob("*.toml")):
        d = tomllib.loads(p.read_text())
        d["output"].update({"end": "3 d", "step": "1 h"})
        if "population" in d:
            d["population"]["n"] = 3
        bases[p.stem] = d
    return bases


SCENARIO_BASES = _scenario_bases()

# scenario keys -> (category, typed mutations) for the string and list values
TIME_BAD = [
    ("negative", "-1 d", _I),
    ("nan", "nan h", _I),
    ("inf", "inf h", _I),
    ("not a time", "1 kg", _I),
    ("text", "abc", _I),
    ("number", 3, _E),
]
AMOUNT_BAD = [
    ("negative", "-0.5 mg/kg", _I),
    ("nan", "nan mg", _I),
    ("volume", "0.5 mL/kg", _I),
    ("text", "abc", _I),
    ("bare", "35", _I),
    ("number", 35, _I),
    ("huge", "1e300 mg", _E),
]


def _scenario_value_mutations(d: dict, path: tuple, v):
    leaf = path[-1]
    if isinstance(v, bool):
        return [("string", "no", _I), ("number", 1, _I), ("zero", 0, _I)]
    if isinstance(v, int | float):
        cat = {
            "schema_version": "version",
            "n": "count",
            "seed": "seed",
            "female": "fraction",
            "asian": "fraction",
            "japanese": "fraction",
            "sessions": "count",
            "sessions_per_week": "count",
            "count": "count",
            "weeks": "count",
            "continuation_weeks": "count",
            "maintenance_sessions": "count",
            "device": "count",
            "window": "whole",
            "above": "nonnegative",
            "time": "nonnegative",
            "after": "nonnegative",
        }.get(leaf, "finite")
        out = []
        for mut, fn in NUMERIC.items():
            e = numeric_expect(cat, mut)
            if e is None:
                continue
            if leaf in ("time", "after") and mut == "huge":
                e = _E
            if leaf == "sessions_per_week" and mut == "huge":
                continue
            out.append((mut, fn(v), e))
        if leaf == "sessions_per_week":
            out.append(("eight a week", 8, _I))
        if leaf in ("n", "count", "sessions", "weeks"):
            out = [o for o in out if o[0] != "huge"]
        return out
    if isinstance(v, list) and leaf == "age":
        return [
            ("negative low", [-5, v[1]], _I),
            ("swapped", [v[1], v[0]], _I),
            ("nan", [NAN, v[1]], _I),
            ("huge high", [v[0], 1e300], _I),
            ("one value", [v[0]], _I),
            ("strings", ["a", "b"], _I),
        ]
    if isinstance(v, list) and leaf == "clock":
        return [("bad hour", ["25:00"], _I), ("text", ["noon"], _I)]
    if isinstance(v, list):
        return []
    if leaf in ("end",):
        return TIME_BAD + [("zero", "0 h", _E)]
    if leaf in ("step", "duration", "every", "device_interval", "maintenance_every"):
        return TIME_BAD + [("zero", "0 min", _I)]
    if leaf in ("time", "after"):
        return [
            ("negative", "-1 d", _I),
            ("not a time", "1 kg", _I),
            ("nan", "nan h", _I),
            ("text", "abc", _I),
        ]
    if leaf in ("amount", "dose", "first_dose", "maintenance_dose") and isinstance(
        v, str
    ):
        return AMOUNT_BAD
    if leaf == "above":
        return [
            ("negative", "-10 ng/mL", _I),
            ("time", "100 min", _I),
            ("molar", "0.4 umol/L", _E),
            ("text", "high", _I),
        ]
    if leaf == "model":
        return [
            ("unknown", "zzz", _I),
            ("number", 3, _I),
            ("missing file", "nope.toml", _I),
            ("empty", "", _I),
            ("directory", ".", _I),
        ]
    if leaf == "clock":
        return [("bad hour", "25:00", _I), ("text", "noon", _I)]
    if leaf in ("title", "name"):
        return [("number", 3, _I), ("other text", "zzz", _E)]
    if leaf == "route":
        return [("unknown", "rectal", _I), ("number", 1, _I), ("empty", "", _I)]
    if leaf in ENUMS | {"analyte"}:
        return [("unknown", "zzz", _I), ("number", 1, _I)]
    return [("number", 3, _I), ("text", "zzz", _I)]


@cache
def _all_scenario_mutations(base: str):
    d = SCENARIO_BASES[base]
    out = []
    for path in _leaves(d):
        v = _get(d, path)
        for label, val, e in _scenario_value_mutations(d, path, v):
            out.append((path, label, val, e))
        out.append((path, "removed", None, _E))
    for path in _tables(d):
        out.append(((*path, "colour"), "unknown key", "blue", _I))
    return tuple(out)


@st.composite
def scenario_mutations(draw):
    """One key of a scenario file (the examples and three small files) mutated,
    written as TOML, loaded with ``load_scenarios`` and run with ``run_scenarios``
    and ``compare`` as ``ketasim run`` does."""
    base = draw(st.sampled_from(sorted(SCENARIO_BASES)))
    path, label, value, expect = draw(st.sampled_from(_all_scenario_mutations(base)))
    new = _set(SCENARIO_BASES[base], path, value, delete=label == "removed")
    text = dumps(new)
    fields = (
        (str(path[-1]), _fmt_path(path)) if label == "removed" else _field_names(path)
    )
    shown = "<deleted>" if label == "removed" else repr(value)

    def run():
        from ketasim.scenariofile import load_scenarios

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "s.toml"
            p.write_text(text)
            sf = load_scenarios(p)
            ds = ks.run_scenarios(sf.scenarios, progress=False)
            ks.compare(
                ds, per=sf.per, window=sf.window, above=sf.above, analyte=sf.analyte
            )
            return ds

    return Case(
        "scenario_mutations",
        f"{base}: {_fmt_path(path)} = {shown} ({label})",
        run,
        fields,
        expect,
        "scenariofile.py",
    )


# ---------------------------------------------------------------------------------
# NONMEM tables

NM_HEADER = [
    "ID",
    "TIME",
    "EVID",
    "AMT",
    "RATE",
    "CMT",
    "II",
    "ADDL",
    "SS",
    "MDV",
    "DV",
    "WT",
    "AGE",
]


def _nm_rows(draw) -> list[list[str]]:
    rows = []
    for sid in (1, 2):
        wt = str(draw(st.sampled_from([55, 70, 88.5])))
        age = str(draw(st.sampled_from([25, 40, 63])))
        amt = str(draw(st.sampled_from([10, 35, 50])))
        rate = str(draw(st.sampled_from([0, 52.5, 100])))
        addl, ii = draw(st.sampled_from([("0", "0"), ("2", "24"), ("1", "12")]))
        rows.append(
            [str(sid), "0", "1", amt, rate, "1", ii, addl, "0", "1", ".", wt, age]
        )
        for t in sorted(
            draw(st.sets(st.sampled_from([0.5, 1, 2, 6, 12]), min_size=1, max_size=3))
        ):
            rows.append(
                [
                    str(sid),
                    repr(float(t)),
                    "0",
                    ".",
                    ".",
                    ".",
                    ".",
                    ".",
                    ".",
                    "0",
                    ".",
                    wt,
                    age,
                ]
            )
    return rows


NM_MUTATIONS = [
    ("MDV 2", "MDV", "2", _I),
    ("MDV -1", "MDV", "-1", _I),
    ("MDV 0.5", "MDV", "0.5", _I),
    ("time-varying WT", "WT", "<tv>", _I),
    ("time-varying AGE", "AGE", "<tv>", _I),
    ("duplicated column", "<dup>", None, _I),
    ("unknown column", "FOO", None, _I),
    ("huge ADDL", "ADDL", "2000000", _I),
    ("negative ADDL", "ADDL", "-1", _I),
    ("fractional ADDL", "ADDL", "1.5", _I),
    ("negative AMT", "AMT", "-5", _I),
    ("zero AMT", "AMT", "0", _I),
    ("negative TIME", "TIME", "-1", _I),
    ("negative RATE", "RATE", "-1", _I),
    ("negative II", "II", "-12", _I),
    ("EVID 3", "EVID", "3", _I),
    ("EVID 0.5", "EVID", "0.5", _I),
    ("SS 3", "SS", "3", _I),
    ("CMT 9", "CMT", "9", _I),
    ("negative WT", "WT", "-70", _I),
    ("zero WT", "WT", "0", _I),
    ("huge WT", "WT", "1e300", _I),
    ("negative AGE", "AGE", "-5", _I),
    ("FEMALE 2", "FEMALE", "2", _I),
    ("FEMALE 0.5", "FEMALE", "0.5", _I),
    ("DEVICE on an iv dose", "DEVICE", "1", _I),
    ("huge AMT", "AMT", "1e307", _E),
    ("non-contiguous ID", "ID", "<split>", _E),
    ("missing ID", "ID", ".", _I),
    *[(f"text in {c}", c, "abc", _I) for c in NM_HEADER if c != "DV"],
    *[(f"nan in {c}", c, "nan", _I) for c in ("TIME", "AMT", "WT", "RATE", "II")],
    *[(f"inf in {c}", c, "inf", _I) for c in ("TIME", "AMT", "WT")],
]


@st.composite
def nonmem_tables(draw):
    """A small NONMEM CSV (two subjects) with at most one cell, column or layout
    mutated; read with ``read_nonmem`` and simulated with ``simulate_nonmem``."""
    header = list(NM_HEADER)
    rows = _nm_rows(draw)
    mut = draw(st.sampled_from([None, *NM_MUTATIONS]))
    expect, fields, label = "valid", tuple(NM_HEADER), "valid table"
    if mut is not None:
        label, col, val, expect = mut
        fields = (col,)
        dose_rows = [i for i, r in enumerate(rows) if r[2] == "1"]
        obs_rows = [i for i, r in enumerate(rows) if r[2] == "0"]
        if col == "<dup>":
            dup = draw(st.sampled_from(["WT", "AMT", "TIME", "MDV"]))
            j = header.index(dup)
            header.append(dup)
            rows = [[*r, r[j]] for r in rows]
            fields = (dup,)
        elif col in ("FOO", "FEMALE", "DEVICE"):
            header.append(col)
            if col == "DEVICE":
                rows = [[*r, val if r[2] == "1" else "."] for r in rows]
            else:
                rows = [[*r, val or "1"] for r in rows]
        elif val == "<tv>":
            j = header.index(col)
            last = [i for i, r in enumerate(rows) if r[0] == "1"][-1]
            rows[last][j] = str(float(rows[last][j]) + 10)
        elif val == "<split>":
            i = [k for k, r in enumerate(rows) if r[0] == "1"][-1]
            rows.append(rows.pop(i))
            rows[-1][1] = "30.0"
        else:
            j = header.index(col)
            if col in ("AMT", "RATE", "II", "ADDL", "SS", "CMT"):
                target = dose_rows
            elif col == "MDV":
                target = obs_rows
            else:
                target = list(range(len(rows)))
            i = draw(st.sampled_from(target))
            rows[i][j] = val
            if col == "ADDL" and val == "2000000":
                rows[i][header.index("II")] = "24"
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"

    def run():
        from ketasim.nonmem import read_nonmem, simulate_nonmem

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "data.csv"
            p.write_text(text)
            tab = read_nonmem(p, "domino")
            return simulate_nonmem("domino", tab)

    return Case("nonmem_tables", f"{label}:\n{text}", run, fields, expect, "nonmem.py")


# ---------------------------------------------------------------------------------
# the run

GENERATORS = {
    "doses": doses,
    "regimens": regimens,
    "simulate_args": simulate_args,
    "metrics_args": metrics_args,
    "cli_args": cli_args,
    "model_mutations": model_mutations,
    "scenario_mutations": scenario_mutations,
    "nonmem_tables": nonmem_tables,
}
#: share of ``--n`` each generator gets
WEIGHTS = {
    "doses": 2,
    "regimens": 1,
    "simulate_args": 1,
    "metrics_args": 1,
    "cli_args": 1,
    "model_mutations": 4,
    "scenario_mutations": 1,
    "nonmem_tables": 1,
}


def run_generator(name: str, n: int, rng_seed: int, record: Callable) -> None:
    """Draw up to ``n`` cases from generator ``name`` (hypothesis may stop early
    once it has seen every distinct input) and ``record(case, outcome)`` each."""
    strategy = GENERATORS[name]()

    @seed(rng_seed)
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def draw(case):
        record(case, classify(case))

    draw()


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels before any case is timed."""
    for name in ("domino", "flint_2017", "perez_ruixo_2021"):
        _simulate_model(model(name))
    ks.simulate("domino", ks.Dose.bolus("5 mg"), times=TIMES, output=ks.Metrics())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="total inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--only", nargs="*", choices=list(GENERATORS), help="run only these generators"
    )
    ap.add_argument("--out", help="write the defects as JSON lines to this file")
    ap.add_argument(
        "--show", type=int, default=5, help="defects shown per generator and outcome"
    )
    args = ap.parse_args(argv)
    import numba

    warnings.simplefilter("ignore")  # each case records its own warnings
    names = args.only or list(GENERATORS)
    total = sum(WEIGHTS[g] for g in names)
    counts: dict[str, Counter] = {g: Counter() for g in names}
    defects: list[tuple[Case, Outcome]] = []

    def record(case, outcome):
        counts[case.generator][outcome.kind] += 1
        if outcome.kind not in GOOD:
            defects.append((case, outcome))

    warm_up()
    # hypothesis stops a generator early once it has drawn every distinct input it
    # can (simulate_args has a few hundred): the largest space, model mutations,
    # runs last and takes what the others left of --n
    order = sorted(names, key=lambda g: g == "model_mutations")
    for g in order:
        n = math.ceil(args.n * WEIGHTS[g] / total)
        if g == order[-1]:
            n = max(n, args.n - sum(sum(c.values()) for c in counts.values()))
        print(f"{g}: up to {n} inputs ...", file=sys.stderr, flush=True)
        run_generator(g, n, args.seed, record)
    print(
        f"ketasim generated-input run: --n {args.n} --seed {args.seed} "
        f"(numba threads {numba.get_num_threads()})\n"
    )
    width = max(len(g) for g in names) + 2
    cols = [o for o in OUTCOMES]
    print(
        "generator".ljust(width) + "".join(f"{c:>19}" for c in cols) + f"{'total':>8}"
    )
    grand = Counter()
    for g in names:
        grand.update(counts[g])
        print(
            g.ljust(width)
            + "".join(f"{counts[g][c]:>19}" for c in cols)
            + f"{sum(counts[g].values()):>8}"
        )
    print(
        "total".ljust(width)
        + "".join(f"{grand[c]:>19}" for c in cols)
        + f"{sum(grand.values()):>8}"
    )
    silent = grand["silent-acceptance"] + grand["invalid-result"]
    unnamed = grand["refused-unnamed"] + grand["foreign-error"]
    print(
        f"\nsilent acceptances (incl. invalid results): {silent}; errors that do "
        f"not name the field (incl. foreign exception types): {unnamed}; valid "
        f"inputs refused: {grand['refused-valid']}; timeouts: {grand['timeout']}"
    )
    shown = Counter()
    for case, out in defects:
        key = (case.generator, out.kind)
        shown[key] += 1
        if shown[key] <= args.show:
            print(
                f"\n[{out.kind}] {case.generator} ({case.area}) expect "
                f"{case.expect}, field {case.fields}\n  {case.label}\n  -> "
                f"{out.detail[:400]}"
            )
    if args.out:
        with open(args.out, "w") as fh:
            for case, out in defects:
                fh.write(
                    json.dumps(
                        {
                            "generator": case.generator,
                            "outcome": out.kind,
                            "area": case.area,
                            "expect": case.expect,
                            "fields": case.fields,
                            "input": case.label,
                            "detail": out.detail,
                        }
                    )
                    + "\n"
                )
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
