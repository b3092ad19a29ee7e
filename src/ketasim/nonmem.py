"""NONMEM-style event tables: read dosing records into per-subject regimens, write
simulated results back in the same layout.

Columns (case-insensitive): ID, TIME (h), EVID (0 observation, 1 dose, 2 other —
ignored), AMT (mg), RATE (mg/h; 0 bolus; -2 duration from DUR, h), CMT, II (h), ADDL,
SS (0, 1, 2), MDV (1 on an EVID 0 row: not an observation), DV, DEVICE (position of
a nasal-spray device within its session, 1, 2, ...; required for routes whose
absorption depends on it), and covariate columns (WT/WEIGHT, AGE, HT/HEIGHT, BMI,
FEMALE, ASIAN, JAPANESE; the first value per subject is used). Row numbers in errors
count the header as row 1, so they match a spreadsheet or ``nl -ba``.

Steady state (SS = 1 or 2) is exact for linear models: the state just before the
steady-state dose is ``x_ss = (I - E(II))^-1 b``, with ``E(II) = expm(A II)`` and
``b`` the state one interval after a single dose from zero, both for that subject.
Each SS record adds its own steady state (SS = 1 only on a subject's first dose).
A dose whose input outlasts II (an infusion, zero-order absorption or lag longer
than the interval) has overlapping doses at steady state, which is not implemented:
it is rejected.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .dosing import Dose, Regimen
from .model import Model
from .modelfile import load_model

__all__ = ["EventTable", "read_nonmem", "simulate_nonmem", "write_nonmem"]

COVARIATE_COLUMNS = {"WT": "weight", "WEIGHT": "weight", "AGE": "age",
                     "HT": "height", "HEIGHT": "height", "BMI": "bmi",
                     "FEMALE": "female", "ASIAN": "asian", "JAPANESE": "japanese"}
KNOWN = {"ID", "TIME", "EVID", "AMT", "RATE", "CMT", "II", "ADDL", "SS", "MDV", "DV",
         "DUR", "DEVICE"}


@dataclass(frozen=True)
class EventTable:
    """Per-subject regimens, covariates, observation times and steady-state doses."""

    ids: tuple
    regimens: dict
    covariates: dict[str, np.ndarray]
    observations: dict
    # id -> [(dose index, II, SS), ...] in time order
    steady_state: dict = field(default_factory=dict)


def _route_map(model: Model, route_by_cmt):
    if route_by_cmt is not None:
        return {int(k): v for k, v in route_by_cmt.items()}
    iv = [r for r in model.routes.values() if r.intravenous]
    if not iv:
        raise ValueError(f"model {model.id!r} has no intravenous route; give "
                         "route_by_cmt={1: 'oral', ...} to map CMT to routes")
    return {1: iv[0].name}


def read_nonmem(source, model, *, route_by_cmt: dict | None = None) -> EventTable:
    """Read a NONMEM-style CSV (path) into an :class:`EventTable`.

    ``route_by_cmt`` maps CMT numbers to model routes; default ``{1: <the model's
    intravenous route>}``. Malformed rows raise ``ValueError`` naming the row, the
    column and the reason; nothing is dropped silently.
    """
    model = load_model(model)
    routes = _route_map(model, route_by_cmt)
    path = Path(source)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip().upper() for h in rows[0]]
    for need in ("ID", "TIME", "EVID", "AMT"):
        if need not in header:
            raise ValueError(f"{path}: row 1 (header) has no {need} column; found "
                             f"{', '.join(header)}")
    col = {h: i for i, h in enumerate(header)}
    known = ", ".join(sorted(KNOWN | set(COVARIATE_COLUMNS)))
    for h in header:
        if h not in KNOWN and h not in COVARIATE_COLUMNS:
            raise ValueError(f"{path}: row 1 (header): unknown column {h!r}; "
                             f"known: {known}")

    def num(r, i, name, default=None):
        if name not in col:
            return default
        text = r[col[name]].strip()
        if text in ("", "."):
            return default
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{path}: row {i}: column {name} is not a number: "
                             f"{text!r}") from None
        if not np.isfinite(v):
            raise ValueError(f"{path}: row {i}: column {name} must be finite; got "
                             f"{text!r}")
        return v

    def whole(r, i, name, default=None):
        v = num(r, i, name, default)
        if v is not None and not float(v).is_integer():
            raise ValueError(f"{path}: row {i}: column {name} must be a whole number; "
                             f"got {r[col[name]].strip()!r}")
        return None if v is None else int(v)

    def given(r, name):
        return name in col and r[col[name]].strip() not in ("", ".")

    ids: list = []
    doses: dict = {}
    obs: dict = {}
    cov: dict = {}
    ss: dict = {}
    last_time: dict = {}
    for i, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(header):
            raise ValueError(f"{path}: row {i}: {len(r)} fields, the header has "
                             f"{len(header)}")
        sid = num(r, i, "ID")
        t = num(r, i, "TIME")
        if sid is None or t is None:
            raise ValueError(f"{path}: row {i}: ID and TIME are required")
        sid = int(sid) if float(sid).is_integer() else sid
        if t < 0:
            raise ValueError(f"{path}: row {i}: TIME must be >= 0 h; got {t:g}")
        if sid not in doses:
            ids.append(sid)
            doses[sid], obs[sid] = [], []
            for h, name in COVARIATE_COLUMNS.items():
                if h in col:
                    cov.setdefault(name, {})[sid] = num(r, i, h)
        if t < last_time.get(sid, -np.inf):
            raise ValueError(f"{path}: row {i}: TIME {t:g} h is before the previous "
                             f"record of ID {sid} ({last_time[sid]:g} h); sort each "
                             "subject's records by time")
        last_time[sid] = t
        if "EVID" in col and not given(r, "EVID"):
            raise ValueError(f"{path}: row {i}: EVID is empty; write 0 (observation), "
                             "1 (dose) or 2 (other)")
        evid = whole(r, i, "EVID", 0)
        if evid in (0, 2):
            for name in ("AMT", "RATE", "DUR", "II", "ADDL", "SS", "DEVICE"):
                if given(r, name) and num(r, i, name) != 0:
                    raise ValueError(f"{path}: row {i}: {name} is set on an EVID "
                                     f"{evid} record (not a dose); make it a dose "
                                     "record (EVID 1) or clear the column")
        if evid == 0 and whole(r, i, "MDV", 0) == 0:
            obs[sid].append(t)
            continue
        if evid in (0, 2):
            continue
        if evid != 1:
            raise ValueError(f"{path}: row {i}: EVID {evid:g} is not supported "
                             "(0 observation, 1 dose, 2 other); resets (3, 4) are not "
                             "implemented")
        amt = num(r, i, "AMT")
        if amt is None or amt <= 0:
            raise ValueError(f"{path}: row {i}: a dose needs AMT > 0 mg; got "
                             f"{r[col['AMT']]!r}")
        cmt = whole(r, i, "CMT", 1)
        if cmt not in routes:
            raise ValueError(f"{path}: row {i}: CMT {cmt} has no route; map it with "
                             f"route_by_cmt (now {routes})")
        rate = num(r, i, "RATE", 0.0)
        dur = None
        if given(r, "DUR") and rate != -2:
            raise ValueError(f"{path}: row {i}: DUR is set but RATE is {rate:g}; a "
                             "duration applies with RATE = -2")
        if rate == -2:
            dur = num(r, i, "DUR")
            if dur is None or dur <= 0:
                raise ValueError(f"{path}: row {i}: RATE = -2 needs DUR > 0 h")
        elif rate > 0:
            dur = amt / rate
        elif rate != 0:
            raise ValueError(f"{path}: row {i}: RATE must be 0, > 0 or -2; got "
                             f"{rate:g}")
        ii = num(r, i, "II", 0.0)
        addl = whole(r, i, "ADDL", 0)
        ssv = whole(r, i, "SS", 0)
        device = whole(r, i, "DEVICE") or None  # 0: not a device dose
        if ii < 0:
            raise ValueError(f"{path}: row {i}: II must be >= 0 h; got {ii:g}")
        if addl < 0 or (addl > 0 and ii <= 0):
            raise ValueError(f"{path}: row {i}: ADDL {addl} needs II > 0 h; got "
                             f"II {ii:g}")
        if ssv not in (0, 1, 2):
            raise ValueError(f"{path}: row {i}: SS must be 0, 1 or 2; got {ssv}")
        if ssv and ii <= 0:
            raise ValueError(f"{path}: row {i}: SS {ssv} needs II > 0 h")
        if ssv == 1 and doses[sid]:
            raise ValueError(f"{path}: row {i}: SS = 1 resets the subject, which is "
                             "supported only on its first dose record; use SS = 2")
        route = routes[cmt]
        if model.routes[route].device_mg is not None and device is None:
            fix = ("give this dose's DEVICE" if "DEVICE" in col
                   else "add a DEVICE column")
            raise ValueError(
                f"{path}: row {i}: route {route!r} of model {model.id!r} absorbs "
                f"per device (less from the second of a session): {fix}, 1 for "
                f"the first device of a session, 2, 3, ... after it")
        try:
            d = Dose((amt, "mg"), route=route, time=t, duration=dur, device=device)
        except ValueError as exc:
            raise ValueError(f"{path}: row {i}: {exc}") from None
        if ssv:
            ss.setdefault(sid, []).append((d, ii, ssv))
        doses[sid] += [d] + [d.at(t + k * ii) for k in range(1, addl + 1)]
    regimens = {}
    steady = {}
    for sid in ids:
        ds = sorted(doses[sid], key=lambda d: d.time)
        regimens[sid] = Regimen(ds)
        if sid in ss:  # the SS doses' places after sorting in the ADDL copies
            steady[sid] = [(next(k for k, x in enumerate(ds) if x is d), ii, v)
                           for d, ii, v in ss[sid]]
    covs = {name: np.array([v.get(sid, np.nan) for sid in ids], dtype=float)
            for name, v in cov.items()}
    for name, v in covs.items():
        if np.any(np.isnan(v)):
            raise ValueError(f"{path}: covariate {name} is missing for ID "
                             f"{ids[int(np.argmax(np.isnan(v)))]}")
    return EventTable(tuple(ids), regimens, covs,
                      {k: np.array(v) for k, v in obs.items()}, steady)


def simulate_nonmem(model, table: EventTable, *, times=None) -> xr.Dataset:
    """Simulate every subject of ``table`` (its own regimen and covariates), at its
    observation times (or ``times``), with exact steady state for SS records.
    Returns a Dataset with ``subject`` = the table's IDs on the union of all
    subjects' observation times (or ``times``), and ``observed_time`` (subject,
    time), True where that subject has an observation record. It has no dose
    table (each subject has its own regimen), so ``write_nonmem`` writes its
    observation records only."""
    from ._kernels.linear import population_linear, states
    from ._lower import lower
    from .simulate import _check_times, _subjects

    model = load_model(model)
    if not model.linear_time_invariant:
        raise ValueError("simulate_nonmem needs a linear time-invariant model")
    all_t = times if times is not None else np.unique(np.concatenate(
        [v for v in table.observations.values() if v.size] or [np.array([0.0])]))
    t = _check_times(all_t)
    # validity: once for the whole table, not once per subject
    _subjects(model, dict(table.covariates), None)
    out = np.empty((len(table.ids), len(model.analytes), t.size))
    for k, sid in enumerate(table.ids):
        cov = {n: v[k] for n, v in table.covariates.items()}
        n, c, over = _subjects(model, cov, None, warn=False)
        params = model.individual_parameters(c, overrides=over, n=1)
        reg = table.regimens[sid]
        low = lower(model, reg, params, c["weight"], 1)
        ev = [low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value]
        for spec in table.steady_state.get(sid, ()):
            ev = _with_steady_state(model, reg, params, c, low, ev, spec)
        status = np.zeros(1, dtype=np.int64)
        buf = np.empty((1, len(model.analytes), t.size))
        population_linear(low.A, *ev, t, low.obs_cmt, low.obs_scale, buf, status,
                          states(low.A.shape[2]), states(low.A.shape[2]))
        out[k] = buf[0]
    seen = np.array([np.isin(t, table.observations[sid]) for sid in table.ids])
    ds = xr.Dataset(
        {"concentration": (("subject", "analyte", "time"), out,
                           {"units": "ng/mL", "long_name": "plasma concentration"}),
         "observed_time": (("subject", "time"), seen,
                           {"long_name": "the subject has an observation record at "
                            "this time"})},
        coords={"subject": list(table.ids), "analyte": list(model.analyte_names),
                "time": ("time", t, {"units": "h"})},
        attrs={"model_id": model.id, "source": "NONMEM event table"})
    for name, v in table.covariates.items():
        ds.coords[name] = ("subject", v)
    return ds


def _with_steady_state(model, reg, params, cov, low, ev, spec):
    """Events plus the exact steady-state state added as boluses just before the
    SS dose (the kernel then continues exactly)."""
    import scipy.linalg

    from ._lower import lower

    idx, ii, _ = spec
    d = reg.doses[idx]
    one = lower(model, Regimen([d.at(0.0)]), params, cov["weight"], 1)
    if one.ev_time.size and one.ev_time.max() > ii:
        raise ValueError(
            f"steady state (SS) at {d.time:g} h: the dose's input lasts "
            f"{one.ev_time.max():g} h (infusion, zero-order absorption or lag), longer "
            f"than II = {ii:g} h, so doses overlap at steady state, which is not "
            f"implemented; give the doses explicitly (ADDL) instead of SS")
    # state one interval after a single dose from zero, via the exact propagator
    A = one.A[0, 0]
    n = A.shape[0]
    x = np.zeros(n)
    tcur = 0.0
    r = np.zeros(n)
    times = list(one.ev_time[0]) + [ii]
    kinds = list(one.ev_kind[0]) + [-1]
    for te, kd, cm, vl in zip(times, kinds, list(one.ev_cmt[0]) + [0],
                              list(one.ev_value[0]) + [0.0], strict=True):
        te = min(te, ii)
        h = te - tcur
        if h > 0:
            M = np.zeros((2 * n, 2 * n))
            M[:n, :n] = A * h
            M[:n, n:] = np.eye(n) * h
            P = scipy.linalg.expm(M)
            x = P[:n, :n] @ x + P[:n, n:] @ r
            tcur = te
        if kd == 0:
            x[cm] += vl
        elif kd == 1:
            r[cm] += vl
    E = scipy.linalg.expm(A * ii)
    x_ss = np.linalg.solve(np.eye(n) - E, x)
    # compartments of `one` and `low` may differ (pruning): map by name
    names_low = list(low.compartments)
    add_t, add_c, add_v = [], [], []
    for j, name in enumerate(one.compartments):
        if x_ss[j] != 0.0:
            add_t.append(d.time)
            add_c.append(names_low.index(name))
            add_v.append(x_ss[j])
    et = np.concatenate([np.array(add_t), ev[0][0]])
    ec = np.concatenate([np.array(add_c, dtype=np.int64), ev[1][0]])
    ek = np.concatenate([np.zeros(len(add_t), dtype=np.int64), ev[2][0]])
    evv = np.concatenate([np.array(add_v), ev[3][0]])
    order = np.argsort(et, kind="stable")  # the state comes before the SS dose
    return [a[order][None, :].copy() for a in (et, ec, ek, evv)]


def write_nonmem(ds: xr.Dataset, path, *, analyte: str | None = None,
                 cmt_by_route: dict | None = None) -> Path:
    """Write a simulation Dataset as a NONMEM-style CSV: per subject its dose
    records (AMT in mg of base actually given, RATE in mg/h, CMT, and DEVICE when
    doses carry one) and one observation record per output time with DV =
    concentration (ng/mL) of ``analyte``. A Dataset with several analytes needs
    ``analyte=`` (one DV per file); a scenario Dataset needs one scenario selected.
    A Dataset without a dose table (``simulate_nonmem``'s) gives observation
    records only."""
    if "scenario" in ds.dims:
        raise ValueError(f"write_nonmem writes one scenario; select it first, e.g. "
                         f"ds.sel(scenario={str(ds.scenario.values[0])!r})")
    names = [str(a) for a in ds.analyte.values]
    if analyte is None:
        from .metrics import present_analytes

        have = present_analytes(ds)
        if len(have) > 1:
            raise ValueError(f"this Dataset has {len(have)} analytes "
                             f"({', '.join(have)}); a NONMEM file holds one DV: pass "
                             f"analyte=... (and write one file per analyte)")
        an = have[0] if have else names[0]
    elif analyte not in names:
        raise ValueError(f"no analyte {analyte!r}; the Dataset has "
                         f"{', '.join(names)}")
    else:
        an = analyte
    if "dose_route" in ds:  # a scenario's padding doses have no time
        keep = np.flatnonzero(np.isfinite(ds.dose_time.values.astype(float)))
    else:
        keep = np.array([], dtype=int)
    routes = [str(ds.dose_route.values[i]) for i in keep]
    cmt_by_route = cmt_by_route or {r: i + 1 for i, r in
                                    enumerate(dict.fromkeys(routes))}
    devices = (ds.dose_device.values if "dose_device" in ds
               else np.zeros(ds.sizes.get("dose", 0), dtype=np.int64))
    with_device = bool(np.any(devices[keep] > 0)) if keep.size else False
    c = ds.concentration.sel(analyte=an).values
    # a scenario's padding subjects have no status (NaN); failed subjects
    # (errors="keep") are written, their missing values with MDV 1
    status = (ds.status.values.astype(float) if "status" in ds
              else np.zeros(ds.sizes["subject"]))
    rows = [s for s in range(ds.sizes["subject"]) if np.isfinite(status[s])]
    covs = [k for k in ("weight", "age", "height", "bmi", "female", "asian",
                        "japanese")  # those known for every subject written
            if k in ds.coords and np.all(np.isfinite(ds[k].values[rows]))]
    head = ["ID", "TIME", "EVID", "AMT", "RATE", "CMT", "MDV", "DV"] + \
        (["DEVICE"] if with_device else []) + [
        {"weight": "WT", "age": "AGE", "height": "HT"}.get(c, c.upper()) for c in covs]
    t = ds.time.values
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for s in rows:
            sid = ds.subject.values[s]
            cv = [_num(ds[k].values[s]) for k in covs]
            nodev = ["."] if with_device else []
            recs = []
            for i, route in zip(keep, routes, strict=True):
                amt = float(ds.dose_mg.values[s, i])
                dur = float(ds.dose_duration.values[i])
                rate = amt / dur if np.isfinite(dur) else 0.0
                dev = [int(devices[i]) if devices[i] > 0 else "."] if with_device \
                    else []
                recs.append((float(ds.dose_time.values[i]), 0, [
                    sid, _num(ds.dose_time.values[i]), 1, _num(amt), _num(rate),
                    cmt_by_route[route], 1, "."] + dev + cv))
            for j in range(t.size):
                dv = [0, _num(c[s, j])] if np.isfinite(c[s, j]) else [1, "."]
                recs.append((float(t[j]), 1, [sid, _num(t[j]), 0, ".", ".", "."] +
                             dv + nodev + cv))
            for _, _, row in sorted(recs, key=lambda x: (x[0], x[1])):
                w.writerow(row)
    return path


def _num(x) -> str:
    """The shortest text that reads back as the same float (70.1, not
    70.099999999999994)."""
    return repr(float(x))

