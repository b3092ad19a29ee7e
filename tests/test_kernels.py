"""The generated step loops of the exact solver (ketasim/_kernels/_unrolled.py).

* the committed file is what the generator writes;
* every unrolled variant (n = 1 … NMAX) is bit-identical to the plain generic loop
  and agrees with numpy's ``E @ x + c``;
* the power path of trajectories (runs of equal steps read from rows of E^p)
  agrees with numpy matrix powers and with stepping;
* a subject's result does not depend on the block it is stepped in: alone, in a full
  block of 32, or in a block split by per-subject event times (a lag).
"""

import numpy as np
import pytest
from numba import njit

import ketasim as ks
from ketasim._kernels import _codegen, _unrolled, linear
from ketasim.metrics import TIE_RTOL

B = 37  # lanes: not a multiple of the vector width, so a scalar remainder runs too


def test_generated_file_is_current():
    assert _codegen.TARGET.read_text() == _codegen.source(), (
        "src/ketasim/_kernels/_unrolled.py is stale: run "
        "`python -m ketasim._kernels._codegen`"
    )


def _inputs(n, seed):
    rng = np.random.default_rng(seed)
    E = rng.uniform(-0.2, 0.5, (n, n, B))
    c = rng.uniform(0.0, 2.0, (n, B))
    x = rng.uniform(0.0, 50.0, (n, B))
    return E, c, x


def _numpy_step(E, c, x):
    return np.einsum("ikb,kb->ib", E, x) + c


def _check_run(out, E, c, x, obs, scale, j0, m, atol):
    """A run wrote outputs j0 .. j0+m-1 of lanes 2.. (and nothing else, -1 stays)
    equal to numpy stepping from x; returns the stepped end state."""
    assert np.all(out[:2] == -1.0) and np.all(out[:, :, :j0] == -1.0)
    assert np.all(out[:, :, j0 + m :] == -1.0)
    ref = x.copy()
    for jj in range(m):
        ref = _numpy_step(E, c, ref)
        for k, ck in enumerate(obs):
            np.testing.assert_allclose(
                out[2:, k, j0 + jj], ref[ck] * scale[k], rtol=1e-11, atol=atol
            )
    return ref


@njit
def _dispatched_step(E, c, x, ns):
    _unrolled.step(E, c, x, len(ns))


def test_state_counts_above_nmax_share_one_kernel_type():
    """Each count up to NMAX has its own argument type (its own compiled kernel);
    every larger count, and the generic per-dose pass, the same one."""
    import numba

    nmax = _codegen.NMAX
    types = {n: numba.typeof(linear.states(n)) for n in range(1, 3 * nmax)}
    assert len({types[n] for n in range(1, nmax + 1)}) == nmax
    assert {types[n] for n in range(nmax + 1, 3 * nmax)} == {
        numba.typeof(linear.generic_states())
    }
    assert len(linear.generic_states()) == nmax + 1


@pytest.mark.parametrize("n", range(1, _codegen.NMAX + 1))
def test_step_unrolled_equals_generic(n):
    E, c, x = _inputs(n, n)
    a, g = x.copy(), x.copy()
    for _ in range(5):
        getattr(_unrolled, f"step_{n}")(E, c, a)
        _unrolled.step_generic(E, c, g)
    np.testing.assert_array_equal(a, g)
    ref = x.copy()
    for _ in range(5):
        ref = _numpy_step(E, c, ref)
    np.testing.assert_allclose(a, ref, rtol=1e-12, atol=1e-9)
    # the state-count dispatch picks the same code
    d = x.copy()
    for _ in range(5):
        _dispatched_step(E, c, d, linear.states(n))
    np.testing.assert_array_equal(d, a)


@pytest.mark.parametrize("n", [1, 3, 4, 7, _codegen.NMAX])
def test_run_out_unrolled_equals_generic(n):
    E, c, x = _inputs(n, 100 + n)
    m, j0, T = 41, 3, 50  # 41 steps: more than two tiles of 16
    obs = np.array([0, n - 1], dtype=np.int64)
    scale = np.random.default_rng(n).uniform(0.5, 2.0, (2, B))
    outs = []
    for fn in (getattr(_unrolled, f"run_out_{n}"), _unrolled.run_out_generic):
        out = np.full((B + 2, 2, T), -1.0)
        xx = x.copy()
        fn(E, c, xx, out, 2, j0, m, obs, scale, np.empty((2, 16, B)))
        outs.append((out, xx))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    # untouched outside rows 2.. and columns j0 .. j0+m-1
    _check_run(outs[0][0], E, c, x, obs, scale, j0, m, atol=1e-9)


@pytest.mark.parametrize("inp", [True, False])
@pytest.mark.parametrize("nd", [1, 3, _codegen.NMAX, _codegen.NMAX + 2])
def test_run_met_unrolled_equals_generic(nd, inp):
    """Streamed window metrics (nd stepped states and one AUC state, the layout of
    metrics mode) against the same quantities computed from the stored trajectory
    with the rules of ketasim.metrics (max, tie rule, linear interpolation for time
    above) and against numpy's full (nd+1)-state step. ``inp=False`` (no input,
    c == 0) takes the unrolled variant without the c loads."""
    n = nd + 1
    rng = np.random.default_rng(7)
    A = -np.diag(rng.uniform(0.05, 0.3, nd))
    A[0, 1:] = 0.02
    E = np.zeros((n, n, B))
    E[:nd, :nd] = (np.eye(nd) + 0.5 * A)[:, :, None] * rng.uniform(0.9, 1.0, (1, 1, B))
    E[nd, 0] = 0.4  # the AUC row: integrates state 0
    E[nd, nd] = 1.0
    c = np.zeros((n, B))
    if inp:
        c[:nd] = rng.uniform(0.0, 1.0, (nd, B))
        c[nd] = 0.01
    x = rng.uniform(0.0, 100.0, (n, B))
    times = np.arange(60) * 0.5
    obs = np.array([0, nd], dtype=np.int64)
    scale = np.ones((2, B))
    above, tstart = 20.0, 0.25
    fns = [_unrolled.run_met_generic]
    if nd <= _codegen.NMAX:
        fns.append(getattr(_unrolled, f"run_met_{nd}"))
    res = []
    for fn in fns:
        xx = x.copy()
        cprev = x[:1].copy()
        cur = np.zeros((1, B))
        lmax, ltm = cprev.copy(), np.zeros((1, B))
        lab = np.zeros((1, B))
        fn(
            E,
            c,
            xx,
            1,
            59,
            times,
            obs,
            scale,
            1,
            tstart,
            above,
            1.0 + TIE_RTOL,
            cprev,
            cur,
            lmax,
            ltm,
            lab,
            inp,
        )
        res.append((xx, lmax, ltm, lab))
    for a, g in zip(res[0], res[-1], strict=True):
        np.testing.assert_array_equal(a, g)
    xx, lmax, ltm, lab = res[-1]
    traj = [x[0].copy()]
    ref = x.copy()
    for _ in range(59):
        ref = _numpy_step(E, c, ref)
        traj.append(ref[0].copy())
    np.testing.assert_allclose(xx, ref, rtol=1e-12)  # the AUC state too
    traj = np.array(traj)  # (60, B)
    np.testing.assert_allclose(lmax[0], traj.max(axis=0), rtol=1e-12)
    first = np.argmax(traj, axis=0)
    np.testing.assert_array_equal(ltm[0][first > 0], times[first[first > 0]] - tstart)
    d = traj - above
    a0, a1 = d[:-1], d[1:]
    frac = np.where(
        (a0 > 0) & (a1 > 0),
        1.0,
        np.where(
            (a0 > 0) != (a1 > 0), np.maximum(a0, a1) / np.abs(a1 - a0 + (a1 == a0)), 0.0
        ),
    )
    np.testing.assert_allclose(lab[0], (0.5 * frac).sum(axis=0), rtol=1e-12, atol=1e-12)


def _stable_E(n, seed, lanes=B):
    """Per-lane step propagators expm(A h) of random stable compartmental A (n, n,
    lanes): the kind of matrix the power path sees."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    E = np.empty((n, n, lanes))
    for b in range(lanes):
        A = rng.uniform(0.0, 0.3, (n, n))
        np.fill_diagonal(A, 0.0)
        A -= np.diag(A.sum(axis=0) + rng.uniform(0.01, 0.2, n))
        E[:, :, b] = expm(A * 0.5)
    return E


def _powers(E, obs, P=linear._POW):
    lanes = E.shape[2]
    n = E.shape[0]
    K = len(obs)
    R, Q = np.empty((lanes, K, n, P)), np.empty((lanes, K, n, P))
    EP, SP = np.empty((lanes, n, n)), np.empty((lanes, n, n))
    w = [np.empty((n, n)) for _ in range(3)]
    linear.fill_powers(E, np.asarray(obs, dtype=np.int64), R, Q, EP, SP, *w)
    return R, Q, EP, SP


@pytest.mark.parametrize("n", [1, 3, 6])
def test_fill_powers_against_matrix_power(n):
    """R, Q, EP, SP against numpy matrix powers and sums of powers."""
    E = _stable_E(n, 11 + n, lanes=3)
    obs = [0, n - 1]
    R, Q, EP, SP = _powers(E, obs)
    P = R.shape[3]
    for b in range(3):
        Eb = E[:, :, b]
        pw = [np.linalg.matrix_power(Eb, p) for p in range(P + 1)]
        np.testing.assert_allclose(EP[b], pw[P], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(SP[b], sum(pw[:P]), rtol=1e-12, atol=1e-15)
        for k, ck in enumerate(obs):
            for p in range(P):
                np.testing.assert_allclose(
                    R[b, k, :, p], pw[p + 1][ck], rtol=1e-12, atol=1e-15
                )
                np.testing.assert_allclose(
                    Q[b, k, :, p], sum(pw[: p + 1])[ck], rtol=1e-12, atol=1e-15
                )


@pytest.mark.parametrize("inp", [True, False])
@pytest.mark.parametrize("n", [1, 3, 4, _codegen.NMAX, _codegen.NMAX + 1])
def test_run_pow_against_stepping(n, inp):
    """Trajectories from powers (two chunks): the unrolled variant equals the generic
    loop bit for bit and both agree with numpy stepping x <- E x + c, outputs and
    end state; nothing outside the run's columns is written."""
    E = _stable_E(n, 40 + n)
    rng = np.random.default_rng(n)
    c = rng.uniform(0.0, 2.0, (n, B)) if inp else np.zeros((n, B))
    x = rng.uniform(0.0, 50.0, (n, B))
    obs = np.array([0, n - 1], dtype=np.int64)
    scale = rng.uniform(0.5, 2.0, (2, B))
    R, Q, EP, SP = _powers(E, obs)
    P = R.shape[3]
    m, j0, T = 2 * P, 3, 2 * P + 6
    fns = [_unrolled.run_pow_generic]
    if n <= _codegen.NMAX:
        fns.append(getattr(_unrolled, f"run_pow_{n}"))
    res = []
    for fn in fns:
        out = np.full((B + 2, 2, T), -1.0)
        xx = x.copy()
        fn(R, Q, EP, SP, c, xx, out, 2, j0, m, scale, inp, np.empty(n))
        res.append((out, xx))
    for a, g in zip(res[0], res[-1], strict=True):
        np.testing.assert_array_equal(a, g)
    out, xx = res[-1]
    ref = _check_run(out, E, c, x, obs, scale, j0, m, atol=1e-12)
    np.testing.assert_allclose(xx, ref, rtol=1e-11, atol=1e-12)


def _met_tables(E, obs, P=linear._PMET):
    n, _, lanes = E.shape
    K = len(obs)
    R, Q = np.empty((K, n, P, lanes)), np.empty((K, n, P, lanes))
    Bd = np.empty((4, K, n, lanes))
    EP, SP = np.empty((n, n, lanes)), np.empty((n, n, lanes))
    linear.fill_met_tables(
        E, np.asarray(obs, dtype=np.int64), R, Q, Bd, EP, SP, np.empty((3, n, n, lanes))
    )
    return R, Q, Bd, EP, SP


def test_fill_met_tables_against_matrix_power():
    """Metrics power-path tables (lanes innermost) against numpy matrix powers, and
    the bounds are the extremes of the rows over the chunk."""
    n = 4
    E = _stable_E(n, 5, lanes=3)
    obs = [0, 2]
    R, Q, Bd, EP, SP = _met_tables(E, obs)
    P = R.shape[2]
    for b in range(3):
        pw = [np.linalg.matrix_power(E[:, :, b], p) for p in range(P + 1)]
        np.testing.assert_allclose(EP[:, :, b], pw[P], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(SP[:, :, b], sum(pw[:P]), rtol=1e-12, atol=1e-15)
        for k, ck in enumerate(obs):
            rows = np.array([pw[p + 1][ck] for p in range(P)]).T  # (n, P)
            sums = np.array([sum(pw[: p + 1])[ck] for p in range(P)]).T
            np.testing.assert_allclose(R[k, :, :, b], rows, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(Q[k, :, :, b], sums, rtol=1e-12, atol=1e-15)
            np.testing.assert_array_equal(Bd[0, k, :, b], R[k, :, :, b].max(axis=1))
            np.testing.assert_array_equal(Bd[1, k, :, b], R[k, :, :, b].min(axis=1))
            np.testing.assert_array_equal(Bd[2, k, :, b], Q[k, :, :, b].max(axis=1))
            np.testing.assert_array_equal(Bd[3, k, :, b], Q[k, :, :, b].min(axis=1))


def _met_reference(E, c, x, cprev, lmax, ltm, lab, times, j0, m, scale, tstart, above):
    """The metrics rules of run_met, stepping x <- E x + c in numpy (one analyte,
    observed state 0)."""
    x, cprev, lmax, ltm, lab = (v.copy() for v in (x, cprev, lmax, ltm, lab))
    for j in range(j0, j0 + m):
        x = _numpy_step(E, c, x)
        cv = x[0] * scale
        dt = times[j] - times[j - 1]
        a, d = cprev - above, cv - above
        both = (a > 0) & (d > 0)
        cross = (a > 0) != (d > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lab += np.where(
                both, dt, np.where(cross, dt * np.maximum(a, d) / np.abs(d - a), 0.0)
            )
        ltm = np.where(cv > lmax * (1 + TIE_RTOL), times[j] - tstart, ltm)
        lmax = np.where(cv > lmax, cv, lmax)  # a NaN level changes nothing
        cprev = cv
    return x, cprev, lmax, ltm, lab


def _met_run(E, c, x, cprev, lmax, ltm, lab, times, j0, m, scale, tstart, above):
    n, B_ = x.shape
    R, Q, Bd, EP, SP = _met_tables(E, [0])
    st = [v.copy()[None] for v in (cprev, lmax, ltm, lab)]
    xx = x.copy()
    skipped = linear.met_chunks(
        R,
        Q,
        Bd,
        EP,
        SP,
        c,
        xx,
        j0,
        m,
        times,
        scale[None].copy(),
        tstart,
        above,
        1.0 + TIE_RTOL,
        *st,
        bool(np.any(c != 0)),
        np.empty(B_),
        np.empty((1, B_), dtype=np.bool_),
        np.empty((n, B_)),
        np.empty((3, B_)),
    )
    return (xx,) + tuple(v[0] for v in st), skipped


@pytest.mark.parametrize("case", ["mixed", "all_skip", "input", "plateau", "nan_lane"])
def test_met_chunks_against_stepping(case):
    """Metrics over chunks of equal steps (skipping the chunks whose bounds show
    they change nothing) equal the stepped rules of run_met: Cmax and the state to
    rounding, Tmax exactly, time above to rounding; and each lane alone gives the
    same bits as in the block, whichever branch the block took. "all_skip" and
    "plateau" (a running infusion at steady state) must skip every chunk; with a
    NaN lane the block evaluates every chunk, and the other lanes still get the
    numbers they get alone (where they skip)."""
    n, lanes, P = 4, 6, linear._PMET
    E = _stable_E(n, 21, lanes=lanes)
    rng = np.random.default_rng(4)
    x = rng.uniform(1.0, 50.0, (n, lanes))
    c = np.zeros((n, lanes))
    scale = rng.uniform(0.5, 2.0, lanes)
    lmax = np.full(lanes, -np.inf)
    above = 5.0
    if case in ("all_skip", "nan_lane"):  # far above the threshold, or far
        # below it, with a higher earlier peak: no lane needs its outputs, time
        # above still grows
        x[:, :3] *= 1e6
        x[:, 3:] *= 1e-3
        lmax[:] = 1e12
        if case == "nan_lane":
            x[:, 4] = np.nan
    elif case == "plateau":  # x = E x + c: constant levels, above the threshold
        c = rng.uniform(0.5, 2.0, (n, lanes))
        for b in range(lanes):
            x[:, b] = np.linalg.solve(np.eye(n) - E[:, :, b], c[:, b])
        # the chunk bounds lie within [c, 2 x] of the level (rows of powers and
        # of their sums), so these leave no doubt
        lmax[:] = 3.0 * x[0] * scale
        above = 0.5 * float(np.min(c[0] * scale))
    elif case == "input":  # a constant input: levels rise to a plateau
        c = rng.uniform(0.5, 2.0, (n, lanes))
        x[:] = 0.1
    ltm = np.where(np.isfinite(lmax), 0.25, np.nan)
    cprev = x[0] * scale
    lab = np.zeros(lanes)
    j0, m = 1, 3 * P
    times = 0.5 * np.arange(j0 + m + 2)
    got, skipped = _met_run(
        E, c, x, cprev, lmax, ltm, lab, times, j0, m, scale, 0.0, above
    )
    if case in ("all_skip", "plateau"):
        assert skipped == m // P
    elif case == "nan_lane":
        assert skipped == 0
    ref = _met_reference(
        E, c, x, cprev, lmax, ltm, lab, times, j0, m, scale, 0.0, above
    )
    names = ["state", "last level", "cmax", "tmax", "time above"]
    for name, g, r in zip(names, got, ref, strict=True):
        if name == "tmax":
            np.testing.assert_array_equal(g, r)
        else:
            np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-12, err_msg=name)
    if case == "all_skip":
        np.testing.assert_array_equal(got[4][:3], m * 0.5)
        np.testing.assert_array_equal(got[4][3:], 0.0)
    if case == "plateau":
        np.testing.assert_array_equal(got[4], m * 0.5)
    for b in range(lanes):
        one, alone_skipped = _met_run(
            np.ascontiguousarray(E[:, :, b : b + 1]),
            c[:, b : b + 1].copy(),
            x[:, b : b + 1].copy(),
            cprev[b : b + 1],
            lmax[b : b + 1],
            ltm[b : b + 1],
            lab[b : b + 1],
            times,
            j0,
            m,
            scale[b : b + 1],
            0.0,
            above,
        )
        if case == "nan_lane" and b != 4:
            assert alone_skipped == m // P
        for name, g, o in zip(names, got, one, strict=True):
            np.testing.assert_array_equal(g[..., b], o[..., 0], err_msg=f"{name} {b}")


LAGGED = "tlag"


@pytest.fixture(scope="module")
def lag_model(tmp_path_factory):
    """Domino with a lag on the intranasal route (a per-subject parameter)."""
    src = ks.load_model("domino").path.read_text()
    src = src.replace(
        '[routes.intranasal]\nkind = "extravascular"\n',
        '[routes.intranasal]\nkind = "extravascular"\nlag = "TLAG"\n',
    )
    src += (
        '\n[parameters.TLAG]\nvalue = 0.1\nunit = "h"\n'
        'description = "test lag"\nsource = "test"\ngrade = "choice"\n'
    )
    p = tmp_path_factory.mktemp("lag") / "domino_lag.toml"
    p.write_text(src)
    return ks.load_model(p)


def _one(params, i):
    return {
        k: (v[0][i : i + 1], v[1]) if isinstance(v, tuple) else v[i : i + 1]
        for k, v in params.items()
    }


@pytest.mark.parametrize("output", ["trajectories", "metrics"])
def test_result_independent_of_block(lag_model, output):
    """70 subjects: two full blocks of 32 and a partial one (metrics: one block of
    128); the lag differs for a few subjects, which splits their blocks into
    sub-blocks. Each subject alone gives bit-identical numbers."""
    n = 70
    rng = np.random.default_rng(3)
    tlag = np.full(n, 0.1)
    tlag[[5, 6, 40, 69]] = [0.2, 0.2, 0.3, 0.05]
    params = {
        "TLAG": tlag,
        "k10": (rng.uniform(0.3, 0.6, n), "1/min"),
        "V1": (rng.uniform(0.05, 0.08, n), "L/kg"),
    }
    reg = ks.Regimen.at(
        ["0 h", "26 h"], ks.Dose.bolus("56 mg", route="intranasal")
    ) + ks.Regimen.at(["50 h"], ks.Dose.infusion("0.5 mg/kg", duration="40 min"))
    times = ks.grid("3 d", "5 min")
    kw = dict(times=times, progress=False)
    if output == "metrics":
        kw.update(output=ks.Metrics(above=50.0))
    whole = ks.simulate(lag_model, reg, subjects=ks.Subjects(parameters=params), **kw)
    names = (
        ["cmax", "tmax", "auc", "predose", "time_above"]
        if output == "metrics"
        else ["concentration", "dose_auc", "predose"]
    )
    for i in [0, 5, 6, 31, 32, 40, 63, 64, 69]:
        alone = ks.simulate(
            lag_model, reg, subjects=ks.Subjects(parameters=_one(params, i)), **kw
        )
        for v in names:
            np.testing.assert_array_equal(
                whole[v].values[i], alone[v].values[0], err_msg=f"{v}, subject {i}"
            )
    if output == "trajectories":  # the lag is real: delayed subjects start later
        c = whole.concentration.values[:, 0]
        j = np.searchsorted(times, 0.15)
        assert c[40, j] == 0.0 and c[0, j] > 0.0


def test_split_block_against_expm(lag_model):
    """Subjects whose lags differ are stepped in separate runs of one block; each
    one's curve against scipy's matrix exponential, written from the model file's
    numbers (domino: k10 0.4381, k12 0.5921, k21 0.2470, k13 0.5900, k31 0.0146 1/min,
    V1 0.063 L/kg x 70 kg; nasal F 0.48, ka 2.5 1/h; 56 mg at 0 h, none absorbed
    before the subject's lag)."""
    import scipy.linalg

    lags = np.array([0.1, 0.35, 0.1, 0.6, 0.35])
    times = ks.grid("6 h", "5 min")
    ds = ks.simulate(
        lag_model,
        ks.Dose.bolus("56 mg", route="intranasal"),
        times=times,
        subjects=ks.Subjects(parameters={"TLAG": lags}),
        progress=False,
    )
    k10, k12, k21, k13, k31 = (60 * k for k in (0.4381, 0.5921, 0.2470, 0.5900, 0.0146))
    ka, v1 = 2.5, 0.063 * 70
    A = np.array(  # depot, central, peripheral 1, peripheral 2 (mg, 1/h)
        [
            [-ka, 0, 0, 0],
            [ka, -(k10 + k12 + k13), k21, k31],
            [0, k12, -k21, 0],
            [0, k13, 0, -k31],
        ]
    )
    for i, lag in enumerate(lags):
        want = [
            0.0
            if t < lag
            else 1000
            * (scipy.linalg.expm(A * (t - lag)) @ [0.48 * 56, 0, 0, 0])[1]
            / v1
            for t in times
        ]
        np.testing.assert_allclose(
            ds.concentration.values[i, 0], want, rtol=1e-9, atol=1e-9, err_msg=str(i)
        )


def _time_above_linear(t, c, level):
    """Time above ``level`` with the curve linear between grid points."""
    total = 0.0
    for a, b, ca, cb in zip(t[:-1], t[1:], c[:-1], c[1:], strict=True):
        if ca >= level and cb >= level:
            total += b - a
        elif ca < level <= cb:
            total += b - (a + (level - ca) / (cb - ca) * (b - a))
        elif cb < level <= ca:
            total += a + (level - ca) / (cb - ca) * (b - a) - a
    return total


def test_split_block_metrics_against_expm(lag_model):
    """The metrics mode of a block split by lags (0.37 and 0.52 h fall between the
    5-min grid points): Cmax and Tmax on the grid, the exact AUC over 0-6 h and the
    time above 50 ng/mL with the curve linear between grid points, each against
    scipy's matrix exponential (an integrator state for the AUC)."""
    import scipy.linalg

    lags = np.array([0.1, 0.37, 0.1, 0.52, 0.37])
    times = ks.grid("6 h", "5 min")
    ds = ks.simulate(
        lag_model,
        ks.Dose.bolus("56 mg", route="intranasal"),
        times=times,
        subjects=ks.Subjects(parameters={"TLAG": lags}),
        output=ks.Metrics(above=50.0),
        progress=False,
    )
    k10, k12, k21, k13, k31 = (60 * k for k in (0.4381, 0.5921, 0.2470, 0.5900, 0.0146))
    ka, v1 = 2.5, 0.063 * 70
    A = np.zeros((5, 5))  # depot, central, peripherals (mg), AUC (ng*h/mL)
    A[:4, :4] = [
        [-ka, 0, 0, 0],
        [ka, -(k10 + k12 + k13), k21, k31],
        [0, k12, -k21, 0],
        [0, k13, 0, -k31],
    ]
    A[4, 1] = 1000 / v1
    x0 = np.array([0.48 * 56, 0, 0, 0, 0])
    for i, lag in enumerate(lags):
        c = np.array(
            [
                0.0
                if t < lag
                else (scipy.linalg.expm(A * (t - lag)) @ x0)[1] * 1000 / v1
                for t in times
            ]
        )
        auc = (scipy.linalg.expm(A * (times[-1] - lag)) @ x0)[4]
        got = {k: float(ds[k].values[i].squeeze()) for k in ("cmax", "tmax", "auc")}
        assert got["cmax"] == pytest.approx(c.max(), rel=1e-9), i
        assert got["tmax"] == times[np.argmax(c)], i
        assert got["auc"] == pytest.approx(auc, rel=1e-9), i
        above = float(ds.time_above.values[i].squeeze())
        assert above == pytest.approx(_time_above_linear(times, c, 50.0), rel=1e-9), i


# -- paths left out of a kernel's compile ------------------------------------------


@njit
def _would_not_type(x):
    return x.no_such_attribute  # a typing error, if this were ever compiled


@njit(inline="always")
def _metrics_only(flag, mode):
    if mode > 0:
        return _would_not_type(flag)
    return 5


@njit
def _pruned(flag, nm):
    # the idiom of linear.block_linear: the mode is len() of a tuple argument
    mode = len(nm)
    if mode == 0:
        flag[0] += 1.0
    return _metrics_only(flag, mode)


def test_other_mode_is_pruned_before_typing():
    """block_linear's mode is ``len(nm)``, a constant while numba compiles, so the
    branches of the other mode (in its own body and in the helpers inlined into it)
    are pruned before typing: a kernel compiles only its own mode's code. Here the
    pruned branch could not even be typed."""
    flag = np.zeros(1)
    assert _pruned(flag, ()) == 5 and flag[0] == 1.0
    with pytest.raises(Exception, match="no_such_attribute"):
        _pruned(flag, (0,))


def test_kernel_without_output_loops_matches_the_full_kernel():
    """``no = ()`` (the per-dose pass) takes one step per output and compiles no
    power path or run_out. On a 1-min grid, where the full kernel reads long runs
    from rows of E^p, both give the same trajectories to rounding; on a grid with
    only short runs (97 min: 60 outputs in all, fewer than _POW) they match bit for
    bit, as step and run_out do the same arithmetic."""
    from ketasim._lower import lower
    from ketasim._subjects import subject_table

    model = ks.load_model("domino")
    reg = ks.six_infusion_course(sessions=2)
    n = 40
    rng = np.random.default_rng(11)
    k, cov, over = subject_table(model, {"weight": rng.uniform(50, 110, n)}, None)
    params = model.individual_parameters(cov, overrides=over, n=k)
    low = lower(model, reg, params, cov["weight"], n)
    full_ns = linear.states(low.A.shape[2])
    for step_h, exact in ((1 / 60, False), (97 / 60, True)):
        t = np.arange(0.0, 4 * 24 + 1e-9, step_h)
        got = {}
        for name, ns, no in (
            ("full", full_ns, full_ns),
            ("steps", linear.generic_states(), ()),
        ):
            out = np.empty((n, low.obs_cmt.size, t.size))
            status = np.zeros(n, dtype=np.int64)
            linear.population_linear(
                low.A,
                low.ev_time,
                low.ev_cmt,
                low.ev_kind,
                low.ev_value,
                t,
                low.obs_cmt,
                low.obs_scale,
                out,
                status,
                ns,
                no,
            )
            assert not status.any()
            got[name] = out
        if exact:
            assert t.size < linear._POW  # no run is long enough for the power path
            np.testing.assert_array_equal(got["steps"], got["full"])
        else:
            scale = np.abs(got["full"]).max()
            np.testing.assert_allclose(
                got["steps"], got["full"], rtol=1e-12, atol=1e-13 * scale
            )
            assert not np.array_equal(got["steps"], got["full"])  # power path ran
