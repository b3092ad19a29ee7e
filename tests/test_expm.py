"""Numba matrix exponential and propagators against independent oracles.

The oracle is ``scipy.linalg.expm`` (Al-Mohy & Higham 2009, a different code base and
a refined choice of degree and scaling), plus closed forms where they exist. Errors are
relative, in the Frobenius norm.

Tolerances. Scaling and squaring amplifies the rounding error of the Padé step by up to
``2**s`` (s squarings: a relative error ``d`` in an eigenvalue near 1 of ``r(A/2**s)``
becomes ``2**s * d`` after the squarings), and scipy's result carries the same kind of
error. So the bound is ``max(1e-12, 8 * 2**s * u)``: 1e-12 up to ``||A||_1 ~ 5e3``
(s <= 10), growing with ``s`` only for the stiff rate matrices. Over 700 PK cases
(n = 2..8, rates 1e-4..1e4 /h, h = 1e-3..1e3 h) the measured error was at most
``3.5 * 2**s * u`` (2.3e-9 at ||A h||_1 = 3e7, s = 23). Where scipy itself is the less
accurate side (random matrices with norm >= 20) the tolerance is looser, and the
``mpmath`` tests check the numba result against 60-digit arithmetic instead.
"""

import math
from fractions import Fraction

import numba
import numpy as np
import pytest
import scipy.linalg

from ketasim._kernels import expm as km
from ketasim._kernels.expm import (
    EXPM_WORK,
    PROPAGATORS_WORK,
    expm,
    expm_into,
    propagators,
    propagators_into,
)

from .conftest import design_rate_matrix

U = 2.0**-53  # unit roundoff
THETA = (km.THETA_3, km.THETA_5, km.THETA_7, km.THETA_9, km.THETA_13)
# 1-norms on both sides of every Padé threshold (degrees 3, 5, 7, 9, 13 unscaled and
# 13 with one squaring), then heavier scaling (s = 2, 5, 8).
NORMS = (1e-3, *[t * f for t in THETA for f in (0.99, 1.01)], 20.0, 1e2, 1e3)
SIZES = (2, 3, 5, 8, 16, 40)


def rel_err(X, R):
    return np.linalg.norm(X - R) / np.linalg.norm(R)


def squarings(A):
    """Number of squarings Higham (2005) takes for A."""
    nrm = np.abs(A).sum(axis=0).max()
    return max(0, math.ceil(math.log2(nrm / km.THETA_13))) if nrm > 0 else 0


def tol(A):
    return max(1e-12, 8.0 * 2.0 ** squarings(A) * U)


def augmented(A, h):
    n = A.shape[0]
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n] = A * h
    M[:n, n:] = h * np.eye(n)
    return M


def call_propagators(A, h):
    n = A.shape[0]
    E = np.empty((n, n))
    G = np.empty((n, n))
    propagators(A, h, E, G)
    return E, G


def random_matrix(kind, n, norm, seed):
    """Random n x n matrix with 1-norm ``norm`` exactly.

    gauss: standard normal entries; shifted: the same moved so that its spectral
    abscissa is 0 (so exp(A) neither overflows nor underflows at large norms);
    skew: skew-symmetric (exp(A) orthogonal).
    """
    rng = np.random.default_rng([n, seed, round(norm * 1e6)])
    B = rng.standard_normal((n, n))
    if kind == "shifted":
        B -= np.linalg.eigvals(B).real.max() * np.eye(n)
    elif kind == "skew":
        B -= B.T
    return B * (norm / np.abs(B).sum(axis=0).max())


def pk_matrix(n, seed, lo=-4.0, hi=4.0):
    """Random PK rate matrix: A[i, j] >= 0 (i != j) is the rate from j to i, A[j, j]
    minus the total outflow and elimination of j, so columns sum to -k_el <= 0.

    Rates are log-uniform in [10**lo, 10**hi] per hour. The last compartment is a
    slow deep compartment (outflow 1e-4..1e-3 /h, no elimination): exp(A h) >=
    exp(diag(A) h) entrywise for such (Metzler) matrices, so exp(A h) keeps an O(1)
    entry even at h = 1e3 h and relative errors stay meaningful.
    """
    rng = np.random.default_rng([n, seed])
    K = np.where(rng.random((n, n)) < 0.6, 10 ** rng.uniform(lo, hi, (n, n)), 0.0)
    np.fill_diagonal(K, 0.0)
    K[:, -1] = 0.0
    K[rng.integers(0, n - 1), -1] = 10 ** rng.uniform(-4, -3)
    kel = np.where(rng.random(n) < 0.5, 10 ** rng.uniform(lo, hi, n), 0.0)
    kel[-1] = 0.0
    return K - np.diag(K.sum(axis=0) + kel)


def stiff_chain():
    """Depot -> central -> metabolite -> eliminated, rates 1e4, 1, 1e-4 /h: lower
    triangular, so scipy takes its separate triangular squaring branch."""
    return np.array(
        [
            [-1e4, 0.0, 0.0],
            [1e4, -1.0, 0.0],
            [0.0, 1.0, -1e-4],
        ]
    )


def stiff_mammillary():
    """Central with a fast-equilibrating (1e4 /h) and a deep (1e-4 /h) peripheral."""
    k10, k12, k21, k13, k31 = 0.5, 1e4, 1e4, 1e-3, 1e-4
    return np.array(
        [
            [-(k10 + k12 + k13), k21, k31],
            [k12, -k21, 0.0],
            [k13, 0.0, -k31],
        ]
    )


NAMED_PK = {
    "ketamine": design_rate_matrix,
    "stiff_chain": stiff_chain,
    "stiff_mammillary": stiff_mammillary,
}
STEPS = (1e-3, 1e-1, 5.0 / 60.0, 1.0, 24.0, 1e3)


# -- Padé data ----------------------------------------------------------------------


@pytest.mark.parametrize("m", [3, 5, 7, 9, 13])
def test_pade_coefficients_match_formula(m):
    # b_j proportional to (2m - j)! m! / ((2m)! j! (m - j)!), scaled so b_m = 1
    offsets = {3: 0, 5: 4, 7: 10, 9: 18}
    b = km._B13 if m == 13 else km._B_LOW[offsets[m] : offsets[m] + m + 1]
    assert len(b) == m + 1

    def c(j):
        return Fraction(
            math.factorial(2 * m - j) * math.factorial(m),
            math.factorial(2 * m) * math.factorial(j) * math.factorial(m - j),
        )

    assert [Fraction(x) for x in b] == [c(j) / c(m) for j in range(m + 1)]


# -- expm against scipy -------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    ("kind", "norm"),
    # unshifted gauss only up to norm 20: beyond, exp(A) can overflow
    [
        (k, x)
        for k in ("gauss", "shifted", "skew")
        for x in NORMS
        if k != "gauss" or x <= 20.0
    ],
    ids=lambda v: v if isinstance(v, str) else f"norm{v:.4g}",
)
def test_expm_random_matches_scipy(kind, norm, n):
    A = random_matrix(kind, n, norm, seed=0)
    # Up to theta_13 (no squaring) the agreement is a few ulps. With squarings scipy
    # 1.17 is the less accurate side: measured up to 9.7e-12 (2x2 skew, norm 1e3) and
    # 7.3e-12 (2x2 gauss, norm 100) against 60-digit mpmath, where this kernel is
    # within 5e-14 (test_expm_matches_high_precision).
    rtol = 1e-12 if norm <= THETA[-1] else 5e-11
    assert rel_err(expm(A), scipy.linalg.expm(A)) <= rtol


@pytest.mark.parametrize(
    ("kind", "n", "norm"),
    [
        ("gauss", 2, 100.0),
        ("gauss", 3, 20.0),
        ("gauss", 5, 100.0),
        ("skew", 2, 1e3),
        ("skew", 3, 1e3),
        ("shifted", 3, 1e3),
        ("shifted", 5, THETA[-1] * 1.01),
    ],
)
def test_expm_matches_high_precision(kind, n, norm):
    """Where scipy deviates by ~1e-11, 60-digit arithmetic arbitrates."""
    mp = pytest.importorskip("mpmath")
    A = random_matrix(kind, n, norm, seed=0)
    with mp.workdps(60):
        ref = np.array(mp.expm(mp.matrix(A.tolist())).tolist(), dtype=float)
    assert rel_err(expm(A), ref) <= max(1e-13, 8.0 * 2.0 ** squarings(A) * U)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_expm_zero_is_identity(n):
    assert np.array_equal(expm(np.zeros((n, n))), np.eye(n))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_expm_identity(n):
    np.testing.assert_allclose(expm(np.eye(n)), math.e * np.eye(n), rtol=1e-15)


@pytest.mark.parametrize("a", [-700.0, -1e2, -1.0, -1e-300, 0.0, 1e-8, 0.5, 3.0, 700.0])
def test_expm_1x1(a):
    X = expm(np.array([[a]]))
    assert X.shape == (1, 1)
    assert X[0, 0] == pytest.approx(math.exp(a), rel=1e-15)


def test_expm_diagonal_is_elementwise():
    d = np.array([-1e4, -1.0, -1e-4, 0.0, 2.0])
    assert np.array_equal(expm(np.diag(d)), np.diag(np.exp(d)))


@pytest.mark.parametrize("h", STEPS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [2, 3, 4, 6, 8])
def test_expm_pk_matches_scipy(n, seed, h):
    Ah = pk_matrix(n, seed) * h
    assert rel_err(expm(Ah), scipy.linalg.expm(Ah)) <= tol(Ah)


@pytest.mark.parametrize("h", STEPS)
@pytest.mark.parametrize("name", NAMED_PK)
def test_expm_named_pk_matches_scipy(name, h):
    Ah = NAMED_PK[name]() * h
    assert rel_err(expm(Ah), scipy.linalg.expm(Ah)) <= tol(Ah)


def nearly_defective(n, eps, t):
    """``t (diag(-1, -1-eps, -1-2 eps) + superdiagonal of ones)``, n = 2 or 3, and its
    exponential in closed form.

    The exponential of a bidiagonal matrix holds divided differences of exp at its
    diagonal ``x`` (Opitz): ``exp(T)[i, j] = t**(j-i) exp[x_i, ..., x_j]``. For
    equally spaced ``x`` (spacing ``d``) these are ``e**x0 g`` and ``e**x0 g**2 / 2``
    with ``g = expm1(d) / d``: no cancellation as ``eps -> 0``.
    """
    x = -t * (1.0 + eps * np.arange(n))
    T = np.diag(x) + t * np.eye(n, k=1)
    d = x[1] - x[0]
    g = math.expm1(d) / d if d != 0.0 else 1.0
    e = np.exp(x)
    exact = np.diag(e)
    exact[0, 1] = t * e[0] * g
    if n == 3:
        exact[1, 2] = t * e[1] * g
        exact[0, 2] = t * t * e[0] * g * g / 2.0
    return T, exact


@pytest.mark.parametrize("t", [1e-3, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("eps", [1e-8, 1e-12, 0.0])
@pytest.mark.parametrize("n", [2, 3])
def test_expm_nearly_defective_closed_form(n, eps, t):
    T, exact = nearly_defective(n, eps, t)
    X = expm(T)
    assert rel_err(X, exact) <= tol(T)
    if squarings(T) == 0:
        assert rel_err(X, scipy.linalg.expm(T)) <= 1e-12
    # With squarings scipy takes its triangular branch, whose superdiagonal
    # (e**x1 - e**x0) / (x1 - x0) cancels as x1 -> x0: measured 8.5e-6 (n = 2,
    # eps = 1e-12, t = 10) and 7e-10 (n = 3, eps = 1e-8, t = 10) against 60-digit
    # mpmath, where this kernel and the closed form are within 1.4e-14. So triangular
    # inputs are checked against the closed form, and rotated copies against scipy's
    # general path (test_expm_nearly_defective_rotated_matches_scipy).


@pytest.mark.parametrize("t", [1e-3, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("eps", [1e-8, 1e-12, 0.0])
@pytest.mark.parametrize("n", [2, 3])
def test_expm_nearly_defective_rotated_matches_scipy(n, eps, t):
    T, _ = nearly_defective(n, eps, t)
    Q, _ = np.linalg.qr(np.random.default_rng(n).standard_normal((n, n)))
    A = Q @ T @ Q.T  # not triangular: scipy's general scaling-and-squaring path
    # exp is ill-conditioned at a (nearly) defective block: its condition number grows
    # like t**(n-1), so at t = 100 the rounding of A alone moves exp(A) by ~1e-12.
    # Measured against 60-digit mpmath at t = 100: this kernel 2.7e-12, scipy 5.3e-12.
    rtol = tol(A) if t <= 10.0 else 1e-11
    assert rel_err(expm(A), scipy.linalg.expm(A)) <= rtol


def test_expm_fortran_order_input():
    A = random_matrix("shifted", 5, 3.0, seed=1)
    assert np.array_equal(expm(np.asfortranarray(A)), expm(A))


@pytest.mark.parametrize("norm", [1e-2, 0.5, 2.0, 50.0])
def test_expm_into_in_place(norm):
    A = random_matrix("shifted", 4, norm, seed=2)
    work = np.full((EXPM_WORK, 4, 4), np.nan)  # contents on entry must not matter
    B = A.copy()
    assert expm_into(B, B, work)
    assert np.array_equal(B, expm(A))


# -- non-finite and extreme input -----------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (1, 2), (2, 2)])
def test_expm_nonfinite_gives_nan(bad, where):
    A = design_rate_matrix()
    A[where] = bad
    assert np.isnan(expm(A)).all()
    out = np.zeros((3, 3))
    assert not expm_into(A, out, np.empty((EXPM_WORK, 3, 3)))
    assert np.isnan(out).all()


def test_expm_norm_overflow_gives_nan():
    A = np.array([[-1e308, 0.0], [1e308, -1e308]])  # finite, but ||A||_1 = inf
    assert np.isnan(expm(A)).all()


def test_expm_huge_finite_does_not_raise():
    X = expm(np.array([[0.0, 1e300], [-1e300, 0.0]]))
    assert X.shape == (2, 2)


# -- propagators --------------------------------------------------------------------


@pytest.mark.parametrize("h", STEPS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 8])
def test_propagators_pk_match_scipy_augmented(n, seed, h):
    # n = 1: one compartment, k = 1e-1 .. 1e-4 /h (faster k underflow exp(-k h))
    A = pk_matrix(n, seed) if n > 1 else np.array([[-(10.0 ** (-1 - seed))]])
    M = augmented(A, h)
    ref = scipy.linalg.expm(M)
    E, G = call_propagators(A, h)
    assert rel_err(E, ref[:n, :n]) <= tol(M)
    assert rel_err(G, ref[:n, n:]) <= tol(M)


@pytest.mark.parametrize("h", STEPS)
@pytest.mark.parametrize("name", NAMED_PK)
def test_propagators_named_pk_match_scipy_augmented(name, h):
    A = NAMED_PK[name]()
    M = augmented(A, h)
    ref = scipy.linalg.expm(M)
    E, G = call_propagators(A, h)
    assert rel_err(E, ref[:3, :3]) <= tol(M)
    assert rel_err(G, ref[:3, 3:]) <= tol(M)


@pytest.mark.parametrize("h", [1e-3, 0.3, 2.0, 30.0])
@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_propagators_general_matrix_match_scipy_augmented(n, h):
    A = random_matrix("shifted", n, 3.0, seed=3)
    M = augmented(A, h)
    ref = scipy.linalg.expm(M)
    E, G = call_propagators(A, h)
    assert rel_err(E, ref[:n, :n]) <= tol(M)
    assert rel_err(G, ref[:n, n:]) <= tol(M)


@pytest.mark.parametrize("h", [1e-3, 5.0 / 60.0, 1.0, 24.0, 1e3])
@pytest.mark.parametrize("name", ["ketamine", "moderate0", "moderate1", "moderate2"])
def test_propagators_g_closed_form(name, h):
    """G = A^{-1} (E - I) for invertible A, E from scipy: independent of the
    augmented-matrix construction."""
    if name == "ketamine":
        A = design_rate_matrix()
    else:  # well-conditioned invertible PK matrices: every compartment eliminates
        seed = int(name[-1])
        A = pk_matrix(4, seed, lo=-1.0, hi=1.0) - np.diag([0.3, 0.2, 0.1, 0.05])
    n = A.shape[0]
    E_ref = scipy.linalg.expm(A * h)
    G_ref = np.linalg.solve(A, E_ref - np.eye(n))
    E, G = call_propagators(A, h)
    # The closed form is the less accurate side: E - I cancels at small h (relative
    # error ~ u cond(A) / ||A h||, cond(A) <= 4e2 here). Measured: 5.3e-13 at h = 1e-3,
    # <= 1e-14 for h >= 5 min.
    assert rel_err(E, E_ref) <= tol(augmented(A, h))
    assert rel_err(G, G_ref) <= 1e-12


@pytest.mark.parametrize("k", [1e-4, 1e-1, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("h", [1e-3, 1.0, 1e3])
def test_propagators_one_compartment_closed_form(k, h):
    E, G = call_propagators(np.array([[-k]]), h)
    tol_kh = tol(augmented(np.array([[-k]]), h))
    assert E[0, 0] == pytest.approx(math.exp(-k * h), rel=tol_kh, abs=1e-300)
    assert G[0, 0] == pytest.approx(-math.expm1(-k * h) / k, rel=tol_kh)


@pytest.mark.parametrize("h", [1e-9, 1e-3, 0.3, 7.0, 1e3, 1e6])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_propagators_zero_rate_matrix(n, h):
    # [[0, hI], [0, 0]] is nilpotent: its Padé approximant is exact and squaring
    # [[I, G], [0, I]] only doubles G, so the result is exact in floating point
    E, G = call_propagators(np.zeros((n, n)), h)
    assert np.array_equal(E, np.eye(n))
    np.testing.assert_allclose(G, h * np.eye(n), rtol=2 * U, atol=0.0)


@pytest.mark.parametrize("n", [1, 3])
def test_propagators_zero_step(n):
    A = design_rate_matrix()[:n, :n]
    E = np.full((n, n), 7.0)
    G = np.full((n, n), 7.0)
    propagators(A, 0.0, E, G)
    assert np.array_equal(E, np.eye(n))
    assert np.array_equal(G, np.zeros((n, n)))


@pytest.mark.parametrize("h", [1e-2, 1.0, 24.0])
def test_propagators_doubling(h):
    """Semigroup identities E(2h) = E(h)^2 and G(2h) = G(h) + E(h) G(h)."""
    A = design_rate_matrix()
    E1, G1 = call_propagators(A, h)
    E2, G2 = call_propagators(A, 2 * h)
    M = augmented(A, 2 * h)
    assert rel_err(E2, E1 @ E1) <= tol(M)
    assert rel_err(G2, G1 + E1 @ G1) <= tol(M)


def test_propagators_into_matches_propagators():
    A = pk_matrix(5, 1)
    work = np.full((PROPAGATORS_WORK, 10, 10), np.nan)
    for h in (1e-3, 1.0, 1e3):
        E, G = call_propagators(A, h)
        E2 = np.empty((5, 5))
        G2 = np.empty((5, 5))
        assert propagators_into(A, h, E2, G2, work)
        assert np.array_equal(E, E2)
        assert np.array_equal(G, G2)


@pytest.mark.parametrize(
    ("bad_entry", "h"),
    [
        (np.nan, 1.0),
        (np.inf, 1.0),
        (-np.inf, 1.0),
        (np.nan, 0.0),
        (None, np.nan),
        (None, np.inf),
    ],
)
def test_propagators_nonfinite_gives_nan(bad_entry, h):
    A = design_rate_matrix()
    if bad_entry is not None:
        A[1, 0] = bad_entry
    E, G = call_propagators(A, h)
    assert np.isnan(E).all()
    assert np.isnan(G).all()
    work = np.empty((PROPAGATORS_WORK, 6, 6))
    assert not propagators_into(A, h, E, G, work)


# -- callable from parallel kernels -------------------------------------------------


@numba.njit(parallel=True)
def _parallel_propagators(A, h, E, G):
    for i in numba.prange(A.shape[0]):
        propagators(A[i], h[i], E[i], G[i])


@numba.njit
def _serial_expm(A, out):
    for i in range(A.shape[0]):
        out[i] = expm(A[i])


def test_propagators_inside_prange():
    rng = np.random.default_rng(7)
    N, n = 64, 4
    A = np.stack([pk_matrix(n, s) for s in range(N)])
    h = 10 ** rng.uniform(-3, 3, N)
    E = np.empty((N, n, n))
    G = np.empty((N, n, n))
    _parallel_propagators(A, h, E, G)
    for i in range(N):
        Ei, Gi = call_propagators(A[i], h[i])
        assert np.array_equal(E[i], Ei)
        assert np.array_equal(G[i], Gi)


def test_expm_callable_from_njit():
    A = np.stack([random_matrix("shifted", 3, x, seed=4) for x in NORMS])
    out = np.empty_like(A)
    _serial_expm(A, out)
    for i in range(A.shape[0]):
        assert np.array_equal(out[i], expm(A[i]))


# -- lane_propagators: a block of subjects at once (Taylor, scaling and squaring) ---


def lane_squarings(Ah):
    nrm = np.abs(Ah).sum(axis=0).max()
    return max(0, math.ceil(math.log2(nrm / km._TAYLOR_THETA))) if nrm > 0 else 0


def call_lanes(As, h):
    """lane_propagators on the matrices As (B, n, n) as lanes of one block."""
    A = np.ascontiguousarray(np.moveaxis(As, 0, -1))
    n, _, B = A.shape
    E, G = np.empty_like(A), np.empty_like(A)
    km.lane_propagators(
        A, h, E, G, np.empty((km.LANE_WORK, n, n, B)), np.empty(B, dtype=np.int64)
    )
    return np.moveaxis(E, -1, 0), np.moveaxis(G, -1, 0)


@pytest.mark.parametrize("h", STEPS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 8])
def test_lane_propagators_match_scipy_augmented(n, h):
    """Lanes of different stiffness in one block (so different squaring counts):
    each against scipy's expm of the augmented matrix to 8 * 2**s ulps with the
    Taylor path's own s (2-3 more squarings than Padé-13 takes), and bit-identical
    to the lane alone."""
    if n == 1:
        As = np.array([[[-(10.0 ** (-1 - s))]] for s in range(4)])
    else:
        As = np.stack(
            [pk_matrix(n, s) for s in range(4)]
            + ([NAMED_PK[k]() for k in NAMED_PK] if n == 3 else [])
        )
    E, G = call_lanes(As, h)
    for b, A in enumerate(As):
        ref = scipy.linalg.expm(augmented(A, h))
        bound = max(1e-12, 8.0 * 2.0 ** lane_squarings(A * h) * U)
        assert rel_err(E[b], ref[:n, :n]) <= bound, b
        assert rel_err(G[b], ref[:n, n:]) <= bound, b
        E1, G1 = call_lanes(As[b : b + 1], h)
        assert np.array_equal(E1[0], E[b]) and np.array_equal(G1[0], G[b])


def test_lane_propagators_exact_cases():
    """A = 0 gives E = I, G = h I exactly; a zero column (an AUC state) gives an
    exact unit column of E and h in G; a NaN lane, or one with ||A h|| beyond
    2**60, gives NaN and leaves the others untouched."""
    n, h = 4, 5.0 / 60.0
    A = np.zeros((4, n, n))
    A[1, :3, :3] = design_rate_matrix()
    A[1, 3, 0] = 0.25  # the AUC state integrates the central amount / V
    A[2] = A[1]
    A[2, 1, 1] = np.nan
    A[3] = A[1] * 1e300
    E, G = call_lanes(A, h)
    assert np.array_equal(E[0], np.eye(n)) and np.array_equal(G[0], h * np.eye(n))
    assert np.array_equal(E[1][:, 3], np.eye(n)[3])
    assert np.array_equal(G[1][:, 3], h * np.eye(n)[3])
    assert np.all(np.isnan(E[2:])) and np.all(np.isnan(G[2:]))
    E1, G1 = call_lanes(A[1:2], h)
    assert np.array_equal(E1[0], E[1]) and np.array_equal(G1[0], G[1])
