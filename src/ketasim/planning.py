"""Dose planning on top of ``simulate``: targets, target-controlled infusion and
sensitivity.

- :func:`find_dose`: the dose (flat or per kg, as the regimen gives it) for which a
  population statistic of an exposure metric meets a :class:`Target` (median
  session-1 Cmax = 150 ng/mL, P95 Cmax = 300 ng/mL, probability of attaining
  100 ng/mL = 90 %). A model without a user rhs is linear in dose (every flow is
  first order), so one population run gives every dose exactly: each subject's
  Cmax, AUC and trough scale with the dose. A user rhs (Michaelis-Menten, ...) is
  solved by a bracketed root search (``scipy.optimize.brentq``) on the same
  patients (same population and seed) at every evaluation.
- :func:`tci`: a target-controlled infusion plan (as STANPUMP, opentiva, PyTCI):
  the infusion rate of each control step that brings the plasma or effect-site
  concentration of one subject to a target and holds it; :func:`tci_performance`
  gives that plan's achieved levels across a population (median, P5-P95,
  MDPE, MDAPE).
- :func:`elasticities`, :func:`sweep`, :func:`tornado` and :func:`plot_tornado`:
  how an exposure metric responds to each parameter or to the dose.

Every function validates its arguments and returns numbers with their units
(``attrs["units"]``).
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr

from .dosing import Dose, DoseError, Regimen, check_plausible
from .metrics import metrics as _metrics
from .model import KNOWN_COVARIATES, Model
from .modelfile import load_model
from .options import Exact, Subjects, Trajectories
from .population import Population
from .units import (
    UnitError,
    is_molar,
    parse_quantity,
    parse_unit,
    to_hours,
    to_ng_per_ml,
)

__all__ = [
    "DoseFinding",
    "TCIPlan",
    "Target",
    "elasticities",
    "find_dose",
    "plot_tornado",
    "sweep",
    "tci",
    "tci_performance",
    "tornado",
]

#: Exposure metrics a target or a sensitivity can read (as ``ks.metrics`` names
#: them); each scales linearly with the dose in a model linear in dose.
METRICS = ("cmax", "auc", "trough")
PERS = ("dose", "session", "course")
_QUANTILE = re.compile(r"^p(\d+(\.\d+)?)$")


# ---------------------------------------------------------------------------------
# what to read: metric, window, analyte, statistic


def _check_statistic(statistic) -> float | str:
    """``"median"``, ``"mean"``, ``"p95"`` (any percentile 0-100) or ``"pta"``;
    returns the percentile (float) for ``"pNN"`` and ``"median"``, else the name."""
    if not isinstance(statistic, str):
        raise TypeError(
            f"statistic must be 'median', 'mean', 'pta' or a percentile such as "
            f"'p95'; got {type(statistic).__name__} {statistic!r}"
        )
    if statistic in ("mean", "pta"):
        return statistic
    if statistic == "median":
        return 50.0
    m = _QUANTILE.match(statistic)
    if m and 0.0 < (p := float(m.group(1))) < 1.0:  # 'p0.95': a fraction, not P0.95
        raise ValueError(
            f"statistic percentiles are in percent, 'p0'..'p100': 'p95' for the "
            f"95th; got {statistic!r}, which would be the {p:g}th percentile. For "
            f"a fraction multiply by 100 ('p{p * 100:g}')"
        )
    if m and 0.0 <= float(m.group(1)) <= 100.0:
        return float(m.group(1))
    raise ValueError(
        f"statistic must be 'median', 'mean', 'pta' or a percentile 'p0'..'p100' "
        f"such as 'p95'; got {statistic!r}"
    )


def _check_readout(metric, per, window) -> None:
    if metric not in METRICS:
        raise ValueError(
            f"metric must be one of {', '.join(map(repr, METRICS))} (tmax does not "
            f"scale with the dose; time above a level is not yet supported); "
            f"got {metric!r}"
        )
    if per not in PERS:
        raise ValueError(
            f"per must be one of {', '.join(map(repr, PERS))}; got {per!r}"
        )
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise TypeError(
            f"window must be a whole number (0 = the first {per}); got {window!r}"
        )
    if window < 0:
        raise ValueError(f"window must be >= 0 (0 = the first {per}); got {window}")
    if metric == "trough" and per == "course":
        raise ValueError(
            "metric 'trough' has no per='course' window (the course has no next "
            "session); use per='session' or per='dose'"
        )


@dataclass(frozen=True)
class Target:
    """A population target on an exposure metric.

    Parameters
    ----------
    metric : {"cmax", "auc", "trough"}
        The metric of :func:`ketasim.metrics`.
    value : float or str
        The statistic's target: for ``"median"``, ``"mean"`` and percentiles a
        level in the metric's units (ng/mL for Cmax and trough, ng*h/mL for AUC)
        or a string with its unit (``"150 ng/mL"``, ``"0.3 mg*h/L"``); for
        ``"pta"`` a probability in (0, 1) (``0.9``) or a percentage string
        (``"90 %"``).
    statistic : str, default "median"
        ``"median"``, ``"mean"``, a percentile ``"p5"``..``"p95"`` (any 0-100;
        linear interpolation, as ``ks.summary``) or ``"pta"`` (probability of
        target attainment, ``ks.pta``: the share of subjects whose metric is
        >= ``threshold``, or <= it with ``above=False``).
    threshold : float or str, optional
        The level of ``"pta"`` (required there, refused otherwise), in the
        metric's units or with a unit.
    above : bool, default True
        ``"pta"`` counts metric >= threshold (True) or <= threshold (False).
    per : {"dose", "session", "course"}, default "session"
        The windows of :func:`ketasim.metrics`.
    window : int, default 0
        Which window (0 = the first session).
    analyte : str, optional
        Default: the model's first analyte (the parent drug).

    Examples
    --------
    >>> Target("cmax", "150 ng/mL")
    Target(median session 1 cmax = 150 ng/mL)
    >>> Target("cmax", "300 ng/mL", statistic="p95")
    Target(p95 session 1 cmax = 300 ng/mL)
    >>> Target("cmax", 0.9, statistic="pta", threshold="100 ng/mL")
    Target(P(session 1 cmax >= 100 ng/mL) = 0.9)
    """

    metric: str
    value: float | str
    statistic: str = "median"
    threshold: float | str | None = None
    above: bool = True
    per: str = "session"
    window: int = 0
    analyte: str | None = None

    def __post_init__(self) -> None:
        _check_readout(self.metric, self.per, self.window)
        stat = _check_statistic(self.statistic)
        if not isinstance(self.above, bool | np.bool_):
            raise TypeError(f"above must be True or False; got {self.above!r}")
        if self.analyte is not None and not isinstance(self.analyte, str):
            raise TypeError(f"analyte must be a name or None; got {self.analyte!r}")
        if stat == "pta":
            if self.threshold is None:
                raise ValueError(
                    "statistic='pta' needs threshold= (the level to attain, e.g. "
                    "'100 ng/mL'); value= is the probability (e.g. 0.9)"
                )
            _probability(self.value)
            # a molar level is checked here in its own unit (mw 1 keeps the
            # sign); find_dose converts it by the analyte's molecular weight
            _level_number(self.threshold, self.metric, "threshold", mw=1.0)
        else:
            if self.threshold is not None:
                raise ValueError(
                    f"threshold= is the level of statistic='pta'; with "
                    f"statistic={self.statistic!r} the target level is value= "
                    f"(got threshold={self.threshold!r})"
                )
            level = _level_number(self.value, self.metric, "value", mw=1.0)
            if not level > 0:
                raise ValueError(
                    f"value must be a level > 0 (no dose gives a {self.statistic} "
                    f"{self.metric} of 0 or less); got {self.value!r}"
                )

    @property
    def molar(self) -> bool:
        """The level is molar (``"0.63 umol/L"``): its ng/mL depends on the
        analyte's molecular weight, which :func:`find_dose` takes from the model."""
        return is_molar(self.threshold if self.statistic == "pta" else self.value)

    @property
    def level(self) -> float:
        """The target level in ng/mL (Cmax, trough) or ng*h/mL (AUC): ``value``,
        or ``threshold`` for ``"pta"``. A molar level has none until converted
        (:meth:`in_ng_per_ml`)."""
        if self.molar:
            raise ValueError(
                f"the level {self._raw()!r} is molar: its ng/mL depends on the "
                f"analyte's molecular weight; use target.in_ng_per_ml(mw) (g/mol) "
                f"or pass the target to find_dose, which converts it"
            )
        if self.statistic == "pta":
            return _level_number(self.threshold, self.metric, "threshold")
        return _level_number(self.value, self.metric, "value")

    def _raw(self):
        return self.threshold if self.statistic == "pta" else self.value

    def in_ng_per_ml(self, mw: float) -> Target:
        """This target with a molar level converted to ng/mL by ``mw`` (the
        analyte's molecular weight, g/mol): ng/mL = nmol/L x mw / 1000."""
        if not self.molar:
            return self
        ng = _level_number(self._raw(), self.metric, "value", mw=mw)
        key = "threshold" if self.statistic == "pta" else "value"
        return replace(self, **{key: float(ng)})

    @property
    def units(self) -> str:
        return "ng*h/mL" if self.metric == "auc" else "ng/mL"

    def _what(self) -> str:
        return f"{self.per} {self.window + 1} {self.metric}"  # 1-based in text

    def __repr__(self) -> str:
        level = self._raw().strip() if self.molar else f"{self.level:g} {self.units}"
        if self.statistic == "pta":
            op = ">=" if self.above else "<="
            return (
                f"Target(P({self._what()} {op} {level}) = {_probability(self.value):g})"
            )
        return f"Target({self.statistic} {self._what()} = {level})"


def _probability(value) -> float:
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise ValueError(
                f"a probability is a number in (0, 1) or a percentage such as "
                f"'90 %'; got {value!r}"
            )
        try:
            p = float(text[:-1]) / 100.0
        except ValueError:
            raise ValueError(
                f"cannot read the percentage {value!r}; write e.g. '90 %'"
            ) from None
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"a probability is a number in (0, 1) or a string '90 %'; got "
            f"{type(value).__name__} {value!r}"
        )
    else:
        p = float(value)
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"the probability of target attainment must be in (0, 1) (0 and 1 "
            f"have no finite dose in general); got {value!r}"
        )
    return p


def _level_number(value, metric: str, what: str, mw: float | None = None) -> float:
    """A level in ng/mL (cmax, trough) or ng*h/mL (auc), read from a number in
    those units or a string with a unit; a molar Cmax or trough converts by
    ``mw`` (g/mol)."""
    if metric != "auc":
        v = to_ng_per_ml(value, what=what, mw=mw)
    else:
        from .metrics import _threshold

        probe = xr.DataArray(0.0, attrs={"units": "ng*h/mL"})
        try:
            v = _threshold(probe, value)
        except (TypeError, ValueError):
            raise UnitError(
                f"{what} of an AUC target must be an AUC >= 0 in ng*h/mL (a number) "
                f"or with its unit ('300 ng*h/mL', '0.3 mg*h/L'); got {value!r}"
            ) from None
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{what} must be a finite level >= 0; got {value!r}")
    return float(v)


def _statistic(values: np.ndarray, target: Target) -> float:
    """The population statistic of ``values`` (one per subject, NaN left out)."""
    v = values[np.isfinite(values)]
    stat = _check_statistic(target.statistic)
    if stat == "mean":
        return float(v.mean())
    if stat == "pta":
        hit = v >= target.level if target.above else v <= target.level
        return float(hit.mean())
    return float(np.quantile(v, stat / 100.0))


# ---------------------------------------------------------------------------------
# running: one population (or subject table), one metric


def _subject_metric(
    model, regimen, target_like, *, population, subjects, times, solver
) -> xr.DataArray:
    """One simulation and its metrics: the metric of ``target_like`` (metric,
    per, window, analyte) per subject, a DataArray (subject,) with units."""
    from .simulate import simulate

    ds = simulate(
        model,
        regimen,
        times=times,
        population=population,
        subjects=subjects,
        solver=solver,
        output=Trajectories(),
        progress=False,
    )
    m = _metrics(ds, per=target_like.per)
    analyte = target_like.analyte or str(ds.analyte.values[0])
    if analyte not in ds.analyte.values:
        raise ValueError(
            f"analyte {analyte!r} is not one of this model's analytes "
            f"{list(map(str, ds.analyte.values))}"
        )
    da = m[target_like.metric].sel(analyte=analyte)
    n = da.sizes[target_like.per]
    if target_like.window >= n:
        raise ValueError(
            f"window={target_like.window} does not exist: the regimen has {n} "
            f"{target_like.per} window(s) (window=0 to {n - 1}, 0 = the first)"
        )
    da = da.isel({target_like.per: target_like.window})
    if not np.isfinite(da.values).any():
        # messages number windows from 1, as Target's repr does
        what = f"{target_like.per} {target_like.window + 1}"
        if target_like.metric == "trough" and target_like.window == n - 1:
            why = (
                f"a trough is the level just before the next {target_like.per}'s "
                f"first dose, and {what} is the last of {n} (no {target_like.per} "
                f"follows it); add the following dose to the regimen, or use "
                f"metric='cmax' or 'auc'"
            )
        else:
            why = "no output time falls in that window; pass times= that cover it"
        raise ValueError(
            f"{target_like.metric} of {what} is NaN for every subject: {why}"
        )
    return da


def _scaled(regimen: Regimen, factor: float, *, check: bool = False) -> Regimen:
    """``regimen`` with every dose amount multiplied by ``factor`` (> 0). With
    ``check``, each distinct scaled dose gets a user-built Dose's plausibility
    check (a ValidityWarning above 2000 mg or 20 mg/kg, per hour for infusions):
    for the doses returned or simulated at the user's request, not for the trial
    factors of a root search."""
    out = []
    for d in regimen.doses:
        new = object.__new__(Dose)
        new.__dict__.update(d.__dict__, amount=d.amount * factor)
        if not math.isfinite(new.amount):
            raise DoseError(
                f"scaling {d!r} by {factor:g} gives a non-finite amount; the "
                f"target is out of reach"
            )
        out.append(new)
    if check:
        for amount, unit, duration in dict.fromkeys(
            (d.amount, d.unit, d.duration) for d in out
        ):
            check_plausible(amount, unit, duration)
    return Regimen(out)


def _as_regimen(regimen) -> Regimen:
    if isinstance(regimen, Dose):
        regimen = Regimen([regimen])
    if not isinstance(regimen, Regimen):
        raise TypeError(
            f"regimen must be a Regimen or a Dose; got {type(regimen).__name__}"
        )
    if not regimen.doses:
        raise ValueError("regimen has no doses: there is no dose to find")
    if not any(d.amount > 0 for d in regimen.doses):
        raise ValueError(
            "every dose of the regimen is 0: scaling cannot reach a target; give "
            "the doses their intended proportions (e.g. 1 mg/kg each)"
        )
    return regimen


def _linear_in_dose(model: Model) -> bool:
    """Every flow first order: the amounts, hence Cmax, AUC and trough, are
    proportional to the doses (superposition). A user rhs may be anything."""
    return model.rhs is None


# ---------------------------------------------------------------------------------
# find_dose


@dataclass(frozen=True)
class DoseFinding:
    """The result of :func:`find_dose`.

    Attributes
    ----------
    dose : Dose
        The regimen's first dose at the dose found (mg or mg/kg, as given).
    regimen : Regimen
        Every dose scaled by ``factor``.
    factor : float
        Multiplier applied to the regimen as given (dimensionless).
    achieved : float
        The statistic at the dose found (``units``; a probability for ``"pta"``).
    units : str
    target : Target
    method : str
        ``"linear scaling"`` or ``"brentq"``.
    evaluations : int
        Population simulations run.
    """

    dose: Dose
    regimen: Regimen
    factor: float
    achieved: float
    units: str
    target: Target
    method: str
    evaluations: int

    def __repr__(self) -> str:
        return (
            f"DoseFinding({self.dose._amount_text()} per dose ({self.factor:.6g} x "
            f"the regimen given): {self.target!r} achieved {self.achieved:.6g}"
            f"{'' if self.units == '1' else ' ' + self.units}; "  # '1': a probability
            f"{self.method}, {self.evaluations} simulation"
            f"{'s' if self.evaluations != 1 else ''})"
        )


def find_dose(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    target: Target,
    *,
    population: Population | None = None,
    subjects: Subjects | None = None,
    times=None,
    solver=None,
    method: str = "auto",
    rtol: float = 1e-6,
    bracket: tuple[float, float] | None = None,
) -> DoseFinding:
    """The dose at which a population statistic of an exposure metric equals a
    target.

    Every dose of ``regimen`` is multiplied by one factor (its proportions are
    kept, so a loading dose stays twice the maintenance dose); the first dose at
    that factor is the answer, in its own unit (mg flat, or mg/kg of the weight it
    names). For a target on a statistic that increases with dose, the dose found
    is the largest meeting ``<=`` and the smallest meeting ``>=``: "P95 Cmax
    <= 300 ng/mL" is ``Target("cmax", "300 ng/mL", statistic="p95")``, "P(Cmax >=
    100 ng/mL) >= 90 %" is ``Target("cmax", 0.9, statistic="pta",
    threshold="100 ng/mL")``.

    Parameters
    ----------
    model : Model, str or Path
    regimen : Regimen or Dose
        The regimen to scale; its amounts set the proportions and the unit.
    target : Target
    population, subjects, times, solver
        As for :func:`ketasim.simulate`; the same patients are used at every
        evaluation (one Population, one seed).
    method : {"auto", "linear", "search"}
        ``"linear"`` (the default for models without a user rhs, which are linear
        in dose): one simulation at the regimen as given, then exact scaling:
        a mean or percentile scales with the factor, and the probability of
        attainment is an order statistic of threshold / metric over subjects.
        ``"search"``: ``scipy.optimize.brentq`` on the factor, one simulation per
        evaluation (the default for a user rhs; refused as ``"linear"``).
    rtol : float
        Relative tolerance on the factor for ``"search"``, in (0, 0.1].
    bracket : (low, high), optional
        Initial factors for ``"search"`` (default (0.5, 2), widened x4 at a time,
        up to 1e-6..1e6, until the target lies between them).

    Returns
    -------
    DoseFinding

    Examples
    --------
    >>> import ketasim as ks
    >>> dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    >>> found = ks.find_dose("domino", dose, ks.Target("cmax", "150 ng/mL"),
    ...                      times=ks.grid("2 h", "1 min"))
    >>> print(found.dose)
    Dose(0.31207 mg/kg iv at 0 h over 0.6667 h)
    """
    model = load_model(model)
    regimen = _as_regimen(regimen)
    if not isinstance(target, Target):
        raise TypeError(
            f"target must be a ks.Target(metric, value, ...); got "
            f"{type(target).__name__}"
        )
    if target.molar:  # "0.63 umol/L": by the targeted analyte's molecular weight
        name = target.analyte or model.analytes[0].name
        hit = [a for a in model.analytes if a.name == name]
        if not hit:
            raise ValueError(
                f"analyte {name!r} is not one of model {model.id!r}'s analytes "
                f"{[a.name for a in model.analytes]}"
            )
        target = target.in_ng_per_ml(hit[0].mw)
    if method not in ("auto", "linear", "search"):
        raise ValueError(f"method must be 'auto', 'linear' or 'search'; got {method!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
        raise TypeError(f"rtol must be a number; got {rtol!r}")
    if not 0.0 < rtol <= 0.1:
        raise ValueError(f"rtol must be in (0, 0.1]; got {rtol!r}")
    linear = _linear_in_dose(model)
    if method == "linear" and not linear:
        raise ValueError(
            f"method='linear' needs a model linear in dose; model {model.id!r} has "
            f"a user rhs, which may not be (Michaelis-Menten elimination is not). "
            f"Use method='search' (or 'auto')"
        )
    if method == "auto":
        method = "linear" if linear else "search"
    if bracket is not None:
        _bracket(bracket)
        if method == "linear":
            raise ValueError(
                "bracket= is for the root search (method='search'); linear scaling "
                "needs none: leave it out, or pass method='search'"
            )
    run = dict(population=population, subjects=subjects, times=times, solver=solver)
    if method == "linear":
        return _find_linear(model, regimen, target, run)
    return _find_search(model, regimen, target, run, rtol, bracket)


def _find_linear(model, regimen, target, run) -> DoseFinding:
    da = _subject_metric(model, regimen, target, **run)
    m = np.asarray(da.values, dtype=float)
    m = m[np.isfinite(m)]
    stat = _check_statistic(target.statistic)
    if stat == "pta":
        factor = _pta_factor(m, target)
    else:
        base = _statistic(m, target)
        if not base > 0:
            raise ValueError(
                f"the {target.statistic} {target.metric} is {base:g} "
                f"{target.units} at the regimen given, so no multiple of it reaches "
                f"{target.level:g} {target.units}; check the window and analyte"
            )
        factor = target.level / base
    achieved = (
        _statistic(m * factor, target) if stat != "pta" else _pta(m * factor, target)
    )
    return _finding(regimen, factor, achieved, target, "linear scaling", 1)


def _pta(values: np.ndarray, target: Target) -> float:
    hit = values >= target.level if target.above else values <= target.level
    return float(hit.mean())


def _pta_factor(m: np.ndarray, target: Target) -> float:
    """The smallest factor s (``above``) with P(s m >= level) >= p, or the
    largest (not ``above``) with P(s m <= level) >= p: subject i attains from
    (above) or up to (below) s_i = level / m_i, so s is the k-th smallest (or
    largest) s_i, k = ceil(p n)."""
    p = _probability(target.value)
    n = m.size
    k = math.ceil(p * n - 1e-9)
    with np.errstate(divide="ignore"):
        s = np.where(m > 0, target.level / np.where(m > 0, m, 1.0), np.inf)
    if target.level == 0:
        raise ValueError("threshold must be > 0 for a dose to be found")
    s = np.sort(s) if target.above else np.sort(s)[::-1]
    factor = float(s[k - 1])
    if not math.isfinite(factor):
        raise ValueError(
            f"no dose reaches {target!r}: {int(np.sum(m <= 0))} of {n} subjects "
            f"have a {target.metric} of 0 at every dose"
        )
    # s_i m_i may round just below (above) the level: step one part in 1e15 to
    # the attaining side, so the dose returned attains it
    factor *= 1.0 + 4e-15 if target.above else 1.0 - 4e-15
    return factor


def _find_search(model, regimen, target, run, rtol, bracket) -> DoseFinding:
    """A bracket on the factor, widened until the target lies inside, then
    ``scipy.optimize.brentq`` (a continuous statistic) or bisection (the
    probability of attainment, a step function of the factor)."""
    from scipy.optimize import brentq

    pta = _check_statistic(target.statistic) == "pta"
    want = _probability(target.value) if pta else target.level
    cache: dict[float, float] = {}

    def stat(s: float) -> float:
        if s not in cache:
            da = _subject_metric(model, _scaled(regimen, s), target, **run)
            v = np.asarray(da.values, dtype=float)
            v = v[np.isfinite(v)]
            cache[s] = _pta(v, target) if pta else _statistic(v, target)
        return cache[s]

    # ok(s): the target is met at s; monotone: increasing in s except for a
    # "pta below" target (fewer subjects stay under a level at a larger dose)
    rising = not pta or target.above

    def ok(s: float) -> bool:
        return stat(s) >= want if rising else stat(s) < want

    lo, hi = (0.5, 2.0) if bracket is None else _bracket(bracket)
    while ok(lo) or not ok(hi):
        if ok(lo):
            lo /= 4.0
        if not ok(hi):
            hi *= 4.0
        if lo < 1e-6 or hi > 1e6:
            raise ValueError(
                f"{target!r} is not reached for any dose between 1e-6 and 1e6 "
                f"times the regimen given (statistic {cache[min(cache)]:.4g} at "
                f"the smallest, {cache[max(cache)]:.4g} at the largest factor "
                f"tried); check the target and its units"
            )
    if not pta:
        root = brentq(lambda s: stat(s) - want, lo, hi, xtol=1e-300, rtol=rtol)
    else:
        while hi - lo > rtol * hi:  # bisection: ok(hi), not ok(lo)
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        # above: the smallest factor that attains; below: the largest that keeps
        # P(metric <= level) >= p, just under the step
        root = hi if target.above else lo
    return _finding(regimen, root, stat(root), target, "brentq", len(cache))


def _bracket(bracket) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in bracket)
    except (TypeError, ValueError):
        raise TypeError(
            f"bracket must be (low, high) factors such as (0.5, 2); got {bracket!r}"
        ) from None
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(
            f"bracket must be (low, high) factors with 0 < low < high; got {bracket!r}"
        )
    return lo, hi


def _finding(regimen, factor, achieved, target, method, n) -> DoseFinding:
    scaled = _scaled(regimen, factor, check=True)
    units = "1" if target.statistic == "pta" else target.units
    return DoseFinding(
        scaled.doses[0], scaled, float(factor), achieved, units, target, method, n
    )


# ---------------------------------------------------------------------------------
# target-controlled infusion


@dataclass(frozen=True)
class TCIPlan:
    """A target-controlled infusion plan for one subject (:func:`tci`).

    Attributes
    ----------
    regimen : Regimen
        The infusion steps (mg/h over each control step; steps at rate 0 are
        left out), route ``iv``.
    rates : xarray.DataArray
        Rate per control step (``step`` starts, h), mg/h.
    predicted : xarray.DataArray
        The designed subject's level at each step end (time, h), ng/mL, at the
        ``site``.
    target : float
        ng/mL.
    site : {"plasma", "effect"}
    ke0 : float or None
        1/h (effect site): the argument, or the designed subject's from the
        model (``ke0_source``).
    step : float
        Control step, h.
    reached : float
        First step end (h) at which the designed level is within 1 % of the
        target.
    """

    regimen: Regimen
    rates: xr.DataArray
    predicted: xr.DataArray
    target: float
    site: str
    ke0: float | None
    step: float
    reached: float
    model_id: str
    analyte: str
    route: str = "iv"
    subject: dict = field(default_factory=dict, repr=False)
    #: "argument" (ke0 given to tci) or "model" (the model's effect site); None
    #: for a plasma plan
    ke0_source: str | None = None

    def __repr__(self) -> str:
        return (
            f"TCIPlan({self.site} target {self.target:g} ng/mL of {self.analyte}, "
            f"{self.rates.size} steps of {self.step * 3600:g} s, "
            f"{len(self.regimen)} infusions, "
            f"{float(self.rates.sum()) * self.step:.4g} mg in all, "
            + (
                f"target reached at {self.reached * 60:.3g} min)"
                if math.isfinite(self.reached)
                else "target not reached)"
            )
        )


def _rate_constant(value, what: str) -> float:
    """A first-order rate constant in 1/h (``"0.5 1/min"``, ``(0.5, "1/min")``)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        raise ValueError(
            f"{what} needs its unit: write e.g. '{value} 1/min' or ({value}, '1/h')"
        )
    q = parse_quantity(value, what=what)
    u = parse_unit(q.unit)
    if u.dimension != "rate constant":
        raise ValueError(
            f"{what} must be a rate constant such as '0.5 1/min'; got {value!r}"
        )
    k = q.value * u.factor
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"{what} must be finite and > 0; got {value!r}")
    return float(k)


def _one_subject(model, subjects):
    """Covariates and individual parameters of exactly one subject."""
    from ._subjects import subject_table

    if subjects is None:
        subjects = Subjects()
    if not isinstance(subjects, Subjects):
        raise TypeError(
            f"subjects must be ks.Subjects(covariates=..., parameters=...) for one "
            f"subject; got {type(subjects).__name__}"
        )
    n, cov, over = subject_table(model, subjects.covariates, subjects.parameters)
    if n != 1:
        raise ValueError(
            f"a TCI plan is designed for one subject; subjects= describes {n}. "
            f"Design it for one, then use tci_performance for a population"
        )
    return cov, model.individual_parameters(cov, overrides=over, n=1)


def _system(model, params, cov, n, route, analyte, site, ke0, step):
    """Per subject: the step propagator E (S, m, m), the input response G (S, m)
    of 1 mg/h over one step, and the output row c (S, m) (ng/mL per state), of the
    model's compartments plus, for the effect site, Ce (ng/mL)."""
    from ._kernels.expm import EXPM_WORK, expm_into
    from ._lower import lower

    unit_dose = Dose.infusion("1 mg", duration=step, route=route)
    params = params[0] if isinstance(params, list) else params
    low = lower(model, Regimen([unit_dose]), params, cov["weight"], n, covariates=cov)
    names = [a.name for a in model.analytes]
    if analyte not in names:
        raise ValueError(
            f"analyte {analyte!r} is not one of model {model.id!r}'s analytes {names}"
        )
    k = names.index(analyte)
    A = low.A[:, 0]  # one occasion: a plan is one session
    S, nc = A.shape[0], A.shape[1]
    b = np.zeros((S, nc))
    start = (low.ev_kind == 1) & (low.ev_time == 0.0) & (low.ev_value > 0)
    for s in range(S):
        np.add.at(b[s], low.ev_cmt[s][start[s]], low.ev_value[s][start[s]] * step)
    m = nc + (site == "effect")
    Aa = np.zeros((S, m, m))
    Aa[:, :nc, :nc] = A
    c = np.zeros((S, m))
    scale = low.obs_scale[:, k]
    obs = low.obs_cmt[k]
    if site == "effect":
        ke = np.broadcast_to(np.asarray(ke0, dtype=float), (S,))
        Aa[:, nc, obs] = ke * scale  # dCe/dt = ke0 (scale x_obs - Ce)
        Aa[:, nc, nc] = -ke
        c[:, nc] = 1.0
    else:
        c[:, obs] = scale
    E = np.empty((S, m, m))
    G = np.empty((S, m))
    # ketasim's numba expm (Higham 2005), as the exact solver uses: scipy's expm
    # spent ~25 ms of wall time per call in BLAS threads on a loaded 2-core machine
    M = np.zeros((m + 1, m + 1))
    X = np.empty((m + 1, m + 1))
    work = np.empty((EXPM_WORK, m + 1, m + 1))
    for s in range(S):
        M[:m, :m] = Aa[s] * step
        M[:nc, m] = b[s] * step  # [[A h, b h], [0, 0]]: G = int_0^h e^(A t) b dt
        if not expm_into(M, X, work):
            raise ValueError(
                f"model {model.id!r}: the matrix exponential of subject {s}'s rate "
                f"matrix over one control step is not finite; check its parameters"
            )
        E[s], G[s] = X[:m, :m], X[:m, m]
    return E, G, c


def _model_ke0(model, params, analyte: str, n: int):
    """ke0 (1/h) per subject from the model: its effect site of ``analyte`` (a
    ke0 parameter, or a half-life, ke0 = ln 2 / t½), or a parameter named ``ke0``;
    None when the model has neither."""
    sites = [s for s in getattr(model, "effect_sites", ()) if s.analyte == analyte]
    if len(sites) > 1:
        raise ValueError(
            f"model {model.id!r} has {len(sites)} effect sites of {analyte!r} "
            f"({', '.join(s.name for s in sites)}) with different ke0: pass the "
            f"one to target as ke0=(value, unit)"
        )
    if sites:
        v = np.broadcast_to(np.asarray(params[sites[0].parameter], float), (n,))
        return v.copy() if sites[0].kind == "ke0" else math.log(2.0) / v
    if "ke0" in model.parameters:
        return np.broadcast_to(np.asarray(params["ke0"], float), (n,)).copy()
    return None


def _effect_ke0(model, params, ke0, site, analyte):
    """The design ke0 (1/h) and where it came from ("argument" or "model")."""
    if site != "effect":
        if ke0 is not None:
            raise ValueError(
                "ke0= is for site='effect'; a plasma target does not use it"
            )
        return None, None
    if ke0 is not None:
        return _rate_constant(ke0, "ke0"), "argument"
    k = _model_ke0(model, params, analyte, 1)
    if k is not None:
        return k, "model"
    raise ValueError(
        f"an effect-site target needs ke0 (the plasma-effect-site equilibration "
        f"rate constant): model {model.id!r} has none; pass ke0='0.5 1/min' "
        f"(with its source)"
    )


def tci(
    model: Model | str | Path,
    target: float | str,
    *,
    duration: float | str = "40 min",
    step: float | str = "10 s",
    subjects: Subjects | None = None,
    site: str = "plasma",
    ke0=None,
    analyte: str | None = None,
    max_rate=None,
    horizon: float | str | None = None,
) -> TCIPlan:
    """A target-controlled infusion plan: the rate of each control step that
    brings one subject's plasma or effect-site concentration to ``target`` and
    holds it.

    Each step's rate is the largest (>= 0, <= ``max_rate``) for which the level,
    predicted exactly (matrix exponential) for that step at that rate and
    nothing after it, stays at or below the target at every step end within
    ``horizon``: a plasma target (horizon one step) is reached at the end of the
    first step and held (Bailey and Shafer 1991; STANPUMP); an effect-site target
    gets the infusion whose effect-site peak equals the target, then nothing
    until the level would fall below it (Shafer and Gregg 1992). Rate 0 when the
    level is above target (drug cannot be removed).

    Parameters
    ----------
    model : Model, str or Path
        A model linear in dose (no user rhs) with an intravenous route ``iv``.
    target : float or str
        ng/mL, or a string with a unit (``"150 ng/mL"``, ``"0.6 umol/L"``).
    duration : float or str
        Length of the plan (h, or ``"40 min"``).
    step : float or str
        Control step (h, or ``"10 s"``); ``duration`` must hold a whole number.
    subjects : Subjects, optional
        One subject's covariates and parameters (default: the model's reference
        patient with typical parameters).
    site : {"plasma", "effect"}
    ke0 : str or (float, str), optional
        Effect-site equilibration rate constant with its unit (``"0.5 1/min"``);
        default the model's: its effect site of ``analyte`` (a ke0 or an
        equilibration half-life) or a parameter named ``ke0``.
    analyte : str, optional
        The analyte targeted (default: the model's first, the parent drug).
    max_rate : str or (float, str), optional
        Pump limit, mg/h (``"1200 mg/h"``); None: no limit. If the limit keeps
        the level from coming within 1 % of the target by the end of the plan,
        the plan is still returned (``reached`` is NaN) with a ValidityWarning
        naming the level reached.
    horizon : float or str, optional
        How far ahead (h) a step's rate is checked against overshoot; default one
        step for plasma, 5 / ke0 (at most ``duration``) for the effect site.

    Returns
    -------
    TCIPlan

    References
    ----------
    Bailey JM, Shafer SL. A simple analytical solution to the three-compartment
    pharmacokinetic model suitable for computer-controlled infusion pumps. IEEE
    Trans Biomed Eng 1991;38:522-525. Shafer SL, Gregg KM. Algorithms to rapidly
    achieve and maintain stable drug concentrations at the site of drug effect
    with a computer-controlled infusion pump. J Pharmacokinet Biopharm
    1992;20:147-169.

    Examples
    --------
    >>> import ketasim as ks
    >>> plan = ks.tci("clements_nimmo_1981", "150 ng/mL", duration="40 min")
    >>> round(float(plan.predicted[-1]), 6)
    150.0
    """
    model = load_model(model)
    if model.rhs is not None:
        raise ValueError(
            f"tci needs a model linear in dose; model {model.id!r} has a user rhs"
        )
    if not model.linear_time_invariant:
        raise ValueError(
            f"tci needs a time-invariant model; model {model.id!r} has time effects"
        )
    if site not in ("plasma", "effect"):
        raise ValueError(f"site must be 'plasma' or 'effect'; got {site!r}")
    analyte = analyte or model.analytes[0].name
    mws = [a.mw for a in model.analytes if a.name == analyte]
    if not mws:
        raise ValueError(
            f"analyte {analyte!r} is not one of model {model.id!r}'s analytes "
            f"{[a.name for a in model.analytes]}"
        )
    # a molar target ("0.6 umol/L") converts by the targeted analyte's MW
    level = to_ng_per_ml(target, what="target", mw=mws[0])
    if not (math.isfinite(level) and level > 0):
        raise ValueError(f"target must be a level > 0 ng/mL; got {target!r}")
    h = to_hours(step, what="step")
    T = to_hours(duration, what="duration")
    if not h > 0 or not T > 0:
        raise ValueError(f"step and duration must be > 0; got {step!r}, {duration!r}")
    n_steps = round(T / h)
    if n_steps < 1 or abs(n_steps * h - T) > 1e-9 * T:
        raise ValueError(
            f"duration ({T * 60:g} min) must be a whole number of steps "
            f"({h * 3600:g} s); got {T / h:.6g} steps"
        )
    if n_steps > 100_000:
        raise ValueError(
            f"{n_steps} control steps is too many (at most 100000); use a longer step"
        )
    rmax = math.inf
    if max_rate is not None:
        q = parse_quantity(max_rate, what="max_rate")
        u = parse_unit(q.unit)
        if u.dimension != "amount rate" or u.per_kg:
            raise ValueError(
                f"max_rate must be an amount per time such as '1200 mg/h'; got "
                f"{max_rate!r}"
            )
        rmax = q.value * u.factor
        if not rmax > 0:
            raise ValueError(f"max_rate must be > 0; got {max_rate!r}")
    if "iv" not in model.routes:
        raise ValueError(f"model {model.id!r} has no 'iv' route for an infusion")
    cov, params = _one_subject(model, subjects)
    k0, k0_source = _effect_ke0(model, params, ke0, site, analyte)
    if horizon is None:
        H = h if site == "plasma" else min(T, 5.0 / float(np.max(k0)))
    else:
        H = to_hours(horizon, what="horizon")
        if not H > 0:
            raise ValueError(f"horizon must be > 0; got {horizon!r}")
    J = max(1, round(H / h))
    E, G, c = _system(model, params, cov, 1, "iv", analyte, site, k0, h)
    rates, pred = _design(E[0], G[0], c[0], level, n_steps, J, rmax)
    plan = _plan(model, rates, pred, level, site, k0, h, analyte, cov)
    _check_plan_plausible(rates, h)
    if not math.isfinite(plan.reached):
        # a pump limit is a real constraint, so the plan (the best the pump can
        # do) is returned, with a warning rather than an error
        from ._warn import ValidityWarning, stacklevel

        warnings.warn(
            f"the {site} target {level:g} ng/mL is not reached within the plan "
            f"({T * 60:g} min) at max_rate {rmax:g} mg/h: the predicted {site} "
            f"level at the end is {float(pred[-1]):.4g} ng/mL; raise max_rate or "
            f"lengthen duration (plan.reached is NaN)",
            ValidityWarning,
            stacklevel=stacklevel(),
        )
    return replace(plan, ke0_source=k0_source)


def _check_plan_plausible(rates: np.ndarray, h: float) -> None:
    """A TCI plan (``rates`` mg/h per control step of ``h`` h) is one infusion of
    varying rate: it gets a user-built infusion's plausibility check on the most
    it gives within any hour (the whole plan when shorter than an hour), a
    ValidityWarning above 2000 mg per hour."""
    n = rates.size
    total_h = n * h
    cum = np.concatenate([[0.0], np.cumsum(rates * h)])  # mg given by each step edge
    if total_h <= 1.0 + 1e-9:
        worst = float(cum[-1])
        what = f"{worst:g} mg over the whole TCI plan ({total_h * 60:g} min)"
    else:
        # the dose given is piecewise linear in time, so the most within a 1-h
        # window [t, t + 1] is reached with t or t + 1 on a step edge (steps need
        # not divide an hour: 40-min steps give 40 + 20 min windows)
        edges = np.arange(n + 1) * h
        t = np.unique(np.clip(np.concatenate([edges, edges - 1.0]), 0, total_h - 1))
        given = np.interp(t + 1.0, edges, cum) - np.interp(t, edges, cum)
        k = int(np.flatnonzero(given >= given.max() * (1 - 1e-12))[0])  # earliest
        worst = float(given[k])
        what = f"{worst:g} mg within one hour of the TCI plan (from {t[k] * 60:g} min)"
    check_plausible(worst, "mg", min(total_h, 1.0), what=what)


def _design(E, G, c, level, n_steps, J, rmax):
    """Step rates (mg/h) and the predicted level at each step end. Precomputed:
    Phi[j] = c E^(j+1) (the free response j+1 steps ahead) and u[j] = c E^j G (the
    response to 1 mg/h over the current step only)."""
    m = E.shape[0]
    Phi = np.empty((J, m))
    u = np.empty(J)
    P = E.copy()
    g = G.copy()
    for j in range(J):
        Phi[j] = c @ P
        u[j] = c @ g
        P = E @ P
        g = E @ g
    pos = u > 1e-300 * max(1.0, float(np.abs(u).max()))
    Phi, u = Phi[pos], u[pos]
    x = np.zeros(m)
    rates = np.empty(n_steps)
    pred = np.empty(n_steps)
    for k in range(n_steps):
        r = float(np.min((level - Phi @ x) / u))
        r = min(max(r, 0.0), rmax)
        x = E @ x + G * r
        rates[k] = r
        pred[k] = c @ x
    return rates, pred


def _plan(model, rates, pred, level, site, k0, h, analyte, cov) -> TCIPlan:
    n = rates.size
    starts = np.arange(n) * h
    # one validated step, copied per rate (Dose._at's way): building 240 Doses
    # through their parsers took 80 ms of a 100 ms plan
    template = Dose.infusion("1 mg", duration=h)
    doses = []
    for t, r in zip(starts, rates, strict=True):
        if r > 0:
            d = object.__new__(Dose)
            d.__dict__.update(template.__dict__, amount=float(r) * h, time=float(t))
            doses.append(d)
    ok = np.flatnonzero(np.abs(pred - level) <= 0.01 * level)
    reached = float((ok[0] + 1) * h) if ok.size else math.nan
    return TCIPlan(
        Regimen(doses),
        xr.DataArray(
            rates,
            dims="step",
            coords={"step": ("step", starts, {"units": "h"})},
            attrs={"units": "mg/h", "long_name": "infusion rate per control step"},
        ),
        xr.DataArray(
            pred,
            dims="time",
            coords={"time": ("time", starts + h, {"units": "h"})},
            attrs={
                "units": "ng/mL",
                "long_name": f"predicted {site} {analyte} at step ends",
            },
        ),
        float(level),
        site,
        None if k0 is None else float(np.ravel(k0)[0]),
        float(h),
        reached,
        model.id,
        analyte,
        subject={k: float(np.ravel(v)[0]) for k, v in cov.items()},
    )


def tci_performance(
    model: Model | str | Path,
    plan: TCIPlan,
    population: Population,
    *,
    window: tuple | None = None,
) -> xr.Dataset:
    """How a TCI plan designed for one subject performs across a population.

    The plan's infusions are given to every patient; the level at the plan's
    site (plasma, or the effect site with the plan's ``ke0``, or each patient's
    own when the model has a ``ke0`` parameter) is computed exactly at every step
    end. Performance error PE = 100 (level - target) / target (%); per patient
    MDPE = median PE and MDAPE = median |PE| over the times in ``window``
    (Varvel et al. 1992), and their population medians.

    Parameters
    ----------
    model : Model, str or Path
        The model the plan was designed with (or another, to test robustness).
    plan : TCIPlan
    population : Population
    window : (start, end), optional
        Times (h or strings) over which MDPE and MDAPE are taken; default from
        ``plan.reached`` to the end of the plan.

    Returns
    -------
    xarray.Dataset
        ``level`` (subject, time) ng/mL; ``level_median``, ``level_p5``,
        ``level_p95`` (time) ng/mL; ``pe`` (subject, time) %; ``mdpe``,
        ``mdape`` (subject) %;
        ``mdpe_population``, ``mdape_population`` (scalars) %.

    References
    ----------
    Varvel JR, Donoho DL, Shafer SL. Measuring the predictive performance of
    computer-controlled infusion pumps. J Pharmacokinet Biopharm 1992;20:63-94.
    """
    from ._subjects import check_iiv, draw_subjects

    model = load_model(model)
    if not isinstance(plan, TCIPlan):
        raise TypeError(f"plan must be a TCIPlan (ks.tci); got {type(plan).__name__}")
    if not isinstance(population, Population):
        raise TypeError(
            f"population must be a ks.Population; got {type(population).__name__}"
        )
    check_iiv(model, population)  # as simulate: iiv=True needs the model's IIV
    h, n_steps = plan.step, plan.rates.size
    t = np.arange(n_steps + 1) * h
    # the plan's steps are one dosing session: draw the patients for its first
    # step alone (each step of plan.regimen would otherwise be an occasion of
    # its own, with an inter-occasion draw each)
    n, cov, params = draw_subjects(
        model,
        Regimen(plan.regimen.doses[:1]),
        t,
        population,
        Subjects(),
        Trajectories(),
        "exact",
    )
    first = params[0] if isinstance(params, list) else params
    # a ke0 the model gives is each patient's own (it may vary between them);
    # one given to tci() is the same for all
    k0 = (
        _model_ke0(model, first, plan.analyte, n)
        if plan.site == "effect" and plan.ke0_source == "model"
        else plan.ke0
    )
    E, G, c = _system(model, first, cov, n, "iv", plan.analyte, plan.site, k0, h)
    level = np.zeros((n, n_steps + 1))
    x = np.zeros(G.shape)
    for k, r in enumerate(plan.rates.values):
        x = np.einsum("sij,sj->si", E, x) + G * r
        level[:, k + 1] = np.einsum("si,si->s", c, x)
    lo, hi = (
        (plan.reached, t[-1])
        if window is None
        else tuple(to_hours(w, what="window") for w in window)
    )
    if not (math.isfinite(lo) and lo <= hi):
        raise ValueError(
            f"window must be (start, end) with start <= end within the plan; got "
            f"{window!r} (the plan reached its target at {plan.reached!r} h)"
        )
    sel = (t >= lo - 1e-12) & (t <= hi + 1e-12)
    if not sel.any():
        raise ValueError(f"window {window!r} holds no step end of the plan")
    pe = 100.0 * (level - plan.target) / plan.target
    mdpe = np.median(pe[:, sel], axis=1)
    mdape = np.median(np.abs(pe[:, sel]), axis=1)
    pct = {"units": "%"}
    conc = {"units": "ng/mL"}
    return xr.Dataset(
        {
            "level": (
                ("subject", "time"),
                level,
                {**conc, "long_name": f"{plan.site} {plan.analyte}"},
            ),
            "level_median": ("time", np.median(level, axis=0), conc),
            "level_p5": ("time", np.percentile(level, 5, axis=0), conc),
            "level_p95": ("time", np.percentile(level, 95, axis=0), conc),
            "pe": (("subject", "time"), pe, {**pct, "long_name": "performance error"}),
            "mdpe": ("subject", mdpe, {**pct, "long_name": "median PE in window"}),
            "mdape": (
                "subject",
                mdape,
                {**pct, "long_name": "median absolute PE in window"},
            ),
            "mdpe_population": ((), float(np.median(mdpe)), pct),
            "mdape_population": ((), float(np.median(mdape)), pct),
        },
        coords={
            "subject": population.subjects,
            "time": ("time", t, {"units": "h"}),
            **{
                k: ("subject", np.asarray(v), {"units": KNOWN_COVARIATES[k]})
                if k in KNOWN_COVARIATES
                else ("subject", np.asarray(v))
                for k, v in cov.items()
            },
        },
        attrs={
            "target": plan.target,
            "target_units": "ng/mL",
            "site": plan.site,
            "window_h": (float(lo), float(hi)),
            "model_id": model.id,
        },
    )


# ---------------------------------------------------------------------------------
# sensitivity


@dataclass(frozen=True)
class _Readout:
    metric: str
    per: str
    window: int
    analyte: str | None
    statistic: str


def _readout(metric, per, window, analyte, statistic) -> _Readout:
    _check_readout(metric, per, window)
    if _check_statistic(statistic) == "pta":
        raise ValueError(
            "statistic='pta' is a step function of the parameters (no derivative); "
            "use 'median', 'mean' or a percentile"
        )
    return _Readout(metric, per, window, analyte, statistic)


def _base_parameters(model, regimen, population, subjects, times, solver):
    """One run's individual parameters (subject, parameter) and their units; the
    overrides every later run starts from (same patients)."""
    from .simulate import simulate

    ds = simulate(
        model,
        regimen,
        times=times,
        population=population,
        subjects=subjects,
        solver=solver,
        progress=False,
    )
    if "occasion" in ds.parameters.dims:
        raise ValueError(
            "sensitivities of a population with inter-occasion variability are not "
            "implemented (a parameter differs per session); use "
            "Population(..., iov=False)"
        )
    return ds


def _with_parameters(subjects, population, values: dict) -> Subjects:
    cov = None if subjects is None or population is not None else subjects.covariates
    return Subjects(covariates=cov, parameters=values)


def _run_stat(model, regimen, ro, population, subjects, times, solver, params):
    """Per-subject metric and its population statistic, with ``params``
    (name -> (values, unit)) replacing the individual parameters."""
    da = _subject_metric(
        model,
        regimen,
        ro,
        population=population,
        subjects=_with_parameters(subjects, population, params),
        times=times,
        solver=solver,
    )
    v = np.asarray(da.values, dtype=float)
    return v, _stat_of(v, ro.statistic), da.attrs.get("units", "")


def _stat_of(v, statistic) -> float:
    s = _check_statistic(statistic)
    f = v[np.isfinite(v)]
    return float(f.mean()) if s == "mean" else float(np.quantile(f, s / 100.0))


def _parameter_names(model, ds, parameters) -> list[str]:
    names = [str(p) for p in ds.parameter.values]
    if parameters is None:
        return names
    if isinstance(parameters, str):
        parameters = [parameters]
    out = list(parameters)
    if not out:
        raise ValueError(
            f"parameters must name at least one parameter; got {parameters!r}. "
            f"Model {model.id!r} has: {', '.join(names)} (or pass None for all)"
        )
    for p in out:
        if p not in names:
            raise ValueError(
                f"{p!r} is not a parameter of model {model.id!r}; its parameters: "
                f"{', '.join(names)}"
            )
    return out


def elasticities(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    parameters=None,
    metric: str = "cmax",
    per: str = "session",
    window: int = 0,
    analyte: str | None = None,
    statistic: str = "median",
    population: Population | None = None,
    subjects: Subjects | None = None,
    times=None,
    rel_step: float = 1e-4,
) -> xr.Dataset:
    """Elasticities d ln(metric) / d ln(parameter), per subject and of the
    population statistic.

    Each parameter is multiplied by (1 + h) and (1 - h) in every subject (the
    other parameters at their individual values) and the central difference of
    the log metric taken: (ln M+ - ln M-) / (ln(1 + h) - ln(1 - h)), error O(h²).
    The exact solver is used (machine-precision metrics), so h = 1e-4 gives about
    8 significant digits. An elasticity of -1 means a 1 % rise in the parameter
    lowers the metric by 1 %.

    Parameters
    ----------
    model, regimen
        As for :func:`ketasim.simulate` (a model linear in dose).
    parameters : str or list of str, optional
        Default: every parameter of the model (those the regimen does not use
        have elasticity 0).
    metric, per, window, analyte
        The metric read, as in :class:`Target`.
    statistic : str
        The population statistic whose elasticity ``population`` reports.
    population, subjects, times
        As for :func:`ketasim.simulate` (without inter-occasion variability).
    rel_step : float
        h, in [1e-8, 0.1].

    Returns
    -------
    xarray.Dataset
        ``elasticity`` (subject, parameter) and ``population`` (parameter), units
        "1".
    """
    model = load_model(model)
    regimen = _as_regimen(regimen)
    ro = _readout(metric, per, window, analyte, statistic)
    if isinstance(rel_step, bool) or not isinstance(rel_step, numbers.Real):
        raise TypeError(f"rel_step must be a number; got {rel_step!r}")
    if not 1e-8 <= rel_step <= 0.1:
        raise ValueError(f"rel_step must be in [1e-8, 0.1]; got {rel_step!r}")
    if model.rhs is not None or not model.linear_time_invariant:
        raise ValueError(
            f"elasticities use the exact solver; model {model.id!r} needs the ODE "
            f"solver (a user rhs or time effects)"
        )
    solver = Exact()
    ds = _base_parameters(model, regimen, population, subjects, times, solver)
    names = _parameter_names(model, ds, parameters)
    units = {
        str(p): str(u)
        for p, u in zip(ds.parameter.values, ds.parameter_unit.values, strict=True)
    }
    base = {p: ds.parameters.sel(parameter=p).values for p in units}
    h = float(rel_step)
    denom = math.log1p(h) - math.log1p(-h)
    per_subject, pop = [], []
    for p in names:
        res = []
        for f in (1.0 + h, 1.0 - h):
            vals = {q: (base[q] * (f if q == p else 1.0), units[q]) for q in units}
            res.append(
                _run_stat(model, regimen, ro, population, subjects, times, solver, vals)
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            per_subject.append((np.log(res[0][0]) - np.log(res[1][0])) / denom)
            pop.append((math.log(res[0][1]) - math.log(res[1][1])) / denom)
    coords = {"parameter": names, "subject": ds.subject.values}
    what = f"{ro.per} {ro.window + 1} {ro.metric}"
    return xr.Dataset(
        {
            "elasticity": (
                ("subject", "parameter"),
                np.array(per_subject).T,
                {"units": "1", "long_name": f"d ln {what} / d ln parameter"},
            ),
            "population": (
                "parameter",
                np.array(pop),
                {
                    "units": "1",
                    "long_name": f"d ln {ro.statistic} {what} / d ln parameter",
                },
            ),
        },
        coords=coords,
        attrs={"rel_step": h, "model_id": model.id, "method": "central differences"},
    )


def sweep(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    name: str,
    values,
    *,
    relative: bool = False,
    per: str = "session",
    population: Population | None = None,
    subjects: Subjects | None = None,
    times=None,
    solver=None,
) -> xr.Dataset:
    """One-at-a-time sweep: the metrics of :func:`ketasim.metrics` with one
    parameter, or the dose, set to each of ``values``, along a new dimension
    named ``name``.

    Parameters
    ----------
    name : str
        A parameter of the model, or ``"dose"`` (every dose scaled so that the
        first is each value; its proportions kept).
    values : sequence
        Parameter values with units (``["60 L/h", "80 L/h"]``, or ``(array,
        "L/h")``), or doses (``["0.25 mg/kg", "0.5 mg/kg"]``, same per-kg-ness as
        the regimen). With ``relative=True``: plain factors (``[0.8, 1, 1.2]``)
        applied to each subject's own value (or dose).
    relative : bool
        Values are factors of each subject's individual value. Without it, a
        parameter value replaces every subject's (a population's variability in
        that parameter is then gone; use ``relative=True`` to keep it).

    Returns
    -------
    xarray.Dataset
        ``ks.metrics`` variables with a leading ``name`` dimension; its coordinate
        carries ``units`` (the value's, or "1" for factors).
    """
    from .simulate import simulate

    model = load_model(model)
    regimen = _as_regimen(regimen)
    if not isinstance(relative, bool):
        raise TypeError(f"relative must be True or False; got {relative!r}")
    if per not in PERS:
        raise ValueError(f"per must be one of {PERS}; got {per!r}")
    run = dict(times=times, population=population, solver=solver, progress=False)
    out, coord, unit = [], [], "1"
    if name == "dose":
        items = _factors(values) if relative else _doses(values, regimen)
        unit = "1" if relative else regimen.doses[0].unit
        for label, factor in items:
            scaled = _scaled(regimen, factor, check=True)
            ds = simulate(model, scaled, subjects=subjects, **run)
            out.append(_metrics(ds, per=per))
            coord.append(label)
    else:
        ds0 = _base_parameters(model, regimen, population, subjects, times, solver)
        names = [str(p) for p in ds0.parameter.values]
        if name not in names:
            raise ValueError(
                f"{name!r} is not a parameter of model {model.id!r} nor 'dose'; its "
                f"parameters: {', '.join(names)}"
            )
        base = ds0.parameters.sel(parameter=name).values
        if relative:
            items = [
                (f, (base * f, str(ds0.parameter_unit.sel(parameter=name).values)))
                for f, _ in _factors(values)
            ]
        else:
            read = _values(values, name, model.parameters[name].unit)
            unit = read[0][1]
            want = model.parameters[name].dimension
            if parse_unit(unit).dimension != want:
                raise ValueError(
                    f"values of {name!r} must be a {want} with its unit (as "
                    f"{model.parameters[name].unit!r}); got {unit!r}"
                )
            items = [(v, (np.full(base.shape, v), u)) for v, u in read]
        for label, vals in items:
            sub = _with_parameters(subjects, population, {name: vals})
            ds = simulate(model, regimen, subjects=sub, **run)
            out.append(_metrics(ds, per=per))
            coord.append(label)
    res = xr.concat(out, dim=name)
    return res.assign_coords({name: (name, np.asarray(coord, float), {"units": unit})})


def _factors(values) -> list[tuple[float, float]]:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(
            f"relative values must be finite factors > 0 such as [0.8, 1, 1.2]; "
            f"got {values!r}"
        )
    return [(float(v), float(v)) for v in arr]


def _doses(values, regimen) -> list[tuple[float, float]]:
    from .dosing import _amount

    if isinstance(values, str):
        values = [values]
    first = regimen.doses[0]
    if not first.amount > 0:
        raise ValueError("the regimen's first dose is 0: a dose sweep scales it")
    out = []
    for i, v in enumerate(values):
        amount, unit = _amount(v, f"values[{i}]")
        if unit != first.unit:
            raise ValueError(
                f"values[{i}] = {v!r} is {unit}, the regimen's first dose "
                f"{first.unit}; give doses in {first.unit}"
            )
        out.append((amount, amount / first.amount))
    if not out:
        raise ValueError("values is empty")
    return out


def _values(values, name, unit: str = "L/h") -> list[tuple[float, str]]:
    """Parameter values with units -> [(value, unit)], one unit for all (``unit``:
    the parameter's, for the message on a bare number)."""
    if isinstance(values, tuple) and len(values) == 2 and isinstance(values[1], str):
        arr = np.atleast_1d(np.asarray(values[0], dtype=float))
        values = [(float(v), values[1]) for v in arr]
    if isinstance(values, str):
        values = [values]
    out = []
    for i, v in enumerate(values):
        if isinstance(v, numbers.Real):  # 0.5 meant as a factor, or in which unit?
            raise UnitError(
                f"values[{i}] = {v!r} has no unit; give the values of {name!r} with "
                f"their unit (['{v:g} {unit}', ...] or (array, '{unit}')), or factors "
                f"of its typical value with relative=True"
            )
        q = parse_quantity(v, what=f"values[{i}]")
        if not (isinstance(q.value, numbers.Real) and math.isfinite(q.value)):
            raise ValueError(f"values[{i}] must be finite; got {v!r}")
        out.append((float(q.value), q.unit))
    if not out:
        raise ValueError("values is empty")
    units = {u for _, u in out}
    if len(units) > 1:
        raise ValueError(
            f"give every value of {name!r} in one unit (the coordinate has one); "
            f"got {sorted(units)}"
        )
    return out


def tornado(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    parameters=None,
    change: float = 0.2,
    metric: str = "cmax",
    per: str = "session",
    window: int = 0,
    analyte: str | None = None,
    statistic: str = "median",
    population: Population | None = None,
    subjects: Subjects | None = None,
    times=None,
) -> xr.DataArray:
    """The population statistic of a metric with each parameter lowered and
    raised by ``change`` (one at a time, in every subject), for a tornado plot.

    Returns
    -------
    xarray.DataArray
        (parameter, side) with side ``["low", "high"]`` (parameter × (1 -
        change), × (1 + change)), in the metric's units; parameters ordered by
        swing |high - low|, largest first; ``attrs["base"]`` the statistic with
        no change. Parameters with no effect (swing 0) are left out.
    """
    model = load_model(model)
    regimen = _as_regimen(regimen)
    ro = _readout(metric, per, window, analyte, statistic)
    if isinstance(change, bool) or not isinstance(change, numbers.Real):
        raise TypeError(f"change must be a number; got {change!r}")
    if not 0.0 < change < 1.0:
        raise ValueError(f"change must be in (0, 1) (0.2 = ±20 %); got {change!r}")
    solver = None
    ds = _base_parameters(model, regimen, population, subjects, times, solver)
    names = _parameter_names(model, ds, parameters)
    units = {
        str(p): str(u)
        for p, u in zip(ds.parameter.values, ds.parameter_unit.values, strict=True)
    }
    base = {p: ds.parameters.sel(parameter=p).values for p in units}
    every = {q: (base[q], units[q]) for q in units}
    _, mid, munits = _run_stat(
        model, regimen, ro, population, subjects, times, solver, every
    )
    rows = []
    for p in names:
        pair = []
        for f in (1.0 - change, 1.0 + change):
            vals = {**every, p: (base[p] * f, units[p])}
            pair.append(
                _run_stat(
                    model, regimen, ro, population, subjects, times, solver, vals
                )[1]
            )
        rows.append(pair)
    arr = np.array(rows)
    swing = np.abs(arr[:, 1] - arr[:, 0])
    keep = swing > 1e-12 * max(abs(mid), 1e-300)
    order = np.argsort(-swing[keep], kind="stable")
    kept = [n for n, k in zip(names, keep, strict=True) if k]
    return xr.DataArray(
        arr[keep][order],
        dims=("parameter", "side"),
        coords={"parameter": [kept[i] for i in order], "side": ["low", "high"]},
        attrs={
            "units": munits,
            "long_name": f"{statistic} {ro.per} {ro.window + 1} {ro.metric}",
            "base": mid,
            "change": float(change),
        },
    )


def plot_tornado(da: xr.DataArray, ax=None):
    """A tornado plot of :func:`tornado`'s result: one horizontal bar per
    parameter from the statistic at -change to +change, centred on the base
    value, largest swing on top. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if not isinstance(da, xr.DataArray) or set(da.dims) != {"parameter", "side"}:
        raise TypeError("plot_tornado takes the DataArray that ks.tornado returns")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * da.sizes["parameter"] + 1.5))
    base = float(da.attrs["base"])
    names = [str(p) for p in da.parameter.values][::-1]
    lo = da.sel(side="low").values[::-1]
    hi = da.sel(side="high").values[::-1]
    y = np.arange(len(names))
    ch = da.attrs.get("change", 0.2) * 100
    ax.barh(y, lo - base, left=base, color="tab:blue", label=f"parameter -{ch:g} %")
    ax.barh(y, hi - base, left=base, color="tab:orange", label=f"parameter +{ch:g} %")
    ax.axvline(base, color="k", lw=0.8)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"{da.attrs.get('long_name', '')} [{da.attrs.get('units', '')}]")
    ax.legend(loc="best", fontsize="small")
    ax.set_title("one-at-a-time sensitivity")
    return ax
