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
        return sum(c0 / k * (np.exp(-k * (a - ti)) - np.exp(-k * (b - ti)))
                   for ti in (0.0, 24.0, 48.0) if ti <= a)

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
    ds = xr.Dataset({"concentration": (("subject", "analyte", "time"),
                                       c[None, None, :], {"units": "ng/mL"}),
                     "dose_time": ("dose", [0.0]), "dose_session": ("dose", [0])},
                    coords={"time": t, "subject": [0], "analyte": ["x"]})
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
    np.testing.assert_allclose(ds.pk.molar().values,
                               ds.concentration.values / 237.73 * 1000)
    assert ds.pk.molar().attrs["units"] == "nmol/L"


def test_scenarios_and_compare():
    t = ks.grid("4 d", "10 min")
    pop = ks.Population(20, seed=1)
    ds = ks.run_scenarios([
        ks.Scenario("iv", "domino", ks.six_infusion_course(sessions=2), population=pop,
                    times=t),
        ks.Scenario("nasal", "domino", ks.clinic_course(
            ks.Dose.bolus("56 mg", route="intranasal"), sessions=2), population=pop,
            times=t)])
    assert list(ds.scenario.values) == ["iv", "nasal"]
    assert list(ds.model_id.values) == ["domino", "domino"]
    table = ks.compare(ds, above=50)
    text = str(table)
    assert "Cmax (ng/mL)" in text and "AUC (ng*h/mL)" in text and "nasal" in text
    assert all(line == line.rstrip() for line in text.splitlines())  # no padding
    tab = table.to_dataset()
    direct = ks.metrics(ds.sel(scenario="iv"), "course").cmax
    assert tab.value.sel(scenario="iv", percentile=50).values[0] == pytest.approx(
        float(direct.median()))
    assert "<table>" in table._repr_html_()
    with pytest.raises(ValueError, match="different output times"):
        ks.run_scenarios([ks.Scenario("a", "domino", ks.Dose.bolus("1 mg"), times=t),
                          ks.Scenario("b", "domino", ks.Dose.bolus("1 mg"))])


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


def test_metrics_only_mode_matches_trajectories():
    """output='metrics' streams the same per-dose metrics the post-hoc path computes
    from stored curves, without storing them."""
    pop = ks.Population(70, seed=1)  # one block (metrics blocks hold 128)
    reg = ks.six_infusion_course()
    t = ks.grid("21 d", "10 min")
    model = "benchmarks/w2_iiv.toml"
    m = ks.simulate(model, reg, population=pop, times=t, output="metrics", above=50,
                    chunk=32)
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
        ks.simulate(model, reg, times=t, output="metrics", solver="ode")
