"""Writing a Dataset as a NONMEM-style event table, one step at a time.

:func:`ketasim.nonmem.write_nonmem` runs these steps: the analyte written as DV
(:func:`dv_analyte`, :func:`check_dv_units`), the subjects and covariates written
(:func:`written_subjects`, :func:`written_covariates`), the layout for the kind
of Dataset — its header and each subject's CSV rows: a ``simulate_nonmem``
Dataset record for record as read (:func:`as_read_layout`), or from its dose and
observation records (:func:`table_layout`), or a ``simulate`` Dataset
(:func:`simulate_layout`) — then the file, once every row is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from . import _analytes
from .metrics import check_units, present_analytes
from .nonmem import _num

#: the columns every layout starts with
FIRST_COLUMNS = ["ID", "TIME", "EVID", "AMT", "RATE", "CMT"]


def dv_analyte(ds: xr.Dataset, analyte: str | None) -> str:
    """The analyte whose concentration is DV: ``analyte`` if the Dataset has it,
    else the one analyte with values (a NONMEM file holds one DV)."""
    names = [str(a) for a in ds.analyte.values]
    if analyte is None:
        have = present_analytes(ds)
        if len(have) > 1:
            raise ValueError(
                f"this Dataset has {len(have)} analytes "
                f"({', '.join(have)}); a NONMEM file holds one DV: pass "
                f"analyte=... (and write one file per analyte)"
            )
        return have[0] if have else names[0]
    return _analytes.resolve(analyte, names, "this Dataset")


def check_dv_units(ds: xr.Dataset) -> None:
    """Refuse a concentration (or ``nonmem_dv``) not labelled ng/mL."""
    # DV is documented ng/mL: a concentration relabelled or converted (e.g. by
    # ds.pk.molar()) would be written as ng/mL numbers that are not
    check_units(
        ds,
        {"concentration": "ng/mL", "nonmem_dv": "ng/mL"},
        "write_nonmem (DV in ng/mL)",
        " (DV is ng/mL: write the ng/mL Dataset from ks.simulate; "
        "ds.pk.molar() is for plotting)",
    )


def written_subjects(ds: xr.Dataset) -> list[int]:
    """Indices of the subjects written: all but a scenario's padding subjects
    (no status); failed subjects (``errors="keep"``) are written, their missing
    values with MDV 1."""
    status = (
        ds.status.values.astype(float)
        if "status" in ds
        else np.zeros(ds.sizes["subject"])
    )
    return [s for s in range(ds.sizes["subject"]) if np.isfinite(status[s])]


def written_covariates(ds: xr.Dataset, rows: list[int]) -> tuple[list[str], list[str]]:
    """The covariates known for every subject written, and their columns."""
    covs = [
        k
        for k in ("weight", "age", "height", "bmi", "female", "asian", "japanese")
        if k in ds.coords and np.all(np.isfinite(ds[k].values[rows]))
    ]
    head = [
        {"weight": "WT", "age": "AGE", "height": "HT"}.get(k, k.upper()) for k in covs
    ]
    return covs, head


def obs_row(sid, tj, value, cv, nodev, extra) -> list:
    """An observation record at ``tj`` (h): DV ``value``, or MDV 1 and no DV when
    it is missing (a failed subject)."""
    dv = [0, _num(value)] if np.isfinite(value) else [1, "."]
    return [sid, _num(tj), 0, ".", ".", "."] + extra + dv + nodev + cv


def in_time_order(recs: list) -> list:
    """The rows of ``(time, order, row)`` sorted stably by time then order (at
    one time: pre-dose observations 0, doses 1, observations 2, other 3)."""
    return [row for _, _, row in sorted(recs, key=lambda x: (x[0], x[1]))]


@dataclass(frozen=True)
class AsRead:
    """A ``simulate_nonmem`` Dataset's records as read (``nonmem_records``),
    one for one in file order."""

    head: list
    records: np.ndarray  # (subject, record, field)
    field: dict  # field name -> index
    dv: np.ndarray  # (subject, observation record)
    with_dur: bool
    with_device: bool

    def rows(self, s: int, sid, cv: list) -> list:
        """Subject ``s``'s CSV rows."""
        return records_as_read(
            sid,
            self.records[s],
            self.field,
            self.dv[s],
            self.with_dur,
            self.with_device,
            cv,
        )


def as_read_layout(ds: xr.Dataset, an: str, cov_head: list) -> AsRead:
    """The layout that writes back the table's records as read."""
    allr = ds.nonmem_records.transpose(
        "subject", "nonmem_record", "nonmem_field"
    ).values
    fld = {str(k): j for j, k in enumerate(ds.nonmem_field.values)}
    with_dur = bool(np.any(np.isfinite(allr[..., fld["DUR"]])))
    with_device = bool(np.any(np.isfinite(allr[..., fld["DEVICE"]])))
    head = (
        FIRST_COLUMNS
        + ["II", "ADDL", "SS"]
        + (["DUR"] if with_dur else [])
        + ["MDV", "DV"]
        + (["DEVICE"] if with_device else [])
        + cov_head
    )
    dvs = ds.nonmem_dv.sel(analyte=an).transpose("subject", "nonmem_observation").values
    return AsRead(head, allr, fld, dvs, with_dur, with_device)


def records_as_read(sid, rows, fld, pred, with_dur, with_device, cv) -> list:
    """A subject's records as read (``nonmem_records`` rows, file order) as CSV
    rows: every column as read (``.`` where it was empty), DV the prediction of
    each observation record (EVID 0 without MDV 1), in order."""

    def text(x, whole):
        if not np.isfinite(x):
            return "."
        return str(int(x)) if whole else _num(x)

    out = []
    m = 0  # the next observation record's index into pred
    for x in rows:
        if not np.isfinite(x[fld["EVID"]]):
            continue  # padding: this subject has fewer records
        evid = int(x[fld["EVID"]])
        mdv = text(x[fld["MDV"]], True)
        dv = "."
        if evid == 0 and mdv != "1":
            if np.isfinite(pred[m]):
                dv = _num(pred[m])
            else:  # no prediction (a failed subject): not an observation
                mdv = "1"
            m += 1
        row = [sid, _num(x[fld["TIME"]]), evid]
        row += [
            text(x[fld[k]], k in ("CMT", "ADDL", "SS"))
            for k in ("AMT", "RATE", "CMT", "II", "ADDL", "SS")
        ]
        row += [text(x[fld["DUR"]], False)] if with_dur else []
        row += [mdv, dv]
        row += [text(x[fld["DEVICE"]], True)] if with_device else []
        out.append(row + cv)
    return out


@dataclass(frozen=True)
class FromTable:
    """A ``simulate_nonmem`` Dataset written from its dose records
    (``nonmem_doses``) and either its observation records or every output
    time (``observations="times"``)."""

    head: list
    doses: np.ndarray  # (subject, dose record, item)
    item: dict  # item name -> index
    with_dur: bool
    with_device: bool
    observations: str
    t: np.ndarray
    c: np.ndarray  # (subject, time): DV at the output times
    ot: np.ndarray  # (subject, observation record): its time
    pre: np.ndarray  # (subject, observation record): pre-dose
    dv: np.ndarray  # (subject, observation record): its prediction

    def rows(self, s: int, sid, cv: list) -> list:
        """Subject ``s``'s CSV rows, in time order."""
        item, with_dur, with_device = self.item, self.with_dur, self.with_device
        nodev = ["."] if with_device else []
        recs = []
        for x in self.doses[s]:
            if not np.isfinite(x[item["TIME"]]):
                continue  # padding: this subject has fewer records
            dur = x[item["DUR"]]
            dev = x[item["DEVICE"]]
            recs.append(
                (
                    x[item["TIME"]],
                    1,
                    [
                        sid,
                        _num(x[item["TIME"]]),
                        1,
                        _num(x[item["AMT"]]),
                        _num(x[item["RATE"]]),
                        int(x[item["CMT"]]),
                        _num(x[item["II"]]),
                        int(x[item["ADDL"]]),
                        int(x[item["SS"]]),
                    ]
                    + ([_num(dur) if np.isfinite(dur) else "."] if with_dur else [])
                    + [1, "."]
                    + ([int(dev) if dev > 0 else "."] if with_device else [])
                    + cv,
                )
            )
        extra = [".", ".", "."] + (["."] if with_dur else [])
        t, ot = self.t, self.ot
        if self.observations == "times":
            recs += [
                (t[j], 2, obs_row(sid, t[j], self.c[s, j], cv, nodev, extra))
                for j in range(t.size)
            ]
        else:
            recs += [
                (
                    ot[s, m],
                    0 if self.pre[s, m] else 2,
                    obs_row(sid, ot[s, m], self.dv[s, m], cv, nodev, extra),
                )
                for m in range(ot.shape[1])
                if np.isfinite(ot[s, m])
            ]
        if not recs:  # no dose, no observation: an EVID 2 record keeps the
            # subject (its ID and covariates) in the table
            recs.append(
                (0.0, 3, [sid, "0.0", 2, ".", ".", "."] + extra + [1, "."] + nodev + cv)
            )
        return in_time_order(recs)


def table_layout(
    ds: xr.Dataset,
    an: str,
    cov_head: list,
    observations: str,
    c: np.ndarray,
    t: np.ndarray,
) -> FromTable:
    """The layout that writes a table's dose records and observations."""
    nd = ds.nonmem_doses.transpose("subject", "nonmem_dose", "nonmem_item")
    item = {str(k): j for j, k in enumerate(ds.nonmem_item.values)}
    rec = nd.values
    with_dur = bool(np.any(np.isfinite(rec[..., item["DUR"]])))
    with_device = bool(np.any(rec[..., item["DEVICE"]] > 0))
    head = (
        FIRST_COLUMNS
        + ["II", "ADDL", "SS"]
        + (["DUR"] if with_dur else [])
        + ["MDV", "DV"]
        + (["DEVICE"] if with_device else [])
        + cov_head
    )
    ot = ds.nonmem_observations.transpose("subject", "nonmem_observation").values
    pre = ds.nonmem_predose.transpose("subject", "nonmem_observation").values
    dvs = ds.nonmem_dv.sel(analyte=an).transpose("subject", "nonmem_observation").values
    return FromTable(
        head, rec, item, with_dur, with_device, observations, t, c, ot, pre, dvs
    )


@dataclass(frozen=True)
class FromSimulate:
    """A ``simulate`` Dataset: its dose table (one record per dose) and one
    observation record per output time."""

    head: list
    keep: np.ndarray  # the doses written (a scenario's padding left out)
    routes: list  # route per dose of keep
    cmt_by_route: dict
    devices: np.ndarray
    with_device: bool
    ds: xr.Dataset
    t: np.ndarray
    c: np.ndarray  # (subject, time)

    def rows(self, s: int, sid, cv: list) -> list:
        """Subject ``s``'s CSV rows, in time order."""
        ds, devices = self.ds, self.devices
        nodev = ["."] if self.with_device else []
        recs = []
        for i, route in zip(self.keep, self.routes, strict=True):
            amt = float(ds.dose_mg.values[s, i])
            dur = float(ds.dose_duration.values[i])
            rate = amt / dur if np.isfinite(dur) else 0.0
            dev = (
                [int(devices[i]) if devices[i] > 0 else "."] if self.with_device else []
            )
            recs.append(
                (
                    float(ds.dose_time.values[i]),
                    1,
                    [
                        sid,
                        _num(ds.dose_time.values[i]),
                        1,
                        _num(amt),
                        _num(rate),
                        self.cmt_by_route[route],
                        1,
                        ".",
                    ]
                    + dev
                    + cv,
                )
            )
        for j in range(self.t.size):
            recs.append(
                (
                    float(self.t[j]),
                    2,
                    obs_row(sid, self.t[j], self.c[s, j], cv, nodev, []),
                )
            )
        return in_time_order(recs)


def simulate_layout(
    ds: xr.Dataset,
    cov_head: list,
    cmt_by_route: dict | None,
    c: np.ndarray,
    t: np.ndarray,
) -> FromSimulate:
    """The layout that writes a ``simulate`` Dataset; CMT by ``cmt_by_route``
    (default 1, 2, ... in order of first use)."""
    if "dose_route" in ds:  # a scenario's padding doses have no time
        keep = np.flatnonzero(np.isfinite(ds.dose_time.values.astype(float)))
    else:
        keep = np.array([], dtype=int)
    routes = [str(ds.dose_route.values[i]) for i in keep]
    cmt_by_route = cmt_by_route or {
        r: i + 1 for i, r in enumerate(dict.fromkeys(routes))
    }
    missing = [r for r in dict.fromkeys(routes) if r not in cmt_by_route]
    if missing:
        raise ValueError(
            f"cmt_by_route has no CMT for route {missing[0]!r} (given: {cmt_by_route})"
        )
    devices = (
        ds.dose_device.values
        if "dose_device" in ds
        else np.zeros(ds.sizes.get("dose", 0), dtype=np.int64)
    )
    with_device = bool(np.any(devices[keep] > 0)) if keep.size else False
    head = (
        FIRST_COLUMNS + ["MDV", "DV"] + (["DEVICE"] if with_device else []) + cov_head
    )
    return FromSimulate(
        head, keep, routes, cmt_by_route, devices, with_device, ds, t, c
    )
