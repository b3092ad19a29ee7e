"""Right-hand side for linear models with linearly time-varying rates (ODE path)."""

from numba import njit


@njit(cache=True)
def rhs_ltv(t, x, p, dxdt):
    """``dxdt = (A0 + t A1) x`` with ``p = [A0.ravel(), A1.ravel()]`` (row-major)."""
    n = x.shape[0]
    nn = n * n
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += (p[i * n + j] + t * p[nn + i * n + j]) * x[j]
        dxdt[i] = acc


__all__ = ["rhs_ltv"]
