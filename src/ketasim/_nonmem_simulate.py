"""Simulating a NONMEM-style event table, one step at a time.

:func:`ketasim.nonmem.simulate_nonmem` runs these steps: the covariate columns
the model needs (:func:`require_covariates`), then per subject its predictions
(:func:`subject_predictions`: the kernel run on its regimen with the exact steady
state of its SS records, :func:`run` and :func:`with_steady_state`, and for each
pre-dose record the level just before the dose), then the Dataset
(:func:`dataset`) with the table as read (:func:`add_table`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .dosing import Regimen
from .model import KNOWN_COVARIATES, Model
from .nonmem import (
    COVARIATE_COLUMN,
    COVARIATE_UNIT,
    DOSE_ITEMS,
    RECORD_ITEMS,
    EventTable,
)


def subject_predictions(
    model: Model, table: EventTable, sid, cov: dict, overrides, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One subject's concentrations on ``t`` (analyte, time; ng/mL) and each of
    its observation records' predictions (analyte, observation): the level at
    the record's time, after the doses there, or for a pre-dose record the level
    just before them. ``cov`` and ``overrides`` are the subject's as
    ``simulate`` checks them."""
    params = model.individual_parameters(cov, overrides=overrides, n=1)
    reg = table.regimens[sid]
    steady = table.steady_state.get(sid, ())
    full = run(model, reg, params, cov, steady, t, sid, table)
    ot = table.observations[sid]
    dv = full[:, np.searchsorted(t, ot)]
    flags = table.predose.get(sid, np.zeros(ot.size, dtype=bool))
    for tau in np.unique(ot[flags]):  # the level just before the doses at tau
        m = sum(d.time < tau for d in reg.doses)  # doses are in time order
        if m == 0:
            level = np.zeros(len(model.analytes))
        else:
            level = run(
                model,
                Regimen(reg.doses[:m]),
                params,
                cov,
                [s for s in steady if s[0] < m],
                np.array([tau]),
                sid,
                table,
            )[:, 0]
        dv[:, flags & (ot == tau)] = level[:, None]
    return full, dv


def dataset(
    model: Model, table: EventTable, t: np.ndarray, out: np.ndarray
) -> xr.Dataset:
    """The concentrations (subject, analyte, time) as a Dataset, with which
    times each subject has an observation record at and its covariates."""
    seen = np.array([np.isin(t, table.observations[sid]) for sid in table.ids])
    ds = xr.Dataset(
        {
            "concentration": (
                ("subject", "analyte", "time"),
                out,
                {"units": "ng/mL", "long_name": "plasma concentration"},
            ),
            "observed_time": (
                ("subject", "time"),
                seen,
                {"long_name": "the subject has an observation record at this time"},
            ),
        },
        coords={
            "subject": list(table.ids),
            "analyte": list(model.analyte_names),
            "time": ("time", t, {"units": "h"}),
        },
        attrs={"model_id": model.id, "source": "NONMEM event table"},
    )
    for name, v in table.covariates.items():
        units = KNOWN_COVARIATES.get(name)
        ds.coords[name] = ("subject", v, {"units": units} if units else {})
    return ds


def add_table(ds: xr.Dataset, table: EventTable, dv: np.ndarray) -> xr.Dataset:
    """``ds`` with the table as read, for ``write_nonmem``: the dose records,
    every record, each observation record's time, pre-dose flag and prediction
    ``dv`` (subject, analyte, observation record)."""
    doses = padded([table.records.get(sid, ()) for sid in table.ids], len(DOSE_ITEMS))
    ds["nonmem_doses"] = (
        ("subject", "nonmem_dose", "nonmem_item"),
        doses,
        {
            "long_name": "the table's dose records as read (TIME h, AMT mg, RATE mg/h, "
            "DUR h, II h); NaN: no such record or item"
        },
    )
    ds.coords["nonmem_item"] = list(DOSE_ITEMS)
    every = padded([table.rows.get(sid, ()) for sid in table.ids], len(RECORD_ITEMS))
    ds["nonmem_records"] = (
        ("subject", "nonmem_record", "nonmem_field"),
        every,
        {
            "long_name": "the table's records as read, in file order (TIME h, AMT mg, "
            "RATE mg/h, DUR h, II h); NaN: empty, or no such record"
        },
    )
    ds.coords["nonmem_field"] = list(RECORD_ITEMS)
    ot = np.full((len(table.ids), dv.shape[2]), np.nan)
    pre = np.zeros((len(table.ids), dv.shape[2]), dtype=bool)
    for k, sid in enumerate(table.ids):
        v = table.observations[sid]
        ot[k, : v.size] = v
        pre[k, : v.size] = table.predose.get(sid, np.zeros(v.size, dtype=bool))
    ds["nonmem_observations"] = (
        ("subject", "nonmem_observation"),
        ot,
        {
            "units": "h",
            "long_name": "the table's observation records' times; NaN "
            "where a subject has fewer",
        },
    )
    ds["nonmem_predose"] = (
        ("subject", "nonmem_observation"),
        pre,
        {
            "long_name": "the observation record comes before a dose record at its "
            "time (the level just before that dose)"
        },
    )
    ds["nonmem_dv"] = (
        ("subject", "analyte", "nonmem_observation"),
        dv,
        {
            "units": "ng/mL",
            "long_name": "prediction for each observation record "
            "(pre-dose records: just before the dose)",
        },
    )
    return ds


def require_covariates(model: Model, table: EventTable) -> None:
    """Refuse a table without a column for a covariate the model uses.

    Used: the covariate of a covariate effect, and weight for per-kg parameters
    (weight may come from HT and BMI, as in ``simulate``). Covariates the model
    only states a reference for are not required. Without the column every
    subject would get the model's reference (e.g. 70 kg for a child)."""
    uses: dict[str, dict[str, list[str]]] = {}  # covariate -> how -> parameters
    for eff in model.covariate_effects:
        uses.setdefault(eff.covariate, {}).setdefault(f"{eff.kind} effect", []).append(
            eff.parameter
        )
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
        return ", ".join(
            f"{k}{'s' * (len(v) > 1)}"
            f"{'' if k.startswith('per-kg') else ' on'} {', '.join(v)}"
            for k, v in uses[n].items()
        )

    why = "; ".join(f"{n} ({how(n)})" for n in missing)
    ref = ", ".join(
        f"{n} {model.covariates[n]:g}"
        + (f" {COVARIATE_UNIT[n]}" if n in ("weight", "age", "height") else "")
        for n in missing
        if n in model.covariates
    )
    example = ", ".join(f"{COVARIATE_COLUMN[n]} ({COVARIATE_UNIT[n]})" for n in missing)
    where = f"{table.source}: " if table.source else ""
    raise ValueError(
        f"{where}the table has no {names} column, but model {model.id!r} uses "
        f"{why}; without it every subject would get the model's reference"
        f"{f' ({ref})' if ref else ''}. Add the column{'s' * (len(cols) > 1)} "
        f"{example}, one value per subject on every record"
    )


def table_dose_error(exc, table, sid, reg) -> str:
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
    return (
        f"{table.source}: line {line}, ID {sid}, column AMT: {what} "
        f"{msg[m.end() - 1 :]}"
    )


def run(model, reg, params, cov, steady, t, sid, table) -> np.ndarray:
    """One subject's concentrations (analyte, time) with its SS records; a kernel
    failure raises SolveError naming the ID, a dose that would overflow a
    DoseError naming the table's line."""
    from ._kernels.linear import population_linear, states
    from ._lower import check_magnitude, lower
    from ._run import STATUS, SolveError
    from .dosing import DoseError

    low = lower(model, reg, params, cov["weight"], 1)
    ev = [low.ev_time, low.ev_cmt, low.ev_kind, low.ev_value]
    try:
        # as simulate does: concentrations or AUC beyond double precision are
        # refused by name before the kernel returns inf
        check_magnitude(model, reg, low, float(t[-1]))
        for spec in steady:
            lines = table.dose_lines.get(sid, ())
            at = (
                f"{table.source}: line {lines[spec[0]][0]}, ID {sid}, column SS: "
                if spec[0] < len(lines)
                else f"ID {sid}: "
            )
            ev = with_steady_state(model, reg, params, cov, low, ev, spec, t, at)
    except DoseError as exc:
        raise DoseError(table_dose_error(exc, table, sid, reg)) from None
    status = np.zeros(1, dtype=np.int64)
    buf = np.empty((1, len(model.analytes), t.size))
    population_linear(
        low.A,
        *ev,
        t,
        low.obs_cmt,
        low.obs_scale,
        buf,
        status,
        states(low.A.shape[2]),
        states(low.A.shape[2]),
    )
    if status[0]:
        raise SolveError(
            f"ID {sid}: status {int(status[0])}: "
            f"{STATUS.get(int(status[0]), 'unknown')}"
        )
    return buf[0]


def with_steady_state(model, reg, params, cov, low, ev, spec, t, at=""):
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
            f"implemented; give the doses explicitly (ADDL) instead of SS"
        )
    # state one interval after a single dose from zero, via the exact propagator
    A = one.A[0, 0]
    n = A.shape[0]
    x = np.zeros(n)
    tcur = 0.0
    r = np.zeros(n)
    times = list(one.ev_time[0]) + [ii]
    kinds = list(one.ev_kind[0]) + [-1]
    for te, kd, cm, vl in zip(
        times,
        kinds,
        list(one.ev_cmt[0]) + [0],
        list(one.ev_value[0]) + [0.0],
        strict=True,
    ):
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
            f"overflows to inf. Check the amount (mg) and II (h)"
        )
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


def padded(per_subject: list, width: int) -> np.ndarray:
    """(subjects, most records, width) array of each record's ``items()``; NaN
    where a subject has fewer records."""
    out = np.full(
        (len(per_subject), max(map(len, per_subject), default=0), width), np.nan
    )
    for k, rs in enumerate(per_subject):
        for j, rec in enumerate(rs):
            out[k, j] = rec.items()
    return out
