"""Doses that ketasim plans (find_dose, sweep, tci) get the plausibility warning a
user-built Dose gets: a ValidityWarning above 2000 mg or 20 mg/kg (that much per
hour for an infusion longer than an hour), with the same message. The amounts are
checked against closed forms and a hand-written TCI controller, not against the
code under test.

pyproject.toml ignores this warning outside ``pytest.warns`` (other tests give
absurd doses on purpose), so every check here records warnings explicitly."""

import warnings

import numpy as np
import pytest

import ketasim as ks
from ketasim.planning import Target, find_dose, sweep, tci

from .test_planning import MODEL, V1_70, V1S, _bolus_subjects, _reference_tci
from .test_simulate import one_compartment as _one_compartment

FAR_ABOVE = "is far above any plausible single ketamine dose"
ADVICE = (
    r"the label's largest induction dose is 13 mg/kg intramuscularly\)\. Check the "
    r"unit: '35000 mg' written for 35000 ug is 1000 times the dose"
)


def _validity_warnings(call):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    return result, [
        str(w.message) for w in seen if issubclass(w.category, ks.ValidityWarning)
    ]


def test_a_user_built_dose_warns_with_the_message_planned_doses_share():
    with pytest.warns(
        ks.ValidityWarning,
        match=rf"^a dose of 2700 mg {FAR_ABOVE} \(more than 2000 mg; {ADVICE}$",
    ):
        ks.Dose.bolus("2700 mg")


@pytest.mark.parametrize("method", ["linear", "search"])
def test_find_dose_warns_when_the_dose_found_is_implausible(method):
    # an iv bolus of D mg: Cmax = 1000 D / V1; the median of 7 subjects' V1 is
    # 90 L, so a median Cmax of 30 000 ng/mL needs 2700 mg
    target = Target("cmax", "30000 ng/mL")
    found, said = _validity_warnings(
        lambda: find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            target,
            subjects=_bolus_subjects(),
            times=[0, 1],
            method=method,
            rtol=1e-9,
        )
    )
    assert found.dose.amount == pytest.approx(30.0 * np.median(V1S), rel=1e-8)
    # once: the trial doses of the root search (up to 5120 mg) do not warn
    assert len(said) == 1, said
    assert said[0].startswith(f"a dose of 2700 mg {FAR_ABOVE} (more than 2000 mg;")
    # a plausible target: no warning
    _, said = _validity_warnings(
        lambda: find_dose(
            MODEL,
            ks.Dose.bolus("10 mg"),
            Target("cmax", "150 ng/mL"),
            subjects=_bolus_subjects(),
            times=[0, 1],
            method=method,
        )
    )
    assert said == []


def test_find_dose_checks_each_dose_of_the_regimen_per_kg():
    """Two infusions, 1 and 0.2 mg/kg over 40 min, scaled together: the first
    goes above 20 mg/kg, the second stays below, and only the first warns."""
    reg = ks.Regimen(
        [
            ks.Dose.infusion("1 mg/kg", duration="40 min"),
            ks.Dose.infusion("0.2 mg/kg", duration="40 min", time=12.0),
        ]
    )
    # typical 70-kg patient, a bolus of x mg/kg: Cmax = 1000 x 70 / V1 at t = 0
    bolus = ks.Regimen([ks.Dose.bolus("1 mg/kg"), ks.Dose.bolus("0.5 mg/kg", time=12)])
    found, said = _validity_warnings(
        lambda: find_dose(
            MODEL, bolus, Target("cmax", "15000 ng/mL", per="dose"), times=[0, 1]
        )
    )
    x = 15.0 * V1_70 / 70.0  # 26.3 mg/kg
    assert found.dose.amount == pytest.approx(x, rel=1e-4)
    assert len(said) == 1, said
    assert said[0].startswith(
        f"a dose of {found.dose.amount:g} mg/kg {FAR_ABOVE} (more than 20 mg/kg;"
    )
    found, said = _validity_warnings(
        lambda: find_dose(
            MODEL, reg, Target("cmax", "6000 ng/mL", per="dose"), times=[0, 1]
        )
    )
    assert found.dose.amount > 20.0 > found.regimen.doses[1].amount
    assert len(said) == 1, said
    assert said[0].startswith(
        f"a dose of {found.dose.amount:g} mg/kg {FAR_ABOVE} (more than 20 mg/kg per "
        f"hour of infusion;"
    )


def test_a_dose_sweep_warns_for_an_implausible_dose(tmp_path):
    model = _one_compartment(tmp_path)
    with pytest.warns(
        ks.ValidityWarning,
        match=rf"^a dose of 2500 mg {FAR_ABOVE} \(more than 2000 mg; {ADVICE}$",
    ):
        sw = sweep(model, ks.Dose.bolus("100 mg"), "dose", ["50 mg", "2500 mg"])
    # V = 50 L: Cmax = 1000 D / 50 ng/mL
    np.testing.assert_allclose(sw.cmax.squeeze(), [1000.0, 50000.0], rtol=1e-12)
    _, said = _validity_warnings(
        lambda: sweep(model, ks.Dose.bolus("100 mg"), "dose", ["50 mg", "200 mg"])
    )
    assert said == []


H10 = 10.0 / 3600.0  # 10-s control steps, h


def test_a_tci_plan_shorter_than_an_hour_is_checked_as_one_infusion():
    """Plasma TCI to 15 000 ng/mL over 40 min: the hand-written controller gives
    about 3 700 mg in all (a 1 844-mg load into V1 = 122.7 L, then maintenance),
    more than 2000 mg within the hour, although no single 10-s step is."""
    ref = _reference_tci(15000.0, H10, 240)
    total = ref.sum() * H10
    assert total > 2000.0 > ref.max() * H10
    with pytest.warns(
        ks.ValidityWarning,
        match=rf"^a dose of {total:g} mg over the whole TCI plan \(40 min\) "
        rf"{FAR_ABOVE} \(more than 2000 mg per hour of infusion; {ADVICE}$",
    ):
        plan = tci(MODEL, "15000 ng/mL", duration="40 min")
    np.testing.assert_allclose(plan.rates.values, ref, rtol=1e-9)


def test_a_tci_plan_longer_than_an_hour_is_checked_on_its_largest_hour():
    ref = _reference_tci(15000.0, H10, 1080)  # 3 h
    hourly = np.convolve(ref * H10, np.ones(360), mode="valid")
    start = int(np.argmax(hourly))
    assert start == 0 and hourly[0] > 2000.0 > hourly[-1]
    with pytest.warns(
        ks.ValidityWarning,
        match=rf"^a dose of {hourly[0]:g} mg within one hour of the TCI plan "
        rf"\(from 0 min\) {FAR_ABOVE} \(more than 2000 mg per hour of infusion;",
    ):
        tci(MODEL, "15000 ng/mL", duration="3 h")
    # 150 ng/mL: about 25 mg in its first hour, no warning
    plan, said = _validity_warnings(lambda: tci(MODEL, "150 ng/mL", duration="3 h"))
    assert said == [] and plan.rates.size == 1080


def test_a_tci_plan_with_steps_not_dividing_an_hour_is_checked_on_a_full_hour():
    """40-min steps over 2 h to 10 000 ng/mL (the hand-written controller): the
    most given within any hour is a 40-min step and a third of the next, 2 489 mg;
    the check summed whole steps within the hour (one step, 1 974 mg) and said
    nothing."""
    h = 40.0 / 60.0
    ref = _reference_tci(10000.0, h, 3)  # mg/h per step
    hourly = max(
        ref[0] * h + ref[1] * (1 - h),
        ref[0] * (1 - h) + ref[1] * h,
        ref[1] * h + ref[2] * (1 - h),
        ref[1] * (1 - h) + ref[2] * h,
    )
    assert hourly > 2000.0 > (ref * h).max()
    assert hourly == pytest.approx(ref[0] * h + ref[1] * (1 - h), rel=1e-12)
    with pytest.warns(
        ks.ValidityWarning,
        match=rf"^a dose of {hourly:g} mg within one hour of the TCI plan "
        rf"\(from 0 min\) {FAR_ABOVE} \(more than 2000 mg per hour of infusion;",
    ):
        plan = tci(MODEL, "10000 ng/mL", duration="2 h", step="40 min")
    np.testing.assert_allclose(plan.rates.values, ref, rtol=1e-9)
