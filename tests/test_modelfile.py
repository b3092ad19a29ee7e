"""Model files: the strict loader rejects every malformed file with file + key path."""

import tomllib

import pytest

import ketasim as ks
from ketasim.modelfile import ModelFileError, models_dir

from .tomlwrite import dumps, mutate


@pytest.fixture(scope="module")
def domino_dict():
    return tomllib.loads((models_dir() / "domino.toml").read_text())


def write(tmp_path, data):
    p = tmp_path / "model.toml"
    p.write_text(dumps(data))
    return p


def test_roundtrip_writer(tmp_path, domino_dict):
    m = ks.load_model(write(tmp_path, domino_dict))
    assert m.id == "domino"
    assert m.parameters["k10"].value == pytest.approx(0.4381 * 60)
    assert m.parameters["V1"].per_kg


def test_bundled_models_load():
    names = ks.list_models()
    assert "domino" in names
    for name in names:
        assert ks.load_model(name).references


CASES = [
    ("unknown top key", ("colour",), "blue", False, "[colour] unknown key"),
    (
        "unknown parameter key",
        ("parameters", "k10", "omgea"),
        0.3,
        False,
        "[parameters.k10.omgea] unknown key",
    ),
    (
        "missing unit",
        ("parameters", "k10", "unit"),
        None,
        True,
        "[parameters.k10.unit] is missing",
    ),
    (
        "unknown unit",
        ("parameters", "k10", "unit"),
        "1/fortnight",
        False,
        "unknown unit 'fortnight'",
    ),
    (
        "dimension mismatch",
        ("flows", 0, "k"),
        "V1",
        False,
        "[flows[0].k] needs a rate constant; parameter 'V1' is a volume",
    ),
    (
        "undefined parameter",
        ("flows", 1, "k"),
        "k99",
        False,
        "[flows[1].k] names an undefined parameter 'k99'",
    ),
    (
        "undefined compartment",
        ("flows", 1, "to"),
        "brain",
        False,
        "[flows[1].to] names an undefined compartment 'brain'",
    ),
    (
        "route to undefined compartment",
        ("routes", "iv", "target"),
        "vein",
        False,
        "[routes.iv.target] names an undefined compartment 'vein'",
    ),
    (
        "bad grade",
        ("parameters", "k10", "grade"),
        "A",
        False,
        "[parameters.k10.grade] must be one of",
    ),
    (
        "iv with bioavailability",
        ("routes", "iv", "fraction"),
        "F_IN",
        False,
        "an intravenous route takes only `target`",
    ),
    (
        "wrong type",
        ("parameters", "k10", "value"),
        "fast",
        False,
        "[parameters.k10.value] must be float; got str",
    ),
    (
        "unknown reference",
        ("parameters", "k10", "reference"),
        "nobody",
        False,
        "names an unknown reference 'nobody'",
    ),
    (
        "bad schema version",
        ("schema_version",),
        7,
        False,
        "unsupported schema version 7",
    ),
    (
        "analyte without volume",
        ("analytes", "ketamine", "compartment"),
        "peripheral1",
        False,
        "has no volume",
    ),
    (
        "per-device effect without a device amount",
        ("routes", "intranasal", "later_devices"),
        "F_IN",
        False,
        "[routes.intranasal.device] is missing",
    ),
    (
        "device on an intravenous route",
        ("routes", "iv", "device"),
        "28 mg",
        False,
        "[routes.iv.device] only extravascular routes have devices",
    ),
    (
        "device per kg",
        ("routes", "intranasal", "device"),
        "0.4 mg/kg",
        False,
        "[routes.intranasal.device] must be a fixed amount > 0",
    ),
    (
        "device not an amount",
        ("routes", "intranasal", "device"),
        "28 min",
        False,
        "[routes.intranasal.device] must be a fixed amount > 0",
    ),
]


@pytest.mark.parametrize(
    "what,path,value,delete,message", CASES, ids=[c[0] for c in CASES]
)
def test_errors_name_file_and_key(
    tmp_path, domino_dict, what, path, value, delete, message
):
    p = write(tmp_path, mutate(domino_dict, path, value, delete))
    with pytest.raises(ModelFileError) as info:
        ks.load_model(p)
    text = str(info.value)
    assert str(p) in text
    assert message in text


def test_per_kg_needs_weight(tmp_path, domino_dict):
    d = mutate(domino_dict, ("covariates",), None, delete=True)
    with pytest.raises(ModelFileError, match=r"\[parameters.V1.unit\] per-kg unit"):
        ks.load_model(write(tmp_path, d))


def test_unknown_model_name_lists_models():
    with pytest.raises(FileNotFoundError, match=r"bundled models: .*domino"):
        ks.load_model("dominoo")


def test_invalid_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("schema_version = = 1")
    with pytest.raises(ModelFileError, match="not valid TOML"):
        ks.load_model(p)


def test_units_canonical():
    m = ks.load_model("domino")
    assert m.parameters["k12"].canonical_unit == "1/h"
    assert m.parameters["V1"].canonical_unit == "L/kg"
    assert len(m.sha256) == 64


def test_time_effect_on_a_transit_time_is_rejected(tmp_path):
    """parameter x (1 + slope t) is linear in the rate only for clearances and
    rate constants; on a mean transit time (rate = n / MTT) it would not be."""
    data = tomllib.loads((models_dir() / "simons_2022.toml").read_text())
    mtt = next(f for f in data["flows"] if "mtt" in f)["mtt"]
    data["time_effects"] = [
        {"parameter": mtt, "slope": 0.01, "unit": "1/h", "source": "test"}
    ]
    with pytest.raises(
        ModelFileError,
        match=rf"parameter {mtt!r} is a mean transit "
        "time",
    ):
        ks.load_model(write(tmp_path, data))
