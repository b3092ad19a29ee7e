"""The model: immutable description of a compartmental PK model.

A :class:`Model` is built from a model file (see :mod:`ketasim.modelfile`) and never
changes. Everything numeric is stored in canonical units (h, mg, L, L/h, 1/h).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .units import MG_PER_L_TO_NG_PER_ML

__all__ = [
    "Analyte",
    "AnalyteLimit",
    "Compartment",
    "CovariateEffect",
    "Flow",
    "Model",
    "Parameter",
    "Pathway",
    "Precision",
    "Reference",
    "Route",
    "Variability",
]

#: Covariates a model may use, with their units. A fixed menu so a typo is an error.
KNOWN_COVARIATES: dict[str, str] = {
    "weight": "kg",
    "height": "cm",
    "age": "y",
    "bmi": "kg/m2",
    "female": "0/1",
    "asian": "0/1",
    "japanese": "0/1",
}

#: Magnitudes (canonical units: L, L/h, 1/h, h, per kg where per kg) no
#: pharmacokinetic model reaches: a typical volume, clearance, rate constant or
#: time outside [1e-9, 1e9] is refused at load (a unit slip or a corrupted number),
#: and an individual value outside [1e-12, 1e12] at run time, before the solver
#: overflows on it. Zero stays governed by the parameter's rule (a lag may be 0).
TYPICAL_MAGNITUDE = (1e-9, 1e9)
INDIVIDUAL_MAGNITUDE = (1e-12, 1e12)
SCALED_DIMENSIONS = ("volume", "clearance", "rate constant", "time")

#: What each parameter rule of :func:`parameter_roles` requires, for messages.
RULE_TEXT = {
    "positive": "finite and > 0",
    "nonnegative": "finite and >= 0",
    "fraction": "between 0 and 1",
    "finite": "finite",
}


@dataclass(frozen=True)
class Reference:
    key: str
    citation: str
    doi: str | None = None
    year: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Parameter:
    """A typical value. ``value`` is in canonical units (``canonical_unit``);
    ``per_kg`` values are multiplied by the subject's weight (kg)."""

    name: str
    value: float
    unit: str
    canonical_unit: str
    dimension: str
    per_kg: bool
    description: str
    reference: str | None
    source: str
    grade: str

    def __repr__(self) -> str:
        # the value in the unit printed next to it: canonical (what
        # ks.Subjects(parameters=...) reads a bare number in), and the file's own
        # statement when its unit differs
        from .units import parse_unit

        s = f"{self.name} = {self.value:.4g} {self.canonical_unit}"
        if self.unit != self.canonical_unit:
            s += f" [file: {self.value / parse_unit(self.unit).factor:.4g} {self.unit}]"
        return f"Parameter({s}, {self.dimension}: {self.description})"


@dataclass(frozen=True)
class Compartment:
    """``analyte``: the species measured here; ``species``: the species whose mass
    the compartment holds when it is not measured (a metabolism chain or a
    metabolite's peripheral compartment), so flows convert by molecular weight."""

    name: str
    role: str
    volume: str | None
    analyte: str | None
    species: str | None = None


@dataclass(frozen=True)
class Flow:
    """First-order transfer ``source -> target`` (``target=None``: elimination).

    ``kind`` is ``"k"`` (``rate`` is a rate constant), ``"cl"`` (``rate`` is a
    clearance divided by the source compartment's volume) or ``"mtt"`` (``rate`` is
    the mean transit time of a chain of ``count`` compartments: k = count / MTT).
    ``fraction`` (a parameter name or a number) of the flow reaches ``target``; the
    rest is eliminated.
    """

    source: str
    target: str | None
    kind: str
    rate: str
    fraction: str | float | None = None
    count: int = 1


@dataclass(frozen=True)
class Pathway:
    """Where a route puts a dose: ``fraction`` of it into ``target`` after ``lag``,
    over ``duration`` (zero-order) or at once. Each is a parameter name or None.

    ``fraction = "rest"`` takes what the route's other pathways leave (1 − their
    sum). ``later_devices`` scales ``fraction`` for the second and later device of a
    session (``Dose.device >= 2``), as for nasal-spray devices. ``bioavailability``
    is the share of what enters the pathway that reaches ``target`` (first pass of a
    swallowed part): the pathway delivers ``fraction × bioavailability`` of the dose.
    """

    target: str
    fraction: str | float | None = None
    lag: str | None = None
    duration: str | None = None
    later_devices: str | None = None
    bioavailability: str | float | None = None


@dataclass(frozen=True)
class Route:
    """``device_mg``: the amount of one device (nasal spray) when the route models
    one device per Dose, as routes with a per-device effect (``later_devices``)
    do; a Dose on such a route must be exactly one device.

    ``grade`` is the evidence grade of the route as a whole (P, T, C, U, choice,
    or ``"user"`` for a route added with :meth:`Model.with_route`), ``evidence``
    says where its numbers come from, and ``benchmark_only`` marks a route kept
    only to exercise the code (a benchmark workload), not for predictions."""

    name: str
    kind: str  # "intravenous" or "extravascular"
    pathways: tuple[Pathway, ...]
    description: str = ""
    device_mg: float | None = None
    grade: str | None = None
    evidence: str = ""
    benchmark_only: bool = False

    @property
    def intravenous(self) -> bool:
        return self.kind == "intravenous"


@dataclass(frozen=True)
class Analyte:
    """A measured species: concentration = amount in ``compartment`` / its volume.

    ``formation`` is ``"molar"`` when amounts are true masses of this species (a
    flow from another species is scaled by the ratio of molecular weights) or
    ``"apparent"`` when the published metabolite parameters are apparent ones
    (V/fm, CL/fm) that absorb the conversion, so no scaling is applied.
    """

    name: str
    compartment: str
    mw: float
    formation: str = "molar"
    long_name: str = ""
    grade: str | None = None  # evidence grade of this analyte's part of the model
    evidence: str = ""
    #: what the model cannot predict for this analyte: AnalyteLimit entries
    limits: tuple[AnalyteLimit, ...] = ()


@dataclass(frozen=True)
class AnalyteLimit:
    """Doses after which a model cannot predict an analyte: doses on ``routes``
    (all routes when empty), or only boluses and inputs shorter than
    ``shorter_than`` h when it is given. ``action`` is ``"refuse"`` (simulate
    raises) or ``"warn"`` (a :class:`ModelLimitWarning`); ``reason`` says why."""

    action: str
    reason: str
    routes: tuple[str, ...] = ()
    shorter_than: float | None = None


@dataclass(frozen=True)
class Variability:
    parameter: str
    distribution: str  # "lognormal" or "logitnormal"
    omega: float  # SD of eta (IIV)
    iov_omega: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class Precision:
    """The published precision of a fixed effect (typical value): the standard
    error of its estimate on the scale the paper estimated it. ``scale`` "linear":
    the estimate is normal, ``se`` in the parameter's canonical unit; "log": the
    log of the estimate is normal, ``se`` the SE of log(value) (dimensionless,
    about the RSE)."""

    parameter: str
    se: float
    scale: str  # "linear" or "log"
    source: str
    grade: str


@dataclass(frozen=True)
class CovariateEffect:
    """Multiplicative effect of a covariate on a parameter.

    ``power``: (c/ref)^coef; ``linear``: 1 + coef (c - ref); ``hinge``:
    1 + coef max(c - ref, 0); ``exponential``: exp(coef (c - ref));
    ``categorical``: coef where c == ref, else 1.
    """

    parameter: str
    covariate: str
    kind: str
    reference: float
    coefficient: float
    source: str = ""


@dataclass(frozen=True)
class Model:
    """An immutable compartmental model. Build it with :func:`ketasim.load_model`."""

    id: str
    name: str
    drug: str
    enantiomer: str
    population: str
    sampling: str
    grade: str
    description: str
    parameters: Mapping[str, Parameter]
    compartments: tuple[Compartment, ...]
    flows: tuple[Flow, ...]
    routes: Mapping[str, Route]
    analytes: tuple[Analyte, ...]
    variability: tuple[Variability, ...] = ()
    correlations: tuple[tuple[str, str, float], ...] = ()
    covariate_effects: tuple[CovariateEffect, ...] = ()
    covariates: Mapping[str, float] = field(default_factory=dict)
    validity: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    residual: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    path: Path | None = None
    sha256: str = ""
    time_effects: tuple[tuple[str, float], ...] = ()
    racemic_fraction: float | None = None
    #: dimensionless parameters the model file lets exceed 1 where they are used
    #: as a fraction (``above_one = "why"``): a published apparent fraction such
    #: as a relative bioavailability of 116 %
    fractions_above_one: tuple[str, ...] = ()
    rhs: Callable | None = field(default=None, compare=False, repr=False)
    #: effect compartments (``[effect_sites]``) and pharmacodynamic endpoints
    #: (``[effects]``): :class:`ketasim._effects.EffectSite`, ``Endpoint``
    effect_sites: tuple = ()
    effects: tuple = ()
    #: provenance of a model derived from a published one (:meth:`with_route`):
    #: the id it was derived from and what was changed, one line each
    derived_from: str | None = None
    changes: tuple[str, ...] = ()
    #: published precision of typical values (``[precision]``): :class:`Precision`
    precision: tuple[Precision, ...] = ()
    #: correlations of those estimates (``[[precision_correlations]]``):
    #: (parameter, parameter, correlation) on the scales of their precision
    precision_correlations: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("parameters", "routes", "covariates", "validity", "residual"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __repr__(self) -> str:
        return (
            f"Model({self.id!r}: {self.drug} ({self.enantiomer}), "
            f"{len(self.compartments)} compartments, routes "
            f"{sorted(self.routes)}, analytes {[a.name for a in self.analytes]})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # mapping proxies do not pickle (Dask ships models)
        return {
            k: dict(v) if isinstance(v, MappingProxyType) else v
            for k, v in self.__dict__.items()
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self.__post_init__()

    def with_rhs(self, rhs: Callable) -> Model:
        """This model with a user right-hand side ``rhs(t, x, p, dxdt)``.

        ``x`` holds the amounts (mg) in :attr:`compartment_names` order, ``p`` the
        subject's individual parameters in :attr:`parameter_names` order (canonical
        units: h, mg, L, L/h, 1/h), and ``rhs`` writes ``dxdt`` (mg/h) in place. Dose
        inputs are added by ketasim; the rhs must not model them. The function is
        compiled with numba on first use, so it must be numba-compatible.
        """
        import inspect

        fn = getattr(rhs, "py_func", rhs)  # a numba dispatcher's Python function
        if not inspect.isfunction(fn):
            raise TypeError(
                f"rhs must be a plain Python function (def or lambda) "
                f"rhs(t, x, p, dxdt), or one decorated with numba.njit, "
                f"which numba compiles; got {type(rhs).__name__} {rhs!r}"
            )
        try:
            inspect.signature(fn).bind(0.0, None, None, None)
        except TypeError:
            raise TypeError(
                f"rhs must take four arguments (t, x, p, dxdt); "
                f"{fn.__name__} takes {inspect.signature(fn)}"
            ) from None
        if self.flows:
            raise ValueError(
                f"model {self.id!r} defines flows; a user rhs replaces "
                f"all of its dynamics, so they would be ignored. Write "
                f"them into the rhs and build the model without flows "
                f"(compartments, routes and analytes stay)"
            )
        return replace(self, rhs=rhs)

    def with_route(self, name: str, *pathways: Any, **kwargs: Any) -> Model:
        """This model with route ``name`` added or replaced: a NEW model whose id
        and provenance say so. See :func:`ketasim.routes.with_route`."""
        from .routes import with_route

        return with_route(self, name, *pathways, **kwargs)

    def without_analytes(self, *names: str, id: str | None = None) -> Model:
        """This model without the analytes ``names`` (their compartments stay,
        unobserved): a NEW model whose id and provenance say so, e.g. to simulate
        the parent drug after doses the model cannot predict a metabolite for.
        See :func:`ketasim.routes.without_analytes`."""
        from .routes import without_analytes

        return without_analytes(self, *names, id=id)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.parameters)

    def parameter_index(self, name: str) -> int:
        """Position of parameter ``name`` in the ``p`` vector a user rhs receives."""
        return self.parameter_names.index(name)

    # ---- structure -------------------------------------------------------------
    @property
    def compartment_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.compartments)

    def compartment_index(self, name: str) -> int:
        return self.compartment_names.index(name)

    @property
    def analyte_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.analytes)

    def _species(self, compartment: str) -> str | None:
        for c in self.compartments:
            if c.name == compartment:
                return c.analyte or c.species
        raise KeyError(compartment)

    def _analyte(self, name: str | None) -> Analyte | None:
        for a in self.analytes:
            if a.name == name:
                return a
        return None

    # ---- effect sites ----------------------------------------------------------
    @property
    def effect_site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.effect_sites)

    def ke0(
        self, site: str | None = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        """The plasma-effect-site equilibration rate constant ke0 (1/h) of an
        effect site, for targeting an effect-site concentration.

        Parameters
        ----------
        site : str, optional
            An effect site name (:attr:`effect_site_names`); may be omitted when
            the model has one, or given as its analyte's name (or alias).
        params : mapping, optional
            Individual parameters (canonical units, as in a result's
            ``parameters``); default the typical values.

        Returns
        -------
        float or ndarray
            ke0 in 1/h (ln 2 / t½ for a site given by its half-life), one per
            subject when ``params`` holds arrays.

        Raises
        ------
        ValueError
            The model has no effect site, or ``site`` names none of them.
        """
        from ._effects import ke0_per_hour

        s = self._effect_site(site)
        if params is None:
            v = np.asarray(self.parameters[s.parameter].value, dtype=float)
        else:
            v = np.asarray(params[s.parameter], dtype=float)
        out = ke0_per_hour(self, s, {s.parameter: v}, max(v.size, 1))
        return float(out[0]) if v.ndim == 0 else out

    def _effect_site(self, site: str | None):
        from . import _analytes

        if not self.effect_sites:
            raise ValueError(
                f"model {self.id!r} has no effect site (no [effect_sites] in its "
                f"file), so no ke0"
            )
        if site is None:
            if len(self.effect_sites) == 1:
                return self.effect_sites[0]
            raise ValueError(
                f"model {self.id!r} has {len(self.effect_sites)} effect sites "
                f"({', '.join(self.effect_site_names)}); name one"
            )
        for s in self.effect_sites:
            if s.name == site:
                return s
        c = _analytes.canonical(site) if isinstance(site, str) else None
        hits = [s for s in self.effect_sites if c is not None and s.analyte == c]
        if len(hits) == 1:
            return hits[0]
        raise ValueError(
            f"model {self.id!r} has no effect site {site!r}; its effect sites: "
            f"{', '.join(self.effect_site_names)}"
        )

    # ---- individual parameters -------------------------------------------------
    def individual_parameters(
        self,
        covariates: Mapping[str, np.ndarray],
        etas: Mapping[str, np.ndarray] | None = None,
        overrides: Mapping[str, np.ndarray] | None = None,
        n: int = 1,
    ) -> dict[str, np.ndarray]:
        """Individual parameter values in canonical units, arrays of shape (n,).

        typical value × weight (per-kg units) × covariate effects, then the random
        effect (log- or logit-normal). ``overrides`` replace the result outright and
        arrive converted and checked (``simulate`` reads the user's units): ``name``
        -> values in canonical absolute units (L, L/h, 1/h, h, fraction), used as
        they are; ``name + "/kg"`` -> values per kg of body weight (L/kg, L/h/kg),
        multiplied by ``covariates["weight"]`` (kg).
        """
        etas = etas or {}
        overrides = overrides or {}
        out: dict[str, np.ndarray] = {}
        weight = np.asarray(covariates.get("weight", np.nan), dtype=float)
        for name, p in self.parameters.items():
            if name in overrides or name + "/kg" in overrides:
                if name in overrides:
                    v = np.asarray(overrides[name], dtype=float)
                else:
                    v = np.asarray(overrides[name + "/kg"], dtype=float) * weight
                out[name] = np.broadcast_to(v, (n,)).astype(float)
                continue
            v = np.full(n, p.value)
            if p.per_kg:
                v = v * weight
            # overflow or a 0 ** -x here gives inf/nan, which check_individual
            # below reports with the parameter, subject and covariates at fault
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                for eff in self.covariate_effects:
                    if eff.parameter != name:
                        continue
                    c = np.asarray(covariates[eff.covariate], dtype=float)
                    v = v * _covariate_factor(eff, c)
                var = self._variability_for(name)
                if var is not None and name in etas:
                    eta = np.asarray(etas[name], dtype=float)
                    if var.distribution == "lognormal":
                        v = v * np.exp(eta)
                    else:  # logit-normal: typical value is the median probability
                        logit = np.log(v / (1.0 - v)) + eta
                        v = 1.0 / (1.0 + np.exp(-logit))
            out[name] = np.broadcast_to(v, (n,)).astype(float)
        # one vectorised pass: a model's own numbers (covariate effects, random
        # effects) must not hand the solver a negative volume or a fraction above 1
        check_individual(self, out, covariates, etas, overrides)
        return out

    def _variability_for(self, name: str) -> Variability | None:
        for v in self.variability:
            if v.parameter == name:
                return v
        return None

    def value_of(
        self,
        ref: str | float | None,
        params: Mapping[str, np.ndarray],
        n: int,
        default: float,
    ) -> np.ndarray:
        """A parameter reference (name, number or None) as an (n,) array."""
        if ref is None:
            return np.full(n, default)
        if isinstance(ref, str):
            return params[ref]
        return np.full(n, float(ref))

    @property
    def linear_time_invariant(self) -> bool:
        """True when the exact matrix-exponential solver applies."""
        return self.rhs is None and not self.time_effects

    def rate_matrices(
        self,
        params: Mapping[str, np.ndarray],
        n: int,
        only: str | None = None,
        factor: float = 1.0,
    ) -> np.ndarray:
        """Rate matrices ``A`` (n, ncmt, ncmt) in 1/h with ``dx/dt = A x + r``.

        Metabolite formation into a ``molar`` analyte is scaled by the ratio of
        molecular weights, so amounts stay true masses of each species. With
        ``only``, just the flows whose rate parameter is ``only``, times ``factor``
        (the time-derivative part of a time-varying clearance).
        """
        names = self.compartment_names
        ncmt = len(names)
        A = np.zeros((n, ncmt, ncmt))
        vol = {c.name: c.volume for c in self.compartments}
        for f in self.flows:
            if only is not None and f.rate != only:
                continue
            i = names.index(f.source)
            k = params[f.rate] * factor
            if f.kind == "cl":
                k = k / params[vol[f.source]]
            elif f.kind == "mtt":
                k = f.count / k
            A[:, i, i] -= k
            if f.target is not None:
                j = names.index(f.target)
                frac = self.value_of(f.fraction, params, n, 1.0)
                A[:, j, i] += k * frac * self._mw_ratio(f.source, f.target)
        return A

    def time_derivative_matrices(
        self, params: Mapping[str, np.ndarray], n: int
    ) -> np.ndarray:
        """``A1`` with ``A(t) = A + t A1`` for the model's linear time effects
        (parameter × (1 + slope t))."""
        A1 = np.zeros((n, len(self.compartments), len(self.compartments)))
        for name, slope in self.time_effects:
            A1 += self.rate_matrices(params, n, only=name, factor=slope)
        return A1

    def _mw_ratio(self, source: str, target: str) -> float:
        a_from = self._analyte(self._species(source))
        a_to = self._analyte(self._species(target))
        if a_from is None or a_to is None or a_from.name == a_to.name:
            return 1.0
        if a_to.formation == "apparent":
            return 1.0
        return a_to.mw / a_from.mw

    def observation(
        self, params: Mapping[str, np.ndarray], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(compartment index per analyte, scale (n, n_analytes)) with
        concentration in ng/mL = amount (mg) × scale."""
        cmts = np.array(
            [self.compartment_index(a.compartment) for a in self.analytes],
            dtype=np.int64,
        )
        scale = np.empty((n, len(self.analytes)))
        for k, a in enumerate(self.analytes):
            v = self._volume_param(a.compartment)
            scale[:, k] = MG_PER_L_TO_NG_PER_ML / params[v]
        return cmts, scale

    def _volume_param(self, compartment: str) -> str:
        for c in self.compartments:
            if c.name == compartment:
                assert c.volume is not None  # checked by the loader
                return c.volume
        raise KeyError(compartment)


def parameter_roles(model: Model) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The range each parameter must lie in, from its dimension and its uses.

    Returns
    -------
    dict
        parameter name -> ``(rule, uses)``. ``rule`` is one of

        ``"positive"``
            finite and > 0: volumes, clearances, rate constants, mean transit times
            and zero-order input durations.
        ``"nonnegative"``
            finite and >= 0: other times (a lag may be 0).
        ``"fraction"``
            in [0, 1]: a flow's or a route pathway's fraction and the later-device
            factor (``"nonnegative"`` instead for a parameter the model lists in
            ``fractions_above_one``).
        ``"finite"``
            any other dimensionless or unused number.

        ``uses`` are phrases saying where the model uses the parameter, for messages.
    """
    rank = {"finite": 0, "nonnegative": 1, "fraction": 2, "positive": 3}
    rules: dict[str, str] = {}
    uses: dict[str, list[str]] = {}
    for name, p in model.parameters.items():
        rules[name] = (
            "positive"
            if p.dimension in ("volume", "clearance", "rate constant")
            else "nonnegative"
            if p.dimension == "time"
            else "finite"
        )
        uses[name] = []

    def use(name, rule: str, text: str):
        if not isinstance(name, str) or name not in rules:
            return  # None, a literal number or "rest"
        if rule == "fraction" and name in model.fractions_above_one:
            rule = "nonnegative"
        if rank[rule] > rank[rules[name]]:
            rules[name] = rule
        if text not in uses[name]:
            uses[name].append(text)

    for c in model.compartments:
        use(c.volume, "positive", f"the volume of compartment {c.name!r}")
    what = {"k": "rate constant", "cl": "clearance"}
    for f in model.flows:
        if f.kind == "mtt":  # a chain's compartments are named <chain>_1 ... _count
            use(
                f.rate,
                "positive",
                f"the mean transit time of transit chain "
                f"{f.source.rsplit('_', 1)[0]!r}",
            )
        else:
            use(f.rate, "positive", f"the {what[f.kind]} of the flow from {f.source!r}")
        use(
            f.fraction,
            "fraction",
            f"the fraction of the flow from {f.source!r} reaching {f.target!r}",
        )
    for r in model.routes.values():
        for pw in r.pathways:
            into = f"route {r.name!r} into {pw.target!r}"
            use(pw.fraction, "fraction", f"the fraction of {into}")
            use(pw.later_devices, "fraction", f"the later-device factor of {into}")
            use(pw.bioavailability, "fraction", f"the bioavailability of {into}")
            use(pw.lag, "nonnegative", f"the lag time of {into}")
            use(pw.duration, "positive", f"the input duration of {into}")
    for site in model.effect_sites:
        what = "ke0" if site.kind == "ke0" else "equilibration half-life"
        use(site.parameter, "positive", f"the {what} of effect site {site.name!r}")
    for ep in model.effects:
        for d in ep.drivers:
            use(d.potency, "positive", f"the {d.role} of {d.label!r} in {ep.name!r}")
        use(ep.gamma, "positive", f"the steepness (gamma) of effect {ep.name!r}")
    return {name: (rules[name], tuple(uses[name])) for name in rules}


def _rule_ok(rule: str, v: np.ndarray) -> np.ndarray:
    """Where ``v`` satisfies ``rule`` (NaN never does)."""
    if rule == "positive":
        return (v > 0.0) & (v < np.inf)
    if rule == "nonnegative":
        return (v >= 0.0) & (v < np.inf)
    if rule == "fraction":
        return (v >= 0.0) & (v <= 1.0)
    return np.isfinite(v)


def check_individual(
    model: Model,
    params: Mapping[str, np.ndarray],
    covariates: Mapping[str, np.ndarray],
    etas: Mapping[str, np.ndarray] | None = None,
    overrides: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Refuse individual parameters the model cannot use.

    One vectorised pass per parameter (cheap next to the solve): each value must
    satisfy its rule from :func:`parameter_roles`, and the fractions of a route's
    pathways must not add up to more than the whole dose.

    Parameters
    ----------
    model : Model
    params : mapping of str to array, shape (n,)
        Individual parameters in canonical units (h, L, L/h, 1/h, fraction).
    covariates, etas, overrides : mappings of str to array
        What the parameters were computed from, named in the message.

    Raises
    ------
    ValueError
        Names the parameter, the first subject at fault (its position in the
        arrays), its value, the rule and the covariates and random effect behind it.
    """
    etas = etas or {}
    overrides = overrides or {}
    for name, (rule, uses) in parameter_roles(model).items():
        v = params.get(name)
        if v is None:
            continue
        v = np.asarray(v, dtype=float)
        p = model.parameters[name]
        ok = _rule_ok(rule, v)
        need = RULE_TEXT[rule]
        if ok.all() and p.dimension in SCALED_DIMENSIONS:
            lo, hi = INDIVIDUAL_MAGNITUDE
            ok = (v == 0) | ((v >= lo) & (v <= hi))
            need = f"within [{lo:g}, {hi:g}] {p.canonical_unit.removesuffix('/kg')}"
        if ok.all():
            continue
        s = int(np.argmin(ok))
        where = uses[0] if uses else f"a {p.dimension}"
        raise ValueError(
            f"individual parameter {name!r} of subject {s} is {v.flat[s]:.6g} "
            f"{p.canonical_unit.removesuffix('/kg')} ({int(v.size - ok.sum())} of "
            f"{v.size} subjects affected); it must be {need} as "
            f"{where}. {_origin(model, name, s, covariates, etas, overrides)}"
        )
    for route in model.routes.values():
        named = [
            pw.fraction
            for pw in route.pathways
            if pw.fraction is not None and pw.fraction != "rest"
        ]
        if len(named) < 2 or any(f in model.fractions_above_one for f in named):
            continue
        n = np.size(next(iter(params.values()))) if params else 1
        fracs = [
            np.broadcast_to(model.value_of(f, params, n, 1.0), (n,)) for f in named
        ]
        total = sum(fracs)
        ok = total <= 1.0 + 1e-12  # rounding of fractions meant to sum to 1
        if not np.all(ok):
            s = int(np.argmin(ok))
            parts = " + ".join(
                f"{f} {x[s]:.4g}" for f, x in zip(named, fracs, strict=True)
            )
            raise ValueError(
                f"the pathway fractions of route {route.name!r} add up to "
                f"{total[s]:.6g} > 1 for subject {s} ({parts}): more than the whole "
                f"dose would be absorbed. Check the fraction parameters and their "
                f"covariate and random effects"
            )


def _origin(model: Model, name: str, s: int, covariates, etas, overrides) -> str:
    """How individual parameter ``name`` of subject ``s`` was computed, in words."""

    def at(a):
        a = np.asarray(a, dtype=float)
        return float(a.flat[s]) if a.size > 1 else float(a.flat[0])

    if name in overrides or name + "/kg" in overrides:
        return (
            "It was given in ks.Subjects(parameters=...); give a value in the "
            "range above"
        )
    p = model.parameters[name]
    parts = [f"typical value {p.value:.6g} {p.canonical_unit}"]
    covs = []
    if p.per_kg:
        parts.append(f"weight {at(covariates.get('weight', np.nan)):.6g} kg")
    for eff in model.covariate_effects:
        if eff.parameter == name:
            c = at(covariates[eff.covariate])
            parts.append(
                f"{eff.kind} effect of {eff.covariate} = {c:.6g} "
                f"{KNOWN_COVARIATES[eff.covariate]} (factor "
                f"{float(_covariate_factor(eff, np.asarray(c))):.6g})"
            )
            covs.append(eff.covariate)
    var = model._variability_for(name)
    if var is not None and name in etas:
        parts.append(f"{var.distribution} random effect eta = {at(etas[name]):.4g}")
    hint = (
        f"check the covariates given ({', '.join(dict.fromkeys(covs))}) against "
        "the model's validity ranges, or the model's covariate effects"
        if covs
        else "check the model's parameter values and variability"
    )
    return f"It comes from {' × '.join(parts)}; {hint}"


def _covariate_factor(eff: CovariateEffect, c: np.ndarray) -> np.ndarray:
    if eff.kind == "power":
        return (c / eff.reference) ** eff.coefficient
    if eff.kind == "linear":
        return 1.0 + eff.coefficient * (c - eff.reference)
    if eff.kind == "hinge":
        return 1.0 + eff.coefficient * np.maximum(c - eff.reference, 0.0)
    if eff.kind == "exponential":
        return np.exp(eff.coefficient * (c - eff.reference))
    if eff.kind == "categorical":
        return np.where(c == eff.reference, eff.coefficient, 1.0)
    raise ValueError(eff.kind)  # unreachable: the loader checks the menu


def omega_from(
    cv: float | None = None, omega: float | None = None, omega2: float | None = None
) -> float:
    """SD of eta from a log-normal CV, an SD or a variance (exactly one given)."""
    if cv is not None:
        return math.sqrt(math.log1p(cv * cv))
    if omega2 is not None:
        return math.sqrt(omega2)
    assert omega is not None
    return omega
