"""Model files: TOML -> :class:`~ketasim.model.Model`, validated strictly.

Every problem raises :class:`ModelFileError` naming the file, the key path and how to
fix it. Unknown keys are errors, never warnings: a misspelt ``omgea`` must not silently
drop a variance. The schema is described in ``models/README.md``.
"""

from __future__ import annotations

import hashlib
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import COVARIATE_RANGES
from .model import (
    KNOWN_COVARIATES,
    RULE_TEXT,
    SCALED_DIMENSIONS,
    TYPICAL_MAGNITUDE,
    Analyte,
    Compartment,
    CovariateEffect,
    Flow,
    Model,
    Parameter,
    Pathway,
    Reference,
    Route,
    Variability,
    _covariate_factor,
    omega_from,
    parameter_roles,
)
from .units import UnitError, parse_quantity, parse_unit

__all__ = ["ModelFileError", "cite", "list_models", "load_model", "models_dir"]

SCHEMA_VERSION = 1
#: The bundled model ``ketasim demo`` and the examples use for racemic ketamine.
DEFAULT_MODEL = "clements_nimmo_1981"
ROLES = ("depot", "central", "peripheral", "liver", "transit", "metabolite")
ENANTIOMERS = ("racemic", "S", "R")
SAMPLING = ("arterial", "venous", "mixed", "unknown")
GRADES = ("P", "T", "C", "U", "choice")
EFFECT_KINDS = {"power": "exponent", "linear": "slope", "hinge": "slope",
                "exponential": "slope", "categorical": "factor"}
#: Largest SD of eta (omega, IIV or IOV) a model file may give: e^5 = 148-fold
#: spread at one SD, a log-normal CV of about 2.7e5 (the largest bundled omega is
#: 1.1). Beyond it is a misread number (a variance or percentage), and near 1e154
#: omega² overflows when random effects are drawn.
MAX_OMEGA = 5.0
#: Largest typical value of a fraction marked ``above_one``: 2, a published apparent
#: bioavailability of 200 %. Published apparent fractions stay well below (Simons
#: 2022: F2 = 116 %); a larger value is a unit slip (50 for 50 %, unit '1').
MAX_APPARENT_FRACTION = 2.0
#: Dimensions whose per-kg units (``L/kg``, ``L/h/kg``) scale with body weight:
#: rate constants, times and fractions do not, so ``1/h/kg`` is a slip.
PER_KG_DIMENSIONS = ("volume", "clearance")


class ModelFileError(ValueError):
    """A model file is malformed. ``file`` and ``key`` say where."""

    def __init__(self, file: str | Path | None, key: str, message: str, hint: str = ""):
        self.file = str(file) if file is not None else "<dict>"
        self.key = key
        self.hint = hint
        text = f"{self.file}: [{key}] {message}"
        if hint:
            text += f" — {hint}"
        super().__init__(text)


def models_dir() -> Path:
    """Directory of the bundled model files (inside the wheel, or the source tree)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "models", here.parents[1] / "models"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"bundled models not found next to {here}")


def list_models() -> list[str]:
    """Names of the bundled models (file stems in ``models/``), sorted."""
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def load_model(name_or_path: str | Path) -> Model:
    """Load a bundled model by name (``"domino"``) or a model file by path.

    Raises
    ------
    ModelFileError
        The file is malformed; the message names the file, the key path and a fix.
    FileNotFoundError
        No bundled model of that name and no such file, an empty name, or a
        directory.
    TypeError
        Neither a string nor a path.
    """
    if isinstance(name_or_path, Model):
        return name_or_path
    if not isinstance(name_or_path, str | Path):
        raise TypeError(f"model must be a bundled model name such as 'domino' or a "
                        f"path to a .toml model file; got "
                        f"{type(name_or_path).__name__} {name_or_path!r:.80}")
    if not str(name_or_path).strip():  # Path("") is ".", the working directory
        raise FileNotFoundError(f"model must name a bundled model or a .toml file; "
                                f"got the empty name {str(name_or_path)!r}. Bundled "
                                f"models: {', '.join(list_models())}")
    p = Path(name_or_path)
    if p.suffix != ".toml" and (not p.exists() or p.is_dir()):
        cand = models_dir() / f"{name_or_path}.toml"
        if cand.exists():  # a bundled name wins over a directory of that name
            p = cand
        elif not p.is_dir():
            raise FileNotFoundError(
                f"no bundled model {str(name_or_path)!r}; bundled models: "
                f"{', '.join(list_models())}. To load your own, pass a path to a "
                f".toml file.")
    if p.is_dir():  # else a bare IsADirectoryError
        raise FileNotFoundError(
            f"model {str(name_or_path)!r} is a directory, not a model file; pass a "
            f"path to a .toml model file or a bundled model name "
            f"({', '.join(list_models())})")
    raw = p.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelFileError(p, "<toml>", f"not valid TOML: {exc}") from None
    return model_from_dict(data, file=p, sha256=hashlib.sha256(raw).hexdigest())


class _Table:
    """A TOML table being read: ``take`` each key; ``done`` rejects the rest."""

    def __init__(self, data: Any, path: str, file: Path | None):
        self.file = file
        self.path = path
        if not isinstance(data, dict):
            self.fail(f"must be a table; got {type(data).__name__} {data!r}")
        self.data = data
        self.used: set[str] = set()

    def fail(self, message: str, key: str | None = None, hint: str = ""):
        k = f"{self.path}.{key}" if key and self.path else (key or self.path)
        raise ModelFileError(self.file, k or "<top>", message, hint)

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str, types, *, required: bool = True, default=None,
             choices=None):
        self.used.add(key)
        if key not in self.data:
            if required:
                self.fail("is missing", key, f"add `{key} = ...`")
            return default
        v = self.data[key]
        if types is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):
            tn = types.__name__ if isinstance(types, type) else \
                " or ".join(t.__name__ for t in types)
            self.fail(f"must be {tn}; got {type(v).__name__} {v!r}", key)
        if choices is not None and v not in choices:
            self.fail(f"must be one of {', '.join(map(repr, choices))}; got {v!r}",
                      key)
        return v

    def table(self, key: str, *, required: bool = True) -> dict:
        v = self.take(key, dict, required=required, default={})
        return v

    def done(self):
        extra = [k for k in self.data if k not in self.used]
        if extra:
            self.fail(f"unknown key {extra[0]!r}", extra[0],
                      f"allowed keys here: {', '.join(sorted(self.used))}")


def _device_mg(t: _Table, text: str) -> float:
    """A route's ``device = "28 mg"``: a fixed amount > 0, in mg."""
    try:
        q = parse_quantity(text, what="device")
        u = parse_unit(q.unit)
    except (UnitError, TypeError) as e:
        t.fail(str(e), "device", 'write an amount, e.g. "28 mg"')
    if u.dimension != "amount" or u.per_kg or not 0 < q.value * u.factor < math.inf:
        t.fail(f"must be a fixed amount > 0 such as \"28 mg\"; got {text!r}", "device")
    return q.value * u.factor


def _number(t: _Table, key: str, v: float, rule: str, unit: str = "",
            hint: str = "") -> float:
    """``v`` (read at ``key`` of ``t``) checked against a :data:`RULE_TEXT` rule."""
    ok = {"positive": v > 0, "nonnegative": v >= 0, "fraction": 0 <= v <= 1,
          "finite": True}[rule] and math.isfinite(v)
    if not ok:
        t.fail(f"must be {RULE_TEXT[rule]}{' ' + unit if unit else ''}; got {v!r}",
               key, hint)
    return v


def _covariate_value(t: _Table, key: str, v: float, cname: str) -> float:
    """A value of covariate ``cname`` read at ``key``: 0 or 1 for a flag, else
    finite and inside the plausible human range ``simulate`` accepts for it
    (:data:`ketasim._validate.COVARIATE_RANGES`)."""
    unit = KNOWN_COVARIATES[cname]
    if unit == "0/1":
        if v not in (0, 1):
            t.fail(f"must be 0 or 1 ({cname} is a 0/1 flag); got {v!r}", key)
        return float(v)
    lo, hi = COVARIATE_RANGES[cname]
    if not (math.isfinite(v) and lo <= v <= hi):
        t.fail(f"must be a plausible {cname}, within [{lo:g}, {hi:g}] {unit}; got "
               f"{v!r}", key, f"{cname} is in {unit}")
    return float(v)


def model_from_dict(data: dict, *, file: Path | None = None, sha256: str = "") -> Model:
    """Build a :class:`Model` from a parsed model-file dictionary (strict).

    Besides the structure, every number is checked against how the model uses it
    (``models/README.md``, "Number checks"): finite values; volumes, clearances,
    rate constants, mean transit times and durations > 0, lags >= 0, fractions in
    [0, 1]; plausible covariate references and validity ranges; covariate effects
    that keep each parameter valid over its covariates' validity ranges; a positive
    definite IIV covariance matrix.

    Raises
    ------
    ModelFileError
        Names the file (``<dict>`` here), the key path, what is wrong and a fix.
    """
    top = _Table(data, "", file)
    version = top.take("schema_version", int)
    if version != SCHEMA_VERSION:
        top.fail(f"unsupported schema version {version}", "schema_version",
                 f"this ketasim reads schema_version = {SCHEMA_VERSION}")
    mid = top.take("id", str)
    name = top.take("name", str)
    drug = top.take("drug", str, choices=("ketamine", "esketamine", "arketamine"))
    enantiomer = top.take("enantiomer", str, choices=ENANTIOMERS)
    population = top.take("population", str)
    sampling = top.take("sampling", str, choices=SAMPLING)
    grade = top.take("grade", str, choices=GRADES)
    description = top.take("description", str, required=False, default="")
    racemic_fraction = top.take("racemic_fraction", float, required=False)
    if racemic_fraction is not None and (enantiomer == "racemic" or
                                         not 0 < racemic_fraction <= 1):
        top.fail("applies to enantiomer models, as the share (0-1] of a racemic "
                 f"dose they describe; got {racemic_fraction!r} for a {enantiomer} "
                 "model", "racemic_fraction", "S or R ketamine: 0.5")

    references = []
    for i, r in enumerate(top.take("references", list)):
        t = _Table(r, f"references[{i}]", file)
        references.append(Reference(
            key=t.take("key", str), citation=t.take("citation", str),
            doi=t.take("doi", str, required=False),
            year=t.take("year", int, required=False),
            note=t.take("note", str, required=False, default="")))
        t.done()
    ref_keys = {r.key for r in references}
    if not references:
        top.fail("is empty", "references", "cite the paper every number comes from")

    covariates: dict[str, float] = {}
    ctab = _Table(top.table("covariates", required=False), "covariates", file)
    for cname in list(ctab.data):
        t = _Table(ctab.take(cname, dict), f"covariates.{cname}", file)
        if cname not in KNOWN_COVARIATES:
            ctab.fail("is not a known covariate", cname,
                      f"known covariates: {', '.join(KNOWN_COVARIATES)}")
        unit = t.take("unit", str)
        if unit != KNOWN_COVARIATES[cname]:
            t.fail(f"must be {KNOWN_COVARIATES[cname]!r}; got {unit!r}", "unit")
        covariates[cname] = _covariate_value(t, "reference", t.take("reference",
                                                                     float), cname)
        t.take("description", str, required=False)
        t.done()
    ctab.done()

    validity: dict[str, tuple[float, float]] = {}
    vtab = _Table(top.table("validity", required=False), "validity", file)
    for cname in list(vtab.data):
        rng = vtab.take(cname, list)
        if cname not in covariates:
            vtab.fail("names a covariate not declared under [covariates]", cname)
        if len(rng) != 2 or not all(isinstance(x, int | float) and
                                    not isinstance(x, bool) for x in rng):
            vtab.fail(f"must be [low, high], two numbers; got {rng!r}", cname)
        for x in rng:
            _covariate_value(vtab, cname, x, cname)
        if rng[0] > rng[1]:
            vtab.fail(f"must be [low, high] with low <= high; got {rng!r}", cname,
                      f"write [{rng[1]!r}, {rng[0]!r}]")
        validity[cname] = (float(rng[0]), float(rng[1]))
    vtab.done()

    parameters: dict[str, Parameter] = {}
    raw_values: dict[str, float] = {}  # as written, in the file's unit
    above_one: list[str] = []  # fractions the file lets exceed 1, with a reason
    ptab = _Table(top.table("parameters"), "parameters", file)
    for pname in list(ptab.data):
        t = _Table(ptab.take(pname, dict), f"parameters.{pname}", file)
        value = _number(t, "value", t.take("value", float), "finite")
        unit = t.take("unit", str)
        try:
            u = parse_unit(unit)
        except UnitError as exc:
            t.fail(str(exc), "unit")
        if u.dimension is None or u.dims[3] not in (0, -1):
            t.fail(f"unit {unit!r} is not a volume, clearance, rate constant, time "
                   f"or fraction", "unit")
        if u.per_kg and u.dimension not in PER_KG_DIMENSIONS:
            t.fail(f"unit {unit!r} is a {u.dimension} per kg of body weight; only "
                   f"volumes and clearances scale with weight", "unit",
                   "drop the /kg (e.g. '1/h', 'h'), or write the volume or clearance "
                   "the paper scales per kg")
        if u.per_kg and "weight" not in covariates:
            t.fail(f"per-kg unit {unit!r} needs the weight covariate", "unit",
                   "declare [covariates.weight] with unit = 'kg' and a reference")
        above = t.take("above_one", str, required=False)
        if above is not None:
            if u.dimension != "dimensionless":
                t.fail(f"applies to fractions (unit '1' or '%'); {pname!r} is a "
                       f"{u.dimension} ({unit})", "above_one")
            above_one.append(pname)
        raw_values[pname] = value
        ref = t.take("reference", str, required=False)
        if ref is not None and ref not in ref_keys:
            # an entry no parameter cites is the likely misspelling: name it too
            cited = {x.get("reference") for x in ptab.data.values()
                     if isinstance(x, dict)}
            odd = "".join(f"; references[{i}] (key {r.key!r}) is cited by no "
                          f"parameter" for i, r in enumerate(references)
                          if r.key not in cited)
            t.fail(f"names an unknown reference {ref!r}", "reference",
                   f"references: {', '.join(sorted(ref_keys))}{odd}")
        parameters[pname] = Parameter(
            name=pname, value=value * u.factor, unit=unit, canonical_unit=u.canonical,
            dimension=u.dimension, per_kg=u.per_kg,
            description=t.take("description", str),
            reference=ref, source=t.take("source", str),
            grade=t.take("grade", str, choices=GRADES))
        t.done()
    ptab.done()

    def need_param(t: _Table, key: str, dimension: str, *, number_ok: bool = False,
                   required: bool = True):
        types = (str, int, float) if number_ok else str
        v = t.take(key, types, required=required)
        if v is None:
            return None
        if isinstance(v, int | float):  # only fractions may be written as numbers
            return _number(t, key, float(v), "fraction",
                           hint="a fraction of the dose or flow, e.g. 0.5")
        if v not in parameters:
            t.fail(f"names an undefined parameter {v!r}", key,
                   f"define [parameters.{v}] or use one of "
                   f"{', '.join(parameters) or '(none)'}")
        if parameters[v].dimension != dimension:
            p = parameters[v]
            t.fail(f"needs a {dimension}; parameter {v!r} is a {p.dimension} "
                   f"({p.unit})", key)
        return v

    analyte_of: dict[str, str] = {}
    species_of: dict[str, str] = {}
    compartments: list[Compartment] = []
    chains: dict[str, int] = {}  # transit chain name -> number of compartments
    cmt_tab = _Table(top.table("compartments"), "compartments", file)
    for cname in list(cmt_tab.data):
        t = _Table(cmt_tab.take(cname, dict), f"compartments.{cname}", file)
        role = t.take("role", str, choices=ROLES)
        vol = need_param(t, "volume", "volume", required=False)
        an = t.take("analyte", str, required=False)
        sp = t.take("species", str, required=False)
        if sp is not None and an is not None:
            t.fail("give `analyte` (measured here) or `species` (mass held, not "
                   "measured), not both", "species")
        if sp is not None:
            species_of[cname] = sp
        count = t.take("count", int, required=False)
        t.take("description", str, required=False)
        if count is not None:
            if role != "transit":
                t.fail("only role = 'transit' compartments take a count", "count")
            if count < 1:
                t.fail(f"must be >= 1; got {count}", "count")
            if vol is not None or an is not None:
                t.fail("a transit chain holds no volume or analyte (use `species`)")
            chains[cname] = count
        t.done()
        if count is None:
            compartments.append(Compartment(cname, role, vol, an, sp))
        else:
            compartments += [Compartment(f"{cname}_{i + 1}", role, None, None, sp)
                             for i in range(count)]
        if an is not None:
            analyte_of[cname] = an
    cmt_tab.done()
    cnames = [c.name for c in compartments] + list(chains)
    if not any(c.role == "central" for c in compartments):
        top.fail("has no compartment with role = 'central'", "compartments")

    def first(c):  # a transit chain is entered at its first compartment
        return f"{c}_1" if c in chains else c

    def last(c):
        return f"{c}_{chains[c]}" if c in chains else c

    def need_cmt(t: _Table, key: str, *, required: bool = True):
        v = t.take(key, str, required=required)
        if v is not None and v not in cnames:
            t.fail(f"names an undefined compartment {v!r}", key,
                   f"compartments: {', '.join(cnames)}")
        return v

    vol_of = {c.name: c.volume for c in compartments}
    flows: list[Flow] = []
    for i, f in enumerate(top.take("flows", list, required=False, default=[])):
        t = _Table(f, f"flows[{i}]", file)
        src = need_cmt(t, "from")
        dst = need_cmt(t, "to", required=False)
        given = [k for k in ("k", "cl", "mtt") if k in t.data]
        if len(given) != 1:
            t.fail("needs exactly one of `k` (rate constant), `cl` (clearance) or "
                   "`mtt` (mean transit time)")
        kind = given[0]
        rate = need_param(t, kind, {"k": "rate constant", "cl": "clearance",
                                    "mtt": "time"}[kind])
        if kind == "cl" and vol_of.get(src) is None:
            t.fail(f"a clearance flow needs a volume on compartment {src!r}",
                   "cl", f"add `volume = ...` to [compartments.{src}] or use k")
        if src in chains and kind != "mtt":
            t.fail(f"flows out of transit chain {src!r} are set by its mean transit "
                   "time", kind, "use `mtt = ...`")
        frac = need_param(t, "fraction", "dimensionless", number_ok=True,
                          required=False)
        if frac is not None and dst is None:
            t.fail("a fraction needs a target `to`", "fraction")
        if dst == src:
            t.fail("`from` and `to` are the same compartment", "to")
        t.done()
        n = chains.get(src, 1)
        if src in chains:
            flows += [Flow(f"{src}_{j}", f"{src}_{j + 1}", "mtt", rate, None, n)
                      for j in range(1, n)]
        flows.append(Flow(last(src), None if dst is None else first(dst), kind, rate,
                          frac, n))

    routes: dict[str, Route] = {}
    rtab = _Table(top.table("routes"), "routes", file)
    for rname in list(rtab.data):
        t = _Table(rtab.take(rname, dict), f"routes.{rname}", file)
        kind = t.take("kind", str, choices=("intravenous", "extravascular"))
        desc = t.take("description", str, required=False, default="")
        if "pathways" in t.data and "target" in t.data:
            t.fail("give either `target` (one pathway) or `pathways`, not both")
        items = t.take("pathways", list) if "pathways" in t.data else [None]
        pathways = []
        for j, item in enumerate(items):
            pt = t if item is None else _Table(item, f"routes.{rname}.pathways[{j}]",
                                              file)
            rest = pt.data.get("fraction") == "rest"
            if rest:
                pt.take("fraction", str)
            pw = Pathway(
                target=first(need_cmt(pt, "target")),
                fraction="rest" if rest else need_param(
                    pt, "fraction", "dimensionless", number_ok=True, required=False),
                lag=need_param(pt, "lag", "time", required=False),
                duration=need_param(pt, "duration", "time", required=False),
                later_devices=need_param(pt, "later_devices", "dimensionless",
                                         required=False))
            if item is not None:
                pt.done()
            if kind == "intravenous" and (pw.fraction, pw.lag, pw.duration,
                                          pw.later_devices) != (None,) * 4:
                pt.fail("an intravenous route takes only `target`; bioavailability, "
                        "lag and duration belong to extravascular routes")
            pathways.append(pw)
        if sum(pw.fraction == "rest" for pw in pathways) > 1:
            t.fail("only one pathway may take fraction = 'rest'", "pathways")
        device = t.take("device", str, required=False)
        device_mg = None if device is None else _device_mg(t, device)
        if device_mg is None and any(pw.later_devices for pw in pathways):
            t.fail("is missing", "device", "a pathway with `later_devices` models "
                   "one device per Dose: give the device's amount, e.g. "
                   "`device = \"28 mg\"`")
        if device_mg is not None and kind == "intravenous":
            t.fail("only extravascular routes have devices", "device")
        t.done()
        routes[rname] = Route(rname, kind, tuple(pathways), desc, device_mg)
    rtab.done()
    if not routes:
        top.fail("is empty", "routes", "define at least [routes.iv]")

    analytes: list[Analyte] = []
    atab = _Table(top.table("analytes"), "analytes", file)
    for aname in list(atab.data):
        t = _Table(atab.take(aname, dict), f"analytes.{aname}", file)
        cmt = need_cmt(t, "compartment")
        mw = _number(t, "mw", t.take("mw", float), "positive", "g/mol")
        if not 1.0 <= mw <= 1e6:  # hydrogen to a large protein: a slip otherwise
            t.fail(f"must be a molecular weight within [1, 1e6] g/mol; got {mw!r}",
                   "mw", "ketamine is 237.73 g/mol")
        if vol_of.get(cmt) is None:
            t.fail(f"compartment {cmt!r} has no volume, so no concentration",
                   "compartment")
        if analyte_of.get(cmt) != aname:
            t.fail(f"compartment {cmt!r} must declare analyte = {aname!r}",
                   "compartment")
        analytes.append(Analyte(
            aname, cmt, mw,
            formation=t.take("formation", str, required=False, default="molar",
                             choices=("molar", "apparent")),
            long_name=t.take("long_name", str, required=False, default=aname)))
        t.done()
    atab.done()
    anames = {a.name for a in analytes}
    for cname, an in analyte_of.items():
        if an not in anames:
            cmt_tab.fail(f"names an undefined analyte {an!r}", f"{cname}.analyte",
                         f"define [analytes.{an}]")
    for cname, sp in species_of.items():
        if sp not in anames:
            cmt_tab.fail(f"names an undefined analyte {sp!r}", f"{cname}.species",
                         f"define [analytes.{sp}]")

    variability: list[Variability] = []
    var_tab = _Table(top.table("variability", required=False), "variability", file)
    for pname in list(var_tab.data):
        t = _Table(var_tab.take(pname, dict), f"variability.{pname}", file)
        if pname not in parameters:
            var_tab.fail("is not a defined parameter", pname)
        dist = t.take("distribution", str, choices=("lognormal", "logitnormal"))
        iiv = _omega(t, "")
        iov = _omega(t, "iov_")
        if iiv is None and iov is None:
            t.fail("gives no variance", hint="add one of cv, omega, omega2 (IIV) or "
                   "iov_cv, iov_omega, iov_omega2 (IOV)")
        if dist == "logitnormal" and not 0 < parameters[pname].value < 1:
            t.fail("logit-normal needs a typical value strictly between 0 and 1",
                   "distribution")
        variability.append(Variability(pname, dist, iiv or 0.0, iov or 0.0,
                                       t.take("source", str)))
        t.done()
    var_tab.done()

    correlations: list[tuple[str, str, float]] = []
    omega_of = {v.parameter: v.omega for v in variability}
    for i, c in enumerate(top.take("correlations", list, required=False, default=[])):
        t = _Table(c, f"correlations[{i}]", file)
        pair = t.take("parameters", list)
        if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            t.fail(f"must name two parameters with IIV; got {pair!r}", "parameters")
        if pair[0] == pair[1]:
            t.fail(f"names {pair[0]!r} twice; its variance belongs in "
                   f"[variability.{pair[0]}]", "parameters")
        for p in pair:
            if p not in omega_of:
                t.fail(f"names {p!r}, which has no [variability.{p}]; got {pair!r}",
                       "parameters", "a correlation is between two parameters with "
                       "inter-individual variability")
            if omega_of[p] == 0:
                t.fail(f"names {p!r}, whose inter-individual variance is 0 (it has "
                       f"only IOV or omega = 0), so it cannot be correlated",
                       "parameters", f"give [variability.{p}] a non-zero cv, omega "
                       f"or omega2, or remove this correlation")
        if any({a, b} == set(pair) for a, b, _ in correlations):
            t.fail(f"repeats the pair {pair!r} of an earlier correlation",
                   "parameters")
        rho = t.take("correlation", float, required=False)
        cov = t.take("covariance", float, required=False)
        if (rho is None) == (cov is None):
            t.fail("needs exactly one of `correlation` or `covariance`")
        key = "correlation" if cov is None else "covariance"
        _number(t, key, rho if cov is None else cov, "finite")
        if rho is None:
            sd = omega_of[pair[0]] * omega_of[pair[1]]
            rho = cov / sd
            if not -1 < rho < 1:
                t.fail(f"gives correlation {rho:.4g} = {cov!r} / ({pair[0]} omega × "
                       f"{pair[1]} omega = {sd:.4g}); a correlation lies in (-1, 1)",
                       key, "check the covariance against the variances")
        if not -1 < rho < 1:
            t.fail(f"must lie in (-1, 1); got {rho!r}", key)
        t.take("source", str)
        t.done()
        correlations.append((pair[0], pair[1], float(rho)))
        _positive_definite(t, variability, correlations)

    effects = []
    for i, e in enumerate(top.take("covariate_effects", list, required=False,
                                   default=[])):
        t = _Table(e, f"covariate_effects[{i}]", file)
        pname = t.take("parameter", str)
        if pname not in parameters:
            t.fail(f"names an undefined parameter {pname!r}", "parameter")
        cov = t.take("covariate", str)
        if cov not in covariates:
            t.fail(f"names covariate {cov!r} not declared under [covariates]",
                   "covariate")
        kind = t.take("model", str, choices=tuple(EFFECT_KINDS))
        coef = _number(t, EFFECT_KINDS[kind], t.take(EFFECT_KINDS[kind], float),
                       "nonnegative" if kind == "categorical" else "finite",
                       hint="a multiplicative factor on the parameter"
                       if kind == "categorical" else "")
        ref = _number(t, "reference", t.take("reference", float,
                                             required=kind != "categorical",
                                             default=1.0), "finite")
        if kind == "power" and ref <= 0:
            t.fail(f"must be > 0 for a power effect, (c / reference)^exponent; got "
                   f"{ref!r}", "reference", f"the typical {cov}, e.g. "
                   f"{covariates[cov]:g} {KNOWN_COVARIATES[cov]}")
        if KNOWN_COVARIATES[cov] != "0/1" and "reference" in t.data:
            _covariate_value(t, "reference", ref, cov)  # a value of the covariate
        if kind == "categorical" and KNOWN_COVARIATES[cov] == "0/1" \
                and ref not in (0, 1):
            t.fail(f"must be 0 or 1 ({cov} is a 0/1 flag); got {ref!r}", "reference",
                   f"reference = 1 applies the factor where {cov} = 1")
        # the same effect twice multiplies the parameter by its factor twice
        for j, other in enumerate(effects):
            if (other.parameter, other.covariate, other.kind, other.reference) == \
                    (pname, cov, kind, ref):
                t.fail(f"repeats covariate_effects[{j}]: both are a {kind} effect of "
                       f"{cov} on {pname!r} with reference {ref:g}, so the effect "
                       f"would be applied twice", hint=f"remove one of "
                       f"covariate_effects[{j}] and covariate_effects[{i}]")
        effects.append(CovariateEffect(pname, cov, kind, ref, coef,
                                       t.take("source", str)))
        t.done()

    time_effects = []
    for i, e in enumerate(top.take("time_effects", list, required=False,
                                   default=[])):
        t = _Table(e, f"time_effects[{i}]", file)
        pname = t.take("parameter", str)
        if pname not in parameters:
            t.fail(f"names an undefined parameter {pname!r}", "parameter")
        if not any(f.rate == pname for f in flows):
            t.fail(f"parameter {pname!r} sets no flow; only flow rates may vary in "
                   "time", "parameter")
        if any(f.rate == pname and f.kind == "mtt" for f in flows):
            t.fail(f"parameter {pname!r} is a mean transit time; a linear time "
                   "effect applies to clearances and rate constants only",
                   "parameter")
        slope = _number(t, "slope", t.take("slope", float), "finite")
        unit = t.take("unit", str)
        try:
            u = parse_unit(unit)
        except UnitError as exc:
            t.fail(str(exc), "unit")
        if u.dimension != "rate constant":
            t.fail(f"must be per time (e.g. '1/h'); got {unit!r}", "unit")
        t.take("source", str)
        t.done()
        time_effects.append((pname, slope * u.factor))

    residual: dict[str, dict[str, float]] = {}
    res_tab = _Table(top.table("residual", required=False), "residual", file)
    for aname in list(res_tab.data):
        t = _Table(res_tab.take(aname, dict), f"residual.{aname}", file)
        if aname not in anames:
            res_tab.fail("is not a defined analyte", aname)
        entry = {}
        for key in ("proportional", "exponential"):
            v = t.take(key, float, required=False)
            if v is not None:
                entry[key] = _number(t, key, v, "nonnegative")
        add = t.take("additive", float, required=False)
        if add is not None:
            _number(t, "additive", add, "nonnegative")
            unit = t.take("additive_unit", str)
            entry["additive_ng_per_ml"] = _to_ng_per_ml(
                t, add, unit, next(a.mw for a in analytes if a.name == aname))
        t.take("source", str)
        if not entry:
            t.fail("gives no error model", hint="add proportional, exponential or "
                   "additive (+ additive_unit)")
        t.done()
        residual[aname] = entry
    res_tab.done()
    top.done()

    model = Model(
        id=mid, name=name, drug=drug, enantiomer=enantiomer, population=population,
        sampling=sampling, grade=grade, description=description,
        parameters=parameters, compartments=tuple(compartments), flows=tuple(flows),
        routes=routes, analytes=tuple(analytes), variability=tuple(variability),
        correlations=tuple(correlations), covariate_effects=tuple(effects),
        covariates=covariates, validity=validity, residual=residual,
        time_effects=tuple(time_effects), racemic_fraction=racemic_fraction,
        references=tuple(references), path=file, sha256=sha256,
        fractions_above_one=tuple(above_one))
    _check_numbers(model, file, raw_values)
    return model


def _positive_definite(t: _Table, variability: list[Variability],
                       correlations: list[tuple[str, str, float]]) -> None:
    """The IIV covariance matrix with the correlations so far must have a Cholesky
    factor, as ``Population.etas`` needs to draw correlated random effects. It is
    built as ``population._omega_matrix`` builds it: parameters with omega > 0 in
    file order, variances omega² on the diagonal, rho omega_a omega_b off it."""
    var = [v for v in variability if v.omega > 0]
    names = [v.parameter for v in var]
    sd = {v.parameter: v.omega for v in var}
    om = np.diag([v.omega ** 2 for v in var])
    for a, b, rho in correlations:
        i, j = names.index(a), names.index(b)
        om[i, j] = om[j, i] = rho * sd[a] * sd[b]
    try:
        np.linalg.cholesky(om)
        return
    except np.linalg.LinAlgError:
        pass
    w, vec = np.linalg.eigh(om)
    involved = [names[k] for k in np.flatnonzero(np.abs(vec[:, 0]) > 0.1)]
    t.fail(f"makes the inter-individual covariance matrix of "
           f"{', '.join(involved)} not positive definite (smallest eigenvalue "
           f"{w[0]:.3g}), so no random effects can be drawn from it",
           hint="these correlations cannot all hold at once; check their signs "
           "and sizes against the source")


def _check_numbers(model: Model, file: Path | None, raw: dict[str, float]) -> None:
    """Typical values against how the model uses each parameter
    (:func:`~ketasim.model.parameter_roles`), each route's fractions against the
    whole dose, and covariate effects over the model's validity ranges."""
    roles = parameter_roles(model)
    fraction_refs = {f.fraction for f in model.flows} | {
        x for r in model.routes.values() for pw in r.pathways
        for x in (pw.fraction, pw.later_devices)}
    for name in model.fractions_above_one:
        if name not in fraction_refs:
            raise ModelFileError(
                file, f"parameters.{name}.above_one", f"{name!r} is not used as a "
                "fraction (of a flow or a route pathway)", "remove above_one")
        v = model.parameters[name].value
        if v > MAX_APPARENT_FRACTION:  # values are finite (checked when read)
            p = model.parameters[name]
            got = f"{raw[name]:g}" + (f" {p.unit}" if p.unit != "1" else "")
            raise ModelFileError(
                file, f"parameters.{name}.value", f"is a fraction marked above_one "
                f"and must be at most {MAX_APPARENT_FRACTION:g} (an apparent "
                f"{MAX_APPARENT_FRACTION * 100:g} %); got {got}", "a fraction is "
                "written 0.45 (unit '1') or 45 (unit '%'); check the value and unit "
                "against the source")
    for name, (rule, uses) in roles.items():
        p = model.parameters[name]
        v = p.value
        ok = {"positive": v > 0, "nonnegative": v >= 0, "fraction": 0 <= v <= 1,
              "finite": True}[rule] and math.isfinite(v)
        need = RULE_TEXT[rule]
        lo, hi = TYPICAL_MAGNITUDE
        if ok and p.dimension in SCALED_DIMENSIONS and v != 0 \
                and not lo <= v <= hi:
            ok = False
            need = f"within [{lo:g}, {hi:g}] {p.canonical_unit}"
        if ok:
            continue
        got = f"{raw[name]!r}" + (f" {p.unit}" if p.unit != "1" else "")
        if raw[name] != v:
            got += f" (= {v:.6g}" + (f" {p.canonical_unit})" if p.canonical_unit
                                     != "1" else ")")
        where = uses[0] if uses else f"a {p.dimension}"
        hint = ("a fraction, e.g. 0.45 (unit '1') or 45 (unit '%'); a published "
                "apparent fraction above 1 needs above_one = \"why\""
                if rule == "fraction" else
                "check the value and its unit against the source")
        raise ModelFileError(file, f"parameters.{name}.value",
                             f"must be {need} as {where}; got {got}", hint)
    for rname, r in model.routes.items():
        named = [pw.fraction for pw in r.pathways
                 if pw.fraction is not None and pw.fraction != "rest"]
        if len(named) < 2 or any(f in model.fractions_above_one for f in named):
            continue
        vals = [model.parameters[f].value if isinstance(f, str) else f for f in named]
        if sum(vals) > 1.0 + 1e-12:  # rounding of fractions meant to sum to 1
            parts = " + ".join(f"{f} {x:.4g}" if isinstance(f, str) else f"{x:.4g}"
                               for f, x in zip(named, vals, strict=True))
            raise ModelFileError(
                file, f"routes.{rname}.pathways", f"fractions add up to "
                f"{sum(vals):.6g} > 1 ({parts}): more than the whole dose would be "
                "absorbed", "the pathways share one dose; a published apparent "
                "fraction above 1 needs above_one = \"why\" on its parameter")
    _check_effects(model, file, roles)


def _check_effects(model: Model, file: Path | None,
                   roles: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """No covariate effect may make a parameter break its rule anywhere in the
    box of its covariates' validity ranges.

    Each covariate's combined factor (the product of its effects on the parameter)
    is evaluated on a grid of its range plus the hinge and categorical reference
    points (each effect is monotone between them, so the grid holds the extremes).
    A covariate without a [validity] range is checked over its plausible human
    range (:data:`ketasim._validate.COVARIATE_RANGES`, the range ``simulate``
    accepts): a file must then declare the
    range where a linear or hinge effect holds. Every factor must be finite and
    >= 0 (> 0 for volumes, clearances, rates and durations), so the extremes of
    the parameter are the typical value times the products of each covariate's
    smallest and largest factor; a fraction's largest value must stay <= 1 (< 1 and
    > 0 under a logit-normal random effect, whose logit must exist)."""
    by: dict[str, dict[str, list[int]]] = {}
    for i, e in enumerate(model.covariate_effects):
        by.setdefault(e.parameter, {}).setdefault(e.covariate, []).append(i)
    for pname, per_cov in by.items():
        p = model.parameters[pname]
        rule, uses = roles[pname]
        var = model._variability_for(pname)
        logit = var is not None and var.distribution == "logitnormal"
        lo_v = hi_v = p.value
        at_max: list[str] = []
        worst = (0.0, 0)  # (largest factor, its effect index)
        for cov, idx in per_cov.items():
            effs = [model.covariate_effects[i] for i in idx]
            unit = KNOWN_COVARIATES[cov]
            shown = "" if unit == "0/1" else f" {unit}"
            declared = cov in model.validity
            lo, hi = model.validity[cov] if declared else \
                COVARIATE_RANGES.get(cov, (0.0, 1.0))  # flags: 0 or 1
            if unit == "0/1":
                pts = np.array([x for x in (0.0, 1.0) if lo <= x <= hi])
            else:
                refs = [e.reference for e in effs if lo <= e.reference <= hi]
                pts = np.unique(np.concatenate([np.linspace(lo, hi, 257), refs]))
            with np.errstate(all="ignore"):  # overflow and 0 ** -x are reported
                f = np.ones_like(pts)
                for e in effs:
                    f = f * _covariate_factor(e, pts)
            bad = ~np.isfinite(f) | (f < 0) | ((f == 0) & (rule == "positive"))
            i = idx[-1]
            e = model.covariate_effects[i]
            key = f"covariate_effects[{i}].{EFFECT_KINDS[e.kind]}"
            rng = (f"the model's validity range [{lo:g}, {hi:g}] {unit}" if declared
                   else f"the plausible human range [{lo:g}, {hi:g}] {unit} ({cov} "
                   f"has no [validity] range)")
            fix = (f"check the {EFFECT_KINDS[e.kind]} and reference, or narrow "
                   f"[validity] {cov} to where the effect holds" if declared else
                   f"declare [validity] {cov} = [low, high], the range where the "
                   f"effect holds, or check the {EFFECT_KINDS[e.kind]}")
            if bad.any():  # report the worst point: the first non-finite or the min
                k = int(np.argmax(~np.isfinite(f))) if not np.isfinite(f).all() \
                    else int(np.argmin(f))
                what = ("non-finite" if not np.isfinite(f[k]) else "negative"
                        if f[k] < 0 else "zero")
                raise ModelFileError(
                    file, key, f"makes parameter {pname!r} {what} (factor "
                    f"{f[k]:.4g}) at {cov} = {pts[k]:g}{shown}, inside {rng}; it "
                    f"must stay {RULE_TEXT[rule]} as "
                    f"{uses[0] if uses else 'a ' + p.dimension}", fix)
            lo_v, hi_v = lo_v * f.min(), hi_v * f.max()
            at_max.append(f"{cov} = {pts[np.argmax(f)]:g}{shown}")
            worst = max(worst, (float(f.max()), i))
        lo_m, hi_m = TYPICAL_MAGNITUDE
        if p.dimension in SCALED_DIMENSIONS and (0 < lo_v < lo_m or hi_v > hi_m):
            i = worst[1]
            e = model.covariate_effects[i]
            raise ModelFileError(
                file, f"covariate_effects[{i}].{EFFECT_KINDS[e.kind]}",
                f"makes parameter {pname!r} range over [{lo_v:.4g}, {hi_v:.4g}] "
                f"{p.canonical_unit} within the covariates' ranges, beyond "
                f"[{lo_m:g}, {hi_m:g}] {p.canonical_unit}, where no "
                f"pharmacokinetic model goes", "check the covariate effects on it "
                "against the source")
        too_big = hi_v > 1 if rule == "fraction" else False
        if logit and not 0 < lo_v <= hi_v < 1:
            too_big = True
        if too_big:
            i = worst[1]
            e = model.covariate_effects[i]
            need = "strictly between 0 and 1 under its logit-normal variability" \
                if logit else RULE_TEXT["fraction"]
            raise ModelFileError(
                file, f"covariate_effects[{i}].{EFFECT_KINDS[e.kind]}",
                f"makes fraction parameter {pname!r} range over [{lo_v:.4g}, "
                f"{hi_v:.4g}] (largest at {', '.join(at_max)}) within the "
                f"covariates' ranges; it must be {need}",
                "check the covariate effects on it against the source")


def _omega(t: _Table, prefix: str) -> float | None:
    given = {k: t.take(prefix + k, float, required=False)
             for k in ("cv", "omega", "omega2")}
    given = {k: v for k, v in given.items() if v is not None}
    if len(given) > 1:
        t.fail(f"give only one of {', '.join(prefix + k for k in given)}")
    if not given:
        return None
    (k, v), = given.items()
    _number(t, prefix + k, v, "nonnegative")
    omega = omega_from(**{k: v})
    if not math.isfinite(omega):  # cv = 1e300: cv² overflows
        t.fail(f"gives an infinite SD of eta; got {v!r}", prefix + k,
               "a CV is a ratio, e.g. 0.3 for 30 %")
    if omega > MAX_OMEGA:  # omega = 1e300: omega² overflows when etas are drawn
        t.fail(f"gives an SD of eta (omega) of {omega:.4g}, above {MAX_OMEGA:g}, the "
               f"largest accepted (a {math.exp(MAX_OMEGA):.0f}-fold spread at one "
               f"SD, a log-normal CV of {math.sqrt(math.expm1(MAX_OMEGA ** 2)):.2g}); "
               f"got {v!r}", prefix + k,
               "cv is a ratio (0.3 for 30 %), omega the SD of eta, omega2 its "
               "variance; check which one the source gives")
    if 0 < omega and omega * omega < sys.float_info.min:
        # omega = 1e-300: omega² is 0 (or subnormal) in double precision, so the
        # covariance matrix drawn from is singular (a LinAlgError at simulate)
        t.fail(f"gives an SD of eta (omega) of {omega:.4g}, whose variance "
               f"{omega * omega:.3g} underflows double precision (below "
               f"{sys.float_info.min:.3g}); got {v!r}", prefix + k,
               "write 0 for no variability")
    return omega


def _to_ng_per_ml(t: _Table, value: float, unit: str, mw: float) -> float:
    try:
        u = parse_unit(unit)
    except UnitError as exc:
        t.fail(str(exc), "additive_unit")
    if u.dimension == "concentration":
        return value * u.factor * 1000.0
    if u.dimension == "molar concentration":
        return value * u.factor * mw * 1e6  # mol/L × g/mol = g/L; ×1e6 → ng/mL
    t.fail(f"must be a mass or molar concentration; got {unit!r}", "additive_unit")
    raise AssertionError


def cite(model) -> str:
    """BibTeX entries for a model's references (bundled name, path or Model).

    Examples
    --------
    >>> print(cite("domino").splitlines()[0])
    @misc{domino,
    """
    m = load_model(model)
    entries = []
    for r in m.references:
        fields = [f"  note = {{{r.citation}}}"]
        if r.doi:
            fields.append(f"  doi = {{{r.doi}}}")
        if r.year:
            fields.append(f"  year = {{{r.year}}}")
        if r.note:
            fields.append(f"  annote = {{{r.note}}}")
        entries.append(f"@misc{{{r.key},\n" + ",\n".join(fields) + "\n}")
    return "\n\n".join(entries)
