"""Review checks of observation files (ketasim.validation): every malformed field
is an ObservationError naming the file, the key and the value received; nothing
malformed is read as a number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ketasim as ks
from ketasim.validation import ObservationError, load_observations

HEAD = """schema_version = 1
model = "m"

[[references]]
key = "r"
citation = "c"
"""


def _obs(**over) -> str:
    kv = {
        "id": '"o"',
        "study": '"s"',
        "reference": '"r"',
        "source": '"table 1"',
        "doses": '[{amount = "10 mg", route = "iv"}]',
        "analyte": '"ketamine"',
        "metric": '"cmax"',
        "statistic": '"typical"',
        "value": "100",
        "unit": '"ng/mL"',
        "tolerance": "{fold = 1.5}",
        "tolerance_reason": '"why"',
        "role": '"independent"',
    }
    kv.update(over)
    return "\n[[observations]]\n" + "\n".join(f"{k} = {v}" for k, v in kv.items())


def _load(tmp_path: Path, **over):
    f = tmp_path / "m.toml"
    f.write_text(HEAD + _obs(**over))
    return load_observations("m", file=f)


def test_a_well_formed_file_reads_with_its_units(tmp_path):
    _, (o,) = _load(
        tmp_path,
        metric='"concentration"',
        time='"90 min"',
        window='["30 min", "2 h"]',
        tolerance="{range = [80, 120]}",
    )
    assert o.time == 1.5
    assert o.window == (0.5, 2.0)
    assert o.bounds() == (80.0, 120.0)


@pytest.mark.parametrize("end", ["inf", '"inf"'])
def test_an_auc_window_may_end_at_infinity(tmp_path, end):
    _, (o,) = _load(tmp_path, metric='"auc"', unit='"ng*h/mL"', window=f"[0, {end}]")
    assert o.window == (0.0, float("inf"))


@pytest.mark.parametrize("bad", ['"-40 min"', '"nan h"', '"inf min"', "-1"])
def test_a_negative_or_non_finite_time_is_refused(tmp_path, bad):
    with pytest.raises(ObservationError, match=r"observations\[0\]\.time.*got"):
        _load(tmp_path, metric='"concentration"', time=bad)


@pytest.mark.parametrize(
    "bad, what",
    [
        ('["2 h", "1 h"]', "start before its end"),
        ('["1 h"]', "two times"),
        ('"1 h"', "two times"),
        ('["-1 h", "2 h"]', "got"),
    ],
)
def test_a_malformed_window_is_refused(tmp_path, bad, what):
    with pytest.raises(ObservationError, match=rf"observations\[0\]\.window.*{what}"):
        _load(tmp_path, window=bad)


@pytest.mark.parametrize(
    "bad, what",
    [
        ("{range = [120, 80]}", "lo < hi"),
        ('{range = ["a", 2]}', "lo < hi"),
        ("{range = [1]}", "lo < hi"),
        ('{fold = "2"}', r"fold must be > 1 \(a number\); got"),
        ("{fold = nan}", r"fold must be > 1 \(a number\); got"),
        ('{relative = "0.2"}', r"relative must be in \(0, 1\) \(a number\); got"),
    ],
)
def test_a_malformed_tolerance_is_refused(tmp_path, bad, what):
    key = r"observations\[0\]\.tolerance"
    with pytest.raises(ObservationError, match=rf"{key}.*{what}"):
        _load(tmp_path, tolerance=bad)


def test_a_range_tolerance_not_around_the_value_is_accepted_as_written(tmp_path):
    # the range is the accepted prediction interval, not necessarily around value
    _, (o,) = _load(tmp_path, tolerance="{range = [10, 20]}")
    assert o.bounds() == (10.0, 20.0)


@pytest.mark.parametrize("bad", ["0", "-3", "2.5", '"9"', "true"])
def test_a_sample_size_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ObservationError, match=r"observations\[0\]\.n.*got"):
        _load(tmp_path, n=bad)


def test_a_molar_concentration_unit_is_refused_by_name(tmp_path):
    with pytest.raises(ObservationError, match=re.escape("got 'nmol/L'")):
        _load(tmp_path, unit='"nmol/L"')


# kamp_2020_meta (V 252 L, CL 79 L/h at 70 kg, one compartment), by hand:
# AUC of 10 mg = 10/79 mg*h/L = 126.58 ug*h/L; C(1 h) = 10/252 e^(-79/252) mg/L
# = 29.05 ng/mL; t1/2 = ln 2 * 252/79 = 2.211 h; Vss = 252/70 = 3.6 L/kg
KAMP_CLOSED_FORMS = """schema_version = 1
model = "kamp_2020_meta"
[[references]]
key = "k"
citation = "c"
[[observations]]
id = "auc10"
study = "s"
reference = "k"
source = "t"
doses = [{amount = "10 mg", route = "iv"}]
covariates = {weight = 70}
analyte = "ketamine"
metric = "auc"
statistic = "typical"
value = 126.6
unit = "ug*h/L"
tolerance = {relative = 0.01}
tolerance_reason = "x"
role = "independent"
[[observations]]
id = "cmax_c0"
study = "s"
reference = "k"
source = "t"
doses = [{amount = "10 mg", route = "iv"}]
covariates = {weight = 70}
analyte = "ketamine"
metric = "concentration"
time = "60 min"
statistic = "typical"
value = 29.05
unit = "ng/mL"
tolerance = {relative = 0.01}
tolerance_reason = "x"
role = "independent"
[[observations]]
id = "thalf"
study = "s"
reference = "k"
source = "t"
doses = [{amount = "10 mg", route = "iv"}]
covariates = {weight = 70}
analyte = "ketamine"
metric = "half_life"
window = ["4 h", "24 h"]
statistic = "typical"
value = 2.211
unit = "h"
tolerance = {relative = 0.01}
tolerance_reason = "x"
role = "independent"
[[observations]]
id = "vss"
study = "s"
reference = "k"
source = "t"
doses = [{amount = "10 mg", route = "iv", duration = "30 min"}]
covariates = {weight = 70}
analyte = "ketamine"
metric = "vss"
statistic = "typical"
value = 3.6
unit = "L/kg"
tolerance = {relative = 0.01}
tolerance_reason = "x"
role = "independent"
"""


def test_validate_reproduces_closed_forms_within_one_percent(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(KAMP_CLOSED_FORMS)
    r = ks.validate("kamp_2020_meta", observations=f)
    assert list(r.status.values) == ["pass"] * 4
    expected = [10 / 79 * 1000, 10 / 252 * 2.718281828459045 ** (-79 / 252) * 1000]
    expected += [0.6931471805599453 * 252 / 79, 252 / 70]
    assert r.predicted.values == pytest.approx(expected, rel=1e-3)
    assert list(r.unit.values) == ["ug*h/L", "ng/mL", "h", "L/kg"]
