"""Population sampling: reproducible, chunk-invariant, correlated as specified."""

import numpy as np
import pytest

import ketasim as ks
from ketasim.population import normals

from .test_simulate import METABOLITE_MODEL


def iiv_model(tmp_path):
    p = tmp_path / "iiv.toml"
    p.write_text(
        METABOLITE_MODEL
        + """
[variability.CL]
distribution = "lognormal"
cv = 0.3
source = "test"
[variability.V]
distribution = "lognormal"
omega2 = 0.04
source = "test"
[variability.fm]
distribution = "logitnormal"
omega = 0.5
iov_omega = 0.2
source = "test"
[[correlations]]
parameters = ["CL", "V"]
correlation = 0.6
source = "test"
[residual.ketamine]
proportional = 0.1
source = "test"
"""
    )
    return ks.load_model(p)


def test_same_seed_same_patients_any_chunking():
    a = normals(7, "iiv", np.arange(1000), 4)
    b = np.vstack(
        [
            normals(7, "iiv", np.arange(s, min(s + 137, 1000)), 4)
            for s in range(0, 1000, 137)
        ]
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, normals(8, "iiv", np.arange(1000), 4))


def test_normals_are_standard_normal():
    z = normals(1, "iiv", np.arange(200_000), 2).ravel()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # Kolmogorov–Smirnov against N(0, 1)
    from scipy import stats

    assert stats.kstest(z[:20000], "norm").pvalue > 1e-3


def test_iiv_correlation_and_cv(tmp_path):
    m = iiv_model(tmp_path)
    pop = ks.Population(20000, seed=2)
    eta = pop.etas(m, pop.subjects)
    assert np.std(eta["CL"]) == pytest.approx(np.sqrt(np.log1p(0.09)), rel=0.03)
    assert np.std(eta["V"]) == pytest.approx(0.2, rel=0.03)
    assert np.corrcoef(eta["CL"], eta["V"])[0, 1] == pytest.approx(0.6, abs=0.02)


def test_covariates_realistic_and_correlated():
    cov = ks.Population(20000, seed=3).covariates_for(np.arange(20000))
    assert 70 < np.median(cov["weight"]) < 80
    assert np.corrcoef(cov["weight"], cov["height"])[0, 1] > 0.3
    men = cov["female"] == 0
    assert cov["weight"][men].mean() > cov["weight"][~men].mean() + 5
    assert cov["age"].min() >= 18 and cov["age"].max() <= 65


def test_population_simulation_reproducible_and_sliced(tmp_path):
    m = iiv_model(tmp_path)
    reg = ks.Regimen.every(ks.Dose.bolus("100 mg"), interval="1 d", n=3)
    times = ks.grid("3 d", "1 h")
    a = ks.simulate(m, reg, population=ks.Population(50, seed=4), times=times)
    b = ks.simulate(m, reg, population=ks.Population(80, seed=4), times=times)
    np.testing.assert_array_equal(a.concentration.values, b.concentration.values[:50])
    assert a.attrs["seed"] == 4
    # typical values when variability is off
    c = ks.simulate(
        m, reg, population=ks.Population(5, seed=4, iiv=False, iov=False), times=times
    )
    np.testing.assert_allclose(c.parameters.sel(parameter="CL").values, 60.0)


def test_residual_error_observed(tmp_path):
    m = iiv_model(tmp_path)
    ds = ks.simulate(
        m,
        ks.Dose.bolus("100 mg"),
        times=ks.grid("12 h", "1 h")[1:],
        population=ks.Population(4000, seed=5, iiv=False),
        output=ks.Trajectories(residual=True),
    )
    ratio = (ds.observed / ds.concentration).sel(analyte="ketamine").values
    assert np.std(ratio) == pytest.approx(0.1, rel=0.05)
    np.testing.assert_array_equal(
        ds.observed.sel(analyte="norketamine"),
        ds.concentration.sel(analyte="norketamine"),
    )


def test_validity_warning(tmp_path):
    m = iiv_model(tmp_path)
    p = tmp_path / "valid.toml"
    p.write_text(
        m.path.read_text().replace(
            "[parameters.V]",
            "[covariates.age]\nunit = 'y'\nreference = 40\n"
            "[validity]\nage = [18, 40]\n[parameters.V]",
        )
    )
    with pytest.warns(ks.ValidityWarning, match="have age outside"):
        ks.simulate(
            ks.load_model(p),
            ks.Dose.bolus("1 mg"),
            times=[1.0],
            population=ks.Population(100, seed=1),
        )


def test_validity_warning_for_given_covariates_once_per_call(tmp_path):
    """Covariates given to simulate are checked as a Population's are, on every
    path, once per call (a Dask run does not repeat it per chunk), and the warning
    points at the caller's line."""
    import warnings

    m = iiv_model(tmp_path)
    p = tmp_path / "valid.toml"
    p.write_text(
        m.path.read_text().replace(
            "[parameters.V]",
            "[covariates.age]\nunit = 'y'\nreference = 40\n"
            "[validity]\nage = [18, 40]\n[parameters.V]",
        )
    )
    model = ks.load_model(p)
    cov = {"age": [10.0, 30.0, 50.0, 35.0]}
    for kw in ({}, {"output": ks.Metrics()}, {"chunks": 1}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ks.simulate(
                model,
                ks.Dose.bolus("1 mg"),
                times=[0.0, 1.0],
                subjects=ks.Subjects(covariates=cov),
                **kw,
            )
        hits = [w for w in caught if issubclass(w.category, ks.ValidityWarning)]
        assert len(hits) == 1, (kw, [str(w.message) for w in caught])
        assert "2 of 4 patients have age outside [18, 40] y" in str(hits[0].message)
        assert hits[0].filename == __file__, kw
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ks.simulate(
            model,
            ks.Dose.bolus("1 mg"),
            times=[1.0],
            chunks=10,
            population=ks.Population(100, seed=1),
        ).compute()
    assert len([w for w in caught if issubclass(w.category, ks.ValidityWarning)]) == 1


BAD = [
    (lambda: ks.Population(0, seed=1), "n must be a whole number >= 1"),
    (lambda: ks.Population(10, seed=-1), "seed must be a whole number >= 0"),
    (lambda: ks.Population(10, seed=1, female=1.5), "female is a proportion"),
    (
        lambda: ks.Population(3, seed=1, covariates={"weight": [70, 80]}),
        "needs 3 values",
    ),
    (
        lambda: ks.Population(2, seed=1, covariates={"wt": [70, 80]}),
        "unknown covariate 'wt'",
    ),
    (lambda: ks.Population(2, seed=1, japanese=0.2, asian=0.1), "cannot exceed"),
]


@pytest.mark.parametrize("call,message", BAD)
def test_population_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


IOV_MODEL = """
schema_version = 1
id = "iov"
name = "depot + central with IOV on ka and F"
drug = "ketamine"
enantiomer = "racemic"
population = "test"
sampling = "unknown"
grade = "choice"
[[references]]
key = "t"
citation = "test"
[parameters.V]
value = 50
unit = "L"
description = "volume"
source = "test"
grade = "choice"
[parameters.CL]
value = 10
unit = "L/h"
description = "clearance"
source = "test"
grade = "choice"
[parameters.ka]
value = 1.5
unit = "1/h"
description = "absorption"
source = "test"
grade = "choice"
[parameters.F]
value = 0.4
unit = "1"
description = "bioavailability"
source = "test"
grade = "choice"
[compartments.depot]
role = "depot"
[compartments.central]
role = "central"
volume = "V"
analyte = "ketamine"
[[flows]]
from = "depot"
to = "central"
k = "ka"
[[flows]]
from = "central"
cl = "CL"
[routes.oral]
kind = "extravascular"
target = "depot"
fraction = "F"
[analytes.ketamine]
compartment = "central"
mw = 237.73
[variability.ka]
distribution = "lognormal"
iov_omega = 0.5
source = "test"
[variability.F]
distribution = "logitnormal"
iov_omega = 0.8
source = "test"
"""


@pytest.mark.parametrize(
    "times",
    [
        [2.0, 6.0, 7.0, 12.0],
        # occasion 1 steps 1 h and 2 h, occasion 2 first 0.5 h and then 1 h again: the
        # 1 h propagator must be rebuilt with occasion 2's ka (a stale cache slot of
        # occasion 1 used to be found)
        [1.0, 2.0, 4.0, 6.5, 7.5, 8.5],
    ],
)
def test_iov_switches_rate_matrix_per_session(tmp_path, times):
    """Occasion 2 starts at the second dose: ka and F change from then on, for the
    whole system. Oracle: piecewise scipy expm with each occasion's parameters."""
    import scipy.linalg

    p = tmp_path / "iov.toml"
    p.write_text(IOV_MODEL)
    m = ks.load_model(p)
    pop = ks.Population(3, seed=8, iiv=False)
    reg = ks.Regimen(
        [
            ks.Dose.bolus("100 mg", route="oral"),
            ks.Dose.bolus("100 mg", route="oral", time="6 h"),
        ]
    )
    times = np.array(times)
    ds = ks.simulate(m, reg, population=pop, times=times)
    iov = pop.iov_etas(m, pop.subjects, 2)
    for s in range(3):
        ka = 1.5 * np.exp(iov["ka"][s])
        F = 1 / (1 + np.exp(-(np.log(0.4 / 0.6) + iov["F"][s])))

        def A(k):
            return np.array([[-k, 0.0], [k, -10 / 50]])

        x0 = np.array([100 * F[0], 0.0])
        x6 = scipy.linalg.expm(A(ka[0]) * 6.0) @ x0 + [100 * F[1], 0.0]
        ref = [
            (scipy.linalg.expm(A(ka[0]) * t) @ x0)[1]
            if t < 6.0
            else (scipy.linalg.expm(A(ka[1]) * (t - 6.0)) @ x6)[1]
            for t in times
        ]
        np.testing.assert_allclose(
            ds.concentration.values[s, 0], np.array(ref) / 50 * 1000, rtol=1e-10
        )


def test_adding_sessions_leaves_earlier_sessions_alone(tmp_path):
    """A patient's first sessions get the same inter-occasion effects whether or not
    more sessions follow, so 'course' vs 'course + boosters' on one Population
    differ only by the boosters (they used to be drawn in an order that depended on
    the number of sessions)."""
    p = tmp_path / "iov.toml"
    p.write_text(IOV_MODEL)
    m = ks.load_model(p)
    pop = ks.Population(50, seed=3, iiv=False)
    two, five = pop.iov_etas(m, pop.subjects, 2), pop.iov_etas(m, pop.subjects, 5)
    for name in ("ka", "F"):
        np.testing.assert_array_equal(five[name][:, :2], two[name])
        assert np.std(five[name][:, 2:]) > 0.1  # later sessions drawn, not zero
    short = ks.Regimen([ks.Dose.bolus("100 mg", route="oral")])
    long = short + ks.Regimen([ks.Dose.bolus("100 mg", route="oral", time="3 d")])
    t = ks.grid("2 d", "1 h")
    a = ks.simulate(m, short, population=pop, times=t)
    with pytest.warns(ks.GridWarning):
        b = ks.simulate(m, long, population=pop, times=t)
    np.testing.assert_array_equal(a.concentration.values, b.concentration.values)


def test_iov_block_path_equals_single_path(tmp_path):
    p = tmp_path / "iov.toml"
    p.write_text(IOV_MODEL)
    reg = ks.Regimen(
        [
            ks.Dose.bolus("100 mg", route="oral"),
            ks.Dose.bolus("100 mg", route="oral", time="6 h"),
        ]
    )
    times = ks.grid("12 h", "30 min")
    big = ks.simulate(
        p, reg, population=ks.Population(40, seed=8, iiv=False), times=times
    )
    small = ks.simulate(
        p, reg, population=ks.Population(3, seed=8, iiv=False), times=times
    )
    np.testing.assert_array_equal(
        big.concentration.values[:3], small.concentration.values
    )


def test_metrics_mode_validity_counts_every_chunk():
    """ks.Metrics() runs a population chunk by chunk; the ValidityWarning counts
    the patients of all chunks (it used to count the first chunk's)."""
    import warnings

    pop = ks.Population(30, seed=1)  # adults; herd_2007 is valid for age 1-14 y
    kw = dict(population=pop, times=ks.grid("6 h", "30 min"))
    with warnings.catch_warnings(record=True) as whole:
        warnings.simplefilter("always")
        ks.simulate("herd_2007", ks.Dose.bolus("1 mg/kg"), output=ks.Metrics(), **kw)
    with warnings.catch_warnings(record=True) as chunked:
        warnings.simplefilter("always")
        ks.simulate(
            "herd_2007", ks.Dose.bolus("1 mg/kg"), output=ks.Metrics(chunk=10), **kw
        )
    msgs = [str(w.message) for w in chunked]
    assert msgs == [str(w.message) for w in whole]
    assert any(m.startswith("30 of 30 patients have age outside") for m in msgs)
    assert any("of 30 patients have weight outside" in m for m in msgs)


def test_iov_on_an_observed_volume_is_rejected(tmp_path):
    """The kernels convert amounts to concentrations with one volume per subject;
    a per-session volume of the observed compartment would be used for session 1
    only, so it is an error rather than a silently wrong concentration."""
    p = tmp_path / "iov_v.toml"
    p.write_text(
        IOV_MODEL.replace(
            "[variability.ka]",
            "[variability.V]\n"
            'distribution = "lognormal"\niov_omega = 0.3\n'
            'source = "test"\n[variability.ka]',
        )
    )
    m = ks.load_model(p)
    reg = ks.Regimen(
        [
            ks.Dose.bolus("100 mg", route="oral"),
            ks.Dose.bolus("100 mg", route="oral", time="6 h"),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"changes the volume of an observed "
        r"compartment \(V\) from occasion 1 to 2",
    ):
        ks.simulate(
            m, reg, population=ks.Population(3, seed=1, iiv=False), times=[1.0, 8.0]
        )
    one = ks.simulate(
        m, reg.doses[0], population=ks.Population(3, seed=1, iiv=False), times=[1.0]
    )  # one session: nothing switches
    assert np.all(one.concentration.values > 0)
    ks.simulate(
        m,
        reg,
        population=ks.Population(3, seed=1, iov=False, iiv=False),
        times=[1.0, 8.0],
    )


# ---- children: adult sizes only (issue 16, "no silent wrong number") -------------
@pytest.mark.parametrize("age", [(2, 6), (0, 65), (17.9, 30)])
def test_an_age_range_reaching_below_18_without_weights_is_refused(age):
    """The drawn sizes are adults' (a 3-year-old weighed 47-119 kg and got 36 mg of a
    0.5 mg/kg dose on herd_2007)."""
    with pytest.raises(
        ValueError,
        match=(
            rf"age range {age[0]:g}-{age[1]:g} y reaches below 18 y, but children "
            r"would get adult weights .*: give each patient's weight in kg \(or "
            r"height in cm and bmi\) in the covariates table, e.g. Population\(n, "
            r"seed, covariates=\{'weight': \.\.\., 'age': \.\.\.\}\)"
        ),
    ):
        ks.Population(200, seed=1, age=age)


@pytest.mark.parametrize(
    "table",
    [
        {"age": [30, 3.0, 40]},
        {"age": [30, 3.0, 40], "height": [170, 95, 180]},
        {"age": [30, 3.0, 40], "bmi": [22, 16, 25]},
    ],
)
def test_a_table_with_children_and_no_weight_is_refused(table):
    with pytest.raises(
        ValueError,
        match=r"covariates\['age'\] has children \("
        r"patient 1 is 3 y, under 18\) but the table gives no weight",
    ):
        ks.Population(3, seed=1, covariates=table)


def test_adult_age_range_is_accepted():
    pop = ks.Population(50, seed=1, age=(18, 30))
    age = pop.covariates_for(pop.subjects)["age"]
    assert age.min() >= 18 and age.max() <= 30


def test_children_with_weights_get_their_weights_and_their_mg_per_kg_dose():
    """Oracle: a 1 mg/kg bolus puts weight x 1 mg in the body (amounts at t = 0+,
    summed over compartments, before any elimination)."""
    w = np.array([12.0, 15.0, 20.0])
    pop = ks.Population(
        3, seed=1, age=(2, 6), covariates={"weight": w}, iiv=False, iov=False
    )
    cov = pop.covariates_for(pop.subjects)
    np.testing.assert_array_equal(cov["weight"], w)
    assert ((cov["age"] >= 2) & (cov["age"] <= 6)).all()
    # adult heights and BMIs would be wrong numbers on a child: unknown instead
    assert np.isnan(cov["height"]).all() and np.isnan(cov["bmi"]).all()
    ds = ks.simulate(
        "herd_2007",
        ks.Dose.bolus("1 mg/kg"),
        population=pop,
        times=[0.0, 1e-9],
        output=ks.Trajectories(amounts=True),
    )
    np.testing.assert_allclose(
        ds.amount.isel(time=1).sum("compartment").values, w, rtol=1e-6
    )
    np.testing.assert_array_equal(ds.weight.values, w)


def test_children_with_height_and_bmi_get_weight_bmi_times_height_squared():
    pop = ks.Population(
        2,
        seed=1,
        covariates={"age": [4.0, 40.0], "height": [100.0, 180.0], "bmi": [16.0, 25.0]},
    )
    cov = pop.covariates_for(pop.subjects)
    np.testing.assert_allclose(cov["weight"], [16.0, 81.0])
    np.testing.assert_array_equal(cov["height"], [100.0, 180.0])


def test_an_adult_with_a_weight_keeps_the_drawn_height():
    """Only children lose the drawn (adult) height: adults keep it, as before."""
    pop = ks.Population(
        2, seed=1, covariates={"age": [4.0, 40.0], "weight": [16.0, 80.0]}
    )
    cov = pop.covariates_for(pop.subjects)
    assert np.isnan(cov["height"][0]) and 145 <= cov["height"][1] <= 205
    np.testing.assert_allclose(cov["bmi"][1], 80.0 / (cov["height"][1] / 100) ** 2)
