"""Small things a user trips on: arguments that would do nothing, how a Regimen
prints, "mcg" as microgram, and progress bars (tqdm on stderr)."""

import re
import sys

import numpy as np
import pytest

import ketasim as ks
from ketasim import Dose, DoseError, Regimen
from ketasim.modelfile import models_dir
from ketasim.units import UnitError, parse_unit, to_ng_per_ml

from .tomlwrite import dumps

# ---------------------------------------------------------------------------------
# arguments that would have no effect are errors


def _no_effect(given: str, pronoun: str = "it") -> str:
    return (
        f"{given} given without maintenance_sessions: the schedule has no "
        f"maintenance sessions (maintenance_sessions = 0, the default), so "
        f"{'they' if pronoun == 'them' else 'it'} would have no effect. Give the "
        f"number of sessions, e.g. maintenance_sessions=6, "
        f"{given.replace(' and ', ', ')}; or leave {pronoun} out"
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        (
            dict(maintenance_every="1 week"),
            _no_effect("maintenance_every='1 week'"),
        ),
        (
            dict(maintenance_dose="84 mg", maintenance_sessions=0),
            _no_effect("maintenance_dose='84 mg'"),
        ),
        (
            dict(maintenance_every="1 week", maintenance_dose="84 mg"),
            _no_effect(
                "maintenance_every='1 week' and maintenance_dose='84 mg'", "them"
            ),
        ),
    ],
)
def test_maintenance_arguments_without_sessions_are_errors(kw, message):
    with pytest.raises(DoseError) as exc:
        ks.esketamine_induction(**kw)
    assert str(exc.value) == message


def test_maintenance_every_is_applied_with_sessions():
    default = ks.esketamine_induction(maintenance_sessions=2)
    weekly = ks.esketamine_induction(maintenance_sessions=2, maintenance_every="1 week")
    starts = [d.time for d in default if d.device == 1]
    weekly_starts = [d.time for d in weekly if d.device == 1]
    # the last continuation session is day 49; maintenance follows 2 weeks (default)
    # or 1 week apart
    assert [t / 24 for t in starts[-3:]] == [49, 63, 77]
    assert [t / 24 for t in weekly_starts[-3:]] == [49, 56, 63]
    assert len(ks.esketamine_induction()) == 24  # 12 sessions of 2 devices, no more


def test_boosters_from_a_timed_dose_start_at_its_time():
    """boosters' dose time is the origin (documented), not dropped."""
    d = Dose.infusion("0.5 mg/kg", duration="40 min", time="1 d")
    assert ks.boosters(d, every="1 week", count=2).times == (24 + 168, 24 + 336)


# ---------------------------------------------------------------------------------
# Regimen's repr: a table, one dose a line, long regimens cut in the middle


def test_repr_one_dose():
    r = Regimen(Dose.bolus("35 mg", route="sublingual"))
    assert repr(r) == (
        "Regimen: 1 dose, 0 h (day 0 +00:00); route sublingual\n"
        "  #  time (h)  elapsed       amount  route       duration\n"
        "  0         0  day 0 +00:00   35 mg  sublingual  -"
    )
    assert str(r) == repr(r)
    assert repr(Regimen()) == "Regimen(no doses)"


def test_repr_three_doses():
    d = Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl")
    r = Regimen.at(["0 d", "3 d", "84.5 h"], d)
    assert repr(r) == (
        "Regimen: 3 doses, 0 to 84.5 h (day 0 +00:00 to day 3 +12:30); route iv\n"
        "  #  time (h)  elapsed              amount  route  duration\n"
        "  0         0  day 0 +00:00  0.5 mg/kg HCl  iv     40 min\n"
        "  1        72  day 3 +00:00  0.5 mg/kg HCl  iv     40 min\n"
        "  2      84.5  day 3 +12:30  0.5 mg/kg HCl  iv     40 min"
    )


def test_repr_forty_doses_shows_first_and_last_five():
    r = ks.esketamine_induction("84 mg", maintenance_sessions=2)
    r = Regimen(r.doses[:40])
    lines = repr(r).split("\n")
    assert lines[0] == (
        "Regimen: 40 doses, 0 to 1848.0833 h (day 0 +00:00 to day 77 +00:05); "
        "route intranasal"
    )
    assert lines[1].split() == [
        "#",
        "time",
        "(h)",
        "elapsed",
        "amount",
        "route",
        "duration",
        "device",
    ]
    assert len(lines) == 2 + 5 + 1 + 5
    assert lines[7] == "  ...  (40 doses in all)"
    assert [line.split()[0] for line in lines[2:7]] == ["0", "1", "2", "3", "4"]
    assert [line.split()[0] for line in lines[8:]] == ["35", "36", "37", "38", "39"]
    assert lines[3] == "   1     0.0833  day 0 +00:05    28 mg  intranasal  -         2"
    assert (
        lines[-1] == "  39  1848.0833  day 77 +00:05   28 mg  intranasal  -         2"
    )
    assert max(len(line) for line in lines) <= 88


def test_repr_shows_drug_and_long_durations():
    d = Dose.infusion(rate="26 mg/h", duration="3 d", drug="ketamine")
    text = repr(Regimen([d, d.at("10 d")]))
    assert "routes" not in text and "route iv" in text
    assert re.search(r"1872 mg\s+iv\s+3 d\s+ketamine$", text.split("\n")[-1])


def test_dose_repr_unchanged():
    d = Dose("0.5 mg/kg", route="iv", duration="40 min", salt="hcl")
    assert repr(d) == "Dose(0.5 mg/kg HCl iv at 0 h over 0.6667 h)"


# ---------------------------------------------------------------------------------
# "mcg" is microgram, exactly as "ug" and "µg"


@pytest.mark.parametrize("unit", ["mcg", "mcg/kg", "mcg/kg/min", "mcg/mL", "mcg/L/h"])
def test_mcg_parses_as_ug(unit):
    mcg, ug, mu = (parse_unit(unit.replace("mcg", u)) for u in ("mcg", "ug", "µg"))
    assert (mcg.factor, mcg.dims) == (ug.factor, ug.dims) == (mu.factor, mu.dims)


def test_mcg_in_the_known_units_list():
    with pytest.raises(UnitError) as exc:
        parse_unit("mcgs/kg")
    assert str(exc.value) == (
        "unknown unit 'mcgs' in 'mcgs/kg'; known units: L, d, dL, day, days, g, h, "
        "kg, mL, mcg, mg, min, mmol, mol, ng, nmol, s, uL, ug, umol, week, weeks, "
        "µL, µg, µmol"
    )


def test_mcg_doses_equal_ug_doses():
    assert (
        Dose.bolus("500 mcg/kg") == Dose.bolus("500 ug/kg") == Dose.bolus("0.5 mg/kg")
    )
    a = Dose.infusion(rate="8.33 mcg/kg/min", duration="1 h")
    b = Dose.infusion(rate="8.33 ug/kg/min", duration="1 h")
    assert a == b and a.amount == pytest.approx(0.4998) and a.unit == "mg/kg"


def test_mcg_thresholds_equal_ug_thresholds():
    assert to_ng_per_ml("0.1 mcg/mL", what="above") == pytest.approx(100.0)
    assert ks.Metrics(above="0.1 mcg/mL").level == ks.Metrics(above="100 ng/mL").level
    ds = ks.simulate("domino", Dose.bolus("35 mg"), times=np.linspace(0, 6, 61))
    by_mcg = ks.metrics(ds, "dose", above="0.1 mcg/mL")
    by_ug = ks.metrics(ds, "dose", above="0.1 ug/mL")
    np.testing.assert_array_equal(by_mcg.time_above.values, by_ug.time_above.values)


def test_mcg_in_model_parameters(tmp_path):
    """A model file's units go through the same parser: a residual SD in mcg/L."""
    import tomllib

    data = tomllib.loads((models_dir() / "domino.toml").read_text())
    out = []
    for unit in ("mcg/L", "ug/L"):
        data["residual"] = {
            "ketamine": {"additive": 5.0, "additive_unit": unit, "source": "test"}
        }
        p = tmp_path / f"{unit.replace('/', '_')}" / "model.toml"
        p.parent.mkdir()
        p.write_text(dumps(data))
        out.append(ks.load_model(p).residual["ketamine"]["additive_ng_per_ml"])
    assert out == [5.0, 5.0]


# ---------------------------------------------------------------------------------
# progress bars: tqdm on stderr; "auto" only on a terminal or in a notebook


def test_auto_progress_shows_nothing_when_not_a_terminal(capfd):
    assert not sys.stderr.isatty()  # pytest captures: this is a redirected run
    ks.simulate("domino", Dose.bolus("5 mg"), times=[1.0], progress="auto")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_true_writes_a_tqdm_bar_to_stderr(capsys):
    ks.simulate("domino", Dose.bolus("5 mg"), times=[1.0], progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    # tqdm's format: label, percentage, bar, n/total, [elapsed<remaining, rate]
    assert re.search(r"simulating: 100%\|█+\| 1/1 \[\d\d:\d\d<\d\d:\d\d", err)
    assert err.endswith("\n")


def test_progress_bar_is_tqdm_and_off_means_no_import(capsys, monkeypatch):
    from ketasim._progress import Bar

    with Bar(3, "working", True) as bar:
        bar.update(2)
        bar.update(1)
        assert type(bar._bar).__module__.startswith("tqdm")
    assert "working: 100%" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # an import would now fail
    with Bar(3, "working", False) as bar:
        bar.update(3)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw: no stderr, no bar
    with Bar(3, "working", True) as bar:
        bar.update(3)
    assert bar.done == 3
