"""The course builders refuse a template dose they would have to change: not a
Dose, or a Dose with its own time (the builder places it at its own times, so
the time would be lost). Messages checked to the letter."""

from __future__ import annotations

import re

import pytest

import ketasim as ks
from ketasim.dosing import DoseError

_TIMED = ks.Dose.bolus("25 mg", route="sublingual", time="5 min")


@pytest.mark.parametrize(
    "build, message",
    [
        (
            ks.clinic_course,
            "clinic_course places the dose at the session times, so its own time "
            "(0.0833333 h) would be lost; build the dose without time= (use clock= "
            "for the time of day)",
        ),
        (
            ks.home_course,
            "home_course places the dose at the clock times, so its own time "
            "(0.0833333 h) would be lost; build the dose without time= (use clock= "
            "and first_day=)",
        ),
    ],
)
def test_course_refuses_a_timed_dose(build, message):
    with pytest.raises(DoseError, match=f"^{re.escape(message)}$"):
        build(_TIMED)


@pytest.mark.parametrize("build", [ks.clinic_course, ks.home_course])
@pytest.mark.parametrize("dose, name", [("25 mg", "str"), (None, "NoneType")])
def test_course_refuses_what_is_not_a_dose(build, dose, name):
    with pytest.raises(DoseError, match=f"^dose must be a Dose; got {name}$"):
        build(dose)
