"""A large population with Dask: lazy, chunked over patients, streamed to disk.

The same code runs on a cluster: create a ``dask.distributed.Client`` for it first,
e.g. ``Client("tcp://scheduler:8786")`` (or ``LocalCluster`` on one machine); every
``compute`` or ``to_zarr`` then runs on its workers, which need ketasim installed.

Run: python examples/dask_large_population.py
"""

import tempfile
from pathlib import Path

import xarray as xr

import ketasim as ks


def main(n: int = 20_000, chunks: int = 5_000) -> None:
    pop = ks.Population(n, seed=3)
    course = ks.six_infusion_course()
    times = ks.grid("21 d", "15 min")
    model = ks.DEFAULT_MODEL
    lazy = ks.simulate(model, course, population=pop, times=times, chunks=chunks)
    print(lazy.concentration.data)  # nothing computed yet
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "run.zarr"
        lazy.to_zarr(store, zarr_format=2)  # computed and written chunk by chunk
        back = xr.open_zarr(store)
        print(back.concentration.attrs["units"], back.sizes["subject"], "patients")
    # metrics only: no curves at all, bounded memory for millions of patients
    m = ks.simulate(
        model, course, population=pop, times=times, output=ks.Metrics(above=100.0)
    )
    print(
        ks.summary(m.auc.sum("dose", keep_attrs=True).sel(analyte="ketamine"))
        .round(0)
        .values,
        m.auc.attrs["units"],
        "(P5, median, P95 course AUC)",
    )


if __name__ == "__main__":
    main()
