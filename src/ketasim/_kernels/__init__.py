"""Numba kernels. Private: array-only, preallocated outputs, status codes; they
never raise."""

from ._cache import register

# before any kernel module is imported: numba picks a cached function's locator
# (and with it the source stamp that invalidates it) when its decorator runs
register()
