"""Quantities with units: every unreadable value is refused naming the argument."""

import numpy as np
import pytest

import ketasim as ks
from ketasim.units import Quantity, UnitError, parse_quantity, to_hours


@pytest.mark.parametrize(
    "value,expected",
    [
        ((3, "mg"), Quantity(3, "mg")),
        ((np.float64(0.5), "mg/kg"), Quantity(0.5, "mg/kg")),
        (("3", "mg"), Quantity(3.0, "mg")),  # a string holding only a number
        ("40 min", Quantity(40.0, "min")),
        (Quantity(2.0, "h"), Quantity(2.0, "h")),
    ],
)
def test_accepted_forms(value, expected):
    assert parse_quantity(value, what="amount") == expected


@pytest.mark.parametrize(
    "value,error,message",
    [
        # the pair's own unit would be dropped: 5 mg read while the user wrote mg/kg
        (
            ("5 mg", "mg/kg"),
            TypeError,
            "amount ('5 mg', 'mg/kg'): a (number, unit) pair "
            "needs a number first, such as (40, 'min'); got str '5 mg'",
        ),
        (
            (True, "mg"),
            TypeError,
            "amount (True, 'mg'): a (number, unit) pair needs a number first",
        ),
        (
            (35, 3),
            UnitError,
            "amount (35, 3): a unit must be a string such as 'L/h'; got 3 (int)",
        ),
        (
            Quantity("abc", "mg"),
            TypeError,
            "amount Quantity(value='abc', unit='mg'): the "
            "value of a Quantity must be a number; got str 'abc'",
        ),
        (
            Quantity(35.0, "furlong"),
            UnitError,
            "amount Quantity(value=35.0, unit='furlong'): unknown unit 'furlong'",
        ),
        ("35 furlongs", UnitError, "amount '35 furlongs': unknown unit 'furlongs'"),
        ("35 mg extra", UnitError, "amount '35 mg extra': unknown unit 'mg extra'"),
        ("lots", UnitError, "cannot read amount 'lots'"),
        (35, UnitError, "amount 35 has no unit; give a string such as '35 mg'"),
    ],
)
def test_refused_naming_the_argument(value, error, message):
    with pytest.raises(error) as info:
        parse_quantity(value, what="amount")
    assert str(info.value).startswith(message)


def test_dose_amount_errors_name_the_amount():
    with pytest.raises(
        TypeError,
        match=r"^amount \('5 mg', 'mg/kg'\): a \(number, "
        r"unit\) pair",
    ):
        ks.Dose(("5 mg", "mg/kg"), route="iv")
    with pytest.raises(UnitError, match=r"^amount '35 furlongs': unknown unit"):
        ks.Dose("35 furlongs", route="iv")


def test_times_name_the_argument():
    with pytest.raises(
        UnitError,
        match=r"^interval '3 fortnights': unknown unit "
        r"'fortnights'",
    ):
        to_hours("3 fortnights", what="interval")
    with pytest.raises(
        UnitError,
        match=r"^interval must be a time \(h, min, d, "
        r"week\); got '3 mg'",
    ):
        to_hours("3 mg", what="interval")
    with pytest.raises(ValueError, match=r"^interval must be finite; got '1e999 h'"):
        to_hours("1e999 h", what="interval")
