"""The configuration nouns of simulate (issue 17): Exact, ODE, Trajectories, Metrics
and Subjects are validated when built, frozen, and the only way to pass what the
old keywords passed; a combination without meaning cannot be written."""

import dataclasses

import numpy as np
import pytest

import ketasim as ks

T = [0.0, 1.0, 2.0]
DOSE = ks.Dose.bolus("5 mg")
BUF = np.empty((1, 1, 3))

# ---- construction-time validation, field by field ---------------------------------

BAD = [
    # ODE
    (
        lambda: ks.ODE(rtol="1e-6"),
        TypeError,
        "ODE(rtol=...) must be a number; got '1e-6' (str)",
    ),
    (
        lambda: ks.ODE(rtol=True),
        TypeError,
        "ODE(rtol=...) must be a number; got True (bool)",
    ),
    (
        lambda: ks.ODE(atol=None),
        TypeError,
        "ODE(atol=...) must be a number; got None (NoneType)",
    ),
    (
        lambda: ks.ODE(rtol=0),
        ValueError,
        "ODE needs rtol in (0, 1) and atol finite and > 0 (mg); got rtol=0, atol=1e-09",
    ),
    (
        lambda: ks.ODE(rtol=1.0),
        ValueError,
        "ODE needs rtol in (0, 1) and atol finite "
        "and > 0 (mg); got rtol=1.0, atol=1e-09",
    ),
    (
        lambda: ks.ODE(rtol=np.nan),
        ValueError,
        "ODE needs rtol in (0, 1) and atol "
        "finite and > 0 (mg); got rtol=nan, "
        "atol=1e-09",
    ),
    (
        lambda: ks.ODE(atol=0.0),
        ValueError,
        "ODE needs rtol in (0, 1) and atol finite "
        "and > 0 (mg); got rtol=1e-06, atol=0.0",
    ),
    (
        lambda: ks.ODE(atol=np.inf),
        ValueError,
        "ODE needs rtol in (0, 1) and atol "
        "finite and > 0 (mg); got rtol=1e-06, "
        "atol=inf",
    ),
    (
        lambda: ks.ODE(method="rk45"),
        ValueError,
        "ODE(method=...) must be one of ('auto', 'dopri5', 'rosenbrock'); got 'rk45'",
    ),
    (
        lambda: ks.ODE(method=None),
        ValueError,
        "ODE(method=...) must be one of ('auto', 'dopri5', 'rosenbrock'); got None",
    ),
    (
        lambda: ks.ODE(max_steps=0),
        ValueError,
        "ODE(max_steps=...) must be a whole number >= 1; got 0",
    ),
    (
        lambda: ks.ODE(max_steps=1e5),
        ValueError,
        "ODE(max_steps=...) must be a whole number >= 1; got 100000.0",
    ),
    (
        lambda: ks.ODE(max_steps=True),
        ValueError,
        "ODE(max_steps=...) must be a whole number >= 1; got True",
    ),
    # Trajectories
    (
        lambda: ks.Trajectories(amounts="yes"),
        TypeError,
        "Trajectories(amounts=...) must be True or False; got 'yes' (str)",
    ),
    (
        lambda: ks.Trajectories(auc=1),
        TypeError,
        "Trajectories(auc=...) must be True or False; got 1 (int)",
    ),
    (
        lambda: ks.Trajectories(residual=None),
        TypeError,
        "Trajectories(residual=...) must be True or False; got None (NoneType)",
    ),
    (
        lambda: ks.Trajectories(dose_windows="no"),
        TypeError,
        "Trajectories(dose_windows=...) must be True or False; got 'no' (str)",
    ),
    (
        lambda: ks.Trajectories(out=[0.0, 1.0]),
        TypeError,
        "Trajectories(out=...) must be a numpy array; got list",
    ),
    (
        lambda: ks.Trajectories(out=BUF, auc=True),
        ValueError,
        "Trajectories(out=...) holds concentrations only; it cannot be combined with "
        "amounts=True or auc=True",
    ),
    (
        lambda: ks.Trajectories(out=BUF, amounts=True),
        ValueError,
        "Trajectories(out=...) holds concentrations only; it cannot be combined with "
        "amounts=True or auc=True",
    ),
    # Metrics
    (
        lambda: ks.Metrics(chunk=0),
        ValueError,
        "Metrics(chunk=...) must be a whole number >= 1; got 0",
    ),
    (
        lambda: ks.Metrics(chunk=2.0),
        ValueError,
        "Metrics(chunk=...) must be a whole number >= 1; got 2.0",
    ),
    (
        lambda: ks.Metrics(chunk=None),
        ValueError,
        "Metrics(chunk=...) must be a whole number >= 1; got None",
    ),
    (
        lambda: ks.Metrics(above=-5),
        ValueError,
        "above must be a finite concentration >= 0 ng/mL; got -5",
    ),
    (
        lambda: ks.Metrics(above=np.nan),
        ValueError,
        "above must be a finite concentration >= 0 ng/mL; got nan",
    ),
    (
        lambda: ks.Metrics(above=[50, 100]),
        TypeError,
        "above must be one concentration in ng/mL (a number, or a string such as "
        "'100 ng/mL'); got list [50, 100]",
    ),
    (
        lambda: ks.Metrics(above="100 min"),
        ks.UnitError,
        "above must be a concentration such as 100 or '100 ng/mL'; got '100 min'",
    ),
    (
        lambda: ks.Metrics(above="400 nmol/L"),
        ks.UnitError,
        "above='400 nmol/L' is a molar level; in Metrics(above=...) it is one level in "
        "ng/mL for every analyte (a molar level is a different mass level per "
        "analyte). Give it in ng/mL, or simulate the curves and use "
        "ks.metrics(ds, 'dose', "
        "above='400 nmol/L')",
    ),
    # Subjects
    (
        lambda: ks.Subjects(covariates=[70.0]),
        TypeError,
        "Subjects(covariates=...) must be a mapping of name -> value or per-subject "
        "array (a dict or a pandas DataFrame); got list",
    ),
    (
        lambda: ks.Subjects(parameters="80 L/h"),
        TypeError,
        "Subjects(parameters=...) must be a mapping of name -> value or per-subject "
        "array (a dict or a pandas DataFrame); got str",
    ),
]


@pytest.mark.parametrize("build,exc,message", BAD)
def test_a_bad_field_is_refused_when_the_option_is_built(build, exc, message):
    with pytest.raises(exc) as info:
        build()
    assert str(info.value) == message


# ---- what cannot be written -------------------------------------------------------


@pytest.mark.parametrize(
    "build,name",
    [
        (lambda: ks.Exact(rtol=1e-6), "rtol"),  # tolerances: ODE only
        (lambda: ks.Metrics(out=BUF), "out"),  # a buffer: curves only
        (lambda: ks.Metrics(amounts=True), "amounts"),
        (lambda: ks.Metrics(auc=True), "auc"),
        (lambda: ks.Metrics(residual=True), "residual"),
        (lambda: ks.Trajectories(above=100), "above"),  # a level: metrics only
        (lambda: ks.Trajectories(chunk=10), "chunk"),
        (lambda: ks.ODE(ode_method="dopri5"), "ode_method"),  # it is ODE(method=...)
    ],
)
def test_a_combination_without_meaning_cannot_be_written(build, name):
    with pytest.raises(
        TypeError,
        match=rf"got an unexpected keyword argument "
        rf"'{name}'",
    ):
        build()


MOVED = [
    ("covariates", {"weight": 70.0}, "subjects=ks.Subjects(covariates=...)"),
    ("parameters", {"k10": "26 1/h"}, "subjects=ks.Subjects(parameters=...)"),
    ("rtol", 1e-3, "solver=ks.ODE(rtol=...)"),
    ("atol", 1e-9, "solver=ks.ODE(atol=...)"),
    ("ode_method", "dopri5", "solver=ks.ODE(method=...)"),
    ("max_steps", 10, "solver=ks.ODE(max_steps=...)"),
    ("amounts", True, "output=ks.Trajectories(amounts=True)"),
    ("auc", True, "output=ks.Trajectories(auc=True)"),
    ("residual", True, "output=ks.Trajectories(residual=True)"),
    ("out", BUF, "output=ks.Trajectories(out=...)"),
    ("dose_windows", False, "output=ks.Trajectories(dose_windows=...)"),
    ("above", 100, "output=ks.Metrics(above=...)"),
    ("chunk", 10, "output=ks.Metrics(chunk=...)"),
]


@pytest.mark.parametrize("name,value,where", MOVED, ids=[m[0] for m in MOVED])
def test_an_old_keyword_names_the_option_that_took_it(name, value, where):
    with pytest.raises(TypeError) as info:
        ks.simulate("domino", DOSE, times=T, **{name: value})
    assert str(info.value) == f"simulate() no longer takes {name}=; write {where}"


def test_an_unknown_keyword_is_an_ordinary_type_error():
    with pytest.raises(TypeError) as info:
        ks.simulate("domino", DOSE, times=T, tolerance=1e-6)
    assert str(info.value) == (
        "simulate() got an unexpected keyword argument 'tolerance'"
    )


@pytest.mark.parametrize(
    "kw,message",
    [
        (
            dict(solver="ode"),
            "solver must be ks.Exact() or ks.ODE(...); got 'ode' (str)",
        ),
        (
            dict(solver="exact"),
            "solver must be ks.Exact() or ks.ODE(...); got 'exact' (str)",
        ),
        (
            dict(solver=ks.Trajectories()),
            "solver must be ks.Exact() or ks.ODE(...); got "
            "Trajectories(amounts=False, auc=False, "
            "residual=False, dose_windows=True, out=None) "
            "(Trajectories)",
        ),
        (
            dict(output="metrics"),
            "output must be ks.Trajectories(...) or "
            "ks.Metrics(...); got 'metrics' (str)",
        ),
        (
            dict(output=ks.ODE()),
            "output must be ks.Trajectories(...) or ks.Metrics(...); "
            "got ODE(rtol=1e-06, atol=1e-09, method='auto', "
            "max_steps=100000) (ODE)",
        ),
        (
            dict(subjects={"weight": 70.0}),
            "subjects must be ks.Subjects(covariates=..., parameters=...); got dict",
        ),
        (
            dict(subjects=ks.Population(2, seed=1)),
            "subjects must be ks.Subjects("
            "covariates=..., parameters=...); got "
            "Population",
        ),
    ],
)
def test_a_wrong_kind_of_option_is_refused(kw, message):
    with pytest.raises(TypeError) as info:
        ks.simulate("domino", DOSE, times=T, **kw)
    assert str(info.value) == message


def test_population_and_subject_covariates_are_refused_together():
    with pytest.raises(ValueError) as info:
        ks.simulate(
            "domino",
            DOSE,
            times=T,
            population=ks.Population(2, seed=1),
            subjects=ks.Subjects(covariates={"weight": [60.0, 80.0]}),
        )
    assert str(info.value) == (
        "a population brings its own covariates: give them to "
        "Population(covariates=...), not to ks.Subjects(covariates=...); with a "
        "population, subjects= may carry parameters= only (individual values that "
        "replace every patient's)"
    )


# ---- frozen values ----------------------------------------------------------------


@pytest.mark.parametrize(
    "option,field,value",
    [
        (ks.ODE(), "rtol", 1e-3),
        (ks.Exact(), "name", "ode"),
        (ks.Trajectories(), "auc", True),
        (ks.Metrics(), "above", 10.0),
        (ks.Subjects(), "covariates", {"weight": 70.0}),
    ],
)
def test_options_are_frozen(option, field, value):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(option, field, value)


def test_replace_derives_a_variant_and_validates_it_again():
    base = ks.ODE(rtol=1e-8, method="rosenbrock")
    tighter = dataclasses.replace(base, atol=1e-12)
    assert tighter == ks.ODE(rtol=1e-8, atol=1e-12, method="rosenbrock")
    assert base.atol == 1e-9  # unchanged
    assert dataclasses.replace(ks.Trajectories(), auc=True).auc is True
    assert dataclasses.replace(ks.Metrics(above=10), chunk=7).chunk == 7
    assert dataclasses.replace(
        ks.Subjects(), parameters={"k10": "26 1/h"}
    ).parameters == {"k10": "26 1/h"}
    with pytest.raises(ValueError, match=r"ODE needs rtol in \(0, 1\)"):
        dataclasses.replace(base, rtol=2.0)
    with pytest.raises(
        ValueError,
        match=r"Trajectories\(out=\.\.\.\) holds "
        r"concentrations only",
    ):
        dataclasses.replace(ks.Trajectories(out=BUF), auc=True)


def test_values_are_normalized_and_compared_by_content():
    ode = ks.ODE(rtol=np.float64(1e-8), atol=1, max_steps=np.int64(500))
    assert type(ode.rtol) is float and type(ode.atol) is float
    assert type(ode.max_steps) is int and ode.max_steps == 500
    flags = ks.Trajectories(amounts=np.True_, dose_windows=np.False_)
    assert flags.amounts is True and flags.dose_windows is False
    assert ks.ODE() == ks.ODE() and ks.Exact() == ks.Exact()
    # the buffer is not part of the value (arrays have no plain equality)
    assert ks.Trajectories(out=BUF) == ks.Trajectories()
    assert repr(ks.Trajectories(out=BUF)) == (
        "Trajectories(amounts=False, auc=False, residual=False, dose_windows=True, "
        "out=<array (1, 1, 3)>)"
    )
    assert ks.Metrics(above="0.1 mg/L").level == 100.0
    assert np.isnan(ks.Metrics().level)


# ---- the defaults are the options written out -------------------------------------


def test_defaults_are_exact_trajectories_and_the_reference_subject():
    plain = ks.simulate("domino", DOSE, times=T)
    spelled = ks.simulate(
        "domino",
        DOSE,
        times=T,
        solver=ks.Exact(),
        output=ks.Trajectories(),
        subjects=ks.Subjects(),
    )
    np.testing.assert_array_equal(
        plain.concentration.values, spelled.concentration.values
    )
    assert plain.attrs["solver"] == spelled.attrs["solver"]
    assert plain.attrs["solver"].startswith("exact")
    ode = ks.simulate("domino", DOSE, times=T, solver=ks.ODE())
    assert ode.attrs["solver"].startswith("ode")
    assert ode.attrs["rtol"] == 1e-6 and ode.attrs["atol"] == 1e-9


def test_numpy_integers_count_end_to_end():
    m = ks.simulate("domino", DOSE, times=T, output=ks.Metrics(chunk=np.int64(7)))
    ref = ks.simulate("domino", DOSE, times=T, output=ks.Metrics())
    np.testing.assert_array_equal(m.cmax.values, ref.cmax.values)


def test_options_meet_the_model_in_simulate():
    """What only the model decides is refused by simulate, naming the option."""
    flint = ks.load_model("flint_2017")  # time-varying clearance: ODE only
    child = ks.Subjects(covariates={"weight": 20.0, "age": 6.0})
    with pytest.raises(
        ValueError,
        match=r"the exact solver needs a linear "
        r"time-invariant model; .* so use "
        r"solver=ks\.ODE\(\)",
    ):
        ks.simulate(flint, DOSE, times=T, subjects=child, solver=ks.Exact())
    with pytest.raises(ValueError, match=r"ks\.Metrics\(\) needs the exact solver"):
        ks.simulate("domino", DOSE, times=T, solver=ks.ODE(), output=ks.Metrics())
    with pytest.raises(
        ValueError,
        match=r"model 'domino' defines no residual error "
        r"model; ks\.Trajectories\(residual=True\)",
    ):
        ks.simulate("domino", DOSE, times=T, output=ks.Trajectories(residual=True))


def test_scenarios_forward_the_options_to_simulate():
    """run_scenarios and Scenario.run pass solver/output objects on, metrics-only
    output included."""
    sc = [
        ks.Scenario("a", "domino", DOSE, times=T),
        ks.Scenario("b", "domino", ks.Dose.bolus("10 mg"), times=T),
    ]
    ds = ks.run_scenarios(
        sc, solver=ks.ODE(rtol=1e-8), output=ks.Trajectories(auc=True)
    )
    one = sc[1].run(solver=ks.ODE(rtol=1e-8), output=ks.Trajectories(auc=True))
    np.testing.assert_array_equal(ds["b"].auc.values, one.auc.values)
    assert one.attrs["rtol"] == 1e-8
    m = ks.run_scenarios(sc, output=ks.Metrics(above=100))
    assert m["a"].time_above.attrs["long_name"].startswith("time above 100 ng/mL")
    with pytest.raises(
        TypeError,
        match=r"simulate\(\) no longer takes rtol=; write "
        r"solver=ks\.ODE\(rtol=\.\.\.\)",
    ):
        ks.run_scenarios(sc, rtol=1e-8)
