"""MAP individual estimation (ks.estimate), forecasts and the one-dose solve.

Oracles: an objective written out by hand here (scipy.linalg.expm predictions,
scipy.stats for the censored terms) minimised by scipy.optimize; ks.simulate
(the lowering and kernels of the simulation path) for the individual
predictions; recovery of the parameters simulated patients were drawn with
(coverage of the 90 % intervals); invariance to subject order and to chunking.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats

import ketasim as ks

MODEL = "fanta_2015"  # IIV on V1, CL, VN, CLN (correlated), proportional errors
ANALYTES = ("s_ketamine", "s_norketamine")
TIMES = np.array([0.5, 1.0, 3.0, 6.0, 24.5, 30.0])
COURSE = ks.Regimen(
    [
        ks.Dose.infusion("20 mg", duration="40 min"),
        ks.Dose.infusion("0.3 mg/kg", duration="40 min", time=24),
    ]
)


def _simulated(n: int, seed: int, times=TIMES, regimen=COURSE):
    """Observations of ``n`` simulated patients with residual error (tidy
    table) and the simulation Dataset (their true parameters)."""
    ds = ks.simulate(
        MODEL,
        regimen,
        times=times,
        population=ks.Population(n, seed=seed),
        output=ks.Trajectories(residual=True),
    )
    obs = np.stack([ds.observed.sel(analyte=a).values for a in ANALYTES], axis=1)
    T, K = times.size, len(ANALYTES)
    table = {
        "subject": np.repeat(np.arange(n), K * T),
        "time": np.tile(times, n * K),
        "analyte": np.tile(np.repeat(ANALYTES, T), n),
        "concentration": obs.reshape(-1),  # (subject, analyte, time) order
        "weight": np.repeat(ds.weight.values, K * T),
    }
    return table, ds


@pytest.fixture(scope="module")
def small():
    table, ds = _simulated(4, seed=11)
    # subject 0: its last metabolite level is censored (M3)
    lloq = np.full(table["time"].size, np.nan)
    last = np.flatnonzero(
        (table["subject"] == 0) & (table["analyte"] == "s_norketamine")
    )[-1]
    lloq[last] = table["concentration"][last] * 1.5
    table["lloq"] = lloq
    return table, ds, ks.estimate(MODEL, table, doses=COURSE)


# ---------------------------------------------------------------------------
# the independent reference: the same objective, by hand, minimised by scipy
def _reference_objective(model, table, s, weight):
    rows = table["subject"] == s
    t_obs = table["time"][rows]
    an = table["analyte"][rows]
    y = table["concentration"][rows]
    lloq = table["lloq"][rows]
    var = [v for v in model.variability if v.omega > 0]
    names = [v.parameter for v in var]
    om = np.diag([v.omega**2 for v in var])
    for a, b, rho in model.correlations:
        i, j = names.index(a), names.index(b)
        om[i, j] = om[j, i] = rho * var[i].omega * var[j].omega
    om_inv = np.linalg.inv(om)
    logdet = np.linalg.slogdet(2 * np.pi * om)[1]
    nk = model.analytes[1]  # molar formation scales by the ratio of molecular
    # weights; fanta_2015's metabolite parameters are apparent ones (no scaling)
    mw = 1.0 if nk.formation == "apparent" else nk.mw / model.analytes[0].mw
    # the course by hand: 20 mg over 40 min at 0 h, 0.3 mg/kg over 40 min at 24 h
    infusions = [(0.0, 20.0), (24.0, 0.3 * weight)]

    typical = {
        k: p.value * (weight if p.per_kg else 1.0) for k, p in model.parameters.items()
    }
    for e in model.covariate_effects:  # fanta_2015: allometric weight powers
        assert e.kind == "power" and e.covariate == "weight"
        typical[e.parameter] *= (weight / e.reference) ** e.coefficient
    edges = sorted({t for t0, _ in infusions for t in (t0, t0 + 40 / 60)})

    def predict(eta):
        p = dict(typical)
        for k, e in zip(names, eta, strict=True):  # log-normal random effects
            p[k] = typical[k] * np.exp(e)
        # states: central, p1, p2, nk, nk_p
        A = np.zeros((5, 5))
        k10, k12, k13 = p["CL"] / p["V1"], p["Q1"] / p["V1"], p["Q2"] / p["V1"]
        A[0, 0] = -(k10 + k12 + k13)
        A[1, 0], A[0, 1], A[1, 1] = k12, p["Q1"] / p["Vp1"], -p["Q1"] / p["Vp1"]
        A[2, 0], A[0, 2], A[2, 2] = k13, p["Q2"] / p["Vp2"], -p["Q2"] / p["Vp2"]
        A[3, 0] = k10 * mw
        A[3, 3] = -(p["CLN"] + p["QN"]) / p["VN"]
        A[4, 3], A[3, 4], A[4, 4] = (
            p["QN"] / p["VN"],
            p["QN"] / p["VpN"],
            -p["QN"] / p["VpN"],
        )
        x = np.zeros(5)
        now = 0.0
        out = np.empty((t_obs.size, 5))
        stops = sorted({*edges, *t_obs})
        for e in stops:  # march through infusion edges and sample times
            rate = sum(
                mg / (40 / 60) for t0, mg in infusions if t0 <= now < t0 + 40 / 60
            )
            M = np.zeros((6, 6))
            M[:5, :5] = A * (e - now)
            M[0, 5] = rate * (e - now)
            x = (scipy.linalg.expm(M) @ np.append(x, 1.0))[:5]
            now = e
            out[t_obs == e] = x
        return np.where(
            an == "s_ketamine", 1000 * out[:, 0] / p["V1"], 1000 * out[:, 3] / p["VN"]
        )

    def ofv(eta):
        f = predict(eta)
        prop = np.where(an == "s_ketamine", 0.236, 0.143)  # the model file's
        V = (prop * f) ** 2
        cens = y < lloq
        z = (lloq[cens] - f[cens]) / np.sqrt(V[cens])
        r = y[~cens] - f[~cens]
        return (
            np.sum(np.log(2 * np.pi * V[~cens]) + r**2 / V[~cens])
            - 2 * np.sum(scipy.stats.norm.logcdf(z))
            + eta @ om_inv @ eta
            + logdet
        )

    return ofv, len(names)


@pytest.mark.parametrize("s", range(3))
def test_matches_scipy_reference(small, s):
    table, ds, est = small
    model = ks.load_model(MODEL)
    ofv, q = _reference_objective(model, table, s, float(ds.weight[s]))
    ref = scipy.optimize.minimize(
        ofv, np.zeros(q), method="BFGS", options={"gtol": 1e-5}
    )
    eta = est.eta.sel(subject=s).values
    assert est.status.sel(subject=s) == 0
    np.testing.assert_allclose(eta, ref.x, atol=2e-4)
    # the reported objective is the reference objective at the estimate
    np.testing.assert_allclose(float(est.objective.sel(subject=s)), ofv(eta), rtol=1e-9)
    assert float(est.objective.sel(subject=s)) <= ref.fun + 1e-7
    # the Gauss-Newton covariance against the inverse of the reference's
    # finite-difference Hessian (they differ by the residuals' curvature term)
    h = 1e-3
    H = np.empty((q, q))
    for i in range(q):
        for j in range(i, q):
            ei, ej = np.eye(q)[i] * h, np.eye(q)[j] * h
            H[i, j] = (
                ofv(eta + ei + ej)
                - ofv(eta + ei - ej)
                - ofv(eta - ei + ej)
                + ofv(eta - ei - ej)
            ) / (4 * h * h)
            H[j, i] = H[i, j]
    se_ref = np.sqrt(np.diag(np.linalg.inv(H / 2)))
    np.testing.assert_allclose(est.eta_se.sel(subject=s).values, se_ref, rtol=0.3)


def test_censored_observation_is_m3(small):
    table, _, est = small
    assert int(est.censored.sum()) == 1
    s0 = est.sel(subject=0)
    i = int(np.flatnonzero(s0.censored.values)[0])
    assert np.isnan(s0.iwres.values[i])
    assert s0.dv.values[i] == pytest.approx(np.nanmax(table["lloq"]))


def test_ipred_matches_simulate(small):
    """IPRED at the mode equals ks.simulate run with the estimated individual
    parameters (the simulation path's own lowering and kernels); PRED with the
    typical ones."""
    _, ds, est = small
    p = est.parameters
    names = ["V1", "CL", "VN", "CLN"]
    sim = ks.simulate(
        MODEL,
        COURSE,
        times=TIMES,
        subjects=ks.Subjects(
            covariates={"weight": est.weight.values},
            parameters={
                k: (p.sel(parameter=k).values, "L" if "V" in k else "L/h")
                for k in names
            },
        ),
    )
    typ = ks.simulate(
        MODEL,
        COURSE,
        times=TIMES,
        subjects=ks.Subjects(covariates={"weight": est.weight.values}),
    )
    for s in range(4):
        e = est.sel(subject=s)
        for a in ANALYTES:
            sel = e.obs_analyte.values == a
            c = sim.concentration.sel(analyte=a).values[s]
            c0 = typ.concentration.sel(analyte=a).values[s]
            np.testing.assert_allclose(e.ipred.values[sel], c, rtol=1e-10)
            np.testing.assert_allclose(e.pred.values[sel], c0, rtol=1e-10)


def test_pathways_lag_duration_and_logit_match_simulate():
    """A route with two pathways (one the rest), a zero-order duration and a
    logit-normal fraction (perez_ruixo_2021 intranasal, exponential error):
    IPRED equals ks.simulate with the estimated parameters."""
    model = "perez_ruixo_2021"
    # two 28-mg devices 5 min apart: the second absorbs FRn x FRn_dose nasally
    reg = ks.Regimen(
        [
            ks.Dose.bolus("28 mg", route="intranasal", time=t0, device=d)
            for d, t0 in ((1, 0.0), (2, 5 / 60))
        ]
    )
    t = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    obs = {
        "subject": np.zeros(6, dtype=int),
        "time": t,
        "analyte": ["esketamine"] * 6,
        "concentration": np.array([20.0, 35.0, 30.0, 18.0, 9.0, 3.0]),
        "age": np.full(6, 40.0),
        "weight": np.full(6, 70.0),
        "asian": np.zeros(6),
        "japanese": np.zeros(6),
    }
    est = ks.estimate(model, obs, doses=reg)
    assert est.status.item() == 0
    p = est.parameters.isel(subject=0)
    units = dict(zip(est.parameter.values, est.parameter_unit.values, strict=True))
    sim = ks.simulate(
        model,
        reg,
        times=t,
        subjects=ks.Subjects(
            covariates={k: obs[k][:1] for k in ("age", "weight", "asian", "japanese")},
            parameters={k: (float(p.sel(parameter=k)), units[k]) for k in units},
        ),
    )
    np.testing.assert_allclose(
        est.ipred.values[0], sim.concentration.sel(analyte="s_ketamine")[0], rtol=1e-9
    )


# ---------------------------------------------------------------------------
def test_recovery_and_coverage():
    """Parameters of 300 simulated patients (both analytes, residual error
    drawn as the model says): the 90 % intervals hold the true values about
    90 % of the time, and the estimates are unbiased on the eta scale."""
    table, ds = _simulated(300, seed=5)
    est = ks.estimate(MODEL, table, doses=COURSE)
    assert (est.status == 0).all()
    names = ["V1", "CL", "VN", "CLN"]
    true = ds.parameters.sel(parameter=names).values
    lo = est.parameters_lower.sel(parameter=names).values
    hi = est.parameters_upper.sel(parameter=names).values
    inside = (lo <= true) & (true <= hi)
    # binomial SD of a 90 % coverage over 1200 intervals: 0.009
    assert 0.86 <= inside.mean() <= 0.94, inside.mean(axis=0)
    bias = np.log(est.parameters.sel(parameter=names).values / true).mean(axis=0)
    assert np.all(np.abs(bias) < 0.05), bias


def test_order_and_chunk_invariance(small):
    table, _, est = small
    order = np.argsort(-table["subject"], kind="stable")  # subjects reversed
    rev = ks.estimate(MODEL, {k: v[order] for k, v in table.items()}, doses=COURSE)
    half = table["subject"] >= 2
    part = ks.estimate(MODEL, {k: v[half] for k, v in table.items()}, doses=COURSE)
    for s in range(4):
        np.testing.assert_array_equal(
            rev.theta.sel(subject=s).values, est.theta.sel(subject=s).values
        )
    for s in (2, 3):
        np.testing.assert_array_equal(
            part.theta.sel(subject=s).values, est.theta.sel(subject=s).values
        )
        np.testing.assert_array_equal(
            part.objective.sel(subject=s).values, est.objective.sel(subject=s).values
        )


def test_nonmem_table_gives_the_same_estimates(small, tmp_path):
    table, _, est = small
    lines = ["ID,TIME,EVID,AMT,RATE,CMT,MDV,DV,WT"]
    for s in range(4):
        rows = table["subject"] == s
        wt = table["weight"][rows][0]
        lines.append(f"{s},0,1,20,30,1,1,.,{wt:.17g}")
        obs = sorted(
            zip(
                table["time"][rows],
                table["analyte"][rows],
                table["concentration"][rows],
                table["lloq"][rows],
                strict=True,
            ),
            key=lambda r: r[0],
        )
        dosed = False
        for t, a, c, lq in obs:
            if t > 24 and not dosed:
                amt, rate = 0.3 * wt, 0.3 * wt * 1.5  # mg, mg/h over 40 min
                lines.append(f"{s},24,1,{amt:.17g},{rate:.17g},1,1,.,{wt:.17g}")
                dosed = True
            dv = 0.0 if c < lq else c
            cmt = 2 if a == "s_ketamine" else 3
            lines.append(f"{s},{t:.17g},0,.,.,{cmt},0,{dv:.17g},{wt:.17g}")
    path = tmp_path / "levels.csv"
    path.write_text("\n".join(lines) + "\n")
    # a common name (esketamine: s_ketamine) works as the canonical one
    lloq = {"s_norketamine": float(np.nanmax(table["lloq"])), "esketamine": 1.0}
    got = ks.estimate(
        MODEL, path, analyte_by_cmt={2: "esketamine", 3: "s_norketamine"}, lloq=lloq
    )
    # the same levels as a table, with the same limits
    plain = {k: v for k, v in table.items() if k != "lloq"}
    want = ks.estimate(MODEL, plain, doses=COURSE, lloq=lloq)
    assert int(want.censored.sum()) >= 2
    np.testing.assert_array_equal(got.censored.values, want.censored.values)
    # the file's RATE gives the 40-min duration to rounding, and the optimiser
    # stops on steps below 1e-7
    np.testing.assert_allclose(got.theta.values, want.theta.values, atol=1e-7)
    np.testing.assert_allclose(got.objective.values, want.objective.values, rtol=1e-10)


# ---------------------------------------------------------------------------
def test_forecast_and_next_dose(small):
    _, _, est = small
    plan = COURSE + ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min", time=48)])
    at = 48 + 40 / 60
    fc = ks.forecast(MODEL, est, plan, times=[*TIMES, 47.0, at], n=400, seed=1)
    # at the mode, the forecast at the observation times is IPRED
    for s in range(4):
        e = est.sel(subject=s)
        for a in ANALYTES:
            sel = e.obs_analyte.values == a
            np.testing.assert_allclose(
                fc.concentration.sel(subject=s, analyte=a).values[: TIMES.size],
                e.ipred.values[sel],
                rtol=1e-12,
            )
    assert (fc.concentration_lower <= fc.concentration_upper).all()
    nd = ks.next_dose(
        MODEL, est, plan, dose=2, at=at, target="150 ng/mL", n=400, seed=1
    )
    assert nd.amount.attrs["units"] == "mg"
    # that amount, simulated by ks.simulate with the modal parameters, against
    # the forecast of the course with that amount (the kernel's prediction)
    p = est.parameters
    for s in range(4):
        amt = float(nd.amount.sel(subject=s))
        course = COURSE + ks.Regimen(
            [ks.Dose.infusion(f"{amt} mg", duration="40 min", time=48)]
        )
        sim = ks.simulate(
            MODEL,
            course,
            times=[at],
            subjects=ks.Subjects(
                covariates={"weight": est.weight.values[s : s + 1]},
                parameters={
                    k: (
                        float(p.sel(subject=s, parameter=k)),
                        "L" if "V" in k else "L/h",
                    )
                    for k in ("V1", "CL", "VN", "CLN")
                },
            ),
        )
        f2 = ks.forecast(
            MODEL, est.isel(subject=[s]), course, times=[at], n=400, seed=1
        )
        c_mode = float(f2.concentration.sel(analyte="s_ketamine")[0, 0])
        assert c_mode == pytest.approx(
            float(sim.concentration.sel(analyte="s_ketamine")[0, 0]), rel=1e-10
        )
        # the median level over the posterior draws is the target
        assert float(f2.concentration_median.sel(analyte="s_ketamine")[0, 0]) == (
            pytest.approx(150.0, rel=0.01)
        )


# ---------------------------------------------------------------------------
def _one(**change):
    row = {
        "subject": [1, 1],
        "time": [1.0, 4.0],
        "analyte": ["esketamine", "esketamine"],
        "concentration": [80.0, 20.0],
        "weight": [70.0, 70.0],
    }
    row.update(change)
    return row


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"time": [0.2, 4.0]}, "observation at 0.2 h comes before any dose"),
        ({"concentration": [-3.0, 20.0]}, "negative concentration -3"),
        ({"concentration": [np.nan, 20.0]}, "concentration nan, not a finite"),
        ({"concentration": [np.inf, 20.0]}, "concentration inf, not a finite"),
        (
            {"analyte": ["ketamine", "esketamine"]},
            "subject 1: no analyte 'ketamine' in model 'fanta_2015'",
        ),
        ({"weight": [70.0, 80.0]}, "covariate column 'weight' changes within"),
    ],
)
def test_bad_data(change, match):
    dose = ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min", time=0.5)])
    with pytest.raises(ValueError, match=match):
        ks.estimate(MODEL, _one(**change), doses=dose)


@pytest.mark.parametrize(
    ("weight", "exc", "message"),
    [
        (
            ["70 kg", "70 kg"],
            TypeError,
            "observation table, subject 1: covariate 'weight' must be a number in "
            "kg, or an array of them (one per subject); got array(['70 kg', '70 kg'], "
            "dtype=object) (ndarray). Write the number alone, in kg: 70",
        ),
        (
            [np.nan, np.nan],
            ValueError,
            "observation table, subject 1: covariate 'weight' must be finite; got nan",
        ),
        (
            [-70.0, -70.0],
            ValueError,
            "observation table, subject 1: covariate 'weight' must be in [0.3, 400] "
            "kg (a plausible human value; check the unit); got -70",
        ),
    ],
)
def test_covariate_columns_are_checked_naming_the_tables_subject(weight, exc, message):
    """A covariate column is checked as any covariate is, and the message names
    the table's subject (1), not a position (it said 'for subject 0'; text with a
    unit gave numpy's bare 'could not convert string to float')."""
    dose = ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min", time=0.5)])
    data = _one(weight=np.array(weight, dtype=object))
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        ks.estimate(MODEL, data, doses=dose)
    # numbers held as objects (a pandas object column) are still numbers
    data = _one(weight=np.array([70, 70], dtype=object), time=[1.0, 4.0])
    assert ks.estimate(MODEL, data, doses=dose).weight.values.tolist() == [70.0]


def test_observation_at_dose_time_before_absorption():
    """An oral dose at 0 h and a level at 0 h: the model predicts zero there."""
    dose = ks.Regimen([ks.Dose.bolus("50 mg", route="oral")])
    parent = ks.load_model(MODEL).without_analytes("s_norketamine")  # oral: parent
    with pytest.raises(ValueError, match=r"predicts 0 ng/mL at 0 h"):
        ks.estimate(parent, _one(time=[0.0, 4.0]), doses=dose)


def test_missing_covariate_and_models_without_iiv_or_residual():
    dose = ks.Dose.infusion("20 mg", duration="40 min")
    row = _one()
    del row["weight"]
    with pytest.raises(ValueError, match=r"uses covariate\(s\) weight, which the data"):
        ks.estimate(MODEL, row, doses=dose)
    m = ks.load_model(MODEL)
    with pytest.raises(ValueError, match="has no inter-individual variability"):
        ks.estimate(dataclasses.replace(m, variability=()), _one(), doses=dose)
    with pytest.raises(ValueError, match="has no residual error model for analyte"):
        ks.estimate(dataclasses.replace(m, residual={}), _one(), doses=dose)


def test_lean_weight_dose_matches_simulate():
    """A per-kg dose on lean body weight is scaled as ks.simulate scales it."""
    dose = ks.Dose.infusion("0.3 mg/kg", duration="40 min", weight_basis="lean")
    cov = {"weight": 110.0, "height": 170.0, "female": 1.0}
    t = np.array([0.5, 1.0, 3.0])
    obs = {
        "subject": [7, 7, 7],
        "time": t,
        "analyte": ["s_ketamine"] * 3,
        "concentration": [60.0, 35.0, 9.0],
        **{k: [v] * 3 for k, v in cov.items()},
    }
    est = ks.estimate(MODEL, obs, doses=dose)
    p = est.parameters.isel(subject=0)
    units = dict(zip(est.parameter.values, est.parameter_unit.values, strict=True))
    sim = ks.simulate(
        MODEL,
        dose,
        times=t,
        subjects=ks.Subjects(
            covariates={k: [v] for k, v in cov.items()},
            parameters={k: (float(p.sel(parameter=k)), units[k]) for k in units},
        ),
    )
    np.testing.assert_allclose(
        est.ipred.values[0], sim.concentration.sel(analyte="s_ketamine")[0], rtol=1e-10
    )


def test_nonmem_steady_state_is_refused(tmp_path):
    path = tmp_path / "ss.csv"
    path.write_text(
        "ID,TIME,EVID,AMT,RATE,CMT,II,SS,MDV,DV,WT\n"
        "1,0,1,20,30,1,24,1,1,.,70\n"
        "1,2,0,.,.,.,.,.,0,40,70\n"
    )
    with pytest.raises(ValueError, match="ID 1 has a steady-state dose record"):
        ks.estimate(MODEL, path, analyte_by_cmt=None)


def test_xarray_table_and_default_model(small):
    """A one-dimensional xarray Dataset reads as the same table; the default
    model (no residual error model) is refused by name."""
    import xarray as xr

    table, _, est = small
    ds = xr.Dataset({k: ("row", v) for k, v in table.items()})
    ds["time"].attrs["units"] = "h"
    got = ks.estimate(MODEL, ds, doses=COURSE)
    np.testing.assert_array_equal(got.theta.values, est.theta.values)
    ds["concentration"].attrs["units"] = "mg/L"
    with pytest.raises(ValueError, match="has units 'mg/L'; estimate reads"):
        ks.estimate(MODEL, ds, doses=COURSE)
    row = _one(analyte=["ketamine", "ketamine"])
    with pytest.raises(ValueError, match="no residual error model for analyte"):
        ks.estimate(ks.DEFAULT_MODEL, row, doses=ks.Dose.bolus("10 mg"))


def test_inter_occasion_effects():
    """simons_2022 (IOV on CLH1, MTT_KN and absorption): levels after the first
    of two sessions only. The second session's kappas keep their prior (mode 0,
    variance omega_iov^2), and a forecast of a third session draws its kappas
    from the prior too."""
    m = ks.load_model("simons_2022")
    reg = ks.Regimen.at([0, 72], ks.Dose.infusion("20 mg", duration="40 min"))
    t = [0.5, 2.0, 6.0]
    obs = {
        "subject": [1] * 6 + [2] * 6,
        "time": t * 4,
        "analyte": (["s_ketamine"] * 3 + ["s_norketamine"] * 3) * 2,
        "concentration": [90.0, 30.0, 8.0, 20.0, 25.0, 15.0]
        + [70.0, 20.0, 5.0, 30.0, 28.0, 12.0],
        "weight": [70.0] * 12,
    }
    est = ks.estimate(m, obs, doses=reg)
    assert (est.status == 0).all()
    # occasion 1 of both subjects informs MTT_KN's kappa, nothing CLH1's
    shr = est.shrinkage_iov
    assert np.isnan(shr.sel(iov_parameter="CLH1"))
    k = est.theta.sel(random_effect="kappa_MTT_KN_occ1").values
    omega = next(v.iov_omega for v in m.variability if v.parameter == "MTT_KN")
    assert float(shr.sel(iov_parameter="MTT_KN")) == pytest.approx(
        1 - np.std(k, ddof=1) / omega
    )
    assert est.parameters.dims == ("subject", "occasion", "parameter")
    labels = list(est.random_effect.values)
    iov = {v.parameter: v.iov_omega for v in m.variability if v.iov_omega > 0}
    for name, om in iov.items():
        k2 = labels.index(f"kappa_{name}_occ2")
        assert est.theta.values[0, k2] == 0.0
        assert est.theta_covariance.values[0, k2, k2] == pytest.approx(om**2)
    k1 = labels.index("kappa_CLH1_occ1")  # a metabolite clearance: no data on it
    assert est.theta.values[0, k1] == 0.0
    k1 = labels.index("kappa_MTT_KN_occ1")  # formation of s_norketamine: data
    assert est.theta.values[0, k1] != 0.0
    plan = reg + ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min", time=144)])
    fc = ks.forecast(m, est, plan, times=[145.0], n=50, seed=3)
    assert np.isfinite(fc.concentration_upper).all()


def test_course_must_begin_with_the_estimated_doses(small):
    _, _, est = small
    plan = COURSE + ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min", time=48)])
    with pytest.raises(ValueError, match=r"dose must be the index of a planned dose"):
        ks.next_dose(MODEL, est, plan, dose=1, at=49.0, target=100.0, n=20)
    other = ks.Regimen(
        [
            ks.Dose.infusion("30 mg", duration="40 min"),
            *COURSE.doses[1:],
            *plan.doses[2:],
        ]
    )
    with pytest.raises(ValueError, match=r"amounts included \(base mg 20"):
        ks.forecast(MODEL, est, other, times=[49.0], n=20)
    shifted = ks.Regimen([d.at(d.time + 1) for d in plan.doses])
    with pytest.raises(ValueError, match=r"the course must begin with the 2 doses"):
        ks.forecast(MODEL, est, shifted, times=[49.0], n=20)


def test_lloq_must_be_finite_and_positive():
    dose = ks.Dose.infusion("20 mg", duration="40 min")
    with pytest.raises(ValueError, match="lloq must be a finite number > 0"):
        ks.estimate(MODEL, _one(lloq=[np.inf, np.nan]), doses=dose)


def test_a_molar_lloq_converts_by_each_analytes_molecular_weight():
    from ketasim.estimation import _lloq_of

    model = ks.load_model(MODEL)  # ketamine and norketamine
    got = _lloq_of(model, "0.01 umol/L")
    # nmol/L x (g/mol) / 1000 = ng/mL, each analyte by its own molecular weight
    want = {k: 10.0 * a.mw / 1000.0 for k, a in enumerate(model.analytes)}
    assert got == pytest.approx(want, rel=1e-12)
    assert len({round(v, 9) for v in got.values()}) == len(model.analytes) == 2
    name = model.analytes[1].name
    assert _lloq_of(model, {name: "5 nmol/L"}) == pytest.approx(
        {1: 5.0 * model.analytes[1].mw / 1000.0}
    )
    with pytest.raises(
        ks.UnitError,
        match=r"lloq must be a concentration such as 100 or '100 ng/mL' or "
        r"'400 nmol/L'; got '0.01 umol/kg'",
    ):
        _lloq_of(model, "0.01 umol/kg")


def test_units_follow_simulates_conventions(small):
    """Covariate coordinates carry their unit as simulate's do; the parameter
    arrays, whose unit varies along ``parameter``, carry none (a units label
    must be one unit) and point to ``parameter_unit`` as simulate's do."""
    _, ds, est = small
    assert est.weight.attrs == {"units": "kg"} == ds.weight.attrs
    for name in ("parameters", "parameters_se", "parameters_lower", "parameters_upper"):
        assert "units" not in est[name].attrs
        assert "see parameter_unit" in est[name].attrs["long_name"]
    assert "units" not in ds.parameters.attrs
    assert {"L", "L/h"} <= set(est.parameter_unit.values)  # mixed units
