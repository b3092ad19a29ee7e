"""Units: parsing, canonical forms and conversions.

Canonical units inside ketasim: time in h, drug amount in mg, volume in L, clearance in
L/h, rate constants in 1/h, concentration in ng/mL (= µg/L), body weight in kg.
Micrograms are ``ug``, ``µg`` or ``mcg`` alike (``"1 mcg/kg/min"``).
Amounts inside the kernels are mg; mg/L × 1000 = ng/mL.

A unit string is a product of factors separated by ``/`` (every factor after the first
is a divisor), e.g. ``"L/h"``, ``"mL/min/kg"``, ``"1/min"``, ``"mg/kg"``.
A trailing ``/kg`` (body weight) marks a per-kilogram quantity that is multiplied by the
subject's weight when individual parameters are formed.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

__all__ = [
    "MW_KETAMINE",
    "SALT_TO_BASE",
    "Quantity",
    "UnitError",
    "parse_quantity",
    "parse_unit",
    "to_hours",
]

#: Molecular weight of ketamine base, C13H16ClNO (g/mol): the formula with standard
#: atomic weights C 12.011, H 1.008, Cl 35.45, N 14.007, O 15.999 gives 237.727.
MW_KETAMINE = 237.73
#: Molecular weight of ketamine hydrochloride, C13H16ClNO·HCl (g/mol).
MW_KETAMINE_HCL = 274.19
#: Multiply a ketamine/esketamine HCl mass by this to get the base mass (237.73/274.19).
SALT_TO_BASE = MW_KETAMINE / MW_KETAMINE_HCL

#: MG_PER_L_TO_NG_PER_ML: 1 mg/L = 1000 ng/mL.
MG_PER_L_TO_NG_PER_ML = 1000.0


def mol_per_l_to_ng_per_ml(value, mw):
    """A molar concentration (mol/L) in ng/mL: mol/L x g/mol = g/L, x 1e6 -> ng/mL.
    ``value`` and ``mw`` (g/mol) may be numbers or arrays."""
    return value * mw * 1e6


def ng_per_ml_to_nmol_per_l(value, mw):
    """A mass concentration (ng/mL) in nmol/L: ng/mL / (g/mol) x 1000. ``value``
    and ``mw`` (g/mol) may be numbers, arrays or DataArrays."""
    return value / mw * 1000.0


class UnitError(ValueError):
    """A unit or quantity string could not be understood."""


# dimension vector: (mass of drug, volume, time, body mass, amount of substance)
_BASE: dict[str, tuple[float, tuple[int, int, int, int, int]]] = {
    "1": (1.0, (0, 0, 0, 0, 0)),
    "%": (0.01, (0, 0, 0, 0, 0)),
    "g": (1e3, (1, 0, 0, 0, 0)),
    "mg": (1.0, (1, 0, 0, 0, 0)),
    "ug": (1e-3, (1, 0, 0, 0, 0)),
    "µg": (1e-3, (1, 0, 0, 0, 0)),
    "mcg": (1e-3, (1, 0, 0, 0, 0)),  # the clinical spelling of µg (mcg/kg/min)
    "ng": (1e-6, (1, 0, 0, 0, 0)),
    "L": (1.0, (0, 1, 0, 0, 0)),
    "dL": (0.1, (0, 1, 0, 0, 0)),
    "mL": (1e-3, (0, 1, 0, 0, 0)),
    "uL": (1e-6, (0, 1, 0, 0, 0)),
    "µL": (1e-6, (0, 1, 0, 0, 0)),
    "h": (1.0, (0, 0, 1, 0, 0)),
    "min": (1.0 / 60.0, (0, 0, 1, 0, 0)),
    "s": (1.0 / 3600.0, (0, 0, 1, 0, 0)),
    "d": (24.0, (0, 0, 1, 0, 0)),
    "day": (24.0, (0, 0, 1, 0, 0)),
    "days": (24.0, (0, 0, 1, 0, 0)),
    "week": (168.0, (0, 0, 1, 0, 0)),
    "weeks": (168.0, (0, 0, 1, 0, 0)),
    "kg": (1.0, (0, 0, 0, 1, 0)),
    "mol": (1.0, (0, 0, 0, 0, 1)),
    "mmol": (1e-3, (0, 0, 0, 0, 1)),
    "umol": (1e-6, (0, 0, 0, 0, 1)),
    "µmol": (1e-6, (0, 0, 0, 0, 1)),
    "nmol": (1e-9, (0, 0, 0, 0, 1)),
}
_ALIASES = {
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "minute": "min",
    "minutes": "min",
    "mins": "min",
    "l": "L",
    "ml": "mL",
    "sec": "s",
    "ul": "uL",
    "µl": "µL",
}

# Named dimensions the model schema checks against.
DIMENSIONS: dict[str, tuple[int, int, int, int, int]] = {
    "dimensionless": (0, 0, 0, 0, 0),
    "time": (0, 0, 1, 0, 0),
    "volume": (0, 1, 0, 0, 0),
    "clearance": (0, 1, -1, 0, 0),
    "rate constant": (0, 0, -1, 0, 0),
    "amount": (1, 0, 0, 0, 0),
    "amount rate": (1, 0, -1, 0, 0),
    "concentration": (1, -1, 0, 0, 0),
    "molar concentration": (0, -1, 0, 0, 1),
}
_CANONICAL = {
    (0, 0, 0, 0, 0): "1",
    (0, 0, 1, 0, 0): "h",
    (0, 1, 0, 0, 0): "L",
    (0, 1, -1, 0, 0): "L/h",
    (0, 0, -1, 0, 0): "1/h",
    (1, 0, 0, 0, 0): "mg",
    (1, 0, -1, 0, 0): "mg/h",
    (1, -1, 0, 0, 0): "mg/L",
    (0, -1, 0, 0, 1): "mol/L",
}


@dataclass(frozen=True)
class Unit:
    """A parsed unit: ``value_in_unit * factor`` is the value in canonical units."""

    text: str
    factor: float
    dims: tuple[int, int, int, int, int]

    @property
    def per_kg(self) -> bool:
        """True for per-body-weight units such as ``L/kg`` or ``mg/kg``."""
        return self.dims[3] == -1

    @property
    def dimension(self) -> str | None:
        """Name of the dimension once any per-kg factor is removed (``None`` if odd,
        e.g. ``mg/kg/kg``)."""
        if self.dims[3] not in (0, -1):
            return None
        d = self.dims[:3] + (0,) + self.dims[4:]
        for name, dims in DIMENSIONS.items():
            if dims == d:
                return name
        return None

    @property
    def canonical(self) -> str:
        d = self.dims[:3] + (0,) + self.dims[4:]
        base = _CANONICAL.get(d, "?")
        return base + ("/kg" if self.per_kg else "")


_cache: dict[str, Unit] = {}


def parse_unit(text: str) -> Unit:
    """Parse a unit string such as ``"L/h"``, ``"mL/min/kg"`` or ``"1/min"``.

    Raises
    ------
    UnitError
        For an unknown unit, saying which units are understood.
    """
    if not isinstance(text, str):
        raise UnitError(
            f"a unit must be a string such as 'L/h'; got {text!r} "
            f"({type(text).__name__})"
        )
    hit = _cache.get(text)
    if hit is not None:
        return hit
    # Greek mu (U+03BC) and the micro sign (U+00B5) look the same: read both
    parts = [p.strip().replace("\u03bc", "\u00b5") for p in text.strip().split("/")]
    if not parts or any(p == "" for p in parts):
        raise UnitError(f"cannot read unit {text!r}: empty factor; write e.g. 'L/h'")
    factor = 1.0
    dims = [0, 0, 0, 0, 0]
    for i, part in enumerate(parts):
        name = _ALIASES.get(part, part)
        if name not in _BASE:
            known = ", ".join(sorted(k for k in _BASE if k not in ("1", "%")))
            raise UnitError(f"unknown unit {part!r} in {text!r}; known units: {known}")
        f, d = _BASE[name]
        sign = 1 if i == 0 else -1
        factor = factor * f if sign == 1 else factor / f
        for j in range(5):
            dims[j] += sign * d[j]
    unit = Unit(text, factor, tuple(dims))  # type: ignore[arg-type]
    _cache[text] = unit
    return unit


@dataclass(frozen=True)
class Quantity:
    """A number with its unit, e.g. ``Quantity(0.5, "mg/kg")``."""

    value: float
    unit: str

    def to(self, dimension: str) -> float:
        """The value in canonical units of ``dimension`` (per-kg kept as per-kg)."""
        u = parse_unit(self.unit)
        if u.dimension != dimension:
            raise UnitError(
                f"expected a {dimension}; got {self.value} {self.unit} "
                f"(a {u.dimension or 'quantity of unknown dimension'})"
            )
        return self.value * u.factor

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*)?$")


def _unit_for(unit, *, what: str, value) -> Unit:
    """``parse_unit(unit)``, its error prefixed with the argument it came from."""
    try:
        return parse_unit(unit)
    except UnitError as exc:
        raise UnitError(f"{what} {value!r}: {exc}") from None


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def parse_quantity(
    value: str | tuple[float | str, str] | Quantity | float,
    *,
    what: str,
    default_unit: str | None = None,
) -> Quantity:
    """Read ``"40 min"``, ``"0.5 mg/kg"``, ``(40, "min")``, a :class:`Quantity` or a
    bare number.

    A bare number takes ``default_unit``; when that is ``None`` a unit is required.
    ``what`` names the argument in error messages. The number of a ``(number,
    unit)`` pair or a Quantity must be a number (or a string holding only one):
    ``("5 mg", "mg/kg")`` is refused rather than read with one of its two units
    dropped. Finiteness and ranges are
    the caller's to check.

    Raises
    ------
    UnitError
        An unknown unit or unreadable string, naming ``what``.
    TypeError
        Neither a number, a string, a pair nor a Quantity, naming ``what``.
    """
    if isinstance(value, Quantity):
        if not _is_number(value.value):
            raise TypeError(
                f"{what} {value!r}: the value of a Quantity must be a "
                f"number; got {type(value.value).__name__} "
                f"{value.value!r}"
            )
        _unit_for(value.unit, what=what, value=value)
        return value
    if isinstance(value, bool):
        raise TypeError(
            f"{what} must be a number or a string with a unit such as "
            f"'40 min'; got {value!r} (bool)"
        )
    if isinstance(value, tuple) and len(value) == 2:
        num, unit = value
        bare = _QTY.match(num) if isinstance(num, str) else None
        if bare is not None and not bare.group(2):  # ("40", "min"): a plain number
            num = float(bare.group(1))
        if not _is_number(num):
            raise TypeError(
                f"{what} {value!r}: a (number, unit) pair needs a number "
                f"first, such as (40, 'min'); got {type(num).__name__} "
                f"{num!r}"
            )
        _unit_for(unit, what=what, value=value)
        return Quantity(num, unit)
    if isinstance(value, str):
        m = _QTY.match(value)
        if m is None:
            raise UnitError(
                f"cannot read {what} {value!r}; write a number and a unit, "
                f"e.g. '40 min' or '0.5 mg/kg'"
            )
        num = float(m.group(1))
        unit = m.group(2).strip() if m.group(2) else default_unit
        if unit is None:
            raise UnitError(f"{what} {value!r} has no unit; write e.g. '{num:g} mg'")
        _unit_for(unit, what=what, value=value)
        return Quantity(num, unit)
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{what} must be a number or a string with a unit; got "
            f"{value!r} ({type(value).__name__})"
        ) from None
    if default_unit is None:
        example = f"{num:g} mg" if math.isfinite(num) and num >= 0 else "35 mg"
        raise UnitError(
            f"{what} {value!r} has no unit; give a string such as '{example}'"
        )
    return Quantity(num, default_unit)


def to_hours(value: float | str | tuple[float, str] | Quantity, *, what: str) -> float:
    """A time or duration in hours: a number is hours; ``"40 min"``, ``"3 d"``
    convert."""
    q = parse_quantity(value, what=what, default_unit="h")
    u = parse_unit(q.unit)
    if u.dimension != "time":
        raise UnitError(f"{what} must be a time (h, min, d, week); got {value!r}")
    h = q.value * u.factor
    if not math.isfinite(h):
        raise ValueError(f"{what} must be finite; got {value!r}")
    return h


def is_molar(value) -> bool:
    """True for a string with a molar concentration unit (``"0.6 umol/L"``)."""
    if not isinstance(value, str):
        return False
    try:
        q = parse_quantity(value, what="level", default_unit="ng/mL")
        return parse_unit(q.unit).dimension == "molar concentration"
    except UnitError:
        return False


def to_ng_per_ml(value: float | str, *, what: str, mw: float | None = None) -> float:
    """A concentration level in ng/mL: a number is ng/mL; ``"100 ng/mL"``,
    ``"0.1 mg/L"`` convert. With ``mw`` (the analyte's molecular weight, g/mol)
    a molar level converts too: ng/mL = mol/L x mw x 1e6 (``"1 nmol/L"`` is
    mw / 1000 ng/mL, the inverse of ``ds.pk.molar()``). Finite and >= 0, or an
    error naming ``what``."""
    if getattr(value, "ndim", None) == 0:  # numpy or xarray scalar
        value = value.item()
    if isinstance(value, str):
        q = parse_quantity(value, what=what, default_unit="ng/mL")
        u = parse_unit(q.unit)
        if u.dimension == "molar concentration" and not u.per_kg and mw is not None:
            level = mol_per_l_to_ng_per_ml(q.value * u.factor, float(mw))
        elif u.dimension != "concentration" or u.per_kg:
            raise UnitError(
                f"{what} must be a concentration such as 100 or "
                f"'100 ng/mL'"
                + (" or '400 nmol/L'" if mw is not None else "")
                + f"; got {value!r}"
            )
        else:
            level = q.value * (u.factor / parse_unit("ng/mL").factor)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        level = float(value)
    else:
        raise TypeError(
            f"{what} must be one concentration in ng/mL (a number, or a "
            f"string such as '100 ng/mL'); got {type(value).__name__} "
            f"{value!r}"
        )
    if not (math.isfinite(level) and level >= 0):
        raise ValueError(
            f"{what} must be a finite concentration >= 0 ng/mL; got {value!r}"
        )
    return level
