"""Clinic protocols as :class:`~ketasim.Regimen` builders.

Sessions fall on fixed weekdays (twice weekly = days 0 and 3 of each week, three
times = days 0, 2, 4) at a clock time; regimen times are hours after the first
session starts, so t = 0 is the first dose.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from ._validate import is_whole
from .dosing import (
    MAX_DEVICE_GAP_H,
    AmountLike,
    Dose,
    DoseError,
    Regimen,
    _amount,
    check_span,
)
from .units import to_hours

__all__ = [
    "MAX_DEVICES",
    "boosters",
    "clinic_course",
    "esketamine_induction",
    "home_course",
    "six_infusion_course",
]

#: Most nasal devices one esketamine session may use (the label's largest dose,
#: 84 mg, is 3 devices of 28 mg). A larger session dose is a unit slip, and
#: ``dose="1e300 mg"`` would otherwise build 1e298 devices.
MAX_DEVICES = 100

_WEEKLY_DAYS = {1: (0,), 2: (0, 3), 3: (0, 2, 4), 4: (0, 1, 3, 4), 5: (0, 1, 2, 3, 4)}


def _clock(value: str, what: str = "clock") -> float:
    m = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*", str(value))
    if m is None:
        raise DoseError(f"{what} must be a time of day 'HH:MM'; got {value!r}")
    return int(m.group(1)) + int(m.group(2)) / 60.0


def session_days(sessions_per_week: int, n: int, what: str = "sessions") -> list[int]:
    """Day numbers (day 0 = first session) of ``n`` sessions at a weekly rhythm;
    ``what`` names the argument ``n`` came from in errors. The last session must
    fall by :data:`~ketasim.dosing.MAX_TIME_H`, checked before the list is built."""
    if not is_whole(sessions_per_week) or sessions_per_week not in _WEEKLY_DAYS:
        raise DoseError(
            f"sessions_per_week must be a whole number 1-5; got {sessions_per_week!r}"
        )
    if not is_whole(n) or n < 1:
        raise DoseError(
            f"the number of sessions must be a whole number >= 1; got {what} = {n!r}"
        )
    pattern = _WEEKLY_DAYS[sessions_per_week]
    last = 7 * ((n - 1) // len(pattern)) + pattern[(n - 1) % len(pattern)]
    check_span(24.0 * last, f"{what} = {n!r} sessions at {sessions_per_week} a week")
    return [7 * (i // len(pattern)) + pattern[i % len(pattern)] for i in range(n)]


def _check_untimed(dose: Dose, who: str, times: str, use: str) -> None:
    """``dose`` is a Dose without its own time: ``who`` places it at its
    ``times``, so a time= would be lost (the message says to ``use`` instead)."""
    if not isinstance(dose, Dose):
        raise DoseError(f"dose must be a Dose; got {type(dose).__name__}")
    if dose.time != 0.0:
        raise DoseError(
            f"{who} places the dose at the {times}, so its own time "
            f"({dose.time:g} h) would be lost; build the dose without time= "
            f"(use {use})"
        )


def clinic_course(
    dose: Dose,
    *,
    sessions_per_week: int = 2,
    sessions: int = 6,
    clock: str | Sequence[str] = "09:00",
) -> Regimen:
    """``dose`` given in ``sessions`` sessions at ``sessions_per_week``.

    ``clock`` is the session time of day, or one per session (e.g. a Thursday
    afternoon slot); times are hours after the first session.

    Examples
    --------
    >>> d = Dose.bolus("25 mg", route="sublingual")
    >>> clinic_course(d, sessions_per_week=2, sessions=4).times
    (0.0, 72.0, 168.0, 240.0)
    """
    _check_untimed(dose, "clinic_course", "session times", "clock= for the time of day")
    days = session_days(sessions_per_week, sessions)
    if not isinstance(clock, str | list | tuple):
        raise DoseError(
            f"clock must be 'HH:MM' or a list of them, one per session; got {clock!r}"
        )
    clocks = [clock] * sessions if isinstance(clock, str) else list(clock)
    if len(clocks) != sessions:
        raise DoseError(
            f"clock needs one time per session ({sessions}); got {len(clocks)}"
        )
    hours = [_clock(c, f"clock[{i}]") for i, c in enumerate(clocks)]
    t0 = hours[0]
    return Regimen(
        dose._at(d * 24.0 + h - t0, "sessions")
        for d, h in zip(days, hours, strict=True)
    )


def six_infusion_course(
    dose: AmountLike = "0.5 mg/kg",
    *,
    duration: float | str = "40 min",
    sessions_per_week: int = 2,
    sessions: int = 6,
    salt: str = "hcl",
    route: str = "iv",
    clock: str | Sequence[str] = "09:00",
) -> Regimen:
    """The racemic ketamine course for depression: six 0.5 mg/kg infusions over
    40 min, twice weekly (days 0, 3, 7, 10, 14, 17), as ketamine HCl by default.

    Examples
    --------
    >>> six_infusion_course().times
    (0.0, 72.0, 168.0, 240.0, 336.0, 408.0)
    >>> six_infusion_course(sessions_per_week=3).times[-1] / 24
    11.0
    """
    _amount(dose, "dose")  # a bad dose is named as the caller wrote it, not `amount`
    d = Dose.infusion(dose, duration=duration, route=route, salt=salt)
    return clinic_course(
        d, sessions_per_week=sessions_per_week, sessions=sessions, clock=clock
    )


def boosters(
    dose: Dose | None = None, *, every: float | str = "2 weeks", count: int = 3
) -> Regimen:
    """``count`` booster sessions, the first ``every`` after t = 0 (so that
    ``course.then(boosters(...))`` places the first booster ``every`` after the
    course's last session), or after the dose's own time if it was built with
    ``time=``. Default dose: one 0.5 mg/kg HCl 40-min infusion; ``.then()``
    refuses it after a regimen whose last dose differs (an esketamine spray
    session, a 0.25 mg/kg course), which needs its booster ``dose`` given.

    Examples
    --------
    >>> course = six_infusion_course().then(boosters(every="2 weeks", count=2))
    >>> [round(t / 24) for t in course.times[-3:]]
    [17, 31, 45]
    """
    default = dose is None
    if default:
        dose = Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl")
    step = to_hours(every, what="every")
    if not step > 0:
        raise DoseError(f"every must be > 0; got {every!r}")
    if not isinstance(dose, Dose):
        raise DoseError(f"dose must be a Dose; got {type(dose).__name__}")
    if not is_whole(count) or count < 1:
        raise DoseError(f"count must be a whole number >= 1; got {count!r}")
    check_span(
        dose.time + count * step,
        f"count = {count!r} boosters every "
        f"{step:g} h (every={every!r}) from {dose.time:g} h",
    )
    reg = Regimen(dose._at(dose.time + k * step, "every") for k in range(1, count + 1))
    if default:  # Regimen.then() checks that it matches the course it follows
        object.__setattr__(reg, "_default_booster", dose)
    return reg


#: Weekdays (day 0 = the first dosing day) of at-home doses per week; 7 = daily.
_HOME_DAYS = {**_WEEKLY_DAYS, 6: (0, 1, 2, 3, 4, 5), 7: (0, 1, 2, 3, 4, 5, 6)}
#: Most doses an at-home day may hold (``clock`` times): hourly dosing.
MAX_HOME_DOSES_PER_DAY = 24


def home_course(
    dose: Dose,
    *,
    per_week: int = 7,
    weeks: int = 4,
    clock: str | Sequence[str] = "20:00",
    first_day: int = 0,
    origin: str = "09:00",
) -> Regimen:
    """At-home doses (a lozenge/troche, a sublingual or oral dose) at fixed clock
    times, daily or on fixed weekdays, for ``weeks`` weeks.

    Times are hours after ``origin``, the clock time of t = 0 on day 0: by default
    09:00, the default session time of :func:`clinic_course` and
    :func:`six_infusion_course`, so that a home course merges with a clinic course
    by ``+`` (both start on day 0) or follows it by ``course.then(...)`` (day 0 is
    then the day of the last clinic session).

    Parameters
    ----------
    dose : Dose
        The home dose (built without ``time=``), on a route of the model used.
    per_week : int, default 7
        Dosing days a week: 7 daily; 2 on days 0 and 3; 3 on days 0, 2, 4 of each
        week (as :func:`clinic_course`); 1-7.
    weeks : int, default 4
        Weeks of home dosing.
    clock : str or list of str, default "20:00"
        Time(s) of day of the doses on each dosing day (``["08:00", "20:00"]``:
        twice a day).
    first_day : int, default 0
        Day of the first home dose, counted from day 0 (0 = the same day as t = 0).
    origin : str, default "09:00"
        Clock time of t = 0 on day 0.

    Raises
    ------
    DoseError
        A bad count, clock or day; a dose before t = 0 (a clock time earlier than
        ``origin`` on day 0: start on ``first_day=1``).

    Examples
    --------
    >>> troche = Dose.bolus("50 mg", route="troche")
    >>> home_course(troche, per_week=3, weeks=1).times
    (11.0, 59.0, 107.0)
    >>> clinic = clinic_course(Dose.bolus("25 mg", route="sublingual"), sessions=2)
    >>> (clinic + home_course(troche, per_week=2, weeks=1, first_day=1)).times
    (0.0, 35.0, 72.0, 107.0)
    """
    _check_untimed(dose, "home_course", "clock times", "clock= and first_day=")
    if dose.device is not None:
        raise DoseError(
            "home_course gives one dose per clock time; a nasal-device dose "
            "(device=) belongs in ks.esketamine_induction"
        )
    if not is_whole(per_week) or per_week not in _HOME_DAYS:
        raise DoseError(
            f"per_week must be a whole number 1-7 (7 = daily); got {per_week!r}"
        )
    for name, v, low in (("weeks", weeks, 1), ("first_day", first_day, 0)):
        if not is_whole(v) or v < low:
            raise DoseError(f"{name} must be a whole number >= {low}; got {v!r}")
    if not isinstance(clock, str | list | tuple) or not clock:
        raise DoseError(
            f"clock must be 'HH:MM' or a list of them (the doses of a dosing "
            f"day); got {clock!r}"
        )
    clocks = [clock] if isinstance(clock, str) else list(clock)
    if len(clocks) > MAX_HOME_DOSES_PER_DAY:
        raise DoseError(
            f"clock gives {len(clocks)} doses a day; at most {MAX_HOME_DOSES_PER_DAY}"
        )
    hours = sorted(_clock(c, f"clock[{i}]") for i, c in enumerate(clocks))
    if len(set(hours)) != len(hours):
        raise DoseError(f"clock lists the same time twice: {clocks!r}")
    t0 = _clock(origin, "origin")
    pattern = _HOME_DAYS[per_week]
    last_day = first_day + 7 * (weeks - 1) + pattern[-1]
    check_span(
        24.0 * last_day + hours[-1] - t0,
        f"weeks = {weeks!r}, first_day = {first_day!r}",
    )
    if 24.0 * first_day + hours[0] - t0 < 0:
        raise DoseError(
            f"the first home dose at {clocks[0] if len(clocks) == 1 else min(clocks)}"
            f" on day {first_day} comes before t = 0 ({origin} on day 0); start "
            f"on first_day={first_day + 1}, or set origin to the clock time of "
            f"t = 0"
        )
    times = [
        24.0 * (first_day + 7 * w + d) + h - t0
        for w in range(int(weeks))
        for d in pattern
        for h in hours
    ]
    return Regimen(dose._at(t, "clock") for t in times)


def _session(
    amount_mg: float, t: float, device_mg: float, gap: float, route: str, what: str
) -> list[Dose]:
    """The devices of one session giving ``amount_mg`` (the argument ``what``)."""
    ratio = amount_mg / device_mg
    n = round(ratio) if ratio <= MAX_DEVICES + 0.5 else MAX_DEVICES + 1
    if n < 1 or n > MAX_DEVICES or abs(n * device_mg - amount_mg) > 1e-9:
        raise DoseError(
            f"{what}: an esketamine nasal dose must be a multiple of the "
            f"{device_mg:g} mg device, from 1 to {MAX_DEVICES} devices "
            f"a session; got {what} = {amount_mg:g} mg"
        )
    check_span(
        t + (n - 1) * gap,
        f"device_interval = {gap:g} h between {n} devices from {t:g} h",
    )
    return [
        Dose.bolus(f"{device_mg} mg", route=route, time=t + k * gap, device=k + 1)
        for k in range(n)
    ]


def _maintenance_given(sessions: int, every, dose) -> None:
    """``maintenance_every``/``maintenance_dose`` describe maintenance sessions;
    with ``maintenance_sessions = 0`` there are none, and they would be dropped."""
    given = [
        f"{name}={value!r}"
        for name, value in (("maintenance_every", every), ("maintenance_dose", dose))
        if value is not None
    ]
    if sessions == 0 and given:
        raise DoseError(
            f"{' and '.join(given)} given without maintenance_sessions: the "
            f"schedule has no maintenance sessions (maintenance_sessions = 0, "
            f"the default), so {'they' if len(given) > 1 else 'it'} would have "
            f"no effect. Give the number of sessions, e.g. "
            f"maintenance_sessions=6, {', '.join(given)}; or leave "
            f"{'them' if len(given) > 1 else 'it'} out"
        )


def esketamine_induction(
    dose: AmountLike = "56 mg",
    *,
    first_dose: AmountLike = "56 mg",
    weeks: int = 4,
    continuation_weeks: int = 4,
    maintenance_every: float | str | None = None,
    maintenance_sessions: int = 0,
    maintenance_dose: AmountLike | None = None,
    device: AmountLike = "28 mg",
    device_interval: float | str = "5 min",
    route: str = "intranasal",
) -> Regimen:
    """Esketamine nasal spray (Spravato) schedule from the label.

    Induction weeks 1-4: twice weekly, ``first_dose`` (56 mg) on day 1, then
    ``dose`` (56 or 84 mg). Weeks 5-8 (``continuation_weeks``): weekly ``dose``.
    Then ``maintenance_sessions`` sessions (none by default) every
    ``maintenance_every`` (weekly or every 2 weeks; default 2 weeks) of
    ``maintenance_dose`` (default ``dose``); ``maintenance_every`` or
    ``maintenance_dose`` without ``maintenance_sessions`` would do nothing and is an
    error. Each session is one 28-mg device after another,
    ``device_interval`` apart (Dose.device = 1, 2, 3), so models with a per-device
    nasal effect see each device. Doses are esketamine base, as labelled. A
    session's dose must be a whole number of devices, 1 to :data:`MAX_DEVICES`
    (100); the last dose must fall within ``MAX_TIME_H`` (1e6 h). Errors name the
    argument at fault (``dose``, ``first_dose``, ``maintenance_dose``, ...).

    Examples
    --------
    >>> r = esketamine_induction("84 mg")
    >>> len(r), r.doses[2].device, r.doses[2].time, r.doses[3].device
    (35, 1, 72.0, 2)
    """

    def mg(v, what):
        a, unit = _amount(v, what)
        if unit != "mg":
            raise DoseError(f"{what}: esketamine doses are fixed, in mg; got {v!r}")
        return a

    for name, v, low in (
        ("weeks", weeks, 1),
        ("continuation_weeks", continuation_weeks, 0),
        ("maintenance_sessions", maintenance_sessions, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
            raise DoseError(f"{name} must be a whole number >= {low}; got {v!r}")
    weeks, continuation_weeks = int(weeks), int(continuation_weeks)
    maintenance_sessions = int(maintenance_sessions)
    dev = mg(device, "device")
    if not dev > 0:
        raise DoseError(
            f"device must be > 0 mg (what one nasal device delivers, "
            f"28 mg for Spravato); got {device!r}"
        )
    gap = to_hours(device_interval, what="device_interval")
    if not 0 < gap <= MAX_DEVICE_GAP_H:
        # devices further apart are not one session (see Dose's device=)
        raise DoseError(
            f"device_interval must be > 0 and at most "
            f"{MAX_DEVICE_GAP_H * 60:g} min, the longest gap between "
            f"devices of one session (the label gives 5 min); got "
            f"{device_interval!r}"
        )
    first, every_dose = mg(first_dose, "first_dose"), mg(dose, "dose")
    main, main_name = (
        (mg(maintenance_dose, "maintenance_dose"), "maintenance_dose")
        if maintenance_dose is not None
        else (every_dose, "dose")
    )
    _maintenance_given(maintenance_sessions, maintenance_every, maintenance_dose)
    if maintenance_every is None:
        maintenance_every = "2 weeks"
    step = to_hours(maintenance_every, what="maintenance_every")
    if not step > 0:
        raise DoseError(f"maintenance_every must be > 0; got {maintenance_every!r}")
    # the last session, before any list is built (weeks=10**9 would not return)
    t_cont = 7 * weeks * 24.0
    t_main = t_cont + (
        168.0 * (continuation_weeks - 1) + step if continuation_weeks else 0.0
    )
    check_span(
        max(
            t_cont + 168.0 * (continuation_weeks - 1),
            t_main + step * (maintenance_sessions - 1),
        ),
        f"weeks = {weeks}, continuation_weeks = {continuation_weeks}, "
        f"maintenance_sessions = {maintenance_sessions} (maintenance_every="
        f"{maintenance_every!r})",
    )
    plan: list[tuple[float, float, str]] = []
    for i, day in enumerate(session_days(2, 2 * weeks, "weeks")):
        plan.append(
            (day * 24.0, *((first, "first_dose") if i == 0 else (every_dose, "dose")))
        )
    t = t_cont
    for _ in range(continuation_weeks):
        plan.append((t, every_dose, "dose"))
        t += 168.0
    t = t_main
    for _ in range(maintenance_sessions):
        plan.append((t, main, main_name))
        t += step
    doses = []
    for start, amount, what in plan:
        doses += _session(amount, start, dev, gap, route, what)
    return Regimen(doses)
