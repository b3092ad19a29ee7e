"""Exact propagation of linear compartmental models (numba).

For ``dx/dt = A x + r`` with a piecewise-constant input rate ``r`` (infusions and
zero-order absorption), the state after a step ``h`` is exactly
``x(t+h) = E(h) x(t) + G(h) r`` with ``E = expm(A h)`` and ``G = ∫0^h expm(A s) ds``,
computed for a whole block of subjects at once by a Taylor polynomial with scaling
and squaring (:func:`.expm.lane_propagators`). Steps are
split at event times (boluses jump ``x``; rate changes step ``r``), so the solution is
exact to rounding at every output time: no tolerances to tune, and on a uniform output
grid every step reuses one cached ``(E, G)`` pair, so a step costs two small
matrix-vector products.

Events (rows sorted by time): kind 0 bolus (mg into ``cmt``), 1 change of a
zero-order input rate (mg/h), 2 padding, 3 switch to occasion ``int(value)``,
4 start of metrics window ``int(value)`` (metrics-only mode).
Status codes (``status[s]``): 0 ok, 4 non-finite rate matrix or input.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._unrolled import NMAX, run_met, run_out, run_pow, step
from .expm import LANE_WORK, lane_mul_add, lane_propagators

OK = 0
NONFINITE = 4

_NCACHE = 8  # distinct step lengths kept per subject (a uniform grid needs 1-3)
_EPS = 2.220446049250313e-16
# subjects stepped together (SIMD lanes), measured best on W2 and W4: trajectories
# favour blocks that keep the output tile in L1, metrics longer lane loops
_BLOCK = 32
_BLOCK_METRICS = 128
_TILE = 64  # outputs buffered per lane before the contiguous stores to out (512 B
# per lane row; 16 was 25-50 % slower for W2 on an AVX2 EPYC, 32-256 all alike)
# Outputs per chunk of the trajectory power path (runs of at least _POW equal steps;
# a power of two, so that E^P is built by squaring): each output is one row of
# E^(p+1) times the state at the start of the chunk, independent of its neighbours,
# so the loop over p vectorises, the stores to out are contiguous and the n x n
# step per output becomes n FMAs. W2 into out= on an AVX2 EPYC: kernel 0.14 ->
# 0.09 s. (Evaluating every output this way in metrics mode measured slower than
# the lane-vectorised run_met, 2.7 vs 1.7 ns per output; metrics use powers to
# skip outputs instead, below.)
_POW = 64
# Metrics mode, runs of >= _PMET equal steps inside a dose window: the outputs of a
# chunk of _PMET steps are again rows of powers of E times the chunk's start state,
# and per-state bounds of those rows over the chunk bound every output of the chunk.
# A chunk whose bounds show that it cannot raise the running maximum nor cross the
# time-above threshold (the long decay between doses) is jumped over with E^P
# without evaluating its outputs; see met_chunks. W4 (1 M patients, 2 threads, AVX2
# EPYC): 10.6 -> ~3.7 s together with lane_propagators; 32 measured a little
# faster than 64 (fewer outputs in the chunks that must be evaluated).
_PMET = 32
# relative margin of those bounds, far above the rounding of the bounded sums
_BOUND_RTOL = 1e-12


def states(n: int) -> tuple:
    """The state-count argument of the population kernels: a tuple of zeros, n long
    up to NMAX. Its length is part of the kernel's type, so numba compiles (and
    caches) one kernel per state count, holding only that count's unrolled loops;
    the first model with a new state count pays one compile of a few tens of
    seconds, not all of them at once. Every count above NMAX gets the same tuple
    (NMAX + 1 long): they all run the generic loops, so they share one kernel."""
    return (0,) * min(n, NMAX + 1)


def generic_states() -> tuple:
    """The state-count argument that selects the generic loops (the count read from
    the arrays) for any model: one kernel, compiled once, for passes whose speed
    does not matter (a few output times per subject)."""
    return states(NMAX + 1)


@njit(cache=True, nogil=True)
def _find(cache_h, nused, h, t):
    # Output grids such as k*5/60 give step lengths that differ in the last bits
    # (t_k - t_{k-1} rounds at the scale of t). Treating those as one step costs a
    # time error of a few ulps of t, far below the 1e-9 accuracy target, and keeps
    # one expm per subject instead of one per step.
    tol = 1e-12 * h + 8.0 * _EPS * abs(t)
    for i in range(nused):
        if abs(cache_h[i] - h) <= tol:
            return i
    return -1


@njit(cache=True, nogil=True, inline="always")
def _same_h(h0, h, t):
    """h is the step h0 up to rounding of grid times near t (see _find)."""
    return abs(h - h0) <= 1e-12 * h0 + 8.0 * _EPS * t


@njit(cache=True, nogil=True, inline="always")
def _slot(cache_h, nused, nextslot, last, h, t):
    """Cache slot for step ``h``: (slot, new, nused, nextslot). ``new`` means the
    caller must fill the slot's propagators (round-robin replacement)."""
    if last >= 0 and _same_h(h, cache_h[last], t):
        return last, False, nused, nextslot
    slot = _find(cache_h, nused, h, t)
    if slot >= 0:
        return slot, False, nused, nextslot
    slot = nextslot
    cache_h[slot] = h
    return slot, True, min(nused + 1, _NCACHE), (nextslot + 1) % _NCACHE


@njit(cache=True, nogil=True, inline="always")
def _interval_above(c0, c1, dt, level):
    """Time in an interval of length dt during which the linear interpolant of
    c0 -> c1 exceeds ``level`` (same rule as ketasim.metrics)."""
    a = c0 - level
    b = c1 - level
    if a > 0.0 and b > 0.0:
        return dt
    if (a > 0.0) != (b > 0.0):
        return dt * max(a, b) / abs(b - a)
    return 0.0


@njit(cache=True, nogil=True)
def _flush(ms, s0, B, KC, w, lmax, ltm, lab):
    cmax, tmax, tab = ms
    for b in range(B):
        for k in range(KC):
            cmax[s0 + b, k, w] = lmax[k, b]
            tmax[s0 + b, k, w] = ltm[k, b]
            tab[s0 + b, k, w] = lab[k, b]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _input_term(Gs, r, active, c):
    """c = G r per lane (zero without input)."""
    n, B = c.shape
    for i in range(n):
        for b in range(B):
            c[i, b] = 0.0
    if active:
        for i in range(n):
            for k in range(n):
                for b in range(B):
                    c[i, b] += Gs[i, k, b] * r[k, b]


# block_linear and its steps. The steps are inlined into it (numba IR, with its
# flags): the same code as one function, and no call per run or output.
@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _lane_scale(obs_scale, s0, B, K):
    """(K, B) output factors (ng/mL per mg) of lanes s0 .. s0+B-1."""
    scale = np.empty((K, B))
    for b in range(B):
        for k in range(K):
            scale[k, b] = obs_scale[s0 + b, k]
    return scale


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _bad_lanes(A, s0, B, n):
    """Lanes with a non-finite rate: loops, not np.isfinite(A[s0 + b]), so that
    no temporary is allocated per lane."""
    bad = np.zeros(B, dtype=np.bool_)
    for b in range(B):
        for o in range(A.shape[1]):
            for i in range(n):
                for k in range(n):
                    if not np.isfinite(A[s0 + b, o, i, k]):
                        bad[b] = True
    return bad


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _pow_scratch(B, K, n, mode):
    """Power path of trajectories (runs of >= _POW outputs, mode 0; empty in mode
    1): the tables Rp, Qp, EP, SP of one cached propagator (:func:`fill_powers`),
    its (n, n) scratch Mw, Sw, Tw and the state row ypow of run_pow."""
    npow = n if mode == 0 else 0
    return (
        np.empty((B, K, npow, _POW)),
        np.empty((B, K, npow, _POW)),
        np.empty((B, npow, npow)),
        np.empty((B, npow, npow)),
        np.empty((npow, npow)),
        np.empty((npow, npow)),
        np.empty((npow, npow)),
        np.empty(npow),
    )


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _met_scratch(B, KC, n, mode):
    """Metrics power path (mode > 0; empty in mode 0): the tables Rm, Qm, Bm, EPm,
    SPm of one cached propagator (:func:`fill_met_tables`), its scratch Mm, and
    the scratch ym, bnd, acc, allab of :func:`met_chunks`."""
    nmet = n if mode > 0 else 0
    KM = KC if mode > 0 else 0
    return (
        np.empty((KM, nmet, _PMET, B)),
        np.empty((KM, nmet, _PMET, B)),
        np.empty((4, KM, nmet, B)),
        np.empty((nmet, nmet, B)),
        np.empty((nmet, nmet, B)),
        np.empty((3, nmet, nmet, B)),
        np.empty((nmet, B)),
        np.empty((3, B)),
        np.empty(B),
        np.empty((KM, B), dtype=np.bool_),
    )


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _propagator(A, s0, occ, h, t, pc, nused, nextslot, last, rslot, mslot):
    """The cache slot of step h's propagators (E, G), filled if new; a refilled
    slot's power tables are stale (rslot, mslot -> -1). ``pc``: (cache_h, cache_E,
    cache_G, Al, work, sq). Returns (slot, nused, nextslot, rslot, mslot)."""
    cache_h, cache_E, cache_G, Al, work, sq = pc
    slot, new, nused, nextslot = _slot(cache_h, nused, nextslot, last, h, t)
    if new:
        _fill(A, s0, occ, h, cache_E[slot], cache_G[slot], Al, work, sq)
        rslot = -1 if slot == rslot else rslot
        mslot = -1 if slot == mslot else mslot
    return slot, nused, nextslot, rslot, mslot


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _apply_event(ev_cmt, ev_kind, ev_value, s0, B, e, x, r):
    """Event e in every lane: a bolus jumps x, a rate change steps r. Returns
    whether any input rate is now nonzero."""
    for b in range(B):
        kind = ev_kind[s0 + b, e]
        if kind == 0:
            x[ev_cmt[s0 + b, e], b] += ev_value[s0 + b, e]
        elif kind == 1:
            r[ev_cmt[s0 + b, e], b] += ev_value[s0 + b, e]
    active = False
    for i in range(r.shape[0]):
        for b in range(B):
            if r[i, b] != 0.0:
                active = True
    return active


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _window_start(x, xpre, obs_cmt, scale, s0, B, KC, w, mauc, mpre):
    """Metrics window w starts: the pre-dose level (from the state before this
    time's events) and the cumulative AUC so far."""
    for b in range(B):
        for k in range(KC):
            mpre[s0 + b, k, w] = xpre[obs_cmt[k], b] * scale[k, b]
            mauc[s0 + b, k, w] = x[obs_cmt[KC + k], b] * scale[KC + k, b]


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _events(
    tj,
    A,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    s0,
    B,
    e,
    t,
    occ,
    active,
    x,
    r,
    c,
    xpre,
    tpre,
    pc,
    nused,
    nextslot,
    last,
    rslot,
    mslot,
    obs_cmt,
    scale,
    KC,
    mode,
    mauc,
    mpre,
    ns,
):
    """The events from e on at or before output time tj: step to each, then apply
    it (metrics mode: keep the state before the events of each event time in
    xpre). Returns (e, t, occ, active, tpre, nused, nextslot, last, rslot, mslot)
    after them."""
    nev = ev_time.shape[1]
    cache_E = pc[1]
    cache_G = pc[2]
    while e < nev and ev_time[s0, e] <= tj:
        h = ev_time[s0, e] - t
        if h > 0.0:
            slot, nused, nextslot, rslot, mslot = _propagator(
                A, s0, occ, h, t, pc, nused, nextslot, last, rslot, mslot
            )
            last = slot
            _input_term(cache_G[slot], r, active, c)
            step(cache_E[slot], c, x, ns)
            t = ev_time[s0, e]
        if mode > 0 and ev_time[s0, e] != tpre:
            _copy2(x, xpre)
            tpre = ev_time[s0, e]
        active = _apply_event(ev_cmt, ev_kind, ev_value, s0, B, e, x, r)
        if ev_kind[s0, e] == 3:  # occasions come from the shared regimen
            occ = int(ev_value[s0, e])
            nused = np.int64(0)  # new rate matrix: cached propagators are stale
            nextslot = np.int64(0)  # refill from slot 0 (_find looks at < nused)
            last = np.int64(-1)
        elif ev_kind[s0, e] == 4 and mode > 0:
            _window_start(
                x, xpre, obs_cmt, scale, s0, B, KC, int(ev_value[s0, e]), mauc, mpre
            )
        e += 1
    return e, t, occ, active, tpre, nused, nextslot, last, rslot, mslot


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _run_length(times, j, h, t_end):
    """How many outputs from j on follow one another with step h before t_end."""
    T = times.shape[0]
    m = 1
    while (
        j + m < T
        and times[j + m] < t_end
        and _same_h(h, times[j + m] - times[j + m - 1], times[j + m - 1])
    ):
        m += 1
    return m


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _traj_run(
    E, c, x, out, s0, j, m, h, obs_cmt, scale, tile, active, pw, rslot, slot, ns, no
):
    """Trajectories (mode 0) at outputs j .. j+m-1: whole chunks of _POW outputs
    from powers of E (tables ``pw`` built for cache slot ``slot`` unless rslot
    is it already), the rest by steps through the tile; an output at the current
    time (h == 0), or no output loops compiled (no == 0), by a plain step per
    output. ``ns``, ``no``: the lengths of the kernel's state-count tuples
    (constants while it compiles). Returns rslot."""
    Rp, Qp, EP, SP, Mw, Sw, Tw, ypow = pw
    K = obs_cmt.shape[0]
    B = x.shape[1]
    if h > 0.0:
        full = m - m % _POW
        # the power path for the kernel's own state count only (the dose windows'
        # n + K states take run_out's generic loop: few outputs, no long runs);
        # the generic kernel (more than NMAX states) takes it for any count
        own = no > NMAX or x.shape[0] == no
        if full > 0 and no > 0 and own:
            if rslot != slot:
                fill_powers(E, obs_cmt, Rp, Qp, EP, SP, Mw, Sw, Tw)
                rslot = slot
            run_pow(Rp, Qp, EP, SP, c, x, out, s0, j, full, scale, active, ypow, no)
            j += full
            m -= full
            if m == 0:
                return rslot
    if h > 0.0 and no > 0:
        run_out(E, c, x, out, s0, j, m, obs_cmt, scale, tile, no)
    else:
        for jj in range(m):
            if h > 0.0:
                step(E, c, x, ns)
            for k in range(K):
                ck = obs_cmt[k]
                for b in range(B):
                    out[s0 + b, k, j + jj] = x[ck, b] * scale[k, b]
    return rslot


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _met_run(
    E,
    c,
    x,
    j,
    m,
    times,
    obs_cmt,
    scale,
    KC,
    tstart,
    above,
    tie1,
    cprev,
    cur,
    lmax,
    ltm,
    lab,
    active,
    mt,
    mslot,
    slot,
    nm,
):
    """Metrics (mode > 0) of outputs j .. j+m-1 inside one window: whole chunks of
    _PMET steps by met_chunks (tables ``mt`` built for cache slot ``slot`` unless
    mslot is it already), which jumps over chunks that change no metric, the rest
    step by step (run_met); ``nm``: the length of the kernel's metrics
    state-count tuple. Returns mslot."""
    Rm, Qm, Bm, EPm, SPm, Mm, ym, bnd, acc, allab = mt
    full = m - m % _PMET
    if full > 0:
        if mslot != slot:
            fill_met_tables(E, obs_cmt, Rm, Qm, Bm, EPm, SPm, Mm)
            mslot = slot
        met_chunks(
            Rm,
            Qm,
            Bm,
            EPm,
            SPm,
            c,
            x,
            j,
            full,
            times,
            scale,
            tstart,
            above,
            tie1,
            cprev,
            lmax,
            ltm,
            lab,
            active,
            acc,
            allab,
            ym,
            bnd,
        )
        j += full
        m -= full
        if m == 0:
            return mslot
    run_met(
        E,
        c,
        x,
        j,
        m,
        times,
        obs_cmt,
        scale,
        KC,
        tstart,
        above,
        tie1,
        cprev,
        cur,
        lmax,
        ltm,
        lab,
        active,
        nm,
    )
    return mslot


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _met_output(
    x,
    times,
    j,
    obs_cmt,
    scale,
    KC,
    starts,
    wi,
    wprev,
    above,
    tie1,
    cprev,
    lmax,
    ltm,
    lab,
    ms,
    s0,
):
    """Metrics at one output j (x its state), the general case: the time above
    over the interval from the previous output; a new window flushes the previous
    one's metrics and starts afresh; then Cmax/Tmax (tie rule: a later sample
    moves Tmax only above the running maximum times tie1)."""
    B = x.shape[1]
    tj = times[j]
    if j > 0 and wprev >= 0 and above == above:
        dt = tj - times[j - 1]
        for k in range(KC):
            ck = obs_cmt[k]
            for b in range(B):
                cv = x[ck, b] * scale[k, b]
                lab[k, b] += _interval_above(cprev[k, b], cv, dt, above)
    if wi != wprev:
        if wprev >= 0:
            _flush(ms, s0, B, KC, wprev, lmax, ltm, lab)
        for k in range(KC):
            for b in range(B):
                lmax[k, b] = -np.inf
                ltm[k, b] = np.nan
                lab[k, b] = 0.0
    for k in range(KC):
        ck = obs_cmt[k]
        for b in range(B):
            cv = x[ck, b] * scale[k, b]
            if wi >= 0:
                lm = lmax[k, b]
                tm = ltm[k, b]
                ltm[k, b] = tj - starts[wi] if (cv > lm * tie1) | (tm != tm) else tm
                lmax[k, b] = cv if cv > lm else lm
            cprev[k, b] = cv


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _finish(x, out, status, s0, B, T, mode, obs_cmt, scale, bad, KC, W, mauc):
    """Status per lane (NONFINITE for a non-finite rate or result: then its
    trajectories are all NaN) and, in metrics mode, the AUC at the end."""
    K = obs_cmt.shape[0]
    for b in range(B):
        status[s0 + b] = OK
        if mode > 0:
            for k in range(KC):
                mauc[s0 + b, k, W] = x[obs_cmt[KC + k], b] * scale[KC + k, b]
                if bad[b] or not np.isfinite(mauc[s0 + b, k, W]):
                    status[s0 + b] = NONFINITE
            continue
        for k in range(K):
            if bad[b] or not np.isfinite(out[s0 + b, k, T - 1]):
                out[s0 + b, :, :] = np.nan
                status[s0 + b] = NONFINITE


@njit(cache=True, nogil=True, inline="always")
def _same_times(ev_time, s0, s1):
    """How many subjects from s0 on (before s1) share subject s0's event times:
    they are stepped together."""
    nev = ev_time.shape[1]
    b = s0 + 1
    while b < s1:
        for e in range(nev):
            if ev_time[b, e] != ev_time[s0, e]:
                return b - s0
        b += 1
    return b - s0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def block_linear(
    A,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    times,
    obs_cmt,
    obs_scale,
    out,
    status,
    starts,
    tie,
    above,
    ms,
    mauc,
    mpre,
    ns,
    no,
    nm,
    ib0,
    ib1,
):
    """Blocks ``ib0 .. ib1-1`` of subjects (``_BLOCK`` a block for trajectories,
    ``_BLOCK_METRICS`` for metrics); within a block, each run of consecutive
    subjects ``s0 .. s0+B-1`` that share their event times (all of them for one
    shared regimen) is stepped together. The thread pool of
    :func:`population_linear` splits the blocks; this function is its numba entry
    point, with no driver above it (a numba function that calls another links
    in, re-optimises and re-emits the callee's code: one level less is ~1 s less
    of every cold compile).

    The state is (n, B) with the subject (lane) index innermost; a step is the
    generated, unrolled ``x <- E x + c`` of :mod:`._unrolled`, which LLVM
    vectorises across the lanes. Between events, the output times that follow with
    the same step length form a *run*: trajectories take chunks of ``_POW`` outputs
    from powers of E (``run_pow``) and the rest by steps through a small tile
    (``run_out``, contiguous stores to ``out``); metrics take chunks of ``_PMET``
    steps with ``met_chunks`` (skipping those that change no metric) and the rest
    by ``run_met``. Which path a run takes depends only on the event times and the
    grid, and every lane's arithmetic is the same in a vector or scalar loop, so a
    subject's result does not depend on ``B``.

    ``nm = ()`` writes trajectories into ``out`` (S, K, T) (mode 0); otherwise the
    kernel streams per-window metrics (mode > 0, see
    :func:`population_linear_metrics`). ``ns``, ``no``, ``nm`` (:func:`states`)
    select the unrolled variants at compile time: of ``step`` (all n states), of
    ``run_out``/``run_pow`` (n, or () in metrics mode) and of ``run_met`` (n minus
    the AUC states, or () for trajectories). Their lengths are constants while
    numba compiles, so the branches of the other mode and the other state counts
    are pruned before typing: the trajectory kernel holds no metrics code, the
    metrics kernel no trajectory power path.
    """
    # 0: trajectories, > 0: metrics. len() of a tuple argument is a constant to
    # numba (and so are these names, defined once), so the branches of the other
    # mode, here and in the helpers inlined below, and of the other state counts
    # in the dispatchers of _unrolled, are pruned before typing: each kernel
    # types, lowers and optimises only its own code
    mode = len(nm)
    n_s = len(ns)
    n_o = len(no)
    S = A.shape[0]
    size = _BLOCK if mode == 0 else _BLOCK_METRICS
    s0 = ib0 * size
    s_end = min(S, ib1 * size)
    while s0 < s_end:
        # the run: subjects s0 .. s0+B-1 of one block that share their event times
        B = _same_times(ev_time, s0, min(s_end, (s0 // size + 1) * size))
        n = A.shape[2]
        T = times.shape[0]
        K = obs_cmt.shape[0]
        nev = ev_time.shape[1]
        KC = K // 2 if mode > 0 else K
        # propagators of up to _NCACHE step lengths (round robin), and their scratch
        cache_h = np.empty(_NCACHE)
        cache_E = np.empty((_NCACHE, n, n, B))
        cache_G = np.empty((_NCACHE, n, n, B))
        pc = (
            cache_h,
            cache_E,
            cache_G,
            np.empty((n, n, B)),
            np.empty((LANE_WORK, n, n, B)),
            np.empty(B, dtype=np.int64),
        )
        # np.int64(...), np.bool_(...): plain typed values, not literals; a literal
        # argument made numba compile each callee a second time (Literal[int](0)
        # as well as int64: _fill, _find, _flush, _input_term; ~1 s of a cold compile)
        nused = np.int64(0)
        nextslot = np.int64(0)
        last = np.int64(-1)
        x = np.zeros((n, B))
        r = np.zeros((n, B))
        c = np.zeros((n, B))
        scale = _lane_scale(obs_scale, s0, B, K)
        bad = _bad_lanes(A, s0, B, n)
        tile = np.empty((K, _TILE, B))
        cprev = np.zeros((KC, B))
        cur = np.zeros((KC, B))
        lmax = np.full((KC, B), -np.inf)
        ltm = np.full((KC, B), np.nan)
        lab = np.zeros((KC, B))
        tie1 = 1.0 + tie
        pw = _pow_scratch(B, K, n, mode)
        rslot = -1  # the cache slot pw's tables were built from
        mt = _met_scratch(B, KC, n, mode)
        mslot = -1  # the cache slot mt's tables were built from
        # metrics: the state just before the events of the latest event time, so that
        # a dose's pre-dose level excludes other doses (or lagged inputs) given at the
        # same time: a value at a dose time is the state after the dose
        xpre = np.zeros((n if mode > 0 else 0, B))
        tpre = -1.0
        wi = np.int64(-1)
        W = 0 if mode == 0 else starts.shape[0]
        occ = np.int64(0)
        active = np.bool_(False)
        t = 0.0
        e = 0
        j = np.int64(0)
        slot = 0  # the cache slot of the current step (read only after a step h > 0)
        while j < T:
            tj = times[j]
            if e < nev and ev_time[s0, e] <= tj:  # events at or before this output
                (e, t, occ, active, tpre, nused, nextslot, last, rslot, mslot) = (
                    _events(
                        tj,
                        A,
                        ev_time,
                        ev_cmt,
                        ev_kind,
                        ev_value,
                        s0,
                        B,
                        e,
                        t,
                        occ,
                        active,
                        x,
                        r,
                        c,
                        xpre,
                        tpre,
                        pc,
                        nused,
                        nextslot,
                        last,
                        rslot,
                        mslot,
                        obs_cmt,
                        scale,
                        KC,
                        mode,
                        mauc,
                        mpre,
                        n_s,
                    )
                )
            t_ev = ev_time[s0, e] if e < nev else np.inf
            wprev = wi
            if mode > 0:
                while wi + 1 < W and tj >= starts[wi + 1]:
                    wi += 1
            h = tj - t
            # the run: outputs j .. j+m-1, each one step h after the previous, before
            # the next event (and, for metrics, inside one window)
            m = 1
            if h > 0.0:
                t_end = t_ev
                if mode > 0 and wi + 1 < W:
                    t_end = min(t_end, starts[wi + 1])
                m = _run_length(times, j, h, t_end)
                slot, nused, nextslot, rslot, mslot = _propagator(
                    A, s0, occ, h, t, pc, nused, nextslot, last, rslot, mslot
                )
                last = slot
                _input_term(cache_G[slot], r, active, c)
            if mode == 0:
                rslot = _traj_run(
                    cache_E[slot],
                    c,
                    x,
                    out,
                    s0,
                    j,
                    m,
                    h,
                    obs_cmt,
                    scale,
                    tile,
                    active,
                    pw,
                    rslot,
                    slot,
                    n_s,
                    n_o,
                )
                t = times[j + m - 1]
                j += m
                continue
            # metrics: a run of m > 1 (or one step) inside window wi with nothing to
            # flush goes to met_chunks / run_met; the first output of a window, outputs
            # that coincide with an event and j == 0 take the general path below
            if h > 0.0 and wi == wprev and wi >= 0 and j > 0:
                mslot = _met_run(
                    cache_E[slot],
                    c,
                    x,
                    j,
                    m,
                    times,
                    obs_cmt,
                    scale,
                    KC,
                    starts[wi],
                    above,
                    tie1,
                    cprev,
                    cur,
                    lmax,
                    ltm,
                    lab,
                    active,
                    mt,
                    mslot,
                    slot,
                    mode,
                )
                t = times[j + m - 1]
                j += m
                continue
            if h > 0.0:
                step(cache_E[slot], c, x, n_s)
                t = tj
            _met_output(
                x,
                times,
                j,
                obs_cmt,
                scale,
                KC,
                starts,
                wi,
                wprev,
                above,
                tie1,
                cprev,
                lmax,
                ltm,
                lab,
                ms,
                s0,
            )
            j += 1
        if mode > 0 and wi >= 0:
            _flush(ms, s0, B, KC, wi, lmax, ltm, lab)
        _finish(x, out, status, s0, B, T, mode, obs_cmt, scale, bad, KC, W, mauc)
        s0 += B


# Element loops, not ``dst[:, :] = src``: a slice copy from an array compiles numba's
# shape-mismatch error message (string formatting), ~9 s in every process that
# compiles a kernel cold.
@njit(cache=True, nogil=True, inline="always")
def _copy2(src, dst):
    for i in range(src.shape[0]):
        for k in range(src.shape[1]):
            dst[i, k] = src[i, k]


@njit(cache=True, nogil=True, inline="always")
def _copy3(src, dst):
    for i in range(src.shape[0]):
        for k in range(src.shape[1]):
            for b in range(src.shape[2]):
                dst[i, k, b] = src[i, k, b]


@njit(cache=True, nogil=True, inline="always")
def _fill(A, s0, occ, h, Es, Gs, Al, work, sq):
    """Propagators of step h for every lane into Es, Gs (n, n, B), all lanes at
    once (:func:`.expm.lane_propagators`). Al: (n, n, B) scratch."""
    n = Al.shape[0]
    B = Al.shape[2]
    for b in range(B):
        for i in range(n):
            for k in range(n):
                Al[i, k, b] = A[s0 + b, occ, i, k]
    lane_propagators(Al, h, Es, Gs, work, sq)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def fill_powers(E, obs_cmt, R, Q, EP, SP, M, S, T):
    """Power-path tables of one step propagator ``E`` (n, n, B), per lane b: R[b, k,
    :, p] is row ``obs_cmt[k]`` of E^(p+1) and Q[b, k, :, p] the same row of
    I + E + … + E^p, over the first nr = R.shape[2] states (all of them on the
    trajectory path; fewer only if the others never feed back); EP[b] = E^P and
    SP[b] = I + E + … + E^(P-1) with P = R.shape[3] a power of two (by doubling:
    S <- S + M S, M <- M M). M, S, T: (n, n) scratch."""
    n = E.shape[0]
    B = E.shape[2]
    K = R.shape[1]
    nr = R.shape[2]
    P = R.shape[3]
    for b in range(B):
        for k in range(K):
            ck = obs_cmt[k]
            for i in range(nr):
                R[b, k, i, 0] = E[ck, i, b]
                Q[b, k, i, 0] = 1.0 if i == ck else 0.0
            for p in range(1, P):
                for i in range(nr):
                    acc = 0.0
                    for q in range(nr):
                        acc += R[b, k, q, p - 1] * E[q, i, b]
                    R[b, k, i, p] = acc
                    Q[b, k, i, p] = Q[b, k, i, p - 1] + R[b, k, i, p - 1]
        for i in range(n):
            for k in range(n):
                M[i, k] = E[i, k, b]
                S[i, k] = 1.0 if i == k else 0.0
        size = 1
        while size < P:
            for i in range(n):
                for k in range(n):
                    acc = S[i, k]
                    for q in range(n):
                        acc += M[i, q] * S[q, k]
                    T[i, k] = acc
            _copy2(T, S)
            for i in range(n):
                for k in range(n):
                    acc = 0.0
                    for q in range(n):
                        acc += M[i, q] * M[q, k]
                    T[i, k] = acc
            _copy2(T, M)
            size *= 2
        for i in range(n):
            for k in range(n):
                EP[b, i, k] = M[i, k]
                SP[b, i, k] = S[i, k]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def fill_met_tables(E, obs_cmt, R, Q, Bd, EP, SP, W):
    """Metrics power-path tables of the step propagator ``E`` (n, n, B), lanes
    innermost: R[k, :, p, b] is row ``obs_cmt[k]`` of E^(p+1) and Q[k, :, p, b] the
    same row of I + E + … + E^p (p < P = R.shape[2], k < KC = R.shape[0]); Bd[0/1]
    the largest / smallest entry of R over p and Bd[2/3] those of Q; EP = E^P and
    SP = I + E + … + E^(P-1) (P a power of two, by doubling). W: (3, n, n, B)
    scratch."""
    n = E.shape[0]
    B = E.shape[2]
    KC = R.shape[0]
    P = R.shape[2]
    acc = W[0, 0, 0]  # scratch row (W[0] is reused below)
    # lane loops over 1-d rows, a separate accumulator and selects instead of
    # max()/min(): each inner loop vectorises (3.0 -> ~1.2 us per lane, n = 5)
    for k in range(KC):
        ck = obs_cmt[k]
        for i in range(n):
            R0 = R[k, i, 0]
            Q0 = Q[k, i, 0]
            Ei = E[ck, i]
            q0 = 1.0 if i == ck else 0.0
            for b in range(B):
                R0[b] = Ei[b]
                Q0[b] = q0
                Bd[0, k, i, b] = Ei[b]
                Bd[1, k, i, b] = Ei[b]
                Bd[2, k, i, b] = q0
                Bd[3, k, i, b] = q0
        for p in range(1, P):
            for i in range(n):
                for b in range(B):
                    acc[b] = 0.0
                for q in range(n):
                    Rq = R[k, q, p - 1]
                    Eq = E[q, i]
                    for b in range(B):
                        acc[b] += Rq[b] * Eq[b]
                Rp = R[k, i, p]
                Rm1 = R[k, i, p - 1]
                Qp = Q[k, i, p]
                Qm1 = Q[k, i, p - 1]
                hR = Bd[0, k, i]
                lR = Bd[1, k, i]
                hQ = Bd[2, k, i]
                lQ = Bd[3, k, i]
                for b in range(B):
                    r = acc[b]
                    u = Qm1[b] + Rm1[b]
                    Rp[b] = r
                    Qp[b] = u
                    hR[b] = r if r > hR[b] else hR[b]
                    lR[b] = r if r < lR[b] else lR[b]
                    hQ[b] = u if u > hQ[b] else hQ[b]
                    lQ[b] = u if u < lQ[b] else lQ[b]
    M = W[0]
    S = W[1]
    T = W[2]
    for i in range(n):
        for q in range(n):
            for b in range(B):
                M[i, q, b] = E[i, q, b]
                S[i, q, b] = 1.0 if i == q else 0.0
    size = 1
    while size < P:
        lane_mul_add(M, S, S, T)  # S <- S + M S
        _copy3(T, S)
        lane_mul_add(M, M, None, T)  # M <- M M
        _copy3(T, M)
        size *= 2
    _copy3(M, EP)
    _copy3(S, SP)


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _met_values(R, Q, x, c, k, p, inp, acc):
    """acc[b] = R[k, :, p, b] · x[:, b] (+ Q[k, :, p, b] · c[:, b] with input): the
    unscaled output p + 1 steps into a chunk, one fixed order of operations."""
    n = x.shape[0]
    B = x.shape[1]
    for b in range(B):
        acc[b] = 0.0
    for i in range(n):
        for b in range(B):
            acc[b] += R[k, i, p, b] * x[i, b]
    if inp:
        for i in range(n):
            for b in range(B):
                acc[b] += Q[k, i, p, b] * c[i, b]


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _add_bounds(top, bot, v, hi, lo, mag):
    """Per lane b: hi += the largest and lo += the smallest of top[i] v[i] and
    bot[i] v[i] over the states i (bounds of a row of coefficients between bot and
    top, times v); mag += their magnitudes."""
    n = v.shape[0]
    B = v.shape[1]
    for i in range(n):
        for b in range(B):
            a1 = top[i, b] * v[i, b]
            a2 = bot[i, b] * v[i, b]
            hi[b] += max(a1, a2)
            lo[b] += min(a1, a2)
            mag[b] += max(abs(a1), abs(a2))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def met_chunks(
    R,
    Q,
    Bd,
    EP,
    SP,
    c,
    x,
    j0,
    m,
    times,
    scale,
    tstart,
    above,
    tie1,
    cprev,
    lmax,
    ltm,
    lab,
    inp,
    acc,
    allab,
    y,
    bnd,
):
    """Metrics of m outputs j0 .. j0+m-1 (m a multiple of P = R.shape[2]) inside
    one dose window, by chunks of P equal steps (tables: :func:`fill_met_tables`).

    Each output of a chunk is ``scale * (R[p] · x + Q[p] · c)`` with x the state
    at the chunk start. Per lane and analyte, the entries of R and Q over the chunk
    lie between Bd's bounds, so ``lo <= output <= hi`` for every output of the
    chunk (widened by ``_BOUND_RTOL`` of the magnitudes, far above the rounding of
    the sums). A lane needs the chunk's outputs only if ``hi`` could raise its
    running maximum (or move Tmax under the tie rule) or the chunk could cross
    ``above``. If no lane of the block needs them, the chunk costs a few dot
    products: time above grows by each step for the lanes that stay above
    (``lo > above`` and the previous output above), by nothing for those that stay
    below, and the state jumps by x <- EP x + SP c. Otherwise every lane's outputs
    are evaluated and the metrics updated as in ``run_met``.

    A lane's arithmetic is the same on both branches (skipping only leaves out
    updates that provably change nothing), so its metrics do not depend on the
    other lanes of the block, on B or on the thread count. Returns the number of
    chunks jumped over without evaluating their outputs.
    """
    P = R.shape[2]
    skipped = 0
    for q0 in range(0, m, P):
        j = j0 + q0
        # which lanes could change a metric in this chunk (bounds of its outputs)
        nfull, nab = _chunk_bounds(
            Bd, x, c, inp, scale, above, tie1, cprev, lmax, allab, bnd
        )
        if nfull > 0:
            _chunk_outputs(
                R,
                Q,
                x,
                c,
                inp,
                j,
                times,
                scale,
                tstart,
                above,
                tie1,
                cprev,
                lmax,
                ltm,
                lab,
                acc,
            )
        else:
            skipped += 1
            _chunk_skip(R, Q, x, c, inp, j, times, scale, cprev, lab, nab, allab, acc)
        _chunk_jump(EP, SP, x, c, inp, y)
    return skipped


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _chunk_bounds(Bd, x, c, inp, scale, above, tie1, cprev, lmax, allab, bnd):
    """Bounds lo <= output <= hi of every output of a chunk, per analyte and lane,
    and whether they show that the lane stays above ``above`` (allab). Returns
    (lanes x analytes that need the chunk's outputs, those that stay above)."""
    KC = Bd.shape[1]
    B = x.shape[1]
    check = above == above
    hi = bnd[0]
    lo = bnd[1]
    mag = bnd[2]
    nfull = 0
    nab = 0
    for k in range(KC):
        for b in range(B):
            hi[b] = 0.0
            lo[b] = 0.0
            mag[b] = 0.0
        _add_bounds(Bd[0, k], Bd[1, k], x, hi, lo, mag)
        if inp:
            _add_bounds(Bd[2, k], Bd[3, k], c, hi, lo, mag)
        for b in range(B):
            sc = scale[k, b]
            # relative margin, plus an absolute one for subnormal levels
            wide = _BOUND_RTOL * mag[b] + 1e-300
            u = (hi[b] + wide) * sc
            v = (lo[b] - wide) * sc
            top = max(u, v)
            bot = min(u, v)
            lm = lmax[k, b]
            cp = cprev[k, b]
            # stays above / stays below the threshold (both False if it is NaN)
            ab = (cp > above) & (bot > above)
            below = (cp <= above) & (top <= above)
            # could set a new maximum or move Tmax, or could cross `above`.
            # A NaN level or bound is never skipped while `above` is set
            # (neither "stays above" nor "stays below" holds): slower for a
            # block holding a failed subject, never different.
            need = (top > min(lm, lm * tie1)) | (check & (ab == below))
            allab[k, b] = ab
            nab += 1 if ab else 0
            nfull += 1 if need else 0
    return nfull, nab


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _chunk_outputs(
    R, Q, x, c, inp, j, times, scale, tstart, above, tie1, cprev, lmax, ltm, lab, acc
):
    """Every output of the chunk starting at output j, and the metrics updated
    as in run_met (time above, Cmax, Tmax by the tie rule)."""
    KC = R.shape[0]
    P = R.shape[2]
    B = x.shape[1]
    for p in range(P):
        jj = j + p
        dt = times[jj] - times[jj - 1]
        trel = times[jj] - tstart
        for k in range(KC):
            _met_values(R, Q, x, c, k, p, inp, acc)
            for b in range(B):
                cv = acc[b] * scale[k, b]
                a = cprev[k, b] - above
                d = cv - above
                if (a > 0.0) & (d > 0.0):
                    inc = dt
                elif (a > 0.0) != (d > 0.0):
                    inc = dt * max(a, d) / abs(d - a)
                else:
                    inc = 0.0
                lab[k, b] += inc
                lm = lmax[k, b]
                tm = ltm[k, b]
                ltm[k, b] = trel if cv > lm * tie1 else tm
                lmax[k, b] = cv if cv > lm else lm
                cprev[k, b] = cv


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _chunk_skip(R, Q, x, c, inp, j, times, scale, cprev, lab, nab, allab, acc):
    """A chunk that changes no metric but the time above: each step counts for
    the lanes that stay above; the level at its last output becomes cprev."""
    KC = R.shape[0]
    P = R.shape[2]
    B = x.shape[1]
    if nab > 0:
        for p in range(P):
            dt = times[j + p] - times[j + p - 1]
            for k in range(KC):
                for b in range(B):
                    lab[k, b] += dt if allab[k, b] else 0.0
    for k in range(KC):
        _met_values(R, Q, x, c, k, P - 1, inp, acc)
        for b in range(B):
            cprev[k, b] = acc[b] * scale[k, b]


@njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always"
)
def _chunk_jump(EP, SP, x, c, inp, y):
    """x <- EP x + SP c: the state at the end of the chunk (y: (n, B) scratch)."""
    n = x.shape[0]
    B = x.shape[1]
    for i in range(n):
        for b in range(B):
            y[i, b] = 0.0
        for q in range(n):
            for b in range(B):
                y[i, b] += EP[i, q, b] * x[q, b]
        if inp:
            for q in range(n):
                for b in range(B):
                    y[i, b] += SP[i, q, b] * c[q, b]
    for i in range(n):
        for b in range(B):
            x[i, b] = y[i, b]


def _pool_run(fn, nb, args):
    """fn(*args, ib0, ib1) over block ranges split among numba.get_num_threads()
    Python threads (fn is nogil). Blocks are independent, so results do not depend
    on the split."""
    import numba

    nt = max(1, min(numba.get_num_threads(), nb))
    if nt == 1:
        fn(*args, 0, nb)
        return
    from concurrent.futures import ThreadPoolExecutor

    # interleaved small ranges balance the load like a dynamic schedule
    step = max(1, nb // (nt * 8))
    ranges = [(a, min(nb, a + step)) for a in range(0, nb, step)]
    with ThreadPoolExecutor(nt) as ex:
        for f in [ex.submit(fn, *args, a, b) for a, b in ranges]:
            f.result()


def population_linear(
    A,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    times,
    obs_cmt,
    obs_scale,
    out,
    status,
    ns,
    no,
):
    """All subjects, blocks of them on numba.get_num_threads() Python threads (a
    thread pool, not a parfor: the parallel lowering cost 6-17 s of CPU per
    kernel in every cold compile, issue 21): ``A`` (S, M, n, n) 1/h (M
    occasions); events (S, E) sorted per row; ``times`` (T,) h; ``obs_scale``
    (S, K); writes ``out`` (S, K, T), ``status`` (S,). ``ns = states(n)``: the
    kernel is compiled (and cached) per state count, with only that count's
    unrolled loops. ``no``: ``ns`` again for
    the output loops of long trajectories (the power path and ``run_out``), or
    ``()`` for a few outputs per subject, which then take one ``step`` each and
    leave those loops out of the compile.

    Blocks of subjects whose event times coincide (the usual case: one regimen, no
    per-subject lag) are stepped together; other subjects one at a time. Every
    subject's arithmetic is the same either way, so results do not depend on the
    blocking or the thread count."""
    S = A.shape[0]
    nb = (S + _BLOCK - 1) // _BLOCK
    none3 = np.empty((0, 0, 0))
    _pool_run(
        block_linear,
        nb,
        (
            A,
            ev_time,
            ev_cmt,
            ev_kind,
            ev_value,
            times,
            obs_cmt,
            obs_scale,
            out,
            status,
            np.empty(0),
            0.0,
            np.nan,
            (none3, none3, none3),
            none3,
            none3,
            ns,
            no,
            (),
        ),
    )


def population_linear_metrics(
    A,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    times,
    obs_cmt,
    obs_scale,
    starts,
    tie,
    above,
    cmax,
    tmax,
    tabove,
    auc,
    pre,
    status,
    ns,
    nm,
):
    """Metrics-only mode: no trajectories are stored. ``obs_cmt``/``obs_scale`` list
    K concentration outputs then K cumulative-AUC states; events of kind 4 (value w)
    mark the start of window w (a dose). Per subject, analyte and window: ``cmax``,
    ``tmax`` (h after the window start; tie rule: a later sample moves Tmax only if
    it exceeds the running maximum by more than a relative ``tie``), ``tabove``
    (h above ``above`` ng/mL, NaN to skip), ``pre`` (level just before the window),
    and ``auc`` (W+1,) the cumulative AUC at each window start and at the end.
    Output times are the grid on which Cmax, Tmax and time above are read.
    ``ns = states(n)`` for the n states including the K AUC states, ``nm =
    states(n - K)``."""
    S = A.shape[0]
    nb = (S + _BLOCK_METRICS - 1) // _BLOCK_METRICS
    _pool_run(
        block_linear,
        nb,
        (
            A,
            ev_time,
            ev_cmt,
            ev_kind,
            ev_value,
            times,
            obs_cmt,
            obs_scale,
            np.empty((1, 0, 0)),
            status,
            starts,
            float(tie),
            float(above),
            (cmax, tmax, tabove),
            auc,
            pre,
            ns,
            (),
            nm,
        ),
    )
