"""Time-varying (piecewise-constant) covariates on the exact path, against a
hand-written scipy solve_ivp reference and the constant-covariate runs."""

import itertools

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import ketasim as ks

MODEL = "clements_nimmo_1981"
# clements_nimmo_1981's typical values (models/clements_nimmo_1981.toml, all per
# kg of body weight), in L and L/h per kg
V1, V2 = 1.7522, 2.37889927
CL, Q = 0.01909898 * 60, 0.03259092 * 60

DOSES = ks.Regimen(
    [
        ks.Dose.infusion("0.5 mg/kg", duration="40 min", time=0.0),
        ks.Dose.infusion("0.5 mg/kg", duration="40 min", time=30.0),
    ]
)
T = np.array([0.0, 0.25, 0.5, 1.0, 3.0, 10.0, 20.0, 20.5, 29.0, 30.5, 31.0, 40.0])


def _reference(starts, weights, times):
    """Concentrations (ng/mL) of a two-compartment model whose CL, Q, V1, V2 scale
    with the weight in force; each 0.5 mg/kg 40-min infusion uses the weight at
    its start; amounts carry over a change, the volume switches with it."""

    def weight_at(t):
        return weights[np.searchsorted(starts, t, side="right") - 1]

    infusions = [(0.0, 0.5 * weight_at(0.0)), (30.0, 0.5 * weight_at(30.0))]
    breaks = sorted({*starts, 0.0, 2 / 3, 30.0, 30.0 + 2 / 3, times[-1]})
    x = np.zeros(2)
    out = np.empty(times.size)
    for a, b in itertools.pairwise(breaks):
        w = weight_at(a)
        rate = sum(mg / (2 / 3) for s, mg in infusions if s <= a < s + 2 / 3)

        def rhs(t, y, w=w, rate=rate):
            c1, c2 = y[0] / (V1 * w), y[1] / (V2 * w)
            return [rate - CL * w * c1 - Q * w * (c1 - c2), Q * w * (c1 - c2)]

        inside = (times >= a) & ((times < b) | ((b == breaks[-1]) & (times <= b)))
        sol = solve_ivp(
            rhs, (a, b), x, rtol=1e-10, atol=1e-12, dense_output=True, method="LSODA"
        )
        x = sol.y[:, -1]
        for i in np.flatnonzero(inside):
            out[i] = sol.sol(times[i])[0] / (V1 * weight_at(times[i])) * 1e3
    return out


def _run(cov, **kw):
    return ks.simulate(
        MODEL,
        DOSES,
        times=T,
        subjects=ks.Subjects(covariates=cov),
        output=ks.Trajectories(dose_windows=False, **kw),
    )


def test_weight_change_mid_course_matches_solve_ivp():
    cov = {
        "id": [7, 7, 7, 9],
        "time": [0.0, 0.5, 20.0, 0.0],
        "weight": [70.0, 85.0, 60.0, 90.0],
    }
    ds = _run(cov)
    got = ds.concentration.sel(analyte="ketamine").values
    ref7 = _reference(np.array([0.0, 0.5, 20.0]), np.array([70.0, 85.0, 60.0]), T)
    ref9 = _reference(np.array([0.0]), np.array([90.0]), T)
    np.testing.assert_allclose(got[0], ref7, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got[1], ref9, rtol=1e-7, atol=1e-9)
    assert list(ds.subject_id.values) == [7, 9]
    np.testing.assert_array_equal(ds.weight_by_segment.values[0], [70, 85, 60])
    assert ds.weight_by_segment.attrs["units"] == "kg"
    assert ds.segment_start.attrs["units"] == "h"
    # the second dose is per kg of the weight in force at 30 h (60 kg)
    np.testing.assert_allclose(ds.dose_mg.values[0], [35.0, 30.0])


def test_ode_path_matches_solve_ivp_and_the_exact_path():
    cov = {
        "id": [7, 7, 7, 9],
        "time": [0.0, 0.5, 20.0, 0.0],
        "weight": [70.0, 85.0, 60.0, 90.0],
    }
    ode = ks.simulate(
        MODEL,
        DOSES,
        times=T,
        subjects=ks.Subjects(covariates=cov),
        solver=ks.ODE(rtol=1e-10, atol=1e-12),
        output=ks.Trajectories(amounts=True),
    )
    got = ode.concentration.sel(analyte="ketamine").values
    ref7 = _reference(np.array([0.0, 0.5, 20.0]), np.array([70.0, 85.0, 60.0]), T)
    np.testing.assert_allclose(got[0], ref7, rtol=1e-6, atol=1e-8)
    exact = _run(cov, amounts=True)
    np.testing.assert_allclose(
        ode.amount.values, exact.amount.values, rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(ode.status.values, [0, 0])


def test_amounts_are_continuous_across_a_change():
    cov = {"id": [1, 1], "time": [0.0, 20.0], "weight": [70.0, 100.0]}
    ds = _run(cov, amounts=True)
    a = ds.amount.sel(compartment="central").values[0]
    c = ds.concentration.sel(analyte="ketamine").values[0]
    # concentration = amount / V1(weight in force); at 20 h the new weight holds
    w = np.where(T >= 20.0, 100.0, 70.0)
    np.testing.assert_allclose(c, a / (V1 * w) * 1e3, rtol=1e-12)


def test_identical_rows_equal_the_constant_covariate_run_exactly():
    cov = {"id": [1, 1, 1], "time": [0.0, 5.0, 29.5], "weight": [82.0] * 3}
    tv = _run(cov).concentration.values
    const = _run({"weight": 82.0}).concentration.values
    np.testing.assert_array_equal(tv, const)


def test_validity_warning_for_a_later_value():
    cov = {
        "id": [1, 1],
        "time": [0.0, 10.0],
        "age": [40.0, 105.0],
        "weight": [70.0, 70.0],
    }
    with pytest.warns(ks.ValidityWarning, match="105"):
        _run(cov)


@pytest.mark.parametrize(
    ("cov", "match"),
    [
        ({"time": [0.0], "weight": [70.0]}, "needs an 'id' column"),
        (
            {"id": [1, 1], "time": [0.0, 0.0], "weight": [70.0, 80.0]},
            r"subject id 1: covariate times must be strictly increasing; row 1 at 0 h",
        ),
        (
            {"id": [1, 1], "time": [2.0, 5.0], "weight": [70.0, 80.0]},
            "its first covariate row is at 2 h; the first row of each subject must",
        ),
        (
            {"id": [1, 1], "time": [0.0, np.nan], "weight": [70.0, 80.0]},
            r"must be finite and >= 0 h; row 1 \(id 1\) has nan",
        ),
        (
            {"id": [1, 2, 1], "time": [0.0, 0.0, 4.0], "weight": [70.0, 80.0, 75]},
            "the rows of subject id 1 are not contiguous",
        ),
        (
            {"id": [1, 1], "time": [0.0, 4.0], "weight": [70.0, -80.0]},
            "weight",
        ),
    ],
)
def test_bad_tables_are_refused(cov, match):
    with pytest.raises(ValueError, match=match):
        _run(cov)


def test_unsupported_outputs_are_refused():
    cov = {"id": [1, 1], "time": [0.0, 4.0], "weight": [70.0, 80.0]}
    sub = ks.Subjects(covariates=cov)
    with pytest.raises(ValueError, match="dose_windows=False"):
        ks.simulate(MODEL, DOSES, times=T, subjects=sub)
    with pytest.raises(ValueError, match="auc=, residual= and out="):
        ks.simulate(
            MODEL,
            DOSES,
            times=T,
            subjects=sub,
            output=ks.Trajectories(dose_windows=False, auc=True),
        )
    with pytest.raises(ValueError, match="chunks= is not supported"):
        ks.simulate(MODEL, DOSES, times=T, subjects=sub, chunks=1)


def test_nonmem_table_with_a_changing_wt_equals_the_python_form(tmp_path):
    csv = tmp_path / "tv.csv"
    csv.write_text(
        "ID,TIME,EVID,AMT,RATE,WT\n"
        "3,0,1,35,52.5,70\n"  # 0.5 mg/kg of 70 kg over 40 min
        "3,0.25,0,.,.,70\n"
        "3,0.5,0,.,.,85\n"  # 85 kg from 0.5 h on
        "3,10,0,.,.,85\n"
        "3,20,0,.,.,60\n"  # 60 kg from 20 h on
        "3,30,1,30,45,60\n"  # 0.5 mg/kg of 60 kg over 40 min
        "3,40,0,.,.,60\n"
    )
    table = ks.read_nonmem(csv, MODEL, time_varying=True)
    python_form = {"id": [3, 3, 3], "time": [0.0, 0.5, 20.0], "weight": [70, 85, 60]}
    assert list(table.covariates) == ["id", "time", "weight"]
    for k, v in python_form.items():
        np.testing.assert_array_equal(table.covariates[k], v)
    run = ks.simulate(
        MODEL,
        table.regimens[3],
        times=T,
        subjects=ks.Subjects(covariates=table.covariates),
        output=ks.Trajectories(dose_windows=False),
    )
    ref = _reference(np.array([0.0, 0.5, 20.0]), np.array([70.0, 85.0, 60.0]), T)
    np.testing.assert_allclose(
        run.concentration.values[0, 0], ref, rtol=1e-7, atol=1e-9
    )
    with pytest.raises(ValueError, match="was read with time_varying=True"):
        ks.simulate_nonmem(MODEL, table)
    # the default reading still refuses the change, naming ID, column and lines
    with pytest.raises(
        ValueError,
        match=r"ID 3, column WT: changes within the subject \(70 on lines 2-3; 85 on",
    ):
        ks.read_nonmem(csv, MODEL)


def test_nonmem_empty_or_implausible_time_varying_values_are_refused(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n1,2,0,.,.\n")
    with pytest.raises(ValueError, match="line 3, ID 1, column WT: covariate weight"):
        ks.read_nonmem(csv, MODEL, time_varying=True)
    csv.write_text("ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n1,2,0,.,900\n")
    with pytest.raises(ValueError, match="line 3, ID 1, column WT: "):
        ks.read_nonmem(csv, MODEL, time_varying=True)
    csv.write_text("ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n1,2,0,.,80\n1,2,0,.,75\n")
    with pytest.raises(ValueError, match="line 4, ID 1: the covariates change at"):
        ks.read_nonmem(csv, MODEL, time_varying=True)


def test_the_guide_page_prints_what_it_shows():
    import contextlib
    import io
    import re
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "guide" / "covariates.md"
    blocks = re.findall(r"```(python|text)\n(.*?)```", page.read_text(), re.S)
    (_, code), (_, shown) = blocks[0], blocks[1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/guide/covariates.md", "exec"), {})
    assert out.getvalue().strip() == shown.strip()
