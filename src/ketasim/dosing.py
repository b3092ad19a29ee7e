"""Doses and regimens.

A :class:`Dose` is one administration: an amount (``mg`` or ``mg/kg``), a route the
model defines, a start time, and for intravenous infusions a duration or a rate.
Amounts are in the base form unless ``salt="hcl"`` (ketamine/esketamine
hydrochloride, converted with × 0.867). A :class:`Regimen` is an ordered tuple of
doses. Times are hours after the start of the simulation (t = 0); strings such as
``"40 min"`` or ``"3 d"`` are accepted wherever a time is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from ._validate import is_real, is_whole
from .units import SALT_TO_BASE, Quantity, parse_quantity, parse_unit, to_hours

__all__ = [
    "MAX_DEVICE_GAP_H",
    "MAX_TIME_H",
    "AmountLike",
    "Dose",
    "DoseError",
    "Regimen",
]

SALT_FORMS = ("base", "hcl")

#: What an amount (or an infusion rate) argument takes: a string with its unit
#: (``"35 mg"``, ``"0.5 mg/kg"``), a ``(number, unit)`` pair or a
#: :class:`~ketasim.units.Quantity`. A bare number is refused: the unit decides
#: whether body weight scales the dose.
AmountLike: TypeAlias = str | tuple[float, str] | Quantity

#: Latest dose time, longest infusion and latest output time accepted, in hours
#: after t = 0: 1e6 h, about 114 years. No pharmacokinetic question spans more; a
#: larger time is a unit slip (seconds, or a date, read as hours), and spans near
#: 1e300 h overflow the AUC and the kernels' exp(-k t) terms, which would then be
#: blamed on the dose.
MAX_TIME_H = 1e6

#: Longest gap, in hours, between one device of a nasal session and the next
#: (``Dose.device`` k-1 then k): 1 h. The label gives 5 min between devices; a
#: "device 2" hours or days later is a new session typed with the wrong number,
#: and it would silently get a later device's smaller absorption.
MAX_DEVICE_GAP_H = 1.0

#: A single dose above this (mg, or mg/kg for a per-kg dose; an infusion's
#: amount per hour, counting at least 1 h) gets a ValidityWarning: it is far
#: beyond clinical and anaesthetic ketamine dosing, and the likely cause is a
#: unit slip ("35000 mg" written for 35000 ug is 1000 times the dose). The
#: KETALAR (ketamine hydrochloride) label gives induction doses of 1-4.5 mg/kg
#: intravenously and 6.5-13 mg/kg intramuscularly, the largest single doses it
#: names; 20 mg/kg is 1.5 times that, and 2000 mg is 13 mg/kg for a 150-kg
#: patient. Long infusions (sedation, status epilepticus, up to about
#: 10 mg/kg/h) stay below the per-hour limit. A warning, not an error: the model
#: is linear and still computes such a dose; the user confirms it is meant.
PLAUSIBLE_DOSE_MG = 2000.0
PLAUSIBLE_DOSE_MG_PER_KG = 20.0


def check_plausible(
    amount: float, unit: str, duration: float | None, *, what: str | None = None
) -> None:
    """A ValidityWarning when ``amount`` (mg, or mg/kg with ``unit`` "mg/kg"),
    given at once (``duration`` None) or over ``duration`` h, is more than
    :data:`PLAUSIBLE_DOSE_MG` (:data:`PLAUSIBLE_DOSE_MG_PER_KG`), or that much per
    hour of an infusion longer than an hour. Every dose built by ketasim goes
    through it: a user's :class:`Dose`, the doses ``find_dose`` and ``sweep``
    return or simulate, a TCI plan's hours. ``what`` replaces the amount's
    description in the message."""
    limit = PLAUSIBLE_DOSE_MG_PER_KG if unit == "mg/kg" else PLAUSIBLE_DOSE_MG
    hours = 1.0 if duration is None else max(duration, 1.0)
    if not amount / hours > limit:
        return
    import warnings

    from ._warn import ValidityWarning, stacklevel

    if what is None:
        what = (
            f"{amount:g} {unit}"
            if duration is None or duration <= 1.0
            else f"{amount:g} {unit} over {duration:g} h "
            f"({amount / hours:g} {unit} per hour)"
        )
    warnings.warn(
        f"a dose of {what} is far above any plausible single ketamine dose "
        f"(more than {limit:g} {unit}"
        f"{' per hour of infusion' if duration is not None else ''}; "
        f"the label's largest induction dose is 13 mg/kg intramuscularly). "
        f"Check the unit: '35000 mg' written for 35000 ug is 1000 times the "
        f"dose",
        ValidityWarning,
        stacklevel=stacklevel(),
    )


class DoseError(ValueError):
    """A dose or regimen is invalid; the message says what, got what, and the fix."""


def check_time(hours: float, what: str) -> float:
    """``hours`` (a dose start, already in h) within [0, :data:`MAX_TIME_H`], or a
    DoseError naming ``what`` (``"time"``, ``"times[2]"``, ...)."""
    if not hours >= 0:
        raise DoseError(
            f"{what} must be >= 0 h (hours after the start of the "
            f"simulation); got {hours:g} h"
        )
    if hours > MAX_TIME_H:
        raise DoseError(
            f"{what} must be at most {MAX_TIME_H:g} h (about 114 years "
            f"after the start of the simulation); got {hours:.10g} h. "
            f"Check its unit (a number is read as hours)"
        )
    return hours


def check_span(last: float, what: str) -> None:
    """A builder's last dose at ``last`` h must start by :data:`MAX_TIME_H`;
    ``what`` says which arguments put it there. Checked before the doses are
    built, so a mistyped count (``n=10**9``) is refused rather than run."""
    if not last <= MAX_TIME_H:
        raise DoseError(
            f"{what} would place the last dose at {last:.4g} h, after "
            f"{MAX_TIME_H:g} h (about 114 years), the latest dose time "
            f"accepted; check these arguments and their units"
        )


def _amount(value, what: str) -> tuple[float, str]:
    q = parse_quantity(value, what=what)
    u = parse_unit(q.unit)
    if u.dimension != "amount":
        raise DoseError(f"{what} must be a drug amount in mg or mg/kg; got {value!r}")
    if not is_real(q.value):  # a Quantity built by hand may hold anything
        raise DoseError(
            f"{what} must be a number with a unit such as '35 mg'; got {value!r}"
        )
    if not math.isfinite(q.value) or q.value < 0:
        raise DoseError(
            f"{what} must be a finite amount >= 0; got {value!r}. "
            "Nothing is clamped: fix the value."
        )
    return q.value * u.factor, ("mg/kg" if u.per_kg else "mg")


@dataclass(frozen=True)
class Dose:
    """One administration.

    Parameters
    ----------
    amount : str, tuple or Quantity
        ``"35 mg"``, ``"0.5 mg/kg"``, ``(0.5, "mg/kg")``. A bare number is rejected:
        the unit decides whether body weight scales the dose.
    route : str
        A route the model defines (``"iv"``, ``"intranasal"``, ...).
    time : float or str, default 0
        Start, hours after t = 0 (``"3 d"``, ``"90 min"`` accepted), at most
        :data:`MAX_TIME_H` (1e6 h, about 114 years).
    duration : float or str, optional
        Infusion duration (intravenous routes only), hours or ``"40 min"``, at
        most :data:`MAX_TIME_H`.
        ``None`` is a bolus (or the route's own input profile for extravascular
        routes).
    salt : {"base", "hcl"}, default "base"
        ``"hcl"`` converts a hydrochloride mass to base (× 237.73/274.19 = 0.867).
    device : int, optional
        Position of this administration among the devices of one session (1 = the
        first nasal-spray device). Given exactly on routes that absorb per device
        (Perez-Ruixo 2021: less is absorbed nasally from the second device on),
        and refused on others. Within one session the devices of a route are
        numbered 1, 2, 3, ... in time order: device k >= 2 comes right after
        device k-1 of the same route (no other dose between them), at most
        :data:`MAX_DEVICE_GAP_H` (1 h) later (the label gives 5 min); it joins
        that session. Device 1 starts a new session, more than 1 h after the
        previous device of its route. Anything else (a lone device 2, device 2
        before device 1, two devices 1 minutes apart, a device 2 days later) is
        refused when the regimen is simulated. ``ks.esketamine_induction``
        numbers the devices for you.
    weight_basis : {"total", "ideal", "lean", "adjusted"}, default "total"
        The body weight an mg/kg dose scales with: total body weight, ideal
        (Devine 1974), lean (Janmahasatian 2005) or adjusted body weight
        (IBW + 0.4 (TBW - IBW)), computed per subject from sex, height and weight
        (:mod:`ketasim.bodysize` gives the formulas and references). A subject
        without the covariates a basis needs is an error naming them. Only for
        mg/kg doses: an mg dose scales with nothing.
    drug : {"ketamine", "esketamine", "arketamine"}, optional
        What is given, when it may differ from the model's drug: racemic
        ``"ketamine"`` given to an S-ketamine model is an error unless the model
        declares the share of a racemic dose it describes (``racemic_fraction``).
        Default: the model's own drug.

    Examples
    --------
    >>> Dose("0.5 mg/kg", route="iv", duration="40 min", salt="hcl")
    Dose(0.5 mg/kg HCl iv at 0 h over 0.6667 h)
    """

    amount: float
    unit: str
    route: str
    time: float = 0.0
    duration: float | None = None
    salt: str = "base"
    device: int | None = None
    drug: str | None = None
    weight_basis: str = "total"

    def __init__(
        self,
        amount: AmountLike,
        *,
        route: str,
        time: float | str = 0.0,
        duration: float | str | None = None,
        salt: str = "base",
        device: int | None = None,
        drug: str | None = None,
        weight_basis: str = "total",
    ) -> None:
        value, unit = _amount(amount, "amount")
        object.__setattr__(self, "amount", value)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "time", to_hours(time, what="time"))
        if duration is not None:
            duration = to_hours(duration, what="duration")
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "salt", salt)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "drug", drug)
        object.__setattr__(self, "weight_basis", weight_basis)
        self.__post_init__()

    def __post_init__(self) -> None:
        if not isinstance(self.route, str) or not self.route:
            raise DoseError(
                f"route must be a route name such as 'iv'; got {self.route!r}"
            )
        check_time(self.time, "time")
        if self.duration is not None and not self.duration > 0:
            raise DoseError(
                f"duration must be > 0 h; got {self.duration:g} h. For a "
                "bolus leave duration=None (Dose.bolus)."
            )
        if self.duration is not None and self.duration > MAX_TIME_H:
            raise DoseError(
                f"duration must be at most {MAX_TIME_H:g} h (about 114 "
                f"years); got {self.duration:.10g} h. Check its unit (a "
                f"number is read as hours)"
            )
        dev = self.device
        if dev is not None and (not is_whole(dev) or dev < 1):
            raise DoseError(
                f"device must be a whole number >= 1 (1 = first device of "
                f"the session); got {self.device!r}"
            )
        if dev is not None:
            object.__setattr__(self, "device", int(dev))  # numpy ints too
        if self.drug not in (None, "ketamine", "esketamine", "arketamine"):
            raise DoseError(
                f"drug must be 'ketamine' (racemic), 'esketamine' or "
                f"'arketamine'; got {self.drug!r}"
            )
        if self.salt not in SALT_FORMS:
            raise DoseError(f"salt must be 'base' or 'hcl'; got {self.salt!r}")
        self._check_weight_basis()
        self._check_plausible()

    def _check_plausible(self) -> None:
        """A ValidityWarning for an amount far above any ketamine dose
        (:data:`PLAUSIBLE_DOSE_MG`, :data:`PLAUSIBLE_DOSE_MG_PER_KG`)."""
        check_plausible(self.amount, self.unit, self.duration)

    def _check_weight_basis(self) -> None:
        from .bodysize import WEIGHT_BASES

        basis = self.weight_basis
        if not isinstance(basis, str) or basis not in WEIGHT_BASES:
            raise DoseError(
                f"weight_basis must be one of "
                f"{', '.join(map(repr, WEIGHT_BASES))} (the body weight an mg/kg "
                f"dose scales with); got {basis!r}"
            )
        if basis != "total" and not self.per_kg:
            raise DoseError(
                f"weight_basis={basis!r} names the weight an mg/kg dose scales "
                f"with, but this dose is {self.amount:g} {self.unit}, which does "
                f"not scale; give the amount in mg/kg or leave weight_basis out"
            )

    # ---- constructors ---------------------------------------------------------
    @classmethod
    def bolus(
        cls,
        amount: AmountLike,
        *,
        route: str = "iv",
        time: float | str = 0.0,
        salt: str = "base",
        device: int | None = None,
        drug: str | None = None,
        weight_basis: str = "total",
    ) -> Dose:
        """An instantaneous dose (``route`` defaults to ``"iv"``)."""
        return cls(
            amount,
            route=route,
            time=time,
            salt=salt,
            device=device,
            drug=drug,
            weight_basis=weight_basis,
        )

    @classmethod
    def infusion(
        cls,
        amount: AmountLike | None = None,
        *,
        duration: float | str | None = None,
        rate: AmountLike | None = None,
        route: str = "iv",
        time: float | str = 0.0,
        salt: str = "base",
        drug: str | None = None,
        weight_basis: str = "total",
    ) -> Dose:
        """A zero-order infusion given by two of ``amount``, ``duration``, ``rate``.

        ``rate`` is ``"mg/h"`` or ``"mg/kg/h"`` (``"mg/min"`` etc. accepted).

        Examples
        --------
        >>> Dose.infusion("0.5 mg/kg", duration="40 min").duration
        0.6666666666666666
        >>> Dose.infusion(rate="0.75 mg/kg/h", duration="40 min").amount
        0.5
        """
        given = sum(x is not None for x in (amount, duration, rate))
        if given != 2:
            raise DoseError(
                "an infusion needs exactly two of amount, duration and "
                f"rate; got amount={amount!r}, duration={duration!r}, "
                f"rate={rate!r}"
            )
        if rate is not None:
            q = parse_quantity(rate, what="rate")
            u = parse_unit(q.unit)
            if (
                u.dimension != "amount rate"
                or not is_real(q.value)
                or not math.isfinite(q.value)
                or q.value <= 0
            ):
                raise DoseError(
                    f"rate must be a positive amount per time such as "
                    f"'0.75 mg/kg/h' or '26 mg/h'; got {rate!r}"
                )
            r = q.value * u.factor
            unit = "mg/kg" if u.per_kg else "mg"
            if duration is not None:
                d = to_hours(duration, what="duration")
                amount = Quantity(r * d, unit)
            else:
                a, aunit = _amount(amount, "amount")
                if aunit != unit:
                    raise DoseError(
                        f"amount ({aunit}) and rate ({unit}/h) must both "
                        "be per kg or both absolute"
                    )
                duration = a / r
        return cls(
            amount,
            route=route,
            time=time,
            duration=duration,
            salt=salt,
            drug=drug,
            weight_basis=weight_basis,
        )

    # ---- derived --------------------------------------------------------------
    @property
    def per_kg(self) -> bool:
        return self.unit == "mg/kg"

    @property
    def base_factor(self) -> float:
        """Multiplier from the amount as given to mg (or mg/kg) of base."""
        return SALT_TO_BASE if self.salt == "hcl" else 1.0

    def at(self, time: float | str) -> Dose:
        """The same dose at another time."""
        return self._at(to_hours(time, what="time"), "time")

    def _at(self, hours: float, what: str) -> Dose:
        """The same dose at ``hours`` (h), a bad time named ``what`` (the
        argument the caller's user wrote, e.g. ``times[1]``)."""
        check_time(hours, what)
        new = object.__new__(Dose)
        new.__dict__.update(self.__dict__, time=float(hours))
        return new

    def _amount_text(self) -> str:
        """``"0.5 mg/kg HCl"``: the amount as given, with its unit and salt (and
        ``"(lean)"`` when an mg/kg dose scales with a weight other than total)."""
        return (
            f"{self.amount:g} {self.unit}"
            + (f" ({self.weight_basis})" if self.weight_basis != "total" else "")
            + (" HCl" if self.salt == "hcl" else "")
        )

    def __repr__(self) -> str:
        s = f"{self._amount_text()} {self.route} at {self.time:g} h"
        if self.duration is not None:
            s += f" over {self.duration:.4g} h"
        if self.device is not None:
            s += f", device {self.device}"
        if self.drug is not None:
            s += f", {self.drug}"
        return f"Dose({s})"


@dataclass(frozen=True)
class Regimen:
    """An ordered sequence of doses (times nondecreasing).

    Examples
    --------
    >>> d = Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl")
    >>> course = Regimen.at(["0 d", "3 d", "7 d", "10 d", "14 d", "17 d"], d)
    >>> len(course), course.doses[-1].time
    (6, 408.0)
    >>> Regimen.every(d, interval="3.5 d", n=2).times
    (0.0, 84.0)
    >>> Regimen.every(d, interval="3.5 d", n=2)
    Regimen: 2 doses, 0 to 84 h (day 0 +00:00 to day 3 +12:00); route iv
      #  time (h)  elapsed              amount  route  duration
      0         0  day 0 +00:00  0.5 mg/kg HCl  iv     40 min
      1        84  day 3 +12:00  0.5 mg/kg HCl  iv     40 min
    """

    doses: tuple[Dose, ...]

    def __init__(self, doses: Iterable[Dose] | Dose = ()) -> None:
        if isinstance(doses, Dose):
            doses = (doses,)
        try:
            doses = tuple(doses)
        except TypeError:
            raise DoseError(
                f"doses must be a sequence of Dose objects; got "
                f"{type(doses).__name__} {doses!r:.80}"
            ) from None
        object.__setattr__(self, "doses", tuple(doses))
        self.__post_init__()

    def __post_init__(self) -> None:
        for i, d in enumerate(self.doses):
            if not isinstance(d, Dose):
                raise DoseError(f"doses[{i}] must be a Dose; got {type(d).__name__}")
        for i in range(1, len(self.doses)):
            if self.doses[i].time < self.doses[i - 1].time:
                raise DoseError(
                    f"doses must be in time order: doses[{i}] at "
                    f"{self.doses[i].time:g} h comes after doses[{i - 1}] at "
                    f"{self.doses[i - 1].time:g} h. Sort them, or combine regimens "
                    "with `+`, which merges by time."
                )

    @classmethod
    def at(
        cls, times: Sequence[float | str], dose: Dose, *, unit: str = "h"
    ) -> Regimen:
        """``dose`` at each of ``times`` (numbers in ``unit``, or strings). The
        times replace the dose's own, so a dose given with ``time=`` is rejected
        rather than silently moved."""
        if isinstance(dose, Dose) and dose.time != 0.0:
            raise DoseError(
                f"Regimen.at places the dose at the given times, so its "
                f"own time ({dose.time:g} h) would be lost; build the dose "
                f"without time=, add the offset to the times, or use "
                f"Regimen.every(dose, ...), which starts at dose.time"
            )
        if not isinstance(dose, Dose):
            raise DoseError(f"dose must be a Dose; got {type(dose).__name__}")
        if isinstance(times, str) or not isinstance(times, Iterable):
            raise DoseError(
                f"times must be a sequence of times such as [0, 3, 7] "
                f"(in {unit!r}) or ['0 d', '3 d']; got {times!r:.80}"
            )
        if not isinstance(unit, str) or parse_unit(unit).dimension != "time":
            raise DoseError(
                f"unit must be a time unit such as 'h' or 'd'; got {unit!r}"
            )
        out = []
        seen: dict[float, int] = {}  # time (h) -> its first index
        for i, t in enumerate(times):
            if not isinstance(t, str):
                t = (t, unit)
            what = f"times[{i}]"
            out.append(dose._at(to_hours(t, what=what), what))
            first = seen.setdefault(out[-1].time, i)
            if first != i:  # [0, 0, 7]: a typo, or a double dose written twice
                raise DoseError(
                    f"times[{i}] is {out[-1].time:g} h again (as times[{first}]): "
                    f"Regimen.at gives one dose per time. For a larger dose at that "
                    f"time give its amount; for two doses at once combine regimens "
                    f"with +"
                )
        return cls(out)

    @classmethod
    def every(cls, dose: Dose, *, interval: float | str, n: int) -> Regimen:
        """``n`` copies of ``dose`` every ``interval``, the first at ``dose.time``."""
        if not isinstance(dose, Dose):
            raise DoseError(f"dose must be a Dose; got {type(dose).__name__}")
        if not is_whole(n) or n < 1:
            raise DoseError(f"n must be a whole number >= 1; got {n!r}")
        step = to_hours(interval, what="interval")
        if not step > 0:
            raise DoseError(f"interval must be > 0 h; got {interval!r}")
        check_span(
            dose.time + (n - 1) * step,
            f"n = {n} doses every {step:g} h (interval={interval!r}) from "
            f"{dose.time:g} h",
        )
        return cls(dose._at(dose.time + k * step, "interval") for k in range(n))

    def then(self, other: Regimen, *, after: float | str = 0.0) -> Regimen:
        """This regimen followed by ``other``, whose t = 0 is placed ``after`` the
        start of this regimen's last dose (builders such as ``boosters`` start at
        their first interval, so the default ``after=0`` is usually right)."""
        if not self.doses:
            raise DoseError("cannot use .then() on an empty regimen")
        if not isinstance(other, Regimen):
            raise DoseError(
                f"then() takes a Regimen; got {type(other).__name__} "
                f"(wrap a Dose as Regimen([dose]))"
            )
        default = getattr(other, "_default_booster", None)  # boosters() without dose
        last = self.doses[-1]
        if default is not None and last._at(default.time, "time") != default:
            raise DoseError(
                f"boosters() without dose= gives {default._amount_text()} "
                f"{default.route} infusions over {default.duration * 60:g} min, but "
                f"the regimen before .then() ends with {last}; give the booster "
                f"dose: boosters(dose=..., every=..., count=...)"
            )
        offset = last.time + to_hours(after, what="after")
        if offset < 0:
            raise DoseError(
                f"after={after!r} places the next regimen's t = 0 at "
                f"{offset:g} h, before the start of the simulation; "
                f"after must be >= -{self.doses[-1].time:g} h here"
            )
        if other.doses:
            check_span(
                offset + other.doses[-1].time,
                f"then(after={after!r}) after this regimen's last dose at "
                f"{self.doses[-1].time:g} h",
            )
        return Regimen(
            self.doses + tuple(d._at(d.time + offset, "after") for d in other.doses)
        )

    def __add__(self, other: Regimen) -> Regimen:
        if not isinstance(other, Regimen):
            return NotImplemented
        merged = sorted(self.doses + other.doses, key=lambda d: d.time)  # stable
        return Regimen(merged)

    def __len__(self) -> int:
        return len(self.doses)

    def __iter__(self) -> Iterator[Dose]:
        return iter(self.doses)

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(d.time for d in self.doses)

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.route for d in self.doses))

    #: Regimens longer than this print their first and last ``_REPR_EDGE`` doses.
    _REPR_ALL = 10
    _REPR_EDGE = 5

    def __repr__(self) -> str:
        """A table, one dose a line: its index, time in h, elapsed days and
        hh:mm (t = 0 is the first dose's clock time, which the regimen does not
        know), amount with unit, route, duration, and the device and drug columns
        when any dose has one. Long regimens show their first and last 5 doses,
        like pandas."""
        n = len(self.doses)
        if n == 0:
            return "Regimen(no doses)"
        first, last = self.doses[0].time, self.doses[-1].time
        span = (
            f"{_hours(first)} h ({_elapsed(first)})"
            if n == 1
            else f"{_hours(first)} to {_hours(last)} h ({_elapsed(first)} to "
            f"{_elapsed(last)})"
        )
        routes = self.routes
        head = (
            f"Regimen: {n} dose{'s' if n > 1 else ''}, {span}; "
            f"route{'s' if len(routes) > 1 else ''} {', '.join(routes)}"
        )
        shown = (
            list(range(n))
            if n <= self._REPR_ALL
            else [*range(self._REPR_EDGE), -1, *range(n - self._REPR_EDGE, n)]
        )
        cols = ["#", "time (h)", "elapsed", "amount", "route", "duration"]
        optional = [
            ("device", lambda d: "" if d.device is None else str(d.device)),
            ("drug", lambda d: d.drug or ""),
        ]
        optional = [c for c in optional if any(c[1](d) for d in self.doses)]
        cols += [name for name, _ in optional]
        rows = [cols]
        for i in shown:
            if i < 0:
                rows.append(None)
                continue
            d = self.doses[i]
            row = [str(i), _hours(d.time), _elapsed(d.time), d._amount_text(), d.route]
            row.append("-" if d.duration is None else _duration(d.duration))
            rows.append(row + [get(d) for _, get in optional])
        width = [max(len(r[j]) for r in rows if r) for j in range(len(cols))]
        right = {0, 1, 3}  # numbers align on the right
        lines = [head]
        for r in rows:
            if r is None:
                lines.append(f"  {'...':>{width[0]}}  ({n} doses in all)")
                continue
            cells = [
                c.rjust(w) if j in right else c.ljust(w)
                for j, (c, w) in enumerate(zip(r, width, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        return "\n".join(lines)


def _hours(h: float) -> str:
    """``408``, ``0.6667``: at most 4 decimals, no trailing zeros."""
    return f"{h:.4f}".rstrip("0").rstrip(".")


def _elapsed(h: float) -> str:
    """Hours after t = 0 as days and hh:mm, ``"day 17 +00:40"``."""
    minutes = round(h * 60.0)
    days, minutes = divmod(minutes, 24 * 60)
    return f"day {days} +{minutes // 60:02d}:{minutes % 60:02d}"


def _duration(h: float) -> str:
    """``"40 min"`` under 1 h, ``"2.5 h"`` under 2 days, else ``"3 d"``."""
    if h < 1.0:
        return f"{h * 60.0:.4g} min"
    if h < 48.0:
        return f"{h:.4g} h"
    return f"{h / 24.0:.4g} d"
