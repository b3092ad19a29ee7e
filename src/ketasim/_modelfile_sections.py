"""One reader per model-file section, in the order ``model_from_dict`` calls them.

Each ``read_*`` function takes the top-level :class:`~ketasim.modelfile._Table` and
what the earlier sections built (parameters, compartments, analytes ...), reads its
section strictly and returns what it built; every problem raises
:class:`~ketasim.modelfile.ModelFileError` naming the key path. The order of the
reads is the order of the checks, so it decides which problem a malformed file is
refused for first: keep it when editing. The schema is in ``models/README.md``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _analytes
from ._validate import COVARIATE_RANGES
from .model import (
    KNOWN_COVARIATES,
    RULE_TEXT,
    Analyte,
    AnalyteLimit,
    Compartment,
    CovariateEffect,
    Flow,
    Parameter,
    Pathway,
    Reference,
    Route,
    Variability,
    omega_from,
)
from .modelfile import (
    EFFECT_KINDS,
    ENANTIOMERS,
    GRADES,
    MAX_OMEGA,
    PER_KG_DIMENSIONS,
    ROLES,
    SAMPLING,
    SCHEMA_VERSION,
    _Table,
)
from .units import (
    Unit,
    UnitError,
    mol_per_l_to_ng_per_ml,
    parse_quantity,
    parse_unit,
)

# ---------------------------------------------------------------------------------
# values


def _number(
    t: _Table, key: str, v: float, rule: str, unit: str = "", hint: str = ""
) -> float:
    """``v`` (read at ``key`` of ``t``) checked against a :data:`RULE_TEXT` rule."""
    ok = {
        "positive": v > 0,
        "nonnegative": v >= 0,
        "fraction": 0 <= v <= 1,
        "finite": True,
    }[rule] and math.isfinite(v)
    if not ok:
        t.fail(
            f"must be {RULE_TEXT[rule]}{' ' + unit if unit else ''}; got {v!r}",
            key,
            hint,
        )
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
        t.fail(
            f"must be a plausible {cname}, within [{lo:g}, {hi:g}] {unit}; got {v!r}",
            key,
            f"{cname} is in {unit}",
        )
    return float(v)


def _device_mg(t: _Table, text: str) -> float:
    """A route's ``device = "28 mg"``: a fixed amount > 0, in mg."""
    try:
        q = parse_quantity(text, what="device")
        u = parse_unit(q.unit)
    except (UnitError, TypeError) as e:
        t.fail(str(e), "device", 'write an amount, e.g. "28 mg"')
    if u.dimension != "amount" or u.per_kg or not 0 < q.value * u.factor < math.inf:
        t.fail(f'must be a fixed amount > 0 such as "28 mg"; got {text!r}', "device")
    return q.value * u.factor


def _need_param(
    t: _Table,
    key: str,
    dimension: str,
    parameters: dict[str, Parameter],
    *,
    number_ok: bool = False,
    required: bool = True,
) -> str | float | None:
    """The name of a defined parameter of ``dimension`` read at ``key`` (or, when
    ``number_ok``, a fraction written as a number in [0, 1]); None if absent and
    not ``required``."""
    types = (str, int, float) if number_ok else str
    v = t.take(key, types, required=required)
    if v is None:
        return None
    if isinstance(v, int | float):  # only fractions may be written as numbers
        return _number(
            t,
            key,
            float(v),
            "fraction",
            hint="a fraction of the dose or flow, e.g. 0.5",
        )
    if v not in parameters:
        t.fail(
            f"names an undefined parameter {v!r}",
            key,
            f"define [parameters.{v}] or use one of "
            f"{', '.join(parameters) or '(none)'}",
        )
    if parameters[v].dimension != dimension:
        p = parameters[v]
        t.fail(
            f"needs a {dimension}; parameter {v!r} is a {p.dimension} ({p.unit})", key
        )
    return v


# ---------------------------------------------------------------------------------
# [model]: the top-level keys, [[references]]


def read_header(top: _Table) -> dict[str, Any]:
    """The top-level keys (schema version, id, name, drug, enantiomer, population,
    sampling, grade, description, racemic fraction), as :class:`Model` keywords."""
    version = top.take("schema_version", int)
    if version != SCHEMA_VERSION:
        top.fail(
            f"unsupported schema version {version}",
            "schema_version",
            f"this ketasim reads schema_version = {SCHEMA_VERSION}",
        )
    header = {
        "id": top.take("id", str),
        "name": top.take("name", str),
        "drug": top.take("drug", str, choices=("ketamine", "esketamine", "arketamine")),
        "enantiomer": top.take("enantiomer", str, choices=ENANTIOMERS),
        "population": top.take("population", str),
        "sampling": top.take("sampling", str, choices=SAMPLING),
        "grade": top.take("grade", str, choices=GRADES),
        "description": top.take("description", str, required=False, default=""),
    }
    enantiomer = header["enantiomer"]
    racemic_fraction = top.take("racemic_fraction", float, required=False)
    if racemic_fraction is not None and (
        enantiomer == "racemic" or not 0 < racemic_fraction <= 1
    ):
        top.fail(
            "applies to enantiomer models, as the share (0-1] of a racemic "
            f"dose they describe; got {racemic_fraction!r} for a {enantiomer} "
            "model",
            "racemic_fraction",
            "S or R ketamine: 0.5",
        )
    header["racemic_fraction"] = racemic_fraction
    return header


def read_references(top: _Table) -> list[Reference]:
    """``[[references]]``: at least one, each with a key and a citation."""
    references = []
    for i, r in enumerate(top.take("references", list)):
        t = _Table(r, f"references[{i}]", top.file)
        references.append(
            Reference(
                key=t.take("key", str),
                citation=t.take("citation", str),
                doi=t.take("doi", str, required=False),
                year=t.take("year", int, required=False),
                note=t.take("note", str, required=False, default=""),
            )
        )
        t.done()
    if not references:
        top.fail("is empty", "references", "cite the paper every number comes from")
    return references


# ---------------------------------------------------------------------------------
# [covariates], [validity]


def read_covariates(top: _Table) -> dict[str, float]:
    """``[covariates]``: known covariates, their units and reference values."""
    covariates: dict[str, float] = {}
    ctab = _Table(top.table("covariates", required=False), "covariates", top.file)
    for cname in list(ctab.data):
        t = _Table(ctab.take(cname, dict), f"covariates.{cname}", top.file)
        if cname not in KNOWN_COVARIATES:
            ctab.fail(
                "is not a known covariate",
                cname,
                f"known covariates: {', '.join(KNOWN_COVARIATES)}",
            )
        unit = t.take("unit", str)
        if unit != KNOWN_COVARIATES[cname]:
            t.fail(f"must be {KNOWN_COVARIATES[cname]!r}; got {unit!r}", "unit")
        covariates[cname] = _covariate_value(
            t, "reference", t.take("reference", float), cname
        )
        t.take("description", str, required=False)
        t.done()
    ctab.done()
    return covariates


def read_validity(
    top: _Table, covariates: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """``[validity]``: a ``[low, high]`` range per declared covariate."""
    validity: dict[str, tuple[float, float]] = {}
    vtab = _Table(top.table("validity", required=False), "validity", top.file)
    for cname in list(vtab.data):
        rng = vtab.take(cname, list)
        if cname not in covariates:
            vtab.fail("names a covariate not declared under [covariates]", cname)
        if len(rng) != 2 or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in rng
        ):
            vtab.fail(f"must be [low, high], two numbers; got {rng!r}", cname)
        for x in rng:
            _covariate_value(vtab, cname, x, cname)
        if rng[0] > rng[1]:
            vtab.fail(
                f"must be [low, high] with low <= high; got {rng!r}",
                cname,
                f"write [{rng[1]!r}, {rng[0]!r}]",
            )
        validity[cname] = (float(rng[0]), float(rng[1]))
    vtab.done()
    return validity


# ---------------------------------------------------------------------------------
# [parameters]


def read_parameters(
    top: _Table,
    covariates: dict[str, float],
    references: list[Reference],
) -> tuple[dict[str, Parameter], dict[str, float], list[str]]:
    """``[parameters]``: each typical value with its unit, source and grade.

    Returns the parameters (values in canonical units), the values as written (in
    the file's units, for messages) and the fractions marked ``above_one``.
    """
    parameters: dict[str, Parameter] = {}
    raw_values: dict[str, float] = {}  # as written, in the file's unit
    above_one: list[str] = []  # fractions the file lets exceed 1, with a reason
    ptab = _Table(top.table("parameters"), "parameters", top.file)
    for pname in list(ptab.data):
        t = _Table(ptab.take(pname, dict), f"parameters.{pname}", top.file)
        value = _number(t, "value", t.take("value", float), "finite")
        unit = t.take("unit", str)
        u = _parameter_unit(t, unit, covariates)
        above = t.take("above_one", str, required=False)
        if above is not None:
            if u.dimension != "dimensionless":
                t.fail(
                    f"applies to fractions (unit '1' or '%'); {pname!r} is a "
                    f"{u.dimension} ({unit})",
                    "above_one",
                )
            above_one.append(pname)
        raw_values[pname] = value
        ref = _parameter_reference(t, ptab, references)
        parameters[pname] = Parameter(
            name=pname,
            value=value * u.factor,
            unit=unit,
            canonical_unit=u.canonical,
            dimension=u.dimension,
            per_kg=u.per_kg,
            description=t.take("description", str),
            reference=ref,
            source=t.take("source", str),
            grade=t.take("grade", str, choices=GRADES),
        )
        t.done()
    ptab.done()
    return parameters, raw_values, above_one


def _parameter_unit(t: _Table, unit: str, covariates: dict[str, float]) -> Unit:
    """A parameter's unit: a volume, clearance, rate constant, time or fraction,
    per kg only for volumes and clearances of a model with a weight covariate."""
    try:
        u = parse_unit(unit)
    except UnitError as exc:
        t.fail(str(exc), "unit")
    if u.dimension is None or u.dims[3] not in (0, -1):
        t.fail(
            f"unit {unit!r} is not a volume, clearance, rate constant, time "
            f"or fraction",
            "unit",
        )
    if u.per_kg and u.dimension not in PER_KG_DIMENSIONS:
        t.fail(
            f"unit {unit!r} is a {u.dimension} per kg of body weight; only "
            f"volumes and clearances scale with weight",
            "unit",
            "drop the /kg (e.g. '1/h', 'h'), or write the volume or clearance "
            "the paper scales per kg",
        )
    if u.per_kg and "weight" not in covariates:
        t.fail(
            f"per-kg unit {unit!r} needs the weight covariate",
            "unit",
            "declare [covariates.weight] with unit = 'kg' and a reference",
        )
    return u


def _parameter_reference(
    t: _Table, ptab: _Table, references: list[Reference]
) -> str | None:
    """A parameter's optional ``reference``: the key of one of ``references``."""
    ref_keys = {r.key for r in references}
    ref = t.take("reference", str, required=False)
    if ref is not None and ref not in ref_keys:
        # an entry no parameter cites is the likely misspelling: name it too
        cited = {x.get("reference") for x in ptab.data.values() if isinstance(x, dict)}
        odd = "".join(
            f"; references[{i}] (key {r.key!r}) is cited by no parameter"
            for i, r in enumerate(references)
            if r.key not in cited
        )
        t.fail(
            f"names an unknown reference {ref!r}",
            "reference",
            f"references: {', '.join(sorted(ref_keys))}{odd}",
        )
    return ref


# ---------------------------------------------------------------------------------
# [compartments], [[flows]]


@dataclass
class Layout:
    """The compartments read from ``[compartments]``, a transit chain expanded into
    its ``count`` compartments ``name_1`` ... ``name_n``."""

    table: _Table  #: the [compartments] table, for errors found later
    compartments: list[Compartment]
    chains: dict[str, int]  #: transit chain name -> number of compartments
    analyte_of: dict[str, str]  #: compartment -> the analyte measured in it
    species_of: dict[str, str]  #: compartment -> the analyte it holds unmeasured
    names: list[str]  #: compartment and chain names a flow or route may name
    volume_of: dict[str, str | None]  #: compartment -> its volume parameter

    def first(self, c: str) -> str:
        """The compartment a flow into ``c`` enters: a chain's first."""
        return f"{c}_1" if c in self.chains else c

    def last(self, c: str) -> str:
        """The compartment a flow out of ``c`` leaves: a chain's last."""
        return f"{c}_{self.chains[c]}" if c in self.chains else c

    def need(self, t: _Table, key: str, *, required: bool = True) -> str | None:
        """The name of a compartment or chain read at ``key`` of ``t``."""
        v = t.take(key, str, required=required)
        if v is not None and v not in self.names:
            t.fail(
                f"names an undefined compartment {v!r}",
                key,
                f"compartments: {', '.join(self.names)}",
            )
        return v


def read_compartments(top: _Table, parameters: dict[str, Parameter]) -> Layout:
    """``[compartments]``: roles, volumes, analytes, transit chains; one central."""
    analyte_of: dict[str, str] = {}
    species_of: dict[str, str] = {}
    compartments: list[Compartment] = []
    chains: dict[str, int] = {}
    cmt_tab = _Table(top.table("compartments"), "compartments", top.file)
    for cname in list(cmt_tab.data):
        t = _Table(cmt_tab.take(cname, dict), f"compartments.{cname}", top.file)
        role = t.take("role", str, choices=ROLES)
        vol = _need_param(t, "volume", "volume", parameters, required=False)
        an = _analyte_name(t, "analyte", t.take("analyte", str, required=False))
        sp = _analyte_name(t, "species", t.take("species", str, required=False))
        if sp is not None and an is not None:
            t.fail(
                "give `analyte` (measured here) or `species` (mass held, not "
                "measured), not both",
                "species",
            )
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
            compartments += [
                Compartment(f"{cname}_{i + 1}", role, None, None, sp)
                for i in range(count)
            ]
        if an is not None:
            analyte_of[cname] = an
    cmt_tab.done()
    if not any(c.role == "central" for c in compartments):
        top.fail("has no compartment with role = 'central'", "compartments")
    return Layout(
        cmt_tab,
        compartments,
        chains,
        analyte_of,
        species_of,
        names=[c.name for c in compartments] + list(chains),
        volume_of={c.name: c.volume for c in compartments},
    )


def read_flows(
    top: _Table, parameters: dict[str, Parameter], layout: Layout
) -> list[Flow]:
    """``[[flows]]``: each by a rate constant, clearance or mean transit time."""
    flows: list[Flow] = []
    for i, f in enumerate(top.take("flows", list, required=False, default=[])):
        flows += _read_flow(_Table(f, f"flows[{i}]", top.file), parameters, layout)
    return flows


def _read_flow(
    t: _Table, parameters: dict[str, Parameter], layout: Layout
) -> list[Flow]:
    """One ``[[flows]]`` entry; out of a transit chain, the chain's inner flows
    followed by the flow out of its last compartment."""
    src = layout.need(t, "from")
    dst = layout.need(t, "to", required=False)
    given = [k for k in ("k", "cl", "mtt") if k in t.data]
    if len(given) != 1:
        t.fail(
            "needs exactly one of `k` (rate constant), `cl` (clearance) or "
            "`mtt` (mean transit time)"
        )
    kind = given[0]
    rate = _need_param(
        t,
        kind,
        {"k": "rate constant", "cl": "clearance", "mtt": "time"}[kind],
        parameters,
    )
    if kind == "cl" and layout.volume_of.get(src) is None:
        t.fail(
            f"a clearance flow needs a volume on compartment {src!r}",
            "cl",
            f"add `volume = ...` to [compartments.{src}] or use k",
        )
    if src in layout.chains and kind != "mtt":
        t.fail(
            f"flows out of transit chain {src!r} are set by its mean transit time",
            kind,
            "use `mtt = ...`",
        )
    frac = _need_param(
        t, "fraction", "dimensionless", parameters, number_ok=True, required=False
    )
    if frac is not None and dst is None:
        t.fail("a fraction needs a target `to`", "fraction")
    if dst == src:
        t.fail("`from` and `to` are the same compartment", "to")
    t.done()
    n = layout.chains.get(src, 1)
    flows = []
    if src in layout.chains:
        flows += [
            Flow(f"{src}_{j}", f"{src}_{j + 1}", "mtt", rate, None, n)
            for j in range(1, n)
        ]
    flows.append(
        Flow(
            layout.last(src),
            None if dst is None else layout.first(dst),
            kind,
            rate,
            frac,
            n,
        )
    )
    return flows


# ---------------------------------------------------------------------------------
# [routes]


def read_routes(
    top: _Table, parameters: dict[str, Parameter], layout: Layout
) -> dict[str, Route]:
    """``[routes]``: at least one, each a target or pathways, maybe a device."""
    routes: dict[str, Route] = {}
    rtab = _Table(top.table("routes"), "routes", top.file)
    for rname in list(rtab.data):
        t = _Table(rtab.take(rname, dict), f"routes.{rname}", top.file)
        routes[rname] = _read_route(t, rname, parameters, layout)
    rtab.done()
    if not routes:
        top.fail("is empty", "routes", "define at least [routes.iv]")
    return routes


def _read_route(
    t: _Table, rname: str, parameters: dict[str, Parameter], layout: Layout
) -> Route:
    """One ``[routes.<name>]``: its kind, its pathways and its device."""
    kind = t.take("kind", str, choices=("intravenous", "extravascular"))
    desc = t.take("description", str, required=False, default="")
    if "pathways" in t.data and "target" in t.data:
        t.fail("give either `target` (one pathway) or `pathways`, not both")
    items = t.take("pathways", list) if "pathways" in t.data else [None]
    pathways = []
    for j, item in enumerate(items):
        # one pathway is written in the route's own table, several as a list
        pt = (
            t if item is None else _Table(item, f"routes.{rname}.pathways[{j}]", t.file)
        )
        pw = _read_pathway(pt, parameters, layout)
        if item is not None:
            pt.done()
        if (
            kind == "intravenous"
            and (pw.fraction, pw.lag, pw.duration, pw.later_devices, pw.bioavailability)
            != (None,) * 5
        ):
            pt.fail(
                "an intravenous route takes only `target`; bioavailability, "
                "lag and duration belong to extravascular routes"
            )
        pathways.append(pw)
    if sum(pw.fraction == "rest" for pw in pathways) > 1:
        t.fail("only one pathway may take fraction = 'rest'", "pathways")
    device = t.take("device", str, required=False)
    device_mg = None if device is None else _device_mg(t, device)
    if device_mg is None and any(pw.later_devices for pw in pathways):
        t.fail(
            "is missing",
            "device",
            "a pathway with `later_devices` models "
            "one device per Dose: give the device's amount, e.g. "
            '`device = "28 mg"`',
        )
    if device_mg is not None and kind == "intravenous":
        t.fail("only extravascular routes have devices", "device")
    grade, evidence = _evidence(t)
    benchmark = t.take("benchmark_only", bool, required=False, default=False)
    t.done()
    return Route(
        rname, kind, tuple(pathways), desc, device_mg, grade, evidence, benchmark
    )


def _evidence(t: _Table) -> tuple[str | None, str]:
    """A route's or analyte's ``grade`` (P T C U choice) and ``evidence`` (where
    its numbers come from): both or neither."""
    grade = t.take("grade", str, required=False, choices=GRADES)
    evidence = t.take("evidence", str, required=False, default="")
    if (grade is None) != (not evidence.strip()):
        t.fail(
            "is missing",
            "evidence" if grade is not None else "grade",
            "a route or analyte states its evidence grade together with where "
            'its numbers come from: grade = "P" and evidence = "paper, table"',
        )
    return grade, evidence


def _read_pathway(
    pt: _Table, parameters: dict[str, Parameter], layout: Layout
) -> Pathway:
    """A route's pathway: target, fraction (or ``"rest"``), lag, duration and
    later-devices fraction (not checked against the route's kind here)."""
    rest = pt.data.get("fraction") == "rest"
    if rest:
        pt.take("fraction", str)
    return Pathway(
        target=layout.first(layout.need(pt, "target")),
        fraction="rest"
        if rest
        else _need_param(
            pt, "fraction", "dimensionless", parameters, number_ok=True, required=False
        ),
        lag=_need_param(pt, "lag", "time", parameters, required=False),
        duration=_need_param(pt, "duration", "time", parameters, required=False),
        later_devices=_need_param(
            pt, "later_devices", "dimensionless", parameters, required=False
        ),
        bioavailability=_need_param(
            pt,
            "bioavailability",
            "dimensionless",
            parameters,
            number_ok=True,
            required=False,
        ),
    )


# ---------------------------------------------------------------------------------
# [analytes]


def read_analytes(top: _Table, layout: Layout) -> list[Analyte]:
    """``[analytes]``: each measured in a compartment with a volume that declares
    it; then every analyte or species a compartment names must be defined."""
    analytes: list[Analyte] = []
    atab = _Table(top.table("analytes"), "analytes", top.file)
    for key in list(atab.data):
        aname = _analyte_name(atab, key, key)
        if aname in {a.name for a in analytes}:
            atab.fail(
                f"names analyte {aname!r} a second time",
                key,
                "common names are aliases (esketamine is s_ketamine): define "
                "each analyte once",
            )
        t = _Table(atab.take(key, dict), f"analytes.{key}", top.file)
        cmt = layout.need(t, "compartment")
        mw = _number(t, "mw", t.take("mw", float), "positive", "g/mol")
        if not 1.0 <= mw <= 1e6:  # hydrogen to a large protein: a slip otherwise
            t.fail(
                f"must be a molecular weight within [1, 1e6] g/mol; got {mw!r}",
                "mw",
                "ketamine is 237.73 g/mol",
            )
        known = _analytes.base_molecular_weight(aname)
        if known is not None and abs(mw - known[0]) > 0.005 * known[0]:
            t.fail(
                f"must be the molecular weight of {aname}'s free base, "
                f"{known[1]}: {known[0]:.2f} g/mol; got {mw!r}",
                "mw",
                "doses and levels are base amounts (a salt's weight, such as the "
                "hydrochloride's, belongs in the dose's salt=)",
            )
        if layout.volume_of.get(cmt) is None:
            t.fail(
                f"compartment {cmt!r} has no volume, so no concentration", "compartment"
            )
        if layout.analyte_of.get(cmt) != aname:
            t.fail(
                f"compartment {cmt!r} must declare analyte = {aname!r}", "compartment"
            )
        analytes.append(
            Analyte(
                aname,
                cmt,
                mw,
                formation=t.take(
                    "formation",
                    str,
                    required=False,
                    default="molar",
                    choices=("molar", "apparent"),
                ),
                long_name=t.take("long_name", str, required=False, default=aname),
                **_analyte_evidence(t, key),
            )
        )
        t.done()
    atab.done()
    anames = {a.name for a in analytes}
    for cname, an in layout.analyte_of.items():
        if an not in anames:
            layout.table.fail(
                f"names an undefined analyte {an!r}",
                f"{cname}.analyte",
                f"define [analytes.{an}]",
            )
    for cname, sp in layout.species_of.items():
        if sp not in anames:
            layout.table.fail(
                f"names an undefined analyte {sp!r}",
                f"{cname}.species",
                f"define [analytes.{sp}]",
            )
    return analytes


def _analyte_name(t: _Table, key: str, name: str | None) -> str | None:
    """An analyte name read at ``key`` of ``t`` in its canonical spelling: common
    names are aliases (``esketamine`` -> ``s_ketamine``); other names are refused,
    so every model names the same analyte the same way (models/README.md,
    "Analyte names")."""
    if name is None:
        return None
    c = _analytes.canonical(name)
    if c is None:
        t.fail(
            f"names analyte {name!r}, which is not in ketasim's analyte naming",
            key,
            _analytes.CONVENTION_HINT,
        )
    return c


def check_analyte_enantiomers(top: _Table, enantiomer: str, model_analytes) -> None:
    """An S (or R) model measures S (or R) species only: its analytes and species
    are ``s_`` (``r_``) names. A racemic model may name the racemate or both
    enantiomers (an S + R model of a racemic dose)."""
    prefix = {"S": "s_", "R": "r_"}.get(enantiomer)
    if prefix is None:
        return
    for a in model_analytes:
        if not a.name.startswith(prefix):
            top.fail(
                f"analyte {a.name!r} ({_analytes.describe(a.name)}) in a model "
                f"of enantiomer = {enantiomer!r}",
                f"analytes.{a.name}",
                f"name the {enantiomer}-enantiomer "
                f"{prefix + a.name.removeprefix('s_').removeprefix('r_')!r}"
                f" (models/README.md, 'Analyte names')",
            )


def _analyte_evidence(t: _Table, aname: str) -> dict[str, Any]:
    """An analyte's ``grade``, ``evidence`` and ``[[analytes.<name>.limits]]``:
    doses after which the model cannot predict it (``action`` refuse or warn, the
    ``routes`` concerned, ``shorter_than`` for boluses and short inputs, and the
    ``reason``)."""
    grade, evidence = _evidence(t)
    limits = []
    for j, item in enumerate(t.take("limits", list, required=False, default=[])):
        lt = _Table(item, f"analytes.{aname}.limits[{j}]", t.file)
        action = lt.take("action", str, choices=("refuse", "warn"))
        reason = lt.take("reason", str)
        routes = lt.take("routes", list, required=False, default=[])
        if not all(isinstance(r, str) and r for r in routes):
            lt.fail(f"must be a list of route names; got {routes!r}", "routes")
        shorter = lt.take("shorter_than", str, required=False)
        hours = None
        if shorter is not None:
            try:
                q = parse_quantity(shorter, what="shorter_than")
                u = parse_unit(q.unit)
            except (UnitError, TypeError) as e:
                lt.fail(str(e), "shorter_than", 'write a duration, e.g. "6 h"')
            hours = q.value * u.factor
            if u.dimension != "time" or not 0 < hours < math.inf:
                lt.fail(
                    f'must be a duration > 0 such as "6 h"; got {shorter!r}',
                    "shorter_than",
                )
        if not routes and hours is None:
            lt.fail(
                "is missing",
                "routes",
                "say which doses the limit concerns: routes = [...] and/or "
                'shorter_than = "6 h"',
            )
        lt.done()
        limits.append(AnalyteLimit(action, reason, tuple(routes), hours))
    return {"grade": grade, "evidence": evidence, "limits": tuple(limits)}


# ---------------------------------------------------------------------------------
# [variability] (IIV and IOV), [[correlations]]


def read_variability(
    top: _Table, parameters: dict[str, Parameter]
) -> list[Variability]:
    """``[variability]``: per parameter, its distribution and the SD of its IIV
    and IOV random effects (from a cv, omega or omega2)."""
    variability: list[Variability] = []
    var_tab = _Table(top.table("variability", required=False), "variability", top.file)
    for pname in list(var_tab.data):
        t = _Table(var_tab.take(pname, dict), f"variability.{pname}", top.file)
        if pname not in parameters:
            var_tab.fail("is not a defined parameter", pname)
        dist = t.take("distribution", str, choices=("lognormal", "logitnormal"))
        iiv = _omega(t, "")
        iov = _omega(t, "iov_")
        if iiv is None and iov is None:
            t.fail(
                "gives no variance",
                hint="add one of cv, omega, omega2 (IIV) or "
                "iov_cv, iov_omega, iov_omega2 (IOV)",
            )
        if dist == "logitnormal" and not 0 < parameters[pname].value < 1:
            t.fail(
                "logit-normal needs a typical value strictly between 0 and 1",
                "distribution",
            )
        variability.append(
            Variability(pname, dist, iiv or 0.0, iov or 0.0, t.take("source", str))
        )
        t.done()
    var_tab.done()
    return variability


#: the largest ``cv`` accepted (a ratio; the bundled files' largest is 1.32): a
#: larger one is far likelier a percentage written as a ratio
MAX_CV = 3.0


def _omega(t: _Table, prefix: str) -> float | None:
    """The SD of eta from at most one of ``cv``, ``omega``, ``omega2`` (IIV) or
    their ``iov_`` forms (``prefix``); None if none is given."""
    given = {
        k: t.take(prefix + k, float, required=False) for k in ("cv", "omega", "omega2")
    }
    given = {k: v for k, v in given.items() if v is not None}
    if len(given) > 1:
        t.fail(f"give only one of {', '.join(prefix + k for k in given)}")
    if not given:
        return None
    ((k, v),) = given.items()
    _number(t, prefix + k, v, "nonnegative")
    omega = omega_from(**{k: v})
    if not math.isfinite(omega):  # cv = 1e300: cv² overflows
        t.fail(
            f"gives an infinite SD of eta; got {v!r}",
            prefix + k,
            "a CV is a ratio, e.g. 0.3 for 30 %",
        )
    if k == "cv" and v > MAX_CV:  # cv = 30 written for 30 %: omega 2.6, no error
        t.fail(
            f"is a CV above {MAX_CV:g} ({MAX_CV:.0%}); got {v!r}",
            prefix + k,
            "a CV is a ratio, 0.3 for 30 %; if the source gives a CV that large, "
            f"write the SD of eta as {prefix}omega",
        )
    if omega > MAX_OMEGA:  # omega = 1e300: omega² overflows when etas are drawn
        t.fail(
            f"gives an SD of eta (omega) of {omega:.4g}, above {MAX_OMEGA:g}, the "
            f"largest accepted (a {math.exp(MAX_OMEGA):.0f}-fold spread at one "
            f"SD, a log-normal CV of {math.sqrt(math.expm1(MAX_OMEGA**2)):.2g}); "
            f"got {v!r}",
            prefix + k,
            "cv is a ratio (0.3 for 30 %), omega the SD of eta, omega2 its "
            "variance; check which one the source gives",
        )
    if 0 < omega and omega * omega < sys.float_info.min:
        # omega = 1e-300: omega² is 0 (or subnormal) in double precision, so the
        # covariance matrix drawn from is singular (a LinAlgError at simulate)
        t.fail(
            f"gives an SD of eta (omega) of {omega:.4g}, whose variance "
            f"{omega * omega:.3g} underflows double precision (below "
            f"{sys.float_info.min:.3g}); got {v!r}",
            prefix + k,
            "write 0 for no variability",
        )
    return omega


def read_correlations(
    top: _Table,
    variability: list[Variability],
) -> list[tuple[str, str, float]]:
    """``[[correlations]]``: pairs of parameters with IIV and their correlation,
    keeping the IIV covariance matrix positive definite after each."""
    correlations: list[tuple[str, str, float]] = []
    omega_of = {v.parameter: v.omega for v in variability}
    for i, c in enumerate(top.take("correlations", list, required=False, default=[])):
        t = _Table(c, f"correlations[{i}]", top.file)
        correlations.append(_read_correlation(t, omega_of, correlations))
        _positive_definite(t, variability, correlations)
    return correlations


def _read_correlation(
    t: _Table, omega_of: dict[str, float], earlier: list[tuple[str, str, float]]
) -> tuple[str, str, float]:
    """One ``[[correlations]]`` entry as ``(a, b, rho)``, from a correlation or a
    covariance, a pair not in ``earlier``."""
    pair = t.take("parameters", list)
    if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
        t.fail(f"must name two parameters with IIV; got {pair!r}", "parameters")
    if pair[0] == pair[1]:
        t.fail(
            f"names {pair[0]!r} twice; its variance belongs in [variability.{pair[0]}]",
            "parameters",
        )
    for p in pair:
        if p not in omega_of:
            t.fail(
                f"names {p!r}, which has no [variability.{p}]; got {pair!r}",
                "parameters",
                "a correlation is between two parameters with "
                "inter-individual variability",
            )
        if omega_of[p] == 0:
            t.fail(
                f"names {p!r}, whose inter-individual variance is 0 (it has "
                f"only IOV or omega = 0), so it cannot be correlated",
                "parameters",
                f"give [variability.{p}] a non-zero cv, omega "
                f"or omega2, or remove this correlation",
            )
    if any({a, b} == set(pair) for a, b, _ in earlier):
        t.fail(f"repeats the pair {pair!r} of an earlier correlation", "parameters")
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
            t.fail(
                f"gives correlation {rho:.4g} = {cov!r} / ({pair[0]} omega × "
                f"{pair[1]} omega = {sd:.4g}); a correlation lies in (-1, 1)",
                key,
                "check the covariance against the variances",
            )
    if not -1 < rho < 1:
        t.fail(f"must lie in (-1, 1); got {rho!r}", key)
    t.take("source", str)
    t.done()
    return pair[0], pair[1], float(rho)


def _positive_definite(
    t: _Table,
    variability: list[Variability],
    correlations: list[tuple[str, str, float]],
) -> None:
    """The IIV covariance matrix with the correlations so far must have a Cholesky
    factor, as ``Population.etas`` needs to draw correlated random effects. It is
    built as ``population._omega_matrix`` builds it: parameters with omega > 0 in
    file order, variances omega² on the diagonal, rho omega_a omega_b off it."""
    var = [v for v in variability if v.omega > 0]
    names = [v.parameter for v in var]
    sd = {v.parameter: v.omega for v in var}
    om = np.diag([v.omega**2 for v in var])
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
    t.fail(
        f"makes the inter-individual covariance matrix of "
        f"{', '.join(involved)} not positive definite (smallest eigenvalue "
        f"{w[0]:.3g}), so no random effects can be drawn from it",
        hint="these correlations cannot all hold at once; check their signs "
        "and sizes against the source",
    )


# ---------------------------------------------------------------------------------
# [[covariate_effects]], [[time_effects]]


def read_covariate_effects(
    top: _Table, parameters: dict[str, Parameter], covariates: dict[str, float]
) -> list[CovariateEffect]:
    """``[[covariate_effects]]``: power, linear, hinge, exponential or categorical
    effects of declared covariates on parameters, none repeated."""
    effects: list[CovariateEffect] = []
    for i, e in enumerate(
        top.take("covariate_effects", list, required=False, default=[])
    ):
        t = _Table(e, f"covariate_effects[{i}]", top.file)
        effects.append(_read_covariate_effect(t, i, parameters, covariates, effects))
    return effects


def _read_covariate_effect(
    t: _Table,
    i: int,
    parameters: dict[str, Parameter],
    covariates: dict[str, float],
    earlier: list[CovariateEffect],
) -> CovariateEffect:
    """``[[covariate_effects]]`` entry ``i``: its coefficient and reference value
    checked for its kind and covariate, not a repeat of one in ``earlier``."""
    pname = t.take("parameter", str)
    if pname not in parameters:
        t.fail(f"names an undefined parameter {pname!r}", "parameter")
    cov = t.take("covariate", str)
    if cov not in covariates:
        t.fail(f"names covariate {cov!r} not declared under [covariates]", "covariate")
    kind = t.take("model", str, choices=tuple(EFFECT_KINDS))
    coef = _number(
        t,
        EFFECT_KINDS[kind],
        t.take(EFFECT_KINDS[kind], float),
        "nonnegative" if kind == "categorical" else "finite",
        hint="a multiplicative factor on the parameter"
        if kind == "categorical"
        else "",
    )
    ref = _number(
        t,
        "reference",
        t.take("reference", float, required=kind != "categorical", default=1.0),
        "finite",
    )
    if kind == "power" and ref <= 0:
        t.fail(
            f"must be > 0 for a power effect, (c / reference)^exponent; got {ref!r}",
            "reference",
            f"the typical {cov}, e.g. {covariates[cov]:g} {KNOWN_COVARIATES[cov]}",
        )
    if KNOWN_COVARIATES[cov] != "0/1" and "reference" in t.data:
        _covariate_value(t, "reference", ref, cov)  # a value of the covariate
    if kind == "categorical" and KNOWN_COVARIATES[cov] == "0/1" and ref not in (0, 1):
        t.fail(
            f"must be 0 or 1 ({cov} is a 0/1 flag); got {ref!r}",
            "reference",
            f"reference = 1 applies the factor where {cov} = 1",
        )
    # the same effect twice multiplies the parameter by its factor twice
    for j, other in enumerate(earlier):
        if (other.parameter, other.covariate, other.kind, other.reference) == (
            pname,
            cov,
            kind,
            ref,
        ):
            t.fail(
                f"repeats covariate_effects[{j}]: both are a {kind} effect of "
                f"{cov} on {pname!r} with reference {ref:g}, so the effect "
                f"would be applied twice",
                hint=f"remove one of covariate_effects[{j}] and covariate_effects[{i}]",
            )
    effect = CovariateEffect(pname, cov, kind, ref, coef, t.take("source", str))
    t.done()
    return effect


def read_time_effects(
    top: _Table, parameters: dict[str, Parameter], flows: list[Flow]
) -> list[tuple[str, float]]:
    """``[[time_effects]]``: linear changes in time of flow rates (clearances and
    rate constants), as ``(parameter, slope per hour)``."""
    time_effects = []
    for i, e in enumerate(top.take("time_effects", list, required=False, default=[])):
        t = _Table(e, f"time_effects[{i}]", top.file)
        pname = t.take("parameter", str)
        if pname not in parameters:
            t.fail(f"names an undefined parameter {pname!r}", "parameter")
        if not any(f.rate == pname for f in flows):
            t.fail(
                f"parameter {pname!r} sets no flow; only flow rates may vary in time",
                "parameter",
            )
        if any(f.rate == pname and f.kind == "mtt" for f in flows):
            t.fail(
                f"parameter {pname!r} is a mean transit time; a linear time "
                "effect applies to clearances and rate constants only",
                "parameter",
            )
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
    return time_effects


# ---------------------------------------------------------------------------------
# [residual]


def read_residual(top: _Table, analytes: list[Analyte]) -> dict[str, dict[str, float]]:
    """``[residual]``: per analyte, proportional, exponential and additive error
    (the additive SD converted to ng/mL)."""
    anames = {a.name for a in analytes}
    residual: dict[str, dict[str, float]] = {}
    res_tab = _Table(top.table("residual", required=False), "residual", top.file)
    for key in list(res_tab.data):
        aname = _analyte_name(res_tab, key, key)
        t = _Table(res_tab.take(key, dict), f"residual.{key}", top.file)
        if aname not in anames:
            res_tab.fail("is not a defined analyte", key)
        if aname in residual:
            res_tab.fail(f"gives analyte {aname!r} a second error model", key)
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
                t, add, unit, next(a.mw for a in analytes if a.name == aname)
            )
        t.take("source", str)
        if not entry:
            t.fail(
                "gives no error model",
                hint="add proportional, exponential or additive (+ additive_unit)",
            )
        t.done()
        residual[aname] = entry
    res_tab.done()
    return residual


def _to_ng_per_ml(t: _Table, value: float, unit: str, mw: float) -> float:
    """An additive residual SD ``value`` in ``unit`` (mass or molar), in ng/mL."""
    try:
        u = parse_unit(unit)
    except UnitError as exc:
        t.fail(str(exc), "additive_unit")
    if u.dimension == "concentration":
        return value * u.factor * 1000.0
    if u.dimension == "molar concentration":
        return mol_per_l_to_ng_per_ml(value * u.factor, mw)
    t.fail(f"must be a mass or molar concentration; got {unit!r}", "additive_unit")
    raise AssertionError


# ---------------------------------------------------------------------------------
# [effect_sites], [effects] (pharmacodynamics)


def read_effect_sites(
    top: _Table, parameters: dict[str, Parameter], analytes: list[Analyte]
):
    """``[effect_sites]``: per site, the analyte whose plasma concentration drives
    it and exactly one of ``ke0`` (a rate constant parameter) or ``half_life``
    (a time parameter: ke0 = ln 2 / t½)."""
    from ._effects import EffectSite

    sites = []
    anames = [a.name for a in analytes]
    stab = _Table(top.table("effect_sites", required=False), "effect_sites", top.file)
    for sname in list(stab.data):
        t = _Table(stab.take(sname, dict), f"effect_sites.{sname}", top.file)
        an = _analyte_name(t, "analyte", t.take("analyte", str))
        if an not in anames:
            t.fail(
                f"names an undefined analyte {an!r}",
                "analyte",
                f"analytes: {', '.join(anames)}",
            )
        has = [k for k in ("ke0", "half_life") if k in t.data]
        if len(has) != 1:
            t.fail(
                "needs exactly one of ke0 (a rate constant parameter) or half_life "
                f"(the equilibration half-life, a time parameter); got {has or 'none'}"
            )
        kind = has[0]
        dim = "rate constant" if kind == "ke0" else "time"
        pname = _need_param(t, kind, dim, parameters)
        if not parameters[pname].value > 0:
            t.fail(
                f"parameter {pname!r} must be > 0; got {parameters[pname].value!r}",
                kind,
            )
        desc = t.take("description", str, required=False, default="")
        t.done()
        sites.append(EffectSite(sname, an, pname, kind, desc))
    stab.done()
    return sites


def read_effects(
    top: _Table,
    parameters: dict[str, Parameter],
    analytes: list[Analyte],
    sites: list,
    references: list[Reference],
    route_names: list[str] = (),
):
    """``[effects]``: pharmacodynamic endpoints (``models/README.md``,
    "Effect sites and effects")."""
    from ._effects import EFFECT_MODELS, INTERACTIONS, Endpoint

    out = []
    etab = _Table(top.table("effects", required=False), "effects", top.file)
    for ename in list(etab.data):
        t = _Table(etab.take(ename, dict), f"effects.{ename}", top.file)
        model = t.take("model", str, choices=EFFECT_MODELS)
        unit = t.take("unit", str)
        if not unit.strip():
            t.fail("is empty", "unit", 'the effect\'s unit, e.g. "cm" (10-cm VAS)')
        long_name = t.take("long_name", str)
        baseline = float(t.take("baseline", (int, float), required=False, default=0))
        if not math.isfinite(baseline):
            t.fail(f"must be finite; got {baseline!r}", "baseline")
        emax = gamma = None
        if model != "linear":
            emax = float(t.take("emax", (int, float)))
            if not math.isfinite(emax) or emax == 0:
                t.fail(
                    f"must be finite and not 0; got {emax!r}",
                    "emax",
                    "the largest change from baseline, negative for an effect "
                    "the drug lowers",
                )
        if model == "sigmoid_emax":
            g = t.take("gamma", (str, int, float))
            if isinstance(g, str):
                gamma = _need_param(t, "gamma", "dimensionless", parameters)
                gv = parameters[gamma].value
            else:
                gamma = gv = float(g)
            if not (math.isfinite(gv) and 0 < gv <= 100):
                t.fail(f"must be a steepness in (0, 100]; got {gv!r}", "gamma")
        interaction = t.take(
            "interaction",
            str,
            required=False,
            default="agonistic",
            choices=INTERACTIONS,
        )
        drivers = _read_drivers(t, model, interaction, parameters, analytes, sites)
        ref = t.take("reference", str, required=False)
        if ref is not None and ref not in {r.key for r in references}:
            t.fail(f"names an undefined reference {ref!r}", "reference")
        routes = t.take("routes", list, required=False)
        note = t.take("routes_note", str, required=routes is not None, default="")
        if routes is not None:
            bad = [r for r in routes if r not in route_names]
            if not routes or bad:
                t.fail(
                    f"must list routes of this model; got {routes!r}",
                    "routes",
                    f"routes: {', '.join(route_names)}",
                )
            routes = tuple(routes)
        source = t.take("source", str)
        grade = t.take("grade", str, choices=GRADES)
        t.done()
        out.append(
            Endpoint(
                ename,
                model,
                unit,
                long_name,
                baseline,
                emax,
                gamma,
                interaction,
                tuple(drivers),
                source,
                grade,
                ref,
                routes,
                note,
            )
        )
    etab.done()
    return out


def _read_drivers(t: _Table, model, interaction, parameters, analytes, sites):
    """``[[effects.<name>.drivers]]``: each an effect ``site`` or a plasma
    ``analyte``, with its concentration parameter: ``c50`` (an agonist), ``c100``
    (an antagonist after the first driver of an antagonistic endpoint) or, for a
    linear endpoint, ``at`` and the effect ``change`` there."""
    from ._effects import Driver

    items = t.take("drivers", list)
    if not items:
        t.fail("is empty", "drivers", "add at least one [[....drivers]] table")
    if interaction == "antagonistic" and (model == "linear" or len(items) < 2):
        t.fail(
            "antagonistic needs an emax or sigmoid_emax endpoint with two or more "
            "drivers (the agonist first, then its antagonists)",
            "interaction",
        )
    site_of = {s.name: s for s in sites}
    anames = [a.name for a in analytes]
    out = []
    for i, item in enumerate(items):
        d = _Table(item, f"{t.path}.drivers[{i}]", t.file)
        if ("site" in d.data) == ("analyte" in d.data):
            d.fail(
                "needs exactly one of site (an effect-site concentration) or "
                "analyte (the plasma concentration: a direct effect)"
            )
        site = d.take("site", str, required=False)
        if site is not None:
            if site not in site_of:
                d.fail(
                    f"names an undefined effect site {site!r}",
                    "site",
                    f"effect sites: {', '.join(site_of) or '(none)'}",
                )
            an = site_of[site].analyte
        else:
            an = _analyte_name(d, "analyte", d.take("analyte", str))
            if an not in anames:
                d.fail(
                    f"names an undefined analyte {an!r}",
                    "analyte",
                    f"analytes: {', '.join(anames)}",
                )
        role = (
            "at"
            if model == "linear"
            else "c100"
            if interaction == "antagonistic" and i > 0
            else "c50"
        )
        change = 0.0
        if role == "at":
            change = float(d.take("change", (int, float)))
            if not math.isfinite(change):
                d.fail(f"must be finite; got {change!r}", "change")
        v = d.take(role, str)
        if v not in parameters:
            d.fail(
                f"names an undefined parameter {v!r}",
                role,
                f"define [parameters.{v}] with a concentration unit (ng/mL or nmol/mL)",
            )
        p = parameters[v]
        if p.dimension not in ("concentration", "molar concentration"):
            d.fail(
                f"needs a concentration; parameter {v!r} is a {p.dimension} ({p.unit})",
                role,
            )
        if p.per_kg or not (math.isfinite(p.value) and p.value > 0):
            d.fail(
                f"parameter {v!r} must be a concentration > 0; got {p.value!r}", role
            )
        d.done()
        out.append(Driver(an, site, v, role, change))
    return out


def check_effect_variability(top: _Table, sites: list, variability) -> None:
    """An effect site's ke0 may vary between subjects, not between occasions: the
    site's state carries over from one session to the next with one ke0."""
    iov = {v.parameter for v in variability if v.iov_omega > 0}
    for s in sites:
        if s.parameter in iov:
            top.fail(
                f"gives {s.parameter!r}, the {s.kind} of effect site {s.name!r}, "
                f"inter-occasion variability, which effect sites do not support",
                f"variability.{s.parameter}",
                "remove its iov_ entry (inter-individual variability is supported)",
            )


# 95 % two-sided normal quantile: a published 95 % CI is estimate +- Z95 x SE
_Z95 = 1.959963984540054


def read_precision(top: _Table, parameters: dict[str, Parameter]) -> list:
    """``[precision]``: per parameter, the published precision of its typical value
    (a standard error ``se`` in the parameter's unit, a relative standard error
    ``rse`` (a ratio, 0.1 for 10 %) or a 95 % confidence interval ``ci95 = [lo,
    hi]`` in the parameter's unit), the ``scale`` the paper estimated it on
    ("linear" or "log"), its ``source`` and ``grade`` (P, T or C: a number not
    read in a source, grade U, is not encoded).

    Stored as the SE on that scale (:class:`~ketasim.model.Precision`): linear, in
    the canonical unit (se x unit factor; rse x value; CI half-width / 1.96); log,
    the SE of log(value) (se / value and rse by the delta method; CI: (ln hi - ln
    lo) / (2 x 1.96))."""
    from .model import Precision

    out: list[Precision] = []
    ptab = _Table(top.table("precision", required=False), "precision", top.file)
    for pname in list(ptab.data):
        t = _Table(ptab.take(pname, dict), f"precision.{pname}", top.file)
        if pname not in parameters:
            ptab.fail("is not a defined parameter", pname)
        p = parameters[pname]
        scale = t.take("scale", str, choices=("linear", "log"))
        given = {
            k: t.take(k, types, required=False)
            for k, types in (("se", float), ("rse", float), ("ci95", list))
        }
        given = {k: v for k, v in given.items() if v is not None}
        if len(given) != 1:
            t.fail(
                "needs exactly one of se, rse, ci95"
                + (f"; got {', '.join(given)}" if given else ""),
                hint="se in the parameter's unit, rse as a ratio (0.1 for 10 %), "
                "ci95 = [low, high] in the parameter's unit",
            )
        ((key, v),) = given.items()
        factor = parse_unit(p.unit).factor
        if scale == "log" and not p.value > 0:
            t.fail(
                f"scale 'log' needs a typical value > 0; {pname} is {p.value:g} "
                f"{p.canonical_unit}",
                "scale",
            )
        if key == "ci95":
            if len(v) != 2 or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in v
            ):
                t.fail(f"must be [low, high], two numbers; got {v!r}", key)
            lo, hi = (_number(t, key, float(x) * factor, "finite") for x in v)
            if not lo < p.value < hi:
                t.fail(
                    f"must contain the typical value ({p.value / factor:g} {p.unit}) "
                    f"with low < high; got {v!r}",
                    key,
                    "check the interval and the unit against the source",
                )
            if scale == "log" and lo <= 0:
                t.fail(f"on scale 'log' needs low > 0; got {v!r}", key)
            se = (
                (hi - lo) / (2 * _Z95)
                if scale == "linear"
                else (math.log(hi) - math.log(lo)) / (2 * _Z95)
            )
        else:
            _number(t, key, v, "positive")
            if key == "rse" and not v < 10:
                t.fail(
                    f"is a ratio (0.1 for 10 %) and must be < 10; got {v!r}",
                    key,
                )
            if scale == "linear" and p.value == 0 and key == "rse":
                t.fail("is relative to a typical value of 0", key, "give se")
            if key == "se":
                se = v * factor if scale == "linear" else v * factor / p.value
            else:
                se = v * abs(p.value) if scale == "linear" else v
        if not (math.isfinite(se) and se > 0):
            t.fail(f"gives a standard error of {se!r}, not finite and > 0", key)
        grade = t.take("grade", str, choices=("P", "T", "C"))
        out.append(Precision(pname, float(se), scale, t.take("source", str), grade))
        t.done()
    ptab.done()
    return out


def read_precision_correlations(top: _Table, precision: list) -> list:
    """``[[precision_correlations]]``: the correlation of two estimates with
    published precision (from the covariance matrix of the estimates: cov / (se1
    se2)), on the scales of their ``[precision]`` entries; the correlation matrix
    must stay positive definite."""
    items = top.take("precision_correlations", list, required=False, default=[])
    names = [p.parameter for p in precision]
    out: list[tuple[str, str, float]] = []
    R = np.eye(len(names))
    for i, item in enumerate(items):
        t = _Table(item, f"precision_correlations[{i}]", top.file)
        pair = t.take("parameters", list)
        if (
            len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
            or pair[0] == pair[1]
        ):
            t.fail(f"must be two different parameter names; got {pair!r}", "parameters")
        for x in pair:
            if x not in names:
                t.fail(
                    f"{x!r} has no [precision.{x}] entry; correlations are between "
                    f"estimates with published precision",
                    "parameters",
                )
        r = t.take("correlation", float)
        if not (math.isfinite(r) and -1 < r < 1):
            t.fail(f"must be in (-1, 1); got {r!r}", "correlation")
        t.take("source", str)
        t.done()
        a, b = names.index(pair[0]), names.index(pair[1])
        if R[a, b] != 0:
            t.fail(f"the pair {pair!r} is given twice", "parameters")
        R[a, b] = R[b, a] = r
        if np.linalg.eigvalsh(R).min() <= 0:
            t.fail(
                "makes the correlation matrix of the estimates not positive definite",
                "correlation",
                "check the values against the source's covariance matrix",
            )
        out.append((pair[0], pair[1], r))
    return out
