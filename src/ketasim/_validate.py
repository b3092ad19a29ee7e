"""Small input checkers shared by ``simulate``, ``Population`` and the dosing
classes: booleans, whole numbers, proportions and covariate tables.

Each raises with a message that names the field, says what was received and how to
fix it; nothing is clamped or defaulted.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Plausible human range of each continuous covariate, (low, high) inclusive, in the
#: units of ``ketasim.model.KNOWN_COVARIATES``. Wide on purpose: they catch wrong
#: units and typos (height -170, weight 1e300, age in days), not unusual patients,
#: and admit neonates and premature infants, since some models are paediatric.
#: A model's own, narrower validity ranges give a ValidityWarning instead.
COVARIATE_RANGES: dict[str, tuple[float, float]] = {
    "age": (0.0, 120.0),
    "height": (30.0, 250.0),
    "weight": (0.3, 400.0),
    "bmi": (8.0, 100.0),
}
#: Covariates that are 0/1 flags (1 = yes): exactly 0 or 1.
FLAG_COVARIATES = ("female", "asian", "japanese")


def check_bool(value, what: str) -> bool:
    """``value`` as a bool: Python or NumPy booleans only. A string such as
    ``"no"`` or a number would otherwise be read by truthiness (``"no"`` is
    true)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(
        f"{what} must be True or False; got {value!r} ({type(value).__name__})"
    )


def is_whole(value) -> bool:
    """A Python or NumPy integer (not a bool, not a float such as 2.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool | np.bool_
    )


def is_table(value) -> bool:
    """A mapping of name -> values: a dict, an xarray Dataset, or a pandas
    DataFrame (its columns), which is not a ``Mapping`` but reads as one."""
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return True
    import sys

    pd = sys.modules.get("pandas")  # a DataFrame exists only if pandas is loaded
    return pd is not None and isinstance(value, pd.DataFrame)


def is_real(value) -> bool:
    """A Python or NumPy real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_proportion(value, what: str) -> float:
    """A real number in [0, 1] (finite), as float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{what} is a proportion, a number in [0, 1]; got {value!r} "
            f"({type(value).__name__})"
        )
    v = float(value)
    if not 0.0 <= v <= 1.0:  # NaN fails this too
        raise ValueError(f"{what} is a proportion in [0, 1]; got {value!r}")
    return v


def covariate_values(name: str, value, *, where: str = "") -> np.ndarray:
    """Covariate ``name`` as a float array (0-D or 1-D, one value per subject),
    finite, inside :data:`COVARIATE_RANGES`, flags exactly 0 or 1.

    ``name`` must be a known covariate (the caller checks). Strings are refused,
    with or without a unit: covariates are plain numbers in the unit of
    ``KNOWN_COVARIATES`` (``"70 kg"`` -> ``70``). ``where`` is appended to the
    subject position in messages (e.g. ``" (patient 3)"``)."""
    from .model import KNOWN_COVARIATES

    unit = KNOWN_COVARIATES[name]
    flag = name in FLAG_COVARIATES
    example = "1 (yes) or 0 (no)" if flag else f"a number in {unit}"
    try:
        raw = np.asarray(value)
    except Exception:  # a ragged list: numpy refuses to build the array
        raise ValueError(
            f"covariate {name!r} must be {example}, or a 1-D array of "
            f"them (one per subject); got {value!r:.80}"
        ) from None
    if raw.dtype.kind in "USO" or raw.dtype.kind == "c":
        text = next((v for v in np.ravel(raw) if isinstance(v, str)), None)
        hint = ""
        if text is not None:
            num = text.strip().split(" ")[0]
            hint = (
                f". Write the number alone, in {unit}: {num}"
                if not flag
                else ". Write 1 or 0"
            )
        raise TypeError(
            f"covariate {name!r} must be {example}, or an array of "
            f"them (one per subject); got {value!r:.80} "
            f"({type(value).__name__}){hint}"
        )
    if raw.dtype.kind == "b" and not flag:
        raise TypeError(
            f"covariate {name!r} must be a number in {unit}; got the "
            f"boolean {value!r:.80}"
        )
    a = raw.astype(float)
    if a.ndim > 1:
        raise ValueError(
            f"covariate {name!r} must be a scalar or 1-D array (one "
            f"value per subject); got shape {a.shape}"
        )
    flat = np.atleast_1d(a)
    bad = ~np.isfinite(flat)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"covariate {name!r} must be finite; got {flat[i]} for subject {i}{where}"
        )
    if flag:
        bad = (flat != 0.0) & (flat != 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"covariate {name!r} is a 0/1 flag (1 = yes); got "
                f"{flat[i]:g} for subject {i}{where}"
            )
        return a
    lo, hi = COVARIATE_RANGES[name]
    bad = (flat < lo) | (flat > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"covariate {name!r} must be in [{lo:g}, {hi:g}] {unit} (a "
            f"plausible human value; check the unit); got {flat[i]:g} "
            f"for subject {i}{where}"
        )
    return a


def check_derived_weight(weight: np.ndarray, where: str = "") -> None:
    """Weight derived from height and BMI must be in range too."""
    lo, hi = COVARIATE_RANGES["weight"]
    bad = ~((weight >= lo) & (weight <= hi))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"weight derived from bmi x (height/100)^2 is "
            f"{weight[i]:.4g} kg for subject {i}{where}, outside "
            f"[{lo:g}, {hi:g}] kg; check height (cm) and bmi (kg/m2), "
            f"or give weight"
        )


#: Below this age (years) a patient is a child: the adult distribution of
#: ``Population`` and a model's reference weight (an allometric 70 kg) do not
#: describe them, so their weight must be given.
ADULT_AGE = 18.0


def check_defaulted_covariates(model, given, cov: dict) -> None:
    """Raise the ValueError of :func:`defaulted_covariate_problem`, if any."""
    msg = defaulted_covariate_problem(model, given, cov)
    if msg is not None:
        raise ValueError(msg)


def defaulted_covariate_problem(model, given, cov: dict) -> str | None:
    """Why a defaulted covariate does not describe the patient, or None.

    ``given`` names the covariates the caller supplied (weight counts as given when
    derived from height and BMI); ``cov`` holds every covariate used, given or
    defaulted to the model's reference value. Two cases are errors, named with the
    covariate, the default and the fix:

    - a default outside the model's own validity range for that covariate
      (``flint_2017``'s weight reference, 70 kg, against its 3.4-35 kg);
    - a defaulted weight (the model's reference, an adult's: allometric models
      scale to 70 kg) for a patient younger than :data:`ADULT_AGE` years, whose
      age was given or is the model's default (a paediatric model's 8.3 y).

    A default inside the validity range, for an adult or a patient of unknown age,
    is used as before."""
    from .model import KNOWN_COVARIATES

    fix = (
        "pass the patient's covariates, simulate(..., subjects=ks.Subjects("
        "covariates={'weight': ..., 'age': ...})) (kg, years), or a Population "
        "with a covariates table, Population(n, seed, covariates={'weight': "
        "..., 'age': ...})"
    )
    for name, (lo, hi) in model.validity.items():
        if name in given or name not in model.covariates:
            continue
        ref = model.covariates[name]
        if not lo <= ref <= hi:
            unit = KNOWN_COVARIATES[name]
            return (
                f"covariate {name!r} was not given, and its default, {ref:g} {unit} "
                f"(the reference value of model {model.id!r}), is outside "
                f"[{lo:g}, {hi:g}] {unit}, the range the model was estimated on: "
                f"{fix}"
            )
    if "weight" in given or "weight" not in model.covariates or "age" not in cov:
        return None
    age = np.asarray(cov["age"], dtype=float)
    young = age < ADULT_AGE
    if young.any():
        i = int(np.argmax(young))
        whose = "given" if "age" in given else "the model's default age"
        return (
            f"covariate 'weight' was not given, and its default, "
            f"{model.covariates['weight']:g} kg (the reference value of model "
            f"{model.id!r}, an adult's weight), would be used for a patient aged "
            f"{age[i]:g} y ({whose}; subject {i}), under {ADULT_AGE:g} y: {fix}"
        )
    return None


def finite_number(value, what: str) -> float:
    """A real, finite number (not a bool) as float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{what} must be a number; got {value!r} ({type(value).__name__})"
        )
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite; got {value!r}")
    return v


def noun(dimension: str) -> str:
    """A dimension's name as a noun for messages ("a fraction", "a clearance")."""
    return "fraction (dimensionless)" if dimension == "dimensionless" else dimension


def _shown(value) -> str:
    """A short, readable rendering of a user's value for a message."""
    a = np.asarray(value) if not isinstance(value, str) else None
    if a is not None and a.ndim == 1 and a.dtype.kind in "iuf":
        return f"an array of {a.size} numbers"
    return f"{value!r:.60}"


def parameter_values(model, name: str, value) -> tuple[np.ndarray, bool]:
    """An individual-parameter override of ``Subjects(parameters=...)`` as
    ``(values, per_kg)``: ``values`` (0-D or 1-D, one per subject) in canonical units
    (L, L/h, 1/h, h, fraction), per kg of body weight when ``per_kg``.

    ``value`` is ``"80 L/h"``, ``(80, "L/h")``, ``(array, "L/h")``, a
    :class:`~ketasim.units.Quantity`, or a bare number / array. A bare number is
    read in the parameter's canonical unit, and accepted only where that cannot be
    mistaken: for fractions, and for parameters the model file itself states in the
    canonical absolute unit. It is refused for per-kg parameters (per kg, or this
    subject's value?) and for parameters the file states in another unit (``k10``
    in 1/min: the file's unit or the printed canonical one?).
    """
    from .units import _QTY, Quantity, UnitError, parse_unit

    p = model.parameters[name]
    what = f"parameters[{name!r}]"
    base = p.canonical_unit.removesuffix("/kg")  # the absolute canonical unit
    typical = f"{p.value:.4g} {p.canonical_unit}"
    if p.unit != p.canonical_unit:
        typical = f"{p.value / parse_unit(p.unit).factor:.4g} {p.unit} = {typical}"
    unit = None
    if isinstance(value, Quantity):
        num, unit = value.value, value.unit
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        num, unit = value
    elif isinstance(value, str):
        m = _QTY.match(value)
        if m is None:
            raise UnitError(
                f"cannot read {what} = {value!r}; write a number and a "
                f"unit such as '{p.value:.4g} {p.canonical_unit}'"
            )
        num, unit = float(m.group(1)), (m.group(2) or "").strip() or None
    else:
        num = value
    form = (
        "a number with a unit such as '80 L/h', a (values, unit) pair such as "
        "(array, 'L/h'), or a ketasim Quantity"
    )
    try:
        raw = np.asarray(num)
    except Exception:  # ragged lists
        raise TypeError(f"{what} must be {form}; got {_shown(value)}") from None
    if raw.dtype.kind not in "iuf":
        hint = (
            ". Per-subject values with a unit are one (array, unit) pair, not "
            "a list of strings"
            if raw.dtype.kind in "USO" and raw.ndim
            else ""
        )
        raise TypeError(
            f"{what} must be {form}; got {_shown(value)} ({type(value).__name__}){hint}"
        )
    a = raw.astype(float)
    if a.ndim > 1:
        raise ValueError(
            f"{what} must be a scalar or 1-D array (one value per "
            f"subject); got shape {a.shape}"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(np.atleast_1d(bad)))
        raise ValueError(
            f"{what} must be finite; got {np.atleast_1d(a)[i]} (subject {i})"
        )
    scalar = a.ndim == 0
    v = f"{float(a):g}" if scalar else "values"
    if unit is None:
        if p.dimension == "dimensionless":
            return a, False
        if p.per_kg:
            how = (
                f"write '{v} {base}' for this subject's {p.dimension} or "
                f"'{p.value:.4g} {p.canonical_unit}' to scale with weight"
                if scalar
                else f"write (values, '{base}') for each subject's {p.dimension} or "
                f"(values, '{p.canonical_unit}') to scale with weight"
            )
            raise UnitError(
                f"{what} = {_shown(value)} has no unit, and {name} is per "
                f"kg in model {model.id!r} (typical {typical}): {how}"
            )
        if p.unit != p.canonical_unit:
            how = (
                f"write '{v} {base}' or '{v} {p.unit}'"
                if scalar
                else f"write (values, '{base}') or (values, '{p.unit}')"
            )
            raise UnitError(
                f"{what} = {_shown(value)} has no unit, and model "
                f"{model.id!r} states {name} in {p.unit} (typical "
                f"{typical}) while ketasim prints it in {base}, so a bare "
                f"number is ambiguous: {how}"
            )
        return a, False
    try:
        u = parse_unit(unit)
    except UnitError as exc:
        raise UnitError(f"{what} = {_shown(value)}: {exc}") from None
    if (
        u.dimension != p.dimension
        or u.dims[3] not in (0, -1)
        or (u.per_kg and p.dimension == "dimensionless")
    ):
        kind = f"a {noun(u.dimension)}" if u.dimension else "a quantity of another kind"
        if u.per_kg and u.dimension:
            kind += " per kg"
        fix = (
            f"give it in {base} or {base}/kg"
            if p.dimension != "dimensionless"
            else "give a bare number in [0, 1] (or a percentage, '50 %')"
        )
        raise UnitError(
            f"{what} = {_shown(value)} is {kind}, but {name} is a "
            f"{noun(p.dimension)} in model {model.id!r} (typical "
            f"{typical}); {fix}"
        )
    return a * u.factor, u.per_kg
