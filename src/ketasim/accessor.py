"""``ds.pk``: exposure metrics on simulation Datasets (delegates to metrics.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from . import metrics as _m
from .units import ng_per_ml_to_nmol_per_l


@xr.register_dataset_accessor("pk")
class PKAccessor:
    """Exposure metrics: ``ds.pk.cmax("session")``, ``ds.pk.auc("dose")``, ...

    Every result is a DataArray with ``units``. ``unit="nmol/L"`` gives Cmax and
    trough in nmol/L and AUC in nmol·h/L (``unit="ng/mL"``, the default: ng/mL and
    ng·h/mL). Levels (``above``, ``within``) are ng/mL, or strings with their unit.
    See :mod:`ketasim.metrics` for the windows, the exact AUC and the Tmax tie rule
    (first maximum)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def metrics(self, per: str = "session", **kw: Any) -> xr.Dataset:
        """:func:`ketasim.metrics` of this Dataset (``above``, ``within``,
        ``unit``)."""
        return _m.metrics(self._ds, per, **kw)

    def cmax(self, per: str = "session", *, unit: str = "ng/mL") -> xr.DataArray:
        """Cmax per window in ``unit`` (ng/mL or nmol/L)."""
        return self.metrics(per, unit=unit).cmax

    def tmax(self, per: str = "session") -> xr.DataArray:
        """Tmax per window, h after its start."""
        return self.metrics(per).tmax

    def auc(self, per: str = "session", *, unit: str = "ng/mL") -> xr.DataArray:
        """AUC per window: ng·h/mL (``unit="ng/mL"``) or nmol·h/L (``"nmol/L"``)."""
        return self.metrics(per, unit=unit).auc

    def trough(self, per: str = "session", *, unit: str = "ng/mL") -> xr.DataArray:
        """Level just before the next window, in ``unit`` (ng/mL or nmol/L)."""
        return self.metrics(per, unit=unit).trough

    def time_above(self, level: float | str, per: str = "session") -> xr.DataArray:
        """Time (h) above ``level``: ng/mL, or a string with its unit."""
        return self.metrics(per, above=level).time_above

    def time_within(
        self, low: float | str, high: float | str, per: str = "session"
    ) -> xr.DataArray:
        """Time (h) within [``low``, ``high``]: ng/mL, or strings with a unit."""
        return self.metrics(per, within=(low, high)).time_within

    def by_dose(self, *, unit: str = "ng/mL") -> xr.Dataset:
        """All metrics per dose, in ``unit``."""
        return self.metrics("dose", unit=unit)

    def molar(self) -> xr.DataArray:
        """Concentrations in nmol/L (ng/mL ÷ g/mol × 1000), for plotting: metrics
        take the ng/mL Dataset and ``unit="nmol/L"`` instead."""
        if self._ds.concentration.attrs.get("units") != "ng/mL":
            raise _m.UnitError(
                f"molar() converts ng/mL; ds.concentration has units "
                f"{self._ds.concentration.attrs.get('units')!r}"
            )
        c = ng_per_ml_to_nmol_per_l(self._ds.concentration, self._ds.molecular_weight)
        c.attrs = {"units": "nmol/L", "long_name": "plasma concentration (molar)"}
        return c

    def summary(
        self, da: xr.DataArray, q: Sequence[float] = (5, 50, 95)
    ) -> xr.DataArray:
        """Population percentiles of a metric, keeping its units."""
        return _m.summary(da, q)

    def pta(
        self, da: xr.DataArray, threshold: float | str, above: bool = True
    ) -> xr.DataArray:
        """Fraction of subjects with ``da`` >= ``threshold`` (a number in ``da``'s
        units, or a string with a unit of that kind)."""
        return _m.pta(da, threshold, above=above)
