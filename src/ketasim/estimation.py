"""Bayesian (MAP) individual estimation, forecasts and individual doses.

From a patient's measured levels to that patient's own parameters (what NONMEM
calls POSTHOC, PKPDmap or InsightRX do for model-informed precision dosing):

- :func:`estimate`: each subject's maximum a posteriori random effects under the
  model's inter-individual (and inter-occasion) variability and residual error,
  with its covariates; observations below a limit of quantification enter through
  the probability of being below it (Beal's M3).
- :func:`forecast`: the subject's concentrations under a course (the doses
  given and those planned), with intervals from the approximate posterior.
- :func:`next_dose`: the amount of one planned dose that brings the level at a
  time to a target, for each subject, with a chosen probability.

Built on the stages: subjects (``_subjects.subject_table``), lowering rules
(``_lower.check_routes``, ``sessions``, ``reachable``, ``drug_factor``) and the
matrix-exponential kernel (``_kernels/expm.py``); the optimiser is a batched
numba kernel (``_kernels/map.py``), one Levenberg-Marquardt run per subject, in
parallel over subjects.

Population estimation (fitting the fixed effects: FOCE, SAEM) is not done here:
the model's typical values, variabilities and residual errors are taken as
known.

References
----------
Beal SL. Ways to fit a PK model with some data below the quantification limit.
J Pharmacokinet Pharmacodyn 28(5):481-504 (2001). doi:10.1023/A:1012299115260
(method M3).

Savic RM, Karlsson MO. Importance of shrinkage in empirical Bayes estimates for
diagnostics. AAPS J 11(3):558-569 (2009). doi:10.1208/s12248-009-9133-0 (eta
shrinkage, 1 - SD(eta) / omega).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ._lower import check_routes, downstream, drug_factor, reachable, sessions
from ._subjects import subject_table
from .dosing import Dose, DoseError, Regimen
from .model import KNOWN_COVARIATES, Model
from .modelfile import load_model
from .units import to_hours, to_ng_per_ml

__all__ = ["estimate", "forecast", "next_dose"]

_Z90 = 1.6448536269514722  # standard normal 95th percentile: 90 % intervals

_STATUS_TEXT = {
    1: "the optimiser did not converge",
    2: "a prediction is zero or negative where the residual error model needs it > 0",
    3: "a rate matrix or exponential is not finite",
}


# ---------------------------------------------------------------------------
# the data: per subject its doses, covariates and observations
@dataclass
class _Subject:
    id: object
    regimen: Regimen
    time: np.ndarray  # (O,) h
    analyte: np.ndarray  # (O,) int, index into model.analytes
    dv: np.ndarray  # (O,) ng/mL (the LLOQ where censored)
    censored: np.ndarray  # (O,) bool: below the limit of quantification
    predose: np.ndarray  # (O,) bool: level just before the doses at its time


def _lloq_of(model: Model, lloq) -> dict[int, float]:
    """``lloq`` (None, one level or analyte -> level) as analyte index -> ng/mL;
    a molar level (``"0.01 umol/L"``) converts by each analyte's molecular
    weight."""
    if lloq is None:
        return {}
    if isinstance(lloq, Mapping):
        out = {}
        for name, v in lloq.items():
            k = _analyte_index(model, name, "lloq")
            out[k] = _positive_level(v, f"lloq[{name!r}]", model.analytes[k].mw)
        return out
    return {
        k: _positive_level(lloq, "lloq", a.mw) for k, a in enumerate(model.analytes)
    }


def _positive_level(v, what: str, mw: float | None = None) -> float:
    level = to_ng_per_ml(v, what=what, mw=mw)
    if not level > 0:
        raise ValueError(f"{what} must be > 0 ng/mL; got {v!r}")
    return level


def _analyte_index(model: Model, name, where: str) -> int:
    """Index of the model's analyte ``name`` names (canonical or common name)."""
    from ._analytes import resolve

    name = name.item() if isinstance(name, np.generic) else name
    try:
        found = resolve(name, model.analyte_names, f"model {model.id!r}")
    except ValueError as exc:
        raise ValueError(
            f"{where}: {exc}. Drop those rows or choose a model that describes "
            f"that analyte"
        ) from None
    return model.analyte_names.index(found)


def _columns(data) -> dict[str, np.ndarray]:
    """A tidy table (a pandas DataFrame, a dict of columns or a one-dimensional
    xarray Dataset) as name -> 1-D array."""
    if isinstance(data, xr.Dataset):
        if len(data.dims) != 1:
            raise ValueError(
                f"an xarray Dataset of observations must have one dimension (one "
                f"row per observation); got dims {dict(data.sizes)}"
            )
        cols = {str(k): np.asarray(data[k].values) for k in data.variables}
        for k in ("time", "concentration"):
            unit = data[k].attrs.get("units") if k in data.variables else None
            want = "h" if k == "time" else "ng/mL"
            if unit is not None and unit != want:
                raise ValueError(
                    f"data[{k!r}] has units {unit!r}; estimate reads {k} in {want}: "
                    f"convert it first"
                )
        return cols
    if not isinstance(data, Mapping) and not hasattr(data, "columns"):
        raise TypeError(
            f"data must be a table of observations (a pandas DataFrame, a dict "
            f"of columns or an xarray Dataset), or the path of a NONMEM CSV file; "
            f"got {type(data).__name__}"
        )
    return {str(k): np.asarray(v) for k, v in dict(data).items()}


_TABLE_COLUMNS = ("subject", "time", "concentration", "analyte", "lloq")


def _from_table(model: Model, data, doses, lloq) -> tuple[list[_Subject], dict]:
    """Subjects from a tidy table of observations (columns ``subject``, ``time``
    h, ``concentration`` ng/mL, ``analyte`` (optional with one analyte),
    ``lloq`` ng/mL (optional) and covariate columns, one value per subject) and
    ``doses`` (one Regimen for all, or subject -> Regimen)."""
    from .model import KNOWN_COVARIATES

    cols = _columns(data)
    for need in ("subject", "time", "concentration"):
        if need not in cols:
            raise ValueError(
                f"the observation table has no {need!r} column; it needs subject, "
                f"time (h), concentration (ng/mL) and, for a model with several "
                f"analytes, analyte; found {', '.join(cols)}"
            )
    for k in cols:
        if k not in _TABLE_COLUMNS and k not in KNOWN_COVARIATES:
            raise ValueError(
                f"unknown column {k!r} in the observation table; known: "
                f"{', '.join(_TABLE_COLUMNS)} and the covariates "
                f"{', '.join(KNOWN_COVARIATES)}"
            )
    n = cols["subject"].size
    if n == 0:
        raise ValueError("the observation table has no rows")
    if "analyte" not in cols:
        if len(model.analytes) > 1:
            raise ValueError(
                f"model {model.id!r} has several analytes "
                f"({', '.join(model.analyte_names)}); the observation table needs "
                f"an 'analyte' column"
            )
        cols["analyte"] = np.full(n, model.analyte_names[0], dtype=object)
    time = _float_column(cols, "time")
    dv = _float_column(cols, "concentration")
    row_lloq = _float_column(cols, "lloq") if "lloq" in cols else np.full(n, np.nan)
    ids = list(dict.fromkeys(cols["subject"].tolist()))
    regimens = _regimens(ids, doses)
    default_lloq = _lloq_of(model, lloq)
    subjects = []
    covariates: dict[str, list] = {}
    # each analyte name resolved once (a wrong one: by subject, in the loop)
    names = {}
    for a in dict.fromkeys(cols["analyte"].tolist()):
        try:
            names[a] = _analyte_index(model, a, "")
        except ValueError:
            pass
    _, first, inv = np.unique(cols["subject"], return_index=True, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inv.ravel()))[:-1])
    by_subject = {cols["subject"][g[0]].item(): g for g in groups}
    for sid in ids:
        rows = by_subject[sid]
        k = np.array(
            [
                names[a] if a in names else _analyte_index(model, a, f"subject {sid!r}")
                for a in cols["analyte"][rows]
            ],
            dtype=np.int64,
        )
        lq = row_lloq[rows].copy()
        for a, v in default_lloq.items():
            lq[(k == a) & np.isnan(lq)] = v
        subjects.append(
            _subject(sid, regimens[sid], time[rows], k, dv[rows], lq, None, rows)
        )
        for name in cols:
            if name in KNOWN_COVARIATES:
                v = np.unique(_covariate_column(cols[name][rows], name, sid))
                if v.size != 1:
                    raise ValueError(
                        f"covariate column {name!r} changes within subject {sid!r} "
                        f"({', '.join(f'{x:g}' for x in v)}); give one value per "
                        f"subject (time-varying covariates are not supported)"
                    )
                covariates.setdefault(name, []).append(v[0])
    return subjects, {k: np.array(v) for k, v in covariates.items()}


def _covariate_column(values: np.ndarray, name: str, sid) -> np.ndarray:
    """Covariate column ``name`` on subject ``sid``'s rows, checked as any
    covariate is (plain numbers in its unit, finite, plausible); the message
    names the table's subject, not a position."""
    import re

    from ._validate import covariate_values

    try:
        values = values.astype(float)  # numbers held as objects (a pandas column)
    except (TypeError, ValueError):
        pass  # text ('70 kg'): covariate_values says what to write
    try:
        return np.atleast_1d(covariate_values(name, values))
    except (TypeError, ValueError) as exc:
        msg = re.sub(r" for subject \d+", "", str(exc))  # a row position
        raise type(exc)(f"observation table, subject {sid!r}: {msg}") from None


def _float_column(cols: dict, name: str) -> np.ndarray:
    try:
        return cols[name].astype(float)
    except (TypeError, ValueError):
        raise TypeError(
            f"column {name!r} must hold plain numbers in "
            f"{'h' if name == 'time' else 'ng/mL'}; got {cols[name][:3].tolist()}... "
            f"Convert the values to {'h' if name == 'time' else 'ng/mL'} and drop "
            f"the unit text"
        ) from None


def _regimens(ids: list, doses) -> dict:
    if isinstance(doses, Dose):
        doses = Regimen([doses])
    if isinstance(doses, Regimen):
        return dict.fromkeys(ids, doses)
    if not isinstance(doses, Mapping):
        raise TypeError(
            f"doses must be a Regimen (the same for every subject) or a mapping "
            f"subject -> Regimen; got {type(doses).__name__}"
        )
    missing = [i for i in ids if i not in doses]
    if missing:
        raise ValueError(
            f"doses has no regimen for subject(s) {missing[:5]}; give every "
            f"subject of the observation table its doses"
        )
    out = {}
    for i in ids:
        r = doses[i]
        out[i] = Regimen([r]) if isinstance(r, Dose) else r
        if not isinstance(out[i], Regimen):
            raise TypeError(
                f"doses[{i!r}] must be a Regimen or a Dose; got {type(r).__name__}"
            )
    return out


def _subject(sid, regimen, time, k, dv, lq, predose, rows, flagged=None) -> _Subject:
    """One subject's observations, checked and sorted by time (a pre-dose level
    before the doses at its time). Censored: below ``lq``, or ``flagged`` (a
    NONMEM censoring column; their ``lq`` is their DV, the LLOQ)."""
    where = f"subject {sid!r}"
    bad = ~np.isfinite(time) | (time < 0)
    if bad.any():
        raise ValueError(
            f"{where}: observation time {float(time[bad][0])} h is not a finite "
            f"number >= 0 (row {rows[bad][0]})"
        )
    bad = ~np.isfinite(dv)
    if bad.any():
        raise ValueError(
            f"{where}: observation at {time[bad][0]:g} h has concentration "
            f"{float(dv[bad][0])}, not a finite number (row {rows[bad][0]}); drop the "
            f"row, or for a level below the limit of quantification give lloq"
        )
    if (dv < 0).any():
        i = int(np.argmax(dv < 0))
        raise ValueError(
            f"{where}: observation at {time[i]:g} h has a negative concentration "
            f"{dv[i]:g} ng/mL (row {rows[i]}); concentrations must be >= 0 (a "
            f"level below the limit of quantification: give lloq)"
        )
    bad = (lq <= 0) | np.isinf(lq)
    if bad.any():
        raise ValueError(
            f"{where}: lloq must be a finite number > 0 ng/mL (or NaN: none); got "
            f"{lq[bad][0]:g}"
        )
    censored = dv < lq  # NaN lloq: never
    if flagged is not None:
        censored |= flagged
    value = np.where(censored, lq, dv)
    pre = np.zeros(time.size, dtype=bool) if predose is None else predose
    doses = regimen.doses
    first = min(d.time for d in doses) if doses else np.inf
    before = (time < first) | ((time == first) & pre)
    if before.any():
        i = int(np.argmax(before))
        raise ValueError(
            f"{where}: observation at {time[i]:g} h comes before any dose"
            + (f" (the first is at {first:g} h)" if doses else " (it has no doses)")
            + ", where the model predicts zero; drop pre-dose (baseline) samples"
        )
    order = np.lexsort((~pre, time))
    return _Subject(
        sid, regimen, time[order], k[order], value[order], censored[order], pre[order]
    )


def _from_nonmem(model, path, route_by_cmt, analyte_by_cmt, lloq):
    """Subjects from a NONMEM CSV: doses, covariates and observation times by
    :func:`~ketasim.read_nonmem`; each observation's DV (ng/mL) and CMT (the
    analyte, through ``analyte_by_cmt``) read from the same records."""
    from .nonmem import read_nonmem

    table = read_nonmem(path, model, route_by_cmt=route_by_cmt)
    steady = [sid for sid in table.ids if table.steady_state.get(sid)]
    if steady:
        raise ValueError(
            f"{path}: ID {steady[0]} has a steady-state dose record (SS 1 or 2), "
            f"which estimation does not implement (its predictions would start "
            f"from zero); write the doses before it out, or use simulate_nonmem"
        )
    dvs = _nonmem_observations(Path(path))
    default_lloq = _lloq_of(model, lloq)
    column = table.censoring
    bare = [sid for sid in table.ids if table.observations[sid].size == 0]
    if bare:
        import warnings

        from ._warn import ValidityWarning

        one = len(bare) == 1
        warnings.warn(
            f"{path}: ID {', '.join(map(str, bare))} {'has' if one else 'have'} no "
            f"observation (EVID 0, MDV 0): {'its' if one else 'their'} estimates "
            f"are the population prior (random effects 0), not fitted to levels",
            ValidityWarning,
            stacklevel=3,
        )
    subjects = []
    for sid in table.ids:
        t = table.observations[sid]
        recs = dvs.get(sid, [])
        dv = np.array([r[0] for r in recs], dtype=float)
        lines = np.array([r[2] for r in recs], dtype=np.int64)
        if dv.size != t.size:  # unreachable: the same records, read twice
            raise RuntimeError(f"{path}: ID {sid}: observation records disagree")
        k = np.array(
            [
                _nonmem_analyte(model, r[1], analyte_by_cmt, path, r[2], sid)
                for r in recs
            ],
            dtype=np.int64,
        )
        lq = np.array([default_lloq.get(int(a), np.nan) for a in k])
        pre = table.predose.get(sid, np.zeros(t.size, dtype=bool))
        flagged = None
        if column is not None:
            flagged = table.censored[sid]
            _check_lloq_agrees(model, path, column, sid, k, dv, lq, flagged, lines)
            lq = np.where(flagged, dv, np.nan)  # the column decides
        subjects.append(
            _subject(sid, table.regimens[sid], t, k, dv, lq, pre, lines, flagged)
        )
    n = sum(int(s.censored.sum()) for s in subjects)
    if column is not None:
        note = (
            f"column {column} of {path}: {n} observation(s) below the LLOQ, DV "
            f"holding the LLOQ (NONMEM M3 convention)"
            + ("; lloq= agrees with it" if lloq is not None else "")
        )
    elif lloq is not None:
        note = f"lloq=: {n} observation(s) of {path} below it"
    else:
        note = f"none: {path} has no CENS/BLQ/BQL column and no lloq= was given"
    return subjects, dict(table.covariates), note


def _check_lloq_agrees(model, path, column, sid, k, dv, lq, flagged, lines) -> None:
    """lloq= given with a censoring column must say what the column says: a
    flagged record's DV (its LLOQ) is lloq=, and no unflagged DV is below it."""
    for j in np.flatnonzero(np.isfinite(lq)):
        name = model.analytes[int(k[j])].name
        if flagged[j] and not math.isclose(dv[j], lq[j], rel_tol=1e-6):
            raise ValueError(
                f"{path}: line {lines[j]}, ID {sid}: {column} 1 with DV {dv[j]:g} "
                f"ng/mL, the record's LLOQ, but lloq= gives {lq[j]:g} ng/mL for "
                f"{name}; the {column} column marks the censored records by "
                f"itself: drop lloq=, or correct the file"
            )
        if not flagged[j] and dv[j] < lq[j]:
            raise ValueError(
                f"{path}: line {lines[j]}, ID {sid}: DV {dv[j]:g} ng/mL is below "
                f"lloq= {lq[j]:g} ng/mL for {name}, but {column} is 0 (measured); "
                f"the {column} column marks the censored records by itself: drop "
                f"lloq=, or correct the file"
            )


def _nonmem_observations(path: Path):
    """Per ID: (DV, CMT, line) of each observation record (EVID 0, MDV not 1),
    in file order; DV must be a number."""
    dvs: dict = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().upper() for h in next(reader)]
        col = {h: i for i, h in enumerate(header)}
        if "DV" not in col:
            raise ValueError(f"{path}: no DV column; estimation needs the measured DV")
        prev = 1
        for r in reader:
            line = prev + 1
            prev = reader.line_num
            if not r or all(not x.strip() for x in r):
                continue

            def cell(name, r=r):
                i = col.get(name)
                return r[i].strip() if i is not None and i < len(r) else ""

            if float(cell("EVID") or 0) != 0 or cell("MDV") in ("1", "1.0"):
                continue
            sid = _nonmem_id(cell("ID"))
            text = cell("DV")
            try:
                dv = float(text)
            except ValueError:
                raise ValueError(
                    f"{path}: line {line}, ID {sid}, column DV: {text!r} is not a "
                    f"number; an observation record needs its measured "
                    f"concentration (ng/mL), or MDV 1"
                ) from None
            dvs.setdefault(sid, []).append((dv, cell("CMT"), line))
    return dvs


def _nonmem_id(text: str):
    v = float(text)
    return int(v) if v.is_integer() else v


def _nonmem_analyte(model, cmt: str, analyte_by_cmt, path, line, sid) -> int:
    if analyte_by_cmt is None:
        if len(model.analytes) == 1:
            return 0
        raise ValueError(
            f"model {model.id!r} has several analytes "
            f"({', '.join(model.analyte_names)}); pass analyte_by_cmt= (CMT number "
            f"of an observation record -> analyte), e.g. "
            f"{{2: {model.analyte_names[0]!r}, 3: {model.analyte_names[1]!r}}}"
        )
    try:
        c = int(float(cmt))
    except ValueError:
        c = None
    if c not in analyte_by_cmt:
        raise ValueError(
            f"{path}: line {line}, ID {sid}, column CMT: {cmt!r} is not in "
            f"analyte_by_cmt ({analyte_by_cmt}); give the analyte of every "
            f"observation compartment"
        )
    return _analyte_index(model, analyte_by_cmt[c], f"{path}: line {line}, ID {sid}")


# ---------------------------------------------------------------------------
# the model and subjects as kernel arrays
@dataclass
class _Problem:
    model: Model
    ids: list
    cov: dict
    iiv: list  # Variability with omega > 0, in theta order
    iov: list  # Variability with iov_omega > 0
    omega: np.ndarray  # (Q, Q)
    nocc_max: int
    args: dict  # kernel arrays by name


def _omega(model: Model, iiv: list) -> np.ndarray:
    """The IIV covariance of the etas (correlations as the model gives them)."""
    names = [v.parameter for v in iiv]
    om = np.diag([v.omega**2 for v in iiv])
    for a, b, rho in model.correlations:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            om[i, j] = om[j, i] = rho * iiv[i].omega * iiv[j].omega
    return om


def _model_arrays(model: Model, keep: tuple[str, ...], routes: list[str]) -> dict:
    """Flows, routes' pathways and observations as index tables over ``keep``
    (compartments) and the model's parameters."""
    pnames = model.parameter_names
    cidx = {c: i for i, c in enumerate(keep)}
    vol = {c.name: c.volume for c in model.compartments}
    flows, fconst = [], []
    for f in model.flows:
        if f.source not in cidx:
            continue
        kind = {"k": 0, "cl": 1, "mtt": 2}[f.kind]
        frac = f.fraction
        flows.append(
            [
                cidx[f.source],
                # into a compartment left out (no observed analyte depends on
                # it): for its source, the flow is a loss like elimination
                cidx.get(f.target, -1) if f.target is not None else -1,
                kind,
                pnames.index(f.rate),
                pnames.index(vol[f.source]) if kind == 1 else -1,
                pnames.index(frac) if isinstance(frac, str) else -1,
                f.count,
            ]
        )
        fconst.append(
            [
                1.0 if frac is None or isinstance(frac, str) else float(frac),
                model._mw_ratio(f.source, f.target) if f.target is not None else 1.0,
            ]
        )
    npw = max(len(model.routes[r].pathways) for r in routes)
    pw = np.full((len(routes), npw, 6), -1, dtype=np.int64)
    pwc = np.zeros((len(routes), npw))
    for ri, r in enumerate(routes):
        for q, p in enumerate(model.routes[r].pathways):
            fk, fv = 0, -1
            if p.fraction == "rest":
                fk = 3
            elif isinstance(p.fraction, str):
                fk, fv = 1, pnames.index(p.fraction)
            elif p.fraction is not None:
                fk, pwc[ri, q] = 2, float(p.fraction)
            pw[ri, q] = [
                cidx[p.target],
                fk,
                fv,
                pnames.index(p.lag) if p.lag else -1,
                pnames.index(p.duration) if p.duration else -1,
                pnames.index(p.later_devices) if p.later_devices else -1,
            ]
    return {
        "flows": np.array(flows, dtype=np.int64).reshape(-1, 7),
        "fconst": np.array(fconst, dtype=float).reshape(-1, 2),
        "ncmt": len(keep),
        # an analyte left out is not observed: its index is never read
        "obs_cmt": np.array(
            [cidx.get(a.compartment, 0) for a in model.analytes], np.int64
        ),
        "obs_vol": np.array(
            [pnames.index(vol[a.compartment]) for a in model.analytes], np.int64
        ),
        "pw": pw,
        "pwc": pwc,
    }


def _dose_weight(d, i: int, s: int, cov: dict) -> float:
    """The weight (kg) per-kg doses[i] of subject ``s`` scales with: its total
    body weight, or the ideal, lean or adjusted weight its ``weight_basis``
    names (``ketasim.bodysize``)."""
    from .bodysize import dosing_weight

    basis = getattr(d, "weight_basis", "total")
    one = {k: np.asarray(v, dtype=float)[s : s + 1] for k, v in cov.items()}
    try:
        w = one["weight"][0] if basis == "total" else dosing_weight(basis, one)[0]
    except ValueError as exc:
        raise DoseError(f"subject {s}, doses[{i}]: {exc}") from None
    if not np.isfinite(w):
        raise DoseError(
            f"doses[{i}] is per kg, but subject {s} has no body weight; give a "
            f"weight covariate or the dose in mg"
        )
    return float(w)


def _dose_arrays(model, subjects_regimens, cov, routes) -> dict:
    """Per subject (padded): dose times (h), base mg (salt, drug share and weight
    applied), route index, duration (h; NaN: the route's own), device, session."""
    S = len(subjects_regimens)
    D = max(1, max(len(r.doses) for r in subjects_regimens))
    t = np.zeros((S, D))
    mg = np.zeros((S, D))
    route = np.zeros((S, D), dtype=np.int64)
    dur = np.full((S, D), np.nan)
    dev = np.zeros((S, D), dtype=np.int64)
    occ = np.zeros((S, D), dtype=np.int64)
    nd = np.zeros(S, dtype=np.int64)
    for s, reg in enumerate(subjects_regimens):
        nd[s] = len(reg.doses)
        if not reg.doses:
            continue
        occ[s, : nd[s]] = sessions(reg)
        for i, d in enumerate(reg.doses):
            a = d.amount * d.base_factor * drug_factor(model, i, d)
            if d.per_kg:
                a *= _dose_weight(d, i, s, cov)
            t[s, i], mg[s, i], route[s, i] = d.time, a, routes.index(d.route)
            dur[s, i] = np.nan if d.duration is None else d.duration
            dev[s, i] = d.device or 0
    return {
        "dose_t": t,
        "dose_mg": mg,
        "dose_route": route,
        "dose_dur": dur,
        "dose_dev": dev,
        "dose_occ": occ,
        "nd": nd,
    }


def _obs_arrays(subjects: list[_Subject]) -> dict:
    S = len(subjects)
    n_obs = max(1, max(s.time.size for s in subjects))
    out = {
        "ot": np.zeros((S, n_obs)),
        "ok_an": np.zeros((S, n_obs), dtype=np.int64),
        "opre": np.zeros((S, n_obs), dtype=np.bool_),
        "dv": np.full((S, n_obs), np.nan),
        "cens": np.zeros((S, n_obs), dtype=np.bool_),
        "no": np.array([s.time.size for s in subjects], dtype=np.int64),
    }
    for i, s in enumerate(subjects):
        n = s.time.size
        out["ot"][i, :n] = s.time
        out["ok_an"][i, :n] = s.analyte
        out["opre"][i, :n] = s.predose
        out["dv"][i, :n] = s.dv
        out["cens"][i, :n] = s.censored
    return out


def _check_model(model: Model, observed: set[int]) -> tuple[list, list, np.ndarray]:
    """The model must be linear time-invariant, have IIV and a residual error
    model for each observed analyte (proportional/additive, or exponential)."""
    if not model.linear_time_invariant:
        raise ValueError(
            f"model {model.id!r} is not linear time-invariant (a user rhs or time "
            f"effects); estimation runs on the exact matrix-exponential path only"
        )
    iiv = [v for v in model.variability if v.omega > 0]
    if not iiv:
        raise ValueError(
            f"model {model.id!r} has no inter-individual variability (no omegas), "
            f"so there are no random effects to estimate; choose a model with IIV "
            f"(ketasim models lists them)"
        )
    res = np.zeros((len(model.analytes), 3))
    for k in sorted(observed):
        name = model.analyte_names[k]
        spec = model.residual.get(name)
        if not spec:
            raise ValueError(
                f"model {model.id!r} has no residual error model for analyte "
                f"{name!r}, which the data observe; estimation needs one (a "
                f"[residual.{name}] table). Without it the observations carry no "
                f"weight: choose a model that gives one"
            )
        prop = spec.get("proportional", 0.0)
        add = spec.get("additive_ng_per_ml", 0.0)
        ex = spec.get("exponential", 0.0)
        if ex > 0 and (prop > 0 or add > 0):
            raise ValueError(
                f"model {model.id!r}: analyte {name!r} combines an exponential with "
                f"a proportional or additive residual error, which estimation does "
                f"not implement"
            )
        if not (prop > 0 or add > 0 or ex > 0):
            raise ValueError(
                f"model {model.id!r}: the residual error of analyte {name!r} is zero"
            )
        res[k] = prop, add, ex
    iov = [v for v in model.variability if v.iov_omega > 0]
    return iiv, iov, res


def _effect_args(model: Model, pnames, base: dict, args: dict, iiv, iov) -> dict:
    """The MAP kernels' random-effect arguments: per parameter (``pnames`` order)
    its typical values ``base`` (subject x parameter), its random effects'
    distribution ``dist`` (0 none, 1 log-normal, 2 normal) and its column among
    the IIV and IOV effects (``iiv_idx``, ``iov_idx``; -1 none); ``Q``, ``R`` the
    numbers of IIV and IOV effects and ``nocc`` each subject's occasions (from
    the dose arrays in ``args``)."""
    dist = np.zeros(len(pnames), dtype=np.int64)
    iiv_idx = np.full(len(pnames), -1, dtype=np.int64)
    iov_idx = np.full(len(pnames), -1, dtype=np.int64)
    for v in model.variability:
        dist[pnames.index(v.parameter)] = 1 if v.distribution == "lognormal" else 2
    for q, v in enumerate(iiv):
        iiv_idx[pnames.index(v.parameter)] = q
    for q, v in enumerate(iov):
        iov_idx[pnames.index(v.parameter)] = q
    nocc = np.where(args["nd"] > 0, args["dose_occ"].max(axis=1) + 1, 1)
    return dict(
        base=np.stack([base[k] for k in pnames], axis=1),
        dist=dist,
        iiv_idx=iiv_idx,
        iov_idx=iov_idx,
        Q=len(iiv),
        R=len(iov),
        nocc=nocc.astype(np.int64),
    )


def _required_covariates(model: Model, cov_given: dict, doses_per_kg: bool) -> None:
    need = {e.covariate for e in model.covariate_effects}
    if doses_per_kg or any(p.per_kg for p in model.parameters.values()):
        need.add("weight")
    missing = sorted(need - set(cov_given))
    if "weight" in missing and {"height", "bmi"} <= set(cov_given):
        missing.remove("weight")
    if missing:
        raise ValueError(
            f"model {model.id!r} uses covariate(s) {', '.join(missing)}, which the "
            f"data do not give; individual estimates with the model's reference "
            f"values would describe another patient. Add a column per covariate "
            f"(one value per subject)"
        )


def _problem(model: Model, subjects: list[_Subject], cov_given: dict) -> _Problem:
    observed = {int(k) for s in subjects for k in s.analyte}
    iiv, iov, res = _check_model(model, observed)
    per_kg = any(d.per_kg for s in subjects for d in s.regimen.doses)
    _required_covariates(model, cov_given, per_kg)
    for s in subjects:
        bad = (res[s.analyte, 2] > 0) & ~s.censored & ~(s.dv > 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"subject {s.id!r}: observation at {s.time[i]:g} h is "
                f"{s.dv[i]:g} ng/mL, but analyte "
                f"{model.analyte_names[s.analyte[i]]!r} has an exponential "
                f"(log-normal) residual error, which needs a level > 0; a level "
                f"below the limit of quantification: give lloq"
            )
    used = {model.analyte_names[k] for k in observed}  # limits of these only
    for s in subjects:
        try:
            check_routes(model, s.regimen, analytes=used)
        except DoseError as exc:
            raise DoseError(f"subject {s.id!r}: {exc}") from None
    S = len(subjects)
    _, cov, _ = subject_table(model, cov_given or None, None)
    cov = {k: np.broadcast_to(v, (S,)).copy() for k, v in cov.items()}
    base = model.individual_parameters(cov, n=S)
    pnames = model.parameter_names
    routes = sorted({d.route for s in subjects for d in s.regimen.doses}) or sorted(
        model.routes
    )
    targets = {pw.target for r in routes for pw in model.routes[r].pathways}
    # only what the observed analytes depend on: W5 (parent observed) runs 3
    # states, not 5
    seen = {model.analytes[k].compartment for k in observed}
    keep = tuple(
        c
        for c in reachable(model, targets)
        if c in targets or downstream(model, {c}) & seen
    )
    args = _model_arrays(model, keep, routes)
    args.update(_dose_arrays(model, [s.regimen for s in subjects], cov, routes))
    args.update(_obs_arrays(subjects))
    args.update(_effect_args(model, pnames, base, args, iiv, iov))
    nocc = args["nocc"]
    col_on = _active_columns(model, subjects, args, iiv, iov, int(nocc.max()))
    args.update(col_on=col_on, res=res)
    return _Problem(
        model,
        [s.id for s in subjects],
        cov,
        iiv,
        iov,
        _omega(model, iiv),
        int(nocc.max()),
        args,
    )


def _influence(model: Model, name: str) -> set[str]:
    """Compartments whose amounts or concentrations parameter ``name`` changes:
    downstream of the flows it sets and the route pathways it shapes, and the
    compartments whose volume it is."""
    hit = {c.name for c in model.compartments if c.volume == name}
    for f in model.flows:
        vol = next(c.volume for c in model.compartments if c.name == f.source)
        if name in (f.rate, f.fraction) or (f.kind == "cl" and vol == name):
            hit.add(f.source)
    for r in model.routes.values():
        # a pathway's share moves the "rest" pathway's too: all of the route
        if any(
            name in (p.fraction, p.lag, p.duration, p.later_devices) for p in r.pathways
        ):
            hit |= {p.target for p in r.pathways}
    return downstream(model, hit)


def _active_columns(model, subjects, args, iiv, iov, M) -> np.ndarray:
    """(S, NT) bool: the random effects that can move a subject's predictions:
    those whose parameter reaches an analyte it observes and, for the
    inter-occasion ones, of an occasion starting by its last observation. The
    others stay at 0 (their posterior is the prior) and cost no sensitivity."""
    Q, R = len(iiv), len(iov)
    S = len(subjects)
    on = np.zeros((S, Q + M * R), dtype=np.bool_)
    reach = {v.parameter: _influence(model, v.parameter) for v in list(iiv) + list(iov)}
    for s, sub in enumerate(subjects):
        cmts = {model.analytes[int(k)].compartment for k in np.unique(sub.analyte)}
        for q, v in enumerate(iiv):
            on[s, q] = bool(reach[v.parameter] & cmts)
        if not R or not sub.regimen.doses:
            continue
        occ = args["dose_occ"][s]
        starts = [
            d.time
            for i, d in enumerate(sub.regimen.doses)
            if i == 0 or occ[i] != occ[i - 1]
        ]
        for m, t0 in enumerate(starts):
            if t0 <= sub.time.max():
                for r, v in enumerate(iov):
                    on[s, Q + m * R + r] = bool(reach[v.parameter] & cmts)
    return on


def _theta_covariance(prob: _Problem, M: int) -> np.ndarray:
    """Prior covariance of theta = (etas, kappas of M occasions)."""
    Q, R = len(prob.iiv), len(prob.iov)
    C = np.zeros((Q + M * R, Q + M * R))
    C[:Q, :Q] = prob.omega
    for m in range(M):
        for r, v in enumerate(prob.iov):
            C[Q + m * R + r, Q + m * R + r] = v.iov_omega**2
    return C


_MAP_ARGS = (
    "base dist iiv_idx iov_idx Q R nocc col_on flows fconst ncmt obs_cmt obs_vol "
    "dose_t dose_mg dose_route dose_dur dose_dev dose_occ nd pw pwc ot ok_an opre "
    "dv cens no res"
).split()
_PRED_ARGS = (
    "base dist iiv_idx iov_idx Q R nocc flows fconst ncmt obs_cmt obs_vol dose_t "
    "dose_mg dose_route dose_dur dose_dev dose_occ nd pw pwc ot ok_an opre no"
).split()


# ---------------------------------------------------------------------------
def estimate(
    model: Model | str | Path,
    data,
    *,
    doses: Regimen | Dose | Mapping | None = None,
    lloq=None,
    route_by_cmt: dict[int, str] | None = None,
    analyte_by_cmt: dict[int, str] | None = None,
) -> xr.Dataset:
    """Each subject's maximum a posteriori (MAP) individual parameters.

    The model's fixed effects (typical values, covariate effects), variabilities
    and residual errors are taken as known: this is individual (empirical Bayes,
    "POSTHOC") estimation, not population estimation (FOCE, SAEM), which ketasim
    does not do.

    Parameters
    ----------
    model : Model, str or Path
        A linear time-invariant model with inter-individual variability and a
        residual error model for every observed analyte.
    data : table or path
        Either the path of a NONMEM CSV file (read by :func:`ketasim.read_nonmem`,
        whose rules apply: doses, covariate columns, observation records with
        their ``DV`` in ng/mL and, for several analytes, their ``CMT``), or a
        tidy table of observations (pandas DataFrame, dict of columns or a
        one-dimensional xarray Dataset) with columns ``subject``, ``time`` (h),
        ``concentration`` (ng/mL), ``analyte`` (needed with several analytes),
        optionally ``lloq`` (ng/mL) and covariate columns (``weight``, ``age``,
        ...; one value per subject). A covariate the model uses must be given.
    doses : Regimen, Dose or mapping, optional
        With a table: the doses, one Regimen for every subject or subject ->
        Regimen. Not with a NONMEM file (its dose records are the doses).
    lloq : float, str or mapping, optional
        Lower limit of quantification (ng/mL; one for all analytes or analyte ->
        level), where the table has no ``lloq`` column. A molar limit
        (``"0.01 umol/L"``) converts by each analyte's molecular weight. An
        observation below its limit is censored: it enters through the
        probability that the concentration is below the limit (Beal's M3),
        whatever value it holds. A NONMEM file with a censoring column (CENS,
        BLQ or BQL: 1 where the level is below the LLOQ and DV holds the LLOQ,
        NONMEM's M3 convention) needs no ``lloq``: the column marks the censored
        records; an ``lloq`` given with it must agree (a flagged record's DV is
        its ``lloq``, no unflagged DV is below it), else it is an error naming
        the record. ``attrs["censoring"]`` of the result says where the limits
        came from.
    route_by_cmt : dict, optional
        NONMEM dose CMT -> route (as :func:`~ketasim.read_nonmem`).
    analyte_by_cmt : dict, optional
        NONMEM observation CMT -> analyte; needed when the model has several.

    Returns
    -------
    xarray.Dataset
        Per ``subject``: ``parameters`` (subject, parameter; with inter-occasion
        variability (subject, occasion, parameter)) in canonical units (see
        ``parameter_unit``), ``parameters_se`` (delta method) and
        ``parameters_lower``/``parameters_upper`` (90 % interval of the
        approximate posterior); ``eta`` and ``eta_se`` (subject,
        eta_parameter); ``theta`` and ``theta_covariance`` (all random effects,
        inter-occasion ones per occasion); ``shrinkage`` (eta_parameter;
        ``shrinkage_iov`` for inter-occasion effects); per observation (sorted
        by time) ``time`` (h), ``obs_analyte``, ``dv``, ``censored``, ``ipred``
        and ``pred`` (ng/mL) and ``iwres``; ``objective``, ``status`` and
        ``iterations``; ``dose_time`` and ``dose_mg`` (the doses seen).
        Covariates are ``subject`` coordinates.

    Notes
    -----
    The objective is minus twice the log joint density of the observations and
    the random effects, ``sum [log(2 pi V) + (y - f)^2 / V] - 2 sum_BLQ log
    Phi((LLOQ - f) / sqrt(V)) + eta' Omega^-1 eta + log det(2 pi Omega)``, with
    ``V = (prop f)^2 + add^2`` (an exponential error: the same on log
    concentrations). It is minimised per subject by Levenberg-Marquardt with
    forward-difference sensitivities of the exact predictions; standard errors
    come from the Gauss-Newton (expected information) approximation of its
    Hessian at the mode, ``H = sum w J J' + 2 Omega^-1``: covariance
    ``(H / 2)^-1``. ``IWRES = (y - IPRED) / sqrt(V(IPRED))`` (log scale for an
    exponential error; NaN for censored observations). CWRES and NPDE are not
    given: they need the population approximation (FOCE) or simulations this
    individual method does not make.

    Examples
    --------
    >>> import ketasim as ks
    >>> course = ks.Regimen([ks.Dose.infusion("20 mg", duration="40 min")])
    >>> obs = {"subject": [1, 1, 1], "time": [0.5, 2.0, 6.0],
    ...        "analyte": ["esketamine"] * 3,
    ...        "concentration": [120.0, 30.0, 8.0], "weight": [70, 70, 70]}
    >>> est = ks.estimate("fanta_2015", obs, doses=course)
    >>> est.status.values.tolist()
    [0]
    """
    from ._kernels.map import map_estimate

    model = load_model(model)
    if isinstance(data, str | Path):
        if doses is not None:
            raise ValueError(
                "a NONMEM file brings its own dose records; do not pass doses="
            )
        subjects, cov_given, censoring = _from_nonmem(
            model, data, route_by_cmt, analyte_by_cmt, lloq
        )
    else:
        if route_by_cmt is not None or analyte_by_cmt is not None:
            raise ValueError(
                "route_by_cmt and analyte_by_cmt are for NONMEM files; a table "
                "names analytes in its 'analyte' column"
            )
        if doses is None:
            raise ValueError(
                "doses= is required with a table of observations: a Regimen for "
                "every subject, or subject -> Regimen"
            )
        subjects, cov_given = _from_table(model, data, doses, lloq)
        n = sum(int(s.censored.sum()) for s in subjects)
        given = [
            x
            for x, on in [
                ("the lloq column", "lloq" in _columns(data)),
                ("lloq=", lloq is not None),
            ]
            if on
        ]
        censoring = (
            f"{' and '.join(given)}: {n} observation(s) below the LLOQ"
            if given
            else "none: no lloq column and no lloq= given"
        )
    prob = _problem(model, subjects, cov_given)
    a = prob.args
    S = len(subjects)
    NT = len(prob.iiv) + len(prob.iov) * prob.nocc_max
    C0 = _theta_covariance(prob, prob.nocc_max)
    Oinv = np.linalg.inv(C0)
    theta = np.zeros((S, NT))
    H = np.zeros((S, NT, NT))
    ofv = np.zeros(S)
    n_obs = a["ot"].shape[1]
    ipred = np.full((S, n_obs), np.nan)
    pred = np.full((S, n_obs), np.nan)
    status = np.zeros(S, dtype=np.int64)
    iters = np.zeros(S, dtype=np.int64)
    map_estimate(
        *(a[k] for k in _MAP_ARGS),
        Oinv,
        theta,
        H,
        ofv,
        ipred,
        pred,
        status,
        iters,
    )
    _check_status(subjects, status, ipred, a)
    _check_scale(subjects, pred, a)
    # the prior's normalising constant for the occasions each subject has
    ds = _assemble(prob, subjects, theta, H, ofv, ipred, pred, status, iters)
    ds.attrs["censoring"] = censoring
    return ds


def _check_scale(subjects, pred, a) -> None:
    """Warn (ValidityWarning) for each subject whose measured levels are a median
    100-fold or more above or below the population prediction (random effects 0)
    at the same times: levels are read in ng/mL, and a table in mg/L or ug/mL
    (1000 times smaller) would otherwise be fitted without a word."""
    import warnings

    from ._warn import ValidityWarning

    n_obs = a["ot"].shape[1]
    use = (np.arange(n_obs)[None, :] < a["no"][:, None]) & ~a["cens"]
    use &= (a["dv"] > 0) & (pred > 0)
    with np.errstate(all="ignore"):
        lr = np.log10(a["dv"] / pred)
    for s, sub in enumerate(subjects):
        r = lr[s, use[s]]
        if r.size == 0 or abs(np.median(r)) < 2.0:
            continue
        warnings.warn(
            f"subject {sub.id!r}: the measured levels are a median "
            f"{10 ** np.median(r):.3g} times the model's population prediction "
            f"at their times (random effects 0). Levels are read in ng/mL (a level "
            f"in mg/L or ug/mL is 1000 times smaller): check the unit, the times "
            f"and the doses. The estimates fit the levels as given",
            ValidityWarning,
            stacklevel=3,
        )


def _check_status(subjects, status, ipred, a) -> None:
    slow = np.flatnonzero(status == 1)
    if slow.size:
        import warnings

        warnings.warn(
            f"{slow.size} of {status.size} subjects did not converge (first: "
            f"{subjects[int(slow[0])].id!r}); their estimates are the last "
            f"iterate, with status 1 in the result",
            RuntimeWarning,
            stacklevel=3,
        )
    bad = np.flatnonzero(status >= 2)
    if not bad.size:
        return
    s = int(bad[0])
    sub = subjects[s]
    if status[s] == 2:
        o = int(np.argmax(~(ipred[s, : sub.time.size] > 0)))
        raise ValueError(
            f"subject {sub.id!r}: the model predicts {ipred[s, o]:g} ng/mL at "
            f"{sub.time[o]:g} h (a measured level) even at the typical parameters: "
            f"no dose has reached the plasma by then (a lag, or a sample at the "
            f"time of an extravascular dose); the residual error model gives that "
            f"observation zero likelihood. Drop it or check its time"
            + (f" ({bad.size} subjects affected)" if bad.size > 1 else "")
        )
    raise ValueError(f"subject {sub.id!r}: {_STATUS_TEXT[int(status[s])]}")


def _assemble(prob, subjects, theta, H, ofv, ipred, pred, status, iters):
    """The estimates as a labelled Dataset."""
    model = prob.model
    a = prob.args
    S = len(subjects)
    Q, R, M = len(prob.iiv), len(prob.iov), prob.nocc_max
    pnames = list(model.parameter_names)
    cov_theta = np.full_like(H, np.nan)
    for s in range(S):
        if status[s] <= 1:
            cov_theta[s] = np.linalg.inv(H[s] / 2.0)
    C0 = _theta_covariance(prob, M)
    sign, logdet = np.linalg.slogdet(2 * np.pi * C0)
    objective = ofv + logdet
    # individual parameters through the model (its transforms and checks)
    etas = {v.parameter: theta[:, q] for q, v in enumerate(prob.iiv)}
    per_occ, se_occ, lo_occ, hi_occ = [], [], [], []
    for m in range(max(M, 1) if R else 1):
        e = dict(etas)
        idx = {}  # parameter -> theta columns of its random effects
        for q, v in enumerate(prob.iiv):
            idx.setdefault(v.parameter, []).append(q)
        for r, v in enumerate(prob.iov):
            e[v.parameter] = e.get(v.parameter, 0.0) + theta[:, Q + m * R + r]
            idx.setdefault(v.parameter, []).append(Q + m * R + r)
        p = model.individual_parameters(prob.cov, e, n=S)
        table = np.stack([p[k] for k in pnames], axis=1)
        se = np.zeros_like(table)
        lo, hi = table.copy(), table.copy()
        for name, cols in idx.items():
            j = pnames.index(name)
            var = sum(cov_theta[:, c1, c2] for c1 in cols for c2 in cols)
            sd = np.sqrt(var)
            v = table[:, j]
            dist = next(
                x.distribution for x in model.variability if x.parameter == name
            )
            if dist == "lognormal":
                se[:, j] = v * sd
                lo[:, j], hi[:, j] = v * np.exp(-_Z90 * sd), v * np.exp(_Z90 * sd)
            else:
                se[:, j] = v * (1 - v) * sd
                lg = np.log(v / (1 - v))
                lo[:, j] = 1 / (1 + np.exp(-(lg - _Z90 * sd)))
                hi[:, j] = 1 / (1 + np.exp(-(lg + _Z90 * sd)))
        per_occ.append(table)
        se_occ.append(se)
        lo_occ.append(lo)
        hi_occ.append(hi)
    pdims = ("subject", "occasion", "parameter") if R else ("subject", "parameter")
    stack = (lambda x: np.stack(x, axis=1)) if R else (lambda x: x[0])
    punit = [model.parameters[k].canonical_unit.replace("/kg", "") for k in pnames]
    n_obs = a["ot"].shape[1]
    res = a["res"]
    kk = a["ok_an"]
    f = ipred
    y = a["dv"]
    prop, add, ex = res[kk, 0], res[kk, 1], res[kk, 2]
    with np.errstate(all="ignore"):
        iw = np.where(
            ex > 0,
            (np.log(y) - np.log(f)) / ex,
            (y - f) / np.sqrt((prop * f) ** 2 + add**2),
        )
    valid = np.arange(n_obs)[None, :] < a["no"][:, None]
    given = np.arange(a["dose_t"].shape[1])[None, :] < a["nd"][:, None]
    iw = np.where(valid & ~a["cens"], iw, np.nan)
    eta_names = [v.parameter for v in prob.iiv]
    sd_eta = np.sqrt(np.diagonal(cov_theta, axis1=1, axis2=2))
    ok = status == 0
    shrink = [
        1 - np.std(theta[ok, q], ddof=1) / v.omega if ok.sum() > 1 else np.nan
        for q, v in enumerate(prob.iiv)
    ]
    # inter-occasion: over the (subject, occasion) pairs whose kappa the data
    # can move (occasions after a subject's last level keep their prior)
    on = a["col_on"] & ok[:, None]
    shrink_iov = []
    for r, v in enumerate(prob.iov):
        cols = [Q + m * R + r for m in range(M)]
        k = theta[:, cols][on[:, cols]]
        shrink_iov.append(1 - np.std(k, ddof=1) / v.iov_omega if k.size > 1 else np.nan)
    ds = xr.Dataset(
        {
            "parameters": (
                pdims,
                stack(per_occ),
                {
                    "long_name": "individual parameters at the posterior mode "
                    "(canonical units, see parameter_unit)",
                },
            ),
            "parameters_se": (
                pdims,
                stack(se_occ),
                {
                    "long_name": "approximate standard error of the individual "
                    "parameters (delta method on the Gauss-Newton posterior "
                    "covariance; 0 for parameters without random effects, whose "
                    "fixed effects are taken as known; units: see parameter_unit)",
                },
            ),
            "parameters_lower": (
                pdims,
                stack(lo_occ),
                {
                    "long_name": "5th percentile of the approximate posterior "
                    "(normal on the eta scale; units: see parameter_unit)",
                },
            ),
            "parameters_upper": (
                pdims,
                stack(hi_occ),
                {
                    "long_name": "95th percentile of the approximate posterior "
                    "(units: see parameter_unit)",
                },
            ),
            "eta": (
                ("subject", "eta_parameter"),
                theta[:, :Q],
                {"long_name": "MAP inter-individual random effect", "units": "1"},
            ),
            "eta_se": (
                ("subject", "eta_parameter"),
                sd_eta[:, :Q],
                {
                    "long_name": "approximate posterior SD of eta (Gauss-Newton "
                    "Hessian at the mode)",
                    "units": "1",
                },
            ),
            "shrinkage": (
                ("eta_parameter",),
                np.array(shrink, dtype=float),
                {
                    "long_name": "eta shrinkage 1 - SD(eta) / omega over the "
                    "converged subjects (Savic & Karlsson 2009)",
                    "units": "1",
                },
            ),
            **(
                {
                    "shrinkage_iov": (
                        ("iov_parameter",),
                        np.array(shrink_iov, dtype=float),
                        {
                            "long_name": "kappa shrinkage 1 - SD(kappa) / "
                            "omega_iov over the converged subjects' occasions "
                            "that have levels (NaN: fewer than 2)",
                            "units": "1",
                        },
                    )
                }
                if R
                else {}
            ),
            "time": (
                ("subject", "obs"),
                np.where(valid, a["ot"], np.nan),
                {"long_name": "observation time", "units": "h"},
            ),
            "obs_analyte": (
                ("subject", "obs"),
                np.where(valid, np.array(model.analyte_names, dtype=object)[kk], ""),
                {"long_name": "analyte observed"},
            ),
            "dv": (
                ("subject", "obs"),
                np.where(valid, y, np.nan),
                {
                    "long_name": "measured concentration (the LLOQ where censored)",
                    "units": "ng/mL",
                },
            ),
            "censored": (
                ("subject", "obs"),
                a["cens"] & valid,
                {"long_name": "below the limit of quantification (M3 likelihood)"},
            ),
            "ipred": (
                ("subject", "obs"),
                np.where(valid, f, np.nan),
                {
                    "long_name": "individual prediction (posterior mode)",
                    "units": "ng/mL",
                },
            ),
            "pred": (
                ("subject", "obs"),
                np.where(valid, pred, np.nan),
                {
                    "long_name": "population prediction (random effects 0, "
                    "the subject's covariates)",
                    "units": "ng/mL",
                },
            ),
            "iwres": (
                ("subject", "obs"),
                iw,
                {
                    "long_name": "individual weighted residual (y - IPRED) / "
                    "sqrt(V(IPRED)); log scale for exponential errors",
                    "units": "1",
                },
            ),
            "objective": (
                ("subject",),
                objective,
                {
                    "long_name": "-2 log joint density of observations and random "
                    "effects at the mode (constants included)",
                    "units": "1",
                },
            ),
            "status": (
                ("subject",),
                status,
                {"long_name": "0 converged, 1 not converged"},
            ),
            "iterations": (("subject",), iters, {"long_name": "optimiser iterations"}),
            "theta_covariance": (
                ("subject", "random_effect", "random_effect_2"),
                cov_theta,
                {
                    "long_name": "approximate posterior covariance of the random "
                    "effects (etas, then per occasion the inter-occasion kappas)",
                    "units": "1",
                },
            ),
            "theta": (
                ("subject", "random_effect"),
                theta,
                {"long_name": "MAP random effects (etas, then kappas)", "units": "1"},
            ),
            "dose_time": (
                ("subject", "dose"),
                np.where(given, a["dose_t"], np.nan),
                {"long_name": "time of each dose the estimates saw", "units": "h"},
            ),
            "dose_mg": (
                ("subject", "dose"),
                np.where(given, a["dose_mg"], np.nan),
                {
                    "long_name": "base amount of each dose the estimates saw "
                    "(salt, drug share and weight applied)",
                    "units": "mg",
                },
            ),
        },
        coords={
            "subject": prob.ids,
            "parameter": pnames,
            "parameter_unit": ("parameter", punit),
            "eta_parameter": eta_names,
            **({"iov_parameter": [v.parameter for v in prob.iov]} if R else {}),
            "random_effect": _theta_labels(prob, M),
            "random_effect_2": _theta_labels(prob, M),
            **({"occasion": np.arange(1, M + 1)} if R else {}),
            **{
                k: ("subject", v, {"units": KNOWN_COVARIATES[k]})
                if k in KNOWN_COVARIATES
                else ("subject", v)
                for k, v in prob.cov.items()
            },
        },
        attrs={
            "model_id": model.id,
            "model_sha256": model.sha256,
            "method": "MAP (empirical Bayes) individual estimates: Levenberg-"
            "Marquardt on the random effects, exact matrix-exponential "
            "predictions, forward-difference sensitivities",
            "covariance": "Gauss-Newton (expected information) Hessian at the mode",
            "blq": "M3 (Beal 2001): a censored observation contributes "
            "P(concentration < LLOQ)",
            "scope": "individual estimation only; the fixed effects are the "
            "model's (no population estimation: FOCE, SAEM)",
        },
    )
    return ds


def _theta_labels(prob: _Problem, M: int) -> list[str]:
    out = [f"eta_{v.parameter}" for v in prob.iiv]
    for m in range(M):
        out += [f"kappa_{v.parameter}_occ{m + 1}" for v in prob.iov]
    return out


# ---------------------------------------------------------------------------
# forecasts and individual doses
def _course(model: Model, estimates: xr.Dataset, doses, times: np.ndarray):
    """Kernel arrays for each estimated subject on its whole course ``doses``
    (the doses the estimates saw, then the planned ones) with observations at
    ``times`` for every analyte; the random effects' mode and approximate
    posterior covariance extended to the course's occasions (a new occasion's
    kappas: the prior)."""
    from .model import KNOWN_COVARIATES

    if not isinstance(estimates, xr.Dataset) or "theta_covariance" not in estimates:
        raise TypeError(
            "estimates must be the Dataset ks.estimate returned; got "
            f"{type(estimates).__name__}"
        )
    if estimates.attrs.get("model_id") != model.id or estimates.attrs.get(
        "model_sha256"
    ) != (model.sha256):
        raise ValueError(
            f"the estimates were made with model "
            f"{estimates.attrs.get('model_id')!r}, not {model.id!r} (or another "
            f"version of it); forecast with the model that made them"
        )
    ids = estimates.subject.values.tolist()
    regimens = _regimens(ids, doses)
    S = len(ids)
    for s, sid in enumerate(ids):
        reg = regimens[sid]
        try:
            check_routes(model, reg)
        except DoseError as exc:
            raise DoseError(f"subject {sid!r}: {exc}") from None
        seen = estimates.dose_time.values[s]
        seen = seen[np.isfinite(seen)]
        got = np.array([d.time for d in reg.doses[: seen.size]])
        if got.size < seen.size or not np.allclose(got, seen, rtol=0, atol=1e-9):
            raise ValueError(
                f"subject {sid!r}: the course must begin with the {seen.size} "
                f"doses the estimates were made from (at "
                f"{', '.join(f'{x:g}' for x in seen)} h), then the planned ones; "
                f"got doses at {', '.join(f'{d.time:g}' for d in reg.doses)} h"
            )
    cov = {
        str(k): np.asarray(estimates[k].values, dtype=float)
        for k in estimates.coords
        if k in KNOWN_COVARIATES
    }
    base = model.individual_parameters(cov, n=S)
    pnames = model.parameter_names
    routes = sorted({d.route for r in regimens.values() for d in r.doses})
    if not routes:
        raise ValueError("the course has no doses")
    targets = {pw.target for r in routes for pw in model.routes[r].pathways}
    keep = reachable(model, targets)
    args = _model_arrays(model, keep, routes)
    args.update(_dose_arrays(model, [regimens[i] for i in ids], cov, routes))
    seen_mg = estimates.dose_mg.values
    for s, sid in enumerate(ids):
        m = np.isfinite(seen_mg[s])
        if not np.allclose(args["dose_mg"][s, : m.sum()], seen_mg[s, m], rtol=1e-12):
            raise ValueError(
                f"subject {sid!r}: the first {m.sum()} doses of the course must be "
                f"the doses the estimates were made from, amounts included (base "
                f"mg {', '.join(f'{x:g}' for x in seen_mg[s, m])}); got "
                f"{', '.join(f'{x:g}' for x in args['dose_mg'][s, : m.sum()])}"
            )
    K, T = len(model.analytes), times.size
    args.update(
        ot=np.tile(np.repeat(times, K), (S, 1)),
        ok_an=np.tile(np.tile(np.arange(K), T), (S, 1)),
        opre=np.zeros((S, K * T), dtype=np.bool_),
        no=np.full(S, K * T, dtype=np.int64),
    )
    iiv = [v for v in model.variability if v.omega > 0]
    iov = [v for v in model.variability if v.iov_omega > 0]
    args.update(_effect_args(model, pnames, base, args, iiv, iov))
    nocc, Q, R = args["nocc"], args["Q"], args["R"]
    M = max(int(nocc.max()), 1)
    NT = Q + M * R
    th = estimates.theta.values
    C = estimates.theta_covariance.values
    mean = np.zeros((S, NT))
    covar = np.zeros((S, NT, NT))
    n0 = min(th.shape[1], NT)
    mean[:, :n0] = th[:, :n0]
    covar[:, :n0, :n0] = C[:, :n0, :n0]
    for m in range(max(0, (n0 - Q) // R if R else 0), M):
        for r, v in enumerate(iov):
            covar[:, Q + m * R + r, Q + m * R + r] = v.iov_omega**2
    return args, mean, covar, regimens, ids


def _draws(mean, covar, status, labels, n: int, seed: int) -> np.ndarray:
    """(S, n + 1, NT): the mode, then ``n`` draws from N(mode, covariance) per
    subject (NaN for subjects whose estimate failed). A subject's draws come from
    its own generator, seeded by (seed, its label when a whole number, else its
    position), so they do not depend on which other subjects are forecast."""
    S, NT = mean.shape
    out = np.full((S, n + 1, NT), np.nan)
    for s in range(S):
        if status[s] != 0:
            continue
        lab = labels[s]
        key = int(lab) if isinstance(lab, int | np.integer) and lab >= 0 else s
        z = np.random.default_rng([seed, key]).standard_normal((n, NT))
        w, V = np.linalg.eigh((covar[s] + covar[s].T) / 2)
        L = V * np.sqrt(np.clip(w, 0.0, None))  # PSD factor; w >= -rounding
        out[s, 0] = mean[s]
        out[s, 1:] = mean[s] + z @ L.T
    return out


def _run_draws(args, theta) -> np.ndarray:
    """Predictions (S, n + 1, K*T) for the draws ``theta`` (S, n + 1, NT)."""
    from ._kernels.map import predict_many

    S, N, NT = theta.shape
    flat = np.ascontiguousarray(theta.reshape(S * N, NT))
    sub = np.repeat(np.arange(S), N)
    out = np.full((S * N, args["ot"].shape[1]), np.nan)
    st = np.zeros(S * N, dtype=np.int64)
    ok = np.isfinite(flat).all(axis=1)
    predict_many(
        np.where(ok[:, None], flat, 0.0), sub, *(args[k] for k in _PRED_ARGS), out, st
    )
    out[~ok] = np.nan
    if (st[ok] != 0).any():
        raise ValueError("a draw gave a non-finite rate matrix or exponential")
    return out.reshape(S, N, -1)


def _check_draws(n, seed, level):
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"n (posterior draws) must be an integer >= 2; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise ValueError(f"level must be a probability in (0, 1); got {level!r}")


def forecast(
    model: Model | str | Path,
    estimates: xr.Dataset,
    doses: Regimen | Dose | Mapping,
    *,
    times,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.9,
) -> xr.Dataset:
    """Each estimated subject's concentrations over a course, with intervals.

    Parameters
    ----------
    model : Model, str or Path
        The model the estimates were made with.
    estimates : xarray.Dataset
        The result of :func:`estimate`.
    doses : Regimen, Dose or mapping
        The whole course (one Regimen for all subjects, or subject ->
        Regimen): the doses the estimates saw, in the same order, then the
        planned ones.
    times : array_like
        Output times in h (sorted, >= 0).
    n : int
        Draws from the approximate posterior of each subject's random effects
        (normal: the mode and the Gauss-Newton covariance of :func:`estimate`;
        the inter-occasion effects of sessions not yet observed from their
        prior).
    seed : int
        Seed of the draws (numpy's default generator, one per subject seeded by
        the seed and the subject's label, so a subject's draws do not depend on
        the others forecast with it).
    level : float
        Probability of the central interval (0.9: the 5th to 95th percentile).

    Returns
    -------
    xarray.Dataset
        ``concentration`` (subject, analyte, time) at the posterior mode,
        ``concentration_median``, ``concentration_lower`` and
        ``concentration_upper`` over the draws (ng/mL). The
        intervals are of the subject's true concentration (parameter
        uncertainty); a future measurement also carries the residual error.
    """
    from ._times import check_times

    model = load_model(model)
    _check_draws(n, seed, level)
    t = check_times(times)
    args, mean, covar, _, ids = _course(model, estimates, doses, t)
    theta = _draws(mean, covar, estimates.status.values, ids, n, seed)
    pred = _run_draws(args, theta)
    S, K = len(ids), len(model.analytes)
    pred = pred.reshape(S, n + 1, t.size, K).transpose(0, 1, 3, 2)
    q = (1 - level) / 2
    lo, med, hi = np.nanquantile(pred[:, 1:], [q, 0.5, 1 - q], axis=1)
    attrs = {"units": "ng/mL"}
    return xr.Dataset(
        {
            "concentration": (
                ("subject", "analyte", "time"),
                pred[:, 0],
                {**attrs, "long_name": "concentration at the posterior mode"},
            ),
            "concentration_median": (
                ("subject", "analyte", "time"),
                med,
                {**attrs, "long_name": "posterior median concentration"},
            ),
            "concentration_lower": (
                ("subject", "analyte", "time"),
                lo,
                {**attrs, "long_name": f"{100 * q:g}th percentile (posterior)"},
            ),
            "concentration_upper": (
                ("subject", "analyte", "time"),
                hi,
                {**attrs, "long_name": f"{100 * (1 - q):g}th percentile (posterior)"},
            ),
        },
        coords={
            "subject": ids,
            "analyte": list(model.analyte_names),
            "time": ("time", t, {"units": "h"}),
        },
        attrs={
            "model_id": model.id,
            "draws": n,
            "seed": seed,
            "level": level,
            "interval": "parameter uncertainty only (approximate posterior of the "
            "random effects); no residual error",
        },
    )


def next_dose(
    model: Model | str | Path,
    estimates: xr.Dataset,
    doses: Regimen | Dose | Mapping,
    *,
    dose: int,
    at,
    target,
    analyte: str | None = None,
    probability: float = 0.5,
    n: int = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """The amount of one planned dose that brings each subject's level at a time
    to a target, with a chosen probability.

    The exact path is linear in the doses, so the level at ``at`` is ``c0 + a
    u``: ``c0`` from the other doses, ``u`` per unit of dose ``dose``'s amount
    ``a``. For each posterior draw the amount that meets the target exactly is
    ``(target - c0) / u``; the amount returned is the ``probability`` quantile
    of those, so that the level reaches the target in that share of the draws.
    (ketasim's general dose-planning solver is not used here: this is the
    one-dose, one-level solve that linearity makes exact.)

    Parameters
    ----------
    model, estimates, doses
        As :func:`forecast`; ``doses`` holds the dose to size, with any amount
        (it sets the form: route, duration, per kg or not).
    dose : int
        Index of that dose in each subject's course.
    at : float or str
        Time of the target level (h, or ``"72 h"``).
    target : float or str
        Target concentration (ng/mL, or ``"150 ng/mL"``).
    analyte : str, optional
        The analyte; default the model's first.
    probability : float
        Probability that the level at ``at`` is at least ``target``.
    n, seed
        Posterior draws, as :func:`forecast`.

    Returns
    -------
    xarray.Dataset
        ``amount`` (subject) in the unit of the dose as written (its salt and
        per-kg form kept), ``level_median``, ``level_lower``, ``level_upper``
        (90 % interval) at ``at`` with that amount, and ``above_without``: the
        subjects whose level is already above the target without the dose
        (their amount is 0).
    """
    model = load_model(model)
    _check_draws(n, seed, 0.9)
    if not (isinstance(probability, float | int) and 0 < probability < 1):
        raise ValueError(f"probability must be in (0, 1); got {probability!r}")
    t_at = to_hours(at, what="at")
    level = _positive_level(target, "target")
    k = 0 if analyte is None else _analyte_index(model, analyte, "next_dose")
    args, mean, covar, regimens, ids = _course(
        model, estimates, doses, np.array([t_at])
    )
    nd = args["nd"]
    first = int(np.isfinite(estimates.dose_mg.values).sum(axis=1).max())
    if (
        isinstance(dose, bool)
        or not isinstance(dose, int)
        or not (first <= dose < nd.min())
    ):
        raise ValueError(
            f"dose must be the index of a planned dose of every subject's course, "
            f"after the {first} the estimates were made from ({first} to "
            f"{nd.min() - 1}); got {dose!r}"
        )
    theta = _draws(mean, covar, estimates.status.values, ids, n, seed)
    a0 = args["dose_mg"][:, dose].copy()
    with_dose = _run_draws(args, theta)[:, :, k]
    args["dose_mg"][:, dose] = 0.0
    without = _run_draws(args, theta)[:, :, k]
    args["dose_mg"][:, dose] = a0
    u = (with_dose - without) / a0[:, None]
    if np.any(np.nanmax(u, axis=1) <= 0):
        s = int(np.argmax(np.nanmax(u, axis=1) <= 0))
        raise ValueError(
            f"subject {ids[s]!r}: the level of {model.analyte_names[k]} at "
            f"{t_at:g} h does not depend on doses[{dose}] (given at "
            f"{regimens[ids[s]].doses[dose].time:g} h); choose a later time"
        )
    need = (level - without) / u  # mg per draw
    mg = np.nanquantile(need[:, 1:], probability, axis=1)
    above = mg <= 0
    mg = np.where(above, 0.0, mg)
    got = without[:, 1:] + mg[:, None] * u[:, 1:]
    lo, med, hi = np.nanquantile(got, [0.05, 0.5, 0.95], axis=1)
    d0 = [regimens[i].doses[dose] for i in ids]
    amount = np.array([d.amount for d in d0]) * mg / a0
    units = {f"{d.unit}" + (f" ({d.salt})" if d.salt != "base" else "") for d in d0}
    if len(units) > 1:
        raise ValueError(
            f"doses[{dose}] is written in different units across subjects "
            f"({', '.join(sorted(units))}); write it in one unit"
        )
    c = {"units": "ng/mL"}
    return xr.Dataset(
        {
            "amount": (
                ("subject",),
                amount,
                {
                    "units": units.pop(),
                    "long_name": f"amount of doses[{dose}] for a level >= "
                    f"{level:g} ng/mL at {t_at:g} h with probability "
                    f"{probability:g}",
                },
            ),
            "level_median": (("subject",), med, {**c, "long_name": "median level"}),
            "level_lower": (("subject",), lo, {**c, "long_name": "5th percentile"}),
            "level_upper": (("subject",), hi, {**c, "long_name": "95th percentile"}),
            "above_without": (
                ("subject",),
                above,
                {"long_name": "already above the target without the dose"},
            ),
        },
        coords={"subject": ids},
        attrs={
            "model_id": model.id,
            "analyte": model.analyte_names[k],
            "at_h": t_at,
            "target_ng_per_ml": level,
            "probability": probability,
            "draws": n,
            "seed": seed,
            "method": "linear in the dose amount (exact path): per draw the "
            "amount meeting the target, its probability quantile",
        },
    )
