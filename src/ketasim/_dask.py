"""The lazy driver of ``simulate(..., chunks=)``: one Dask task per chunk of
subjects, each the ordinary in-memory pipeline over its subjects.

Counter-based random streams make a chunk's patients identical to the same
patients in a whole run, so a computed lazy result equals the in-memory one bit
for bit. The task function :func:`_chunk` is at module level, so that workers of
a ``dask.distributed`` cluster import it by name.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ._subjects import check_memory, subject_table, with_units
from ._warn import CHUNK_START, ValidityWarning, stacklevel
from .options import Subjects


def _chunk(start: int, *args) -> xr.Dataset:
    """One Dask task's in-memory run of the subjects from ``start`` on, without
    the call's warnings (issued once by the call itself); subjects keep their
    indices in the whole run (their residual noise is drawn by index)."""
    from .simulate import run_in_memory

    token = CHUNK_START.set(start)
    try:
        return run_in_memory(*args, progress=False)
    finally:
        CHUNK_START.reset(token)


def lazy(
    model, regimen, t, chunks, population, subjects: Subjects, solver, output, errors
) -> xr.Dataset:
    """A lazy Dataset of ``chunks`` subjects per task (the arguments as the
    in-memory pipeline's, validated)."""
    if population is not None:
        # the lazy result keeps its subject labels and every patient's
        # covariates in memory (coordinates), drawn with their intermediates
        check_memory(
            population.n,
            8 * 32,
            "subject labels and covariates, "
            "which a lazy result keeps in memory as coordinates",
            "Split the population into runs of fewer subjects "
            "(population.subset(start, stop)) and write each",
        )
    try:
        import dask
    except ImportError:
        raise ImportError("chunks= needs Dask: pip install 'ketasim[dask]'") from None
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(
            f"chunks must be a whole number of subjects >= 1; got {chunks!r}"
        )
    if population is not None:
        n = population.n
        _, _, over_all = subject_table(
            model, None, subjects.parameters, warn=False, defaults=False
        )
        cov_all = None
    else:
        # every covariate, given or defaulted (reference values, weight derived
        # from height and BMI): each chunk then sees exactly its patients' values
        n, cov_all, over_all = subject_table(
            model, subjects.covariates, subjects.parameters
        )
    over = with_units(model, over_all, n)
    rest = (solver, output, errors)

    def part(a, b):
        p = {k: (v[a:b], u) for k, (v, u) in over.items()}
        if population is not None:
            return _chunk(
                a,
                model,
                regimen,
                t,
                population.subset(a, b),
                Subjects(parameters=p or None),
                *rest,
            )
        # an unknown weight (NaN: no weight in the model, none given) stays
        # unknown in the chunk, which refuses mg/kg doses as the whole call does
        c = {k: v[a:b] for k, v in cov_all.items() if not np.isnan(v).all()}
        return _chunk(
            a,
            model,
            regimen,
            t,
            None,
            Subjects(covariates=c or None, parameters=p or None),
            *rest,
        )

    bounds = [(a, min(n, a + chunks)) for a in range(0, n, chunks)]
    head = part(0, 1)  # metadata only: one subject (chunks do not warn; this does)
    if population is not None:
        cov = population.covariates_for(population.subjects)
        for msg in population.check_validity(model, cov):
            warnings.warn(msg, ValidityWarning, stacklevel=stacklevel())
    tasks = [dask.delayed(part, pure=True)(a, b) for a, b in bounds]
    return _lazy_dataset(head, tasks, bounds, n, population, cov_all)


def _lazy_dataset(
    head: xr.Dataset, tasks: list, bounds: list, n: int, population, cov_all
) -> xr.Dataset:
    """The head chunk's Dataset with its per-subject variables replaced by the
    concatenated tasks' blocks, and the coordinates of all ``n`` subjects."""
    import dask.array as da

    data = {}
    for name, var in head.data_vars.items():
        if "subject" not in var.dims:
            data[name] = var
            continue
        assert var.dims[0] == "subject"
        blocks = [
            da.from_delayed(
                tk[name].data, shape=(b - a,) + var.shape[1:], dtype=var.dtype
            )
            for tk, (a, b) in zip(tasks, bounds, strict=True)
        ]
        data[name] = (var.dims, da.concatenate(blocks, axis=0), var.attrs)
    coords = {k: v for k, v in head.coords.items() if "subject" not in v.dims}
    coords["subject"] = (
        "subject",
        (population.subjects if population is not None else np.arange(n)),
    )
    for k, v in head.coords.items():
        if "subject" in v.dims and k != "subject":
            vals = (
                population.covariates_for(population.subjects)[k]
                if population is not None
                else np.broadcast_to(cov_all.get(k, v.values[:1]), (n,))
            )
            coords[k] = ("subject", np.asarray(vals), v.attrs)
    # the attributes of the in-memory result, nothing more: a computed lazy result
    # is identical to it (the chunking is in ds.chunks)
    ds = xr.Dataset(data, coords=coords, attrs=dict(head.attrs))
    if population is not None:  # the head chunk's attrs describe one patient
        ds.attrs["population"] = repr(population)
    return ds
