"""Your own route on a bundled model, and the table of every bundled route.

:func:`with_route` adds a route to a model (or replaces one) from the numbers a
researcher has for their product: bioavailability, a first-order absorption rate
or the Tmax it should reproduce, a lag, a zero-order input duration, and a split
of the dose between pathways (a lozenge: part through the oral mucosa, the rest
swallowed through first pass). The result is a NEW :class:`~ketasim.Model`: its id
is the published model's id plus ``+<route>`` (or one you choose), its
``derived_from`` names the published model and its ``changes`` list what was
added, so a result (``ds.attrs["model_id"]``, ``ds.attrs["model_changes"]``) never
looks like the published model's.

:func:`route_table` lists every route of the bundled models with its evidence
grade (``models/README.md`` carries it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _analytes
from .model import Compartment, Flow, Model, Parameter, Pathway, Route
from .units import parse_quantity, parse_unit, to_hours

__all__ = ["Absorption", "route_table", "tmax_of", "with_route", "without_analytes"]

#: Grade of a route or parameter given by the user through :func:`with_route`.
USER_GRADE = "user"
#: Bracket (1/h) searched for an absorption rate constant matching a Tmax: from a
#: 29-day absorption half-time to a 2.5-second one.
KA_BRACKET = (1e-3, 1e3)


def _rate(value, what: str) -> float:
    """A first-order rate constant in 1/h: ``"2.5 1/h"``, ``"0.04 1/min"``,
    ``(2.5, "1/h")`` or a bare number in 1/h; finite and > 0."""
    q = parse_quantity(value, what=what, default_unit="1/h")
    u = parse_unit(q.unit)
    k = float(q.value) * u.factor
    if u.dimension != "rate constant" or u.per_kg:
        raise ValueError(
            f"{what} must be a rate constant such as '2.5 1/h' or '0.04 1/min'; "
            f"got {value!r}"
        )
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"{what} must be a finite rate constant > 0; got {value!r}")
    return k


def _time(value, what: str, *, positive: bool) -> float:
    h = to_hours(value, what=what)
    if not (h > 0 if positive else h >= 0):
        raise ValueError(
            f"{what} must be {'> 0' if positive else '>= 0'} h; got {value!r}"
        )
    return h


def _fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(
            f"{what} must be a number in [0, 1] (a fraction, 0.93 for 93 %); "
            f"got {type(value).__name__} {value!r}"
        )
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(
            f"{what} must be a fraction in [0, 1] (0.93 for 93 %); got {value!r}"
        )
    return v


@dataclass(frozen=True)
class Absorption:
    """One pathway of a route: where ``fraction`` of each dose goes and how it
    is absorbed.

    Parameters
    ----------
    fraction : float or "rest", default 1
        Share of the dose entering this pathway (``"rest"``: what the route's
        other pathways leave).
    bioavailability : float, default 1
        Share of what enters the pathway that reaches the body (first pass of a
        swallowed part); the pathway delivers ``fraction × bioavailability``.
    ka : rate, optional
        First-order absorption rate constant (``"2.5 1/h"``, ``"0.04 1/min"``, a
        number in 1/h) from a depot into ``into``.
    tmax : time, optional
        Instead of ``ka``: the typical Tmax of the whole route (after a single
        dose, typical subject at the model's reference covariates); ``ka`` is
        solved so the model reproduces it. At most one pathway of a route.
    lag : time, default 0
        Delay before the input starts.
    duration : time, optional
        Zero-order input duration (into the depot when there is one, else
        straight into ``into``).
    into : str, optional
        Compartment absorbed into; default the compartment of the model's first
        analyte (the parent's central compartment).
    depot : str, optional
        An existing depot compartment of the model to put the dose into (it keeps
        its own absorption flow), instead of a new one with ``ka``.
    """

    fraction: float | str = 1.0
    bioavailability: float = 1.0
    ka: Any = None
    tmax: Any = None
    lag: Any = 0.0
    duration: Any = None
    into: str | None = None
    depot: str | None = None

    def __post_init__(self) -> None:
        if self.fraction != "rest":
            object.__setattr__(self, "fraction", _fraction(self.fraction, "fraction"))
        object.__setattr__(
            self,
            "bioavailability",
            _fraction(self.bioavailability, "bioavailability"),
        )
        given = [k for k in ("ka", "tmax", "depot") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give one of ka, tmax and depot for a pathway; got "
                f"{', '.join(given)}. ka: your absorption rate; tmax: ketasim "
                f"solves ka so the route peaks then; depot: an existing depot "
                f"compartment with its own absorption"
            )
        if self.ka is not None:
            object.__setattr__(self, "ka", _rate(self.ka, "ka"))
        if self.tmax is not None:
            object.__setattr__(self, "tmax", _time(self.tmax, "tmax", positive=True))
        object.__setattr__(self, "lag", _time(self.lag, "lag", positive=False))
        if self.duration is not None:
            object.__setattr__(
                self, "duration", _time(self.duration, "duration", positive=True)
            )

    def describe(self) -> str:
        """One line: what the pathway does, in canonical units."""
        parts = []
        if self.fraction != 1.0:
            parts.append(
                "the rest" if self.fraction == "rest" else f"{self.fraction:g} of it"
            )
        if self.bioavailability != 1.0:
            parts.append(f"bioavailability {self.bioavailability:g}")
        if self.ka is not None:
            parts.append(f"ka {self.ka:.4g} 1/h")
        if self.tmax is not None:
            parts.append(f"ka solved for Tmax {self.tmax:.4g} h")
        if self.depot is not None:
            parts.append(f"into existing depot {self.depot!r}")
        if self.lag:
            parts.append(f"lag {self.lag:.4g} h")
        if self.duration is not None:
            parts.append(f"zero-order over {self.duration:.4g} h")
        elif self.ka is None and self.tmax is None and self.depot is None and parts:
            parts.append("absorbed at once (no ka, tmax or depot)")
        return ", ".join(parts) or "the whole dose at once"


def _param(name: str, value: float, unit: str, dimension: str, text: str) -> Parameter:
    return Parameter(
        name=name,
        value=float(value),
        unit=unit,
        canonical_unit=unit,
        dimension=dimension,
        per_kg=False,
        description=text,
        reference=None,
        source="given by the user (Model.with_route)",
        grade=USER_GRADE,
    )


def _central(model: Model) -> str:
    return model.analytes[0].compartment


def with_route(
    model: Model,
    name: str,
    *pathways: Absorption,
    bioavailability: float | None = None,
    ka: Any = None,
    tmax: Any = None,
    lag: Any = None,
    duration: Any = None,
    into: str | None = None,
    description: str = "",
    evidence: str = "",
    id: str | None = None,
) -> Model:
    """``model`` with route ``name`` added (or replaced): a new model.

    Give either pathways (:class:`Absorption`, for a split dose) or the keywords
    of one pathway (``bioavailability``, ``ka`` or ``tmax``, ``lag``,
    ``duration``, ``into``). Without ``ka``, ``tmax`` or a depot the input goes
    straight into ``into`` (at once, or zero-order over ``duration``).

    Parameters
    ----------
    model : Model
    name : str
        Route name used by ``Dose(route=name)``; an existing route of that name is
        replaced (the change says so).
    *pathways : Absorption
    bioavailability, ka, tmax, lag, duration, into
        One pathway's settings (see :class:`Absorption`); bioavailability
        defaults to 1.
    description, evidence : str
        What the route is and where its numbers come from (your study, product
        sheet); stored on the route and shown in its provenance.
    id : str, optional
        The new model's id; default ``"<model id>+<name>"``.

    Returns
    -------
    Model
        Its ``id`` differs from the published model's, ``derived_from`` names it,
        ``changes`` lists what was added (with the solved ka), the route's grade is
        ``"user"``. Results carry ``model_id``, ``model_derived_from`` and
        ``model_changes`` in their attrs.

    Examples
    --------
    >>> import ketasim as ks
    >>> m = ks.load_model("clements_nimmo_1981")
    >>> im = m.with_route("im", bioavailability=0.9, tmax="20 min")
    >>> im.id, im.derived_from, im.routes["im"].grade
    ('clements_nimmo_1981+im', 'clements_nimmo_1981', 'user')
    >>> print(im.changes[0])  # doctest: +ELLIPSIS
    route 'im' added: bioavailability 0.9, ka ... 1/h (solved for Tmax 0.3333 h)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a ketasim Model; got {type(model).__name__}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"route name must be a word such as 'im' or 'troche' (letters, digits, "
            f"underscores); got {name!r}"
        )
    one = {
        "bioavailability": bioavailability,
        "ka": ka,
        "tmax": tmax,
        "lag": lag,
        "duration": duration,
        "into": into,
    }
    if pathways and any(v is not None for v in one.values()):
        raise ValueError(
            f"give either Absorption pathways or the keywords of one pathway "
            f"({', '.join(k for k, v in one.items() if v is not None)}), not both"
        )
    if not pathways:
        kw = {k: v for k, v in one.items() if v is not None}
        pathways = (Absorption(**kw),)
    for j, pw in enumerate(pathways):
        if not isinstance(pw, Absorption):
            raise TypeError(
                f"pathways[{j}] must be a ks.Absorption; got {type(pw).__name__}"
            )
    if sum(pw.fraction == "rest" for pw in pathways) > 1:
        raise ValueError("only one pathway may take fraction='rest'")
    named = sum(pw.fraction for pw in pathways if pw.fraction != "rest")
    if named > 1.0 + 1e-12:
        raise ValueError(
            f"the pathways' fractions add up to {named:g} > 1: more than the whole "
            f"dose. A pathway's fraction is its share of the dose; first pass "
            f"goes in bioavailability"
        )
    if sum(pw.tmax is not None for pw in pathways) > 1:
        raise ValueError(
            "tmax may be given for one pathway of a route (its ka is solved so the "
            "whole route peaks at tmax); give ka for the others"
        )
    new_id = f"{model.id}+{name}" if id is None else id
    if not isinstance(new_id, str) or not new_id.strip() or new_id == model.id:
        raise ValueError(
            f"id must be a new model id, different from {model.id!r} (results of "
            f"a changed model must not look like the published one's); got {id!r}"
        )
    names = model.compartment_names
    params = dict(model.parameters)
    cmts = list(model.compartments)
    flows = list(model.flows)
    built = []
    solve_at = None
    for j, pw in enumerate(pathways):
        tag = f"{name}_{j + 1}" if len(pathways) > 1 else name
        target = pw.into if pw.into is not None else _central(model)
        if target not in names:
            raise ValueError(
                f"into={target!r} is not a compartment of model {model.id!r}; its "
                f"compartments are {', '.join(names)}"
            )
        if pw.depot is not None:
            dep = next((c for c in model.compartments if c.name == pw.depot), None)
            if dep is None or dep.role != "depot":
                depots = [c.name for c in model.compartments if c.role == "depot"]
                raise ValueError(
                    f"depot={pw.depot!r} is not a depot compartment of model "
                    f"{model.id!r}; its depots are {', '.join(depots) or '(none)'}"
                )
            target = pw.depot
        elif pw.ka is not None or pw.tmax is not None:
            depot = f"{tag}_depot"
            if depot in names:
                raise ValueError(
                    f"model {model.id!r} already has a compartment {depot!r}"
                )
            cmts.append(Compartment(depot, "depot", None, None))
            k = f"ka_{tag}"
            params[k] = _param(
                k,
                pw.ka if pw.ka is not None else 1.0,
                "1/h",
                "rate constant",
                f"absorption rate constant of route {name!r}",
            )
            flows.append(Flow(depot, target, "k", k))
            if pw.tmax is not None:
                solve_at = (k, pw.tmax)
            target = depot
        frac = bio = lag_p = dur_p = None
        if pw.fraction == "rest":
            frac = "rest"
        elif pw.fraction != 1.0 or len(pathways) > 1:
            frac = f"f_{tag}"
            params[frac] = _param(
                frac,
                pw.fraction,
                "1",
                "dimensionless",
                f"share of a dose entering pathway {j + 1} of route {name!r}",
            )
        if pw.bioavailability != 1.0:
            bio = f"F_{tag}"
            params[bio] = _param(
                bio,
                pw.bioavailability,
                "1",
                "dimensionless",
                f"bioavailability of route {name!r}"
                + (f", pathway {j + 1}" if len(pathways) > 1 else ""),
            )
        if pw.lag:
            lag_p = f"lag_{tag}"
            params[lag_p] = _param(
                lag_p, pw.lag, "h", "time", f"lag time of route {name!r}"
            )
        if pw.duration is not None:
            dur_p = f"D_{tag}"
            params[dur_p] = _param(
                dur_p,
                pw.duration,
                "h",
                "time",
                f"zero-order input duration of route {name!r}",
            )
        built.append(Pathway(target, frac, lag_p, dur_p, None, bio))
    replaced = name in model.routes
    route = Route(
        name,
        "extravascular",
        tuple(built),
        description or f"route added with Model.with_route on {model.id}",
        None,
        USER_GRADE,
        evidence or "given by the user (Model.with_route); not a published route",
        False,
    )
    routes = dict(model.routes)
    routes[name] = route
    # an analyte the model cannot predict after its extravascular routes (first
    # pass it does not model) cannot be trusted after a new one either
    analytes = tuple(
        replace(
            a,
            limits=tuple(
                replace(lim, routes=(*lim.routes, name))
                if name not in lim.routes
                and any(not model.routes[r].intravenous for r in lim.routes)
                else lim
                for lim in a.limits
            ),
        )
        for a in model.analytes
    )
    base = model.derived_from or model.id
    new = replace(
        model,
        id=new_id,
        name=f"{model.name} [route {name!r} {'replaced' if replaced else 'added'} "
        f"by the user]",
        parameters=params,
        compartments=tuple(cmts),
        flows=tuple(flows),
        routes=routes,
        analytes=analytes,
        derived_from=base,
        changes=(),
        sha256="",
    )
    what = "; ".join(
        (f"pathway {j + 1}: " if len(pathways) > 1 else "") + pw.describe()
        for j, pw in enumerate(pathways)
    )
    if solve_at is not None:
        k, target_h = solve_at
        ka_val = solve_ka(new, name, k, target_h)
        p = new.parameters[k]
        params[k] = replace(
            p,
            value=ka_val,
            source=f"solved by ketasim so the typical Tmax of route {name!r} is "
            f"{target_h:.4g} h (user's tmax)",
        )
        new = replace(new, parameters=params)
        what = what.replace(
            f"ka solved for Tmax {target_h:.4g} h",
            f"ka {ka_val:.4g} 1/h (solved for Tmax {target_h:.4g} h)",
        )
    change = f"route {name!r} {'replaced' if replaced else 'added'}: {what}"
    if evidence:
        change += f" [evidence: {evidence}]"
    return replace(new, changes=(*model.changes, change))


def without_analytes(model: Model, *names: str, id: str | None = None) -> Model:
    """``model`` without the analytes ``names`` (the model's names or their common
    names, such as ``"noresketamine"``; each dropped once): a new model (id
    ``"<model>-<names>"`` of the model's names unless given, ``derived_from`` and
    ``changes`` say so).
    The compartments stay, so the remaining analytes are unchanged; the dropped
    ones are neither returned nor checked against their limits. Their effect sites
    go with them, and so does every endpoint one of them drives (an endpoint that
    lost a driver would be another model); ``changes`` lists each.

    Examples
    --------
    >>> import ketasim as ks
    >>> m = ks.load_model("fanta_2015").without_analytes("s_norketamine")
    >>> m.id, len(m.analyte_names), m.changes
    ('fanta_2015-s_norketamine', 1, ("analyte 's_norketamine' dropped",))
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a ketasim Model; got {type(model).__name__}")
    have = model.analyte_names

    def found(name) -> str | None:  # a model's name or a common one (alias)
        try:
            return _analytes.resolve(name, have, f"model {model.id!r}")
        except (TypeError, ValueError):
            return None

    resolved = [found(n) for n in names]
    unknown = [n for n, r in zip(names, resolved, strict=True) if r is None]
    if not names or unknown:
        raise ValueError(
            f"name the analytes to drop, among {', '.join(map(repr, have))}; got "
            f"{', '.join(map(repr, unknown or names)) or 'none'}"
        )
    # canonical names, each once ('noresketamine' and 's_norketamine' are one)
    names = tuple(dict.fromkeys(resolved))
    kept = tuple(a for a in model.analytes if a.name not in names)
    if not kept:
        raise ValueError(
            f"dropping {', '.join(map(repr, names))} leaves model {model.id!r} "
            f"without an analyte; keep at least one"
        )
    new_id = id if id is not None else f"{model.id}-{'-'.join(names)}"
    if not isinstance(new_id, str) or not new_id.strip() or new_id == model.id:
        raise ValueError(
            f"id must be a new model id, different from {model.id!r}; got {id!r}"
        )
    # An effect site of a dropped analyte goes with it, and so does every endpoint
    # driven by a dropped analyte: an endpoint that lost a driver would be another
    # pharmacodynamic model, so it is dropped rather than silently changed.
    sites = tuple(s for s in model.effect_sites if s.analyte not in names)
    effects = tuple(
        e for e in model.effects if not any(d.analyte in names for d in e.drivers)
    )
    return replace(
        model,
        id=new_id,
        name=f"{model.name} [without {', '.join(names)}]",
        analytes=kept,
        residual={k: v for k, v in model.residual.items() if k not in names},
        effect_sites=sites,
        effects=effects,
        derived_from=model.derived_from or model.id,
        changes=(
            *model.changes,
            *(f"analyte {n!r} dropped" for n in names),
            *(
                f"effect site {s.name!r} dropped with its analyte {s.analyte!r}"
                for s in model.effect_sites
                if s not in sites
            ),
            *(
                f"endpoint {e.name!r} dropped: driven by "
                f"{', '.join(sorted({d.analyte for d in e.drivers} & set(names)))}"
                for e in model.effects
                if e not in effects
            ),
        ),
        sha256="",
    )


def refused_analytes(model: Model, route: str) -> tuple[str, ...]:
    """The analytes ``model`` refuses to predict after any dose on ``route``
    (``action = "refuse"`` limits naming the route, for all its doses)."""
    return tuple(
        a.name
        for a in model.analytes
        if any(
            lim.action == "refuse" and route in lim.routes and lim.shorter_than is None
            for lim in a.limits
        )
    )


# ---- Tmax ------------------------------------------------------------------------


def _typical(model: Model) -> dict[str, np.ndarray]:
    cov = {k: np.array([v]) for k, v in model.covariates.items()}
    return model.individual_parameters(cov, n=1)


def _inputs(model: Model, route: str, params) -> list[tuple[int, float, float, float]]:
    """(compartment index, amount share, start h, duration h or 0) per pathway of
    a unit dose on ``route`` (first device), as the lowering stage forms them."""
    from ._lower import _pathway_fractions
    from .dosing import Dose

    dose = Dose.bolus("1 mg", route=route)
    r = model.routes[route]
    fr = _pathway_fractions(model, dose, params, 1)
    out = []
    for pw, f in zip(r.pathways, fr, strict=True):
        lag = float(model.value_of(pw.lag, params, 1, 0.0)[0])
        dur = float(params[pw.duration][0]) if pw.duration is not None else 0.0
        out.append((model.compartment_index(pw.target), float(f[0]), lag, dur))
    return out


def tmax_of(model: Model, route: str, *, horizon: float = 48.0) -> float:
    """Typical Tmax (h) of the first analyte after one dose on ``route``: the
    first maximum on a 1-min grid over ``horizon`` h, refined on a 1e-4 h grid
    and a parabola through its peak (exact matrix-exponential curve).

    Examples
    --------
    >>> import ketasim as ks
    >>> round(tmax_of(ks.load_model("clements_nimmo_1981"), "sublingual") * 60, 1)
    45.0
    """
    params = _typical(model)
    t = np.arange(0.0, horizon, 1.0 / 60.0)
    c = _curve_grid(model, route, t, params)
    k = int(np.argmax(c))
    # refine: a grid of 1e-4 h around the coarse peak, then the vertex of the
    # parabola through the finest peak and its neighbours
    fine = np.arange(t[max(k - 1, 0)], t[min(k + 1, t.size - 1)] + 1e-4, 1e-4)
    cf = _curve_grid(model, route, fine, params)
    j = int(np.argmax(cf))
    if 0 < j < fine.size - 1:
        y0, y1, y2 = cf[j - 1 : j + 2]
        den = y0 - 2.0 * y1 + y2
        if den < 0:
            return float(fine[j] + 0.5e-4 * (y0 - y2) / den)
    return float(fine[j])


def _curve_grid(model: Model, route: str, t: np.ndarray, params) -> np.ndarray:
    """Typical concentration (ng/mL) of the first analyte after 1 mg on ``route``
    at sorted times ``t`` (h), exact: the state is stepped with matrix
    exponentials (scipy) between output times and breakpoints (a lag's end, the
    end of a zero-order input), one expm per distinct step length."""
    from scipy.linalg import expm

    A = model.rate_matrices(params, 1)[0]
    n = A.shape[0]
    obs = model.compartment_index(model.analytes[0].compartment)
    scale = model.observation(params, 1)[1][0, 0]
    c = np.zeros_like(t)

    for cmt, share, start, dur in _inputs(model, route, params):
        if share == 0.0:
            continue
        cache: dict = {}  # (infusing, step h) -> expm, for this pathway

        def step(infusing: bool, h: float, M, Z, cache=cache):
            key = (infusing, round(h, 12))
            if key not in cache:
                cache[key] = expm((M if infusing else Z) * h)
            return cache[key]

        M = np.zeros((n + 1, n + 1))
        M[:n, :n] = A
        M[cmt, n] = 1.0
        Z = np.zeros((n + 1, n + 1))
        Z[:n, :n] = A
        z = np.zeros(n + 1)
        breaks = sorted({start, start + dur})
        events = np.union1d(t, breaks)
        now = 0.0
        vals = {}
        for te in events:
            h = te - now
            if h > 0:
                infusing = dur > 0 and start <= now < start + dur
                z = step(infusing, h, M, Z) @ z
            now = te
            if te == start:
                if dur == 0.0:
                    z[cmt] += 1.0
                else:
                    z[n] = 1.0 / dur
            if dur > 0 and te == start + dur:
                z[n] = 0.0
            vals[te] = z[obs]
        c += share * scale * np.array([vals[x] for x in t])
    return c


def solve_ka(model: Model, route: str, ka_name: str, tmax: float) -> float:
    """The value of rate constant ``ka_name`` (1/h) for which the typical Tmax of
    ``route`` is ``tmax`` h (Brent's method on log ka over :data:`KA_BRACKET`)."""
    from scipy.optimize import brentq

    def tm(log_ka: float) -> float:
        p = replace(model.parameters[ka_name], value=float(np.exp(log_ka)))
        m = replace(model, parameters={**model.parameters, ka_name: p})
        # a peak beyond the horizon shows as Tmax = horizon > tmax: sign kept
        return tmax_of(m, route, horizon=3.0 * tmax + 1.0 / 30.0) - tmax

    lo, hi = (math.log(x) for x in KA_BRACKET)
    f_lo, f_hi = tm(lo), tm(hi)
    if not f_lo > 0 > f_hi:
        raise ValueError(
            f"no absorption rate constant within {KA_BRACKET[0]:g}-"
            f"{KA_BRACKET[1]:g} 1/h gives route {route!r} of model "
            f"{model.derived_from or model.id!r} a typical Tmax of {tmax:.4g} h "
            f"(reachable: {f_hi + tmax:.4g} to {f_lo + tmax:.4g} h); check tmax, "
            f"or give ka"
        )
    return float(np.exp(brentq(tm, lo, hi, xtol=1e-9, rtol=1e-9)))


# ---- the route table ---------------------------------------------------------


def _adult(model: Model) -> bool:
    """A model is paediatric when its age validity ends at 18 y or below."""
    age = model.validity.get("age")
    return age is None or age[1] > 18.0


def _value(model: Model, ref) -> str:
    if ref is None:
        return ""
    if isinstance(ref, str):
        p = model.parameters[ref]
        return f"{ref} {p.value:.3g}" + (
            f" {p.canonical_unit}" if p.canonical_unit != "1" else ""
        )
    return f"{ref:g}"


def _pathway_text(model: Model, pw: Pathway) -> str:
    parts = [f"→ {pw.target}"]
    if pw.fraction is not None:
        parts.append(
            "the rest"
            if pw.fraction == "rest"
            else _value(model, pw.fraction)
            if isinstance(pw.fraction, str)
            else f"fraction {pw.fraction:g}"
        )
    if pw.bioavailability is not None:
        parts.append(f"× {_value(model, pw.bioavailability)} (first pass)")
    if pw.lag is not None:
        parts.append(f"lag {_value(model, pw.lag)}")
    if pw.duration is not None:
        parts.append(f"over {_value(model, pw.duration)}")
    outs = [f for f in model.flows if f.source == pw.target and f.kind == "k"]
    if outs:
        parts.append(
            ", ".join(
                f"{f.rate} {_value(model, f.rate).split(' ', 1)[1]} → {f.target}"
                for f in outs
            )
        )
    return " ".join(parts)


def route_table(models: Mapping[str, Model] | None = None) -> str:
    """A Markdown table of every route of every model (default: the bundled ones,
    adults first): model, population, route, what it does (pathways with their
    fractions, lags, durations and absorption rates, typical values), evidence
    grade, evidence, and whether it is benchmark-only. Models are grouped as
    adult or paediatric (age validity ending at 18 y or below)."""
    from .modelfile import list_models, load_model

    if models is None:
        models = {name: load_model(name) for name in list_models()}
    rows = [
        "| model | adults | route | pathways (typical values) | grade | evidence |",
        "|---|---|---|---|---|---|",
    ]
    ordered = sorted(models.values(), key=lambda m: (not _adult(m), m.id))
    for m in ordered:
        for r in m.routes.values():
            if r.intravenous:
                what = f"intravenous → {r.pathways[0].target}"
            else:
                what = "; ".join(_pathway_text(m, pw) for pw in r.pathways)
                if r.device_mg is not None:
                    what += f" (per {r.device_mg:g}-mg device)"
            grade = r.grade or "not stated"
            if r.benchmark_only:
                grade += ", **benchmark only**"
            ev = (r.evidence or "").replace("|", "/").replace("\n", " ")
            rows.append(
                f"| {m.id} | {'yes' if _adult(m) else 'no'} | {r.name} | {what} | "
                f"{grade} | {ev} |"
            )
    return "\n".join(rows)
