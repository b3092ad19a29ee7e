"""Exact propagation of linear compartmental models (numba).

For ``dx/dt = A x + r`` with a piecewise-constant input rate ``r`` (infusions and
zero-order absorption), the state after a step ``h`` is exactly
``x(t+h) = E(h) x(t) + G(h) r`` with ``E = expm(A h)`` and ``G = ∫0^h expm(A s) ds``,
both read off ``expm([[A, I], [0, 0]] h)`` (:func:`.expm.propagators`). Steps are
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
from numba import njit, prange

from .expm import propagators

OK = 0
NONFINITE = 4

_NCACHE = 8  # distinct step lengths kept per subject (a uniform grid needs 1-3)
_EPS = 2.220446049250313e-16


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
def _slot(cache_h, nused, nextslot, last, h, t):
    """Cache slot for step ``h``: (slot, new, nused, nextslot). ``new`` means the
    caller must fill the slot's propagators (round-robin replacement)."""
    if last >= 0 and abs(cache_h[last] - h) <= 1e-12 * h + 8.0 * _EPS * t:
        return last, False, nused, nextslot
    slot = _find(cache_h, nused, h, t)
    if slot >= 0:
        return slot, False, nused, nextslot
    slot = nextslot
    cache_h[slot] = h
    return slot, True, min(nused + 1, _NCACHE), (nextslot + 1) % _NCACHE


@njit(cache=True, nogil=True, inline="always")
def _step(E, G, slot, x, r, y, active, n):
    # index the 3-D caches directly: slicing out E[slot] would create an array view,
    # and numba's reference counting of views costs more than the step itself
    for i in range(n):
        acc = 0.0
        for k in range(n):
            acc += E[slot, i, k] * x[k]
        if active:
            for k in range(n):
                acc += G[slot, i, k] * r[k]
        y[i] = acc
    for i in range(n):
        x[i] = y[i]


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


@njit(cache=True, nogil=True)
def emit_metrics(ms, s, b, x, obs_cmt, scale_k, K, j, times, wi, wprev, cprev, above,
                 tie, starts):
    """Streaming per-window Cmax, Tmax and time above ``above`` for subject ``s``
    at output ``j`` (state ``x[:, b]``). ``ms`` = (cmax, tmax, above) arrays."""
    cmax, tmax, tab = ms
    tj = times[j]
    for k in range(K):
        c = x[obs_cmt[k], b] * scale_k[k, b]
        if wi >= 0:
            # tie rule: Tmax moves only when the running maximum is exceeded by more
            # than a relative `tie`, so equal peaks keep the first one
            if c > cmax[s, k, wi] * (1.0 + tie) or np.isnan(tmax[s, k, wi]):
                tmax[s, k, wi] = tj - starts[wi]
            if c > cmax[s, k, wi]:
                cmax[s, k, wi] = c
        if j > 0 and wprev >= 0 and above == above:  # above is not NaN
            tab[s, k, wprev] += _interval_above(cprev[k, b], c, tj - times[j - 1],
                                                above)
        cprev[k, b] = c


@njit(cache=True, nogil=True)
def subject_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale,
                   out_s, mode, s, starts, tie, above, ms, mauc, mpre):
    """Simulate one subject into ``out_s`` (K, T); returns a status code.

    ``A`` is (M, n, n): one rate matrix per occasion; an event of kind 3 switches
    to occasion ``int(value)`` (inter-occasion variability on rate parameters).
    ``mode`` 1 streams per-window metrics instead of writing ``out_s`` (see
    :func:`population_linear_metrics`)."""
    n = A.shape[1]
    T = times.shape[0]
    K = obs_cmt.shape[0]
    nev = ev_time.shape[0]
    if not np.all(np.isfinite(A)):
        if mode == 0:
            out_s[:, :] = np.nan
        return NONFINITE
    KC = K // 2 if mode == 1 else K  # metrics mode: K concentrations + K AUC states
    x2 = np.zeros((n, 1))
    sc2 = np.empty((K, 1))
    for k in range(K):
        sc2[k, 0] = obs_scale[k]
    cprev = np.zeros((KC, 1))
    wi = -1
    W = 0 if mode == 0 else starts.shape[0]
    occ = 0
    cache_h = np.empty(_NCACHE)
    cache_E = np.empty((_NCACHE, n, n))
    cache_G = np.empty((_NCACHE, n, n))
    nused = 0
    nextslot = 0
    last = -1  # slot of the previous step: on a uniform grid it is hit every time
    x = x2[:, 0]
    r = np.zeros(n)
    y = np.empty(n)
    active = False  # any nonzero input rate
    t = 0.0
    e = 0
    for j in range(T):
        tj = times[j]
        while True:
            is_event = e < nev and ev_time[e] <= tj
            target = ev_time[e] if is_event else tj
            h = target - t
            if h > 0.0:
                slot, new, nused, nextslot = _slot(cache_h, nused, nextslot, last, h, t)
                if new:
                    propagators(A[occ], h, cache_E[slot], cache_G[slot])
                last = slot
                _step(cache_E, cache_G, slot, x, r, y, active, n)
                t = target
            if not is_event:
                break
            kind = ev_kind[e]
            if kind == 0:
                x[ev_cmt[e]] += ev_value[e]
            elif kind == 1:
                r[ev_cmt[e]] += ev_value[e]
                active = False
                for i in range(n):
                    if r[i] != 0.0:
                        active = True
            elif kind == 3:
                occ = int(ev_value[e])
                nused = 0  # new rate matrix: cached propagators are stale
                last = -1
            elif kind == 4 and mode == 1:  # window start: pre-dose level, AUC so far
                w = int(ev_value[e])
                for k in range(KC):
                    mpre[s, k, w] = x[obs_cmt[k]] * obs_scale[k]
                    mauc[s, k, w] = x[obs_cmt[KC + k]] * obs_scale[KC + k]
            e += 1
        if mode == 0:
            for k in range(K):
                out_s[k, j] = x[obs_cmt[k]] * obs_scale[k]
        else:
            wprev = wi
            while wi + 1 < W and tj >= starts[wi + 1]:
                wi += 1
            emit_metrics(ms, s, 0, x2, obs_cmt, sc2, KC, j, times, wi, wprev, cprev,
                         above, tie, starts)
    if mode == 1:
        for k in range(KC):
            mauc[s, k, W] = x[obs_cmt[KC + k]] * obs_scale[KC + k]
            if not np.isfinite(mauc[s, k, W]):
                return NONFINITE
        return OK
    for k in range(K):
        if not np.isfinite(out_s[k, T - 1]):
            return NONFINITE
    return OK


_BLOCK = 16  # subjects stepped together: enough SIMD lanes to hide FMA latency


@njit(cache=True, nogil=True)
def block_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale,
                 out, status, s0, mode, starts, tie, above, ms, mauc, mpre):
    """Subjects ``s0 .. s0+B-1``, which share their event times, stepped together.

    One subject alone is latency-bound (each step needs the previous state). Stepping
    ``B`` subjects with the subject index innermost lets LLVM vectorise the small
    matrix-vector products across subjects: about 10x faster on W2.
    """
    B = _BLOCK  # a compile-time constant: fixed-length inner loops vectorise best
    n = A.shape[2]
    T = times.shape[0]
    K = obs_cmt.shape[0]
    nev = ev_time.shape[1]
    occ = 0
    cache_h = np.empty(_NCACHE)
    cache_E = np.empty((_NCACHE, n, n, B))
    cache_G = np.empty((_NCACHE, n, n, B))
    Etmp = np.empty((n, n))
    Gtmp = np.empty((n, n))
    nused = 0
    nextslot = 0
    last = -1
    x = np.zeros((n, B))
    r = np.zeros((n, B))
    scale = np.empty((K, B))
    for b in range(B):
        for k in range(K):
            scale[k, b] = obs_scale[s0 + b, k]
    bad = np.zeros(B, dtype=np.bool_)
    for b in range(B):
        if not np.all(np.isfinite(A[s0 + b])):
            bad[b] = True
    active = False
    t = 0.0
    e = 0
    xn = np.empty((n, B))
    KC = K // 2 if mode == 1 else K
    cprev = np.zeros((KC, B))
    lmax = np.full((KC, B), -np.inf)
    ltm = np.full((KC, B), np.nan)
    lab = np.zeros((KC, B))
    wi = -1
    W = 0 if mode == 0 else starts.shape[0]
    for j in range(T):
        tj = times[j]
        while True:
            is_event = e < nev and ev_time[s0, e] <= tj
            target = ev_time[s0, e] if is_event else tj
            h = target - t
            if h > 0.0:
                slot, new, nused, nextslot = _slot(cache_h, nused, nextslot, last, h, t)
                if new:
                    for b in range(B):
                        propagators(A[s0 + b, occ], h, Etmp, Gtmp)
                        for i in range(n):
                            for k in range(n):
                                cache_E[slot, i, k, b] = Etmp[i, k]
                                cache_G[slot, i, k, b] = Gtmp[i, k]
                last = slot
                Es = cache_E[slot]
                for i in range(n):
                    for b in range(B):
                        xn[i, b] = 0.0
                    for k in range(n):
                        for b in range(B):
                            xn[i, b] += Es[i, k, b] * x[k, b]
                    if active:
                        Gs = cache_G[slot]
                        for k in range(n):
                            for b in range(B):
                                xn[i, b] += Gs[i, k, b] * r[k, b]
                x, xn = xn, x  # swap buffers instead of copying
                t = target
            if not is_event:
                break
            for b in range(B):
                kind = ev_kind[s0 + b, e]
                if kind == 0:
                    x[ev_cmt[s0 + b, e], b] += ev_value[s0 + b, e]
                elif kind == 1:
                    r[ev_cmt[s0 + b, e], b] += ev_value[s0 + b, e]
            if ev_kind[s0, e] == 3:  # occasions come from the shared regimen
                occ = int(ev_value[s0, e])
                nused = 0
                last = -1
            elif ev_kind[s0, e] == 4 and mode == 1:
                w = int(ev_value[s0, e])
                for b in range(B):
                    for k in range(KC):
                        mpre[s0 + b, k, w] = x[obs_cmt[k], b] * scale[k, b]
                        mauc[s0 + b, k, w] = x[obs_cmt[KC + k], b] * scale[KC + k, b]
            active = False
            for i in range(n):
                for b in range(B):
                    if r[i, b] != 0.0:
                        active = True
            e += 1
        if mode == 0:
            for k in range(K):
                c = obs_cmt[k]
                for b in range(B):
                    out[s0 + b, k, j] = x[c, b] * scale[k, b]
        else:
            # streaming metrics, vectorised over the block: the current window's
            # running values live in (KC, B) locals and are flushed when it ends
            wprev = wi
            while wi + 1 < W and tj >= starts[wi + 1]:
                wi += 1
            if j > 0 and wprev >= 0 and above == above:
                dt = tj - times[j - 1]
                for k in range(KC):
                    ck = obs_cmt[k]
                    for b in range(B):
                        c = x[ck, b] * scale[k, b]
                        lab[k, b] += _interval_above(cprev[k, b], c, dt, above)
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
                    c = x[ck, b] * scale[k, b]
                    if wi >= 0:
                        if c > lmax[k, b] * (1.0 + tie) or ltm[k, b] != ltm[k, b]:
                            ltm[k, b] = tj - starts[wi]
                        if c > lmax[k, b]:
                            lmax[k, b] = c
                    cprev[k, b] = c
    if mode == 1 and wi >= 0:
        _flush(ms, s0, B, KC, wi, lmax, ltm, lab)
    for b in range(B):
        status[s0 + b] = OK
        if mode == 1:
            for k in range(KC):
                mauc[s0 + b, k, W] = x[obs_cmt[KC + k], b] * scale[KC + k, b]
                if bad[b] or not np.isfinite(mauc[s0 + b, k, W]):
                    status[s0 + b] = NONFINITE
            continue
        for k in range(K):
            if bad[b] or not np.isfinite(out[s0 + b, k, T - 1]):
                out[s0 + b, :, :] = np.nan
                status[s0 + b] = NONFINITE


@njit(cache=True, nogil=True)
def _same_events(ev_time, s0, B):
    for b in range(1, B):
        for e in range(ev_time.shape[1]):
            if ev_time[s0 + b, e] != ev_time[s0, e]:
                return False
    return True


@njit(cache=True, nogil=True)
def _run_block(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale, out,
               status, ib, mode, starts, tie, above, ms, mauc, mpre):
    S = A.shape[0]
    s0 = ib * _BLOCK
    B = min(_BLOCK, S - s0)
    if B == _BLOCK and _same_events(ev_time, s0, B):
        block_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt,
                     obs_scale, out, status, s0, mode, starts, tie, above, ms, mauc,
                     mpre)
    else:
        for s in range(s0, s0 + B):
            status[s] = subject_linear(A[s], ev_time[s], ev_cmt[s], ev_kind[s],
                                       ev_value[s], times, obs_cmt, obs_scale[s],
                                       out[s if mode == 0 else 0], mode, s, starts,
                                       tie, above, ms, mauc, mpre)


@njit(parallel=True, cache=True)
def population_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt,
                      obs_scale, out, status):
    """All subjects in parallel: ``A`` (S, M, n, n) 1/h (M occasions); events (S, E)
    sorted per row; ``times`` (T,) h; ``obs_scale`` (S, K); writes ``out`` (S, K, T),
    ``status`` (S,).

    Blocks of subjects whose event times coincide (the usual case: one regimen, no
    per-subject lag) are stepped together; other subjects one at a time. Every
    subject's arithmetic is the same either way, so results do not depend on the
    blocking or the thread count."""
    S = A.shape[0]
    nb = (S + _BLOCK - 1) // _BLOCK
    none1 = np.empty(0)
    none3 = np.empty((0, 0, 0))
    ms = (none3, none3, none3)
    for ib in prange(nb):
        _run_block(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale,
                   out, status, ib, 0, none1, 0.0, np.nan, ms, none3, none3)


@njit(parallel=True, cache=True)
def population_linear_metrics(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt,
                              obs_scale, starts, tie, above, cmax, tmax, tabove, auc,
                              pre, status):
    """Metrics-only mode: no trajectories are stored. ``obs_cmt``/``obs_scale`` list
    K concentration outputs then K cumulative-AUC states; events of kind 4 (value w)
    mark the start of window w (a dose). Per subject, analyte and window: ``cmax``,
    ``tmax`` (h after the window start, tie rule in :func:`emit_metrics`), ``tabove``
    (h above ``above`` ng/mL, NaN to skip), ``pre`` (level just before the window),
    and ``auc`` (W+1,) the cumulative AUC at each window start and at the end.
    Output times are the grid on which Cmax, Tmax and time above are read."""
    S = A.shape[0]
    nb = (S + _BLOCK - 1) // _BLOCK
    dummy = np.empty((1, 0, 0))
    ms = (cmax, tmax, tabove)
    for ib in prange(nb):
        _run_block(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale,
                   dummy, status, ib, 1, starts, tie, above, ms, auc, pre)
