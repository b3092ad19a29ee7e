"""The ODE kernels' source (see :mod:`ketasim._kernels.ode`): run once per state
count and right-hand side (imported as it stands, it builds nothing useful).

:func:`ketasim._kernels.ode.solver` runs this file with three names set, which are
compile-time constants in every kernel below: ``N`` the number of states, ``rhs`` the
right-hand side ``rhs(t, x, p, dxdt)`` (a numba function; ``None`` for the linear
``dxdt = A x`` with ``p = A.ravel()``) and ``CACHE`` whether numba caches the
kernels on disk. For the linear right-hand side the source is written, with those
names assigned at the top, to a module file of its own per state count, and numba
caches the kernels of that file; for a user's function it is run in a fresh
namespace and compiled in every process.
"""

import numpy as np
from numba import njit, prange

try:  # set by ode.py before this source runs
    N, CACHE, rhs  # noqa: B018
except NameError:  # imported as a module (by a tool, or doctest collection)
    N, CACHE, rhs = 1, False, None

OK, MAXSTEPS, UNDERFLOW, NONFINITE, NEGATIVE = 0, 1, 2, 3, 5
# (status 4 is the exact kernels' non-finite rate matrix or input)
# Every kernel is compiled with error_model="numpy": a division by zero in the
# solver's own arithmetic (e.g. a step that underflows to 0 under a huge state)
# gives inf or NaN, which the status codes report, instead of raising from inside
# a parallel kernel. A user rhs keeps numba's default (Python) error model, so its
# ZeroDivisionError is raised and named by simulate().

# Dormand–Prince 5(4) tableau
C2, C3, C4, C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
A21 = 1 / 5
A31, A32 = 3 / 40, 9 / 40
A41, A42, A43 = 44 / 45, -56 / 15, 32 / 9
A51, A52, A53, A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
A61, A62, A63, A64, A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
B1, B3, B4, B5, B6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
E1, E3, E4, E5, E6, E7 = (
    71 / 57600,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)
# dense output coefficients (Hairer's DOPRI5 contd5)
D1, D3, D4 = (
    -12715105075 / 11282082432,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
)
D5, D6, D7 = 701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423

# Rodas4 (Hairer & Wanner, Solving ODEs II, VI.4), in the formulation
# (1/(h g) I - J) K_i = f(t + a_i h, x + sum_j A_ij K_j) + sum_j C_ij/h K_j
#                        + g_i h df/dt;  x1 = x + sum M_j K_j; err = K_6.
RG = 0.25
RALPHA = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
RGAMMA = np.array([0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0])
RA = np.zeros((6, 6))
RC = np.zeros((6, 6))
_a = (
    0.1544000000000000e01,
    0.9466785280815826,
    0.2557011698983284,
    0.3314825187068521e01,
    0.2896124015972201e01,
    0.9986419139977817,
    0.1221224509226641e01,
    0.6019134481288629e01,
    0.1253708332932087e02,
    -0.6878860361058950,
    0.1221224509226641e01,
    0.6019134481288629e01,
    0.1253708332932087e02,
    -0.6878860361058950,
    1.0,
)
_c = (
    -0.5668800000000000e01,
    -0.2430093356833875e01,
    -0.2063599157091915,
    -0.1073529058151375,
    -0.9594562251023355e01,
    -0.2047028614809616e02,
    0.7496443313967647e01,
    -0.1024680431464352e02,
    -0.3399990352819905e02,
    0.1170890893206160e02,
    0.8083246795921522e01,
    -0.7981132988064893e01,
    -0.3152159432874371e02,
    0.1631930543123136e02,
    -0.6058818238834054e01,
)
_k = 0
for _i in range(1, 6):
    for _j in range(_i):
        RA[_i, _j] = _a[_k]
        RC[_i, _j] = _c[_k]
        _k += 1
RM = np.array([_a[6], _a[7], _a[8], _a[9], 1.0, 1.0])


@njit(cache=CACHE, nogil=True, error_model="numpy")
def linear_rhs(t, x, p, dxdt):
    """``dxdt = A x`` for ``N`` states with ``p = A.ravel()`` (row-major)."""
    for i in range(N):
        acc = 0.0
        for j in range(N):
            acc += p[i * N + j] * x[j]
        dxdt[i] = acc


if rhs is None:
    rhs = linear_rhs


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _write(out_s, j, x, obs_cmt, obs_scale):
    for k in range(obs_cmt.shape[0]):
        out_s[k, j] = x[obs_cmt[k]] * obs_scale[k]


@njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _f(t, x, p, r, dxdt):
    rhs(t, x, p, dxdt)
    for i in range(N):
        dxdt[i] += r[i]


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _negative(x, xn, peak, rtol, atol):
    """After an accepted step from ``x`` to ``xn``: True if a state (an amount,
    mg, which is never negative) is below -(atol + rtol × its largest magnitude
    so far in this subject's run). The error control keeps each state's local
    error within atol + rtol |x_i|, so an amount that far below zero is not
    rounding or tolerance but a failure (typically an explicit method on a stiff
    system, or an rhs that removes more than is there). ``peak`` (N,) holds the
    running largest |x_i|, updated here."""
    for i in range(N):
        a = abs(x[i])
        if a > peak[i]:
            peak[i] = a
        if xn[i] < -(atol + rtol * peak[i]):
            return True
    return False


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _errnorm(err, x0, x1, rtol, atol):
    n = N
    acc = 0.0
    for i in range(n):
        sc = atol + rtol * max(abs(x0[i]), abs(x1[i]))
        v = err[i] / sc
        acc += v * v
    return np.sqrt(acc / n)


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _inverse(T, Wi):
    """``Wi = inv(T)`` by Gauss–Jordan elimination with partial pivoting; T is
    overwritten. Returns False for a singular T.

    Rodas4 solves with the same matrix six times per step; multiplying by an
    explicit inverse turns each solve (a serial chain of dependent loads and
    stores through the triangular factors) into independent dot products, about
    5x faster for these small systems, with an error of order cond(T) eps like the
    LU solve."""
    n = N
    for i in range(n):
        for j in range(n):
            Wi[i, j] = 0.0
        Wi[i, i] = 1.0
    for k in range(n):
        p = k
        big = abs(T[k, k])
        for i in range(k + 1, n):
            if abs(T[i, k]) > big:
                big = abs(T[i, k])
                p = i
        if big == 0.0:
            return False
        if p != k:
            for j in range(n):
                T[k, j], T[p, j] = T[p, j], T[k, j]
                Wi[k, j], Wi[p, j] = Wi[p, j], Wi[k, j]
        rd = 1.0 / T[k, k]
        for j in range(n):
            T[k, j] *= rd
            Wi[k, j] *= rd
        for i in range(n):
            f = T[i, k]
            if i != k and f != 0.0:
                for j in range(n):
                    T[i, j] -= f * T[k, j]
                    Wi[i, j] -= f * Wi[k, j]
    return True


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _initial_step(t, x, p, r, f0, rtol, atol, span, order, x1, f1):
    n = N
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(x[i])
        d0 += (x[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = np.sqrt(d0 / n)
    d1 = np.sqrt(d1 / n)
    if d0 < 1e-5 or d1 < 1e-5:
        h = 1e-6
    else:
        h = 0.01 * d0 / d1
    h = min(h, span)
    # one explicit Euler probe for the second derivative (Hairer's heuristic)
    for i in range(n):
        x1[i] = x[i] + h * f0[i]
    _f(t + h, x1, p, r, f1)
    d2 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(x[i])
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = np.sqrt(d2 / n) / h
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    # starting from (nearly) empty compartments under a large input, Hairer's
    # estimate can fall below the resolution of t (1e-15 h at t = 72 h); the error
    # control shrinks a too-large first step anyway
    return min(span, max(min(100 * h, h1), 1e-8 * span, 64 * 2.2e-16 * abs(t)))


# One function of ~250 lines, the exception to the house's ~120-line rule, kept on
# measurement: split into inlined steps it ran ~6 % slower per step on W2 (1
# thread, best of 7: 0.0575 -> 0.0613 s CPU; dopri5 0.418 -> 0.444 s) and compiled
# ~15 % slower (9.1 -> 10.5 s); as plain calls 25-45 % slower.
@njit(cache=CACHE, nogil=True, error_model="numpy")
def _segment(
    p,
    r,
    x,
    t0,
    t1,
    times,
    j,
    out_s,
    obs_cmt,
    obs_scale,
    rtol,
    atol,
    stiff,
    auto,
    jac_const,
    max_steps,
    counters,
    wk,
    J,
    W,
    Wi,
    K,
):
    """Integrate x from t0 to t1 (no events inside), writing outputs with
    t0 < times[j] < t1 by dense output. counters = [steps, status, stiff]."""
    n = N
    T = times.shape[0]
    span = t1 - t0
    # work arrays come from the caller: allocated once per subject, not per segment
    f0 = wk[0]
    k2 = wk[1]
    k3 = wk[2]
    k4 = wk[3]
    k5 = wk[4]
    k6 = wk[5]
    k7 = wk[6]
    xs = wk[7]
    xn = wk[8]
    err = wk[9]
    fdt = wk[10]
    ftmp = wk[11]
    y = wk[12]
    peak = wk[13]
    _f(t0, x, p, r, f0)
    if span <= 1e-12 * max(1.0, abs(t0)):
        # events a few ulps apart (e.g. an infusion end on a rounded grid time):
        # one Euler step is exact to rounding over such a span
        for i in range(n):
            x[i] += span * f0[i]
        return j
    order = 3 if stiff else 4
    h = _initial_step(t0, x, p, r, f0, rtol, atol, span, order, xs, ftmp)
    t = t0
    nstiff = 0
    nonstiff = 0
    have_J = False
    h_W = -1.0  # the step length Wi = inv(I/(h g) - J) was formed for (-1: none)
    sqeps = 1.4901161193847656e-08
    while t < t1:
        if counters[0] >= max_steps:
            counters[1] = MAXSTEPS
            return j
        if stiff and not jac_const and j < T:
            # a stiff step with a changing Jacobian can be long and its Hermite
            # interpolant is not error-controlled (seen: 0.47 ng/mL where the
            # solution is 1e-6, and negative values, on a stiff time effect), so
            # the step ends at the next output time and that output is a step end
            d = times[j] - t
            if d < h and d > 64 * 2.220446049250313e-16 * max(1.0, abs(t)):
                h = d
        last = False
        if t + h >= t1 or t + 1.01 * h >= t1:
            h = t1 - t
            last = True
        if h <= 16 * 2.220446049250313e-16 * max(1.0, abs(t)):
            counters[1] = UNDERFLOW
            return j
        if not stiff:
            # ---- Dormand–Prince 5(4) ----
            for i in range(n):
                xs[i] = x[i] + h * A21 * f0[i]
            _f(t + C2 * h, xs, p, r, k2)
            for i in range(n):
                xs[i] = x[i] + h * (A31 * f0[i] + A32 * k2[i])
            _f(t + C3 * h, xs, p, r, k3)
            for i in range(n):
                xs[i] = x[i] + h * (A41 * f0[i] + A42 * k2[i] + A43 * k3[i])
            _f(t + C4 * h, xs, p, r, k4)
            for i in range(n):
                xs[i] = x[i] + h * (
                    A51 * f0[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]
                )
            _f(t + C5 * h, xs, p, r, k5)
            for i in range(n):
                xs[i] = x[i] + h * (
                    A61 * f0[i] + A62 * k2[i] + A63 * k3[i] + A64 * k4[i] + A65 * k5[i]
                )
            _f(t + h, xs, p, r, k6)
            for i in range(n):
                xn[i] = x[i] + h * (
                    B1 * f0[i] + B3 * k3[i] + B4 * k4[i] + B5 * k5[i] + B6 * k6[i]
                )
            _f(t + h, xn, p, r, k7)
            for i in range(n):
                err[i] = h * (
                    E1 * f0[i]
                    + E3 * k3[i]
                    + E4 * k4[i]
                    + E5 * k5[i]
                    + E6 * k6[i]
                    + E7 * k7[i]
                )
            en = _errnorm(err, x, xn, rtol, atol)
            if not np.isfinite(en):
                if h < 1e-10:
                    counters[1] = NONFINITE
                    return j
                h *= 0.1
                continue
            if en <= 1.0:
                counters[0] += 1
                if _negative(x, xn, peak, rtol, atol):
                    counters[1] = NEGATIVE
                    return j
                # dense output for outputs inside (t, t+h)
                while j < T and times[j] < t + h and times[j] < t1:
                    if times[j] > t:
                        th = (times[j] - t) / h
                        th1 = 1.0 - th
                        for k in range(obs_cmt.shape[0]):  # observed states only
                            i = obs_cmt[k]
                            dx = xn[i] - x[i]
                            bspl = h * f0[i] - dx
                            rc5 = h * (
                                D1 * f0[i]
                                + D3 * k3[i]
                                + D4 * k4[i]
                                + D5 * k5[i]
                                + D6 * k6[i]
                                + D7 * k7[i]
                            )
                            out_s[k, j] = (
                                x[i]
                                + th
                                * (
                                    dx
                                    + th1
                                    * (bspl + th * (dx - h * k7[i] - bspl + th1 * rc5))
                                )
                            ) * obs_scale[k]
                    j += 1
                if auto:
                    # Hairer's stiffness test: h*|lambda| ~ h |k7-k6| / |xn-xs|
                    num = 0.0
                    den = 0.0
                    for i in range(n):
                        num += (k7[i] - k6[i]) ** 2
                        s6 = x[i] + h * (
                            A61 * f0[i]
                            + A62 * k2[i]
                            + A63 * k3[i]
                            + A64 * k4[i]
                            + A65 * k5[i]
                        )
                        den += (xn[i] - s6) ** 2
                    if den > 0.0 and h * np.sqrt(num / den) > 3.25:
                        nonstiff = 0
                        nstiff += 1
                        if nstiff >= 15:
                            stiff = True
                            counters[2] = 1
                    else:
                        nonstiff += 1
                        if nonstiff >= 6:
                            nstiff = 0
                t = t1 if last else t + h
                for i in range(n):
                    x[i] = xn[i]
                    f0[i] = k7[i]
                fac = 0.9 * en ** (-0.2) if en > 0 else 5.0
                h *= min(5.0, max(0.2, fac))
            else:
                h *= max(0.2, 0.9 * en ** (-0.2))
        else:
            # ---- Rodas4 ----
            if not have_J:
                # differences of rhs alone: the dose input r is constant in x and t,
                # and including it (r can be 1e12 x the state's own rates just
                # after a dose) would cancel away every digit of the Jacobian
                rhs(t, x, p, fdt)
                for c in range(n):
                    xc = x[c]
                    dl = sqeps * max(abs(xc), 1e-3)
                    x[c] = xc + dl
                    rhs(t, x, p, ftmp)
                    x[c] = xc
                    for i in range(n):
                        J[i, c] = (ftmp[i] - fdt[i]) / dl
                if jac_const:
                    fdt[:] = 0.0
                else:
                    dtl = sqeps * max(abs(t), 1.0)
                    rhs(t + dtl, x, p, ftmp)
                    for i in range(n):
                        fdt[i] = (ftmp[i] - fdt[i]) / dtl
                have_J = True
                h_W = -1.0
            inv_h = 1.0 / h
            if h != h_W:
                diag = inv_h * (1.0 / RG)
                for i in range(n):
                    for c in range(n):
                        W[i, c] = -J[i, c]
                    W[i, i] += diag
                if not _inverse(W, Wi):
                    h_W = -1.0  # Wi is partly overwritten
                    h *= 0.5
                    continue
                h_W = h
            for st in range(6):
                if st == 0:
                    for i in range(n):
                        ftmp[i] = f0[i]
                else:
                    for i in range(n):
                        acc = x[i]
                        for q in range(st):
                            acc += RA[st, q] * K[q, i]
                        xs[i] = acc
                    _f(t + RALPHA[st] * h, xs, p, r, ftmp)
                gh = RGAMMA[st] * h
                for i in range(n):
                    acc = 0.0
                    for q in range(st):
                        acc += RC[st, q] * K[q, i]
                    y[i] = ftmp[i] + gh * fdt[i] + acc * inv_h
                for i in range(n):
                    acc = 0.0
                    for c in range(n):
                        acc += Wi[i, c] * y[c]
                    K[st, i] = acc
            for i in range(n):
                acc = x[i]
                for q in range(6):
                    acc += RM[q] * K[q, i]
                xn[i] = acc
                err[i] = K[5, i]
            en = _errnorm(err, x, xn, rtol, atol)
            if not np.isfinite(en):
                if h < 1e-10:
                    counters[1] = NONFINITE
                    return j
                h *= 0.1
                continue
            if en <= 1.0:
                counters[0] += 1
                if _negative(x, xn, peak, rtol, atol):
                    counters[1] = NEGATIVE
                    return j
                # f at the new point: Hermite dense output and the next f0
                _f(t + h, xn, p, r, k7)
                while j < T and times[j] < t + h and times[j] < t1:
                    if times[j] >= t:  # == t: an output a clipped step ended on
                        th = (times[j] - t) / h
                        for k in range(obs_cmt.shape[0]):  # observed states only
                            i = obs_cmt[k]
                            d = xn[i] - x[i]
                            v = (
                                (1.0 - th) * x[i]
                                + th * xn[i]
                                + th
                                * (th - 1.0)
                                * (
                                    (1.0 - 2.0 * th) * d
                                    + (th - 1.0) * h * f0[i]
                                    + th * h * k7[i]
                                )
                            )
                            if v < -(atol + rtol * peak[i]):  # as _negative
                                counters[1] = NEGATIVE
                                return j
                            out_s[k, j] = v * obs_scale[k]
                    j += 1
                t = t1 if last else t + h
                for i in range(n):
                    x[i] = xn[i]
                    f0[i] = k7[i]
                if not jac_const:
                    have_J = False  # Rosenbrock order needs the current Jacobian
                # en ** (-1/4) as two square roots: pow costs several times more
                fac = 0.9 / np.sqrt(np.sqrt(en)) if en > 0 else 5.0
                # keep h (and Wi) when it would grow by less than 20 % (Hairer's
                # RADAU5 rule): forming Wi costs as much as a whole step. Only
                # with a constant Jacobian: otherwise Wi is formed anew anyway
                if not jac_const or fac < 1.0 or fac > 1.2:
                    h *= min(5.0, max(0.2, fac))
            else:
                h *= max(0.2, 0.9 / np.sqrt(np.sqrt(en)))
    for i in range(n):
        if not np.isfinite(x[i]):
            counters[1] = NONFINITE
    if stiff:
        counters[2] = 1
    return j


@njit(cache=CACHE, nogil=True, error_model="numpy")
def solve_subject(
    p,
    x0,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    times,
    obs_cmt,
    obs_scale,
    rtol,
    atol,
    method,
    jac_const,
    max_steps,
    out_s,
):
    """One subject; returns (status, accepted steps)."""
    n = N
    T = times.shape[0]
    nev = ev_time.shape[0]
    x = x0.copy()
    r = np.zeros(n)
    t = 0.0
    e = 0
    j = 0
    counters = np.zeros(3, dtype=np.int64)
    counters[2] = 1 if method == 2 else 0
    wk = np.empty((14, n))
    wk[13, :] = 0.0  # running largest |x_i| (see _negative)
    J = np.empty((n, n))
    W = np.empty((n, n))
    K = np.empty((6, n))
    Wi = np.empty((n, n))
    while True:
        while e < nev and ev_time[e] <= t:
            k = ev_kind[e]
            if k == 0:
                x[ev_cmt[e]] += ev_value[e]
            elif k == 1:
                r[ev_cmt[e]] += ev_value[e]
            e += 1
        while j < T and times[j] <= t:
            _write(out_s, j, x, obs_cmt, obs_scale)
            j += 1
        if j >= T:
            break
        t1 = times[T - 1]
        if e < nev and ev_time[e] < t1:
            t1 = ev_time[e]
        j = _segment(
            p,
            r,
            x,
            t,
            t1,
            times,
            j,
            out_s,
            obs_cmt,
            obs_scale,
            rtol,
            atol,
            counters[2] == 1,
            method == 0,
            jac_const,
            max_steps,
            counters,
            wk,
            J,
            W,
            Wi,
            K,
        )
        if counters[1] != OK:
            for jj in range(j, T):
                for k in range(obs_cmt.shape[0]):
                    out_s[k, jj] = np.nan
            return counters[1], counters[0]
        t = t1
    return OK, counters[0]


@njit(parallel=True, cache=CACHE, error_model="numpy")
def solve_population(
    p,
    x0,
    ev_time,
    ev_cmt,
    ev_kind,
    ev_value,
    times,
    obs_cmt,
    obs_scale,
    rtol,
    atol,
    method,
    jac_const,
    max_steps,
    out,
    status,
    nsteps,
):
    """All subjects in parallel (prange). Per subject s: ``p[s]`` the rhs
    parameters, ``x0[s]`` (N,) initial state, events ``ev_*[s]`` sorted by time
    (kind 0 bolus into ``ev_cmt``, 1 rate change), ``obs_scale[s]`` (K,);
    shared: ``times`` (T,) h, ``obs_cmt`` (K,) observed states, tolerances,
    ``method`` (0 auto, 1 DOPRI5, 2 Rodas4), ``jac_const``, ``max_steps``.
    Writes ``out[s]`` (K, T), ``status[s]`` and ``nsteps[s]`` (accepted
    steps)."""
    S = p.shape[0]
    for s in prange(S):
        st, ns = solve_subject(
            p[s],
            x0[s],
            ev_time[s],
            ev_cmt[s],
            ev_kind[s],
            ev_value[s],
            times,
            obs_cmt,
            obs_scale[s],
            rtol,
            atol,
            method,
            jac_const,
            max_steps,
            out[s],
        )
        status[s] = st
        nsteps[s] = ns
