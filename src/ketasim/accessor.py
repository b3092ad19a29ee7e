"""``ds.pk``: exposure metrics on simulation Datasets (delegates to metrics.py)."""

from __future__ import annotations

import xarray as xr

from . import metrics as _m


@xr.register_dataset_accessor("pk")
class PKAccessor:
    """Exposure metrics: ``ds.pk.cmax("session")``, ``ds.pk.auc("dose")``, ...

    Every result is a DataArray with ``units``. See :mod:`ketasim.metrics` for the
    windows, the exact AUC and the Tmax tie rule (first maximum)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def metrics(self, per: str = "session", **kw) -> xr.Dataset:
        return _m.metrics(self._ds, per, **kw)

    def cmax(self, per: str = "session") -> xr.DataArray:
        return self.metrics(per).cmax

    def tmax(self, per: str = "session") -> xr.DataArray:
        return self.metrics(per).tmax

    def auc(self, per: str = "session") -> xr.DataArray:
        return self.metrics(per).auc

    def trough(self, per: str = "session") -> xr.DataArray:
        return self.metrics(per).trough

    def time_above(self, level: float, per: str = "session") -> xr.DataArray:
        return self.metrics(per, above=level).time_above

    def time_within(self, low: float, high: float, per: str = "session"
                    ) -> xr.DataArray:
        return self.metrics(per, within=(low, high)).time_within

    def by_dose(self) -> xr.Dataset:
        return self.metrics("dose")

    def molar(self) -> xr.DataArray:
        """Concentrations in nmol/L (ng/mL ÷ g/mol × 1000)."""
        c = self._ds.concentration / self._ds.molecular_weight * 1000.0
        c.attrs = {"units": "nmol/L", "long_name": "plasma concentration (molar)"}
        return c

    def summary(self, da: xr.DataArray, q=(5, 50, 95)) -> xr.DataArray:
        return _m.summary(da, q)

    def pta(self, da: xr.DataArray, threshold: float, above: bool = True
            ) -> xr.DataArray:
        return _m.pta(da, threshold, above=above)
