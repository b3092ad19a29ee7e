"""The ODE path: against the exact path, scipy's solve_ivp, and its status codes."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import ketasim as ks
from ketasim import Dose, Regimen
from ketasim.routes import refused_analytes

from .test_simulate import one_compartment

RTOL, ATOL = 1e-7, 1e-10


def _cases():
    """Every route of every bundled linear time-invariant model (the ones with an
    exact reference). Time-varying models (flint_2017) run only on the ODE path and
    are checked against closed forms in test_time_varying_clearance and
    tests/test_models.py::test_flint_norketamine_clearance_rises_with_time."""
    for name in ks.list_models():
        m = ks.load_model(name)
        if not m.linear_time_invariant:
            continue
        for route in m.routes:
            yield pytest.param(name, route, id=f"{name}-{route}")


def _dose(model, route):
    if model.routes[route].intravenous:
        return Dose.infusion("0.5 mg/kg", duration="40 min", route=route)
    # a route that absorbs per device takes each Dose's place in the session
    device = 1 if model.routes[route].device_mg is not None else None
    return Dose.bolus("28 mg", route=route, device=device)


@pytest.mark.parametrize("name,route", list(_cases()))
def test_ode_matches_exact_for_every_bundled_model(name, route):
    """Global error scored against the requested tolerance: the per-step error is
    held below atol + rtol|x|; over a run the errors add up, so allow 50x."""
    m = ks.load_model(name)
    dropped = refused_analytes(m, route)  # fanta_2015: no S-norketamine after oral
    if dropped:
        m = m.without_analytes(*dropped)
    reg = Regimen([_dose(m, route), _dose(m, route).at("12 h")])
    times = ks.grid("36 h", "15 min")
    # a paediatric model (validity up to 18 y) refuses its adult reference weight
    cov = {"weight": 20.0} if m.validity.get("age", (0, 120))[1] <= 18 else None
    ode = ks.simulate(
        m,
        reg,
        times=times,
        subjects=ks.Subjects(covariates=cov),
        solver=ks.ODE(rtol=RTOL, atol=ATOL),
    )
    assert ode.attrs["rtol"] == RTOL and ode.attrs["atol"] == ATOL
    ex = ks.simulate(
        m, reg, times=times, subjects=ks.Subjects(covariates=cov), solver=ks.Exact()
    )
    c_ode = ode.concentration.values
    c_ex = ex.concentration.values
    scale = np.nanmax(np.abs(c_ex), axis=2, keepdims=True)
    err = np.abs(c_ode - c_ex) / (RTOL * scale + RTOL * np.abs(c_ex) + 1e-12)
    assert np.nanmax(err) <= 50.0


@pytest.mark.parametrize("method", ["auto", "dopri5", "rosenbrock"])
def test_each_method_matches_exact_w1(method):
    times = ks.grid("24 h", "1 min")
    d = Dose.infusion("0.5 mg/kg", duration="40 min")
    ex = ks.simulate("domino", d, times=times).concentration.values
    ode = ks.simulate(
        "domino", d, times=times, solver=ks.ODE(rtol=1e-6, atol=1e-9, method=method)
    ).concentration.values
    peak = ex.max()
    assert np.max(np.abs(ode - ex)) <= 20 * 1e-6 * peak


def test_auto_switches_to_the_stiff_method():
    """Domino's fast distribution (k ~ 97 /h) with a 24 h horizon is stiff: DOPRI5
    alone needs many more steps than the automatic choice."""
    d = Dose.infusion("0.5 mg/kg", duration="40 min")
    times = ks.grid("72 h", "30 min")
    auto = ks.simulate("domino", d, times=times, solver=ks.ODE(method="auto"))
    dp = ks.simulate("domino", d, times=times, solver=ks.ODE(method="dopri5"))
    assert auto.ode_steps.item() < dp.ode_steps.item() / 3


def _mm_model():
    from examples.michaelis_menten import MODEL, rhs

    return ks.model_from_dict(MODEL).with_rhs(rhs), MODEL


def test_michaelis_menten_against_solve_ivp():
    model, _ = _mm_model()
    v, vmax, km = 3.0 * 80.0, 40.0, 0.15
    dose_mg = 0.5 * 80.0
    times = ks.grid("10 h", "10 min")
    ds = ks.simulate(
        model,
        Dose.infusion("0.5 mg/kg", duration="40 min"),
        times=times,
        subjects=ks.Subjects(covariates={"weight": 80.0}),
        solver=ks.ODE(rtol=1e-9, atol=1e-12),
    )
    t_inf = 40 / 60

    def f(t, x, rate):
        return [rate - vmax * (x[0] / v) / (km + x[0] / v)]

    a = solve_ivp(
        f,
        (0, t_inf),
        [0.0],
        args=(dose_mg / t_inf,),
        method="Radau",
        rtol=1e-12,
        atol=1e-14,
        dense_output=True,
    )
    b = solve_ivp(
        f,
        (t_inf, 10.0),
        a.y[:, -1],
        args=(0.0,),
        method="Radau",
        rtol=1e-12,
        atol=1e-14,
        dense_output=True,
    )
    ref = (
        np.where(
            times <= t_inf,
            a.sol(np.minimum(times, t_inf))[0],
            b.sol(np.maximum(times, t_inf))[0],
        )
        / v
        * 1000
    )
    got = ds.concentration.values[0, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_time_varying_clearance(tmp_path):
    """CL(t) = CL (1 + 0.01 t): dA/dt = -CL(1+0.01t)/V A has a closed form."""
    m = one_compartment(tmp_path)
    p = tmp_path / "tv.toml"
    p.write_text(
        m.path.read_text()
        + """
[[time_effects]]
parameter = "CL"
slope = 0.01
unit = "1/h"
source = "test"
"""
    )
    mt = ks.load_model(p)
    assert not mt.linear_time_invariant
    times = np.array([0.5, 2.0, 8.0, 20.0])
    ds = ks.simulate(
        mt, Dose.bolus("100 mg"), times=times, solver=ks.ODE(rtol=1e-10, atol=1e-12)
    )
    k = 10.0 / 50.0
    ref = 100.0 / 50.0 * np.exp(-k * (times + 0.005 * times**2)) * 1000
    np.testing.assert_allclose(ds.concentration.values[0, 0], ref, rtol=1e-7)
    with pytest.raises(ValueError, match="time-varying parameters"):
        ks.simulate(mt, Dose.bolus("100 mg"), times=times, solver=ks.Exact())


def test_status_max_steps_and_keep():
    d = Dose.infusion("0.5 mg/kg", duration="40 min")
    times = ks.grid("24 h", "1 h")
    with pytest.raises(ks.SolveError, match="max_steps"):
        ks.simulate("domino", d, times=times, solver=ks.ODE(max_steps=5))
    ds = ks.simulate(
        "domino", d, times=times, solver=ks.ODE(max_steps=5), errors="keep"
    )
    assert ds.status.item() == 1
    assert np.isnan(ds.concentration.values[0, 0, -1])


def test_status_nonfinite_rhs(tmp_path):
    model, _ = _mm_model()

    def bad(t, x, p, dxdt):
        dxdt[0] = np.nan

    with pytest.raises(ks.SolveError, match="non-finite"):
        ks.simulate(model.with_rhs(bad), Dose.bolus("10 mg"), times=[0.0, 1.0])


def test_iov_on_a_user_rhs_parameter_is_rejected():
    """The rhs sees one parameter value per subject; per-session values would be
    silently dropped, so inter-occasion variability on them is an error."""
    import copy

    from examples.michaelis_menten import MODEL, rhs

    spec = copy.deepcopy(MODEL)
    spec["variability"] = {
        "Vmax": {"distribution": "lognormal", "iov_cv": 0.8, "source": "test"}
    }
    model = ks.model_from_dict(spec).with_rhs(rhs)
    reg = ks.Regimen.at([0, 24], Dose.bolus("10 mg"), unit="h")
    with pytest.raises(
        ValueError,
        match="inter-occasion variability on the "
        "parameters of a user rhs is not implemented",
    ):
        ks.simulate(
            model,
            reg,
            times=[1.0, 25.0],
            population=ks.Population(3, seed=1, iiv=False),
        )


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(atol=np.inf), "ODE needs rtol in"),
        (dict(rtol=10.0), "ODE needs rtol in"),
        (dict(max_steps=0), r"ODE\(max_steps=\.\.\.\) must be a whole number >= 1"),
    ],
)
def test_ode_settings_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        ks.simulate("domino", Dose.bolus("10 mg"), times=[1.0], solver=ks.ODE(**kw))


def test_user_rhs_misuse_is_explained():
    """A model with flows cannot take an rhs (the flows would be ignored); an rhs
    with the wrong arguments is caught before numba; one numba cannot compile
    gives a message about the rhs, not only numba's."""
    model, _ = _mm_model()
    with pytest.raises(
        ValueError,
        match="model 'domino' defines flows; a user rhs replaces all of its dynamics",
    ):
        ks.load_model("domino").with_rhs(lambda t, x, p, dxdt: None)

    def three(t, x, p):
        pass

    with pytest.raises(
        TypeError,
        match=r"rhs must take four arguments \(t, x, p, "
        r"dxdt\); three takes \(t, x, p\)",
    ):
        model.with_rhs(three)
    import functools

    with pytest.raises(TypeError, match="rhs must be a plain Python function"):
        model.with_rhs(functools.partial(three, 0.0))

    def pythonic(t, x, p, dxdt):
        dxdt[0] = -float(object() is None)  # a Python object: not numba code

    with pytest.raises(
        TypeError,
        match=r"numba could not compile the model's rhs "
        r"pythonic\(t, x, p, dxdt\)",
    ):
        ks.simulate(model.with_rhs(pythonic), Dose.bolus("10 mg"), times=[1.0])


def test_user_rhs_cannot_use_exact():
    model, _ = _mm_model()
    with pytest.raises(ValueError, match="user rhs"):
        ks.simulate(model, Dose.bolus("10 mg"), times=[1.0], solver=ks.Exact())


@pytest.mark.parametrize("n", [1, 3, 8])
def test_rosenbrock_inverse_against_numpy(n):
    """Rodas4 multiplies by inv(I/(h g) - J) formed by the kernels' own Gauss-Jordan
    elimination: compare with numpy on stiff-like matrices, on one that needs row
    exchanges (zero leading pivot), and check a singular matrix is reported."""
    from ketasim._kernels import ode

    inverse = ode.solver(n).inverse
    rng = np.random.default_rng(n)
    cases = []
    for h in (1e-4, 1e-1, 1e2):  # the Rodas4 matrix over a range of step lengths
        J = -np.abs(rng.normal(size=(n, n))) * 50.0
        cases.append(np.eye(n) / (h * 0.25) - J)
    if n > 1:
        P = np.roll(np.eye(n), 1, axis=0) + 0.1 * rng.normal(size=(n, n))
        P[0, 0] = 0.0
        cases.append(P)
    for M in cases:
        Wi = np.empty((n, n))
        assert inverse(M.copy(), Wi)
        ref = np.linalg.inv(M)
        assert np.max(np.abs(Wi - ref)) <= 1e-12 * np.linalg.cond(M) * np.abs(ref).max()
    assert not inverse(np.zeros((n, n)), np.empty((n, n)))


FRESH_PROCESS = """
import json, sys
import numpy as np
from ketasim._kernels import ode
k = ode.solver(1)
S, T = 2, 5
out = np.zeros((S, 1, T))
status = np.zeros(S, dtype=np.int64)
nsteps = np.zeros(S, dtype=np.int64)
k.solve_population(np.array([[-0.7], [-2.0]]), np.zeros((S, 1)),
                   np.array([[0.0, 1.0]] * S), np.zeros((S, 2), dtype=np.int64),
                   np.array([[1, 1]] * S), np.array([[5.0, -5.0]] * S),
                   np.linspace(0.0, 4.0, T), np.zeros(1, dtype=np.int64),
                   np.ones((S, 1)), 1e-8, 1e-12, 0, True, 10000, out, status,
                   nsteps)
st = k.solve_population.stats
print(json.dumps({"cached": k.cached, "hits": sum(st.cache_hits.values()),
                  "misses": sum(st.cache_misses.values()),
                  "status": status.tolist(), "out": out.ravel().tolist()}))
"""


def test_linear_ode_kernels_load_from_the_cache_in_a_new_process(tmp_path):
    """ketasim's own right-hand sides get ODE kernels numba caches on disk: a second
    process loads them (no compile) and computes the same numbers."""
    import json
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path / "numba"),
        KETASIM_CACHE_DIR=str(tmp_path / "ketasim"),
    )
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", FRESH_PROCESS],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert [r["cached"] for r in runs] == [True, True]
    assert (runs[0]["hits"], runs[0]["misses"]) == (0, 1)
    assert (runs[1]["hits"], runs[1]["misses"]) == (1, 0)
    assert runs[0]["status"] == [0, 0] and runs[0]["out"] == runs[1]["out"]
    # a 1-hour infusion of 5 mg/h into one compartment with k = 0.7 and 2 per hour
    t = np.linspace(0.0, 4.0, 5)
    for s, k in enumerate((0.7, 2.0)):
        on = 5.0 / k * (1.0 - np.exp(-k * np.minimum(t, 1.0)))
        ref = np.where(t <= 1.0, on, on * np.exp(-k * np.clip(t - 1.0, 0.0, None)))
        got = np.array(runs[0]["out"][s * 5 : (s + 1) * 5])
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
    assert [p.name[:10] for p in (tmp_path / "ketasim" / "ode").glob("*.py")] == [
        "linear_n1_"
    ]


def test_cached_module_files(tmp_path, monkeypatch):
    """One module file per text (state count, right-hand side, solver source),
    written once and never rewritten (numba's cache entries for it stay valid); a
    changed source gives a new file. A user's right-hand side, or a cache directory
    that cannot be written, gets kernels that are not cached."""
    import sys

    from ketasim._kernels import ode
    from ketasim._kernels.ltv import rhs_ltv

    def load(n, rhs):
        names = ode._cached_module(n, rhs)
        if names is not None:
            monkeypatch.delitem(sys.modules, names["__name__"])
        return names

    monkeypatch.setattr(ode, "cache_dir", lambda: tmp_path)
    names = load(2, None)
    assert names["CACHE"] is True and names["N"] == 2 and names["rhs"] is not None
    (path,) = tmp_path.glob("linear_n2_*.py")
    assert path.read_text().endswith(ode.SOURCE.read_text())
    assert path.stem == ode.module_text(2, None)[0]
    mtime = path.stat().st_mtime_ns
    load(2, None)
    assert path.stat().st_mtime_ns == mtime and len(list(tmp_path.glob("*.py"))) == 1
    changed = tmp_path / "changed" / ode.SOURCE.name
    changed.parent.mkdir()
    changed.write_text(ode.SOURCE.read_text() + "\nCHANGED = True\n")
    monkeypatch.setattr(ode, "SOURCE", changed)
    assert load(2, None)["CHANGED"] is True
    assert len(list(tmp_path.glob("linear_n2_*.py"))) == 2
    assert load(2, rhs_ltv)["rhs"] is rhs_ltv
    assert len(list(tmp_path.glob("ltv_n2_*.py"))) == 1
    assert load(2, ode._run_source(2, None)["linear_rhs"]) is None
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "blocked").write_text("a file where the directory would go")
    monkeypatch.setattr(ode, "cache_dir", lambda: tmp_path / "blocked" / "ode")
    before = set(sys.modules)
    assert load(3, None) is None and set(sys.modules) == before
    assert ode._run_source(3, None)["CACHE"] is False
