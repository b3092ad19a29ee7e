"""Scenario files: examples load and run; malformed files fail with file + key."""

import tomllib
from pathlib import Path

import pytest

import ketasim as ks
from ketasim.cli import main
from ketasim.scenariofile import ScenarioFileError, load_scenarios

from .tomlwrite import dumps, mutate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = sorted(EXAMPLES.glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_examples_run_from_the_cli(path, tmp_path, capsys):
    sf = load_scenarios(path)
    assert sf.scenarios
    out = tmp_path / "r.nc"
    png = tmp_path / "r.png"
    assert main(["run", str(path), "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    for sc in sf.scenarios:
        assert sc.name in text
    assert out.stat().st_size > 0 and png.stat().st_size > 10_000


def test_regimen_protocols_resolved():
    sf = load_scenarios(EXAMPLES / "six_infusions_boosters.toml")
    reg = sf.scenarios[0].regimen
    assert [round(t / 24) for t in reg.times] == [0, 3, 7, 10, 14, 17, 31, 45, 59]
    assert reg.doses[0].salt == "hcl" and sf.above == 100.0
    # the example's virtual patients differ: its model draws between-patient
    # variability and the file does not switch it off (it once ran 500 identical
    # patients on a model without IIV)
    for sc in sf.scenarios:
        assert any(v.omega > 0 for v in sc.model.variability), sc.name
        assert sc.population.iiv is True, sc.name


def write(tmp_path, data):
    p = tmp_path / "s.toml"
    p.write_text(dumps(data))
    return p


BASE = {
    "schema_version": 1,
    "output": {"end": "2 d", "step": "30 min"},
    "population": {"n": 10, "seed": 1, "iiv": False},  # domino has no IIV
    "scenarios": [
        {
            "name": "a",
            "model": "domino",
            "regimen": {"protocol": "six_infusion_course", "sessions": 1},
        }
    ],
}


def test_minimal_file_runs(tmp_path):
    sf = load_scenarios(write(tmp_path, BASE))
    ds = ks.run_scenarios(sf.scenarios)
    assert ds["a"].sizes["subject"] == 10


CASES = [
    (("colour",), "red", "[colour] unknown key"),
    (("output", "stpe"), "5 min", "[output.stpe] unknown key"),
    (("output", "end"), None, "[output.end] is missing"),
    (
        ("output", "end"),
        "0 h",
        "[output.end] must be after 0 h, the start of the course; got '0 h'",
    ),
    (("output", "per"), "week", "[output.per] must be one of"),
    (("output", "window"), "last", "[output.window] must be int"),
    (
        ("output", "above"),
        "100 min",
        "[output.above] must be a concentration: a "
        "number (ng/mL), a mass concentration such as '100 ng/mL' or '0.1 mg/L', or a "
        "molar one such as '0.4 umol/L'; got '100 min'",
    ),
    (
        ("output", "above"),
        "-1 umol/L",
        "[output.above] must be a finite concentration >= 0; got '-1 umol/L'",
    ),
    (("output", "above"), "1 umol/L/kg", "[output.above] must be a concentration"),
    (
        ("scenarios", 0, "regimen", "after"),
        "1 d",
        "[scenarios[0].regimen.after] applies to a `then` continuation",
    ),
    (("population", "seed"), -1, "seed must be a whole number >= 0"),
    (
        ("scenarios", 0, "model"),
        "nope",
        "[scenarios[0].model] cannot load model 'nope': no bundled model",
    ),
    (("scenarios", 0, "model"), "", "[scenarios[0].model] is empty"),
    (
        ("scenarios", 0, "model"),
        ".",
        "[scenarios[0].model] cannot load model '.': "
        "model '.' is a directory, not a model file",
    ),
    (
        ("population", "age"),
        ["a", "b"],
        "[population.age] must be [low, high] years (two numbers); got ['a', 'b']",
    ),
    (
        ("population", "age"),
        [True, 40],
        "[population.age] must be [low, high] years (two numbers); got [True, 40]",
    ),
    (
        ("output", "step"),
        "0 min",
        "[output] end = '2 d', step = '0 min': step must be a positive time",
    ),
    (
        ("scenarios", 0, "regimen"),
        {"protocol": "doses", "doses": []},
        "[scenarios[0].regimen.doses] is empty",
    ),
    (
        ("scenarios", 0, "regimen", "protocol"),
        "weekly",
        "[scenarios[0].regimen.protocol] must be one of",
    ),
    (
        ("scenarios", 0, "regimen", "sessions"),
        "six",
        "[scenarios[0].regimen.sessions] must be int",
    ),
    (("scenarios", 0, "regimen", "dose"), "0.5 mL/kg", "must be a drug amount"),
    (
        ("scenarios", 0, "regimen", "colour"),
        "x",
        "[scenarios[0].regimen.colour] unknown key",
    ),
    (("scenarios", 0, "name"), 3, "[scenarios[0].name] must be str"),
]


@pytest.mark.parametrize("path,value,message", CASES)
def test_errors_name_file_and_key(tmp_path, path, value, message):
    p = write(tmp_path, mutate(BASE, path, value, delete=value is None))
    with pytest.raises(ScenarioFileError) as info:
        load_scenarios(p)
    assert str(p) in str(info.value)
    assert message in str(info.value)


def test_window_picks_the_session_and_needs_a_per_window_table(tmp_path):
    two = mutate(
        mutate(BASE, ("scenarios", 0, "regimen", "sessions"), 2),
        ("output", "end"),
        "5 d",
    )
    sf = load_scenarios(write(tmp_path, mutate(two, ("output", "window"), -1)))
    assert (sf.per, sf.window) == ("session", -1)
    course = mutate(mutate(two, ("output", "per"), "course"), ("output", "window"), 1)
    with pytest.raises(
        ScenarioFileError,
        match=r"\[output.window\] applies to per "
        r"= 'dose' or 'session'",
    ):
        load_scenarios(write(tmp_path, course))


def test_integer_level_and_unordered_doses(tmp_path):
    sf = load_scenarios(write(tmp_path, mutate(BASE, ("output", "above"), 100)))
    assert sf.above == 100.0
    doses = {
        "protocol": "doses",
        "doses": [{"amount": "5 mg", "time": "2 h"}, {"amount": "5 mg", "time": "1 h"}],
    }
    with pytest.raises(
        ScenarioFileError,
        match=r"\[scenarios\[0\].regimen\].*"
        r"nondecreasing|\[scenarios\[0\].regimen\].*order",
    ):
        load_scenarios(
            write(tmp_path, mutate(BASE, ("scenarios", 0, "regimen"), doses))
        )


def test_cli_run_error_exit_code(tmp_path, capsys):
    p = write(tmp_path, mutate(BASE, ("colour",), "red"))
    assert main(["run", str(p)]) == 1
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_cli_simulate(tmp_path, capsys):
    assert (
        main(
            [
                "simulate",
                "--model",
                "domino",
                "--dose",
                "0.5 mg/kg",
                "--duration",
                "40 min",
                "--n",
                "20",
                "--seed",
                "1",
                "--no-iiv",
                "--out",
                str(tmp_path / "x.nc"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Cmax (ng/mL)" in out and "20 patients" in out
    assert main(["simulate", "--dose", "5 mg", "--route", "rectal"]) == 1
    assert "does not define" in capsys.readouterr().err
    for flags in (["--count", "3"], ["--every", "1 d"]):  # a usage error: exit 2
        assert main(["simulate", "--dose", "5 mg", *flags]) == 2
        assert "--every and --count go together" in capsys.readouterr().err
    assert main(["simulate", "--dose", "5 mg", "--horizon", "-1 h"]) == 1
    assert "--horizon must be a positive time" in capsys.readouterr().err
    assert (
        main(
            [
                "simulate",
                "--model",
                "domino",
                "--dose",
                "5 mg",
                "--every",
                "12 h",
                "--count",
                "3",
                "--n",
                "5",
                "--no-iiv",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 dose(s)" in out and "ketamine, dose 1: median" in out
    assert "ketamine, last dose: median" in out


def test_toml_is_what_tomllib_reads():
    # the example files are plain TOML any tool can read
    for p in FILES:
        assert tomllib.loads(p.read_text())["schema_version"] == 1


def test_python_examples_run():
    from examples import michaelis_menten

    michaelis_menten.main(n=5)


def test_molar_level_runs_as_the_api_takes_it(tmp_path, capsys):
    """output.above in nmol/L or umol/L: kept as written and converted per
    analyte by compare, as ks.compare(ds, above="1 umol/L") does."""
    sf = load_scenarios(write(tmp_path, mutate(BASE, ("output", "above"), "1 umol/L")))
    assert sf.above == "1 umol/L"
    ds = ks.run_scenarios(sf.scenarios)
    table = ks.compare(ds, per=sf.per, above=sf.above)
    assert table.columns[-1] == "time > 1000 nmol/L (h)"
    mw = float(ds["a"].molecular_weight.sel(analyte="ketamine"))
    same = ks.compare(ds, per=sf.per, above=1000 * mw / 1000)
    assert (
        table.to_dataset().value.values.tolist()
        == same.to_dataset().value.values.tolist()
    )
    assert main(["run", str(tmp_path / "s.toml")]) == 0
    assert "time > 1000 nmol/L (h)" in capsys.readouterr().out
