"""Heights drawn given a weight: the adult joint model (height normal by sex,
log BMI normal, both truncated, weight = BMI x height²) conditioned on the weight."""

import warnings

import numpy as np
import pytest
from scipy import integrate, stats

import ketasim as ks
from ketasim.bodysize import ideal_body_weight
from ketasim.population import uniforms

MEN = (176.0, 7.0)
WOMEN = (163.0, 6.5)
LOG_BMI, LOG_BMI_SD = np.log(25.5), np.sqrt(np.log1p(0.17**2))


def joint_density_given_weight(h, w, mean, sd):
    """f(h, w) = f_H(h) f_BMI(w / h²) / h² (the change of variables from (H, BMI)),
    written with scipy's own truncated normal and log-normal densities."""
    height = stats.truncnorm((145 - mean) / sd, (205 - mean) / sd, mean, sd)
    b = w / (h / 100.0) ** 2
    lb = (np.log(17.0) - LOG_BMI) / LOG_BMI_SD, (np.log(45.0) - LOG_BMI) / LOG_BMI_SD
    bmi_pdf = stats.truncnorm.pdf(np.log(b), *lb, LOG_BMI, LOG_BMI_SD) / b
    return height.pdf(h) * bmi_pdf / (h / 100.0) ** 2


def drawn_heights(n, weight, female):
    pop = ks.Population(n, seed=11, female=female, covariates={"weight": [weight] * n})
    return pop.covariates_for(pop.subjects)


@pytest.mark.parametrize(
    "weight,female,params", [(50.0, 0.0, MEN), (95.0, 1.0, WOMEN), (75.0, 0.0, MEN)]
)
def test_conditional_mean_and_sd_of_height_match_quadrature(weight, female, params):
    """Oracle: mean and SD of the conditional density by adaptive quadrature."""
    n = 20000
    cov = drawn_heights(n, weight, female)
    assert (cov["female"] == female).all()
    f = lambda h: joint_density_given_weight(h, weight, *params)  # noqa: E731
    z = integrate.quad(f, 145, 205, limit=200, points=[150, 170, 190])[0]
    m = integrate.quad(lambda h: h * f(h), 145, 205, limit=200)[0] / z
    v = integrate.quad(lambda h: (h - m) ** 2 * f(h), 145, 205, limit=200)[0] / z
    h = cov["height"]
    se = np.sqrt(v / n)
    assert abs(h.mean() - m) < 4 * se, (h.mean(), m, se)
    assert abs(h.std() / np.sqrt(v) - 1) < 0.03, (h.std(), np.sqrt(v))
    np.testing.assert_array_equal(cov["weight"], weight)  # never changed
    np.testing.assert_allclose(cov["bmi"], weight / (h / 100) ** 2, rtol=1e-14)


@pytest.mark.parametrize("weight,female", [(50.0, 0.0), (110.0, 1.0)])
def test_conditional_heights_match_a_rejection_sampler(weight, female):
    """Oracle: draw (height, BMI) from the joint model with numpy's generator, keep
    those whose weight is within 0.5 kg of ``weight``; two-sample KS test."""
    rng = np.random.default_rng(2024)
    mean, sd = WOMEN if female else MEN
    m = 4_000_000
    h = stats.truncnorm.rvs(
        (145 - mean) / sd, (205 - mean) / sd, mean, sd, size=m, random_state=rng
    )
    lb = (np.log(17.0) - LOG_BMI) / LOG_BMI_SD, (np.log(45.0) - LOG_BMI) / LOG_BMI_SD
    bmi = np.exp(
        stats.truncnorm.rvs(*lb, LOG_BMI, LOG_BMI_SD, size=m, random_state=rng)
    )
    keep = np.abs(bmi * (h / 100) ** 2 - weight) < 0.5
    assert keep.sum() > 2000
    drawn = drawn_heights(5000, weight, female)["height"]
    assert stats.ks_2samp(drawn, h[keep]).pvalue > 0.001


def test_a_50_kg_man_gets_a_plausible_height_and_ideal_weight():
    """The new-user case: 50 kg men drew heights up to 192 cm (BMI 13.5, ideal
    weight 86 kg). Given the weight, BMI stays in the model's 17-45 kg/m², so
    height <= sqrt(50 / 17) m = 171.5 cm and Devine's IBW <= 50 + 2.3 (171.5 /
    2.54 - 60) = 67.3 kg."""
    cov = drawn_heights(5000, 50.0, 0.0)
    assert cov["bmi"].min() >= 17.0 and cov["bmi"].max() <= 45.0
    assert cov["height"].max() <= 100 * np.sqrt(50 / 17)
    with warnings.catch_warnings():  # men under 152.4 cm: Devine extrapolated
        warnings.simplefilter("ignore", ks.ValidityWarning)
        ibw = ideal_body_weight(cov["height"], cov["female"])
    assert ibw.max() <= 50 + 2.3 * (100 * np.sqrt(50 / 17) / 2.54 - 60)


def test_nothing_given_draws_the_marginal_distribution_from_the_same_uniforms():
    """Oracle: scipy's truncated-normal quantiles of the covariate stream's
    uniforms (draw 1 height, draw 2 log BMI): the unconditioned path is unchanged."""
    pop = ks.Population(400, seed=5)
    cov = pop.covariates_for(pop.subjects)
    u = uniforms(5, "covariates", pop.subjects, 6)
    fem = u[:, 0] < 0.5
    mean = np.where(fem, WOMEN[0], MEN[0])
    sd = np.where(fem, WOMEN[1], MEN[1])
    h = stats.truncnorm.ppf(u[:, 1], (145 - mean) / sd, (205 - mean) / sd, mean, sd)
    np.testing.assert_allclose(cov["height"], h, rtol=1e-12)
    lb = (np.log(17.0) - LOG_BMI) / LOG_BMI_SD, (np.log(45.0) - LOG_BMI) / LOG_BMI_SD
    b = np.exp(stats.truncnorm.ppf(u[:, 2], *lb, LOG_BMI, LOG_BMI_SD))
    np.testing.assert_allclose(cov["bmi"], b, rtol=1e-12)


def test_height_given_but_weight_not_keeps_bmi_independent_of_height():
    """BMI is independent of height in the model, so its conditional draw is the
    marginal one: the same BMI as with no table, weight = BMI x height²."""
    h = np.linspace(150, 200, 50)
    cov = ks.Population(50, seed=3, covariates={"height": h}).covariates_for(range(50))
    free = ks.Population(50, seed=3).covariates_for(range(50))
    np.testing.assert_array_equal(cov["bmi"], free["bmi"])
    np.testing.assert_allclose(cov["weight"], free["bmi"] * (h / 100) ** 2)


def test_weight_and_bmi_given_imply_the_height():
    pop = ks.Population(2, seed=1, covariates={"weight": [81.0, 50.0], "bmi": [25, 20]})
    cov = pop.covariates_for(pop.subjects)
    np.testing.assert_allclose(cov["height"], [180.0, 100 * np.sqrt(2.5)])
    np.testing.assert_array_equal(cov["bmi"], [25.0, 20.0])


def test_a_derived_height_out_of_range_is_refused():
    with pytest.raises(
        ValueError,
        match=r"^height derived from 100 x sqrt\(weight / bmi\) is 316\.2 cm for "
        r"patient 1, outside \[30, 250\] cm; check weight \(kg\) and bmi \(kg/m2\), "
        r"or give height$",
    ):
        ks.Population(2, seed=1, covariates={"weight": [70.0, 300.0], "bmi": [25, 30]})


def _warned(**kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pop = ks.Population(**kw)
    return pop, [str(w.message) for w in caught if w.category is ks.ValidityWarning]


def test_an_implausible_given_weight_and_height_warns_with_the_values():
    pop, msgs = _warned(
        n=3,
        seed=1,
        covariates={
            "weight": [50.0, 80.0, 70.0],
            "height": [192.0, 180.0, 100.0],
            "age": [30.0, 40.0, 50.0],
        },
    )
    assert (
        msgs
        == [
            "2 of 3 patients are adults with a BMI outside 15-60 kg/m², implausible "
            "for an adult: patient 0 (age 30 y): weight 50 kg, height 192 cm, BMI "
            "13.6 kg/m²; patient 2 (age 50 y): weight 70 kg, height 100 cm, BMI "
            "70 kg/m². Kept as given, not clamped; check the covariates table's "
            "units (weight kg, height cm, bmi kg/m²) and rows"
        ]
        or False
    ), msgs
    cov = pop.covariates_for(pop.subjects)  # not clamped
    np.testing.assert_array_equal(cov["weight"], [50.0, 80.0, 70.0])
    np.testing.assert_allclose(cov["bmi"][0], 50 / 1.92**2)


def test_a_weight_no_adult_height_fits_warns_with_the_drawn_height():
    """300 kg: no height in 145-205 cm gives a BMI in 17-45, so the BMI truncation
    is dropped and the drawn height gives BMI >= 300 / 2.05² = 71.4 kg/m²."""
    pop, msgs = _warned(
        n=2, seed=1, female=0.0, covariates={"weight": [80.0, 300.0], "age": [30, 40]}
    )
    h = pop.covariates_for(pop.subjects)["height"][1]
    assert 145 <= h <= 205
    assert msgs == [
        f"1 of 2 patients are adults with a BMI outside 15-60 kg/m², implausible "
        f"for an adult: patient 1 (age 40 y): weight 300 kg, drawn height "
        f"{h:.4g} cm, BMI {300 / (h / 100) ** 2:.3g} kg/m². Kept as given, not "
        f"clamped; check the covariates table's units (weight kg, height cm, bmi "
        f"kg/m²) and rows"
    ]


def test_children_and_subsets_do_not_warn():
    """A child's BMI of 13 is ordinary; a subset (a Dask chunk) of a population
    that has warned does not warn again."""
    _, msgs = _warned(
        n=2,
        seed=1,
        covariates={"weight": [10.0, 12.0], "height": [85.0, 95.0]},
        age=(1, 3),
    )
    assert msgs == []
    pop, msgs = _warned(
        n=2, seed=1, covariates={"weight": [50.0, 70.0], "height": [192.0, 175.0]}
    )
    assert len(msgs) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pop.subset(0, 1)


def test_populations_guide_shows_what_the_code_prints():
    import contextlib
    import io
    import re
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "guide" / "populations.md"
    section = page.read_text().split("### Given weights, drawn heights", 1)[1]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, flags=re.S)[:2]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"np": np, "ks": ks})
    assert out.getvalue().strip() == shown.strip()


def test_an_ideal_weight_dose_uses_the_height_that_fits_the_weight():
    """Oracle: Devine's IBW written out, 50 + 2.3 (h / 2.54 - 60) kg for men, on
    the height the run reports; <= 67.3 mg at 1 mg/kg (it reached 86 mg before)."""
    pop = ks.Population(
        20, seed=1, female=0.0, covariates={"weight": [50.0] * 20}, iiv=False, iov=False
    )
    with warnings.catch_warnings():  # men under 152.4 cm: Devine extrapolated
        warnings.simplefilter("ignore", ks.ValidityWarning)
        ds = ks.simulate(
            ks.DEFAULT_MODEL,
            ks.Dose.bolus("1 mg/kg", weight_basis="ideal"),
            times=[0.0, 1.0],
            population=pop,
        )
    h = ds.height.values
    np.testing.assert_allclose(
        ds.dose_mg.values[:, 0], 50 + 2.3 * (h / 2.54 - 60), rtol=1e-12
    )
    assert ds.dose_mg.values.max() <= 50 + 2.3 * (100 * np.sqrt(50 / 17) / 2.54 - 60)


@pytest.mark.parametrize(
    "table,shown",
    [
        ({"weight": [75.0, 40.0], "bmi": [25.0, 70.0]}, "height (from weight and bmi)"),
        ({"height": [170.0, 180.0], "bmi": [25.0, 12.0]}, "height"),
        ({"bmi": [25.0, 12.0]}, "drawn height"),
    ],
)
def test_a_given_bmi_outside_15_to_60_warns(table, shown):
    pop, msgs = _warned(n=2, seed=1, covariates={**table, "age": [30.0, 40.0]})
    cov = pop.covariates_for(pop.subjects)
    assert msgs == [
        f"1 of 2 patients are adults with a BMI outside 15-60 kg/m², implausible "
        f"for an adult: patient 1 (age 40 y): weight {cov['weight'][1]:.4g} kg, "
        f"{shown} {cov['height'][1]:.4g} cm, BMI {cov['bmi'][1]:.3g} kg/m². Kept "
        f"as given, not clamped; check the covariates table's units (weight kg, "
        f"height cm, bmi kg/m²) and rows"
    ]
    np.testing.assert_array_equal(cov["bmi"], table["bmi"])


def test_a_given_sex_picks_the_height_distribution():
    """The table's ``female`` (not a sex drawn from the ``female`` proportion)
    chooses the height distribution. Oracles: scipy's truncated-normal quantiles of
    the covariate stream's height uniforms (no weight given), and the quadrature
    mean of the conditional density (weight given)."""
    n = 400
    table = {"female": np.r_[np.ones(n // 2), np.zeros(n // 2)]}
    pop = ks.Population(n, seed=5, female=0.3, covariates=table)
    cov = pop.covariates_for(pop.subjects)
    np.testing.assert_array_equal(cov["female"], table["female"])
    u = uniforms(5, "covariates", pop.subjects, 6)
    mean = np.where(table["female"] == 1, WOMEN[0], MEN[0])
    sd = np.where(table["female"] == 1, WOMEN[1], MEN[1])
    h = stats.truncnorm.ppf(u[:, 1], (145 - mean) / sd, (205 - mean) / sd, mean, sd)
    np.testing.assert_allclose(cov["height"], h, rtol=1e-12)
    # a subset (a Dask chunk) reads the table's rows at its own offset
    sub = pop.subset(150, 250)
    np.testing.assert_allclose(sub.covariates_for(sub.subjects)["height"], h[150:250])

    m = 20000
    pop = ks.Population(
        m, seed=11, female=0.0, covariates={"female": [1] * m, "weight": [50.0] * m}
    )
    hw = pop.covariates_for(pop.subjects)["height"]
    f = lambda x: joint_density_given_weight(x, 50.0, *WOMEN)  # noqa: E731
    z = integrate.quad(f, 145, 205, limit=200, points=[150, 170, 190])[0]
    mu = integrate.quad(lambda x: x * f(x), 145, 205, limit=200)[0] / z
    v = integrate.quad(lambda x: (x - mu) ** 2 * f(x), 145, 205, limit=200)[0] / z
    assert abs(hw.mean() - mu) < 4 * np.sqrt(v / m), (hw.mean(), mu)
