"""NONMEM-style event tables: read dosing records into per-subject regimens, write
simulated results back in the same layout.

Columns (case-insensitive): ID, TIME (h), EVID (0 observation, 1 dose, 2 other —
ignored), AMT (mg), RATE (mg/h; 0 bolus; -2 duration from DUR, h), CMT, II (h), ADDL,
SS (0, 1, 2), MDV (0 or 1; 1 on an EVID 0 row: not an observation), DV, DEVICE
(position of a nasal-spray device within its session, 1, 2, ...; required for routes
whose absorption depends on it), a censoring column (CENS, BLQ or BQL: 1 on an
observation below the lower limit of quantification, DV holding that limit, NONMEM's
M3 convention), and covariate columns (WT/WEIGHT, AGE, HT/HEIGHT,
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
written as ``.``), the covariates, and the simulated DV on each observation (a
censoring column is not written: the DV is a simulated level).

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

Each public function is a short run of named steps, kept in one private module
per stage: reading in ``_nonmem_read`` (file, header, each record, covariates,
regimens), simulating in ``_nonmem_simulate`` (required covariates, each
subject's predictions with its steady state, the Dataset) and writing in
``_nonmem_write`` (DV analyte, subjects and covariates written, the layout for
the kind of Dataset).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .model import Model
from .modelfile import load_model

__all__ = [
    "MAX_DOSES_PER_SUBJECT",
    "DoseRecord",
    "EventTable",
    "Record",
    "read_nonmem",
    "simulate_nonmem",
    "write_nonmem",
]

MAX_DOSES_PER_SUBJECT = 100_000
"""Most dose records one subject may expand to (its records plus their ADDL
copies): a bound on memory and time, far above any real course."""

COVARIATE_COLUMNS = {
    "WT": "weight",
    "WEIGHT": "weight",
    "AGE": "age",
    "HT": "height",
    "HEIGHT": "height",
    "BMI": "bmi",
    "FEMALE": "female",
    "ASIAN": "asian",
    "JAPANESE": "japanese",
}
#: columns that mark an observation below the lower limit of quantification,
#: NONMEM's M3 convention (Beal 2001; Ahn et al. 2008): 1 on such a record, whose
#: DV holds the LLOQ; 0 or empty on any other. A table may have one of them.
CENSORING_COLUMNS = ("CENS", "BLQ", "BQL")
KNOWN = {
    "ID",
    "TIME",
    "EVID",
    "AMT",
    "RATE",
    "CMT",
    "II",
    "ADDL",
    "SS",
    "MDV",
    "DV",
    "DUR",
    "DEVICE",
}
# the columns of a dose record as read, in the order write_nonmem keeps them
DOSE_ITEMS = ("TIME", "AMT", "RATE", "DUR", "CMT", "II", "ADDL", "SS", "DEVICE")
# the columns of every record as read (Record), in the order simulate_nonmem
# stores them (nonmem_records) for write_nonmem
RECORD_ITEMS = (
    "TIME",
    "EVID",
    "MDV",
    "AMT",
    "RATE",
    "DUR",
    "CMT",
    "II",
    "ADDL",
    "SS",
    "DEVICE",
)
# covariate name -> the column write_nonmem writes and errors suggest
COVARIATE_COLUMN = {
    "weight": "WT",
    "age": "AGE",
    "height": "HT",
    "bmi": "BMI",
    "female": "FEMALE",
    "asian": "ASIAN",
    "japanese": "JAPANESE",
}
COVARIATE_UNIT = {
    "weight": "kg",
    "age": "y",
    "height": "cm",
    "bmi": "kg/m^2",
    "female": "0 or 1",
    "asian": "0 or 1",
    "japanese": "0 or 1",
}


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
        return (
            self.time,
            self.amt,
            self.rate,
            np.nan if self.dur is None else self.dur,
            self.cmt,
            self.ii,
            self.addl,
            self.ss,
            np.nan if self.device is None else self.device,
        )


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
        return tuple(
            np.nan if v is None else float(v)
            for v in (
                self.time,
                self.evid,
                self.mdv,
                self.amt,
                self.rate,
                self.dur,
                self.cmt,
                self.ii,
                self.addl,
                self.ss,
                self.device,
            )
        )


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
    ``censoring`` names the table's censoring column (CENS, BLQ or BQL; None
    when it has none) and ``censored`` marks, per observation, those below the
    lower limit of quantification, whose DV holds that limit (NONMEM's M3
    convention); all False without the column.
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
    # id -> bool per observation: below the LLOQ (its DV is the LLOQ), from the
    # censoring column ``censoring`` (CENS, BLQ or BQL; None: the table has none)
    censored: dict = field(default_factory=dict)
    censoring: str | None = None

    def __repr__(self) -> str:
        """One line: the file, subjects, doses, observations and covariates (the
        fields themselves print one subject at a time: ``table.regimens[id]``)."""
        ids = ", ".join(map(str, self.ids[:5])) + (", ..." if len(self.ids) > 5 else "")
        doses = sum(len(r.doses) for r in self.regimens.values())
        obs = sum(len(o) for o in self.observations.values())
        cov = ", ".join(k for k in self.covariates if k not in ("id", "time"))
        n = len(self.ids)
        return (
            f"EventTable({self.source!r}: {n} subject{'s' if n != 1 else ''} "
            f"(ID {ids}), "
            f"{doses} doses, {obs} observation records; covariates {cov or 'none'})"
        )


def read_nonmem(
    source: str | Path,
    model: Model | str | Path,
    *,
    route_by_cmt: dict[int, str] | None = None,
    time_varying: bool = False,
) -> EventTable:
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
    time_varying : bool
        Read the covariates as time-varying: ``covariates`` is then a table with
        ``id``, ``time`` (h) and one column per covariate, a row at time 0 per
        subject (its first record's values) and one at each record whose values
        change (a record's value holds from that record on), the form
        ``ks.simulate(..., subjects=ks.Subjects(covariates=...))`` takes.
        ``simulate_nonmem`` refuses such a table.

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
    - DV: ignored, but must be empty or a finite number (``estimate`` reads
      it: the measured concentration, ng/mL).
    - CENS, BLQ or BQL (one of them): 1 marks an observation below the lower
      limit of quantification, whose DV holds that limit (ng/mL, > 0): NONMEM's
      M3 convention (``censored``; ``estimate`` uses the probability of being
      below it). 0 or empty: not censored. 1 on a record that is not an
      observation (EVID 1 or 2, or MDV 1) is an error, and so is -1 (above an
      upper limit, which ketasim does not model) or any other value.
    - Covariates WT/WEIGHT (kg), AGE (y), HT/HEIGHT (cm), BMI (kg/m^2), FEMALE,
      ASIAN, JAPANESE: one value per subject, given on every record. A
      covariate that changes within a subject (unless ``time_varying=True``)
      or is empty on some of its records is an error naming the
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
    # imported here, not at the top: _nonmem_read imports this module's records
    from . import _nonmem_read as read

    model = load_model(model)
    routes = read.route_map(model, route_by_cmt)
    path = Path(source)
    rows = read.file_records(path)
    cells = read.Cells(path, read.columns(path, rows[0][1]))
    subjects = read.read_records(cells, rows[1:], model, routes)
    covariates = (
        read.covariate_table(path, subjects)
        if time_varying
        else read.covariates(path, subjects)
    )
    regimens, steady, dose_lines = read.regimens(subjects)
    return EventTable(
        tuple(subjects),
        regimens,
        covariates,
        {k: np.array(s.observations, dtype=float) for k, s in subjects.items()},
        steady,
        {k: tuple(s.records) for k, s in subjects.items()},
        {k: np.array(s.predose, dtype=bool) for k, s in subjects.items()},
        {k: tuple(s.rows) for k, s in subjects.items()},
        dose_lines,
        str(path),
        {k: np.array(s.censored, dtype=bool) for k, s in subjects.items()},
        read.censoring_column(cells),
    )


def simulate_nonmem(
    model: Model | str | Path,
    table: EventTable,
    *,
    times: Sequence[float] | np.ndarray | None = None,
) -> xr.Dataset:
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
    # imported here, not at the top: _nonmem_simulate imports this module
    from . import _nonmem_simulate as sim
    from ._subjects import subject_table as _subjects
    from ._times import check_times as _check_times

    model = load_model(model)
    if not isinstance(table, EventTable):
        raise TypeError(
            f"table must be an EventTable (from read_nonmem); got "
            f"{type(table).__name__}"
        )
    if not model.linear_time_invariant:
        raise ValueError("simulate_nonmem needs a linear time-invariant model")
    obs_all = [v for v in table.observations.values() if v.size]
    t = _check_times(
        times
        if times is not None
        else np.unique(np.concatenate(obs_all or [np.array([0.0])]))
    )
    # the kernel runs on the output times and every observation time, so each
    # record has its prediction whatever ``times`` is
    t_run = np.union1d(t, np.concatenate(obs_all)) if obs_all else t
    at_t = np.searchsorted(t_run, t)
    if "time" in table.covariates:
        raise ValueError(
            "simulate_nonmem takes one covariate value per subject; this table "
            "was read with time_varying=True. Simulate a subject with "
            "ks.simulate(model, table.regimens[id], subjects=ks.Subjects("
            "covariates=...)) given that subject's rows of table.covariates"
        )
    sim.require_covariates(model, table)
    # validity: once for the whole table, not once per subject
    _subjects(model, dict(table.covariates), None)
    n_obs = max((table.observations[sid].size for sid in table.ids), default=0)
    out = np.empty((len(table.ids), len(model.analytes), t.size))
    dv = np.full((len(table.ids), len(model.analytes), n_obs), np.nan)
    for k, sid in enumerate(table.ids):
        cov = {n: v[k] for n, v in table.covariates.items()}
        _, c, over = _subjects(model, cov, None, warn=False)
        full, pred = sim.subject_predictions(model, table, sid, c, over, t_run)
        out[k] = full[:, at_t]
        dv[k, :, : pred.shape[1]] = pred
    ds = sim.dataset(model, table, t, out)
    return sim.add_table(ds, table, dv)


def write_nonmem(
    ds: xr.Dataset,
    path: str | Path,
    *,
    analyte: str | None = None,
    cmt_by_route: dict[str, int] | None = None,
    observations: str = "records",
) -> Path:
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
    # imported here, not at the top: _nonmem_write imports this module
    from . import _nonmem_write as write

    if not isinstance(ds, xr.Dataset) or "scenario" in ds.dims:  # run_scenarios
        raise ValueError(
            f"write_nonmem writes one scenario; select it first, e.g. "
            f"ds.sel(scenario={str(ds.scenario.values[0])!r})"
        )
    if observations not in ("records", "times"):
        raise ValueError(
            f"observations must be 'records' (the table's own) or "
            f"'times' (every output time); got {observations!r}"
        )
    an = write.dv_analyte(ds, analyte)
    write.check_dv_units(ds)
    table = "nonmem_doses" in ds
    if table and cmt_by_route is not None:
        raise ValueError(
            "cmt_by_route is for a simulate() Dataset; this one is from "
            "simulate_nonmem, whose CMT values are written as read "
            "(read it with the same route_by_cmt)"
        )
    c = ds.concentration.sel(analyte=an).values
    t = ds.time.values
    subjects = write.written_subjects(ds)
    covs, cov_head = write.written_covariates(ds, subjects)
    if table and "nonmem_records" in ds and observations == "records":
        layout = write.as_read_layout(ds, an, cov_head)  # record for record
    elif table:
        layout = write.table_layout(ds, an, cov_head, observations, c, t)
    else:
        layout = write.simulate_layout(ds, cov_head, cmt_by_route, c, t)
    path = Path(path)
    out = []
    for s in subjects:
        cv = [_num(ds[k].values[s]) for k in covs]
        out += layout.rows(s, _id(ds.subject.values[s]), cv)
    # written only once every record is known: an error leaves no partial file
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(layout.head)
        w.writerows(out)
    return path


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
