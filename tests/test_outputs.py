"""Results side by side and on disk: run_scenarios keeps each scenario's own
result (no padding), compare puts different drugs in one table, save/open_results
round-trip exactly and compress, the demo says what it wrote, figures."""

import matplotlib

matplotlib.use("Agg")

import netCDF4
import numpy as np
import pytest
import xarray as xr

import ketasim as ks
from ketasim.cli import main
from ketasim.plotting import plot_bands, plot_exposure, plot_scenarios

# molecular weights (g/mol) of ketamine / esketamine (C13H16ClNO) and
# norketamine (C12H14ClNO): PubChem CIDs 3821, 182137, 4400
MW_KETAMINE = 237.73
MW_NORKETAMINE = 223.70

T = ks.grid("8 d", "10 min")


def _drugs(n=12, times=T):
    """Racemic ketamine, esketamine and S-ketamine scenarios (three models, five
    analyte curves per patient among them), two or three sessions each."""
    pop = ks.Population(n, seed=3)
    return [
        ks.Scenario(
            "racemic iv",
            "domino",
            ks.six_infusion_course(sessions=3),
            population=ks.Population(n, seed=3, iiv=False),
            times=times,
        ),
        ks.Scenario(
            "esketamine spray",
            "perez_ruixo_2021",
            ks.esketamine_induction("56 mg", weeks=1, continuation_weeks=0),
            population=pop,
            times=times,
        ),
        ks.Scenario(
            "S-ketamine iv",
            "fanta_2015",
            ks.six_infusion_course(dose="0.25 mg/kg", sessions=2),
            population=pop,
            times=ks.grid("5 d", "5 min"),
        ),
    ]


@pytest.fixture(scope="module")
def drugs():
    sc = _drugs()
    return sc, ks.run_scenarios(sc, progress=False)


def test_each_scenario_is_its_simulate_result_unpadded(drugs):
    sc, res = drugs
    assert isinstance(res, ks.ScenarioResults) and list(res) == [s.name for s in sc]
    for s in sc:
        one = res[s.name]
        alone = s.run(progress=False)
        assert one.attrs.pop("scenario") == s.name
        xr.testing.assert_identical(one, alone)
        one.attrs["scenario"] = s.name
        # nothing padded: the model's own analytes and doses, every value finite
        assert [str(a) for a in one.analyte.values] == list(s.model.analyte_names)
        assert one.sizes["dose"] == len(s.regimen)
        assert np.isfinite(one.concentration.values).all()
    assert res.sel(scenario="racemic iv") is res["racemic iv"]
    assert list(res.sel(scenario=["S-ketamine iv", "racemic iv"])) == [
        "S-ketamine iv",
        "racemic iv",
    ]
    assert list(res.scenario.values) == [s.name for s in sc]
    assert res.nbytes == sum(res[s.name].nbytes for s in sc)


def test_scenario_results_say_how_to_reach_a_scenario(drugs):
    _, res = drugs
    with pytest.raises(KeyError, match=r"no scenario 'iv'; the scenarios are "):
        res["iv"]
    with pytest.raises(
        AttributeError,
        match=r"ScenarioResults has no attribute 'concentration': it holds one "
        r"Dataset per scenario \(no padding across models\); select one, e.g. "
        r"res\['racemic iv'\]\.concentration, or loop over res\.items\(\)",
    ):
        res.concentration  # noqa: B018
    with pytest.raises(TypeError, match="expected an xarray Dataset; got int"):
        ks.ScenarioResults({"a": 1})
    with pytest.raises(ValueError, match="at least one scenario"):
        ks.ScenarioResults({})


def _oracle(ds, analyte, unit):
    """First-session Cmax and Tmax per subject read off the curves (output times
    before the second session): the independent reading compare's numbers must
    equal."""
    first = ds.time.values < ds.dose_time.values[ds.dose_session.values > 0][0]
    c = ds.concentration.sel(analyte=analyte).values[:, first]
    if unit == "nmol/L":
        c = c / MW_KETAMINE * 1000.0  # ketamine and esketamine: 237.73 g/mol
    return c.max(axis=1), ds.time.values[first][c.argmax(axis=1)]


@pytest.mark.parametrize("unit", ["ng/mL", "nmol/L"])
def test_compare_puts_different_drugs_side_by_side(drugs, unit):
    sc, res = drugs
    table = ks.compare(res, unit=unit, per="session")
    text = str(table)
    assert text.splitlines()[0] == (
        "each scenario's own analyte, session 1: median [P5, P95] over patients"
    )
    assert text.splitlines()[1].split()[:3] == ["scenario", "analyte", "Cmax"]
    assert table.analytes == {
        "racemic iv": "ketamine",
        "esketamine spray": "s_ketamine",
        "S-ketamine iv": "s_ketamine",
    }
    tab = table.to_dataset()
    assert list(tab.analyte.values) == ["ketamine", "s_ketamine", "s_ketamine"]
    assert tab.metric.values[0] == f"Cmax ({unit})"
    for s in sc:
        cmax, tmax = _oracle(res[s.name], table.analytes[s.name], unit)
        got = tab.value.sel(scenario=s.name)
        np.testing.assert_allclose(
            got.sel(metric=f"Cmax ({unit})").values,
            np.percentile(cmax, [5, 50, 95]),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            got.sel(metric="Tmax (h)").values,
            np.percentile(tmax, [5, 50, 95]),
            rtol=1e-12,
        )


def test_compare_of_one_named_analyte(drugs):
    sc, res = drugs
    with pytest.raises(
        ValueError,
        match=r"^scenario 'racemic iv' has no analyte 'esketamine' \(it has "
        r"'ketamine'\); leave analyte= out to compare each scenario's own "
        r"analyte, or compare the scenarios that have it$",
    ):
        ks.compare(res, analyte="esketamine")
    with pytest.raises(
        ValueError,
        match=r"^no analyte 'hydroxynorketamine' in these results; they have "
        r"'ketamine', 's_ketamine', 's_norketamine'$",
    ):
        ks.compare(res, analyte="hydroxynorketamine")
    with pytest.raises(TypeError, match=r"analyte must be an analyte name"):
        ks.compare(res, analyte=["ketamine"])
    esk = res.sel(scenario=["esketamine spray", "S-ketamine iv"])
    table = ks.compare(esk, analyte="esketamine", per="session", window=-1)
    assert str(table).startswith("s_ketamine, last session: median")  # an alias
    assert "analyte" not in str(table).splitlines()[1]  # one analyte: no column
    # the norketamine metabolite, in nmol/L by its own weight
    nor = ks.compare(
        res.sel(scenario=["S-ketamine iv"]), analyte="s_norketamine", unit="nmol/L"
    )
    c = res["S-ketamine iv"].concentration.sel(analyte="s_norketamine").values
    np.testing.assert_allclose(
        nor.to_dataset().value.values[0, 0],
        np.percentile(c.max(axis=1) / MW_NORKETAMINE * 1000, [5, 50, 95]),
        rtol=1e-12,
    )


def test_metrics_of_scenario_results_are_each_scenarios(drugs):
    sc, res = drugs
    m = ks.metrics(res, "session", unit="nmol/L")
    assert isinstance(m, ks.ScenarioResults) and list(m) == list(res)
    for s in sc:
        assert m[s.name].attrs.pop("scenario") == s.name
        xr.testing.assert_identical(
            m[s.name], ks.metrics(res[s.name], "session", unit="nmol/L")
        )
        m[s.name].attrs["scenario"] = s.name
    assert m["S-ketamine iv"].sizes["session"] == 2
    assert m["racemic iv"].sizes["session"] == 3


def test_run_scenarios_of_metrics_only_runs(drugs):
    """Without a concatenation, metrics-only scenarios need no refusal."""
    sc, res = drugs
    streamed = ks.run_scenarios(sc, output=ks.Metrics(), progress=False)
    a = ks.compare(streamed, per="dose", window=1, unit="nmol/L")
    b = ks.compare(res, per="dose", window=1, unit="nmol/L")
    np.testing.assert_allclose(
        a.to_dataset().value.values, b.to_dataset().value.values, rtol=1e-9
    )


# --- saving and reopening ---------------------------------------------------------


def _compressed(path) -> list[str]:
    """Variables of every group in the file that are stored zlib-compressed with
    the shuffle filter, and every float variable's NaN count."""
    out = []
    with netCDF4.Dataset(path) as f:
        groups = [f, *f.groups.values()]
        for g in groups:
            for name, v in g.variables.items():
                flt = v.filters()
                if flt and flt.get("zlib") and flt.get("shuffle"):
                    out.append(f"{g.path}:{name}")
    return out


def _results():
    t = ks.grid("2 d", "15 min")
    pop = ks.Population(6, seed=2)
    reg = ks.Regimen.at([0, 24], ks.Dose.infusion("20 mg", duration="40 min"), unit="h")
    traj = ks.simulate(
        "perez_ruixo_2021",
        ks.Dose.bolus("28 mg", route="intranasal", device=1),
        population=pop,
        times=t,
        output=ks.Trajectories(auc=True, amounts=True, residual=True),
        progress=False,
    )
    return {
        "trajectories": traj,
        "metrics output": ks.simulate(
            "fanta_2015",
            reg,
            population=pop,
            times=t,
            output=ks.Metrics(above=50),
            progress=False,
        ),
        "session metrics": ks.metrics(traj, "session", above="100 nmol/L"),
        "population": ks.simulate(
            "fanta_2015", reg, population=pop, times=t, progress=False
        ),
    }


@pytest.mark.parametrize(
    "kind", ["trajectories", "metrics output", "session metrics", "population"]
)
def test_saved_results_reopen_identical_and_compressed(kind, tmp_path):
    ds = _results()[kind]
    path = ks.save(ds, tmp_path / "r.nc")
    back = ks.open_results(path)
    xr.testing.assert_identical(back, ds)  # values, coordinates and attributes
    for name, v in ds.variables.items():
        assert back[name].dtype == v.dtype, name
    back.close()
    numeric = {n for n, v in ds.variables.items() if v.ndim and v.dtype.kind in "fiub"}
    assert {c.split(":")[1] for c in _compressed(path)} == numeric


def test_saved_scenarios_reopen_identical_without_padding(drugs, tmp_path):
    _, res = drugs
    path = ks.save(res, tmp_path / "s.nc", complevel=9)
    back = ks.open_results(path)
    assert isinstance(back, ks.ScenarioResults) and list(back) == list(res)
    for name in res:
        xr.testing.assert_identical(back[name], res[name])
    with netCDF4.Dataset(path) as f:  # a reader sees one group per scenario
        assert sorted(f.groups) == ["scenario_0", "scenario_1", "scenario_2"]
        for k, name in enumerate(res):
            g = f.groups[f"scenario_{k}"]
            assert g.getncattr("scenario") == name
            c = g.variables["concentration"][:]
            assert c.shape == res[name].concentration.shape  # the model's own
            assert np.isfinite(np.ma.filled(c, np.nan)).all()  # no NaN padding
    assert "/scenario_0:concentration" in _compressed(path)
    # metrics per scenario save and reopen the same way
    m = ks.metrics(res, "session")
    back = ks.open_results(ks.save(m, tmp_path / "m.nc"))
    for name in res:
        xr.testing.assert_identical(back[name], m[name])


def test_save_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(
        TypeError,
        match=r"save writes an xarray Dataset \(a simulate result, metrics\) or "
        r"the ScenarioResults of run_scenarios; got DataArray",
    ):
        ks.save(xr.DataArray([1.0]), tmp_path / "x.nc")
    with pytest.raises(
        ValueError, match=r"complevel must be a whole number 1-9; got 0"
    ):
        ks.save(xr.Dataset(), tmp_path / "x.nc", complevel=0)


def test_demo_says_what_it_wrote(tmp_path, capsys):
    assert main(["demo", "--out-dir", str(tmp_path), "--n", "20"]) == 0
    out = capsys.readouterr().out
    assert "analyte" in out and "esketamine spray 56/84 mg  s_ketamine" in out
    lines = out.split("wrote (open the .nc files with ks.open_results(path)):\n")[1]
    files = {}
    for line in lines.splitlines():
        path, _, rest = line.strip().partition(" (")
        files[path.rsplit("/", 1)[-1]] = rest
    assert set(files) == {
        "ketasim-demo-metrics.nc",
        "ketasim-demo.nc",
        "ketasim-demo.png",
    }
    for name, rest in files.items():
        size = (tmp_path / name).stat().st_size
        shown = rest.split(")")[0]
        value, unit = shown.split()
        assert float(value) * (1e6 if unit == "MB" else 1e3) == pytest.approx(
            size, rel=0.06, abs=600
        )
    assert "curves of 20 of the 20 patients" in files["ketasim-demo.nc"]
    curves = ks.open_results(tmp_path / "ketasim-demo.nc")
    m = ks.open_results(tmp_path / "ketasim-demo-metrics.nc")
    assert list(curves) == list(m) and len(curves) == 2
    for name in curves:
        assert curves[name].sizes["subject"] == 20
        assert m[name].sizes["subject"] == 20
        assert curves[name].concentration.attrs["units"] == "ng/mL"


def test_run_out_writes_the_results_compressed(tmp_path, capsys):
    from .test_scenariofile import BASE, write

    p = write(tmp_path, BASE)
    out = tmp_path / "r.nc"
    assert main(["run", str(p), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (" in text and "compressed without loss" in text
    back = ks.open_results(out)
    from ketasim.scenariofile import load_scenarios

    res = ks.run_scenarios(load_scenarios(p).scenarios, progress=False)
    for name in res:
        xr.testing.assert_identical(back[name], res[name])
    assert _compressed(out)


# --- figures ----------------------------------------------------------------------


def _overlaps(fig) -> bool:
    """Does the figure's legend cover any panel?"""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = fig.legends[0].get_window_extent(r)
    return any(box.overlaps(ax.get_window_extent(r)) for ax in fig.axes)


def test_course_figures_zoom_the_first_session(drugs):
    _, res = drugs
    fig = plot_scenarios(res)
    assert len(fig.axes) == 6  # a row per scenario: first session, course
    titles = [a.get_title() for a in fig.axes]
    assert titles[:2] == [
        "racemic iv (ketamine): first session",
        "racemic iv (ketamine): course",
    ]
    assert fig.axes[0].get_xlabel() == "time after the first session's start (h)"
    assert fig.axes[1].get_xlabel() == "time (days)"
    assert fig.axes[3].get_ylabel() == "s_ketamine (ng/mL)"
    assert not _overlaps(fig)
    # the zoom shows the first session only: the infusion's rise and decline
    x = fig.axes[0].lines[0].get_xdata()
    assert 0 < x[-1] < 72
    # the course panel marks each session's Cmax spread
    assert len(fig.axes[3].containers) == 1  # errorbar
    # shared y on request, in nmol/L
    fig = plot_scenarios(res, sharey=True, unit="nmol/L")
    lims = {a.get_ylim() for a in fig.axes}
    assert len(lims) == 1
    assert fig.axes[0].get_ylabel() == "ketamine (nmol/L)"


def test_overlay_and_single_session_figures(drugs):
    _, res = drugs
    fig = plot_scenarios(res, layout="overlay")
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()][:3] == [
        "racemic iv",
        "session Cmax, median and P5–P95",
        "esketamine spray",
    ]
    assert fig.axes[0].get_ylabel() == "concentration (ng/mL)"
    assert not _overlaps(fig)
    with pytest.raises(
        ValueError, match=r"layout must be one of \('grid', 'overlay'\)"
    ):
        plot_scenarios(res, layout="stack")
    # one session over 3 h: one panel, time in min
    one = ks.simulate(
        "domino",
        ks.Dose.infusion("20 mg", duration="40 min"),
        times=ks.grid("3 h", "5 min"),
        progress=False,
    )
    fig = plot_bands(one)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "time (min)"
    fig = plot_bands(res["esketamine spray"])
    assert [a.get_title() for a in fig.axes] == ["first session", "course"]
    assert not _overlaps(fig)
    fig = plot_exposure(res, "cmax", unit="nmol/L")
    assert fig.axes[0].get_ylabel() == "ketamine / s_ketamine cmax (nmol/L)"
    assert not _overlaps(fig)
    with pytest.raises(ValueError, match="plot_bands draws one result"):
        plot_bands(res)


def test_chunked_results_save_as_computed(tmp_path):
    """A Dask-backed result (chunks=) is computed as it is written: the file
    reopens identical to the computed result."""
    pop = ks.Population(6, seed=4)
    t = ks.grid("1 d", "30 min")
    dose = ks.Dose.infusion("20 mg", duration="40 min")
    lazy = ks.simulate("fanta_2015", dose, population=pop, times=t, chunks=4)
    back = ks.open_results(ks.save(lazy, tmp_path / "lazy.nc"))
    xr.testing.assert_identical(back.load(), lazy.compute())


def test_compare_reads_a_padded_scenario_dataset_as_before(drugs):
    """A Dataset with a scenario dimension (built by hand with xr.concat, or saved
    by an older ketasim) is still compared scenario by scenario, each without the
    others' NaN padding: the same table as the ScenarioResults gives."""
    _, res = drugs
    two = res.sel(scenario=["esketamine spray", "S-ketamine iv"])
    padded = xr.concat(
        [
            ds.drop_vars(["parameters", "parameter", "parameter_unit"])
            for ds in two.values()
        ],
        dim=xr.DataArray(list(two), dims="scenario", name="scenario"),
        join="outer",
        combine_attrs="drop_conflicts",
        coords="minimal",
        compat="override",
        data_vars="all",
    )
    assert np.isnan(padded.dose_time.values).any()  # the shorter schedule is padded
    a = ks.compare(padded, per="session", unit="nmol/L").to_dataset()
    b = ks.compare(two, per="session", unit="nmol/L").to_dataset()
    np.testing.assert_allclose(a.value.values, b.value.values, rtol=1e-12)


def test_figures_refuse_a_unit_they_cannot_draw(drugs):
    _, res = drugs
    with pytest.raises(
        ks.UnitError, match=r"unit must be 'ng/mL' or 'nmol/L'; got 'mg/L'"
    ):
        plot_scenarios(res, unit="mg/L")
    with pytest.raises(
        ValueError, match=r"^no analyte 'norketamine' in scenario 'racemic iv'"
    ):
        plot_scenarios(res, analyte="norketamine")
