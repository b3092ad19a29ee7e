"""Routes: the lozenge/troche route, your own route (Model.with_route), at-home
courses, route and analyte evidence, and the limits of what a model predicts.

Oracles: published numbers (Chong 2006 sublingual lozenge F and Tmax) reproduced
by simulation; invariants (AUC ratio = bioavailability, a lag shifts the curve,
a zero-order input straight into the central compartment is an IV infusion,
superposition of a split dose's pathways); Tmax solved by scipy reproduced by the
numba kernels on a fine grid.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ketasim as ks
from ketasim.dosing import DoseError
from ketasim.modelfile import ModelFileError, models_dir
from ketasim.scenariofile import ScenarioFileError, load_scenarios

TYPICAL = ks.Subjects()  # the model's reference covariates, no random effects
DEFAULT = "clements_nimmo_1981"


@pytest.fixture(scope="module")
def cn():
    return ks.load_model(DEFAULT)


def _curve(model, dose, t):
    ds = ks.simulate(
        model, dose, times=t, subjects=TYPICAL, output=ks.Trajectories(auc=True)
    )
    c = ds.concentration.isel(subject=0, analyte=0).values
    auc = ds.auc.isel(subject=0, analyte=0).values
    return c, auc, ds


# ---- the troche reproduces its published numbers ------------------------------


def test_troche_reproduces_chong_2006_bioavailability_and_tmax(cn):
    """Chong 2006 (abstract): sublingual lozenge F 32 %, Tmax 0.76 h. The troche
    route, simulated against a 10 mg IV dose (as in the study), gives F = AUC
    ratio per mg and the typical Tmax on a 0.6-s grid."""
    t = np.concatenate([np.arange(0, 3, 1e-4), np.arange(3, 96.0, 0.5)])
    c_tr, auc_tr, _ = _curve(cn, ks.Dose.bolus("25 mg", route="troche"), t)
    _, auc_iv, _ = _curve(
        cn, ks.Dose.infusion("10 mg", duration="30 min"), t
    )  # Chong: 10 mg IV
    # the tail beyond 96 h (t1/2 3 h) is < 1e-9 of the AUC
    f = (auc_tr[-1] / 25.0) / (auc_iv[-1] / 10.0)
    assert f == pytest.approx(0.32, rel=2e-4)
    assert t[np.argmax(c_tr)] == pytest.approx(0.76, abs=2e-3)  # 0.1 min


def test_troche_is_the_sum_of_its_pathways(cn):
    """Superposition: the troche equals f_TR of a dose through the mucosa plus the
    rest swallowed through first pass (the oral route scaled by 1 - f_TR)."""
    f_tr = cn.parameters["f_TR"].value
    t = np.arange(0, 24, 0.05)
    c_tr, *_ = _curve(cn, ks.Dose.bolus("50 mg", route="troche"), t)
    c_po, *_ = _curve(cn, ks.Dose.bolus("50 mg", route="oral"), t)
    mucosal = cn.with_route("mucosal", ka=f"{cn.parameters['ka_TR'].value} 1/h")
    c_mu, *_ = _curve(mucosal, ks.Dose.bolus("50 mg", route="mucosal"), t)
    np.testing.assert_allclose(
        c_tr, f_tr * c_mu + (1 - f_tr) * c_po, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(
    ("route", "tmax_h"),
    [("sublingual", 0.75), ("oral", 0.96), ("intranasal", 17.9 / 60), ("troche", 0.76)],
)
def test_default_model_routes_peak_where_their_files_say(cn, route, tmax_h):
    """ketasim.routes.tmax_of (scipy expm) against the numba kernels' curve."""
    from ketasim.routes import tmax_of

    t = np.arange(0, 3, 1.0 / 600)
    c, *_ = _curve(cn, ks.Dose.bolus("25 mg", route=route), t)
    assert t[np.argmax(c)] == pytest.approx(tmax_of(cn, route), abs=2e-3)
    assert tmax_of(cn, route) == pytest.approx(tmax_h, abs=0.5 / 60)


def test_singh_spray_route_gives_its_table_6_bioavailability_and_tmax(cn):
    """intranasal_singh2022 against the numbers typed from Singh 2022
    (Pharmacotherapy) Table 6: AUC after 30 mg IN over AUC after 30 mg IV is the
    30-mg F, 13 %; the peak falls within the table's geometric-mean Tmax of the
    three doses, 14-23 min; and the Yanagihara spray's 45 % is a different product
    (the two routes differ by F only)."""
    t = np.arange(0, 120, 0.25)
    _, auc_in, _ = _curve(cn, ks.Dose.bolus("30 mg", route="intranasal_singh2022"), t)
    _, auc_yan, _ = _curve(cn, ks.Dose.bolus("30 mg", route="intranasal"), t)
    _, auc_iv, _ = _curve(cn, ks.Dose.bolus("30 mg"), t)
    assert auc_in[-1] / auc_iv[-1] == pytest.approx(0.13, rel=1e-8)
    assert auc_yan[-1] / auc_iv[-1] == pytest.approx(0.45, rel=1e-8)
    fine = np.arange(0, 2, 1.0 / 600)  # 6 s
    c, *_ = _curve(cn, ks.Dose.bolus("30 mg", route="intranasal_singh2022"), fine)
    assert 14 <= fine[np.argmax(c)] * 60 <= 23


# ---- your own route ---------------------------------------------------------


def test_with_route_is_a_new_model_with_provenance(cn):
    im = cn.with_route(
        "im", bioavailability=0.9, ka="3 1/h", evidence="my product sheet"
    )
    assert im.id == "clements_nimmo_1981+im"
    assert im.derived_from == DEFAULT
    assert im.routes["im"].grade == "user"
    assert im.changes == (
        "route 'im' added: bioavailability 0.9, ka 3 1/h [evidence: my product sheet]",
    )
    assert "im" not in cn.routes  # the published model is untouched
    assert im.parameters["F_im"].grade == "user"
    _, _, ds = _curve(im, ks.Dose.bolus("35 mg", route="im"), np.arange(0, 2, 0.5))
    assert ds.attrs["model_id"] == "clements_nimmo_1981+im"
    assert ds.attrs["model_derived_from"] == DEFAULT
    assert ds.attrs["model_changes"] == im.changes[0]
    assert ds.attrs["model_sha256"] == ""  # not the published file's hash
    twice = im.with_route("troche2", bioavailability=0.3, ka=1.0, id="my_model")
    assert (twice.id, twice.derived_from, len(twice.changes)) == (
        "my_model",
        DEFAULT,
        2,
    )


def test_replacing_a_route_says_so(cn):
    m = cn.with_route("sublingual", bioavailability=0.2, ka=1.44)
    assert m.changes[0].startswith("route 'sublingual' replaced: ")
    assert m.id == "clements_nimmo_1981+sublingual"


@pytest.mark.parametrize("f", [0.2, 0.93])
def test_auc_ratio_is_the_bioavailability(cn, f):
    t = np.arange(0, 120, 0.25)
    m = cn.with_route("im", bioavailability=f, ka="4 1/h")
    _, auc_im, _ = _curve(m, ks.Dose.bolus("40 mg", route="im"), t)
    _, auc_iv, _ = _curve(m, ks.Dose.bolus("40 mg"), t)
    assert auc_im[-1] / auc_iv[-1] == pytest.approx(f, rel=1e-8)


def test_tmax_matched_ka_reproduces_tmax_by_simulation(cn):
    m = cn.with_route("im", bioavailability=0.9, tmax="20 min")
    ka = m.parameters["ka_im"].value
    assert re.fullmatch(
        rf"route 'im' added: bioavailability 0\.9, ka {ka:.4g} 1/h \(solved for "
        r"Tmax 0\.3333 h\)",
        m.changes[0],
    )
    t = np.arange(0, 2, 1.0 / 3600)  # 1 s
    c, *_ = _curve(m, ks.Dose.bolus("50 mg", route="im"), t)
    assert t[np.argmax(c)] * 60 == pytest.approx(20.0, abs=1.0 / 60)


def test_lag_shifts_the_curve(cn):
    t = np.arange(0, 12, 0.1)
    base = cn.with_route("x", bioavailability=0.5, ka=2.0)
    lagged = cn.with_route("x", bioavailability=0.5, ka=2.0, lag="30 min")
    c0, *_ = _curve(base, ks.Dose.bolus("10 mg", route="x"), t)
    c1, *_ = _curve(lagged, ks.Dose.bolus("10 mg", route="x"), t)
    np.testing.assert_allclose(c1[5:], c0[:-5], rtol=1e-10, atol=1e-12)
    assert np.all(c1[:6] == 0)


def test_zero_order_input_into_central_is_an_infusion(cn):
    """No ka: the input goes straight into the central compartment, over
    ``duration``: a 40-min IV infusion, to rounding."""
    t = np.arange(0, 8, 1 / 12)
    m = cn.with_route("pump", duration="40 min")
    c_pump, *_ = _curve(m, ks.Dose.bolus("0.5 mg/kg", route="pump"), t)
    c_iv, *_ = _curve(m, ks.Dose.infusion("0.5 mg/kg", duration="40 min"), t)
    np.testing.assert_allclose(c_pump, c_iv, rtol=1e-12, atol=1e-12)


def test_split_route_from_python_matches_the_bundled_troche(cn):
    f = cn.parameters["f_TR"].value
    m = cn.with_route(
        "my_troche",
        ks.Absorption(fraction=f, tmax="0.76 h"),
        ks.Absorption(fraction="rest", bioavailability=0.24, depot="gut"),
    )
    assert m.parameters["ka_my_troche_1"].value == pytest.approx(
        cn.parameters["ka_TR"].value, rel=5e-4
    )  # the file's 2.123 /h, rounded to 4 digits


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"name": "i m", "ka": 1.0},
            r"route name must be a word such as 'im' or 'troche' .* got 'i m'",
        ),
        (
            {"name": "im", "ka": 1.0, "tmax": "20 min"},
            r"give one of ka, tmax and depot for a pathway; got ka, tmax",
        ),
        (
            {"name": "im", "bioavailability": 93},
            r"bioavailability must be a fraction in \[0, 1\] \(0\.93 for 93 %\); "
            r"got 93",
        ),
        (
            {"name": "im", "ka": "2 L/h"},
            r"ka must be a rate constant such as '2\.5 1/h' or '0\.04 1/min'; "
            r"got '2 L/h'",
        ),
        ({"name": "im", "ka": -1.0}, r"ka must be a finite rate constant > 0"),
        (
            {"name": "im", "ka": 1.0, "into": "liver"},
            r"into='liver' is not a compartment of model 'clements_nimmo_1981'",
        ),
        (
            {"name": "im", "ka": 1.0, "id": DEFAULT},
            r"id must be a new model id, different from 'clements_nimmo_1981'",
        ),
        (
            {"name": "im", "tmax": "1 s"},
            r"no absorption rate constant within 0\.001-1000 1/h gives route 'im' "
            r"of model 'clements_nimmo_1981' a typical Tmax of 0\.0002778 h",
        ),
    ],
)
def test_with_route_refuses(cn, kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises((ValueError, TypeError), match=match):
        cn.with_route(name, **kwargs)


def test_with_route_refuses_fractions_above_the_dose(cn):
    with pytest.raises(ValueError, match=r"the pathways' fractions add up to 1\.2 > 1"):
        cn.with_route(
            "x", ks.Absorption(fraction=0.6, ka=1), ks.Absorption(fraction=0.6, ka=2)
        )
    with pytest.raises(ValueError, match=r"only one pathway may take fraction='rest'"):
        cn.with_route(
            "x",
            ks.Absorption(fraction="rest", ka=1),
            ks.Absorption(fraction="rest", ka=2),
        )


def test_scenario_file_route(tmp_path):
    """[scenarios.routes.<name>] builds the same model as with_route."""
    path = tmp_path / "s.toml"
    path.write_text(
        textwrap.dedent(
            """
            schema_version = 1
            [output]
            end = "6 h"
            step = "10 min"
            [[scenarios]]
            name = "im"
            model = "clements_nimmo_1981"
            [scenarios.routes.im]
            bioavailability = 0.9
            ka = "3 1/h"
            lag = "5 min"
            evidence = "product sheet"
            [scenarios.regimen]
            protocol = "doses"
            [[scenarios.regimen.doses]]
            amount = "35 mg"
            route = "im"
            [[scenarios]]
            name = "troche"
            model = "clements_nimmo_1981"
            [[scenarios.routes.t2.pathways]]
            fraction = 0.1
            ka = "2 1/h"
            [[scenarios.routes.t2.pathways]]
            fraction = "rest"
            bioavailability = 0.24
            depot = "gut"
            [scenarios.regimen]
            protocol = "doses"
            [[scenarios.regimen.doses]]
            amount = "35 mg"
            route = "t2"
            """
        )
    )
    sf = load_scenarios(path)
    m = sf.scenarios[0].model
    ref = ks.load_model(DEFAULT).with_route(
        "im", bioavailability=0.9, ka="3 1/h", lag="5 min", evidence="product sheet"
    )
    assert (m.id, m.changes) == (ref.id, ref.changes)
    assert m.parameters["lag_im"].value == pytest.approx(5 / 60)
    m2 = sf.scenarios[1].model
    assert m2.id == "clements_nimmo_1981+t2"
    assert [p.target for p in m2.routes["t2"].pathways] == ["t2_1_depot", "gut"]


def test_scenario_file_route_errors_name_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        textwrap.dedent(
            """
            schema_version = 1
            [output]
            end = "6 h"
            [[scenarios]]
            name = "im"
            model = "clements_nimmo_1981"
            [scenarios.routes.im]
            bioavailability = 1.5
            [scenarios.regimen]
            protocol = "doses"
            [[scenarios.regimen.doses]]
            amount = "35 mg"
            route = "im"
            """
        )
    )
    with pytest.raises(
        ScenarioFileError,
        match=r"\[scenarios\[0\]\.routes\.im\] bioavailability must be a fraction",
    ):
        load_scenarios(path)


# ---- at-home courses ----------------------------------------------------------


def test_home_course_daily_and_weekly():
    d = ks.Dose.bolus("50 mg", route="troche")
    daily = ks.home_course(d, weeks=1, clock=["08:00", "20:00"], first_day=1)
    # t = 0 is 09:00 on day 0
    assert daily.times[:4] == (23.0, 35.0, 47.0, 59.0)
    assert len(daily) == 14
    twice = ks.home_course(d, per_week=2, weeks=2, clock="21:00")
    assert twice.times == (12.0, 84.0, 180.0, 252.0)


def test_home_course_combines_with_clinic_sessions():
    clinic = ks.six_infusion_course(sessions=2)  # days 0 and 3 at 09:00
    home = ks.home_course(
        ks.Dose.bolus("50 mg", route="troche"), per_week=3, weeks=1, clock="20:00"
    )
    both = clinic + home
    assert both.times == (0.0, 11.0, 59.0, 72.0, 107.0)
    assert [d.route for d in both] == ["iv", "troche", "troche", "iv", "troche"]
    after = clinic.then(
        ks.home_course(ks.Dose.bolus("50 mg", route="troche"), weeks=1, first_day=1)
    )
    assert after.times[2] == 72.0 + 35.0  # 20:00 the day after the last session


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"per_week": 8}, r"per_week must be a whole number 1-7 \(7 = daily\); got 8"),
        ({"weeks": 0}, r"weeks must be a whole number >= 1; got 0"),
        (
            {"clock": "08:00"},
            r"the first home dose at 08:00 on day 0 comes before t = 0 \(09:00 on "
            r"day 0\); start on first_day=1",
        ),
        ({"clock": "25:00"}, r"clock\[0\] must be a time of day 'HH:MM'; got '25:00'"),
        ({"clock": ["20:00", "20:00"]}, r"clock lists the same time twice"),
    ],
)
def test_home_course_refuses(kwargs, match):
    with pytest.raises(DoseError, match=match):
        ks.home_course(ks.Dose.bolus("50 mg", route="troche"), **kwargs)


# ---- evidence of every route and analyte; limits ---------------------------------


@pytest.mark.parametrize("name", ks.list_models())
def test_every_route_and_analyte_states_its_evidence(name):
    m = ks.load_model(name)
    for r in m.routes.values():
        assert r.grade in ("P", "T", "C", "U", "choice"), (name, r.name)
        assert r.evidence.strip(), (name, r.name)
    for a in m.analytes:
        assert a.grade in ("P", "T", "C", "U", "choice"), (name, a.name)
        assert a.evidence.strip(), (name, a.name)


def test_benchmark_only_routes_are_marked_and_not_in_examples():
    marked = {
        (n, r.name)
        for n in ks.list_models()
        for r in ks.load_model(n).routes.values()
        if r.benchmark_only
    }
    assert marked == {("domino", "intranasal")}
    examples = Path(__file__).resolve().parents[1] / "examples"
    for path in examples.glob("*.toml"):
        sf = load_scenarios(path)
        for s in sf.scenarios:
            for route in s.regimen.routes:
                assert not s.model.routes[route].benchmark_only, (path.name, s.name)


def test_route_table_in_models_readme_is_current(tmp_path):
    from ketasim.docs import update_route_table

    copy = tmp_path / "README.md"
    shutil.copy(models_dir() / "README.md", copy)
    assert update_route_table(copy) is False, (
        "models/README.md is stale: run python -c 'from ketasim.docs import "
        "update_route_table; update_route_table()'"
    )
    text = copy.read_text()
    for n in ks.list_models():
        for r in ks.load_model(n).routes:
            assert f"| {n} | " in text and f" | {r} | " in text


def test_ketasim_models_lists_route_grades():
    out = subprocess.run(
        [sys.executable, "-m", "ketasim", "models"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "intranasal (choice, benchmark only)" in out
    assert "troche (choice)" in out and "sublingual (P)" in out
    assert "s_norketamine (T, limited: refuse)" in out  # fanta_2015, after oral
    assert "s_norketamine (T, limited: warn)" in out  # flint_2017, after a bolus


def test_fanta_refuses_s_norketamine_after_oral_doses():
    with pytest.raises(
        DoseError,
        match=r"model 'fanta_2015' cannot predict s_norketamine after doses\[0\] "
        r"\(10 mg by route 'oral' at 0 h\): after oral S-ketamine most "
        r"S-norketamine is formed presystemically",
    ):
        ks.simulate("fanta_2015", ks.Dose.bolus("10 mg", route="oral"), times=[0, 1])
    # the parent alone: a new model without the metabolite
    po = ks.load_model("fanta_2015").without_analytes("s_norketamine")
    assert (po.id, po.derived_from, po.changes) == (
        "fanta_2015-s_norketamine",
        "fanta_2015",
        ("analyte 's_norketamine' dropped",),
    )
    ds = ks.simulate(po, ks.Dose.bolus("10 mg", route="oral"), times=[0, 1])
    assert list(ds.analyte.values) == list(po.analyte_names)
    assert "s_norketamine" not in po.analyte_names and len(po.analyte_names) == 1
    assert ds.attrs["model_changes"] == "analyte 's_norketamine' dropped"
    with pytest.raises(ValueError, match=r"name the analytes to drop, among"):
        ks.load_model("fanta_2015").without_analytes("norketamine")
    # a common name (alias) drops the analyte it stands for, and a name given
    # twice (or as name and alias) drops it once: the same model as above
    for names in (("noresketamine",), ("s_norketamine", "S-norketamine")):
        same = ks.load_model("fanta_2015").without_analytes(*names)
        assert (same.id, same.analyte_names, same.changes) == (
            po.id,
            po.analyte_names,
            po.changes,
        )
    with pytest.raises(
        ValueError,
        match=r"^name the analytes to drop, among 's_ketamine', 's_norketamine'; "
        r"got 'r_norketamine', 3$",
    ):
        ks.load_model("fanta_2015").without_analytes("s_ketamine", "r_norketamine", 3)
    # a route added by the user inherits the limit of the oral route
    m = ks.load_model("fanta_2015").with_route("buccal", bioavailability=0.3, ka=2)
    with pytest.raises(DoseError, match=r"cannot predict s_norketamine"):
        ks.simulate(m, ks.Dose.bolus("10 mg", route="buccal"), times=[0, 1])


FLINT_CHILD = ks.Subjects(covariates={"weight": 15.0, "age": 4.0})


def test_flint_warns_after_a_bolus_not_during_a_long_infusion():
    with pytest.warns(
        ks.ModelLimitWarning,
        match=r"model 'flint_2017' cannot predict s_norketamine after doses\[0\] "
        r"\(2 mg/kg by route 'iv' at 0 h\), a bolus shorter than 6 h: its apparent "
        r"volume V/Fm is fixed at 1 L",
    ):
        ks.simulate(
            "flint_2017",
            ks.Dose.bolus("2 mg/kg"),
            times=[0, 1],
            subjects=FLINT_CHILD,
            progress=False,
        )
    ks.simulate(  # warnings are errors here: a 24-h infusion does not warn
        "flint_2017",
        ks.Dose.infusion(rate="1 mg/kg/h", duration="24 h"),
        times=[0, 12, 24],
        subjects=FLINT_CHILD,
        progress=False,
    )


@pytest.mark.parametrize(
    ("edit", "key", "match"),
    [
        (
            ("[routes.iv]\n", "[routes.iv]\nbioavailability = 0.5\n"),
            "routes.iv",
            r"an intravenous route takes only `target`",
        ),
        (
            ('evidence = "F 24 %', '# evidence = "F 24 %'),
            "routes.oral.evidence",
            r"is missing",
        ),
        (
            ('grade = "C"\nevidence = "disposition', 'grade = "Q"\nevidence = "d'),
            "analytes.ketamine.grade",
            r"must be one of 'P', 'T', 'C', 'U', 'choice'; got 'Q'",
        ),
        (
            (
                "[variability.CL]\n",
                '[[analytes.ketamine.limits]]\naction = "warn"'
                '\nreason = "x"\nroutes = ["rectal"]\n[variability.CL]\n',
            ),
            "analytes.ketamine.limits[0].routes",
            r"names an undefined route 'rectal'",
        ),
        (
            (
                'fraction = "F_PO"\ndescription = "swallowed',
                'fraction = "F_PO"\nbioavailability = 1.5\ndescription = "swallowed',
            ),
            "routes.oral.bioavailability",
            r"must be between 0 and 1; got 1\.5",
        ),
    ],
)
def test_model_file_route_keys_are_checked(tmp_path, edit, key, match):
    text = (models_dir() / f"{DEFAULT}.toml").read_text()
    old, new = edit
    assert text.count(old) == 1
    path = tmp_path / f"{DEFAULT}.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ModelFileError, match=match) as err:
        ks.load_model(path)
    assert err.value.key == key


def test_scenario_file_home_course_merges_with_clinic_sessions():
    """examples/route_comparison.toml: [[regimen.plus]] with protocol home_course
    merges the evening troches into the clinic course by time."""
    path = Path(__file__).resolve().parents[1] / "examples" / "route_comparison.toml"
    sf = load_scenarios(path)
    reg = next(s for s in sf.scenarios if s.name == "IV + home troche 100 mg").regimen
    assert reg.times == (0.0, 35.0, 72.0, 107.0, 168.0, 203.0, 240.0, 275.0)
    assert [d.route for d in reg] == ["iv", "troche"] * 4


@pytest.mark.parametrize("name, enan", [("hasan_2021_s", "S"), ("hasan_2021_r", "R")])
def test_hasan_models_say_how_to_dose_the_studys_racemate(name, enan):
    """The study dosed racemic ketamine; a dose without drug= is the enantiomer
    itself (the documented default), so the model says to pass drug="ketamine",
    and that gives exactly half the enantiomer (racemic_fraction 0.5)."""
    model = ks.load_model(name)
    text = " ".join(model.description.split())
    assert 'give its doses as racemic ketamine, Dose(..., drug="ketamine")' in text
    assert f'"10 mg" alone is twice the {enan}-ketamine of 10 mg racemate' in text
    t = [0.5, 1.0, 4.0]
    plain = ks.simulate(name, ks.Dose.bolus("10 mg"), times=t)
    racemic = ks.simulate(name, ks.Dose.bolus("10 mg", drug="ketamine"), times=t)
    np.testing.assert_allclose(
        racemic.concentration.values, 0.5 * plain.concentration.values, rtol=1e-12
    )


def test_without_analytes_drops_their_effect_sites_and_endpoints():
    full = ks.load_model("simons_2022")
    m = full.without_analytes("s_norketamine", "s_hydroxynorketamine")
    kept_sites = [s.name for s in full.effect_sites if s.analyte == "s_ketamine"]
    assert [s.name for s in m.effect_sites] == kept_sites
    lost = [e for e in full.effects if {d.analyte for d in e.drivers} - {"s_ketamine"}]
    assert lost, "simons_2022 should have an endpoint driven by a metabolite"
    assert [e.name for e in m.effects] == [
        e.name for e in full.effects if e not in lost
    ]
    for e in lost:
        assert any(c.startswith(f"endpoint {e.name!r} dropped") for c in m.changes)
    # what is kept is unchanged: parent and its effect site as in the full model
    dose = ks.Dose.infusion("20 mg", duration="20 min", route="iv")
    out = ks.Trajectories(effects=True)
    a = ks.simulate(full, dose, times=ks.grid("6 h", "10 min"), output=out)
    b = ks.simulate(m, dose, times=ks.grid("6 h", "10 min"), output=out)
    np.testing.assert_array_equal(
        b.concentration.sel(analyte="s_ketamine"),
        a.concentration.sel(analyte="s_ketamine"),
    )
    np.testing.assert_array_equal(
        b.effect_site_concentration.sel(effect_site=kept_sites),
        a.effect_site_concentration.sel(effect_site=kept_sites),
    )
