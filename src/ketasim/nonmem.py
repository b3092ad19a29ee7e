"""NONMEM-style event tables: read dosing records into per-subject regimens, write
simulated results back in the same layout.

Columns (case-insensitive): ID, TIME (h), EVID (0 observation, 1 dose, 2 other —
ignored), AMT (mg), RATE (mg/h; 0 bolus; -2 duration from DUR, h), CMT, II (h), ADDL,
SS (0, 1, 2), MDV (0 or 1; 1 on an EVID 0 row: not an observation), DV, DEVICE
(position of a nasal-spray device within its session, 1, 2, ...; required for routes
whose absorption depends on it), and covariate columns (WT/WEIGHT, AGE, HT/HEIGHT,
BMI, FEMALE, ASIAN, JAPANESE; one value per subject: a covariate that changes within
a subject is an error, time-varying covariates are not supported yet). Each
subject's records are contiguous (an ID that comes back after another is an error,
where NONMEM would start a new individual). Errors name the file, the line (1-based
line of the file, the header being line 1, so they match a spreadsheet or
``nl -ba``), the ID and the column; :func:`read_nonmem` lists every rule.

Records at one TIME keep NONMEM's order: an observation listed before a dose is
the level just before it (a baseline or trough sample), one listed after it the
level after. A table read, simulated with :func:`simulate_nonmem` and written with
:func:`write_nonmem` reads back as the same table: every record in its order (EVID
0 with MDV 0, 1 or empty, EVID 1, EVID 2), each column as read (an empty cell is
written as ``.``), the covariates, and the simulated DV on each observation.

A covariate the model uses (a covariate effect, or weight for per-kg parameters)
must have its column (WT, AGE, ...; weight may also come from HT and BMI):
:func:`simulate_nonmem` refuses a table without it rather than give every
subject the model's reference value. Doses whose concentrations or AUC would
overflow are refused by file line, ID and AMT, as ``simulate`` refuses them.

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

from ._validate import covariate_values
from .dosing import MAX_TIME_H, Dose, Regimen
from .model import Model
from .modelfile import load_model

__all__ = ["MAX_DOSES_PER_SUBJECT", "DoseRecord", "EventTable", "Record",
           "read_nonmem", "simulate_nonmem", "write_nonmem"]

MAX_DOSES_PER_SUBJECT = 100_000
"""Most dose records one subject may expand to (its records plus their ADDL
copies): a bound on memory and time, far above any real course."""

COVARIATE_COLUMNS = {"WT": "weight", "WEIGHT": "weight", "AGE": "age",
                     "HT": "height", "HEIGHT": "height", "BMI": "bmi",
                     "FEMALE": "female", "ASIAN": "asian", "JAPANESE": "japanese"}
KNOWN = {"ID", "TIME", "EVID", "AMT", "RATE", "CMT", "II", "ADDL", "SS", "MDV", "DV",
         "DUR", "DEVICE"}
# the columns of a dose record as read, in the order write_nonmem keeps them
DOSE_ITEMS = ("TIME", "AMT", "RATE", "DUR", "CMT", "II", "ADDL", "SS", "DEVICE")
# the columns of every record as read (Record), in the order simulate_nonmem
# stores them (nonmem_records) for write_nonmem
RECORD_ITEMS = ("TIME", "EVID", "MDV", "AMT", "RATE", "DUR", "CMT", "II", "ADDL",
                "SS", "DEVICE")
# covariate name -> the column write_nonmem writes and errors suggest
COVARIATE_COLUMN = {"weight": "WT", "age": "AGE", "height": "HT", "bmi": "BMI",
                    "female": "FEMALE", "asian": "ASIAN", "japanese": "JAPANESE"}
COVARIATE_UNIT = {"weight": "kg", "age": "y", "height": "cm", "bmi": "kg/m^2",
                  "female": "0 or 1", "asian": "0 or 1", "japanese": "0 or 1"}


@dataclass(frozen=True)
class DoseRecord:
    """One EVID 1 record as read, before its ADDL copies are expanded.

    ``time`` (h), ``amt`` (mg), ``rate`` (mg/h; 0 bolus, -2 duration from
    ``dur``), ``dur`` (h, only with RATE -2, else None), ``cmt``, ``ii`` (h),
    ``addl``, ``ss`` (0, 1, 2), ``device`` (None when not a device dose) and
    ``line``, the record's line in the file (1-based, the header is line 1).
    """

    time: float
    amt: float
    rate: float
    dur: float | None
    cmt: int
    ii: float
    addl: int
    ss: int
    device: int | None
    line: int

    def items(self) -> tuple:
        """The record's values in :data:`DOSE_ITEMS` order (NaN for no DUR or
        DEVICE)."""
        return (self.time, self.amt, self.rate,
                np.nan if self.dur is None else self.dur, self.cmt, self.ii,
                self.addl, self.ss, np.nan if self.device is None else self.device)


@dataclass(frozen=True)
class Record:
    """One record of the table as read, whatever its EVID: the value of each
    column (None where the column is absent or empty, ``.``).

    ``time`` (h), ``evid`` (0, 1, 2), ``mdv`` (0, 1 or None), ``amt`` (mg),
    ``rate`` (mg/h), ``dur`` (h), ``cmt``, ``ii`` (h), ``addl``, ``ss``,
    ``device`` and ``line``, the record's line in the file (1-based, the header
    is line 1). Values are as written in the file, not defaulted: a dose record
    without RATE has ``rate`` None (a bolus), an observation its CMT as read.
    """

    time: float
    evid: int
    mdv: int | None
    amt: float | None
    rate: float | None
    dur: float | None
    cmt: int | None
    ii: float | None
    addl: int | None
    ss: int | None
    device: int | None
    line: int

    def items(self) -> tuple:
        """The values in :data:`RECORD_ITEMS` order, NaN for None."""
        return tuple(np.nan if v is None else float(v) for v in (
            self.time, self.evid, self.mdv, self.amt, self.rate, self.dur, self.cmt,
            self.ii, self.addl, self.ss, self.device))


@dataclass(frozen=True)
class EventTable:
    """Per-subject regimens, covariates, observation times and steady-state doses.

    ``regimens`` has every dose (ADDL copies expanded); ``records`` the dose
    records as read (id -> tuple of :class:`DoseRecord`), which ``write_nonmem``
    writes back; ``observations`` each subject's observation times (h), one per
    observation record, in file order (repeats kept); ``predose`` per
    observation, True when the record comes before a dose record at its time (as
    in NONMEM, the level just before that dose). ``rows`` has every record as
    read, in file order (id -> tuple of :class:`Record`: observations, MDV 1 and
    EVID 2 records too), which ``write_nonmem`` writes back; ``dose_lines`` per
    dose of ``regimens`` (in its order) the line of the record it comes from and
    its ADDL copy number (0: the record's own dose); ``source`` the file read.
    """

    ids: tuple
    regimens: dict
    covariates: dict[str, np.ndarray]
    observations: dict
    # id -> [(dose index, II, SS), ...] in time order
    steady_state: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    # id -> bool per observation: listed before a dose record at its time
    predose: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    # id -> ((line, ADDL copy), ...) per dose of regimens[id]
    dose_lines: dict = field(default_factory=dict)
    source: str = ""


def _route_map(model: Model, route_by_cmt):
    if route_by_cmt is not None:
        if not isinstance(route_by_cmt, dict):
            raise TypeError(f"route_by_cmt must be a dict {{CMT: route}}, e.g. "
                            f"{{1: 'iv'}}; got {type(route_by_cmt).__name__}")
        out = {}
        for k, v in route_by_cmt.items():
            if isinstance(k, bool) or not isinstance(k, int | np.integer):
                raise TypeError(f"route_by_cmt keys are CMT numbers (int); got "
                                f"{k!r} ({type(k).__name__})")
            if not isinstance(v, str) or v not in model.routes:
                raise ValueError(f"route_by_cmt[{k}] = {v!r} is not a route of "
                                 f"model {model.id!r}; its routes: "
                                 f"{', '.join(model.routes)}")
            out[int(k)] = v
        return out
    iv = [r for r in model.routes.values() if r.intravenous]
    if not iv:
        raise ValueError(f"model {model.id!r} has no intravenous route; give "
                         "route_by_cmt={1: 'oral', ...} to map CMT to routes")
    return {1: iv[0].name}


def _lines(lines) -> str:
    """``[2, 3, 4, 7]`` -> ``"lines 2-4, 7"`` (the first ranges only when many)."""
    runs: list[list[int]] = []
    for x in sorted(lines):
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:6]]
    more = ", ..." if len(runs) > 6 else ""
    word = "line" if len(lines) == 1 else "lines"
    return f"{word} {', '.join(text)}{more}"


def read_nonmem(source, model, *, route_by_cmt: dict | None = None) -> EventTable:
    """Read a NONMEM-style CSV event table into an :class:`EventTable`.

    Parameters
    ----------
    source : str or Path
        The CSV file: a header line, then one record per line.
    model : str, Path or Model
        The model the doses are for (it supplies the routes).
    route_by_cmt : dict, optional
        CMT number -> route of ``model``; default ``{1: <the model's intravenous
        route>}``.

    Returns
    -------
    EventTable
        Per subject (in file order): the regimen (ADDL copies expanded), the
        dose records as read, the observation times (h) and the covariates.

    Notes
    -----
    Columns (case-insensitive; any other column is an error, and so is a column
    given twice, also under two names such as WT and WEIGHT):

    - ID (required): a number; all records of one subject must be contiguous.
      NONMEM starts a new individual when an ID comes back after another ID;
      ketasim labels subjects by ID, so an ID that comes back is an error (give
      that individual its own ID).
    - TIME (required, h): finite, >= 0 and nondecreasing within a subject, as
      PREDPP requires (no resets).
    - EVID (required): 0 observation, 1 dose, 2 other event (ignored; with a
      CMT it would switch a compartment on or off, which is refused). Resets
      (3, 4) and any other value are errors.
    - MDV: 0 or 1 (values such as 2, -1, 0.5, or NONMEM 7's 100/101, are
      errors). An EVID 0 record with MDV 1 is not an observation. PREDPP needs
      MDV 1 on EVID 1 and 2 records; MDV 0 there is an error.
    - AMT (mg, > 0), RATE (mg/h; 0 bolus, > 0 infusion, -2 duration from DUR in
      h; -1, a modelled rate, is an error), CMT (a whole number mapped by
      ``route_by_cmt``), II (h, >= 0), ADDL (whole, >= 0, needs II > 0),
      SS (0, 1, 2; SS 1 only on a subject's first dose), DEVICE (0 or empty: not
      a device dose; 1, 2, ...: the device's place in its session; required for
      a route that absorbs per device, refused on any other route). On EVID 0
      and 2 records the dose columns must be empty or 0.
    - DV: ignored, but must be empty or a finite number.
    - Covariates WT/WEIGHT (kg), AGE (y), HT/HEIGHT (cm), BMI (kg/m^2), FEMALE,
      ASIAN, JAPANESE: one value per subject, given on every record. A
      covariate that changes within a subject (time-varying covariates are not
      supported yet) or is empty on some of its records is an error naming the
      column, the ID and the lines; nothing is reduced to a first value. Values
      must be plausible (the ranges ``simulate`` accepts; flags 0 or 1).

    Every dose expands to its record plus ADDL copies; a subject may have at
    most :data:`MAX_DOSES_PER_SUBJECT` (100 000) doses in all.

    Order at one TIME follows NONMEM: an observation record before a dose record
    at its time is the level just before the dose (``predose``; e.g. a baseline
    or trough sample listed before the dose), one after it the level after it.
    An observation between two dose records at one time is an error. An
    observation at the time of an ADDL copy is the level after that copy.

    Errors are ``ValueError`` naming the file, the line (1-based line of the
    file; the header is line 1, so it matches a spreadsheet's row number or
    ``nl -ba``), the subject's ID and the column. Nothing is dropped silently.
    """
    model = load_model(model)
    routes = _route_map(model, route_by_cmt)
    path = Path(source)
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first name
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = []  # (line where the record starts, fields)
        prev = 0
        for r in reader:
            rows.append((prev + 1, r))
            prev = reader.line_num
    if not rows:
        raise ValueError(f"{path}: empty file; the first line must be a header "
                         "(ID,TIME,EVID,AMT,...)")
    header = [h.strip().upper() for h in rows[0][1]]
    known = ", ".join(sorted(KNOWN | set(COVARIATE_COLUMNS)))
    for k, h in enumerate(header):
        if h not in KNOWN and h not in COVARIATE_COLUMNS:
            raise ValueError(f"{path}: line 1 (header), column {k + 1}: unknown "
                             f"column {h!r}; known: {known}")
        if h in header[:k]:
            raise ValueError(f"{path}: line 1 (header): column {h} is given twice "
                             f"(columns {header.index(h) + 1} and {k + 1}); keep one")
        same = [g for g in header[:k] if COVARIATE_COLUMNS.get(g, g) ==
                COVARIATE_COLUMNS.get(h)]
        if same:
            raise ValueError(f"{path}: line 1 (header): columns {same[0]} and {h} "
                             f"both give covariate {COVARIATE_COLUMNS[h]}; keep one")
    for need in ("ID", "TIME", "EVID", "AMT"):
        if need not in header:
            raise ValueError(f"{path}: line 1 (header) has no {need} column; found "
                             f"{', '.join(header)}")
    col = {h: i for i, h in enumerate(header)}

    def where(i, name, sid=None):
        who = "" if sid is None else f", ID {sid}"
        return f"{path}: line {i}{who}, column {name}"

    def num(r, i, name, sid, default=None):
        if name not in col:
            return default
        text = r[col[name]].strip()
        if text in ("", "."):
            return default
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{where(i, name, sid)}: not a number: {text!r}") \
                from None
        if not np.isfinite(v):
            raise ValueError(f"{where(i, name, sid)}: must be finite; got {text!r}")
        return v

    def whole(r, i, name, sid, default=None):
        v = num(r, i, name, sid, default)
        if v is not None and not float(v).is_integer():
            raise ValueError(f"{where(i, name, sid)}: must be a whole number; got "
                             f"{r[col[name]].strip()!r}")
        return None if v is None else int(v)

    def given(r, name):
        return name in col and r[col[name]].strip() not in ("", ".")

    def record(r, i, sid, t, evid, mdv):
        """The record as read (after its checks): every column's value or None."""
        return Record(t, evid, mdv, num(r, i, "AMT", sid), num(r, i, "RATE", sid),
                      num(r, i, "DUR", sid), whole(r, i, "CMT", sid),
                      num(r, i, "II", sid), whole(r, i, "ADDL", sid),
                      whole(r, i, "SS", sid), whole(r, i, "DEVICE", sid), i)

    ids: list = []
    doses: dict = {}
    records: dict = {}
    table_rows: dict = {}  # id -> [Record, ...] in file order
    lines: dict = {}  # id -> [(line, ADDL copy), ...] parallel to doses[id]
    obs: dict = {}
    # id -> {time: [index into obs[id], ...]}: observations no dose at their time
    # has followed yet (before one, they are pre-dose levels)
    waiting: dict = {}
    after_dose: dict = {}  # id -> {time: [line, ...]}: observations after a dose
    dose_times: dict = {}  # id -> times of its dose records
    predose: dict = {}  # id -> [bool per observation]
    cov_seen: dict = {}  # (id, column) -> {value or None: [line, ...]}
    ss: dict = {}
    last_time: dict = {}
    first_line: dict = {}
    n_doses: dict = {}
    current = None
    for i, r in rows[1:]:
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(header):
            raise ValueError(f"{path}: line {i}: {len(r)} fields, the header has "
                             f"{len(header)}")
        sid = num(r, i, "ID", None)
        if sid is None:
            raise ValueError(f"{where(i, 'ID')}: empty; every record needs its "
                             "subject's ID")
        sid = int(sid) if float(sid).is_integer() else sid
        if sid != current and sid in doses:
            raise ValueError(
                f"{where(i, 'ID', sid)}: ID {sid} comes back after the records of "
                f"ID {current} (its records began on line {first_line[sid]}). "
                f"NONMEM would start a new individual here; ketasim labels subjects "
                f"by ID and refuses it: give this individual its own ID, or keep "
                f"all records of ID {sid} together")
        current = sid
        t = num(r, i, "TIME", sid)
        if t is None:
            raise ValueError(f"{where(i, 'TIME', sid)}: empty; every record needs "
                             "a TIME (h)")
        if t < 0:
            raise ValueError(f"{where(i, 'TIME', sid)}: must be >= 0 h; got {t:g}")
        if sid not in doses:
            ids.append(sid)
            doses[sid], obs[sid], records[sid] = [], [], []
            table_rows[sid], lines[sid] = [], []
            waiting[sid], after_dose[sid], dose_times[sid] = {}, {}, set()
            predose[sid] = []
            first_line[sid] = i
            n_doses[sid] = 0
        for h in COVARIATE_COLUMNS:
            if h in col:
                cov_seen.setdefault((sid, h), {}).setdefault(
                    num(r, i, h, sid), []).append(i)
        num(r, i, "DV", sid)  # not used, but a non-number there is a broken file
        if t < last_time.get(sid, -np.inf):
            raise ValueError(f"{where(i, 'TIME', sid)}: {t:g} h is before the "
                             f"previous record of ID {sid} ({last_time[sid]:g} h); "
                             "sort each subject's records by time (resets, EVID 3 "
                             "and 4, are not supported)")
        last_time[sid] = t
        if not given(r, "EVID"):
            raise ValueError(f"{where(i, 'EVID', sid)}: empty; write 0 "
                             "(observation), 1 (dose) or 2 (other)")
        evid = whole(r, i, "EVID", sid)
        if evid not in (0, 1, 2):
            raise ValueError(f"{where(i, 'EVID', sid)}: EVID {evid} is not "
                             "supported (0 observation, 1 dose, 2 other); resets "
                             "(3, 4) are not implemented")
        mdv = whole(r, i, "MDV", sid)
        if mdv is not None and mdv not in (0, 1):
            raise ValueError(f"{where(i, 'MDV', sid)}: must be 0 (observation) or 1 "
                             f"(no observation); got {r[col['MDV']].strip()!r}")
        if evid in (0, 2):
            for name in ("AMT", "RATE", "DUR", "II", "ADDL", "SS", "DEVICE"):
                if given(r, name) and num(r, i, name, sid) != 0:
                    raise ValueError(f"{where(i, name, sid)}: set on an EVID {evid} "
                                     "record (not a dose); make it a dose record "
                                     "(EVID 1) or clear the column")
            whole(r, i, "CMT", sid)
        if evid in (1, 2) and mdv == 0:
            raise ValueError(f"{where(i, 'MDV', sid)}: MDV 0 on an EVID {evid} "
                             "record; NONMEM (PREDPP) needs MDV 1 on dose and other "
                             "records: write 1, and put an observation on its own "
                             "EVID 0 record")
        if evid == 2 and (whole(r, i, "CMT", sid) or 0) != 0:
            raise ValueError(f"{where(i, 'CMT', sid)}: CMT on an EVID 2 record "
                             "switches a compartment on or off in NONMEM, which "
                             "ketasim does not implement; clear CMT (or 0)")
        if evid in (0, 2):
            table_rows[sid].append(record(r, i, sid, t, evid, mdv))
        if evid == 0:
            if not mdv:
                if t in dose_times[sid]:
                    after_dose[sid].setdefault(t, []).append(i)
                else:
                    waiting[sid].setdefault(t, []).append(len(obs[sid]))
                obs[sid].append(t)
                predose[sid].append(False)
            continue
        if evid == 2:
            continue
        if t in after_dose[sid]:
            raise ValueError(
                f"{where(i, 'TIME', sid)}: this dose at {t:g} h follows an "
                f"observation record ({_lines(after_dose[sid][t])}) that itself "
                f"follows a dose at the same time; a level between two doses given "
                f"at one time is not supported: put the observation before or after "
                f"both doses")
        for k in waiting[sid].pop(t, ()):  # NONMEM: the level before this dose
            predose[sid][k] = True
        dose_times[sid].add(t)
        amt = num(r, i, "AMT", sid)
        if amt is None or amt <= 0:
            raise ValueError(f"{where(i, 'AMT', sid)}: a dose needs AMT > 0 mg; got "
                             f"{r[col['AMT']].strip()!r}")
        cmt = whole(r, i, "CMT", sid, 1)
        if cmt not in routes:
            raise ValueError(f"{where(i, 'CMT', sid)}: CMT {cmt} maps to no route; "
                             f"map it with route_by_cmt (now {routes})")
        rate = num(r, i, "RATE", sid, 0.0)
        dur = None
        if given(r, "DUR") and rate != -2:
            raise ValueError(f"{where(i, 'DUR', sid)}: DUR is set but RATE is "
                             f"{rate:g}; a duration applies with RATE = -2")
        if rate == -2:
            dur = num(r, i, "DUR", sid)
            if dur is None or dur <= 0:
                raise ValueError(f"{where(i, 'DUR', sid)}: RATE = -2 needs DUR > 0 "
                                 "h")
        elif rate > 0:
            dur = amt / rate
            if not dur <= MAX_TIME_H:  # Dose would name `duration`, not a column
                raise ValueError(
                    f"{where(i, 'RATE', sid)}: AMT {amt:g} mg at RATE {rate:g} mg/h "
                    f"lasts {dur:.3g} h, beyond the {MAX_TIME_H:g} h ketasim "
                    f"simulates; check AMT (mg) and RATE (mg/h)")
        elif rate != 0:
            raise ValueError(f"{where(i, 'RATE', sid)}: must be 0 (bolus), > 0 "
                             f"(mg/h) or -2 (duration from DUR); got {rate:g}")
        ii = num(r, i, "II", sid, 0.0)
        addl = whole(r, i, "ADDL", sid, 0)
        ssv = whole(r, i, "SS", sid, 0)
        device = whole(r, i, "DEVICE", sid)
        if ii < 0:
            raise ValueError(f"{where(i, 'II', sid)}: must be >= 0 h; got {ii:g}")
        if addl < 0 or (addl > 0 and ii <= 0):
            raise ValueError(f"{where(i, 'ADDL', sid)}: ADDL {addl} needs II > 0 h "
                             f"and ADDL >= 0; got II {ii:g}")
        if n_doses[sid] + 1 + addl > MAX_DOSES_PER_SUBJECT:
            raise ValueError(
                f"{where(i, 'ADDL', sid)}: ADDL {addl} would give ID {sid} "
                f"{n_doses[sid] + 1 + addl} doses; at most {MAX_DOSES_PER_SUBJECT} "
                f"per subject (MAX_DOSES_PER_SUBJECT). Check ADDL; a very long "
                f"regular course is better given as a steady state (SS)")
        n_doses[sid] += 1 + addl
        if ssv not in (0, 1, 2):
            raise ValueError(f"{where(i, 'SS', sid)}: must be 0, 1 or 2; got {ssv}")
        if ssv and ii <= 0:
            raise ValueError(f"{where(i, 'SS', sid)}: SS {ssv} needs II > 0 h")
        if ssv == 1 and doses[sid]:
            raise ValueError(f"{where(i, 'SS', sid)}: SS = 1 resets the subject, "
                             "which is supported only on its first dose record; use "
                             "SS = 2")
        if device is not None and device < 0:
            raise ValueError(f"{where(i, 'DEVICE', sid)}: must be 0 (not a device "
                             f"dose) or 1, 2, ...; got {device}")
        device = device or None  # 0: not a device dose
        route = routes[cmt]
        if model.routes[route].device_mg is not None and device is None:
            fix = ("give this dose's DEVICE" if "DEVICE" in col
                   else "add a DEVICE column")
            raise ValueError(
                f"{where(i, 'DEVICE', sid)}: route {route!r} of model {model.id!r} "
                f"absorbs per device (less from the second of a session): {fix}, 1 "
                f"for the first device of a session, 2, 3, ... after it")
        if model.routes[route].device_mg is None and device is not None:
            raise ValueError(
                f"{where(i, 'DEVICE', sid)}: DEVICE {device} on route {route!r} (CMT "
                f"{cmt}) of model {model.id!r}, which does not absorb per device; "
                f"write 0 or leave it empty")
        try:
            d = Dose((amt, "mg"), route=route, time=t, duration=dur, device=device)
        except ValueError as exc:
            raise ValueError(f"{path}: line {i}, ID {sid}: {exc}") from None
        records[sid].append(DoseRecord(t, amt, rate, None if rate != -2 else dur,
                                       cmt, ii, addl, ssv, device, i))
        if ssv:
            ss.setdefault(sid, []).append((d, ii, ssv))
        doses[sid] += [d] + [d.at(t + k * ii) for k in range(1, addl + 1)]
        lines[sid] += [(i, k) for k in range(addl + 1)]
        table_rows[sid].append(record(r, i, sid, t, evid, mdv))
    if not ids:
        raise ValueError(f"{path}: no records after the header (line 1); a table "
                         "needs at least one record")
    cov: dict = {}
    for (sid, h), seen in cov_seen.items():
        name = COVARIATE_COLUMNS[h]
        if len(seen) > 1:
            parts = "; ".join(f"{'empty' if v is None else f'{v:.15g}'} on "
                              f"{_lines(ls)}" for v, ls in seen.items())
            raise ValueError(
                f"{path}: ID {sid}, column {h}: changes within the subject ({parts})."
                f" Time-varying covariates are not supported yet: ketasim gives each "
                f"subject one {name}, and does not pick one for you. Give every "
                f"record of ID {sid} the same {h}")
        (v, ls), = seen.items()
        if v is None:
            raise ValueError(f"{path}: ID {sid}, column {h}: covariate {name} is "
                             f"missing (empty on {_lines(ls)}); give its value")
        try:  # the plausible-range and 0/1-flag rules simulate applies
            covariate_values(name, v)
        except (ValueError, TypeError) as exc:
            why = str(exc).replace(" for subject 0", "")
            raise ValueError(f"{path}: {_lines(ls)}, ID {sid}, column {h}: {why}") \
                from None
        cov.setdefault(name, {})[sid] = v
    regimens = {}
    steady = {}
    dose_lines = {}
    for sid in ids:
        order = sorted(range(len(doses[sid])), key=lambda k: doses[sid][k].time)
        ds = [doses[sid][k] for k in order]
        dose_lines[sid] = tuple(lines[sid][k] for k in order)
        regimens[sid] = Regimen(ds)
        if sid in ss:  # the SS doses' places after sorting in the ADDL copies
            steady[sid] = [(next(k for k, x in enumerate(ds) if x is d), ii, v)
                           for d, ii, v in ss[sid]]
    covs = {name: np.array([v[sid] for sid in ids], dtype=float)
            for name, v in cov.items()}
    return EventTable(tuple(ids), regimens, covs,
                      {k: np.array(v, dtype=float) for k, v in obs.items()}, steady,
                      {k: tuple(v) for k, v in records.items()},
                      {k: np.array(v, dtype=bool) for k, v in predose.items()},
                      {k: tuple(v) for k, v in table_rows.items()}, dose_lines,
                      str(path))


def simulate_nonmem(model, table: EventTable, *, times=None) -> xr.Dataset:
    """Simulate every subject of ``table`` (its own regimen and covariates), at its
    observation times (or ``times``), with exact steady state for SS records.

    Parameters
    ----------
    model : str, Path or Model
        A linear time-invariant model.
    table : EventTable
        From :func:`read_nonmem`.
    times : array of float, optional
        Output times (h); default the union of all subjects' observation times.

    Returns
    -------
    xarray.Dataset
        ``concentration`` (subject, analyte, time; ng/mL) with ``subject`` = the
        table's IDs, on ``times`` (or the union of the observation times); at a
        dose time it is the level after the dose. ``observed_time`` (subject,
        time) is True where that subject has an observation record. The table
        itself, so that ``write_nonmem`` writes it back: the dose records as read
        (``nonmem_doses``: subject, nonmem_dose, nonmem_item with items TIME, AMT,
        RATE, DUR, CMT, II, ADDL, SS, DEVICE; NaN where a subject has fewer
        records, or no DUR/DEVICE), each subject's observation times
        (``nonmem_observations``: subject, nonmem_observation; h, NaN padded),
        which of them are pre-dose (``nonmem_predose``) and each observation
        record's own prediction (``nonmem_dv``: subject, analyte,
        nonmem_observation; ng/mL), computed whether or not ``times`` has its
        time, and for a pre-dose record the level just before the dose.

        ``nonmem_records`` (subject, nonmem_record, nonmem_field; fields TIME,
        EVID, MDV, AMT, RATE, DUR, CMT, II, ADDL, SS, DEVICE) has every record as
        read, in file order (NaN: empty, or no such record), so that
        ``write_nonmem`` writes the table back record for record.

    Raises
    ------
    ValueError
        The model uses a covariate (a covariate effect, or weight for its per-kg
        parameters) that the table has no column for: without one every subject
        would silently get the model's reference value. Weight may also come
        from HT and BMI.
    DoseError
        A dose whose concentrations or AUC would overflow double precision
        (also through the accumulation of a steady state), naming the file, the
        line, the ID and the AMT column.
    SolveError
        A subject the kernel cannot solve, named by its ID.
    """
    from .simulate import _check_times, _subjects

    model = load_model(model)
    if not isinstance(table, EventTable):
        raise TypeError(f"table must be an EventTable (from read_nonmem); got "
                        f"{type(table).__name__}")
    if not model.linear_time_invariant:
        raise ValueError("simulate_nonmem needs a linear time-invariant model")
    obs_all = [v for v in table.observations.values() if v.size]
    t = _check_times(times if times is not None else np.unique(np.concatenate(
        obs_all or [np.array([0.0])])))
    # the kernel runs on the output times and every observation time, so each
    # record has its prediction whatever ``times`` is
    t_run = np.union1d(t, np.concatenate(obs_all)) if obs_all else t
    at_t = np.searchsorted(t_run, t)
    _require_covariates(model, table)
    # validity: once for the whole table, not once per subject
    _subjects(model, dict(table.covariates), None)
    n_an = len(model.analytes)
    n_obs = max((table.observations[sid].size for sid in table.ids), default=0)
    out = np.empty((len(table.ids), n_an, t.size))
    dv = np.full((len(table.ids), n_an, n_obs), np.nan)
    pre = np.zeros((len(table.ids), n_obs), dtype=bool)
    for k, sid in enumerate(table.ids):
        cov = {n: v[k] for n, v in table.covariates.items()}
        n, c, over = _subjects(model, cov, None, warn=False)
        params = model.individual_parameters(c, overrides=over, n=1)
        reg = table.regimens[sid]
        steady = table.steady_state.get(sid, ())
        full = _run(model, reg, params, c, steady, t_run, sid, table)
        out[k] = full[:, at_t]
        ot = table.observations[sid]
        dv[k, :, :ot.size] = full[:, np.searchsorted(t_run, ot)]
        flags = table.predose.get(sid, np.zeros(ot.size, dtype=bool))
        pre[k, :ot.size] = flags
        for tau in np.unique(ot[flags]):  # the level just before the doses at tau
            m = sum(d.time < tau for d in reg.doses)  # doses are in time order
            if m == 0:
                level = np.zeros(n_an)
            else:
                level = _run(model, Regimen(reg.doses[:m]), params, c,
                             [s for s in steady if s[0] < m],
                             np.array([tau]), sid, table)[:, 0]
            dv[k][:, :ot.size][:, flags & (ot == tau)] = level[:, None]
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
    doses = _padded([table.records.get(sid, ()) for sid in table.ids],
                    len(DOSE_ITEMS))
    ds["nonmem_doses"] = (("subject", "nonmem_dose", "nonmem_item"), doses, {
        "long_name": "the table's dose records as read (TIME h, AMT mg, RATE mg/h, "
        "DUR h, II h); NaN: no such record or item"})
    ds.coords["nonmem_item"] = list(DOSE_ITEMS)
    every = _padded([table.rows.get(sid, ()) for sid in table.ids],
                    len(RECORD_ITEMS))
    ds["nonmem_records"] = (("subject", "nonmem_record", "nonmem_field"), every, {
        "long_name": "the table's records as read, in file order (TIME h, AMT mg, "
        "RATE mg/h, DUR h, II h); NaN: empty, or no such record"})
    ds.coords["nonmem_field"] = list(RECORD_ITEMS)
    ot = np.full((len(table.ids), n_obs), np.nan)
    for k, sid in enumerate(table.ids):
        v = table.observations[sid]
        ot[k, :v.size] = v
    ds["nonmem_observations"] = (("subject", "nonmem_observation"), ot, {
        "units": "h", "long_name": "the table's observation records' times; NaN "
        "where a subject has fewer"})
    ds["nonmem_predose"] = (("subject", "nonmem_observation"), pre, {
        "long_name": "the observation record comes before a dose record at its "
        "time (the level just before that dose)"})
    ds["nonmem_dv"] = (("subject", "analyte", "nonmem_observation"), dv, {
        "units": "ng/mL", "long_name": "prediction for each observation record "
        "(pre-dose records: just before the dose)"})
    return ds


def _require_covariates(model: Model, table: EventTable) -> None:
    """Refuse a table without a column for a covariate the model uses.

    Used: the covariate of a covariate effect, and weight for per-kg parameters
    (weight may come from HT and BMI, as in ``simulate``). Covariates the model
    only states a reference for are not required. Without the column every
    subject would get the model's reference (e.g. 70 kg for a child)."""
    uses: dict[str, dict[str, list[str]]] = {}  # covariate -> how -> parameters
    for eff in model.covariate_effects:
        uses.setdefault(eff.covariate, {}).setdefault(
            f"{eff.kind} effect", []).append(eff.parameter)
    per_kg = [n for n, p in model.parameters.items() if p.per_kg]
    if per_kg:
        uses.setdefault("weight", {})["per-kg parameter"] = per_kg
    have = set(table.covariates)
    if {"height", "bmi"} <= have:
        have.add("weight")  # simulate derives it: BMI x (HT / 100)^2
    missing = [n for n in uses if n not in have]
    if not missing:
        return
    cols = [COVARIATE_COLUMN[n] for n in missing]
    names = ", ".join(cols[:-1]) + " or " + cols[-1] if len(cols) > 1 else cols[0]

    def how(n):
        return ", ".join(f"{k}{'s' * (len(v) > 1)}"
                         f"{'' if k.startswith('per-kg') else ' on'} {', '.join(v)}"
                         for k, v in uses[n].items())

    why = "; ".join(f"{n} ({how(n)})" for n in missing)
    ref = ", ".join(f"{n} {model.covariates[n]:g}"
                    + (f" {COVARIATE_UNIT[n]}" if n in ("weight", "age", "height")
                       else "")
                    for n in missing if n in model.covariates)
    example = ", ".join(f"{COVARIATE_COLUMN[n]} ({COVARIATE_UNIT[n]})"
                        for n in missing)
    where = f"{table.source}: " if table.source else ""
    raise ValueError(
        f"{where}the table has no {names} column, but model {model.id!r} uses "
        f"{why}; without it every subject would get the model's reference"
        f"{f' ({ref})' if ref else ''}. Add the column{'s' * (len(cols) > 1)} "
        f"{example}, one value per subject on every record")


def _table_dose_error(exc, table, sid, reg) -> str:
    """A DoseError about ``doses[i]`` of subject ``sid``'s regimen, told as the
    table's file, line, ID and AMT column (and ADDL copy)."""
    import re

    msg = str(exc).replace(" to subject 0 ", f" to ID {sid} ")
    m = re.match(r"doses\[(\d+)\] \(", msg)
    lines = table.dose_lines.get(sid, ())
    if m is None or int(m.group(1)) >= len(lines):
        return f"{table.source}: ID {sid}: {msg}"
    line, copy = lines[int(m.group(1))]
    what = "the dose" + (f" (ADDL copy {copy} of this record)" if copy else "")
    return (f"{table.source}: line {line}, ID {sid}, column AMT: {what} "
            f"{msg[m.end() - 1:]}")


def _run(model, reg, params, cov, steady, t, sid, table) -> np.ndarray:
    """One subject's concentrations (analyte, time) with its SS records; a kernel
    failure raises SolveError naming the ID, a dose that would overflow a
    DoseError naming the table's line."""
    from ._kernels.linear import population_linear, states
    from ._lower import check_magnitude, lower
    from .dosing import DoseError
    from .simulate import _STATUS, SolveError

    low = lower(model, reg, params, cov["weight"], 1)
    ev = [low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value]
    try:
        # as simulate does: concentrations or AUC beyond double precision are
        # refused by name before the kernel returns inf
        check_magnitude(model, reg, low, float(t[-1]))
        for spec in steady:
            lines = table.dose_lines.get(sid, ())
            at = (f"{table.source}: line {lines[spec[0]][0]}, ID {sid}, column SS: "
                  if spec[0] < len(lines) else f"ID {sid}: ")
            ev = _with_steady_state(model, reg, params, cov, low, ev, spec, t, at)
    except DoseError as exc:
        raise DoseError(_table_dose_error(exc, table, sid, reg)) from None
    status = np.zeros(1, dtype=np.int64)
    buf = np.empty((1, len(model.analytes), t.size))
    population_linear(low.A, *ev, t, low.obs_cmt, low.obs_scale, buf, status,
                      states(low.A.shape[2]), states(low.A.shape[2]))
    if status[0]:
        raise SolveError(f"ID {sid}: status {int(status[0])}: "
                         f"{_STATUS.get(int(status[0]), 'unknown')}")
    return buf[0]


def _with_steady_state(model, reg, params, cov, low, ev, spec, t, at=""):
    """Events plus the exact steady-state state added as boluses just before the
    SS dose (the kernel then continues exactly). A steady state whose amount,
    with the doses, could overflow is a DoseError about that dose; ``at`` (the
    table's file, line and ID) starts other errors."""
    import scipy.linalg

    from ._lower import MAX_MAGNITUDE, _dose_text, lower
    from .dosing import DoseError

    idx, ii, _ = spec
    d = reg.doses[idx]
    one = lower(model, Regimen([d.at(0.0)]), params, cov["weight"], 1)
    if one.ev_time.size and one.ev_time.max() > ii:
        raise ValueError(
            f"{at}steady state (SS) at {d.time:g} h: the dose's input lasts "
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
    with np.errstate(over="ignore", invalid="ignore"):
        x_ss = np.linalg.solve(np.eye(n) - E, x)
        total = float(np.abs(x_ss).sum() + np.abs(low.dose_mg).sum())
        peak = total * float(np.abs(low.obs_scale).max(initial=1.0))
        bound = peak * max(1.0, float(t[-1]))
    if not bound <= MAX_MAGNITUDE:  # as check_magnitude, with the SS amount
        raise DoseError(
            f"{_dose_text(idx, d)} at steady state (SS {spec[2]}, II {ii:g} h) "
            f"holds {float(np.abs(x_ss).sum()):.4g} mg ({total:.4g} mg in all with "
            f"the doses): concentrations could reach {peak:.3g} ng/mL and AUCs "
            f"{bound:.3g} ng*h/mL, above {MAX_MAGNITUDE:g}, where double precision "
            f"overflows to inf. Check the amount (mg) and II (h)")
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


def _padded(per_subject: list, width: int) -> np.ndarray:
    """(subjects, most records, width) array of each record's ``items()``; NaN
    where a subject has fewer records."""
    out = np.full((len(per_subject), max(map(len, per_subject), default=0), width),
                  np.nan)
    for k, rs in enumerate(per_subject):
        for j, rec in enumerate(rs):
            out[k, j] = rec.items()
    return out


def write_nonmem(ds: xr.Dataset, path, *, analyte: str | None = None,
                 cmt_by_route: dict | None = None,
                 observations: str = "records") -> Path:
    """Write a simulation Dataset as a NONMEM-style CSV that ``read_nonmem`` reads
    back.

    Parameters
    ----------
    ds : xarray.Dataset
        From ``simulate`` (one scenario selected, for ``run_scenarios``) or
        ``simulate_nonmem``.
    path : str or Path
        The CSV file to write.
    analyte : str, optional
        Whose concentration (ng/mL) is DV; required when several analytes have
        values (a NONMEM file holds one DV: write one file per analyte).
    cmt_by_route : dict, optional
        Route -> CMT for a ``simulate`` Dataset (default: 1, 2, ... in order of
        first use). Not for a ``simulate_nonmem`` Dataset, whose CMT values are
        written as read.
    observations : {"records", "times"}, default "records"
        For a ``simulate_nonmem`` Dataset: ``"records"`` writes each subject's own
        observation records (the table's), ``"times"`` one observation record per
        output time for every subject. A ``simulate`` Dataset always gets one per
        output time.

    Returns
    -------
    Path

    Raises
    ------
    UnitError
        ``ds.concentration`` (or ``nonmem_dv``) not labelled ng/mL, e.g. the
        nmol/L curves of ``ds.pk.molar()``: DV is written as ng/mL.

    Notes
    -----
    Columns: ID, TIME (h), EVID (1 dose, 0 observation, 2 other), AMT (mg of base
    actually given), RATE (mg/h; 0 bolus, -2 with DUR as read), CMT, then for a
    ``simulate_nonmem`` Dataset II (h), ADDL, SS and DUR (h, when a record had
    one), MDV, DV (ng/mL, written in the shortest form that reads back as the
    same float), DEVICE (when a dose has one) and the covariates known for every
    subject (WT kg, AGE y, HT cm, BMI, FEMALE, ...), one value per subject.

    A ``simulate_nonmem`` Dataset (``observations="records"``) is written as its
    table was read, record for record in file order (``nonmem_records``): dose
    records (EVID 1, ADDL not expanded), observation records, EVID 0 records with
    MDV 1 and EVID 2 records, every column (MDV, AMT, RATE, DUR, CMT, II, ADDL,
    SS, DEVICE) as read, ``.`` where the cell was empty. Each observation record
    (EVID 0 without MDV 1) gets its own prediction as DV (``nonmem_dv``,
    whatever ``times`` was simulated), the others ``.``; ``read_nonmem`` on the
    file gives back the same records, doses, observation times, pre-dose flags
    and covariates, and ``simulate_nonmem`` the same DV. A ``simulate`` Dataset
    gets its dose table (one record per dose) and one observation record per
    output time.

    Otherwise (``observations="times"``, or a ``simulate`` Dataset), at one
    time records are written as NONMEM reads them: doses, then the observations,
    whose DV is the level after the dose, as ketasim computes it.
    A subject that failed (``errors="keep"``) is written with MDV 1 and no DV on
    its observation records; a scenario's padding subjects and doses are left
    out. A ``simulate_nonmem`` Dataset without ``nonmem_records`` (saved by an
    older ketasim) is written from its dose and observation records only (MDV 1
    and EVID 2 records were not kept), a subject with neither as one EVID 2
    record at TIME 0, so that it keeps its ID and covariates.
    """
    if "scenario" in ds.dims:
        raise ValueError(f"write_nonmem writes one scenario; select it first, e.g. "
                         f"ds.sel(scenario={str(ds.scenario.values[0])!r})")
    if observations not in ("records", "times"):
        raise ValueError(f"observations must be 'records' (the table's own) or "
                         f"'times' (every output time); got {observations!r}")
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
    # DV is documented ng/mL: a concentration relabelled or converted (e.g. by
    # ds.pk.molar()) would be written as ng/mL numbers that are not
    from .metrics import check_units

    check_units(ds, {"concentration": "ng/mL", "nonmem_dv": "ng/mL"},
                "write_nonmem (DV in ng/mL)",
                " (DV is ng/mL: write the ng/mL Dataset from ks.simulate; "
                "ds.pk.molar() is for plotting)")
    table = "nonmem_doses" in ds
    # the table's records, written back one for one (observations="times"
    # writes the output times instead)
    as_read = table and "nonmem_records" in ds and observations == "records"
    if table and cmt_by_route is not None:
        raise ValueError("cmt_by_route is for a simulate() Dataset; this one is from "
                         "simulate_nonmem, whose CMT values are written as read "
                         "(read it with the same route_by_cmt)")
    c = ds.concentration.sel(analyte=an).values
    t = ds.time.values
    # a scenario's padding subjects have no status (NaN); failed subjects
    # (errors="keep") are written, their missing values with MDV 1
    status = (ds.status.values.astype(float) if "status" in ds
              else np.zeros(ds.sizes["subject"]))
    rows = [s for s in range(ds.sizes["subject"]) if np.isfinite(status[s])]
    covs = [k for k in ("weight", "age", "height", "bmi", "female", "asian",
                        "japanese")  # those known for every subject written
            if k in ds.coords and np.all(np.isfinite(ds[k].values[rows]))]
    cov_head = [{"weight": "WT", "age": "AGE", "height": "HT"}.get(k, k.upper())
                for k in covs]

    def obs_row(sid, tj, value, cv, nodev, extra):
        dv = [0, _num(value)] if np.isfinite(value) else [1, "."]
        return [sid, _num(tj), 0, ".", ".", "."] + extra + dv + nodev + cv

    if as_read:
        allr = ds.nonmem_records.transpose("subject", "nonmem_record",
                                           "nonmem_field").values
        fld = {str(k): j for j, k in enumerate(ds.nonmem_field.values)}
        with_dur = bool(np.any(np.isfinite(allr[..., fld["DUR"]])))
        with_device = bool(np.any(np.isfinite(allr[..., fld["DEVICE"]])))
        head = ["ID", "TIME", "EVID", "AMT", "RATE", "CMT", "II", "ADDL", "SS"] + \
            (["DUR"] if with_dur else []) + ["MDV", "DV"] + \
            (["DEVICE"] if with_device else []) + cov_head
        dvs = ds.nonmem_dv.sel(analyte=an).transpose(
            "subject", "nonmem_observation").values
    elif table:
        nd = ds.nonmem_doses.transpose("subject", "nonmem_dose", "nonmem_item")
        item = {str(k): j for j, k in enumerate(ds.nonmem_item.values)}
        rec = nd.values
        with_dur = bool(np.any(np.isfinite(rec[..., item["DUR"]])))
        with_device = bool(np.any(rec[..., item["DEVICE"]] > 0))
        head = ["ID", "TIME", "EVID", "AMT", "RATE", "CMT", "II", "ADDL", "SS"] + \
            (["DUR"] if with_dur else []) + ["MDV", "DV"] + \
            (["DEVICE"] if with_device else []) + cov_head
        ot = ds.nonmem_observations.transpose("subject", "nonmem_observation").values
        pre = ds.nonmem_predose.transpose("subject", "nonmem_observation").values
        dvs = ds.nonmem_dv.sel(analyte=an).transpose(
            "subject", "nonmem_observation").values
    else:
        if "dose_route" in ds:  # a scenario's padding doses have no time
            keep = np.flatnonzero(np.isfinite(ds.dose_time.values.astype(float)))
        else:
            keep = np.array([], dtype=int)
        routes = [str(ds.dose_route.values[i]) for i in keep]
        cmt_by_route = cmt_by_route or {r: i + 1 for i, r in
                                        enumerate(dict.fromkeys(routes))}
        missing = [r for r in dict.fromkeys(routes) if r not in cmt_by_route]
        if missing:
            raise ValueError(f"cmt_by_route has no CMT for route {missing[0]!r} "
                             f"(given: {cmt_by_route})")
        devices = (ds.dose_device.values if "dose_device" in ds
                   else np.zeros(ds.sizes.get("dose", 0), dtype=np.int64))
        with_device = bool(np.any(devices[keep] > 0)) if keep.size else False
        head = ["ID", "TIME", "EVID", "AMT", "RATE", "CMT", "MDV", "DV"] + \
            (["DEVICE"] if with_device else []) + cov_head
    path = Path(path)
    out = []
    for s in rows:
        sid = _id(ds.subject.values[s])
        cv = [_num(ds[k].values[s]) for k in covs]
        nodev = ["."] if with_device else []
        # (time, order, fields), sorted stably; at one time: pre-dose
        # observations (0), doses (1), observations (2)
        recs = []
        if as_read:
            out += _records_as_read(sid, allr[s], fld, dvs[s], with_dur,
                                    with_device, cv)
            continue
        if table:
            for x in rec[s]:
                if not np.isfinite(x[item["TIME"]]):
                    continue  # padding: this subject has fewer records
                dur = x[item["DUR"]]
                dev = x[item["DEVICE"]]
                recs.append((x[item["TIME"]], 1, [
                    sid, _num(x[item["TIME"]]), 1, _num(x[item["AMT"]]),
                    _num(x[item["RATE"]]), int(x[item["CMT"]]), _num(x[item["II"]]),
                    int(x[item["ADDL"]]), int(x[item["SS"]])] +
                    ([_num(dur) if np.isfinite(dur) else "."] if with_dur else []) +
                    [1, "."] + ([int(dev) if dev > 0 else "."] if with_device
                                else []) + cv))
            extra = [".", ".", "."] + (["."] if with_dur else [])
            if observations == "times":
                recs += [(t[j], 2, obs_row(sid, t[j], c[s, j], cv, nodev, extra))
                         for j in range(t.size)]
            else:
                recs += [(ot[s, m], 0 if pre[s, m] else 2,
                          obs_row(sid, ot[s, m], dvs[s, m], cv, nodev, extra))
                         for m in range(ot.shape[1]) if np.isfinite(ot[s, m])]
            if not recs:  # no dose, no observation: an EVID 2 record keeps the
                # subject (its ID and covariates) in the table
                recs.append((0.0, 3, [sid, "0.0", 2, ".", ".", "."] + extra +
                             [1, "."] + nodev + cv))
        else:
            for i, route in zip(keep, routes, strict=True):
                amt = float(ds.dose_mg.values[s, i])
                dur = float(ds.dose_duration.values[i])
                rate = amt / dur if np.isfinite(dur) else 0.0
                dev = [int(devices[i]) if devices[i] > 0 else "."] if with_device \
                    else []
                recs.append((float(ds.dose_time.values[i]), 1, [
                    sid, _num(ds.dose_time.values[i]), 1, _num(amt), _num(rate),
                    cmt_by_route[route], 1, "."] + dev + cv))
            for j in range(t.size):
                recs.append((float(t[j]), 2, obs_row(sid, t[j], c[s, j], cv, nodev,
                                                     [])))
        out += [row for _, _, row in sorted(recs, key=lambda x: (x[0], x[1]))]
    # written only once every record is known: an error leaves no partial file
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(out)
    return path


def _records_as_read(sid, rows, fld, pred, with_dur, with_device, cv) -> list:
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
        row += [text(x[fld[k]], k in ("CMT", "ADDL", "SS"))
                for k in ("AMT", "RATE", "CMT", "II", "ADDL", "SS")]
        row += [text(x[fld["DUR"]], False)] if with_dur else []
        row += [mdv, dv]
        row += [text(x[fld["DEVICE"]], True)] if with_device else []
        out.append(row + cv)
    return out


def _id(x):
    """A subject label as NONMEM text: 2, not 2.0 (a table with IDs 2 and 3.5
    has a float subject coordinate)."""
    if isinstance(x, (int, float, np.integer, np.floating)) and np.isfinite(x):
        return str(int(x)) if float(x).is_integer() else _num(x)
    return x


def _num(x) -> str:
    """The shortest text that reads back as the same float (70.1, not
    70.099999999999994)."""
    return repr(float(x))

