"""Effect sites and pharmacodynamic endpoints: the model file's ``[effect_sites]``
and ``[effects]`` sections, the effect-site states the exact propagation carries,
and the effects computed from them.

An effect site is a compartment of negligible volume linked to an analyte's
plasma concentration Cp by ``dCe/dt = ke0 (Cp - Ce)`` (ng/mL). The equation is
linear, so each site joins the rate matrix as one extra state (a row, no column:
no mass moves), ``d Ce/dt = ke0 · scale · x_obs - ke0 · Ce``, where ``scale``
turns the analyte compartment's amount (mg) into ng/mL; the exact propagation
then returns Ce at machine precision, like the cumulative AUC states.

An endpoint combines concentrations (effect-site or plasma, "drivers") into one
effect with a baseline ``E0``:

``linear``
    ``E = E0 + Σ change_i · C_i / at_i``: driver i changes the effect by
    ``change_i`` (effect unit) at concentration ``at_i`` (the linear additive
    model of Olofsen et al. 2012).
``emax``, ``sigmoid_emax``
    ``E = E0 + Emax · EFF^γ / (1 + EFF^γ)`` (γ = 1 for ``emax``), with
    ``interaction = "agonistic"``: ``EFF = Σ C_i / C50_i`` (every driver an
    agonist), or ``"antagonistic"``: ``EFF = C_1 / (C50_1 (1 + Σ_{m>1} C_m /
    C100_m))`` (the first driver the agonist; each other raises its C50 by 100 %
    at ``C100_m``), as Simons et al. 2022 (part 2) wrote them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .units import mol_per_l_to_ng_per_ml

#: Endpoint models and the driver keys each takes.
EFFECT_MODELS = ("linear", "emax", "sigmoid_emax")
INTERACTIONS = ("agonistic", "antagonistic")


@dataclass(frozen=True)
class EffectSite:
    """An effect compartment of ``analyte``: ``parameter`` is its ke0 (a rate
    constant, ``kind="ke0"``) or its equilibration half-life (a time,
    ``kind="half_life"``, ke0 = ln 2 / t½)."""

    name: str
    analyte: str
    parameter: str
    kind: str
    description: str = ""


@dataclass(frozen=True)
class Driver:
    """One concentration an endpoint responds to: the effect-site concentration
    of ``site`` or (``site`` None) the plasma concentration of ``analyte``.
    ``potency`` names the concentration parameter: C50 (``role="c50"``), C100 of
    an antagonist (``"c100"``) or, for a linear endpoint, the concentration
    ``at`` which the driver changes the effect by ``change`` (``"at"``)."""

    analyte: str
    site: str | None
    potency: str
    role: str
    change: float = 0.0

    @property
    def label(self) -> str:
        return self.site if self.site is not None else self.analyte


@dataclass(frozen=True)
class Endpoint:
    """A pharmacodynamic endpoint (see the module docstring for the equations).
    ``unit`` is the effect's unit (free text: "cm" for a 10-cm VAS); ``baseline``
    and ``emax`` are in it; ``gamma`` a parameter name or a number."""

    name: str
    model: str
    unit: str
    long_name: str
    baseline: float
    emax: float | None
    gamma: str | float | None
    interaction: str
    drivers: tuple[Driver, ...]
    source: str
    grade: str
    reference: str | None = None
    #: the routes the endpoint was estimated after (None: any); doses on another
    #: route make its effect NaN, with ``routes_note`` saying why
    routes: tuple[str, ...] | None = None
    routes_note: str = ""

    @property
    def direction(self) -> int:
        """+1 if the drug raises the effect, -1 if it lowers it, 0 if mixed (a
        linear endpoint whose drivers push both ways)."""
        if self.model != "linear":
            return 1 if (self.emax or 0.0) > 0 else -1
        signs = {np.sign(d.change) for d in self.drivers if d.change != 0}
        return int(signs.pop()) if len(signs) == 1 else 0


# ---------------------------------------------------------------------------------
# values


def effects_on(model, output) -> bool:
    """Whether a trajectory run carries the effect sites (and effects): by
    default for a model with ``[effects]``; ``Trajectories(effects=True)`` for
    one with effect sites only; never with ``effects=False``. A request the
    model cannot meet is refused."""
    want = getattr(output, "effects", None)
    if want is None:
        on = bool(model.effects)
        if on and getattr(output, "out", None) is not None:
            raise ValueError(
                f"model {model.id!r} has effects, which the run computes as extra "
                f"outputs; Trajectories(out=...) holds concentrations only: pass "
                f"Trajectories(out=..., effects=False)"
            )
        return on
    if want and not model.effect_sites and not model.effects:
        raise ValueError(
            f"Trajectories(effects=True) but model {model.id!r} has no effect "
            f"site or effect ([effect_sites], [effects] in its file)"
        )
    return bool(want)


def ke0_per_hour(model, site: EffectSite, params, n: int) -> np.ndarray:
    """The site's ke0 (1/h) per subject from individual parameters (canonical
    units: a rate constant in 1/h, a half-life in h)."""
    v = np.broadcast_to(np.asarray(params[site.parameter], dtype=float), (n,))
    with np.errstate(divide="ignore"):
        return v.copy() if site.kind == "ke0" else math.log(2.0) / v


def concentration_ng_per_ml(model, name: str, analyte: str, params, n: int):
    """A concentration parameter (C50, C100, ``at``) in ng/mL per subject: a
    mass concentration (canonical mg/L) x 1000, a molar one (canonical mol/L)
    x the analyte's molecular weight (g/mol) x 1e6."""
    p = model.parameters[name]
    v = np.broadcast_to(np.asarray(params[name], dtype=float), (n,))
    if p.dimension == "molar concentration":
        mw = next(a.mw for a in model.analytes if a.name == analyte)
        return mol_per_l_to_ng_per_ml(v, mw)
    return v * 1000.0


def with_effect_sites(model, low, A, obs_cmt, obs_scale, params, n: int):
    """The rate matrices extended by one state per effect site (after the states
    already there, e.g. the AUC ones), and the outputs extended by those states
    (scale 1: the state is Ce in ng/mL).

    Row e: ``dCe/dt = ke0 · scale_k · x[obs_k] - ke0 · Ce`` with k the site's
    analyte; the column of e stays zero (the site takes no mass)."""
    sites = model.effect_sites
    E = len(sites)
    S, M, m, _ = A.shape
    out = np.zeros((S, M, m + E, m + E))
    out[:, :, :m, :m] = A
    names = model.analyte_names
    for e, site in enumerate(sites):
        k = names.index(site.analyte)
        ke0 = ke0_per_hour(model, site, params, n)
        out[:, :, m + e, low.obs_cmt[k]] = (ke0 * low.obs_scale[:, k])[:, None]
        out[:, :, m + e, m + e] = -ke0[:, None]
    obs = np.concatenate([obs_cmt, np.arange(m, m + E, dtype=np.int64)])
    scale = np.ascontiguousarray(np.hstack([obs_scale, np.ones((S, E))]))
    return np.ascontiguousarray(out), obs, scale


def _nonnegative(c: np.ndarray, what: str) -> np.ndarray:
    """Concentrations for a PD equation. The exact propagation leaves values of
    the order of -1e-16 x the largest concentration where a curve is zero
    (roundoff); those are read as 0 (a power EFF^γ of a negative number is NaN).
    A negative beyond 1e-9 x the subject's largest value is no roundoff: NaN, so
    the effect shows the trouble instead of hiding it."""
    c = np.array(c, dtype=float)
    with warnings.catch_warnings():  # a failed subject's all-NaN row stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        top = np.nanmax(np.abs(c), axis=-1, keepdims=True) if c.size else c
    tiny = (c < 0) & (c >= -1e-9 * top)
    c[tiny] = 0.0
    c[c < 0] = np.nan
    return c


def endpoint_values(model, ep: Endpoint, conc_of, params, n: int) -> np.ndarray:
    """The endpoint's effect (subject, time) in its unit; ``conc_of(driver)``
    gives the driver's concentration (subject, time) in ng/mL."""
    cs = [_nonnegative(conc_of(d), d.label) for d in ep.drivers]
    pot = [
        concentration_ng_per_ml(model, d.potency, d.analyte, params, n)[:, None]
        for d in ep.drivers
    ]
    if ep.model == "linear":
        eff = sum(d.change * c / p for d, c, p in zip(ep.drivers, cs, pot, strict=True))
        return ep.baseline + eff
    if ep.interaction == "agonistic":
        x = sum(c / p for c, p in zip(cs, pot, strict=True))
    else:
        shift = 1.0 + sum(c / p for c, p in zip(cs[1:], pot[1:], strict=True))
        x = cs[0] / (pot[0] * shift)
    if ep.model == "sigmoid_emax":
        g = ep.gamma
        gamma = (
            np.broadcast_to(np.asarray(params[g], dtype=float), (n,))[:, None]
            if isinstance(g, str)
            else float(g)
        )
        with np.errstate(over="ignore"):  # x^γ -> inf: the fraction is 1
            xg = np.power(x, gamma)
        frac = np.where(np.isinf(xg), 1.0, xg / (1.0 + xg))
    else:
        frac = x / (1.0 + x)
    return ep.baseline + ep.emax * frac
