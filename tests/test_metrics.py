"""Exposure metrics against closed forms and invariants; scenarios and compare()."""

import numpy as np
import pytest

import ketasim as ks

from .test_simulate import one_compartment


def test_auc_per_dose_exact_one_compartment(tmp_path):
    """Bolus D every 24 h into CL 10 L/h, V 50 L: AUC over each dosing interval has
    a closed form; summed over the course it equals n D / CL minus the tail."""
    m = one_compartment(tmp_path)
    reg = ks.Regimen.every(ks.Dose.bolus("100 mg"), interval="24 h", n=3)
    times = ks.grid("72 h", "7 min")  # deliberately coarse and off the dose grid
    ds = ks.simulate(m, reg, times=times)
    k = 10 / 50
    c0 = 100 / 50 * 1000
    edges = [0.0, 24.0, 48.0, times[-1]]  # the last window ends at the last output

    def integral(a, b):  # of sum_i c0 exp(-k (t - t_i)) over [a, b]
        return sum(
            c0 / k * (np.exp(-k * (a - ti)) - np.exp(-k * (b - ti)))
            for ti in (0.0, 24.0, 48.0)
            if ti <= a
        )

    ref = [integral(edges[i], edges[i + 1]) for i in range(3)]
    a = ds.pk.auc("dose").values[0, 0]
    np.testing.assert_allclose(a, ref, rtol=1e-10)
    acc = np.array([1.0, 1 + np.exp(-k * 24)])
    tr = ds.pk.trough("dose").values[0, 0]
    np.testing.assert_allclose(tr[:2], c0 * np.exp(-k * 24) * acc, rtol=1e-10)
    assert np.isnan(tr[2])


def test_tmax_tie_rule_first_maximum():
    ds = ks.simulate("domino", ks.six_infusion_course(), times=ks.grid("21 d", "5 min"))
    course = ds.pk.metrics("course")
    assert course.tmax.item() == pytest.approx(40 / 60)
    per = ds.pk.cmax("session").values[0, 0]
    np.testing.assert_allclose(per, per[0], rtol=1e-9)  # residue of earlier doses


def test_time_above_linear_decay():
    """A linear concentration profile crosses the threshold exactly where the linear
    interpolant does: time above 50 for C falling 100 -> 0 over 10 h is 5 h."""
    import xarray as xr

    t = np.linspace(0, 10, 11)
    c = 100 - 10 * t
    ds = xr.Dataset(
        {
            "concentration": (
                ("subject", "analyte", "time"),
                c[None, None, :],
                {"units": "ng/mL"},
            ),
            "dose_time": ("dose", [0.0]),
            "dose_session": ("dose", [0]),
        },
        coords={"time": t, "subject": [0], "analyte": ["x"]},
    )
    m = ks.metrics(ds, "course", above=50, within=(20, 60))
    assert m.time_above.item() == pytest.approx(5.0)
    assert m.time_within.item() == pytest.approx(4.0)
    assert m.auc.attrs["method"] == "trapezoid on the output grid"


def test_summary_and_pta():
    import xarray as xr

    da = xr.DataArray(np.arange(101.0), dims="subject", attrs={"units": "ng/mL"})
    s = ks.summary(da)
    np.testing.assert_allclose(s.values, [5, 50, 95])
    assert s.attrs["units"] == "ng/mL"
    assert ks.pta(da, 90).item() == pytest.approx(11 / 101)


def test_molar_units():
    ds = ks.simulate("domino", ks.Dose.bolus("10 mg"), times=[1.0])
    np.testing.assert_allclose(
        ds.pk.molar().values, ds.concentration.values / 237.73 * 1000
    )
    assert ds.pk.molar().attrs["units"] == "nmol/L"


def test_scenarios_and_compare():
    t = ks.grid("4 d", "10 min")
    pop = ks.Population(20, seed=1, iiv=False)
    ds = ks.run_scenarios(
        [
            ks.Scenario(
                "iv",
                "domino",
                ks.six_infusion_course(sessions=2),
                population=pop,
                times=t,
            ),
            ks.Scenario(
                "nasal",
                "domino",
                ks.clinic_course(
                    ks.Dose.bolus("56 mg", route="intranasal"), sessions=2
                ),
                population=pop,
                times=t,
            ),
        ]
    )
    assert list(ds.scenario.values) == ["iv", "nasal"]
    assert [ds[s].attrs["model_id"] for s in ds] == ["domino", "domino"]
    table = ks.compare(ds, above=50)
    text = str(table)
    assert "Cmax (ng/mL)" in text and "AUC (ng*h/mL)" in text and "nasal" in text
    assert all(line == line.rstrip() for line in text.splitlines())  # no padding
    tab = table.to_dataset()
    direct = ks.metrics(ds.sel(scenario="iv"), "course").cmax
    assert tab.value.sel(scenario="iv", percentile=50).values[0] == pytest.approx(
        float(direct.median())
    )
    assert "<table>" in table._repr_html_()
    assert text.startswith("ketamine, over the course: median [P5, P95]")
    with pytest.raises(
        ValueError,
        match=r"no analyte 'norketamine' in these "
        r"results; they have 'ketamine'",
    ):
        ks.compare(ds, analyte="norketamine")


def test_protocol_builders():
    r = ks.esketamine_induction("84 mg")
    sessions = sorted({round(d.time / 24, 1) for d in r if d.device == 1})
    assert sessions[:8] == [0, 3, 7, 10, 14, 17, 21, 24]
    assert sessions[8:] == [28, 35, 42, 49]
    assert sum(d.amount for d in r) == 56 + 7 * 84 + 4 * 84
    with pytest.raises(ks.DoseError, match="multiple of the 28 mg device"):
        ks.esketamine_induction("70 mg")
    both = ks.six_infusion_course().then(ks.boosters(every="4 weeks", count=2))
    assert [t / 24 for t in both.times[-2:]] == [17 + 28, 17 + 56]
    # nothing given is dropped or clamped
    for call, message in (
        (lambda: ks.clinic_course(ks.Dose.bolus("1 mg", time="2 h")), "its own time"),
        (lambda: ks.esketamine_induction(weeks=2.5), "weeks must be a whole"),
        (
            lambda: ks.esketamine_induction(maintenance_sessions=-1),
            "maintenance_sessions must be a whole number >= 0",
        ),
        (
            lambda: ks.esketamine_induction(continuation_weeks=-1),
            "continuation_weeks must be a whole number >= 0",
        ),
        (
            lambda: ks.esketamine_induction(
                maintenance_every="0 h", maintenance_sessions=2
            ),
            "maintenance_every must be > 0",
        ),
    ):
        with pytest.raises(ks.DoseError, match=message):
            call()


def test_metrics_only_mode_matches_trajectories():
    """ks.Metrics() streams the same per-dose metrics the post-hoc path computes
    from stored curves, without storing them."""
    pop = ks.Population(70, seed=1)  # one block (metrics blocks hold 128)
    reg = ks.six_infusion_course()
    t = ks.grid("21 d", "10 min")
    model = "benchmarks/w2_iiv.toml"
    m = ks.simulate(
        model, reg, population=pop, times=t, output=ks.Metrics(above=50, chunk=32)
    )
    assert "concentration" not in m
    ds = ks.simulate(model, reg, population=pop, times=t)
    ref = ks.metrics(ds, "dose", above=50)
    np.testing.assert_allclose(m.cmax, ref.cmax, rtol=1e-11)
    np.testing.assert_array_equal(m.tmax, ref.tmax)
    np.testing.assert_allclose(m.auc, ref.auc, rtol=1e-11)
    np.testing.assert_allclose(m.time_above, ref.time_above, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(m.predose, ds.predose, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(m.weight, ds.weight)
    with pytest.raises(ValueError, match="needs the exact solver"):
        ks.simulate(model, reg, times=t, solver=ks.ODE(), output=ks.Metrics())


def test_doses_after_the_last_output_time(tmp_path):
    """A dose that starts after the last output time is not simulated: simulate
    warns (GridWarning), its per-dose metrics are NaN on every path, and the doses
    inside the grid get exactly what they get without it (the last one's AUC and
    time above run to the last output time)."""
    m = one_compartment(tmp_path)
    t = ks.grid("30 h", "10 min")
    inside = ks.Regimen.at([0, 12], ks.Dose.bolus("100 mg"), unit="h")
    with_late = ks.Regimen.at([0, 12, 40, 52], ks.Dose.bolus("100 mg"), unit="h")
    cov = {"weight": [60.0, 80.0]}
    kw = dict(times=t, subjects=ks.Subjects(covariates=cov))
    ref = ks.simulate(m, inside, **kw)
    ref_m = ks.metrics(ref, "dose", above=500)
    # closed form for the last simulated dose: bolus 100 mg on top of the residue of
    # the first, AUC from 12 h to 30 h of (c(12) + 2000) e^{-k (t - 12)}
    k = 10 / 50
    c12 = 2000 * np.exp(-12 * k)
    auc_last = (c12 + 2000) * (1 - np.exp(-18 * k)) / k
    np.testing.assert_allclose(ref_m.auc.values[:, 0, 1], auc_last, rtol=1e-12)

    with pytest.warns(
        ks.GridWarning,
        match=r"2 of 4 doses start after the last "
        r"output time \(30 h = 1.25 d\), the first of them doses\[2\]",
    ):
        traj = ks.simulate(m, with_late, **kw)
    with pytest.warns(ks.GridWarning):
        streamed = ks.simulate(m, with_late, output=ks.Metrics(above=500), **kw)
    with pytest.warns(ks.GridWarning):
        ode = ks.simulate(m, with_late, solver=ks.ODE(rtol=1e-10, atol=1e-10), **kw)
    np.testing.assert_array_equal(traj.concentration, ref.concentration)
    # the ODE path's AUC is the trapezoid on the grid: its reference is its own run
    ode_ref = ks.metrics(
        ks.simulate(m, inside, solver=ks.ODE(rtol=1e-10, atol=1e-10), **kw),
        "dose",
        above=500,
    )
    for got, want in (
        (ks.metrics(traj, "dose", above=500), ref_m),
        (streamed, ref_m),
        (ks.metrics(ode, "dose", above=500), ode_ref),
    ):
        for v in ("cmax", "tmax", "auc", "time_above"):
            np.testing.assert_allclose(
                got[v].values[:, :, :2], want[v].values, rtol=1e-12
            )
            assert np.isnan(got[v].values[:, :, 2:]).all(), v
    assert np.isnan(traj.dose_auc.values[:, :, 2:]).all()
    assert np.isnan(traj.predose.values[:, :, 2:]).all()
    assert np.isnan(streamed.predose.values[:, :, 2:]).all()
    # the trough of the last simulated dose would be the level before dose 3: NaN
    trough = ks.metrics(traj, "dose").trough.values
    np.testing.assert_allclose(trough[:, :, 0], ref_m.trough.values[:, :, 0])
    assert np.isnan(trough[:, :, 1:]).all()
    # a course metric is unaffected
    np.testing.assert_allclose(
        ks.metrics(traj, "course").auc, ks.metrics(ref, "course").auc, rtol=1e-12
    )


def test_compare_names_each_scenarios_analytes():
    t = ks.grid("1 d", "30 min")
    pop = ks.Population(5, seed=1, iiv=False)
    ds = ks.run_scenarios(
        [
            ks.Scenario(
                "iv",
                "domino",
                ks.Dose.infusion("0.5 mg/kg", duration="40 min"),
                population=pop,
                times=t,
            ),
            ks.Scenario(
                "spray",
                "perez_ruixo_2021",
                ks.Dose.bolus("28 mg", route="intranasal", device=1),
                population=pop,
                times=t,
            ),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"scenario 'spray' has no analyte 'ketamine' "
        r"\(it has 's_ketamine', 's_norketamine'\); leave analyte= out to "
        r"compare each scenario's own analyte",
    ):
        ks.compare(ds, analyte="ketamine")
    assert "spray" in str(ks.compare(ds.sel(scenario=["spray"]), analyte="s_ketamine"))


def test_levels_take_units():
    """above= and within= are ng/mL; strings with a concentration unit convert."""
    t = ks.grid("1 d", "10 min")
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    ref = ks.simulate(
        "domino", d, times=t, output=ks.Metrics(above=100)
    ).time_above.values
    assert ref.item() > 0
    for level in ("100 ng/mL", "0.1 mg/L", "100 ug/L"):
        np.testing.assert_array_equal(
            ks.simulate(
                "domino", d, times=t, output=ks.Metrics(above=level)
            ).time_above.values,
            ref,
        )
    ds = ks.simulate("domino", d, times=t)
    m = ks.metrics(ds, "dose", above="0.1 mg/L", within=("50 ng/mL", 150))
    np.testing.assert_allclose(m.time_above.values, ref, rtol=1e-12)
    both = (
        ks.metrics(ds, "dose", above=50).time_above
        - ks.metrics(ds, "dose", above=150).time_above
    )
    np.testing.assert_allclose(m.time_within, both, rtol=1e-12)
    with pytest.raises(ValueError, match="low < high"):
        ks.metrics(ds, "dose", within=(150, 50))
    # numpy scalars and arrays as a user gets them from other results
    np.testing.assert_array_equal(
        ks.metrics(
            ds, "dose", above=np.float64(100), within=np.array([50, 150])
        ).time_within,
        m.time_within,
    )
    with pytest.raises(ks.UnitError, match="must be a concentration"):
        ks.metrics(ds, "dose", above="100 ng/mL/kg")


def test_compare_one_window():
    """per='session' reports one session, the first by default, any other by
    window= (negative from the end), and its title says which."""
    t = ks.grid("8 d", "10 min")
    pop = ks.Population(20, seed=4, iiv=False)
    reg = ks.Regimen(
        [
            ks.Dose.bolus(f"{mg} mg", route="intranasal", time=f"{day} d")
            for mg, day in ((28, 0), (56, 3), (84, 7))
        ]
    )
    ds = ks.run_scenarios([ks.Scenario("up", "domino", reg, population=pop, times=t)])
    cmax = ks.metrics(ds.sel(scenario="up"), "session").cmax.sel(analyte="ketamine")
    med = [float(cmax.isel(session=k).median()) for k in range(3)]
    assert med[0] < med[1] < med[2]  # three different sessions, told apart
    for window, title, k in (
        (0, "session 1", 0),
        (1, "session 2", 1),
        (-1, "last session", 2),
        (-2, "session -2 (-1 is the last)", 1),
    ):
        table = ks.compare(ds, per="session", window=window)
        assert str(table).startswith(f"ketamine, {title}: median")
        got = table.to_dataset().value.sel(scenario="up", percentile=50).values[0]
        assert got == pytest.approx(med[k], rel=1e-12)
    with pytest.raises(ValueError, match=r"window=3 but scenario 'up' has 3 sessions"):
        ks.compare(ds, per="session", window=3)
    with pytest.raises(ValueError, match=r"window=1 picks a dose or a session"):
        ks.compare(ds, window=1)
    # levels in units
    assert str(ks.compare(ds, above="0.05 mg/L")) == str(ks.compare(ds, above=50))


def test_dose_at_the_last_output_time(tmp_path):
    """A dose at the last output time is simulated (its pre-dose level is the
    previous window's trough, no warning) but its window is empty: NaN metrics."""
    import warnings

    m = one_compartment(tmp_path)
    t = ks.grid("24 h", "10 min")
    reg = ks.Regimen.at([0, 24], ks.Dose.bolus("100 mg"), unit="h")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traj = ks.simulate(m, reg, times=t)
        streamed = ks.simulate(m, reg, times=t, output=ks.Metrics(above=500))
    level = 2000 * np.exp(-24 * 10 / 50)  # just before the second dose
    auc0 = 2000 * (1 - np.exp(-24 * 10 / 50)) / (10 / 50)
    for got in (ks.metrics(traj, "dose", above=500), streamed):
        np.testing.assert_allclose(got.auc.values[0, 0], [auc0, np.nan], rtol=1e-12)
        for v in ("cmax", "tmax", "time_above"):
            assert np.isnan(got[v].values[0, 0, 1]) and np.isfinite(
                got[v].values[0, 0, 0]
            ), v
    np.testing.assert_allclose(traj.predose.values[0, 0], [0, level], rtol=1e-12)
    np.testing.assert_allclose(streamed.predose.values[0, 0], [0, level], rtol=1e-12)
    np.testing.assert_allclose(
        ks.metrics(traj, "dose").trough.values[0, 0, 0], level, rtol=1e-12
    )


def test_session_with_some_doses_after_the_grid(tmp_path):
    """A session whose later device falls after the last output time sums what was
    simulated: its AUC is the AUC from its start to the last output time."""
    m = one_compartment(tmp_path)
    # devices (which group doses into a session) need a route that declares one
    p = tmp_path / "spray.toml"
    p.write_text(
        m.path.read_text() + '[routes.spray]\nkind = "extravascular"\n'
        'target = "central"\ndevice = "100 mg"\n'
    )
    m = ks.load_model(p)
    # a session's devices are at most 1 h apart: the grid ends between them
    t = ks.grid("30 min", "10 min")
    reg = ks.Regimen(
        [
            ks.Dose.bolus("100 mg", route="spray", device=1),
            ks.Dose.bolus("100 mg", route="spray", time="40 min", device=2),
        ]
    )
    with pytest.warns(ks.GridWarning, match="1 of 2 doses"):
        ds = ks.simulate(m, reg, times=t)
    sess = ks.metrics(ds, "session")
    assert sess.sizes["session"] == 1
    want = 2000 * (1 - np.exp(-0.5 * 10 / 50)) / (10 / 50)
    np.testing.assert_allclose(sess.auc.values[0, 0], [want], rtol=1e-12)
    np.testing.assert_allclose(
        ks.metrics(ds, "course").auc.values[0, 0], [want], rtol=1e-12
    )


def test_scenarios_with_different_populations_keep_their_covariates():
    """Each scenario keeps its own patients' covariates and subject labels (a
    concatenation kept the first scenario's for every scenario)."""
    t = ks.grid("1 d", "2 h")
    small, other = (
        ks.Population(2, seed=1, iiv=False),
        ks.Population(3, seed=9, iiv=False),
    )
    later = ks.Population(4, seed=1, iiv=False).subset(2, 4)
    ds = ks.run_scenarios(
        [
            ks.Scenario(
                "a", "domino", ks.Dose.bolus("5 mg"), population=small, times=t
            ),
            ks.Scenario(
                "b", "domino", ks.Dose.bolus("5 mg"), population=other, times=t
            ),
            ks.Scenario(
                "c", "domino", ks.Dose.bolus("5 mg"), population=later, times=t
            ),
        ]
    )
    for name, pop in (("a", small), ("b", other), ("c", later)):
        one = ds.sel(scenario=name)
        assert one.weight.dims == ("subject",)
        np.testing.assert_array_equal(one.subject.values, pop.subjects)
        np.testing.assert_array_equal(
            one.weight.values, pop.covariates_for(pop.subjects)["weight"]
        )
    # metrics-only runs side by side: nothing to concatenate, so nothing refused
    m = ks.run_scenarios(
        [ks.Scenario("a", "domino", ks.Dose.bolus("5 mg"), times=t)],
        output=ks.Metrics(),
    )
    assert m["a"].cmax.dims == ("subject", "analyte", "dose")


# --- units of the results (issue 16, item 5) -------------------------------------


def _two_analytes():
    """fanta_2015: esketamine (237.73 g/mol) and S-norketamine (223.70 g/mol)."""
    reg = ks.Regimen(
        [
            ks.Dose.infusion("20 mg", duration="40 min"),
            ks.Dose.infusion("20 mg", duration="40 min", time="1 d"),
        ]
    )
    return ks.simulate(
        "fanta_2015",
        reg,
        times=ks.grid("2 d", "10 min"),
        subjects=ks.Subjects(covariates={"weight": [60.0, 85.0]}),
    )


def test_molar_metrics_are_the_molar_curves_metrics():
    """unit='nmol/L': Cmax is the maximum of the nmol/L curves (ds.pk.molar()),
    trough and AUC the exact ng/mL values / (g/mol) x 1000, per analyte."""
    ds = _two_analytes()
    mw = np.array([237.73, 223.70])
    np.testing.assert_array_equal(ds.molecular_weight.values, mw)
    ng = ks.metrics(ds, "dose")
    mol = ks.metrics(ds, "dose", unit="nmol/L")
    assert (
        mol.cmax.attrs["units"],
        mol.trough.attrs["units"],
        mol.auc.attrs["units"],
        mol.tmax.attrs["units"],
    ) == ("nmol/L", "nmol/L", "nmol*h/L", "h")
    assert (ng.cmax.attrs["units"], ng.auc.attrs["units"]) == ("ng/mL", "ng*h/mL")
    curves = ds.pk.molar().values  # (subject, analyte, time)
    t = ds.time.values
    first = (t >= 0) & (t < 24)
    second = t >= 24
    for w, sel in enumerate((first, second)):
        np.testing.assert_array_equal(
            mol.cmax.values[:, :, w], curves[:, :, sel].max(axis=2)
        )
    np.testing.assert_allclose(
        mol.auc.values, ds.dose_auc.values / mw[None, :, None] * 1000, rtol=1e-15
    )
    np.testing.assert_allclose(
        mol.trough.values[:, :, 0], ds.predose.values[:, :, 1] / mw * 1000, rtol=1e-15
    )
    np.testing.assert_array_equal(mol.tmax.values, ng.tmax.values)
    np.testing.assert_array_equal(mol.molecular_weight.values, mw)
    # the accessor and compare say the same
    np.testing.assert_array_equal(ds.pk.cmax("dose", unit="nmol/L"), mol.cmax)
    np.testing.assert_array_equal(ds.pk.auc("dose", unit="nmol/L"), mol.auc)
    assert ds.pk.trough("dose", unit="nmol/L").attrs["units"] == "nmol/L"
    table = ks.compare(ds, unit="nmol/L", analyte="s_norketamine", per="dose")
    assert table.columns == ["Cmax (nmol/L)", "Tmax (h)", "AUC (nmol*h/L)"]
    got = table.to_dataset().value.sel(percentile=50).values[0]
    np.testing.assert_allclose(
        got[[0, 2]],
        [np.median(mol.cmax.values[:, 1, 0]), np.median(mol.auc.values[:, 1, 0])],
        rtol=1e-12,
    )
    assert ks.summary(mol.auc).attrs["units"] == "nmol*h/L"


def test_molar_auc_closed_form(tmp_path):
    """Bolus D into CL: AUC to infinity is D / CL; in nmol*h/L, D / CL / MW."""
    m = one_compartment(tmp_path)
    ds = ks.simulate(m, ks.Dose.bolus("100 mg"), times=ks.grid("20 d", "1 h"))
    auc = ks.metrics(ds, "course", unit="nmol/L").auc.item()
    want = 100 / 10 * 1000 / 237.73 * 1000  # mg / (L/h) -> ng*h/mL -> nmol*h/L
    assert auc == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "level,unit",
    [("150 nmol/L", "ng/mL"), ("0.15 umol/L", "nmol/L"), ("150 nmol/L", "nmol/L")],
)
def test_molar_levels_convert_per_analyte(level, unit):
    """A molar level is a different mass level for each analyte: 150 nmol/L is
    150 x MW / 1000 ng/mL."""
    ds = _two_analytes()
    got = ks.metrics(ds, "dose", above=level, unit=unit)
    assert got.time_above.attrs == {"units": "h", "long_name": "time above 150 nmol/L"}
    for k, mw in enumerate((237.73, 223.70)):
        want = ks.metrics(ds, "dose", above=150 * mw / 1000).time_above
        np.testing.assert_allclose(
            got.time_above.values[:, k], want.values[:, k], rtol=1e-12, atol=1e-12
        )
    assert got.time_above.values.min() > 0  # the level is crossed
    within = ks.metrics(ds, "dose", within=("20 ng/mL", level), unit=unit)
    np.testing.assert_allclose(
        within.time_within.values,
        ks.metrics(ds, "dose", above=20).time_above.values - got.time_above.values,
        rtol=1e-12,
        atol=1e-12,
    )


def _relabelled(units):
    ds = ks.simulate("domino", ks.Dose.bolus("10 mg"), times=ks.grid("6 h", "1 h"))
    c = ds.pk.molar() if units == "nmol/L" else ds.concentration.copy()
    c.attrs = {} if units is None else {**c.attrs, "units": units}
    return ds.assign(concentration=c)


@pytest.mark.parametrize(
    "make,kw,exc,message",
    [
        (
            lambda: _relabelled("nmol/L"),
            {},
            ks.UnitError,
            r"metrics reads ds.concentration in ng/mL, as ks.simulate returns it; its "
            r"units attribute is 'nmol/L' \(for molar metrics pass the ng/mL Dataset "
            r"from ks.simulate with unit='nmol/L'",
        ),
        (
            lambda: _relabelled("mg/L"),
            {},
            ks.UnitError,
            r"its units attribute is 'mg/L'; convert the values to ng/mL and set "
            r"ds.concentration.attrs\['units'\] = 'ng/mL'",
        ),
        (
            lambda: _relabelled(None),
            {},
            ks.UnitError,
            r"ds.concentration has no units attribute; metrics reads it in ng/mL",
        ),
        (
            lambda: _relabelled("ng/mL").assign(
                dose_auc=lambda d: d.dose_auc.assign_attrs(units="nmol*h/L")
            ),
            {},
            ks.UnitError,
            r"metrics reads ds.dose_auc in ng\*h/mL",
        ),
        (
            lambda: _relabelled("nmol/L").concentration,
            {},
            TypeError,
            r"metrics needs the Dataset from ks.simulate .*got a DataArray in nmol/L",
        ),
        (
            lambda: ks.simulate(
                "domino", ks.Dose.bolus("10 mg"), times=[0.0, 1.0], output=ks.Metrics()
            ),
            {},
            ValueError,
            r"ds holds metrics already .*simulate with output=ks\.Trajectories\(\) "
            r"\(the default\)",
        ),
        (
            lambda: _relabelled("ng/mL"),
            {"unit": "nM"},
            ks.UnitError,
            r"unit must be 'ng/mL' or 'nmol/L' .*got 'nM'",
        ),
        (
            lambda: _relabelled("ng/mL"),
            {"unit": "nmol/L", "above": 100},
            ks.UnitError,
            r"above=100 has no unit; with unit='nmol/L' write it, e.g. '100 nmol/L' or "
            r"'100 ng/mL'",
        ),
        (
            lambda: _relabelled("ng/mL"),
            {"unit": "nmol/L", "within": ("5", "9 nmol/L")},
            ks.UnitError,
            r"within='5' has no unit",
        ),
        (
            lambda: _relabelled("ng/mL").drop_vars("molecular_weight"),
            {"unit": "nmol/L"},
            ValueError,
            r"unit='nmol/L' needs each analyte's molecular weight; ds has no "
            r"'molecular_weight'",
        ),
        (
            lambda: _relabelled("ng/mL").drop_vars("molecular_weight"),
            {"above": "5 nmol/L"},
            ValueError,
            r"above='5 nmol/L' needs each analyte's "
            r"molecular weight",
        ),
        (
            lambda: _relabelled("ng/mL"),
            {"within": ("900 nmol/L", "100 ng/mL")},
            ValueError,
            r"within must be \(low, high\) with low < high; got "
            r"\('900 nmol/L', '100 ng/mL'\) \(for analyte 'ketamine': 213.957 and 100 "
            r"ng/mL\)",
        ),
    ],
)
def test_metrics_refuse_what_they_cannot_label_truly(make, kw, exc, message):
    with pytest.raises(exc, match=message):
        ks.metrics(make(), "dose", **kw)


def test_molar_curves_are_not_converted_twice():
    with pytest.raises(
        ks.UnitError,
        match=r"molar\(\) converts ng/mL; "
        r"ds.concentration has units 'nmol/L'",
    ):
        _relabelled("nmol/L").pk.molar()


def test_scenarios_keep_every_models_molecular_weights():
    """Scenarios of different models keep each analyte's weight, so molar metrics
    of any scenario work."""
    t = ks.grid("1 d", "30 min")
    ds = ks.run_scenarios(
        [
            ks.Scenario("iv", "domino", ks.Dose.bolus("10 mg"), times=t),
            ks.Scenario("es", "fanta_2015", ks.Dose.bolus("10 mg"), times=t),
        ]
    )
    got = {
        str(a): float(w)
        for s in ds
        for a, w in zip(
            ds[s].analyte.values, ds[s].molecular_weight.values, strict=True
        )
    }
    assert got == {"s_ketamine": 237.73, "ketamine": 237.73, "s_norketamine": 223.70}
    m = ks.metrics(ds, "course", unit="nmol/L")
    for name in ("iv", "es"):
        one = ks.metrics(ds.sel(scenario=name), "course")
        mw = ds[name].molecular_weight.values
        np.testing.assert_allclose(
            m[name].cmax.values,
            one.cmax.values / mw[None, :, None] * 1000,
            rtol=1e-15,
        )
    assert list(m["iv"].analyte.values) == ["ketamine"]  # no padded analytes
    assert "time > 50 nmol/L (h)" in str(
        ks.compare(ds.sel(scenario=["es"]), above="50 nmol/L", analyte="s_ketamine")
    )


# --- metrics mode agrees with post-hoc metrics (issue 16, item 9) ----------------


def _lag_model(tmp_path):
    """One compartment with an extravascular route whose bolus arrives 1 h late."""
    p = tmp_path / "lag.toml"
    text = (
        one_compartment(tmp_path)
        .path.read_text()
        .replace(
            "[routes.iv]",
            """
[parameters.TLAG]
value = 1
unit = "h"
description = "lag"
source = "test"
grade = "choice"
[routes.late]
kind = "extravascular"
target = "central"
lag = "TLAG"
[routes.iv]""",
        )
    )
    p.write_text(text.replace('id = "one"', 'id = "lag"'))
    return ks.load_model(p)


def _regimen(case):
    B, inf = ks.Dose.bolus, ks.Dose.infusion
    return {
        "simultaneous": ks.Regimen(
            [
                B("10 mg"),
                B("10 mg"),
                inf("20 mg", duration="1 h", time="5 h"),
                B("5 mg", time="5 h"),
            ]
        ),
        "at the last output time": ks.Regimen([B("10 mg"), B("10 mg", time="24 h")]),
        "after the last output time": ks.Regimen(
            [B("10 mg"), B("10 mg", time="12 h"), B("10 mg", time="30 h")]
        ),
        "no output time in a window": ks.Regimen(
            [B("10 mg", time=f"{h} h") for h in (2.2, 2.5, 2.7, 9.0)]
        ),
        "infusions spanning windows": ks.Regimen(
            [
                inf("30 mg", duration="3 h"),
                B("5 mg", time="1 h"),
                inf("10 mg", duration="1 h", time="2 h"),
                B("5 mg", time="2.5 h"),
            ]
        ),
        "lagged dose arrives at a dose time": ks.Regimen(
            [B("10 mg", route="late"), B("10 mg", time="1 h")]
        ),
    }[case]


CASES = [  # case, model, output times, levels
    ("simultaneous", "domino", ("24 h", "10 min"), 50),
    ("at the last output time", "domino", ("24 h", "10 min"), "0.05 mg/L"),
    ("after the last output time", "domino", ("24 h", "10 min"), 20),
    ("no output time in a window", "domino", ("24 h", "1 h"), 20),
    ("infusions spanning windows", "domino", ("24 h", "20 min"), 100),
    ("infusions spanning windows", "fanta_2015", ("24 h", "20 min"), 10),
    ("simultaneous", "fanta_2015", ("24 h", "7 min"), 5),
    ("lagged dose arrives at a dose time", "lag", ("24 h", "15 min"), 100),
]


@pytest.mark.parametrize("case,model,grid,above", CASES)
def test_metrics_mode_agrees_with_post_hoc_metrics(case, model, grid, above, tmp_path):
    """Cmax, Tmax, exact AUC, time above and the pre-dose level per dose from
    ks.Metrics() equal those from the stored curves, NaN where NaN (a window
    with no output time, a dose after the grid); and a pre-dose level is the level
    before every dose of that time."""
    import contextlib

    m = _lag_model(tmp_path) if model == "lag" else model
    reg = _regimen(case)
    weights = {"weight": [55.0, 70.0, 95.0]}
    kw = dict(times=ks.grid(*grid), subjects=ks.Subjects(covariates=weights))
    late = case == "after the last output time"

    def run(**more):
        with pytest.warns(ks.GridWarning) if late else contextlib.nullcontext():
            return ks.simulate(m, reg, **kw, **more)

    ds = run()
    streamed = run(output=ks.Metrics(above=above))
    post = ks.metrics(ds, "dose", above=above)
    for v in ("cmax", "tmax", "auc", "time_above"):
        assert streamed[v].attrs["units"] == post[v].attrs["units"], v
        np.testing.assert_allclose(
            streamed[v].values, post[v].values, rtol=1e-11, atol=1e-12, err_msg=v
        )
    np.testing.assert_array_equal(streamed.tmax.values, post.tmax.values)
    np.testing.assert_allclose(
        streamed.predose.values, ds.predose.values, rtol=1e-12, atol=1e-15
    )
    # no output time in [start, next start): nothing read on the grid
    t = ds.time.values
    starts = np.array(reg.times)
    nxt = np.append(starts[1:], np.inf)
    empty = np.array(
        [
            not np.any((t >= a) & (t < b)) or a >= t[-1]
            for a, b in zip(starts, nxt, strict=True)
        ]
    )
    for got in (streamed, post):
        for v in ("cmax", "tmax", "time_above"):
            assert np.isnan(got[v].values[:, :, empty]).all(), v
            assert np.isfinite(got[v].values[:, :, ~empty]).all(), v
    if model == "lag":  # the lagged first dose lands at 1 h, after the level
        # just before the second dose: nothing was in the body before it
        np.testing.assert_array_equal(streamed.predose.values[:, 0, :], 0.0)
        return
    # the pre-dose level is the level before the dose time: the run without the
    # doses from that time on, read at that time (an output time of its own)
    for i in np.flatnonzero(starts <= t[-1]):
        before = (
            ks.Regimen([d for d in reg.doses if d.time < starts[i]])
            if starts[i] > 0
            else None
        )
        if before is None or not before.doses:
            want = np.zeros(streamed.predose.shape[:2])
        else:
            want = ks.simulate(
                m,
                before,
                times=[0.0, starts[i]],
                subjects=ks.Subjects(covariates=weights),
            ).concentration.values
            want = want[:, :, 1]
        np.testing.assert_allclose(
            streamed.predose.values[:, :, i],
            want,
            rtol=1e-11,
            atol=1e-13,
            err_msg=f"dose {i}",
        )


@pytest.mark.parametrize(
    "units,threshold,want",
    [
        ("ng/mL", 90, 11 / 101),
        ("ng/mL", "0.09 mg/L", 11 / 101),
        ("ng*h/mL", "0.09 mg*h/L", 11 / 101),
        ("h", "5400 min", 11 / 101),
        ("nmol/L", "0.09 umol/L", 11 / 101),
    ],
)
def test_pta_thresholds_in_the_metrics_units(units, threshold, want):
    import xarray as xr

    da = xr.DataArray(
        np.arange(101.0), dims="subject", attrs={"units": units}, name="m"
    )
    got = ks.pta(da, threshold)
    assert got.item() == pytest.approx(want)
    assert got.attrs == {
        "units": "1",
        "long_name": f"P(m >= 90 {units}) over 101 of 101 subjects",
    }


@pytest.mark.parametrize(
    "units,threshold,exc,message",
    [
        (
            "ng/mL",
            "90 nmol/L",
            ks.UnitError,
            r"threshold '90 nmol/L' is not in a unit of "
            r"the metric's kind \(ng/mL\); compute the metric with unit=",
        ),
        ("ng/mL", "90 furlong", ks.UnitError, r"threshold '90 furlong': unknown unit"),
        (
            "ng/mL",
            True,
            TypeError,
            r"threshold must be a number in the metric's units "
            r"or a string with a unit; got bool True",
        ),
        ("h", float("nan"), ValueError, r"threshold must be finite; got nan"),
        (
            "ng/mL",
            "-1 ng/mL",
            ValueError,
            r"threshold must be >= 0: concentrations, "
            r"AUCs and times are never negative; got -1 ng/mL$",
        ),
        ("h", -0.5, ValueError, r"threshold must be >= 0: .*; got -0.5 h$"),
        (
            None,
            "1 h",
            ks.UnitError,
            r"threshold '1 h' has a unit, but the metric has no "
            r"units attribute",
        ),
    ],
)
def test_pta_refuses_thresholds_it_cannot_compare(units, threshold, exc, message):
    import xarray as xr

    attrs = {} if units is None else {"units": units}
    da = xr.DataArray(np.arange(5.0), dims="subject", attrs=attrs)
    with pytest.raises(exc, match=message):
        ks.pta(da, threshold)


def test_scenario_of_an_ode_model_gets_its_grid_auc_not_nan():
    """Next to an exact scenario, an ODE scenario's AUC comes from its own
    curves, as when it runs alone, and each scenario's method says which."""
    t = ks.grid("1 d", "10 min")
    dose = ks.Dose.bolus("10 mg")
    # one typical child: flint_2017 refuses its 70 kg reference weight
    child = ks.Population(
        1, seed=0, covariates={"weight": [20.0], "age": [6.0]}, iiv=False, iov=False
    )
    ds = ks.run_scenarios(
        [
            ks.Scenario("exact", "fanta_2015", dose, times=t),
            ks.Scenario("ode", "flint_2017", dose, population=child, times=t),
        ]
    )
    m = ks.metrics(ds, "course")
    alone = ks.metrics(
        ks.simulate("flint_2017", dose, times=t, population=child), "course"
    )
    np.testing.assert_allclose(m["ode"].auc.values, alone.auc.values, rtol=1e-12)
    assert alone.auc.attrs["method"] == "trapezoid on the output grid"
    assert m["ode"].auc.attrs["method"] == "trapezoid on the output grid"
    assert m["exact"].auc.attrs["method"] == "exact (integrated in the kernel)"


def test_metrics_mode_refuses_a_molar_level():
    """The streaming kernel compares every analyte with one ng/mL level; a molar
    level is a different mass level per analyte, so it is refused with the way to
    get it (post-hoc metrics take it)."""
    with pytest.raises(
        ks.UnitError,
        match=r"above='400 nmol/L' is a molar level; in "
        r"Metrics\(above=\.\.\.\) it is one level in ng/mL for every "
        r"analyte .*ks.metrics\(ds, 'dose', above='400 nmol/L'\)",
    ):
        ks.simulate(
            "domino",
            ks.Dose.bolus("5 mg"),
            times=[0.0, 1.0],
            output=ks.Metrics(above="400 nmol/L"),
        )


def _with_failed(ds, failed):
    """``ds`` as errors="keep" returns it when the subjects ``failed`` stopped
    with status 1: their curves keep values (as a failed subject's curve does up
    to where the solver stopped), so only ``status`` tells them apart."""
    status = ds.status.values.copy()
    status[failed] = 1
    return ds.assign(status=("subject", status, ds.status.attrs))


def test_failed_subjects_have_nan_metrics_on_the_real_path():
    """A subject kept with errors="keep" has a curve that stops where the solver
    stopped; its Cmax read from what is left (0 before) would be a wrong number."""
    ds = ks.simulate(
        "domino",
        ks.Dose.infusion("1 mg/kg", duration="1 h"),
        solver=ks.ODE(max_steps=8),
        errors="keep",
        population=ks.Population(3, seed=1, iiv=False),
        times=ks.grid("12 h", "10 min"),
    )
    assert ds.status.values.tolist() == [1, 1, 1]
    m = ds.pk.metrics("dose", above=10)
    for v in ("cmax", "tmax", "auc", "trough", "time_above"):
        assert np.isnan(m[v].values).all(), v
    np.testing.assert_array_equal(m.status.values, [1, 1, 1])


@pytest.mark.parametrize("per", ["dose", "session", "course"])
def test_failed_subjects_are_nan_and_counted(per):
    pop = ks.Population(5, seed=3, iiv=False)
    reg = ks.Regimen.every(ks.Dose.bolus("20 mg"), interval="12 h", n=2)
    ok = ks.simulate("domino", reg, population=pop, times=ks.grid("1 d", "10 min"))
    ds = _with_failed(ok, [1, 3])
    m = ks.metrics(ds, per, above=50)
    good = ks.metrics(ok, per, above=50)
    keep = [0, 2, 4]
    for v in m.data_vars:
        assert np.isnan(m[v].values[[1, 3]]).all(), v
        np.testing.assert_array_equal(m[v].values[keep], good[v].values[keep])
    note = (
        "2 of 5 subjects failed (status != 0) and are left out (their metrics are NaN)"
    )
    s = ks.summary(m.cmax)
    assert s.attrs["left_out"] == note
    np.testing.assert_allclose(
        s.values,
        good.cmax.isel(subject=keep).quantile([0.05, 0.5, 0.95], dim="subject").values,
        rtol=1e-12,
    )
    assert "left_out" not in ks.summary(good.cmax).attrs
    level = float(good.cmax.isel(subject=keep, analyte=0, **{per: 0}).median())
    p = ks.pta(m.cmax, level)
    want = float(
        (good.cmax.isel(subject=keep) >= level)
        .mean("subject")
        .isel(analyte=0, **{per: 0})
    )
    assert p.isel(analyte=0, **{per: 0}).item() == pytest.approx(want)
    assert p.attrs["long_name"] == f"P(cmax >= {level:g} ng/mL) over 3 of 5 subjects"
    assert p.attrs["left_out"] == note
    assert p.n_subjects.isel(analyte=0, **{per: 0}).item() == 3


def test_compare_says_how_many_subjects_were_left_out():
    pop = ks.Population(5, seed=3, iiv=False)
    ok = ks.simulate(
        "domino", ks.Dose.bolus("20 mg"), population=pop, times=ks.grid("1 d", "10 min")
    )
    table = ks.compare(_with_failed(ok, [2]))
    lines = str(table).splitlines()
    assert lines[-1] == (
        "1 of 5 subjects failed (status != 0) and are left out (their metrics are NaN)"
    )
    assert table.to_dataset().attrs["left_out"] == lines[-1]
    cmax = ks.metrics(ok, "course").cmax.isel(subject=[0, 1, 3, 4], analyte=0)
    got = table.to_dataset().value.isel(scenario=0, metric=0).values
    np.testing.assert_allclose(
        got, np.percentile(cmax.values[:, 0], [5, 50, 95]), rtol=1e-12
    )
    assert "left out" not in str(ks.compare(ok))


def test_trapezoid_auc_is_not_split_at_a_dose_off_the_grid(tmp_path):
    """Per-dose trapezoid AUC: a dose time between two output times cannot split
    the area; both windows meeting there are NaN (the course AUC stays), and with
    the dose time on the grid the split agrees with the closed form (1 h
    infusions of 35 mg into CL 10 L/h, V 50 L; continuous curves, so the
    trapezoid's error is O(step^2))."""
    m = one_compartment(tmp_path)
    reg = ks.Regimen.at([0, 5.03], ks.Dose.infusion("35 mg", duration="1 h"))
    t = ks.grid("12 h", "3 min")
    assert 5.03 not in t
    off = ks.simulate(m, reg, times=t, output=ks.Trajectories(dose_windows=False))
    a = off.pk.metrics("dose").auc
    assert np.isnan(a.values).all()
    assert a.attrs["method"] == (
        "trapezoid on the output grid; NaN for dose 0, 1: the dose start at 5.03 h "
        "is not an output time, so the area cannot be split there from the curve "
        "(include the dose times in times=, or use a model the exact solver runs)"
    )
    assert np.isfinite(off.pk.auc("course").values).all()
    on = ks.simulate(
        m, reg, times=np.union1d(t, [5.03]), output=ks.Trajectories(dose_windows=False)
    )
    got = on.pk.metrics("dose").auc
    assert got.attrs["method"] == "trapezoid on the output grid"
    k, v, rate, dur = 10 / 50, 50.0, 35.0, 1.0
    top = rate / (k * v) * (1 - np.exp(-k * dur)) * 1000  # ng/mL at the end

    def area(u):  # ng*h/mL of one infusion from its start to u h after it
        if u <= 0:
            return 0.0
        if u <= dur:
            return rate / (k * v) * (u - (1 - np.exp(-k * u)) / k) * 1000
        return area(dur) + top * (1 - np.exp(-k * (u - dur))) / k

    def integral(lo, hi):
        return sum(area(hi - s) - area(lo - s) for s in (0.0, 5.03))

    want = [integral(0.0, 5.03), integral(5.03, 12.0)]
    np.testing.assert_allclose(got.values[0, 0], want, rtol=1e-4)


def test_compare_on_a_metrics_only_result():
    """ks.Metrics() keeps metrics per dose: compare takes them per dose (the
    same table as from the curves) and refuses what they cannot give."""
    pop = ks.Population(6, seed=2, iiv=False)
    reg = ks.Regimen.every(ks.Dose.bolus("20 mg"), interval="12 h", n=2)
    t = ks.grid("1 d", "10 min")
    curves = ks.simulate("domino", reg, population=pop, times=t)
    streamed = ks.simulate("domino", reg, population=pop, times=t, output=ks.Metrics())
    for unit in ("ng/mL", "nmol/L"):
        for window in (0, -1):
            a = ks.compare(streamed, per="dose", window=window, unit=unit)
            b = ks.compare(curves, per="dose", window=window, unit=unit)
            assert a.columns == b.columns
            np.testing.assert_allclose(
                a.to_dataset().value, b.to_dataset().value, rtol=1e-11
            )
    with pytest.raises(
        ValueError,
        match=r"this result is from simulate\(output="
        r"ks\.Metrics\(\)\), which keeps metrics per dose only; "
        r"compare it with per='dose' \(got per='course'\)",
    ):
        ks.compare(streamed)
    with pytest.raises(
        ValueError,
        match=r"cannot compute the time above 50; "
        r"simulate with output=ks\.Metrics\(above=50\) instead",
    ):
        ks.compare(streamed, per="dose", above=50)


def test_compare_refuses_a_window_after_the_grid():
    reg = ks.Regimen.every(ks.Dose.bolus("20 mg"), interval="12 h", n=3)
    with pytest.warns(ks.GridWarning):
        ds = ks.simulate("domino", reg, times=ks.grid("20 h", "10 min"))
    with pytest.raises(
        ValueError,
        match=r"window=-1 picks session 3 of 3 in scenario "
        r"'domino', which starts at 24 h, at or after the last "
        r"output time \(20 h\): it has no output time",
    ):
        ks.compare(ds, per="session", window=-1)
    assert "session 2" in str(ks.compare(ds, per="session", window=1))


def test_plot_exposure_takes_a_unit():
    import matplotlib

    matplotlib.use("Agg")
    ds = ks.simulate("domino", ks.Dose.bolus("20 mg"), times=ks.grid("1 d", "10 min"))
    from ketasim.plotting import plot_exposure

    fig = plot_exposure(ds, "auc", unit="nmol/L")
    assert fig.axes[0].get_ylabel() == "ketamine auc (nmol*h/L)"
    with pytest.raises(ks.UnitError, match=r"unit must be 'ng/mL' or 'nmol/L'"):
        plot_exposure(ds, unit="mg/L")


def test_metrics_mode_gives_nan_for_a_failed_subject(monkeypatch):
    """errors="keep" with ks.Metrics(): a subject the kernel reports failed has
    NaN metrics (not the numbers up to its failure), as on the post-hoc path."""
    from ketasim._kernels import linear

    real = linear.population_linear_metrics

    def fails_subject_1(*args):
        real(*args)
        args[-3][1] = 4  # the status array of the chunk

    monkeypatch.setattr(linear, "population_linear_metrics", fails_subject_1)
    pop = ks.Population(3, seed=1)
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    ds = ks.simulate(
        "clements_nimmo_1981",
        dose,
        population=pop,
        times=ks.grid("12 h", "10 min"),
        output=ks.Metrics(),
        errors="keep",
    )
    assert ds.status.values.tolist() == [0, 4, 0]
    for name in ("cmax", "tmax", "predose"):
        v = ds[name].values
        assert np.isnan(v[1]).all() and np.isfinite(v[[0, 2]]).all(), name
