"""Results on disk and side by side: :class:`ScenarioResults`, :func:`save`,
:func:`open_results`.

``run_scenarios`` returns a :class:`ScenarioResults`: one Dataset per scenario,
each exactly as :func:`ketasim.simulate` returned it. Scenarios of different
models have different analytes, doses and patients; concatenated along one
``scenario`` dimension they were padded with NaN to the union of all of them (a
three-drug comparison took 4-5x the memory and time of its simulations, and half
of a written file was padding). Kept apart, nothing is padded and a reader needs
to know nothing beyond each Dataset's own labels.

:func:`save` writes a Dataset (a simulate result, metrics) or a ScenarioResults to
NetCDF-4, compressed without loss (zlib with the byte shuffle filter), one group
per scenario; :func:`open_results` reads either back, values and attributes
identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ScenarioResults", "open_results", "save"]

#: root attribute that marks a file of scenario results (its value: the names)
_MARK = "ketasim_scenarios"
#: zlib level: 4 gives ~the size of level 9 on simulation curves at a third of
#: the write time (measured on the demo's results)
COMPLEVEL = 4


class ScenarioResults(Mapping):
    """The results of :func:`ketasim.run_scenarios`: scenario name -> Dataset.

    Each Dataset is the scenario's :func:`ketasim.simulate` result, unpadded (its
    own analytes, doses, patients and output times), with ``attrs["scenario"]``
    its name. Index by name (``res["iv 35 mg"]``) or as a Dataset's scenario
    dimension (``res.sel(scenario="iv 35 mg")``; a list of names gives a smaller
    ScenarioResults); iterate over the names in order. :func:`ketasim.compare`,
    :func:`ketasim.metrics` (one metrics Dataset per scenario) and the plots take
    it as it is; :func:`ketasim.save` writes it to one file.

    Examples
    --------
    >>> import ketasim as ks
    >>> t = ks.grid("1 d", "1 h")
    >>> res = ks.run_scenarios([
    ...     ks.Scenario("ketamine iv", "domino", ks.Dose.bolus("35 mg"), times=t),
    ...     ks.Scenario("esketamine iv", "fanta_2015", ks.Dose.bolus("20 mg"),
    ...                 times=t)])
    >>> list(res)
    ['ketamine iv', 'esketamine iv']
    >>> [str(a) for a in res["esketamine iv"].analyte.values]
    ['s_ketamine', 's_norketamine']
    """

    def __init__(self, results: Mapping[str, xr.Dataset]) -> None:
        data = dict(results)
        if not data:
            raise ValueError("ScenarioResults needs at least one scenario")
        for name, ds in data.items():
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"scenario names must be non-empty strings; got {name!r}"
                )
            if not isinstance(ds, xr.Dataset):
                raise TypeError(
                    f"scenario {name!r}: expected an xarray Dataset; got "
                    f"{type(ds).__name__}"
                )
        self._data = data

    def __getitem__(self, name: str) -> xr.Dataset:
        try:
            return self._data[name]
        except (KeyError, TypeError):
            raise KeyError(
                f"no scenario {name!r}; the scenarios are "
                f"{', '.join(map(repr, self._data))}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        # a Dataset-style access (res.concentration, res.dims): say how to get at
        # the per-scenario Datasets instead of a bare AttributeError
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"ScenarioResults has no attribute {name!r}: it holds one Dataset per "
            f"scenario (no padding across models); select one, e.g. "
            f"res[{next(iter(self._data))!r}].{name}, or loop over res.items()"
        )

    @property
    def names(self) -> list[str]:
        """The scenario names, in order."""
        return list(self._data)

    @property
    def scenario(self) -> xr.DataArray:
        """The names as a labelled array (as a Dataset's ``scenario``
        coordinate): ``res.scenario.values``."""
        return xr.DataArray(self.names, dims="scenario", name="scenario")

    @property
    def nbytes(self) -> int:
        """Bytes of all the scenarios' arrays."""
        return sum(ds.nbytes for ds in self._data.values())

    def sel(self, scenario: str | list[str]) -> xr.Dataset | ScenarioResults:
        """One scenario's Dataset (a name), or a ScenarioResults of several (a
        list of names), as ``Dataset.sel(scenario=...)`` selects."""
        if isinstance(scenario, str):
            return self[scenario]
        if isinstance(scenario, np.ndarray) and scenario.ndim == 0:
            return self[str(scenario)]
        return ScenarioResults({str(s): self[str(s)] for s in scenario})

    def map(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> ScenarioResults:
        """``fn(ds, *args, **kw)`` for each scenario's Dataset, as a
        ScenarioResults of what it returns (Datasets, each labelled with its
        scenario's name in ``attrs["scenario"]``), e.g.
        ``res.map(ks.metrics, "session")``."""
        out = {}
        for name, ds in self._data.items():
            got = fn(ds, *args, **kw)
            if isinstance(got, xr.Dataset) and got.attrs.get("scenario") != name:
                got = got.assign_attrs(scenario=name)
            out[name] = got
        return ScenarioResults(out)

    def load(self) -> ScenarioResults:
        """Load every scenario's arrays into memory (after :func:`open_results`
        or ``chunks=``); returns itself."""
        for ds in self._data.values():
            ds.load()
        return self

    def __repr__(self) -> str:
        lines = [f"<ketasim.ScenarioResults: {len(self)} scenarios>"]
        for name, ds in self._data.items():
            sizes = ", ".join(f"{d}: {n}" for d, n in ds.sizes.items())
            model = ds.attrs.get("model_id")
            analytes = ", ".join(str(a) for a in ds.analyte.values)
            what = f"model {model} ({analytes})" if model else analytes
            lines.append(f"  {name!r}: {what}; {sizes}")
        return "\n".join(lines)


def _encoding(ds: xr.Dataset, complevel: int) -> dict:
    """zlib + shuffle for every numeric array (netCDF-4 compresses no strings)."""
    return {
        name: {"zlib": True, "complevel": complevel, "shuffle": True}
        for name, v in ds.variables.items()
        if v.ndim and v.dtype.kind in "fiub"
    }


#: suffixes of other formats a user may expect save to write (it writes NetCDF-4
#: whatever the name): what to use for each instead
_NOT_NETCDF = {
    ".csv": "a table use ds.to_dataframe().to_csv(path) (or ks.write_nonmem)",
    ".tsv": "a table use ds.to_dataframe().to_csv(path, sep='\\t')",
    ".txt": "a table use ds.to_dataframe().to_csv(path)",
    ".xlsx": "a spreadsheet use ds.to_dataframe().to_excel(path)",
    ".parquet": "Parquet use ds.to_dataframe().to_parquet(path)",
    ".json": "JSON use ds.to_dict() with the json module",
    ".zarr": "Zarr use ds.to_zarr(path)",
}


def save(
    result: xr.Dataset | ScenarioResults,
    path: str | Path,
    *,
    complevel: int = COMPLEVEL,
) -> Path:
    """Write a result to a compressed NetCDF-4 file; return its path.

    Parameters
    ----------
    result : xarray.Dataset or ScenarioResults
        A :func:`ketasim.simulate` result (curves or metrics), a metrics Dataset,
        or :func:`ketasim.run_scenarios`' results. A ScenarioResults is written
        one group per scenario, ``scenario_0``, ``scenario_1``, ... in order (each
        Dataset from run_scenarios carries its name in ``attrs["scenario"]``); the
        root group's attribute ``ketasim_scenarios`` lists the names in that
        order (JSON). Nothing is padded.
    path : str or Path
        The file (conventionally ``.nc``); overwritten if it exists. A name
        ending in another format's suffix (``.csv``, ``.xlsx``, ``.zarr``, ...)
        is refused, saying what writes that format.
    complevel : int
        zlib level 1-9 (default 4). Compression is lossless: numbers reopen
        bit for bit.

    Notes
    -----
    Every numeric array is compressed with zlib after the byte shuffle filter;
    strings (analyte names, dose routes) are stored as they are. Reopen with
    :func:`open_results` (or ``xarray.open_dataset`` / ``open_datatree``).
    """
    if isinstance(complevel, bool) or complevel not in range(1, 10):
        raise ValueError(f"complevel must be a whole number 1-9; got {complevel!r}")
    path = Path(path)
    other = _NOT_NETCDF.get(path.suffix.lower())
    if other:
        raise ValueError(
            f"save writes NetCDF-4, but {str(path)!r} names a {path.suffix} file, "
            f"which it would not be; save to a '.nc' path, or for {other}"
        )
    if not path.parent.is_dir():
        # netCDF reports a missing folder as "Permission denied"
        raise FileNotFoundError(
            f"cannot save to {str(path)!r}: its folder {str(path.parent)!r} does not "
            f"exist; create it first"
        )
    if isinstance(result, ScenarioResults):
        root = xr.Dataset(attrs={_MARK: json.dumps(result.names)})
        root.to_netcdf(path, mode="w", engine="netcdf4")
        for k, ds in enumerate(result.values()):
            ds.to_netcdf(
                path,
                mode="a",
                group=f"scenario_{k}",
                engine="netcdf4",
                encoding=_encoding(ds, complevel),
            )
        return path
    if not isinstance(result, xr.Dataset):
        raise TypeError(
            f"save writes an xarray Dataset (a simulate result, metrics) or the "
            f"ScenarioResults of run_scenarios; got {type(result).__name__}"
        )
    result.to_netcdf(
        path, mode="w", engine="netcdf4", encoding=_encoding(result, complevel)
    )
    return path


def open_results(path: str | Path) -> xr.Dataset | ScenarioResults:
    """Open a file written by :func:`save`: a Dataset, or a ScenarioResults for
    the results of ``run_scenarios``. Arrays are read lazily, as
    ``xarray.open_dataset`` reads them; ``.load()`` reads them all."""
    path = Path(path)
    root = xr.open_dataset(path, engine="netcdf4")
    if _MARK not in root.attrs:
        return root
    names = json.loads(root.attrs[_MARK])
    root.close()
    return ScenarioResults(
        {
            name: xr.open_dataset(path, group=f"scenario_{k}", engine="netcdf4")
            for k, name in enumerate(names)
        }
    )
