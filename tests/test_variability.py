"""A Population asks for inter-individual variability (``iiv=True``, the
default); a model without any is refused with the way out (``iiv=False``), on
every path: trajectories, metrics, Dask chunks and scenarios."""

import re

import numpy as np
import pytest

import ketasim as ks
from ketasim.cli import main
from ketasim.docs import _patient, _route_regimen

NO_IIV = [
    "domino",
    "elkomy_2015",
    "hijazi_2003",
    "hornik_2018",
    "kamp_2020_meta",
    "sherwin_2015",
]
DOSE = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
TIMES = ks.grid("6 h", "30 min")


def refusal(model: str, call: str, fixed: str, n: int) -> str:
    return (
        f"model '{model}' has no inter-individual variability (its file gives no "
        f"omegas), so {call} would give {n} identical patients apart from their "
        f"covariates. Pass {fixed} for typical patients that differ by covariates "
        f"only, or choose a model with variability (ketasim models lists them)"
    )


RUNS = {
    "trajectories": lambda pop: ks.simulate(
        "domino", DOSE, population=pop, times=TIMES
    ),
    "metrics": lambda pop: ks.simulate(
        "domino", DOSE, population=pop, times=TIMES, output=ks.Metrics()
    ),
    "chunks": lambda pop: ks.simulate(
        "domino", DOSE, population=pop, times=TIMES, chunks=2
    ),
    "run_scenarios": lambda pop: ks.run_scenarios(
        [ks.Scenario("a", "domino", DOSE, population=pop, times=TIMES)]
    )["a"],
}


@pytest.mark.parametrize("path", sorted(RUNS))
def test_population_with_iiv_on_a_model_without_is_refused(path):
    want = refusal(
        "domino",
        "Population(1000, seed=1)",
        "Population(1000, seed=1, iiv=False)",
        1000,
    )
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        RUNS[path](ks.Population(1000, seed=1))


@pytest.mark.parametrize("path", sorted(RUNS))
def test_iiv_false_is_accepted_on_every_path(path):
    ds = RUNS[path](ks.Population(4, seed=1, iiv=False))
    if path == "chunks":
        ds = ds.compute()
    assert ds.sizes["subject"] == 4


@pytest.mark.parametrize(
    "kw, call",
    [
        ({}, "Population(1, seed=3)"),
        (
            {"covariates": {"weight": [60.0]}, "age": (20, 40)},
            "Population(1, seed=3, covariates={'weight': ...}, age=(20.0, 40.0))",
        ),
    ],
)
def test_one_patient_or_a_covariates_table_is_refused_too(kw, call):
    fixed = call[:-1] + ", iiv=False)"
    with pytest.raises(
        ValueError, match=f"^{re.escape(refusal('domino', call, fixed, 1))}$"
    ):
        ks.simulate("domino", DOSE, population=ks.Population(1, seed=3, **kw))


def test_iiv_false_gives_the_typical_subject_repeated():
    """Bit for bit: every patient is the typical subject at its covariates."""
    n = 5
    pop = ks.Population(n, seed=1, iiv=False, covariates={"weight": np.full(n, 70.0)})
    ds = ks.simulate("domino", DOSE, population=pop, times=TIMES)
    one = ks.simulate("domino", DOSE, times=TIMES)  # reference weight 70 kg
    for i in range(n):
        np.testing.assert_array_equal(
            ds.concentration.values[i], one.concentration.values[0]
        )
    # drawn weights: the same as the table of known subjects at those weights
    drawn = ks.Population(n, seed=2, iiv=False)
    w = drawn.covariates_for(drawn.subjects)["weight"]
    a = ks.simulate("domino", DOSE, population=drawn, times=TIMES)
    b = ks.simulate(
        "domino", DOSE, subjects=ks.Subjects(covariates={"weight": w}), times=TIMES
    )
    np.testing.assert_array_equal(a.concentration.values, b.concentration.values)


def test_cli_simulate_refuses_without_no_iiv(capsys):
    argv = ["simulate", "--model", "domino", "--dose", "5 mg", "--n", "3"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == "ketasim: error: " + refusal("domino", "--n 3", "--no-iiv", 3)
    assert main([*argv, "--no-iiv"]) == 0
    assert "3 patients (seed 1, typical: no IIV)" in capsys.readouterr().out


def test_models_listing_states_variability(capsys):
    assert main(["models"]) == 0
    rows = {
        line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line
    }
    assert set(rows) == set(ks.list_models())
    for name in NO_IIV:
        assert " IIV none  IOV none  residual none " in rows[name], rows[name]
    assert " IIV 2     IOV none  residual none " in rows["clements_nimmo_1981"]
    assert " IIV 8     IOV 10    residual prop+add " in rows["simons_2022"]
    assert " residual exp " in rows["perez_ruixo_2021"]


@pytest.mark.parametrize("name", ks.list_models())
def test_every_bundled_model_has_iiv_or_is_refused(name):
    """Patients with equal covariates: they differ (IIV), or the run is refused."""
    m = ks.load_model(name)
    reg, _ = _route_regimen(m, next(iter(m.routes)))
    who = _patient(m) or {"weight": 70.0, "age": 40.0}
    cov = {k: np.full(3, v) for k, v in who.items()}
    pop = ks.Population(3, seed=1, covariates=cov)
    if name in NO_IIV:
        with pytest.raises(ValueError, match="has no inter-individual variability"):
            ks.simulate(m, reg, population=pop, times=[1.0, 4.0])
        return
    ds = ks.simulate(m, reg, population=pop, times=[1.0, 4.0])
    c = ds.concentration.values
    assert not np.array_equal(c[0], c[1]) and not np.array_equal(c[1], c[2])


def test_refusal_names_every_covariate_of_the_table():
    n = 3
    table = {"weight": np.array([60.0, 70, 80]), "age": np.array([30.0, 40, 50])}
    with pytest.raises(ValueError) as info:
        ks.simulate(
            "domino", DOSE, population=ks.Population(n, seed=1, covariates=table)
        )
    assert (
        "so Population(3, seed=1, covariates={'weight': ..., 'age': ...}) would give "
        "3 identical patients" in str(info.value)
    )
    assert (
        "Pass Population(3, seed=1, covariates={'weight': ..., 'age': ...}, "
        "iiv=False)" in str(info.value)
    )
