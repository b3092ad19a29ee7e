"""Numba kernels. Private: array-only, preallocated outputs, status codes, never raise."""
