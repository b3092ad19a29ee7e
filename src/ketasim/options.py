"""What to solve with and what to produce: the configuration nouns of ``simulate``.

Options that belong together travel together (as diffrax's ``SaveAt`` and
``PIDController``): the ODE tolerances live in :class:`ODE`, the trajectory extras in
:class:`Trajectories`, the time-above threshold in :class:`Metrics`. A combination
that has no meaning (tolerances for the exact solver, ``out=`` in metrics mode)
cannot be written. Each object is frozen and validated when it is built; derive a
variant with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._validate import check_bool, is_table, is_whole

__all__ = ["ODE", "Exact", "Metrics", "Subjects", "Trajectories"]

ODE_METHODS = {"auto": 0, "dopri5": 1, "rosenbrock": 2}


@dataclass(frozen=True)
class Exact:
    """Matrix-exponential propagation for linear time-invariant models.

    Exact to rounding between events (Taylor polynomial with scaling and
    squaring), with no tolerance to tune. The default for every model built
    from flows without time effects.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.Exact()
    Exact()
    """

    name = "exact"


#: the smallest relative tolerance ODE accepts: 100 x double precision epsilon,
#: the floor scipy.integrate.solve_ivp applies (it raises rtol to it with a warning)
RTOL_MIN = 100 * np.finfo(float).eps


@dataclass(frozen=True)
class ODE:
    """Adaptive ODE integration, for models with a user rhs or time effects.

    Parameters
    ----------
    rtol : float
        Relative tolerance, in [2.2e-14, 1) (below 100 x the double precision
        epsilon it cannot be met).
    atol : float
        Absolute tolerance in mg (amounts), finite and > 0.
    method : {"auto", "dopri5", "rosenbrock"}
        ``"auto"`` starts with Dormand–Prince 5(4) and switches to the stiff
        Rosenbrock method (Rodas4) when stiffness is detected.
    max_steps : int
        Accepted steps allowed per subject, >= 1.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.ODE(rtol=1e-8)
    ODE(rtol=1e-08, atol=1e-09, method='auto', max_steps=100000)
    """

    rtol: float = 1e-6
    atol: float = 1e-9
    method: str = "auto"
    max_steps: int = 100_000

    name = "ode"

    def __post_init__(self):
        for key in ("rtol", "atol"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise TypeError(
                    f"ODE({key}=...) must be a number; got {v!r} ({type(v).__name__})"
                )
        if not (0 < self.rtol < 1 and 0 < self.atol < math.inf):
            raise ValueError(
                f"ODE needs rtol in (0, 1) and atol finite and > 0 "
                f"(mg); got rtol={self.rtol}, atol={self.atol}"
            )
        if self.rtol < RTOL_MIN:  # as scipy's solve_ivp floor, 100 eps
            raise ValueError(
                f"ODE(rtol=...) must be at least {RTOL_MIN:.3g} (100 x the double "
                f"precision epsilon; a smaller one cannot be met, so the solver "
                f"would not deliver it); got rtol={self.rtol!r}"
            )
        if self.method not in ODE_METHODS:
            raise ValueError(
                f"ODE(method=...) must be one of {tuple(ODE_METHODS)}; "
                f"got {self.method!r}"
            )
        if not is_whole(self.max_steps) or self.max_steps < 1:
            raise ValueError(
                f"ODE(max_steps=...) must be a whole number >= 1; got "
                f"{self.max_steps!r}"
            )
        object.__setattr__(self, "rtol", float(self.rtol))
        object.__setattr__(self, "atol", float(self.atol))
        object.__setattr__(self, "max_steps", int(self.max_steps))


@dataclass(frozen=True)
class Trajectories:
    """Produce concentration curves (subject, analyte, time) in ng/mL.

    Parameters
    ----------
    amounts : bool
        Also return compartment amounts (mg) as ``amount``.
    auc : bool
        Also return ``auc`` (subject, analyte, time): the exact cumulative area
        under the concentration curve from 0 to t in ng·h/mL, integrated by the
        kernel as extra states (models built from flows). AUC over [t1, t2] is the
        difference.
    residual : bool
        Also return ``observed``: concentrations with the model's residual error
        (simulated samples), drawn from the population's seed (stream
        "residual").
    dose_windows : bool
        Also compute ``predose`` and ``dose_auc`` (exact per-dose AUC and pre-dose
        level; exact solver; a second, cheap kernel pass, about 25 % of the main
        one). :func:`ketasim.metrics` uses them for exact AUC and troughs; without
        them it falls back to the output grid and says so in ``attrs["method"]``.
    out : ndarray, optional
        Preallocated float64 C-contiguous buffer (subjects, analytes, times) for
        the concentrations; reusing one avoids page-fault cost on large runs. Holds
        concentrations only, so it cannot be combined with ``amounts`` or ``auc``.
    effects : bool, optional
        Effect-site concentrations (``effect_site_concentration``: subject,
        effect_site, time; ng/mL) and pharmacodynamic effects (``effect``:
        subject, endpoint, time). Default (None): for a model with ``[effects]``;
        True: also for a model with effect sites only (e.g. a ke0 for targeting);
        False: never. Each effect site is one more state of the exact propagation.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.Trajectories(auc=True)
    Trajectories(amounts=False, auc=True, residual=False, dose_windows=True, out=None)
    """

    amounts: bool = False
    auc: bool = False
    residual: bool = False
    dose_windows: bool = True
    out: np.ndarray | None = field(default=None, compare=False)
    effects: bool | None = None

    def __post_init__(self):
        for key in ("amounts", "auc", "residual", "dose_windows"):
            # a string such as "no" would read as True; numpy booleans become bools
            object.__setattr__(
                self, key, check_bool(getattr(self, key), f"Trajectories({key}=...)")
            )
        if self.out is not None:
            if not isinstance(self.out, np.ndarray):
                raise TypeError(
                    f"Trajectories(out=...) must be a numpy array; got "
                    f"{type(self.out).__name__}"
                )
            if self.amounts or self.auc:
                raise ValueError(
                    "Trajectories(out=...) holds concentrations only; it "
                    "cannot be combined with amounts=True or auc=True"
                )
        if self.effects is not None:
            object.__setattr__(
                self, "effects", check_bool(self.effects, "Trajectories(effects=...)")
            )
            if self.effects and self.out is not None:
                raise ValueError(
                    "Trajectories(out=...) holds concentrations only; it "
                    "cannot be combined with effects=True"
                )

    def __repr__(self) -> str:
        out = "None" if self.out is None else f"<array {self.out.shape}>"
        return (
            f"Trajectories(amounts={self.amounts}, auc={self.auc}, "
            f"residual={self.residual}, dose_windows={self.dose_windows}, "
            f"out={out}"
            + (f", effects={self.effects}" if self.effects is not None else "")
            + ")"
        )


@dataclass(frozen=True)
class Metrics:
    """Produce per-dose exposure metrics, streamed, without storing curves.

    Per dose (subject, analyte, dose) the kernel computes Cmax, Tmax (on the
    ``times`` grid), exact AUC, the pre-dose level and, with ``above``, the time
    above that level, working through ``chunk`` subjects at a time, so memory
    stays bounded for millions of patients. Exact solver (linear models) only.

    Parameters
    ----------
    above : float or str, optional
        Threshold for the time above: ng/mL, or a string with a mass
        concentration unit such as ``"0.1 mg/L"`` (one level for every analyte,
        so molar levels are refused).
    chunk : int
        Subjects per chunk, >= 1.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.Metrics(above="100 ng/mL")
    Metrics(above='100 ng/mL', chunk=65536)
    """

    above: float | str | None = None
    chunk: int = 65_536

    def __post_init__(self):
        if not is_whole(self.chunk) or self.chunk < 1:
            raise ValueError(
                f"Metrics(chunk=...) must be a whole number >= 1; got {self.chunk!r}"
            )
        if self.above is not None:
            metrics_level(self.above)  # refuses a bad level now, by name

    @property
    def level(self) -> float:
        """The threshold in ng/mL (NaN without one)."""
        return math.nan if self.above is None else metrics_level(self.above)


def metrics_level(above) -> float:
    """The time-above level of metrics mode: one level in ng/mL for every analyte
    (the kernel's), so a molar level, a different mass level per analyte, is
    refused here with the way to get it."""
    from .units import UnitError, parse_quantity, parse_unit, to_ng_per_ml

    if isinstance(above, str):
        try:
            molar = (
                parse_unit(
                    parse_quantity(above, what="above", default_unit="ng/mL").unit
                ).dimension
                == "molar concentration"
            )
        except UnitError:
            molar = False  # to_ng_per_ml says what is wrong
        if molar:
            raise UnitError(
                f"above={above!r} is a molar level; in Metrics(above=...) it is one "
                f"level in ng/mL for every analyte (a molar level is a different "
                f"mass level per analyte). Give it in ng/mL, or simulate the curves "
                f"and use ks.metrics(ds, 'dose', above={above!r})"
            )
    return to_ng_per_ml(above, what="above")


@dataclass(frozen=True)
class Subjects:
    """A table of subjects with their covariates and individual parameters.

    The alternative to a :class:`~ketasim.Population` when you know the patients:
    no random effects, one subject per row (or one subject for scalars).

    Parameters
    ----------
    covariates : mapping or DataFrame, optional
        Covariate name -> scalar or per-subject array of plain numbers (``weight``
        in kg, ``height`` in cm, ``age`` in years, ``bmi`` in kg/m², flags
        ``female``/``asian``/``japanese`` exactly 0 or 1), finite and humanly
        plausible (age 0–120 y, height 30–250 cm, weight 0.3–400 kg, BMI
        8–100 kg/m²). Missing covariates take the model's reference values.
        Time-varying (piecewise-constant) covariates: add an ``id`` column and a
        ``time`` column (h; each subject's rows together, times strictly
        increasing, the first at 0), several rows per subject; a row's values
        hold from its time on, until the subject's next row. Models built from
        flows; ``Trajectories(dose_windows=False)`` when a change moves an
        observed volume; the result gains ``subject_id``, ``segment_start`` and
        ``<name>_by_segment``, and ``parameters`` a ``segment`` dimension.
    parameters : mapping, optional
        Parameter name -> *individual* values, which replace typical value ×
        covariates × random effect: ``"80 L/h"``, ``(80, "L/h")`` or per subject
        ``(array, "L/h")``. Any unit of the parameter's dimension converts; a
        per-kg unit (``"1.15 L/h/kg"``) is multiplied by each subject's weight. A
        bare number is accepted only for fractions and for parameters the model
        file states in the unit the model pages print.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.Subjects(covariates={"weight": [60, 80]})
    Subjects(covariates={'weight': [60, 80]}, parameters=None)
    """

    covariates: Mapping | None = None
    parameters: Mapping | None = None

    def __post_init__(self):
        for key in ("covariates", "parameters"):
            v = getattr(self, key)
            if v is not None and not is_table(v):
                raise TypeError(
                    f"Subjects({key}=...) must be a mapping of name -> "
                    f"value or per-subject array (a dict or a pandas "
                    f"DataFrame); got {type(v).__name__}"
                )
