"""Model files: TOML -> :class:`~ketasim.model.Model`, validated strictly.

Every problem raises :class:`ModelFileError` naming the file, the key path and how to
fix it. Unknown keys are errors, never warnings: a misspelt ``omgea`` must not silently
drop a variance. The schema is described in ``models/README.md``.

:func:`model_from_dict` reads a file one section at a time, calling the readers in
``_modelfile_sections`` in order, then checks the numbers against how the whole model
uses them (:func:`_check_numbers`, :func:`_check_effects`).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ._validate import COVARIATE_RANGES
from .model import (
    KNOWN_COVARIATES,
    RULE_TEXT,
    SCALED_DIMENSIONS,
    TYPICAL_MAGNITUDE,
    Model,
    _covariate_factor,
    parameter_roles,
)

__all__ = ["ModelFileError", "cite", "list_models", "load_model", "models_dir"]

SCHEMA_VERSION = 1
#: The bundled model ``ketasim demo`` and the examples use for racemic ketamine.
DEFAULT_MODEL = "clements_nimmo_1981"
ROLES = ("depot", "central", "peripheral", "liver", "transit", "metabolite")
ENANTIOMERS = ("racemic", "S", "R")
SAMPLING = ("arterial", "venous", "mixed", "unknown")
GRADES = ("P", "T", "C", "U", "choice")
EFFECT_KINDS = {
    "power": "exponent",
    "linear": "slope",
    "hinge": "slope",
    "exponential": "slope",
    "categorical": "factor",
}
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
        raise TypeError(
            f"model must be a bundled model name such as 'domino' or a "
            f"path to a .toml model file; got "
            f"{type(name_or_path).__name__} {name_or_path!r:.80}"
        )
    if not str(name_or_path).strip():  # Path("") is ".", the working directory
        raise FileNotFoundError(
            f"model must name a bundled model or a .toml file; "
            f"got the empty name {str(name_or_path)!r}. Bundled "
            f"models: {', '.join(list_models())}"
        )
    p = Path(name_or_path)
    if p.suffix != ".toml" and (not p.exists() or p.is_dir()):
        cand = models_dir() / f"{name_or_path}.toml"
        if cand.exists():  # a bundled name wins over a directory of that name
            p = cand
        elif not p.is_dir():
            raise FileNotFoundError(
                f"no bundled model {str(name_or_path)!r}; bundled models: "
                f"{', '.join(list_models())}. To load your own, pass a path to a "
                f".toml file."
            )
    if p.is_dir():  # else a bare IsADirectoryError
        raise FileNotFoundError(
            f"model {str(name_or_path)!r} is a directory, not a model file; pass a "
            f"path to a .toml model file or a bundled model name "
            f"({', '.join(list_models())})"
        )
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

    def fail(self, message: str, key: str | None = None, hint: str = "") -> NoReturn:
        k = f"{self.path}.{key}" if key and self.path else (key or self.path)
        raise ModelFileError(self.file, k or "<top>", message, hint)

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(
        self, key: str, types, *, required: bool = True, default=None, choices=None
    ):
        self.used.add(key)
        if key not in self.data:
            if required:
                hint = f"add `{key} = ...`" + (
                    f", one of {', '.join(map(repr, choices))}" if choices else ""
                )
                self.fail("is missing", key, hint)
            return default
        v = self.data[key]
        if types is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):
            tn = (
                types.__name__
                if isinstance(types, type)
                else " or ".join(t.__name__ for t in types)
            )
            self.fail(f"must be {tn}; got {type(v).__name__} {v!r}", key)
        if choices is not None and v not in choices:
            self.fail(f"must be one of {', '.join(map(repr, choices))}; got {v!r}", key)
        return v

    def table(self, key: str, *, required: bool = True) -> dict:
        v = self.take(key, dict, required=required, default={})
        return v

    def done(self) -> None:
        extra = [k for k in self.data if k not in self.used]
        if extra:
            self.fail(
                f"unknown key {extra[0]!r}",
                extra[0],
                f"allowed keys here: {', '.join(sorted(self.used))}",
            )


def model_from_dict(
    data: dict[str, Any], *, file: Path | None = None, sha256: str = ""
) -> Model:
    """Build a :class:`Model` from a parsed model-file dictionary (strict).

    Besides the structure, every number is checked against how the model uses it
    (``models/README.md``, "Number checks"): finite values; volumes, clearances,
    rate constants, mean transit times and durations > 0, lags >= 0, fractions in
    [0, 1]; plausible covariate references and validity ranges; covariate effects
    that keep each parameter valid over its covariates' validity ranges; a positive
    definite IIV covariance matrix.

    The file is read one section at a time (``ketasim._modelfile_sections``), each
    reader checking its section against those read before it; then the numbers are
    checked against how the whole model uses them (:func:`_check_numbers`).

    Raises
    ------
    ModelFileError
        Names the file (``<dict>`` here), the key path, what is wrong and a fix.
    """
    # the readers import this module (for _Table and the constants): import late
    from . import _modelfile_sections as s

    top = _Table(data, "", file)
    header = s.read_header(top)
    references = s.read_references(top)
    covariates = s.read_covariates(top)
    validity = s.read_validity(top, covariates)
    parameters, raw_values, above_one = s.read_parameters(top, covariates, references)
    layout = s.read_compartments(top, parameters)
    flows = s.read_flows(top, parameters, layout)
    routes = s.read_routes(top, parameters, layout)
    analytes = s.read_analytes(top, layout)
    s.check_analyte_enantiomers(top, header["enantiomer"], analytes)
    variability = s.read_variability(top, parameters)
    correlations = s.read_correlations(top, variability)
    effects = s.read_covariate_effects(top, parameters, covariates)
    time_effects = s.read_time_effects(top, parameters, flows)
    residual = s.read_residual(top, analytes)
    effect_sites = s.read_effect_sites(top, parameters, analytes)
    effects_pd = s.read_effects(
        top, parameters, analytes, effect_sites, references, list(routes)
    )
    s.check_effect_variability(top, effect_sites, variability)
    precision = s.read_precision(top, parameters)
    precision_corr = s.read_precision_correlations(top, precision)
    top.done()

    model = Model(
        **header,
        parameters=parameters,
        compartments=tuple(layout.compartments),
        flows=tuple(flows),
        routes=routes,
        analytes=tuple(analytes),
        variability=tuple(variability),
        correlations=tuple(correlations),
        covariate_effects=tuple(effects),
        covariates=covariates,
        validity=validity,
        residual=residual,
        time_effects=tuple(time_effects),
        references=tuple(references),
        path=file,
        sha256=sha256,
        fractions_above_one=tuple(above_one),
        effect_sites=tuple(effect_sites),
        effects=tuple(effects_pd),
        precision=tuple(precision),
        precision_correlations=tuple(precision_corr),
    )
    _check_numbers(model, file, raw_values)
    return model


def _check_numbers(model: Model, file: Path | None, raw: dict[str, float]) -> None:
    """Typical values against how the model uses each parameter
    (:func:`~ketasim.model.parameter_roles`), each route's fractions against the
    whole dose, and covariate effects over the model's validity ranges."""
    for a in model.analytes:
        for j, lim in enumerate(a.limits):
            for r in lim.routes:
                if r not in model.routes:
                    raise ModelFileError(
                        file,
                        f"analytes.{a.name}.limits[{j}].routes",
                        f"names an undefined route {r!r}",
                        f"the model's routes are {', '.join(model.routes)}",
                    )
    roles = parameter_roles(model)
    fraction_refs = {f.fraction for f in model.flows} | {
        x
        for r in model.routes.values()
        for pw in r.pathways
        for x in (pw.fraction, pw.later_devices, pw.bioavailability)
    }
    for name in model.fractions_above_one:
        if name not in fraction_refs:
            raise ModelFileError(
                file,
                f"parameters.{name}.above_one",
                f"{name!r} is not used as a fraction (of a flow or a route pathway)",
                "remove above_one",
            )
        v = model.parameters[name].value
        if v > MAX_APPARENT_FRACTION:  # values are finite (checked when read)
            p = model.parameters[name]
            got = f"{raw[name]:g}" + (f" {p.unit}" if p.unit != "1" else "")
            raise ModelFileError(
                file,
                f"parameters.{name}.value",
                f"is a fraction marked above_one "
                f"and must be at most {MAX_APPARENT_FRACTION:g} (an apparent "
                f"{MAX_APPARENT_FRACTION * 100:g} %); got {got}",
                "a fraction is "
                "written 0.45 (unit '1') or 45 (unit '%'); check the value and unit "
                "against the source",
            )
    for name, (rule, uses) in roles.items():
        p = model.parameters[name]
        v = p.value
        ok = {
            "positive": v > 0,
            "nonnegative": v >= 0,
            "fraction": 0 <= v <= 1,
            "finite": True,
        }[rule] and math.isfinite(v)
        need = RULE_TEXT[rule]
        lo, hi = TYPICAL_MAGNITUDE
        if ok and p.dimension in SCALED_DIMENSIONS and v != 0 and not lo <= v <= hi:
            ok = False
            need = f"within [{lo:g}, {hi:g}] {p.canonical_unit}"
        if ok:
            continue
        got = f"{raw[name]!r}" + (f" {p.unit}" if p.unit != "1" else "")
        if raw[name] != v:
            got += f" (= {v:.6g}" + (
                f" {p.canonical_unit})" if p.canonical_unit != "1" else ")"
            )
        where = uses[0] if uses else f"a {p.dimension}"
        hint = (
            "a fraction, e.g. 0.45 (unit '1') or 45 (unit '%'); a published "
            'apparent fraction above 1 needs above_one = "why"'
            if rule == "fraction"
            else "check the value and its unit against the source"
        )
        raise ModelFileError(
            file,
            f"parameters.{name}.value",
            f"must be {need} as {where}; got {got}",
            hint,
        )
    for rname, r in model.routes.items():
        named = [
            pw.fraction
            for pw in r.pathways
            if pw.fraction is not None and pw.fraction != "rest"
        ]
        if len(named) < 2 or any(f in model.fractions_above_one for f in named):
            continue
        vals = [model.parameters[f].value if isinstance(f, str) else f for f in named]
        if sum(vals) > 1.0 + 1e-12:  # rounding of fractions meant to sum to 1
            parts = " + ".join(
                f"{f} {x:.4g}" if isinstance(f, str) else f"{x:.4g}"
                for f, x in zip(named, vals, strict=True)
            )
            raise ModelFileError(
                file,
                f"routes.{rname}.pathways",
                f"fractions add up to "
                f"{sum(vals):.6g} > 1 ({parts}): more than the whole dose would be "
                "absorbed",
                "the pathways share one dose; a published apparent "
                'fraction above 1 needs above_one = "why" on its parameter',
            )
    _check_effects(model, file, roles)


def _check_effects(
    model: Model, file: Path | None, roles: dict[str, tuple[str, tuple[str, ...]]]
) -> None:
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
            lo, hi = (
                model.validity[cov]
                if declared
                else COVARIATE_RANGES.get(cov, (0.0, 1.0))
            )  # flags: 0 or 1
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
            rng = (
                f"the model's validity range [{lo:g}, {hi:g}] {unit}"
                if declared
                else f"the plausible human range [{lo:g}, {hi:g}] {unit} ({cov} "
                f"has no [validity] range)"
            )
            fix = (
                f"check the {EFFECT_KINDS[e.kind]} and reference, or narrow "
                f"[validity] {cov} to where the effect holds"
                if declared
                else f"declare [validity] {cov} = [low, high], the range where the "
                f"effect holds, or check the {EFFECT_KINDS[e.kind]}"
            )
            if bad.any():  # report the worst point: the first non-finite or the min
                k = (
                    int(np.argmax(~np.isfinite(f)))
                    if not np.isfinite(f).all()
                    else int(np.argmin(f))
                )
                what = (
                    "non-finite"
                    if not np.isfinite(f[k])
                    else "negative"
                    if f[k] < 0
                    else "zero"
                )
                raise ModelFileError(
                    file,
                    key,
                    f"makes parameter {pname!r} {what} (factor "
                    f"{f[k]:.4g}) at {cov} = {pts[k]:g}{shown}, inside {rng}; it "
                    f"must stay {RULE_TEXT[rule]} as "
                    f"{uses[0] if uses else 'a ' + p.dimension}",
                    fix,
                )
            lo_v, hi_v = lo_v * f.min(), hi_v * f.max()
            at_max.append(f"{cov} = {pts[np.argmax(f)]:g}{shown}")
            worst = max(worst, (float(f.max()), i))
        lo_m, hi_m = TYPICAL_MAGNITUDE
        if p.dimension in SCALED_DIMENSIONS and (0 < lo_v < lo_m or hi_v > hi_m):
            i = worst[1]
            e = model.covariate_effects[i]
            raise ModelFileError(
                file,
                f"covariate_effects[{i}].{EFFECT_KINDS[e.kind]}",
                f"makes parameter {pname!r} range over [{lo_v:.4g}, {hi_v:.4g}] "
                f"{p.canonical_unit} within the covariates' ranges, beyond "
                f"[{lo_m:g}, {hi_m:g}] {p.canonical_unit}, where no "
                f"pharmacokinetic model goes",
                "check the covariate effects on it against the source",
            )
        too_big = hi_v > 1 if rule == "fraction" else False
        if logit and not 0 < lo_v <= hi_v < 1:
            too_big = True
        if too_big:
            i = worst[1]
            e = model.covariate_effects[i]
            need = (
                "strictly between 0 and 1 under its logit-normal variability"
                if logit
                else RULE_TEXT["fraction"]
            )
            raise ModelFileError(
                file,
                f"covariate_effects[{i}].{EFFECT_KINDS[e.kind]}",
                f"makes fraction parameter {pname!r} range over [{lo_v:.4g}, "
                f"{hi_v:.4g}] (largest at {', '.join(at_max)}) within the "
                f"covariates' ranges; it must be {need}",
                "check the covariate effects on it against the source",
            )


def bibliography() -> dict[str, dict]:
    """The bundled bibliographic records (``models/bibliography/references.toml``)
    keyed by lower-case DOI and by reference key."""
    import tomllib

    with open(models_dir() / "bibliography" / "references.toml", "rb") as fh:
        raw = tomllib.load(fh)
    out = {}
    for key, rec in raw.items():
        out[key] = rec
        if rec.get("doi"):
            out[rec["doi"].lower()] = rec
    return out


#: BibTeX fields of a verified @article, in print order
_ARTICLE_FIELDS = ("author", "title", "journal", "year", "volume", "number", "pages")

#: LaTeX's special characters in free text, escaped so that an entry pasted into
#: a .bib file compiles ("40 %" would start a comment, "Otto_2021" a subscript)
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "_": r"\_",
    "$": r"\$",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: object) -> str:
    """``text`` with LaTeX's special characters escaped (for BibTeX free text)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def cite(model: str | Path | Model) -> str:
    """BibTeX entries for a model's references (bundled name, path or Model).

    A reference whose bibliographic record (``models/bibliography``) was checked
    field by field prints as ``@article`` with author, title, journal, year,
    volume, number, pages and doi. Any other prints as ``@misc`` whose note starts
    ``UNVERIFIED`` and says what was not checked, with the model file's citation:
    an unchecked reference is never presented as checked.

    Examples
    --------
    >>> print(cite("domino").splitlines()[0])
    @misc{domino,
    >>> print(cite("fanta_2015").splitlines()[0])
    @article{fanta2015,
    """
    m = load_model(model)
    bib = bibliography()
    entries = []
    for r in m.references:
        rec = bib.get((r.doi or "").lower()) or bib.get(r.key)
        if rec is not None and rec.get("verified"):
            text = {"author": " and ".join(rec.get("author", ()))}
            fields = [
                f"  {k} = {{{_tex(text.get(k, rec[k]))}}}"
                for k in _ARTICLE_FIELDS
                if k in rec
            ]
            fields.append(f"  doi = {{{rec['doi']}}}")
            fields.append(f"  note = {{Checked against: {_tex(rec['checked'])}}}")
            entries.append(f"@article{{{r.key},\n" + ",\n".join(fields) + "\n}")
            continue
        why = (
            f"not checked: {rec['missing']}"
            if rec is not None
            else "no bibliographic record was checked"
        )
        fields = [
            f"  note = {{UNVERIFIED reference ({_tex(why)}). {_tex(r.citation)}}}"
        ]
        if r.doi:
            fields.append(f"  doi = {{{r.doi}}}")
        if r.year:
            fields.append(f"  year = {{{r.year}}}")
        if r.note:
            fields.append(f"  annote = {{{_tex(r.note)}}}")
        entries.append(f"@misc{{{r.key},\n" + ",\n".join(fields) + "\n}")
    return "\n\n".join(entries)
