"""Analyte names: one enantiomer-explicit convention; common names are aliases."""

import tomllib

import numpy as np
import pytest

import ketasim as ks
from ketasim._analytes import CANONICAL, canonical
from ketasim.modelfile import ModelFileError, models_dir
from ketasim.nonmem import write_nonmem
from ketasim.scenariofile import ScenarioFileError, load_scenarios

from .tomlwrite import dumps

MODELS = [p.stem for p in sorted(models_dir().glob("*.toml"))]


def model_dict(name):
    return tomllib.loads((models_dir() / f"{name}.toml").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_bundled_models_use_the_convention(name):
    m = ks.load_model(name)
    prefix = {"S": "s_", "R": "r_"}.get(m.enantiomer, "")
    for a in m.analyte_names:
        assert a in CANONICAL
        assert a.startswith(prefix)
    for c in m.compartments:
        assert c.analyte is None or c.analyte in m.analyte_names
        assert c.species is None or c.species in m.analyte_names


def test_every_s_norketamine_has_one_name():
    """The same metabolite is s_norketamine in every model that measures it."""
    have = {n: ks.load_model(n).analyte_names for n in MODELS}
    for n in ("perez_ruixo_2021", "fanta_2015", "flint_2017", "simons_2022"):
        assert have[n][:2] == ("s_ketamine", "s_norketamine"), n
    assert not any("noresketamine" in a or "esketamine" in a for a in have.values())


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("esketamine", "s_ketamine"),
        ("S-ketamine", "s_ketamine"),
        ("S(+)-ketamine", "s_ketamine"),
        ("(S)-ketamine", "s_ketamine"),
        ("arketamine", "r_ketamine"),
        ("R(-)-ketamine", "r_ketamine"),
        ("noresketamine", "s_norketamine"),
        ("esnorketamine", "s_norketamine"),
        ("S-Norketamine", "s_norketamine"),
        ("s_hnk", "s_hydroxynorketamine"),
        ("ketamine", "ketamine"),
        ("(R,S)-ketamine", "ketamine"),
        ("racemic ketamine", "ketamine"),
        ("nk", "norketamine"),
    ],
)
def test_aliases(alias, name):
    assert canonical(alias) == name
    assert ks.analyte_name(alias) == name


def test_analyte_name_refuses_unknown_names():
    with pytest.raises(
        ValueError, match=r"^'propofol' names no analyte: analyte names"
    ):
        ks.analyte_name("propofol")
    with pytest.raises(TypeError, match=r"^analyte name must be a str; got int 3$"):
        ks.analyte_name(3)


def _renamed(d, old, new):
    """A model dict with analyte ``old`` written ``new`` everywhere it is named."""
    d["analytes"][new] = d["analytes"].pop(old)
    if old in d.get("residual", {}):
        d["residual"][new] = d["residual"].pop(old)
    for c in d["compartments"].values():
        for key in ("analyte", "species"):
            if c.get(key) == old:
                c[key] = new
    return d


def test_old_names_in_a_model_file_are_aliases():
    """perez_ruixo_2021 written with its old names loads as the bundled file does,
    and gives the same concentrations under the canonical names."""
    d = _renamed(model_dict("perez_ruixo_2021"), "s_ketamine", "esketamine")
    d = _renamed(d, "s_norketamine", "noresketamine")
    old = ks.model_from_dict(d)
    new = ks.load_model("perez_ruixo_2021")
    assert old.analyte_names == new.analyte_names == ("s_ketamine", "s_norketamine")
    assert set(old.residual) == {"s_ketamine", "s_norketamine"}
    dose = ks.Dose.infusion("28 mg", duration="40 min")
    t = [0.5, 2.0, 8.0]
    a = ks.simulate(old, dose, times=t).concentration
    b = ks.simulate(new, dose, times=t).concentration
    np.testing.assert_array_equal(a.values, b.values)
    assert list(a.analyte.values) == ["s_ketamine", "s_norketamine"]


def test_model_file_name_outside_the_convention_is_refused():
    d = _renamed(model_dict("fanta_2015"), "s_norketamine", "nor_k")
    with pytest.raises(
        ModelFileError,
        match=r"\[compartments\.\w+\.analyte\] names analyte 'nor_k', which is not in "
        r"ketasim's analyte naming — analyte names are <enantiomer>_<compound>",
    ):
        ks.model_from_dict(d)


def test_model_file_alias_and_name_twice_is_refused():
    d = model_dict("fanta_2015")
    d["analytes"]["esketamine"] = dict(d["analytes"]["s_ketamine"])
    with pytest.raises(
        ModelFileError,
        match=r"\[analytes\.esketamine\] names analyte 's_ketamine' a second time",
    ):
        ks.model_from_dict(d)


def test_s_model_cannot_name_the_racemate():
    d = _renamed(model_dict("fanta_2015"), "s_norketamine", "norketamine")
    with pytest.raises(
        ModelFileError,
        match=r"\[analytes\.norketamine\] analyte 'norketamine' \(racemic \(R\+S\) "
        r"norketamine\) in a model of enantiomer = 'S' — name the S-enantiomer "
        r"'s_norketamine'",
    ):
        ks.model_from_dict(d)


@pytest.fixture(scope="module")
def esk():
    """Two typical subjects on perez_ruixo_2021 (S-ketamine, S-norketamine)."""
    return ks.simulate(
        "perez_ruixo_2021",
        ks.Dose.infusion("28 mg", duration="40 min"),
        times=ks.grid("12 h", "30 min"),
    )


def test_compare_takes_aliases(esk):
    by_alias = ks.compare(esk, analyte="noresketamine").to_dataset()
    by_name = ks.compare(esk, analyte="s_norketamine").to_dataset()
    assert by_alias.identical(by_name)
    assert "s_norketamine" in str(ks.compare(esk, analyte="S-norketamine"))


def test_ketamine_never_selects_s_ketamine(esk):
    with pytest.raises(
        ValueError,
        match=r"^no analyte 'ketamine' in these results; they have 's_ketamine', "
        r"'s_norketamine'\. 'ketamine' means the racemate \(R\+S\); these results "
        r"hold S-ketamine: name it 's_ketamine'$",
    ):
        ks.compare(esk, analyte="ketamine")


def test_results_with_old_names_found_by_new_ones(esk):
    """A Dataset saved before the rename (coordinate 'esketamine') answers to
    the canonical name, and the other way round."""
    old = esk.assign_coords(analyte=["esketamine", "noresketamine"])
    a = ks.compare(old, analyte="s_ketamine").to_dataset()
    b = ks.compare(esk, analyte="esketamine").to_dataset()
    np.testing.assert_array_equal(
        a.to_array().values.astype(float), b.to_array().values.astype(float)
    )


def test_write_nonmem_takes_aliases(esk, tmp_path):
    a = write_nonmem(esk, tmp_path / "a.csv", analyte="noresketamine")
    b = write_nonmem(esk, tmp_path / "b.csv", analyte="s_norketamine")
    assert a.read_text() == b.read_text()
    with pytest.raises(ValueError, match=r"^no analyte 'hnk' in this Dataset; "):
        write_nonmem(esk, tmp_path / "c.csv", analyte="hnk")


def test_plots_take_aliases(esk):
    import matplotlib

    matplotlib.use("Agg")
    from ketasim.plotting import plot_bands

    fig = plot_bands(esk, "esketamine")
    assert fig.axes[0].get_ylabel() == "s_ketamine (ng/mL)"
    with pytest.raises(ValueError, match=r"^no analyte 'ketamine' in these results"):
        plot_bands(esk, "ketamine")


def test_scenario_file_analyte_alias(tmp_path):
    data = {
        "schema_version": 1,
        "output": {"end": "1 d", "step": "1 h", "analyte": "noresketamine"},
        "population": {"n": 2, "seed": 1, "iiv": False},
        "scenarios": [
            {
                "name": "spray",
                "model": "perez_ruixo_2021",
                "regimen": {
                    "protocol": "doses",
                    "doses": [{"amount": "28 mg", "route": "iv", "duration": "40 min"}],
                },
            }
        ],
    }
    p = tmp_path / "s.toml"
    p.write_text(dumps(data))
    assert load_scenarios(p).analyte == "s_norketamine"
    data["output"]["analyte"] = "ketamine"
    p.write_text(dumps(data))
    with pytest.raises(
        ScenarioFileError,
        match=r"\[output\.analyte\] no analyte 'ketamine' in the scenarios' models; "
        r"they have 's_ketamine', 's_norketamine'",
    ):
        load_scenarios(p)
