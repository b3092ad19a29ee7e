"""Body-size descriptors (ketasim.bodysize) and doses per kg of them, against
hand-computed values of the published formulas, and the weight warning of models
that scale with total body weight but publish no weight range."""

import warnings

import numpy as np
import pytest

import ketasim as ks
from ketasim.bodysize import (
    adjusted_body_weight,
    dosing_weight,
    ideal_body_weight,
    lean_body_weight,
)

TIMES = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]


# hand-computed: Devine 1974, 50 kg (men) / 45.5 kg (women) + 2.3 kg per inch over 60
@pytest.mark.parametrize(
    "height,female,ibw",
    [
        (177.8, 0, 73.0),  # 70 in
        (167.64, 1, 59.3),  # 66 in
        (152.4, 0, 50.0),  # 60 in
        (190.5, 1, 45.5 + 2.3 * 15.0),  # 75 in
    ],
)
def test_ideal_body_weight_devine(height, female, ibw):
    assert float(ideal_body_weight(height, female)) == pytest.approx(ibw, rel=1e-12)


# hand-computed: Janmahasatian 2005, BMI = 80 / 1.8^2 = 24.691358...
@pytest.mark.parametrize(
    "w,h,female,lbw",
    [
        (80.0, 180.0, 0, 9270 * 80.0 / (6680 + 216 * (80.0 / 3.24))),  # 61.7314
        (60.0, 165.0, 1, 9270 * 60.0 / (8780 + 244 * (60.0 / 1.65**2))),  # 39.2868
        (186.0, 180.0, 0, 1724220.0 / (6680 + 216 * 186.0 / 3.24)),
    ],
)
def test_lean_body_weight_janmahasatian(w, h, female, lbw):
    assert float(lean_body_weight(w, h, female)) == pytest.approx(lbw, rel=1e-12)


def test_lean_body_weight_values():
    assert float(lean_body_weight(80.0, 180.0, 0)) == pytest.approx(61.7314, abs=1e-4)
    assert float(lean_body_weight(60.0, 165.0, 1)) == pytest.approx(39.2868, abs=1e-4)


def test_adjusted_body_weight_is_ibw_plus_0_4_of_the_excess():
    # 70-in man, 123 kg: 73 + 0.4 (123 - 73) = 93
    assert float(adjusted_body_weight(123.0, 177.8, 0)) == pytest.approx(93.0)
    # below ideal the formula is applied as written (no switch to TBW)
    assert float(adjusted_body_weight(63.0, 177.8, 0)) == pytest.approx(69.0)


def test_devine_below_five_feet_warns_and_absurd_heights_are_refused():
    with pytest.warns(ks.ValidityWarning, match=r"1 of 2 subjects are shorter than"):
        ibw = ideal_body_weight([150.0, 170.0], [1, 1])
    assert ibw[0] == pytest.approx(45.5 + 2.3 * (150.0 / 2.54 - 60.0))
    with pytest.raises(ValueError, match=r"ideal body weight is <= 0 kg for height 90"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ks.ValidityWarning)
            ideal_body_weight(90.0, 0)
    with pytest.raises(ValueError, match=r"female must be 0 \(man\) or 1"):
        ideal_body_weight(170.0, 0.5)
    with pytest.raises(ValueError, match=r"covariate 'height' must be finite; got nan"):
        lean_body_weight(70.0, np.nan, 0)


def test_body_size_functions_refuse_height_in_metres_and_weight_in_grams():
    # 1.8 m for 180 cm gave a lean body weight of 0.0139 kg (BMI 246 914)
    msg = (
        r"covariate 'height' must be in \[30, 250\] cm \(a plausible human value; "
        r"check the unit\); got 1.8 for subject 0"
    )
    for fn in (lean_body_weight, adjusted_body_weight):
        with pytest.raises(ValueError, match=msg):
            fn(80.0, 1.8, 0)
    with pytest.raises(ValueError, match=msg):
        ideal_body_weight(1.8, 0)
    with pytest.raises(
        ValueError,
        match=r"covariate 'weight' must be in \[0.3, 400\] kg \(a plausible human "
        r"value; check the unit\); got 80000 for subject 1",
    ):
        lean_body_weight([80.0, 80000.0], 180.0, 0)


def test_dosing_weight_names_what_is_missing():
    with pytest.raises(ValueError, match=r"needs each subject's height \(cm\), and "):
        dosing_weight("lean", {"weight": np.array([70.0]), "female": np.array([0.0])})
    with pytest.raises(
        ValueError,
        match=r"sex \(female = 0 or 1\), and subject 1 lacks it \(1 of 2 subjects do\)",
    ):
        dosing_weight(
            "ideal",
            {
                "weight": np.array([70.0, 80.0]),
                "female": np.array([0.0, np.nan]),
                "height": np.array([170.0, 180.0]),
            },
        )
    with pytest.raises(ValueError, match=r"weight_basis must be one of"):
        dosing_weight("fat", {"weight": np.array([70.0])})


def test_dose_validates_its_weight_basis():
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min", weight_basis="lean")
    assert d.weight_basis == "lean"
    assert repr(d) == "Dose(0.5 mg/kg (lean) iv at 0 h over 0.6667 h)"
    assert ks.Dose.bolus("1 mg/kg", weight_basis="ideal").weight_basis == "ideal"
    with pytest.raises(ks.DoseError, match=r"weight_basis must be one of 'total'"):
        ks.Dose.bolus("1 mg/kg", weight_basis="LBW")
    with pytest.raises(ks.DoseError, match=r"this dose is 35 mg, which does not scale"):
        ks.Dose.bolus("35 mg", weight_basis="lean")
    reg = ks.Regimen.every(d, interval="3 d", n=2)
    assert "0.5 mg/kg (lean)" in repr(reg)


SUBJECTS = {
    "weight": np.array([80.0, 150.0, 60.0]),
    "height": np.array([180.0, 175.0, 165.0]),
    "female": np.array([0.0, 0.0, 1.0]),
}


def _by_hand(basis):
    w, h, f = SUBJECTS["weight"], SUBJECTS["height"], SUBJECTS["female"]
    ibw = np.where(f == 1, 45.5, 50.0) + 2.3 * (h / 2.54 - 60.0)
    bmi = w / (h / 100.0) ** 2
    return {
        "total": w,
        "ideal": ibw,
        "lean": np.where(
            f == 1, 9270 * w / (8780 + 244 * bmi), 9270 * w / (6680 + 216 * bmi)
        ),
        "adjusted": ibw + 0.4 * (w - ibw),
    }[basis]


@pytest.mark.parametrize("basis", ["total", "ideal", "lean", "adjusted"])
def test_simulated_dose_scales_with_the_named_weight(basis):
    """dose_mg = 0.5 mg/kg x the hand-computed weight (HCl x 0.867), and the
    concentrations are those of a flat dose of that many mg (linearity)."""
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl", weight_basis=basis)
    sub = ks.Subjects(covariates=SUBJECTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ks.ValidityWarning)  # 150 kg
        ds = ks.simulate("clements_nimmo_1981", d, subjects=sub, times=TIMES)
        flat = ks.simulate(
            "clements_nimmo_1981",
            ks.Dose.infusion("1 mg", duration="40 min"),
            subjects=sub,
            times=TIMES,
        )
    want = 0.5 * _by_hand(basis) * (237.73 / 274.19)
    np.testing.assert_allclose(ds.dose_mg.values[:, 0], want, rtol=2e-4)
    np.testing.assert_allclose(
        ds.concentration.values,
        flat.concentration.values * ds.dose_mg.values[:, 0, None, None],
        rtol=1e-12,
    )
    assert list(ds.dose_weight_basis.values) == [basis]


def test_population_metrics_path_uses_each_patients_lean_weight():
    pop = ks.Population(6, seed=3, iiv=False)
    lean = ks.Dose.infusion("0.5 mg/kg", duration="40 min", weight_basis="lean")
    total = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ks.ValidityWarning)
        a = ks.simulate("clements_nimmo_1981", lean, population=pop, times=TIMES)
        m = ks.simulate(
            "clements_nimmo_1981",
            lean,
            population=pop,
            times=TIMES,
            output=ks.Metrics(),
        )
        b = ks.simulate("clements_nimmo_1981", total, population=pop, times=TIMES)
    w, h, f = a.weight.values, a.height.values, a.female.values
    bmi = w / (h / 100.0) ** 2
    lbw = np.where(f == 1, 9270 * w / (8780 + 244 * bmi), 9270 * w / (6680 + 216 * bmi))
    ratio = a.concentration.values[:, 0, 1:] / b.concentration.values[:, 0, 1:]
    np.testing.assert_allclose(ratio, (lbw / w)[:, None] * np.ones((1, 3)), rtol=1e-12)
    np.testing.assert_allclose(
        m.cmax.values[:, 0, 0], a.concentration.values[:, 0, :].max(axis=1), rtol=1e-12
    )


def test_lean_dose_without_height_is_refused_by_name():
    d = ks.Dose.bolus("1 mg/kg", weight_basis="lean")
    with pytest.raises(
        ks.DoseError,
        match=r"doses\[0\] \(1 mg/kg by route 'iv' at 0 h\): a dose per kg of lean "
        r"body weight needs each subject's sex",
    ):
        ks.simulate(
            "clements_nimmo_1981",
            d,
            subjects=ks.Subjects(covariates={"weight": 70.0}),
            times=TIMES,
        )


def test_weight_scaled_model_without_weight_range_warns_from_160_kg():
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    with pytest.warns(
        ks.ValidityWarning,
        match=r"1 of 1 patients weigh >= 160 kg \(BMI >= 40 kg/m², WHO class III "
        r"obesity, at any height up to 2 m\), up to 186 kg: model "
        r"'clements_nimmo_1981' scales its parameters with total body weight and "
        r"publishes no weight range it was estimated on, so their volumes and "
        r"clearances are extrapolated linearly \(x2.66 the 70-kg reference",
    ):
        ks.simulate(
            "clements_nimmo_1981",
            d,
            subjects=ks.Subjects(covariates={"weight": 186.0}),
            times=TIMES,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ks.simulate(
            "clements_nimmo_1981",
            d,
            subjects=ks.Subjects(covariates={"weight": 159.0}),
            times=TIMES,
        )
    with pytest.warns(ks.ValidityWarning, match=r"1 of 2 patients weigh >= 160 kg"):
        ks.simulate(
            "clements_nimmo_1981",
            d,
            population=ks.Population(
                2, seed=1, covariates={"weight": np.array([165.0, 70.0])}
            ),
            times=TIMES,
        )


def test_a_published_weight_range_warns_instead():
    """perez_ruixo_2021 declares weight [39, 170] kg: its own range warns, not the
    severe-obesity rule."""
    d = ks.Dose.bolus("28 mg", route="intranasal", device=1)
    with pytest.warns(ks.ValidityWarning) as rec:
        ks.simulate(
            "perez_ruixo_2021",
            d,
            subjects=ks.Subjects(covariates={"weight": 186.0}),
            times=TIMES,
        )
    text = " ".join(str(w.message) for w in rec)
    assert "outside [39, 170] kg" in text and "severely obese" not in text


def test_dask_chunks_scale_each_patient_like_the_in_memory_run():
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min", weight_basis="lean")
    pop = ks.Population(4, seed=2, iiv=False)
    a = ks.simulate("clements_nimmo_1981", d, population=pop, times=TIMES)
    b = ks.simulate(
        "clements_nimmo_1981", d, population=pop, times=TIMES, chunks=2
    ).compute()
    np.testing.assert_array_equal(a.dose_mg.values, b.dose_mg.values)
    np.testing.assert_array_equal(a.concentration.values, b.concentration.values)


def test_scenario_files_take_a_weight_basis(tmp_path):
    from ketasim.scenariofile import ScenarioFileError, load_scenarios

    text = """schema_version = 1
[output]
end = "2 h"
step = "30 min"
[[scenarios]]
name = "lean"
model = "clements_nimmo_1981"
[scenarios.regimen]
protocol = "doses"
[[scenarios.regimen.doses]]
amount = "0.5 mg/kg"
duration = "40 min"
weight_basis = "WB"
"""
    p = tmp_path / "s.toml"
    p.write_text(text.replace("WB", "lean"))
    dose = load_scenarios(p).scenarios[0].regimen.doses[0]
    assert dose.weight_basis == "lean" and dose.per_kg
    p.write_text(text.replace("WB", "fat"))
    with pytest.raises(ScenarioFileError, match=r"weight_basis must be one of"):
        load_scenarios(p)
