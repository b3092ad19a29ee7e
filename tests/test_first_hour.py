"""Inputs a new user writes in the first hour, found by walking the README and the
user guide: each is refused with a message saying what was wrong, what was received
and how to fix it, instead of giving a silently wrong number."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ketasim as ks
from ketasim.plotting import plot_bands


@pytest.fixture(scope="module")
def course():
    """20 patients of the default model, two sessions (small and quick)."""
    return ks.simulate(
        ks.DEFAULT_MODEL,
        ks.six_infusion_course(sessions=2),
        population=ks.Population(20, seed=3),
        times=ks.grid("4 d", "10 min"),
    )


# ---- percentiles: in percent, and (low, 50, high) where labelled as such -----------
def test_summary_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.lognormal(4, 0.3, (200, 2)),
        dims=("subject", "session"),
        attrs={"units": "ng/mL"},
    )
    got = ks.summary(da, q=(10, 50, 90))
    want = np.percentile(da.values, [10, 50, 90], axis=0)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)
    assert list(got["quantile"].values) == [10, 50, 90]
    assert got["quantile"].dtype.kind == "i"  # as given: prints 10, not 10.0
    assert got.attrs["units"] == "ng/mL"


@pytest.mark.parametrize(
    "q, error, match",
    [
        ((0.05, 0.5, 0.95), ValueError, r"q is in percent \(0-100\); got \(0\.05, "),
        ((5, 150), ValueError, r"percentiles from 0 to 100 .*got 150 in \(5, 150\)"),
        ((5, float("nan")), ValueError, r"percentiles from 0 to 100 .*got nan"),
        ("5,50,95", TypeError, r"q must be a sequence of percentiles .*got '5,50,95'"),
        (50, TypeError, r"q must be a sequence of percentiles .*got 50"),
        ((), ValueError, r"at least one percentile; got \(\)"),
        ((5, "50"), TypeError, r"q must hold numbers"),
    ],
)
def test_summary_refuses_fractions_and_bad_percentiles(q, error, match):
    da = xr.DataArray(np.arange(10.0), dims="subject", attrs={"units": "h"})
    with pytest.raises(error, match=match):
        ks.summary(da, q=q)


def test_fractions_message_says_how_to_fix():
    da = xr.DataArray(np.arange(10.0), dims="subject", attrs={"units": "h"})
    with pytest.raises(ValueError, match=r"multiply by 100: \(5\.0, 50\.0, 95\.0\)"):
        ks.summary(da, q=(0.05, 0.5, 0.95))


def test_compare_band_is_the_percentiles_it_names(course):
    table = ks.compare(course, per="session", q=(10, 50, 90))
    assert "median [P10, P90]" in str(table)
    m = ks.metrics(course, "session")
    cmax = m.cmax.isel(session=0).sel(analyte="ketamine").values
    got = table.to_dataset()["value"].isel(scenario=0, metric=0).values
    np.testing.assert_allclose(got, np.percentile(cmax, [10, 50, 90]), rtol=1e-12)


@pytest.mark.parametrize(
    "q",
    [(50, 5, 95), (5, 50, 95, 99), (5, 95), (5, 40, 95), (0.05, 0.5, 0.95)],
)
def test_compare_refuses_a_band_it_would_mislabel(course, q):
    with pytest.raises(ValueError, match=r"^q (must be three|is in percent)"):
        ks.compare(course, q=q)


def test_plot_refuses_a_band_it_would_mislabel(course):
    with pytest.raises(ValueError, match=r"q must be three percentiles \(low, 50, "):
        plot_bands(course, q=(50, 5, 95))


# ---- every returned covariate carries its unit ---------------------------------------
def test_tci_performance_covariates_carry_units():
    plan = ks.tci(ks.DEFAULT_MODEL, "100 ng/mL", duration="10 min", step="1 min")
    perf = ks.tci_performance(ks.DEFAULT_MODEL, plan, ks.Population(4, seed=1))
    units = {k: perf[k].attrs.get("units") for k in ("weight", "height", "age", "bmi")}
    assert units == {"weight": "kg", "height": "cm", "age": "y", "bmi": "kg/m2"}


def test_simulate_nonmem_covariates_carry_units(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("ID,TIME,EVID,AMT,WT\n1,0,1,35,70\n1,1,0,.,70\n2,0,1,35,90\n")
    ds = ks.simulate_nonmem("domino", ks.read_nonmem(path, "domino"))
    assert ds.weight.attrs["units"] == "kg"
    np.testing.assert_array_equal(ds.weight.values, [70.0, 90.0])


# ---- a nasal-spray DEVICE on CMT 1 (the IV route by default) -------------------------
def test_device_on_the_default_cmt_says_how_to_map_the_nasal_route(tmp_path):
    path = tmp_path / "spray.csv"
    path.write_text(
        "ID,TIME,EVID,AMT,CMT,DEVICE,WT,AGE,ASIAN,JAPANESE\n"
        "1,0,1,28,1,1,70,40,0,0\n1,1,0,.,2,.,70,40,0,0\n"
    )
    with pytest.raises(
        ValueError,
        match=r"DEVICE 1 on route 'iv' \(CMT 1\) of model 'perez_ruixo_2021', which "
        r"does not absorb per device; write 0 or leave it empty; or, if CMT 1 holds "
        r"the intranasal doses, map it: read_nonmem\(\.\.\., "
        r"route_by_cmt=\{1: 'intranasal'\}\)",
    ):
        ks.read_nonmem(path, "perez_ruixo_2021")
    table = ks.read_nonmem(path, "perez_ruixo_2021", route_by_cmt={1: "intranasal"})
    assert table.regimens[1].doses[0].route == "intranasal"
    assert table.regimens[1].doses[0].device == 1


# ---- a probability prints without a "1" unit -----------------------------------------
def test_find_dose_pta_prints_a_probability_and_meets_it():
    pop = ks.Population(40, seed=2)
    times = ks.grid("2 h", "2 min")
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    target = ks.Target("cmax", 0.9, statistic="pta", threshold="100 ng/mL")
    found = ks.find_dose(ks.DEFAULT_MODEL, dose, target, population=pop, times=times)
    assert found.units == "1"
    assert "achieved 0.9; linear scaling" in repr(found)
    ds = ks.simulate(ks.DEFAULT_MODEL, found.regimen, population=pop, times=times)
    peak = ds.concentration.max("time").sel(analyte="ketamine").values
    assert np.mean(peak >= 100 * (1 - 1e-9)) >= 0.9


# ---- an empty subjects table ---------------------------------------------------------
@pytest.mark.parametrize(
    "kw, named",
    [
        ({"covariates": {"weight": []}}, "covariate 'weight'"),
        ({"covariates": {"weight": [70.0], "age": []}}, "covariate 'age'"),
        ({"parameters": {"V1": ([], "L")}}, "parameter 'V1'"),
    ],
)
def test_an_empty_subjects_table_is_refused(kw, named):
    with pytest.raises(
        ValueError,
        match=rf"^{named} has no values \(an empty array\): a subjects table needs "
        r"at least one subject; give one value per subject, or leave it out",
    ):
        ks.simulate(
            ks.DEFAULT_MODEL, ks.Dose.bolus("35 mg"), subjects=ks.Subjects(**kw)
        )


# ---- measured levels in the wrong unit -----------------------------------------------
def _levels(conc):
    return {
        "subject": ["A"] * 3,
        "time": [2 / 3, 2.0, 4.0],
        "analyte": ["esketamine"] * 3,
        "concentration": conc,
        "weight": [70.0] * 3,
    }


_INFUSION = ks.Dose.infusion("0.25 mg/kg", duration="40 min")


def test_levels_a_thousand_times_off_warn_about_the_unit():
    # the typical fanta_2015 levels of this infusion (ng/mL), then the same in mg/L
    typical = ks.simulate(
        "fanta_2015",
        _INFUSION,
        times=[2 / 3, 2.0, 4.0],
        subjects=ks.Subjects(covariates={"weight": 70.0}),
    )
    ng = typical.concentration.sel(analyte="s_ketamine").values[0]
    ks.estimate("fanta_2015", _levels(list(ng)), doses=_INFUSION)  # no warning
    with pytest.warns(
        ks.ValidityWarning,
        match=r"subject 'A': the measured levels are a median 0\.001 times the "
        r"model's population prediction .* Levels are read in ng/mL",
    ):
        ks.estimate("fanta_2015", _levels(list(ng / 1000)), doses=_INFUSION)


def test_levels_with_unit_text_say_which_unit():
    with pytest.raises(
        TypeError,
        match=r"column 'concentration' must hold plain numbers in ng/mL; got "
        r"\['100 ng/mL', .*Convert the values to ng/mL and drop the unit text",
    ):
        ks.estimate("fanta_2015", _levels(["100 ng/mL"] * 3), doses=_INFUSION)


# ---- the command line: a time flag needs its unit ------------------------------------
@pytest.mark.parametrize(
    "flag, value", [("--duration", "40"), ("--every", "12"), ("--step", "5")]
)
def test_cli_time_flags_without_a_unit_are_refused(flag, value, capsys):
    from ketasim.cli import main

    argv = ["simulate", "--dose", "0.5 mg/kg", "--n", "2", flag, value]
    if flag == "--every":
        argv += ["--count", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ketasim: error: {flag} '{value}' has no unit; write it with one, e.g. "
        f"{flag} '{value} min' or {flag} '{value} h'"
    )


# ---- save writes NetCDF-4 whatever the name: another format's name is refused -------
@pytest.mark.parametrize(
    "name, instead",
    [
        ("r.csv", r"for a table use ds\.to_dataframe\(\)\.to_csv\(path\)"),
        ("r.XLSX", r"for a spreadsheet use ds\.to_dataframe\(\)\.to_excel\(path\)"),
        ("r.zarr", r"for Zarr use ds\.to_zarr\(path\)"),
    ],
)
def test_save_refuses_another_formats_name(tmp_path, course, name, instead):
    path = tmp_path / name
    with pytest.raises(
        ValueError,
        match=rf"^save writes NetCDF-4, but '.*{name}' names a \.{name[2:]} file, "
        rf"which it would not be; save to a '\.nc' path, or {instead}",
    ):
        ks.save(course, path)
    assert not path.exists()
    back = ks.open_results(ks.save(course, tmp_path / "r.nc")).load()
    assert back.identical(course)


# ---- a model of your own: a percentage written as a CV, a salt's molecular weight ---
def _one_compartment(**change):
    d = {
        "schema_version": 1,
        "id": "mine",
        "name": "one compartment",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "adults",
        "sampling": "venous",
        "grade": "choice",
        "references": [{"key": "me", "citation": "Me 2026"}],
        "parameters": {
            "CL": {"value": 60.0, "unit": "L/h", "description": "clearance"},
            "V": {"value": 100.0, "unit": "L", "description": "volume"},
        },
        "compartments": {
            "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
        },
        "flows": [{"from": "central", "cl": "CL"}],
        "routes": {"iv": {"kind": "intravenous", "target": "central"}},
        "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
        "variability": {"CL": {"distribution": "lognormal", "cv": 0.3, "source": "x"}},
    }
    for p in d["parameters"].values():
        p.update(source="made up", grade="choice")
    for path, value in change.items():
        *head, leaf = path.split(".")
        t = d
        for k in head:
            t = t[k]
        t[leaf] = value
    return d


def test_own_model_matches_the_closed_form():
    m = ks.model_from_dict(_one_compartment())
    ds = ks.simulate(m, ks.Dose.bolus("100 mg"), times=[0.0, 1.0, 2.0])
    want = 1000.0 * np.exp(-0.6 * np.array([0.0, 1.0, 2.0]))  # 100 mg / 100 L
    np.testing.assert_allclose(ds.concentration.values.ravel(), want, rtol=1e-12)


def test_a_cv_written_in_percent_is_refused():
    with pytest.raises(
        ks.ModelFileError,
        match=r"\[variability\.CL\.cv\] is a CV above 3 \(300%\); got 30\.0 — a CV "
        r"is a ratio, 0\.3 for 30 %; if the source gives a CV that large, write "
        r"the SD of eta as omega",
    ):
        ks.model_from_dict(_one_compartment(**{"variability.CL.cv": 30.0}))
    m = ks.model_from_dict(_one_compartment(**{"variability.CL.cv": 3.0}))
    omega = next(v.omega for v in m.variability if v.parameter == "CL")
    assert omega == pytest.approx(np.sqrt(np.log(10.0)), rel=1e-12)


@pytest.mark.parametrize("mw", [2377.3, 274.19, 23.773])  # x10, the HCl salt, /10
def test_an_analyte_molecular_weight_must_be_its_free_base(mw):
    with pytest.raises(
        ks.ModelFileError,
        match=r"\[analytes\.ketamine\.mw\] must be the molecular weight of "
        r"ketamine's free base, C13H16ClNO: 237\.73 g/mol; got "
        + str(mw).replace(".", r"\."),
    ):
        ks.model_from_dict(_one_compartment(**{"analytes.ketamine.mw": mw}))


def test_free_base_weights_match_the_bundled_models():
    """Independent of the formula table: the molecular weights the bundled model
    files state (237.73, 223.70, 239.70 g/mol) are within 0.01 g/mol of it."""
    from ketasim._analytes import base_molecular_weight

    for name in ks.list_models():
        for a in ks.load_model(name).analytes:
            assert abs(a.mw - base_molecular_weight(a.name)[0]) < 0.01, (name, a)


# ---- discharge time at a molar level -------------------------------------------------
def test_discharge_time_reads_a_molar_level_by_the_analytes_weight():
    ds = ks.simulate(
        ks.DEFAULT_MODEL,
        ks.Dose.infusion("35 mg", duration="40 min"),
        times=ks.grid("8 h", "1 min"),
    )
    mw = float(ds.molecular_weight.sel(analyte="ketamine"))
    # 200 nmol/L is 200 x 237.73 / 1000 ng/mL (nmol/L x g/mol = ng/L)
    molar = ks.discharge_time(ds, "200 nmol/L", analyte="ketamine")
    mass = ks.discharge_time(ds, 200 * mw / 1000, analyte="ketamine")
    assert molar.item() == mass.item()
    assert 0 < mass.item() < 8


# ---- a lean-weight dose for children whose height is unknown -------------------------
def test_lean_weight_dose_without_height_names_who_lacks_it():
    kids = ks.Population(
        3,
        seed=3,
        covariates={"weight": np.array([12.0, 20.0, 31.5]), "age": [2.0, 6.0, 9.0]},
        iiv=False,
    )
    with pytest.raises(
        ks.DoseError,
        match=r"a dose per kg of lean body weight needs each subject's height "
        r"\(cm\), and subject 0 lacks it \(3 of 3 subjects do\)\. Give 'height'",
    ):
        ks.simulate(
            "herd_2007",
            ks.Dose.bolus("1 mg/kg", weight_basis="lean"),
            population=kids,
            times=[0.0, 1.0],
        )


# ---- a one-element column next to longer ones ----------------------------------------
def test_a_one_element_covariate_list_next_to_longer_ones_is_refused():
    with pytest.raises(
        ValueError,
        match=r"^per-subject arrays must all have the same length; covariate 'age' "
        r"has 1 value and the others 2\. For one value shared by every subject give "
        r"a plain number \(age=40\), not a one-element list",
    ):
        ks.simulate(
            ks.DEFAULT_MODEL,
            ks.Dose.bolus("35 mg"),
            subjects=ks.Subjects(covariates={"weight": [70.0, 80.0], "age": [40.0]}),
        )
    ds = ks.simulate(  # a plain number is shared
        ks.DEFAULT_MODEL,
        ks.Dose.bolus("35 mg"),
        times=[0.0, 1.0],
        subjects=ks.Subjects(covariates={"weight": [70.0, 80.0], "age": 40.0}),
    )
    np.testing.assert_array_equal(ds.age.values, [40.0, 40.0])


# ---- boosters() without a dose after a course of another dose ------------------------
@pytest.mark.parametrize(
    "course, ends",
    [
        (
            lambda: ks.esketamine_induction("84 mg", weeks=1, continuation_weeks=0),
            r"Dose\(28 mg intranasal at 72\.1667 h, device 3\)",
        ),
        (
            lambda: ks.six_infusion_course(dose="0.25 mg/kg"),
            r"Dose\(0\.25 mg/kg HCl iv at 408 h over 0\.6667 h\)",
        ),
    ],
)
def test_default_boosters_after_another_dose_are_refused(course, ends):
    with pytest.raises(
        ks.DoseError,
        match=r"^boosters\(\) without dose= gives 0\.5 mg/kg HCl iv infusions over "
        rf"40 min, but the regimen before \.then\(\) ends with {ends}; give the "
        r"booster dose: boosters\(dose=\.\.\., every=\.\.\., count=\.\.\.\)",
    ):
        course().then(ks.boosters(every="2 weeks", count=2))


def test_default_boosters_follow_the_six_infusion_course():
    reg = ks.six_infusion_course().then(ks.boosters(every="2 weeks", count=2))
    assert [round(t / 24) for t in reg.times[-3:]] == [17, 31, 45]
    assert reg.doses[-1]._at(0.0, "t") == reg.doses[0]  # the same infusion
    quarter = ks.Dose.infusion("0.25 mg/kg", duration="40 min", salt="hcl")
    reg = ks.six_infusion_course(dose="0.25 mg/kg").then(
        ks.boosters(quarter, every="2 weeks", count=1)
    )
    assert reg.doses[-1]._at(0.0, "t") == reg.doses[0]


# ---- a percentile statistic written as a fraction ------------------------------------
def test_target_percentile_written_as_a_fraction_is_refused():
    with pytest.raises(
        ValueError,
        match=r"statistic percentiles are in percent, 'p0'\.\.'p100': 'p95' for the "
        r"95th; got 'p0\.95', which would be the 0\.95th percentile\. For a "
        r"fraction multiply by 100 \('p95'\)",
    ):
        ks.Target("cmax", "150 ng/mL", statistic="p0.95")
    assert "p1 " in repr(ks.Target("cmax", "150 ng/mL", statistic="p1"))


def test_trial_ci_percentile_written_as_a_fraction_is_refused():
    rng = np.random.default_rng(1)
    da = xr.DataArray(
        rng.lognormal(5, 0.2, (40, 50)),
        dims=("replicate", "subject"),
        attrs={"units": "ng/mL"},
    )
    with pytest.raises(
        ValueError,
        match=r"statistic is a percentile in percent \(95 for the 95th\); got 0\.95, "
        r"which would be the 0\.95th percentile\. For a fraction multiply by 100",
    ):
        ks.trial_ci(da, 0.95)
    ci = ks.trial_ci(da, 95)  # the P95 of each trial, then its spread over trials
    per_trial = np.percentile(da.values, 95, axis=1)
    np.testing.assert_allclose(ci.statistic.values, per_trial, rtol=1e-12)


# ---- sweep values without a unit: a unit, or factors with relative=True -------------
def test_sweep_bare_values_point_to_relative():
    with pytest.raises(
        ks.UnitError,
        match=r"values\[0\] = 0\.5 has no unit; give the values of 'CL' with their "
        r"unit \(\['0\.5 L/min/kg', \.\.\.\] or \(array, 'L/min/kg'\)\), or factors "
        r"of its typical value with relative=True",
    ):
        ks.sweep(
            ks.DEFAULT_MODEL,
            ks.Dose.bolus("35 mg"),
            "CL",
            [0.5, 1, 2],
            population=ks.Population(3, seed=1),
            times=[0.0, 1.0],
        )


# ---- a relative tolerance double precision cannot meet ------------------------------
def test_ode_rtol_below_a_hundred_epsilon_is_refused():
    with pytest.raises(
        ValueError,
        match=r"ODE\(rtol=\.\.\.\) must be at least 2\.22e-14 \(100 x the double "
        r"precision epsilon; .*got rtol=1e-20",
    ):
        ks.ODE(rtol=1e-20)
    assert ks.ODE(rtol=1e-13).rtol == 1e-13


# ---- a route added without ka, tmax or depot says it is absorbed at once ------------
def test_with_route_without_absorption_says_at_once():
    m = ks.load_model(ks.DEFAULT_MODEL)
    im = m.with_route("im", bioavailability=0.93, evidence="a test")
    assert im.changes[-1] == (
        "route 'im' added: bioavailability 0.93, absorbed at once (no ka, tmax or "
        "depot) [evidence: a test]"
    )
    dose = ks.Dose.bolus("35 mg", route="im")
    got = ks.simulate(im, dose, times=[0.0, 1.0]).concentration.values.ravel()
    iv = ks.simulate(m, ks.Dose.bolus("32.55 mg"), times=[0.0, 1.0])  # 0.93 x 35
    np.testing.assert_allclose(got, iv.concentration.values.ravel(), rtol=1e-12)


# ---- Regimen.at with a time twice ----------------------------------------------------
@pytest.mark.parametrize(
    "times, i, first, h", [([0, 0, 7], 1, 0, "0"), (["1 d", 3, 24], 2, 0, "24")]
)
def test_regimen_at_refuses_a_time_twice(times, i, first, h):
    with pytest.raises(
        ks.DoseError,
        match=rf"^times\[{i}\] is {h} h again \(as times\[{first}\]\): Regimen\.at "
        r"gives one dose per time\. For a larger dose at that time give its amount; "
        r"for two doses at once combine regimens with \+",
    ):
        ks.Regimen.at(times, ks.Dose.bolus("35 mg"))


# ---- summary of values without a unit ------------------------------------------------
def test_summary_refuses_values_without_a_unit(course):
    cl = course.parameters.sel(parameter="CL")  # its unit: parameter_unit
    with pytest.raises(
        ValueError,
        match=r"^summary: 'parameters' has no attrs\['units'\], so its result would "
        r"carry no unit; label it with its unit, e.g\. da\.assign_attrs\(units='L/h'\)",
    ):
        ks.summary(cl)
    unit = str(course.parameter_unit.sel(parameter="CL").values)
    got = ks.summary(cl.assign_attrs(units=unit))
    assert got.attrs["units"] == unit
    np.testing.assert_allclose(got.values, np.percentile(cl.values, [5, 50, 95]))


# ---- an EventTable prints as one short line ------------------------------------------
def test_event_table_prints_one_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "ID,TIME,EVID,AMT,WT\n1,0,1,35,70\n1,1,0,.,70\n1,2,0,.,70\n2,0,1,35,90\n"
    )
    table = ks.read_nonmem(path, "domino")
    assert repr(table) == (
        f"EventTable({str(path)!r}: 2 subjects (ID 1, 2), 2 doses, 2 observation "
        f"records; covariates weight)"
    )


# ---- a scenario file without its protocol lists the choices --------------------------
def test_scenario_without_protocol_lists_the_choices(tmp_path):
    from ketasim.scenariofile import load_scenarios

    path = tmp_path / "s.toml"
    path.write_text(
        'schema_version = 1\n[output]\nend = "2 d"\nstep = "5 min"\n'
        "[population]\nn = 5\nseed = 1\n[[scenarios]]\nname = 'a'\n"
        "model = 'clements_nimmo_1981'\n[scenarios.regimen]\nsessions = 1\n"
    )
    with pytest.raises(
        ks.ModelFileError,
        match=r"\[scenarios\[0\]\.regimen\.protocol\] is missing — add `protocol = "
        r"\.\.\.`, one of 'six_infusion_course', 'clinic_course', "
        r"'esketamine_induction', 'boosters', 'home_course', 'doses'",
    ):
        load_scenarios(path)


# ---- a regimen without doses ---------------------------------------------------------
def test_a_regimen_without_doses_warns():
    with pytest.warns(
        ks.ValidityWarning,
        match=r"^the regimen has no doses, so every concentration is 0; give the doses",
    ):
        ds = ks.simulate(ks.DEFAULT_MODEL, ks.Regimen([]), times=[0.0, 1.0])
    assert float(ds.concentration.max()) == 0.0
