"""Numba kernels. Private: array-only, preallocated outputs, status codes; they
never raise."""
