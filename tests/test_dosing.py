"""Dose and Regimen: construction, units, and every error message."""

import math
import warnings

import pytest

import ketasim as ks
from ketasim import Dose, DoseError, Regimen, UnitError


def test_infusion_by_duration_and_by_rate_agree():
    a = Dose.infusion("0.5 mg/kg", duration="40 min")
    b = Dose.infusion(rate="0.75 mg/kg/h", duration="40 min")
    c = Dose.infusion("0.5 mg/kg", rate="0.75 mg/kg/h")
    assert a.amount == pytest.approx(b.amount) == pytest.approx(c.amount) == 0.5
    assert a.duration == pytest.approx(c.duration) == pytest.approx(2 / 3)
    assert a.unit == b.unit == "mg/kg"


def test_time_units():
    assert Dose.bolus("1 mg", time="3 d").time == 72.0
    assert Dose.bolus("1 mg", time="90 min").time == 1.5
    assert Dose.bolus("1 mg", time=2).time == 2.0
    assert Dose.bolus("1 mg", time=(2, "weeks")).time == 336.0


def test_salt_factor():
    assert Dose.bolus("32.3 mg", salt="hcl").base_factor * 32.3 == pytest.approx(
        28.0, abs=0.01
    )


def test_regimen_builders():
    d = Dose.infusion("0.5 mg/kg", duration="40 min")
    course = Regimen.at([0, 3, 7, 10, 14, 17], d, unit="d")
    assert course.times == (0, 72, 168, 240, 336, 408)
    ev = Regimen.every(d.at("1 d"), interval="3.5 d", n=3)
    assert ev.times == (24.0, 108.0, 192.0)
    both = course.then(Regimen.every(d, interval="1 week", n=2), after="2 weeks")
    assert both.times[-2:] == (408 + 336, 408 + 336 + 168)
    merged = Regimen([d.at(5)]) + Regimen([d.at(1)])
    assert merged.times == (1.0, 5.0)
    assert len(course) == 6 and course.routes == ("iv",)


BAD = [
    (lambda: Dose("-1 mg", route="iv"), DoseError, "finite amount >= 0; got '-1 mg'"),
    (lambda: Dose((math.inf, "mg"), route="iv"), DoseError, "finite amount"),
    (lambda: Dose((math.nan, "mg"), route="iv"), DoseError, "finite amount"),
    (lambda: Dose(35, route="iv"), UnitError, "has no unit"),
    (lambda: Dose("35 mL", route="iv"), DoseError, "must be a drug amount"),
    (
        lambda: Dose("35 mg", route="iv", duration=0),
        DoseError,
        "duration must be > 0 h; got 0 h. For a bolus",
    ),
    (
        lambda: Dose("35 mg", route="iv", duration="-40 min"),
        DoseError,
        "duration must be > 0 h",
    ),
    (lambda: Dose("35 mg", route="iv", time=-1), DoseError, "time must be >= 0 h"),
    (lambda: Dose("35 mg", route="iv", time=math.nan), ValueError, "must be finite"),
    (lambda: Dose("35 mg", route="iv", time="3 kg"), UnitError, "must be a time"),
    (lambda: Dose("35 mg", route="", time=0), DoseError, "route must be a route name"),
    (
        lambda: Dose("35 mg", route="iv", salt="sulfate"),
        DoseError,
        "salt must be 'base' or 'hcl'",
    ),
    (lambda: Dose("35 mg", route="iv", time=True), TypeError, "bool"),
    (lambda: Dose.infusion("35 mg"), DoseError, "exactly two of amount, duration"),
    (
        lambda: Dose.infusion(rate="-1 mg/h", duration=1),
        DoseError,
        "rate must be a positive amount per time",
    ),
    (
        lambda: Dose.infusion("35 mg", rate="0.75 mg/kg/h"),
        DoseError,
        "must both be per kg or both absolute",
    ),
    (
        lambda: Regimen([Dose.bolus("1 mg", time=5), Dose.bolus("1 mg", time=1)]),
        DoseError,
        r"doses must be in time order: doses\[1\] at 1 h",
    ),
    (
        lambda: Regimen([Dose.bolus("1 mg"), "2 mg"]),
        DoseError,
        r"doses\[1\] must be a Dose; got str",
    ),
    (
        lambda: Regimen.every(Dose.bolus("1 mg"), interval="0 h", n=2),
        DoseError,
        "interval must be > 0 h",
    ),
    (
        lambda: Regimen.every(Dose.bolus("1 mg"), interval="1 h", n=0),
        DoseError,
        "n must be a whole number >= 1",
    ),
    (
        lambda: Regimen.at([0, 3], Dose.bolus("1 mg", time="5 min")),
        DoseError,
        r"Regimen.at places the dose at the given times, so its own time "
        r"\(0.0833333 h\) would be lost",
    ),
    (
        lambda: Regimen.at([0, math.inf], Dose.bolus("1 mg")),
        ValueError,
        "must be finite",
    ),
]


@pytest.mark.parametrize("call,exc,message", BAD)
def test_bad_input_is_rejected_not_clamped(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda: ks.Dose.bolus("35 g"), r"a dose of 35000 mg is far above"),
        (lambda: ks.Dose.bolus("1e9 mg"), r"a dose of 1e\+09 mg is far above"),
        (
            lambda: ks.Dose.bolus("25 mg/kg", route="im"),
            r"a dose of 25 mg/kg is far above any plausible single ketamine dose "
            r"\(more than 20 mg/kg; the label's largest induction dose is 13 mg/kg "
            r"intramuscularly\)\. Check the unit: '35000 mg' written for 35000 ug",
        ),
        (
            lambda: ks.Dose.infusion("35000 mg", duration="40 min"),
            r"a dose of 35000 mg is far above .* \(more than 2000 mg per hour of "
            r"infusion;",
        ),
        (
            lambda: ks.Dose.infusion("72 g", duration="24 h"),
            r"a dose of 72000 mg over 24 h \(3000 mg per hour\) is far above",
        ),
    ],
)
def test_a_dose_far_above_any_ketamine_dose_warns(make, said):
    with pytest.warns(ks.ValidityWarning, match=said):
        make()


def test_large_but_real_doses_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ks.Dose.bolus("13 mg/kg", route="im")  # the label's largest induction dose
        ks.Dose.bolus("1950 mg", route="im")  # 13 mg/kg x 150 kg
        ks.Dose.infusion("20 mg/kg", duration="1 min")  # per hour, counting 1 h
        ks.Dose.infusion("10 g", duration="72 h")  # 139 mg/h: days of sedation
        ks.Dose.infusion("10 mg/kg", duration="1 h")  # status epilepticus rates
