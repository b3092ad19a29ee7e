"""The command line and the figures: produced, labelled, written."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

import ketasim as ks
from ketasim.cli import main
from ketasim.dosing import DoseError
from ketasim.modelfile import ModelFileError
from ketasim.plotting import plot_bands, plot_exposure, plot_scenarios
from ketasim.scenariofile import ScenarioFileError
from ketasim.units import UnitError


def test_demo_writes_outputs(tmp_path, capsys):
    assert main(["demo", "--out-dir", str(tmp_path), "--n", "20"]) == 0
    out = capsys.readouterr().out
    assert "Cmax (ng/mL)" in out and "AUC to next infusion" in out
    assert out.count("\n") > 10
    res = ks.open_results(tmp_path / "ketasim-demo.nc")
    for ds in res.values():
        assert ds.concentration.attrs["units"] == "ng/mL"
        assert ds.sizes["subject"] == 20
        ds.close()
    assert (tmp_path / "ketasim-demo.png").stat().st_size > 10_000


def test_models_command(capsys):
    assert main(["models"]) == 0
    assert "domino" in capsys.readouterr().out


def test_bad_model_exit_code(tmp_path, capsys):
    assert main(["demo", "--model", "nope", "--out-dir", str(tmp_path)]) == 1
    assert "no bundled model 'nope'" in capsys.readouterr().err


def _files(tmp_path):
    (tmp_path / "model.toml").write_text("schema_version = 1\n")
    (tmp_path / "scenarios.toml").write_text('title = "x"\n')
    return str(tmp_path / "model.toml"), str(tmp_path / "scenarios.toml")


# (command line, error class ketasim raises, the message printed after "ketasim:
# error: "); {model}/{scenarios} are broken files, {missing} a file that is not there
CLI_ERRORS = [
    (
        ["simulate", "--dose", "5 mg", "--route", "nasal", "--n", "2"],
        DoseError,
        "doses[0] uses route 'nasal', which model 'clements_nimmo_1981' does not "
        "define; its routes are intranasal, intranasal_singh2022, iv, oral, "
        "sublingual, troche",
    ),
    (
        ["simulate", "--dose", "5 parsecs", "--n", "2"],
        UnitError,
        "amount '5 parsecs': unknown unit 'parsecs' in 'parsecs'; known units: L, d,",
    ),
    (
        ["simulate", "--dose", "5 mg", "--model", "{model}"],
        ModelFileError,
        "{model}: [id] is missing — add `id = ...`",
    ),
    (
        ["run", "{scenarios}"],
        ScenarioFileError,
        "{scenarios}: [schema_version] is missing — add `schema_version = ...`",
    ),
    (
        ["simulate", "--dose", "5 mg", "--horizon", "-5 h", "--n", "2"],
        ValueError,
        "--horizon must be a positive time such as '24 h'; got '-5 h'",
    ),
    (["run", "{missing}"], FileNotFoundError, "No such file or directory: {missing}"),
    (
        ["demo", "--model", "{missing}"],
        FileNotFoundError,
        "No such file or directory: {missing}",
    ),
]


@pytest.mark.parametrize("argv, cls, message", CLI_ERRORS)
def test_every_ketasim_error_is_one_line(tmp_path, capsys, argv, cls, message):
    model, scenarios = _files(tmp_path)
    names = {
        "model": model,
        "scenarios": scenarios,
        "missing": str(tmp_path / "missing.toml"),
    }
    argv = [a.format(**names) for a in argv]
    message = message.format(**names)
    with pytest.raises(cls) as info:  # --traceback: the error itself, raised
        main(["--traceback", *argv])
    assert type(info.value) is cls
    capsys.readouterr()
    assert main(argv) == 1
    out = capsys.readouterr()
    assert out.err.startswith(f"ketasim: error: {message}")
    assert out.err.count("\n") == 1 and "Traceback" not in out.err


@pytest.mark.parametrize("cls", [ks.SolveError, TypeError, ValueError])
def test_solve_and_type_errors_are_one_line(monkeypatch, capsys, cls):
    """A SolveError (whose message may run over several lines) and a TypeError
    from validation print one line too; simulate is replaced to raise them."""

    def fails(*args, **kwargs):
        raise cls("2 of 5 subjects failed:\n  status 1 for subjects 0, 3")

    monkeypatch.setattr(ks, "simulate", fails)
    assert main(["simulate", "--dose", "5 mg", "--n", "5"]) == 1
    assert capsys.readouterr().err == (
        "ketasim: error: 2 of 5 subjects failed: status 1 for subjects 0, 3\n"
    )


def test_unexpected_exception_keeps_its_traceback(monkeypatch):
    """A KeyError is not a ketasim error but a bug: it is not reduced to a line."""

    def bug(*args, **kwargs):
        raise KeyError("parameter")

    monkeypatch.setattr(ks, "simulate", bug)
    with pytest.raises(KeyError, match="parameter"):
        main(["simulate", "--dose", "5 mg", "--n", "5"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["simulate"],
            "the following arguments are required: --dose (see 'ketasim "
            "simulate --help')",
        ),
        (
            ["simulate", "--dose", "5 mg", "--n", "x"],
            "argument --n: invalid int value: 'x' (see 'ketasim simulate --help')",
        ),
        (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
        (
            ["simulate", "--dose", "5 mg", "--every", "1 d"],
            "--every and --count go "
            "together: --every '3.5 d' --count 4 gives four doses 3.5 days apart",
        ),
        (
            ["simulate", "--dose", "5 mg", "--every", "12 h", "--count", "0"],
            "--count must be a whole number >= 1 (the number of doses); got 0",
        ),
        (
            ["simulate", "--dose", "5 mg", "--duration", "40 min", "--device", "1"],
            "--device applies to nasal-spray devices, not to an infusion (--duration)",
        ),
    ],
)
def test_usage_errors_exit_2_on_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ketasim: error: {message}") and err.count("\n") == 1


def test_figures_are_labelled():
    t = ks.grid("4 d", "30 min")
    pop = ks.Population(30, seed=1, iiv=False)
    ds = ks.run_scenarios(
        [
            ks.Scenario(
                "a",
                "domino",
                ks.six_infusion_course(sessions=2),
                population=pop,
                times=t,
            ),
            ks.Scenario(
                "b",
                "domino",
                ks.clinic_course(
                    ks.Dose.bolus("56 mg", route="intranasal"), sessions=2
                ),
                population=pop,
                times=t,
            ),
        ]
    )
    fig = plot_scenarios(ds)
    ax = fig.axes[1]  # a course: its first session zoomed, then the whole course
    assert ax.get_ylabel() == "ketamine (ng/mL)" and ax.get_xlabel() == "time (days)"
    assert [a.get_title() for a in fig.axes] == [
        "a: first session",
        "a: course",
        "b: first session",
        "b: course",
    ]
    fig = plot_exposure(ds, "auc")
    assert fig.axes[0].get_ylabel() == "ketamine auc (ng*h/mL)"
    fig = plot_bands(ds.sel(scenario="a"))
    assert fig.axes[0].get_ylabel() == "ketamine (ng/mL)"
    assert np.isfinite(fig.axes[0].lines[0].get_ydata()).all()
    with pytest.raises(
        ValueError,
        match="plot_bands draws one result; for scenario results use plot_scenarios",
    ):
        plot_bands(ds)
    fig = plot_scenarios(ds.sel(scenario="a"))  # one row, named
    assert [a.get_title() for a in fig.axes] == ["a: first session", "a: course"]
    one = ks.simulate("domino", ks.Dose.bolus("5 mg"), times=t)
    assert [a.get_title() for a in plot_scenarios(one).axes] == ["domino"]


def test_figures_of_mixed_drugs_and_single_times():
    """Each scenario is drawn with its own drug; one output time still shows."""
    t = ks.grid("8 d", "1 h")
    pop = ks.Population(10, seed=1, iiv=False)
    ds = ks.run_scenarios(
        [
            ks.Scenario(
                "ket",
                "domino",
                ks.six_infusion_course(sessions=2),
                population=pop,
                times=t,
            ),
            ks.Scenario(
                "esk",
                "perez_ruixo_2021",
                ks.esketamine_induction("56 mg", weeks=1, continuation_weeks=0),
                population=pop,
                times=t,
            ),
        ]
    )
    fig = plot_exposure(ds, "cmax")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "ketamine / s_ketamine cmax (ng/mL)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "ket (ketamine)",
        "esk (s_ketamine)",
    ]
    boxes = [p for p in ax.patches]
    assert len(boxes) == 4  # two sessions each, none empty
    one = ks.simulate("domino", ks.Dose.bolus("5 mg"), times=[1.0])
    fig = plot_bands(one)
    assert fig.axes[0].lines[0].get_marker() == "o"


def test_docs_pages_for_every_model_and_route(tmp_path, capsys):
    assert main(["docs", "--out", str(tmp_path)]) == 0
    for name in ks.list_models():
        m = ks.load_model(name)
        page = (tmp_path / "models" / f"{name}.md").read_text()
        assert m.references[0].citation[:30] in page
        # variability stated per model, "none" where the file gives none
        for what in ("(IIV)", "(IOV)", "residual error"):
            line = next(x for x in page.splitlines() if what in x)
            assert line.split(": ", 1)[1].strip()
        if not any(v.omega > 0 for v in m.variability):
            assert "- inter-individual variability (IIV): none (" in page
        for route in m.routes:
            assert (tmp_path / "models" / f"{name}-{route}.png").stat().st_size > 5000
            assert f"![{route}]" in page
    api = (tmp_path / "api.md").read_text()
    assert "::: ketasim.simulate.simulate\n" in api and "ng/mL" in api  # mkdocstrings


def test_saved_run_reopens_with_attributes_and_replots(tmp_path):
    ds = ks.simulate(
        ks.DEFAULT_MODEL,
        ks.six_infusion_course(sessions=2),
        population=ks.Population(10, seed=9),
        times=ks.grid("4 d", "1 h"),
    )
    ds.to_netcdf(tmp_path / "run.nc", engine="netcdf4")
    ds.to_zarr(tmp_path / "run.zarr", zarr_format=2)
    for back in (
        xr.open_dataset(tmp_path / "run.nc"),
        xr.open_zarr(tmp_path / "run.zarr"),
    ):
        for key in ("model_id", "model_sha256", "references", "seed", "solver"):
            assert back.attrs[key] == ds.attrs[key]
        assert back.concentration.attrs["units"] == "ng/mL"
        assert back.time.attrs["units"] == "h" and back.weight.attrs["units"] == "kg"
        np.testing.assert_array_equal(
            back.concentration.values, ds.concentration.values
        )
        fig = plot_bands(back)
        assert fig.axes[0].get_ylabel() == "ketamine (ng/mL)"
        back.close()


def test_device_option_runs_a_per_device_spray(capsys):
    """perez_ruixo_2021's intranasal route absorbs per device: without --device
    the dose is refused (it used to count as device 1); with it, it runs."""
    argv = [
        "simulate",
        "--model",
        "perez_ruixo_2021",
        "--route",
        "intranasal",
        "--dose",
        "28 mg",
        "--n",
        "3",
        "--horizon",
        "2 h",
    ]
    assert main(argv) == 1
    assert "device=" in capsys.readouterr().err
    assert main([*argv, "--device", "1"]) == 0
    assert "1 dose(s) of Dose(28 mg intranasal" in capsys.readouterr().out
