"""Reading a NONMEM-style event table, one step at a time.

:func:`ketasim.nonmem.read_nonmem` documents every rule and runs these steps in
order: the file's records (:func:`file_records`), the header (:func:`columns`),
each record in file order (:func:`read_records`: its subject and time, its EVID
and MDV, then an observation or a dose), each subject's covariates
(:func:`covariates`) and its regimen in time order with its steady-state doses
(:func:`regimens`). Errors name the file, the line, the ID and the column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validate import covariate_values
from .dosing import MAX_TIME_H, Dose, Regimen
from .model import Model
from .nonmem import (
    CENSORING_COLUMNS,
    COVARIATE_COLUMNS,
    KNOWN,
    MAX_DOSES_PER_SUBJECT,
    DoseRecord,
    Record,
)


def route_map(model: Model, route_by_cmt) -> dict[int, str]:
    """CMT number -> route of ``model``: ``route_by_cmt`` checked, or by default
    CMT 1 for the model's first intravenous route."""
    if route_by_cmt is not None:
        if not isinstance(route_by_cmt, dict):
            raise TypeError(
                f"route_by_cmt must be a dict {{CMT: route}}, e.g. "
                f"{{1: 'iv'}}; got {type(route_by_cmt).__name__}"
            )
        out = {}
        for k, v in route_by_cmt.items():
            if isinstance(k, bool) or not isinstance(k, int | np.integer):
                raise TypeError(
                    f"route_by_cmt keys are CMT numbers (int); got "
                    f"{k!r} ({type(k).__name__})"
                )
            if not isinstance(v, str) or v not in model.routes:
                raise ValueError(
                    f"route_by_cmt[{k}] = {v!r} is not a route of "
                    f"model {model.id!r}; its routes: "
                    f"{', '.join(model.routes)}"
                )
            out[int(k)] = v
        return out
    iv = [r for r in model.routes.values() if r.intravenous]
    if not iv:
        raise ValueError(
            f"model {model.id!r} has no intravenous route; give "
            "route_by_cmt={1: 'oral', ...} to map CMT to routes"
        )
    return {1: iv[0].name}


def line_text(lines) -> str:
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


def file_records(path: Path) -> list[tuple[int, list[str]]]:
    """Every record of the file as (the line it starts on, its fields); the
    header is the first. An empty file is an error."""
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first name
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = []
        prev = 0
        for r in reader:
            rows.append((prev + 1, r))  # a quoted field may span lines
            prev = reader.line_num
    if not rows:
        raise ValueError(
            f"{path}: empty file; the first line must be a header "
            "(ID,TIME,EVID,AMT,...)"
        )
    return rows


def columns(path: Path, names: list[str]) -> dict[str, int]:
    """Header name (upper case) -> its field index, after checking that every
    name is known, none is given twice (also as two names of one covariate, such
    as WT and WEIGHT) and ID, TIME, EVID and AMT are there."""
    header = [h.strip().upper() for h in names]
    accepted = KNOWN | set(COVARIATE_COLUMNS) | set(CENSORING_COLUMNS)
    known = ", ".join(sorted(accepted))
    for k, h in enumerate(header):
        if h not in accepted:
            raise ValueError(
                f"{path}: line 1 (header), column {k + 1}: unknown "
                f"column {h!r}; known: {known}"
            )
        if h in header[:k]:
            raise ValueError(
                f"{path}: line 1 (header): column {h} is given twice "
                f"(columns {header.index(h) + 1} and {k + 1}); keep one"
            )
        same = [
            g
            for g in header[:k]
            if COVARIATE_COLUMNS.get(g, g) == COVARIATE_COLUMNS.get(h)
        ]
        if same:
            raise ValueError(
                f"{path}: line 1 (header): columns {same[0]} and {h} "
                f"both give covariate {COVARIATE_COLUMNS[h]}; keep one"
            )
    marks = [h for h in header if h in CENSORING_COLUMNS]
    if len(marks) > 1:
        raise ValueError(
            f"{path}: line 1 (header): columns {marks[0]} and {marks[1]} both mark "
            f"observations below the limit of quantification; keep one"
        )
    for need in ("ID", "TIME", "EVID", "AMT"):
        if need not in header:
            raise ValueError(
                f"{path}: line 1 (header) has no {need} column; found "
                f"{', '.join(header)}"
            )
    return {h: i for i, h in enumerate(header)}


@dataclass(frozen=True)
class Cells:
    """The cells of the file's records by column name: each read as a number
    (finite), a whole number, or None where the column is absent or the cell
    empty (``""`` or ``.``); errors name the file, line, ID and column."""

    path: Path
    col: dict[str, int]

    def where(self, i: int, name: str, sid=None) -> str:
        """``"<file>: line i, ID sid, column name"``, the start of an error."""
        who = "" if sid is None else f", ID {sid}"
        return f"{self.path}: line {i}{who}, column {name}"

    def text(self, r: list[str], name: str) -> str:
        """The cell as written (stripped)."""
        return r[self.col[name]].strip()

    def given(self, r: list[str], name: str) -> bool:
        """The column exists and the cell is not empty."""
        return name in self.col and self.text(r, name) not in ("", ".")

    def num(self, r, i, name, sid, default=None) -> float | None:
        """The cell as a finite float, ``default`` when absent or empty."""
        if name not in self.col:
            return default
        text = self.text(r, name)
        if text in ("", "."):
            return default
        try:
            v = float(text)
        except ValueError:
            raise ValueError(
                f"{self.where(i, name, sid)}: not a number: {text!r}"
            ) from None
        if not np.isfinite(v):
            raise ValueError(
                f"{self.where(i, name, sid)}: must be finite; got {text!r}"
            )
        return v

    def whole(self, r, i, name, sid, default=None) -> int | None:
        """The cell as a whole number (int), ``default`` when absent or empty."""
        v = self.num(r, i, name, sid, default)
        if v is not None and not float(v).is_integer():
            raise ValueError(
                f"{self.where(i, name, sid)}: must be a whole number; "
                f"got {self.text(r, name)!r}"
            )
        return None if v is None else int(v)

    def record(self, r, i, sid, t, evid, mdv) -> Record:
        """The record as read (after its checks): every column's value or None."""
        return Record(
            t,
            evid,
            mdv,
            self.num(r, i, "AMT", sid),
            self.num(r, i, "RATE", sid),
            self.num(r, i, "DUR", sid),
            self.whole(r, i, "CMT", sid),
            self.num(r, i, "II", sid),
            self.whole(r, i, "ADDL", sid),
            self.whole(r, i, "SS", sid),
            self.whole(r, i, "DEVICE", sid),
            i,
        )


@dataclass
class Subject:
    """What has been read of one subject, record by record."""

    first_line: int
    # every dose in file order, ADDL copies expanded, and per dose its record's
    # line and ADDL copy number (0: the record's own dose)
    doses: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    records: list = field(default_factory=list)  # DoseRecord per dose record
    rows: list = field(default_factory=list)  # Record per record, file order
    observations: list = field(default_factory=list)  # times (h)
    predose: list = field(default_factory=list)  # bool per observation
    censored: list = field(default_factory=list)  # bool per observation (M3)
    # time -> [index into observations]: observations no dose at their time has
    # followed yet (once one does, they are pre-dose levels)
    waiting: dict = field(default_factory=dict)
    after_dose: dict = field(default_factory=dict)  # time -> [line, ...]
    dose_times: set = field(default_factory=set)  # times of its dose records
    steady: list = field(default_factory=list)  # (Dose, II, SS) per SS record
    # covariate column -> {value or None: [line, ...]}
    covariates: dict = field(default_factory=dict)
    # (line, TIME, {column: value or None}) per record, for time-varying tables
    covariate_rows: list = field(default_factory=list)
    last_time: float = -np.inf
    n_doses: int = 0  # doses with ADDL copies, for MAX_DOSES_PER_SUBJECT


def read_records(cells: Cells, rows, model: Model, routes: dict[int, str]) -> dict:
    """ID -> :class:`Subject` (in file order) from the records after the header:
    each record's subject and time, its EVID and MDV, then what it is (an
    observation, a dose, or an other event, kept as read). Blank lines are
    skipped; a subject's records must be contiguous."""
    subjects: dict = {}
    current = None
    for i, r in rows:
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(cells.col):
            raise ValueError(
                f"{cells.path}: line {i}: {len(r)} fields, the header "
                f"has {len(cells.col)}"
            )
        sid, t = subject_and_time(cells, r, i, subjects, current)
        current = sid
        sub = subjects[sid]
        evid, mdv = event(cells, r, i, sid)
        below = censored(cells, r, i, sid, evid, mdv)
        if evid in (0, 2):
            sub.rows.append(cells.record(r, i, sid, t, evid, mdv))
        if evid == 0:
            observation(sub, i, t, mdv, below)
        elif evid == 1:
            dose(cells, r, i, sid, sub, t, model, routes)
            sub.rows.append(cells.record(r, i, sid, t, evid, mdv))
    if not subjects:
        raise ValueError(
            f"{cells.path}: no records after the header (line 1); a "
            "table needs at least one record"
        )
    return subjects


def subject_and_time(cells: Cells, r, i, subjects: dict, current):
    """The record's ID and TIME (h): a new subject starts its :class:`Subject`;
    its covariate cells are noted and DV checked (a number or empty); TIME must
    be >= 0 and not before the subject's previous record."""
    sid = cells.num(r, i, "ID", None)
    if sid is None:
        raise ValueError(
            f"{cells.where(i, 'ID')}: empty; every record needs its subject's ID"
        )
    sid = int(sid) if float(sid).is_integer() else sid
    if sid != current and sid in subjects:
        raise ValueError(
            f"{cells.where(i, 'ID', sid)}: ID {sid} comes back after the records of "
            f"ID {current} (its records began on line {subjects[sid].first_line}). "
            f"NONMEM would start a new individual here; ketasim labels subjects "
            f"by ID and refuses it: give this individual its own ID, or keep "
            f"all records of ID {sid} together"
        )
    t = cells.num(r, i, "TIME", sid)
    if t is None:
        raise ValueError(
            f"{cells.where(i, 'TIME', sid)}: empty; every record needs a TIME (h)"
        )
    if t < 0:
        raise ValueError(f"{cells.where(i, 'TIME', sid)}: must be >= 0 h; got {t:g}")
    if sid not in subjects:
        subjects[sid] = Subject(first_line=i)
    sub = subjects[sid]
    for h in COVARIATE_COLUMNS:
        if h in cells.col:
            sub.covariates.setdefault(h, {}).setdefault(
                cells.num(r, i, h, sid), []
            ).append(i)
    sub.covariate_rows.append(
        (
            i,
            t,
            {h: cells.num(r, i, h, sid) for h in COVARIATE_COLUMNS if h in cells.col},
        )
    )
    cells.num(r, i, "DV", sid)  # not used, but a non-number there is a broken file
    if t < sub.last_time:
        raise ValueError(
            f"{cells.where(i, 'TIME', sid)}: {t:g} h is before the "
            f"previous record of ID {sid} ({sub.last_time:g} h); "
            "sort each subject's records by time (resets, EVID 3 "
            "and 4, are not supported)"
        )
    sub.last_time = t
    return sid, t


def event(cells: Cells, r, i, sid) -> tuple[int, int | None]:
    """The record's EVID (0, 1 or 2) and MDV (0, 1 or None), checked together:
    EVID 0 and 2 records have no dose columns, EVID 1 and 2 records no MDV 0,
    and an EVID 2 record no CMT."""
    if not cells.given(r, "EVID"):
        raise ValueError(
            f"{cells.where(i, 'EVID', sid)}: empty; write 0 "
            "(observation), 1 (dose) or 2 (other)"
        )
    evid = cells.whole(r, i, "EVID", sid)
    if evid not in (0, 1, 2):
        raise ValueError(
            f"{cells.where(i, 'EVID', sid)}: EVID {evid} is not "
            "supported (0 observation, 1 dose, 2 other); resets "
            "(3, 4) are not implemented"
        )
    mdv = cells.whole(r, i, "MDV", sid)
    if mdv is not None and mdv not in (0, 1):
        raise ValueError(
            f"{cells.where(i, 'MDV', sid)}: must be 0 (observation) or "
            f"1 (no observation); got {cells.text(r, 'MDV')!r}"
        )
    if evid in (0, 2):
        for name in ("AMT", "RATE", "DUR", "II", "ADDL", "SS", "DEVICE"):
            if cells.given(r, name) and cells.num(r, i, name, sid) != 0:
                raise ValueError(
                    f"{cells.where(i, name, sid)}: set on an EVID "
                    f"{evid} record (not a dose); make it a dose record "
                    "(EVID 1) or clear the column"
                )
        cells.whole(r, i, "CMT", sid)
    if evid in (1, 2) and mdv == 0:
        raise ValueError(
            f"{cells.where(i, 'MDV', sid)}: MDV 0 on an EVID {evid} "
            "record; NONMEM (PREDPP) needs MDV 1 on dose and other "
            "records: write 1, and put an observation on its own "
            "EVID 0 record"
        )
    if evid == 2 and (cells.whole(r, i, "CMT", sid) or 0) != 0:
        raise ValueError(
            f"{cells.where(i, 'CMT', sid)}: CMT on an EVID 2 record "
            "switches a compartment on or off in NONMEM, which "
            "ketasim does not implement; clear CMT (or 0)"
        )
    return evid, mdv


def censoring_column(cells: Cells) -> str | None:
    """The table's censoring column (CENS, BLQ or BQL), None without one."""
    return next((h for h in CENSORING_COLUMNS if h in cells.col), None)


def censored(cells: Cells, r, i, sid, evid: int, mdv: int | None) -> bool:
    """The record's censoring flag (NONMEM M3: 1 below the LLOQ, DV holding the
    LLOQ; 0 or empty not): only an observation may be censored, and its DV must
    then be a level > 0."""
    name = censoring_column(cells)
    if name is None:
        return False
    flag = cells.whole(r, i, name, sid, 0)
    if flag == -1:
        raise ValueError(
            f"{cells.where(i, name, sid)}: -1 marks a level above an upper limit "
            f"of quantification, which ketasim does not model; write the measured "
            f"level with {name} 0, or drop the record"
        )
    if flag not in (0, 1):
        raise ValueError(
            f"{cells.where(i, name, sid)}: must be 0 (measured) or 1 (below the "
            f"limit of quantification, DV holding the limit); got "
            f"{cells.text(r, name)!r}"
        )
    if not flag:
        return False
    if evid != 0 or mdv == 1:
        raise ValueError(
            f"{cells.where(i, name, sid)}: {name} 1 on a record that is not an "
            f"observation (EVID {evid}, MDV {mdv}); only an observation record "
            f"(EVID 0, MDV 0) can be below the limit of quantification: write 0 "
            f"or leave it empty"
        )
    dv = cells.num(r, i, "DV", sid)
    if dv is None or not dv > 0:
        got = cells.text(r, "DV") if "DV" in cells.col else "no DV column"
        raise ValueError(
            f"{cells.where(i, 'DV', sid)}: {name} 1 marks a level below the lower "
            f"limit of quantification, and DV must then hold that limit (ng/mL, "
            f"> 0; NONMEM's M3 convention); got {got!r}"
        )
    return True


def observation(
    sub: Subject, i: int, t: float, mdv: int | None, below: bool = False
) -> None:
    """An EVID 0 record: an observation unless MDV is 1 (``below``: below the
    LLOQ). Until a dose record at its time follows, it is waiting to become a
    pre-dose level; after one it is the level after that dose."""
    if mdv:
        return
    if t in sub.dose_times:
        sub.after_dose.setdefault(t, []).append(i)
    else:
        sub.waiting.setdefault(t, []).append(len(sub.observations))
    sub.observations.append(t)
    sub.predose.append(False)
    sub.censored.append(below)


def dose(
    cells: Cells,
    r,
    i,
    sid,
    sub: Subject,
    t: float,
    model: Model,
    routes: dict[int, str],
) -> None:
    """An EVID 1 record: its :class:`DoseRecord`, its dose and ADDL copies, and
    its steady state (SS); observations waiting at its time become pre-dose."""
    if t in sub.after_dose:
        raise ValueError(
            f"{cells.where(i, 'TIME', sid)}: this dose at {t:g} h follows an "
            f"observation record ({line_text(sub.after_dose[t])}) that itself "
            f"follows a dose at the same time; a level between two doses given "
            f"at one time is not supported: put the observation before or after "
            f"both doses"
        )
    for k in sub.waiting.pop(t, ()):  # NONMEM: the level before this dose
        sub.predose[k] = True
    sub.dose_times.add(t)
    amt, cmt, rate, dur = dose_input(cells, r, i, sid, routes)
    # every column is read (a non-number is named) before the rules between them
    ii = cells.num(r, i, "II", sid, 0.0)
    addl = cells.whole(r, i, "ADDL", sid, 0)
    ssv = cells.whole(r, i, "SS", sid, 0)
    device = cells.whole(r, i, "DEVICE", sid)
    check_repeats(cells, i, sid, sub, ii, addl, ssv)
    device = dose_device(cells, i, sid, model, routes[cmt], cmt, device)
    try:
        d = Dose((amt, "mg"), route=routes[cmt], time=t, duration=dur, device=device)
    except ValueError as exc:
        raise ValueError(f"{cells.path}: line {i}, ID {sid}: {exc}") from None
    sub.records.append(
        DoseRecord(
            t, amt, rate, None if rate != -2 else dur, cmt, ii, addl, ssv, device, i
        )
    )
    if ssv:
        sub.steady.append((d, ii, ssv))
    sub.doses += [d] + [d.at(t + k * ii) for k in range(1, addl + 1)]
    sub.lines += [(i, k) for k in range(addl + 1)]


def dose_input(cells: Cells, r, i, sid, routes: dict[int, str]):
    """A dose record's AMT (mg, > 0), CMT (mapped to a route), RATE (0 bolus,
    > 0 mg/h, -2 duration from DUR) and its duration (h, None for a bolus)."""
    amt = cells.num(r, i, "AMT", sid)
    if amt is None or amt <= 0:
        raise ValueError(
            f"{cells.where(i, 'AMT', sid)}: a dose needs AMT > 0 mg; "
            f"got {cells.text(r, 'AMT')!r}"
        )
    cmt = cells.whole(r, i, "CMT", sid, 1)
    if cmt not in routes:
        raise ValueError(
            f"{cells.where(i, 'CMT', sid)}: CMT {cmt} maps to no "
            f"route; map it with route_by_cmt (now {routes})"
        )
    rate = cells.num(r, i, "RATE", sid, 0.0)
    dur = None
    if cells.given(r, "DUR") and rate != -2:
        raise ValueError(
            f"{cells.where(i, 'DUR', sid)}: DUR is set but RATE is "
            f"{rate:g}; a duration applies with RATE = -2"
        )
    if rate == -2:
        dur = cells.num(r, i, "DUR", sid)
        if dur is None or dur <= 0:
            raise ValueError(f"{cells.where(i, 'DUR', sid)}: RATE = -2 needs DUR > 0 h")
    elif rate > 0:
        dur = amt / rate
        if not dur <= MAX_TIME_H:  # Dose would name `duration`, not a column
            raise ValueError(
                f"{cells.where(i, 'RATE', sid)}: AMT {amt:g} mg at RATE {rate:g} "
                f"mg/h lasts {dur:.3g} h, beyond the {MAX_TIME_H:g} h ketasim "
                f"simulates; check AMT (mg) and RATE (mg/h)"
            )
    elif rate != 0:
        raise ValueError(
            f"{cells.where(i, 'RATE', sid)}: must be 0 (bolus), > 0 "
            f"(mg/h) or -2 (duration from DUR); got {rate:g}"
        )
    return amt, cmt, rate, dur


def check_repeats(cells: Cells, i, sid, sub: Subject, ii, addl, ssv) -> None:
    """II (h, >= 0), ADDL (>= 0, needs II > 0; the subject's doses bounded by
    :data:`MAX_DOSES_PER_SUBJECT`) and SS (0, 1 on the first dose, 2; needs
    II > 0) of a dose record; counts its doses."""
    if ii < 0:
        raise ValueError(f"{cells.where(i, 'II', sid)}: must be >= 0 h; got {ii:g}")
    if addl < 0 or (addl > 0 and ii <= 0):
        raise ValueError(
            f"{cells.where(i, 'ADDL', sid)}: ADDL {addl} needs II > 0 "
            f"h and ADDL >= 0; got II {ii:g}"
        )
    if sub.n_doses + 1 + addl > MAX_DOSES_PER_SUBJECT:
        raise ValueError(
            f"{cells.where(i, 'ADDL', sid)}: ADDL {addl} would give ID {sid} "
            f"{sub.n_doses + 1 + addl} doses; at most {MAX_DOSES_PER_SUBJECT} "
            f"per subject (MAX_DOSES_PER_SUBJECT). Check ADDL; a very long "
            f"regular course is better given as a steady state (SS)"
        )
    sub.n_doses += 1 + addl
    if ssv not in (0, 1, 2):
        raise ValueError(f"{cells.where(i, 'SS', sid)}: must be 0, 1 or 2; got {ssv}")
    if ssv and ii <= 0:
        raise ValueError(f"{cells.where(i, 'SS', sid)}: SS {ssv} needs II > 0 h")
    if ssv == 1 and sub.doses:
        raise ValueError(
            f"{cells.where(i, 'SS', sid)}: SS = 1 resets the subject, "
            "which is supported only on its first dose record; use "
            "SS = 2"
        )


def dose_device(
    cells: Cells, i, sid, model: Model, route: str, cmt: int, device: int | None
) -> int | None:
    """A dose record's DEVICE: None (0 or empty) or 1, 2, ...; required on a
    route that absorbs per device, refused on any other."""
    if device is not None and device < 0:
        raise ValueError(
            f"{cells.where(i, 'DEVICE', sid)}: must be 0 (not a device "
            f"dose) or 1, 2, ...; got {device}"
        )
    device = device or None  # 0: not a device dose
    if model.routes[route].device_mg is not None and device is None:
        fix = (
            "give this dose's DEVICE"
            if "DEVICE" in cells.col
            else "add a DEVICE column"
        )
        raise ValueError(
            f"{cells.where(i, 'DEVICE', sid)}: route {route!r} of model "
            f"{model.id!r} absorbs per device (less from the second of a session): "
            f"{fix}, 1 for the first device of a session, 2, 3, ... after it"
        )
    if model.routes[route].device_mg is None and device is not None:
        per_device = [r for r, spec in model.routes.items() if spec.device_mg]
        remap = (
            f"; or, if CMT {cmt} holds the {' or '.join(per_device)} doses, map it: "
            f"read_nonmem(..., route_by_cmt={{{cmt}: {per_device[0]!r}}})"
            if per_device
            else ""
        )
        raise ValueError(
            f"{cells.where(i, 'DEVICE', sid)}: DEVICE {device} on route {route!r} "
            f"(CMT {cmt}) of model {model.id!r}, which does not absorb per device; "
            f"write 0 or leave it empty{remap}"
        )
    return device


def covariates(path: Path, subjects: dict) -> dict[str, np.ndarray]:
    """Covariate name -> one value per subject (in ``subjects``' order). A value
    that changes within a subject, is empty or implausible is an error."""
    cov: dict = {}
    for sid, sub in subjects.items():
        for h, seen in sub.covariates.items():
            name = COVARIATE_COLUMNS[h]
            if len(seen) > 1:
                parts = "; ".join(
                    f"{'empty' if v is None else f'{v:.15g}'} on {line_text(ls)}"
                    for v, ls in seen.items()
                )
                raise ValueError(
                    f"{path}: ID {sid}, column {h}: changes within the subject "
                    f"({parts}). ketasim gives each subject one {name}, and does not "
                    f"pick one for you. Give every record of ID {sid} the same "
                    f"{h}, or read it as a time-varying covariate with "
                    f"read_nonmem(..., time_varying=True)"
                )
            ((v, ls),) = seen.items()
            if v is None:
                raise ValueError(
                    f"{path}: ID {sid}, column {h}: covariate {name} "
                    f"is missing (empty on {line_text(ls)}); give its "
                    "value"
                )
            try:  # the plausible-range and 0/1-flag rules simulate applies
                covariate_values(name, v)
            except (ValueError, TypeError) as exc:
                why = str(exc).replace(" for subject 0", "")
                raise ValueError(
                    f"{path}: {line_text(ls)}, ID {sid}, column {h}: {why}"
                ) from None
            cov.setdefault(name, {})[sid] = v
    return {
        name: np.array([v[sid] for sid in subjects], dtype=float)
        for name, v in cov.items()
    }


def regimens(subjects: dict) -> tuple[dict, dict, dict]:
    """Per subject its :class:`~ketasim.dosing.Regimen` (doses in time order),
    its SS doses' places in it ``[(dose index, II, SS), ...]`` (only subjects
    with SS records) and per dose its record's (line, ADDL copy)."""
    regs, steady, dose_lines = {}, {}, {}
    for sid, sub in subjects.items():
        order = sorted(range(len(sub.doses)), key=lambda k: sub.doses[k].time)
        ds = [sub.doses[k] for k in order]
        dose_lines[sid] = tuple(sub.lines[k] for k in order)
        regs[sid] = Regimen(ds)
        if sub.steady:  # the SS doses' places after sorting in the ADDL copies
            steady[sid] = [
                (next(k for k, x in enumerate(ds) if x is d), ii, v)
                for d, ii, v in sub.steady
            ]
    return regs, steady, dose_lines


def covariate_table(path: Path, subjects: dict) -> dict[str, np.ndarray]:
    """The covariates as a time-varying table, the form of
    ``ks.Subjects(covariates=...)``: columns ``id``, ``time`` (h) and one per
    covariate, a row at each subject's start (time 0: its first record's values
    hold from the start) and at each record whose values differ from those in
    force (NONMEM's convention as ketasim reads it: a record's value holds from
    that record on). Empty or implausible values and two different values at one
    TIME of one subject are errors naming the line, the ID and the column."""
    names = {
        h: COVARIATE_COLUMNS[h]
        for sub in subjects.values()
        for _, _, vals in sub.covariate_rows
        for h in vals
    }
    out: dict = {"id": [], "time": [], **{n: [] for n in names.values()}}
    for sid, sub in subjects.items():
        prev = None
        for i, t, vals in sub.covariate_rows:
            for h, v in vals.items():
                if v is None:
                    raise ValueError(
                        f"{path}: line {i}, ID {sid}, column {h}: covariate "
                        f"{names[h]} is empty; give its value on every record"
                    )
                try:  # the plausible-range and 0/1-flag rules simulate applies
                    covariate_values(names[h], v)
                except (ValueError, TypeError) as exc:
                    why = str(exc).replace(" for subject 0", "")
                    raise ValueError(
                        f"{path}: line {i}, ID {sid}, column {h}: {why}"
                    ) from None
            if prev is not None and vals == prev[1]:
                continue
            if prev is not None and t == prev[0]:
                raise ValueError(
                    f"{path}: line {i}, ID {sid}: the covariates change at "
                    f"TIME {t:g} h, where an earlier record of the subject has "
                    f"other values; give one set of values per time"
                )
            out["id"].append(sid)
            out["time"].append(0.0 if prev is None else t)
            for h, v in vals.items():
                out[names[h]].append(v)
            prev = (t, vals)
    return {
        k: np.array(v) if k == "id" else np.array(v, dtype=float)
        for k, v in out.items()
    }
