"""Maximum a posteriori (MAP) individual estimation on the exact path (numba).

One subject's random effects ``theta`` (inter-individual etas, then the
inter-occasion kappas of each occasion) map to its individual parameters, its rate
matrices (one per occasion), its dose events and its predicted concentrations at the
observation times, all inside the kernel: predictions are exact (a matrix
exponential per step, :func:`ketasim._kernels.expm.expm_into`, with the
zero-order input carried as an extra state), so no ODE tolerance enters the
objective.

The objective, per subject, is minus twice the log of the joint density of the
observations and the random effects (constants included)::

    OFV(theta) = sum_obs [log(2 pi V_i) + (y_i - f_i)^2 / V_i]
               - 2 sum_blq log Phi(z_i)
               + theta' Omega^-1 theta + log det(2 pi Omega)

with ``V_i = (prop f_i)^2 + add^2`` (or, for an exponential error, the same on
log concentrations with ``V_i = sigma^2``) and, for an observation below its limit
of quantification ``L`` (Beal's M3), ``z_i = (L - f_i) / sqrt(V_i)``.

It is minimised by Levenberg-Marquardt on ``theta``: the gradient is exact up to
the forward-difference sensitivities ``d f_i / d theta`` of the exact predictions
(step :data:`FD_STEP`), the curvature is the Gauss-Newton (expected-information)
approximation ``H = sum_i w_i J_i J_i' + 2 Omega^-1`` with ``w_i = 2 / V_i +
(V_i' / V_i)^2`` for a measured value and ``2 lambda (lambda + z) (dz/df)^2``
(``lambda = phi(z) / Phi(z)``) for a censored one. ``(H / 2)^-1`` is the
approximate posterior covariance of ``theta``.

Kernels never raise: they return a status per subject (:data:`STATUS`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .expm import EXPM_WORK, expm_into

OK = 0
NOT_CONVERGED = 1
ZERO_PREDICTION = 2
NONFINITE = 3

FD_STEP = 3e-7  # forward-difference step on theta (SD units ~0.1-1): sqrt of the
# ~1e-13 relative rounding of an exact prediction
MAX_ITER = 200
STEP_TOL = 1e-7  # converged when an accepted step moves every theta by less
GRAD_TOL = 1e-5  # ... or the gradient of the OFV is this small everywhere
LOOSE_GRAD_TOL = 1e-3  # ... or no step lowers the OFV and its gradient is this
# small (the forward-difference gradient is good to about 1e-5 of its terms)

# route pathway table columns
PW_TARGET, PW_FKIND, PW_FVAL, PW_LAG, PW_DUR, PW_LATER = range(6)
F_NONE, F_PARAM, F_CONST, F_REST = 0, 1, 2, 3
# event kinds
EV_BOLUS, EV_RATE, EV_OCC = 0, 1, 3

_LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True, nogil=True)
def _params(base, dist, iiv_idx, iov_idx, theta, Q, R, m, p):
    """Individual parameters of occasion ``m`` into ``p``: each typical value
    (covariates applied) with its random effects, log- or logit-normal."""
    for j in range(base.size):
        e = 0.0
        if iiv_idx[j] >= 0:
            e += theta[iiv_idx[j]]
        if iov_idx[j] >= 0:
            e += theta[Q + m * R + iov_idx[j]]
        v = base[j]
        if dist[j] == 1:
            v = v * math.exp(e)
        elif dist[j] == 2:
            lg = math.log(v / (1.0 - v)) + e
            v = 1.0 / (1.0 + math.exp(-lg))
        p[j] = v


@njit(cache=True, nogil=True)
def _rate_matrix(p, flows, fconst, A):
    """``A`` (n, n) 1/h from the flow table (as Model.rate_matrices forms it):
    columns source, target (-1: elimination), kind (0 k, 1 cl, 2 mtt), rate,
    volume, fraction parameter (-1: the constant ``fconst[f, 0]``), count;
    ``fconst[f, 1]`` is the molecular-weight ratio."""
    n = A.shape[0]
    for i in range(n):
        for j in range(n):
            A[i, j] = 0.0
    for f in range(flows.shape[0]):
        src = flows[f, 0]
        k = p[flows[f, 3]]
        if flows[f, 2] == 1:
            k = k / p[flows[f, 4]]
        elif flows[f, 2] == 2:
            k = flows[f, 6] / k
        A[src, src] -= k
        tgt = flows[f, 1]
        if tgt >= 0:
            frac = p[flows[f, 5]] if flows[f, 5] >= 0 else fconst[f, 0]
            A[tgt, src] += k * frac * fconst[f, 1]


@njit(cache=True, nogil=True)
def _events(
    P, dose_t, dose_mg, dose_route, dose_dur, dose_dev, dose_occ, nd, pw, pwc, ev
):
    """The subject's events, sorted by time (stable), into ``ev`` (E, 4): time,
    kind, compartment, value (mg, mg/h or occasion). Returns the count.

    As ketasim's lowering: per dose, an occasion switch at a session's first
    dose, then per pathway of its route a bolus at the lagged start, or a rate step
    up at the start and down at the end of a zero-order input; a pathway's fraction
    is a parameter, a constant, 1, or the rest of the others (later devices of a
    session scaled by the pathway's factor)."""
    ne = 0
    npw = pw.shape[1]
    fr = np.empty(npw)
    for i in range(nd):
        m = dose_occ[i]
        p = P[m]
        if i == 0 or dose_occ[i] != dose_occ[i - 1]:
            ev[ne, 0] = dose_t[i]
            ev[ne, 1] = EV_OCC
            ev[ne, 2] = 0.0
            ev[ne, 3] = m
            ne += 1
        r = dose_route[i]
        for q in range(npw):
            fk = pw[r, q, PW_FKIND]
            if pw[r, q, PW_TARGET] < 0:
                fr[q] = 0.0
                continue
            if fk == F_PARAM:
                f = p[pw[r, q, PW_FVAL]]
            elif fk == F_CONST:
                f = pwc[r, q]
            else:
                f = 1.0
            if pw[r, q, PW_LATER] >= 0 and dose_dev[i] >= 2:
                f = f * p[pw[r, q, PW_LATER]]
            fr[q] = f
        for q in range(npw):
            if pw[r, q, PW_TARGET] >= 0 and pw[r, q, PW_FKIND] == F_REST:
                s = 0.0
                for q2 in range(npw):
                    if q2 != q and pw[r, q2, PW_TARGET] >= 0:
                        s += fr[q2]
                fr[q] = 1.0 - s
        for q in range(npw):
            c = pw[r, q, PW_TARGET]
            if c < 0:
                continue
            amount = dose_mg[i] * fr[q]
            start = dose_t[i]
            if pw[r, q, PW_LAG] >= 0:
                start += p[pw[r, q, PW_LAG]]
            if not math.isnan(dose_dur[i]):
                dur = dose_dur[i]
            elif pw[r, q, PW_DUR] >= 0:
                dur = p[pw[r, q, PW_DUR]]
            else:
                dur = 0.0
            if dur <= 0.0:
                ev[ne, 0] = start
                ev[ne, 1] = EV_BOLUS
                ev[ne, 2] = c
                ev[ne, 3] = amount
                ne += 1
            else:
                ev[ne, 0] = start
                ev[ne, 1] = EV_RATE
                ev[ne, 2] = c
                ev[ne, 3] = amount / dur
                ev[ne + 1, 0] = start + dur
                ev[ne + 1, 1] = EV_RATE
                ev[ne + 1, 2] = c
                ev[ne + 1, 3] = -amount / dur
                ne += 2
    # stable insertion sort by time (events come nearly sorted: lags reorder few)
    for i in range(1, ne):
        j = i
        while j > 0 and ev[j - 1, 0] > ev[j, 0]:
            for c in range(4):
                tmp = ev[j - 1, c]
                ev[j - 1, c] = ev[j, c]
                ev[j, c] = tmp
            j -= 1
    return ne


@njit(cache=True, nogil=True)
def _step(A, x, r, h, M, work):
    """``x`` after ``h`` hours of ``dx/dt = A x + r``: one exponential of the
    (n+1) matrix [[A, r], [0, 0]] h (the input as a constant extra state)."""
    n = x.size
    if h <= 0.0:
        return True
    for i in range(n + 1):
        for j in range(n + 1):
            M[i, j] = 0.0
    for i in range(n):
        for j in range(n):
            M[i, j] = A[i, j] * h
        M[i, n] = r[i] * h
    ok = expm_into(M, M, work)
    y = np.empty(n)
    for i in range(n):
        acc = M[i, n]
        for j in range(n):
            acc += M[i, j] * x[j]
        y[i] = acc
    for i in range(n):
        x[i] = y[i]
    return ok


@njit(cache=True, nogil=True)
def predict(
    theta,
    base,
    dist,
    iiv_idx,
    iov_idx,
    Q,
    R,
    nocc,
    flows,
    fconst,
    ncmt,
    obs_cmt,
    obs_vol,
    dose_t,
    dose_mg,
    dose_route,
    dose_dur,
    dose_dev,
    dose_occ,
    nd,
    pw,
    pwc,
    ot,
    ok_an,
    opre,
    no,
    out,
):
    """Concentrations (ng/mL) of one subject at its ``no`` observations (sorted by
    time; ``opre``: taken before the events at their time) into ``out``. Returns
    False if a rate matrix or exponential is not finite."""
    NP = base.size
    P = np.empty((max(nocc, 1), NP))
    for m in range(max(nocc, 1)):
        _params(base, dist, iiv_idx, iov_idx, theta, Q, R, m, P[m])
    ev = np.empty((nd * (2 * pw.shape[1] + 1) + 1, 4))
    ne = _events(
        P, dose_t, dose_mg, dose_route, dose_dur, dose_dev, dose_occ, nd, pw, pwc, ev
    )
    A = np.empty((ncmt, ncmt))
    _rate_matrix(P[0], flows, fconst, A)
    M = np.empty((ncmt + 1, ncmt + 1))
    work = np.empty((EXPM_WORK, ncmt + 1, ncmt + 1))
    x = np.zeros(ncmt)
    r = np.zeros(ncmt)
    t = 0.0
    m = 0
    e = 0
    ok = True
    for o in range(no):
        # events strictly before the observation, or at its time unless pre-dose
        while e < ne and (ev[e, 0] < ot[o] or (ev[e, 0] == ot[o] and not opre[o])):
            ok &= _step(A, x, r, ev[e, 0] - t, M, work)
            t = ev[e, 0]
            kind = int(ev[e, 1])
            if kind == EV_BOLUS:
                x[int(ev[e, 2])] += ev[e, 3]
            elif kind == EV_RATE:
                r[int(ev[e, 2])] += ev[e, 3]
            else:
                m = int(ev[e, 3])
                _rate_matrix(P[m], flows, fconst, A)
            e += 1
        ok &= _step(A, x, r, ot[o] - t, M, work)
        t = ot[o]
        k = ok_an[o]
        out[o] = x[obs_cmt[k]] * 1000.0 / P[m, obs_vol[k]]  # mg/L -> ng/mL
    return ok


@njit(cache=True, nogil=True)
def _log_ndtr(z):
    """log Phi(z), accurate in the far lower tail (asymptotic series)."""
    if z > -20.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    z2 = z * z
    return (
        -0.5 * z2
        - math.log(-z)
        - 0.5 * _LOG_2PI
        + math.log(1.0 - 1.0 / z2 + 3.0 / (z2 * z2))
    )


@njit(cache=True, nogil=True)
def _terms(f, y, cens, kk, res, dterm, wterm):
    """Per observation: its OFV term, into ``dterm`` its derivative with respect
    to the prediction ``f`` and into ``wterm`` its Gauss-Newton weight. ``res``
    (K, 3): proportional, additive (ng/mL), exponential SD per analyte. Returns
    the sum of terms (inf where a prediction the error model needs > 0 is not)."""
    total = 0.0
    for o in range(f.size):
        k = kk[o]
        prop, add, ex = res[k, 0], res[k, 1], res[k, 2]
        fo = f[o]
        if ex > 0.0:  # exponential: normal on log concentrations
            if not fo > 0.0:
                return math.inf
            V = ex * ex
            g = math.log(fo)
            dg = 1.0 / fo
            Vp = 0.0
            yo = math.log(y[o])
        else:
            V = prop * prop * fo * fo + add * add
            if not V > 0.0:
                return math.inf
            g = fo
            dg = 1.0
            Vp = 2.0 * prop * prop * fo
            yo = y[o]
        if cens[o]:
            s = math.sqrt(V)
            z = (yo - g) / s
            dz = (-1.0 / s - (yo - g) * (Vp / (2.0 * s)) / V) * dg
            lp = _log_ndtr(z)
            lam = math.exp(-0.5 * z * z - 0.5 * _LOG_2PI - lp)
            total += -2.0 * lp
            dterm[o] = -2.0 * lam * dz
            wterm[o] = 2.0 * lam * (lam + z) * dz * dz
        else:
            rr = yo - g
            total += _LOG_2PI + math.log(V) + rr * rr / V
            dterm[o] = (Vp / V - 2.0 * rr / V - rr * rr * Vp / (V * V)) * dg
            wterm[o] = (2.0 / V + (Vp / V) ** 2) * dg * dg
    return total


@njit(cache=True, nogil=True)
def _prior(theta, Oinv, nt):
    s = 0.0
    for a in range(nt):
        for b in range(nt):
            s += theta[a] * Oinv[a, b] * theta[b]
    return s


@njit(cache=True, nogil=True)
def _solve(H, g, mu, nt, d):
    """``d = -(H + mu diag(H)) ^-1 g`` by Cholesky; False if not positive
    definite."""
    L = np.zeros((nt, nt))
    for i in range(nt):
        for j in range(i + 1):
            s = H[i, j] + (mu * H[i, i] if i == j else 0.0)
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    y = np.empty(nt)
    for i in range(nt):
        s = -g[i]
        for k in range(i):
            s -= L[i, k] * y[k]
        y[i] = s / L[i, i]
    for i in range(nt - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, nt):
            s -= L[k, i] * d[k]
        d[i] = s / L[i, i]
    return True


@njit(cache=True, nogil=True, parallel=True)
def map_estimate(
    base,
    dist,
    iiv_idx,
    iov_idx,
    Q,
    R,
    nocc,
    col_on,
    flows,
    fconst,
    ncmt,
    obs_cmt,
    obs_vol,
    dose_t,
    dose_mg,
    dose_route,
    dose_dur,
    dose_dev,
    dose_occ,
    nd,
    pw,
    pwc,
    ot,
    ok_an,
    opre,
    dv,
    cens,
    no,
    res,
    Oinv,
    theta,
    H_out,
    ofv,
    ipred,
    pred,
    status,
    iters,
):
    """MAP estimates of every subject (prange): ``theta`` (S, NT) in and out
    (start, then mode; only the columns ``col_on`` (S, NT) moves: the others do
    not touch the subject's data), ``H_out`` (S, NT, NT) the Gauss-Newton Hessian of the
    OFV at the mode, ``ofv`` (S,) its data and prior terms (without log det
    2 pi Omega, added by the caller), ``ipred``/``pred`` (S, O) ng/mL at the mode
    and at theta = 0, ``status`` (S,), ``iters`` (S,)."""
    S = base.shape[0]
    NT = theta.shape[1]
    for s in prange(S):
        n_o = no[s]
        args_s = (
            base[s],
            dist,
            iiv_idx,
            iov_idx,
            Q,
            R,
            nocc[s],
            flows,
            fconst,
            ncmt,
            obs_cmt,
            obs_vol,
            dose_t[s],
            dose_mg[s],
            dose_route[s],
            dose_dur[s],
            dose_dev[s],
            dose_occ[s],
            nd[s],
            pw,
            pwc,
            ot[s],
            ok_an[s],
            opre[s],
            n_o,
        )
        f = np.zeros(n_o)
        th = theta[s].copy()
        zero = np.zeros(NT)
        good = predict(zero, *args_s, pred[s])
        good &= predict(th, *args_s, f)
        y = dv[s, :n_o]
        cs = cens[s, :n_o]
        kk = ok_an[s, :n_o]
        dterm = np.zeros(n_o)
        wterm = np.zeros(n_o)
        cur = _terms(f, y, cs, kk, res, dterm, wterm) + _prior(th, Oinv, NT)
        if not good:
            status[s] = NONFINITE
            ofv[s] = math.nan
            continue
        if not math.isfinite(cur):
            status[s] = ZERO_PREDICTION
            ofv[s] = cur
            for o in range(n_o):
                ipred[s, o] = f[o]
            continue
        J = np.zeros((n_o, NT))
        fh = np.zeros(n_o)
        g = np.zeros(NT)
        H = np.zeros((NT, NT))
        d = np.zeros(NT)
        trial = np.zeros(NT)
        ftrial = np.zeros(n_o)
        dt2 = np.zeros(n_o)
        wt2 = np.zeros(n_o)
        mu = 1e-3
        st = NOT_CONVERGED
        it = 0
        need_jac = True
        done = False
        while it < MAX_ITER:
            it += 1
            if need_jac:
                for c in range(NT):
                    if not col_on[s, c]:
                        continue
                    old = th[c]
                    th[c] = old + FD_STEP
                    predict(th, *args_s, fh)
                    th[c] = old
                    for o in range(n_o):
                        J[o, c] = (fh[o] - f[o]) / FD_STEP
                for a in range(NT):
                    ga = 0.0
                    for b in range(NT):
                        ga += 2.0 * Oinv[a, b] * th[b]
                        H[a, b] = 2.0 * Oinv[a, b]
                    g[a] = ga
                for o in range(n_o):
                    for a in range(NT):
                        if not col_on[s, a]:
                            continue
                        g[a] += dterm[o] * J[o, a]
                        wa = wterm[o] * J[o, a]
                        for b in range(NT):
                            H[a, b] += wa * J[o, b]
                gmax = 0.0
                for a in range(NT):
                    gmax = max(gmax, abs(g[a]))
                if done or gmax < GRAD_TOL:  # H and g are those of the mode
                    st = OK
                    break
                need_jac = False
            if not _solve(H, g, mu, NT, d):
                mu *= 10.0
                continue
            for a in range(NT):
                trial[a] = th[a] + d[a]
            predict(trial, *args_s, ftrial)
            new = _terms(ftrial, y, cs, kk, res, dt2, wt2) + _prior(trial, Oinv, NT)
            if new <= cur:  # accepted (ties too: the step is within rounding)
                dmax = 0.0
                for a in range(NT):
                    dmax = max(dmax, abs(d[a]))
                    th[a] = trial[a]
                for o in range(n_o):
                    f[o] = ftrial[o]
                    dterm[o] = dt2[o]
                    wterm[o] = wt2[o]
                cur = new
                mu = max(mu / 3.0, 1e-9)
                need_jac = True
                done = dmax < STEP_TOL
            else:
                mu *= 4.0
                if mu > 1e12:  # no descent along even a tiny step: at the mode
                    # to within the forward-difference gradient, or stuck
                    st = OK if gmax < LOOSE_GRAD_TOL else NOT_CONVERGED
                    break
        for a in range(NT):
            theta[s, a] = th[a]
            for b in range(NT):
                H_out[s, a, b] = H[a, b]
        for o in range(n_o):
            ipred[s, o] = f[o]
        ofv[s] = cur
        status[s] = st
        iters[s] = it


@njit(cache=True, nogil=True, parallel=True)
def predict_many(
    theta,
    sub,
    base,
    dist,
    iiv_idx,
    iov_idx,
    Q,
    R,
    nocc,
    flows,
    fconst,
    ncmt,
    obs_cmt,
    obs_vol,
    dose_t,
    dose_mg,
    dose_route,
    dose_dur,
    dose_dev,
    dose_occ,
    nd,
    pw,
    pwc,
    ot,
    ok_an,
    opre,
    no,
    out,
    status,
):
    """Predictions for many parameter draws (prange over rows): row ``i`` is
    subject ``sub[i]`` with random effects ``theta[i]``; ``out`` (N, O) ng/mL."""
    for i in prange(theta.shape[0]):
        s = sub[i]
        ok = predict(
            theta[i],
            base[s],
            dist,
            iiv_idx,
            iov_idx,
            Q,
            R,
            nocc[s],
            flows,
            fconst,
            ncmt,
            obs_cmt,
            obs_vol,
            dose_t[s],
            dose_mg[s],
            dose_route[s],
            dose_dur[s],
            dose_dev[s],
            dose_occ[s],
            nd[s],
            pw,
            pwc,
            ot[s],
            ok_an[s],
            opre[s],
            no[s],
            out[i],
        )
        status[i] = OK if ok else NONFINITE
