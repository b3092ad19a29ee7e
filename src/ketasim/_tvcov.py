"""Time-varying (piecewise-constant) covariates on the exact and ODE paths.

A ``Subjects(covariates=...)`` table with a ``time`` column (h) and an ``id``
column gives several rows per subject; each row's values hold from its time on
(NONMEM's convention), until the subject's next row. The run reuses the
occasion mechanism of the exact kernels: each covariate segment is an occasion
with its own rate matrix, switched by a per-subject occasion event at the change
time; the kernels propagate the amounts across the switch unchanged. The kernels
convert amounts to concentrations with one scale per subject (segment 1's), so
the observed outputs are rescaled after the run with the scale of the segment in
force at each output time (a change at an output time counts from that time on).
Doses per kg use the weight in force at the dose's time.

The ODE path integrates each subject's segments one after the other, each from
the amounts the previous one ended with, at a shifted time 0 (the models are
time-invariant), with the infusions running at its start and its own volume.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from ._lower import (
    BOLUS,
    OCCASION,
    RATE,
    Lowered,
    _add_rows,
    _basis_weight,
    _check_rates,
    _dose_amount,
    _dose_rows,
    _event_table,
    _observation,
    check_routes,
    reachable,
)
from ._subjects import check_trajectory_memory, subject_table
from .dosing import Regimen
from .model import Model
from .options import ODE, Trajectories

__all__ = ["is_time_varying", "run_time_varying"]


def is_time_varying(covariates) -> bool:
    """The table has a ``time`` column: several rows per subject."""
    return covariates is not None and "time" in covariates


def _column(table, key: str) -> np.ndarray:
    return np.atleast_1d(np.asarray(table[key]))


def split(covariates) -> tuple[np.ndarray, list[np.ndarray], list[dict]]:
    """``(ids, starts, segments)``: the subjects' ids in order of appearance, each
    subject's segment start times (h), and per segment index j a covariate table
    (name -> (n,) values) whose row s is subject s's segment j, or its last
    segment when it has fewer."""
    if "id" not in covariates:
        raise ValueError(
            "a covariate table with a 'time' column (time-varying covariates) "
            "needs an 'id' column naming the subject of each row; got columns "
            f"{sorted(covariates)}"
        )
    ids = _column(covariates, "id")
    idl = ids.tolist()  # plain Python values for messages and labels
    time = _column(covariates, "time")
    try:
        time = time.astype(float)
    except (TypeError, ValueError):
        raise TypeError(
            f"covariate column 'time' must hold numbers in h; got {time.dtype}"
        ) from None
    names = [k for k in covariates if k not in ("id", "time")]
    cols = {k: _column(covariates, k) for k in names}
    for k, v in [("time", time), *cols.items()]:
        if v.size != ids.size:
            raise ValueError(
                f"covariate column {k!r} has {v.size} rows; the 'id' column has "
                f"{ids.size}: every column of a time-varying table needs one value "
                "per row"
            )
    bad = ~np.isfinite(time) | (time < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"covariate 'time' must be finite and >= 0 h; row {i} (id {idl[i]!r}) "
            f"has {time[i]:g}"
        )
    order, starts_at = [], []
    seen: set = set()
    for i in range(ids.size):
        if i == 0 or idl[i] != idl[i - 1]:
            if idl[i] in seen:
                raise ValueError(
                    f"the rows of subject id {idl[i]!r} are not contiguous (again "
                    f"at row {i}); give each subject's rows together, in time order"
                )
            seen.add(idl[i])
            order.append(idl[i])
            starts_at.append(i)
    bounds = [*starts_at, ids.size]
    starts, kept = [], []
    for s, (a, b) in enumerate(itertools.pairwise(bounds)):
        ts = time[a:b]
        if ts[0] != 0.0:
            raise ValueError(
                f"subject id {order[s]!r}: its first covariate row is at "
                f"{ts[0]:g} h; the first row of each subject must be at time 0 "
                "(the values in force from the start)"
            )
        if np.any(np.diff(ts) <= 0):
            j = int(np.flatnonzero(np.diff(ts) <= 0)[0])
            raise ValueError(
                f"subject id {order[s]!r}: covariate times must be strictly "
                f"increasing; row {a + j + 1} at {ts[j + 1]:g} h follows "
                f"{ts[j]:g} h"
            )
        # a row repeating the values in force changes nothing: it opens no
        # segment (so such a subject runs exactly as with constant covariates)
        rows = [a]
        for i in range(a + 1, b):
            if any(not np.array_equal(v[i], v[rows[-1]]) for v in cols.values()):
                rows.append(i)
        kept.append(np.array(rows))
        starts.append(time[rows])
    m = max(len(r) for r in kept)
    segments = []
    for j in range(m):
        rows = np.array([r[min(j, len(r) - 1)] for r in kept])
        segments.append({k: v[rows] for k, v in cols.items()})
    return np.array(order), starts, segments


def _check_output(model: Model, solver, output) -> None:
    if model.rhs is not None or model.time_effects:
        raise ValueError(
            f"model {model.id!r} has a user rhs or time effects; time-varying "
            "covariates need a linear time-invariant model built from flows"
        )
    if not isinstance(output, Trajectories):
        raise ValueError(
            "time-varying covariates give trajectories only; ks.Metrics is not "
            "supported with a covariate table that has a 'time' column"
        )
    if output.auc or output.residual or output.out is not None:
        raise ValueError(
            "time-varying covariates support Trajectories(amounts=...) only: "
            "auc=, residual= and out= assume one volume per subject"
        )
    from ._effects import effects_on

    if model.effect_sites and effects_on(model, output):
        raise ValueError(
            f"model {model.id!r} has effect sites; with time-varying covariates "
            "pass ks.Trajectories(effects=False)"
        )


def _pick(values: list, seg: np.ndarray, n: int) -> np.ndarray:
    """Per subject s the value of segment seg[s]."""
    stack = np.stack(
        [np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in values]
    )
    return stack[seg, np.arange(n)]


def _segment_at(starts: list[np.ndarray], t: float | np.ndarray) -> np.ndarray:
    """(n,) or (n, T) index of the segment in force at ``t`` (a row holds from
    its time on)."""
    return np.stack([np.searchsorted(ts, t, side="right") - 1 for ts in starts])


def lower_segments(
    model: Model,
    regimen: Regimen,
    seg_params: list[dict],
    seg_cov: list[dict],
    starts: list[np.ndarray],
    n: int,
) -> tuple[Lowered, np.ndarray]:
    """The event table with one occasion per covariate segment, and the (M, n, K)
    observation scales (ng/mL per mg) of every segment."""
    check_routes(model, regimen)
    targets = {
        pw.target for d in regimen.doses for pw in model.routes[d.route].pathways
    }
    keep = reachable(model, targets)
    index = {c: i for i, c in enumerate(keep)}
    m = len(seg_params)
    rows = ([], [], [], [])
    # occasion switches first: a dose at a change time sees the new values
    for j in range(1, m):
        when = np.array([ts[min(j, len(ts) - 1)] for ts in starts])
        _add_rows(
            rows,
            when,
            np.zeros(n, dtype=np.int64),
            np.full(n, OCCASION, dtype=np.int64),
            np.full(n, float(j)),
        )
    dose_mg = np.empty((n, len(regimen.doses)))
    for di, d in enumerate(regimen.doses):
        seg = _segment_at(starts, d.time)
        params = {k: _pick([p[k] for p in seg_params], seg, n) for k in seg_params[0]}
        cov = {k: _pick([c[k] for c in seg_cov], seg, n) for k in seg_cov[0]}
        mg = _dose_amount(model, di, d, _basis_weight(d, di, cov["weight"], cov), n)
        dose_mg[:, di] = mg
        _dose_rows(rows, model, di, d, mg, params, index, n)
    ev = _event_table(*rows, n)
    sel = np.array([model.compartment_index(c) for c in keep], dtype=np.int64)
    with np.errstate(all="ignore"):
        A = np.stack(
            [model.rate_matrices(p, n)[:, sel][:, :, sel] for p in seg_params], axis=1
        )
    A = np.ascontiguousarray(A)
    _check_rates(model, seg_params, A, keep, n)
    scales = []
    for p in seg_params:
        obs_full, scale = _observation(model, [p], n)
        scales.append(scale)
    obs = np.array(
        [index[model.compartment_names[i]] for i in obs_full], dtype=np.int64
    )
    low = Lowered(A, *ev, obs, np.ascontiguousarray(scales[0]), keep, dose_mg)
    return low, np.stack(scales)


def run_time_varying(
    model: Model, regimen: Regimen, t: np.ndarray, subjects, solver, output, errors
) -> xr.Dataset:
    """The in-memory run of a subjects table with time-varying covariates."""
    from ._assemble import assemble_trajectories
    from ._run import check_status
    from .options import Exact

    solver = solver if solver is not None else Exact()
    _check_output(model, solver, output)
    ids, starts, segments = split(subjects.covariates)
    seg_params, seg_cov = [], []
    for table in segments:
        n, cov, over = subject_table(model, table, subjects.parameters)
        if n != ids.size:  # scalars broadcast; the ids set the count
            cov = {k: np.broadcast_to(v, (ids.size,)).copy() for k, v in cov.items()}
            n = ids.size
        seg_cov.append(cov)
        seg_params.append(model.individual_parameters(cov, overrides=over, n=n))
    check_trajectory_memory(
        model, regimen, t, n, occasions=len(segments), output=output, solver=solver.name
    )
    low, scales = lower_segments(model, regimen, seg_params, seg_cov, starts, n)
    if isinstance(solver, ODE):
        result = _run_ode_segments(model, t, low, scales, starts, solver, output)
    else:
        result = _run_exact(
            model, regimen, t, low, scales, starts, solver, output, seg_params
        )
    check_status(model, result, t, errors)
    params = seg_params if len(seg_params) > 1 else seg_params[0]
    ds = assemble_trajectories(
        model,
        regimen,
        t,
        low,
        params,
        seg_cov[0],
        result,
        output,
        solver,
        None,
        np.arange(n),
    )
    return _label_segments(ds, ids, starts, seg_cov)


def _run_exact(model, regimen, t, low, scales, starts, solver, output, seg_params):
    """The exact kernels with an occasion per segment; the observed amounts
    rescaled with the volume in force at each output time."""
    from ._run import run_trajectories

    n = low.A.shape[0]
    if output.dose_windows and np.any(scales != scales[0]):
        raise ValueError(
            "the covariate changes change an observed volume, and the per-dose "
            "windows (predose, dose_auc) assume one volume per subject; pass "
            "output=ks.Trajectories(dose_windows=False) and integrate the "
            "returned concentrations for per-dose AUCs"
        )
    result = run_trajectories(
        model, regimen, t, low, seg_params[0], n, solver, output, False
    )
    # amounts -> concentrations with the volume in force at each output time
    k = low.obs_cmt.size
    at = _segment_at(starts, t)  # (n, T)
    ratio = (
        np.take_along_axis(
            np.moveaxis(scales, 0, 2), at[:, None, :].repeat(k, axis=1), axis=2
        )
        / scales[0][:, :, None]
    )
    result.buf[:, :k, :] *= ratio
    return result


def _label_segments(ds, ids, starts, seg_cov) -> xr.Dataset:
    """Rename the occasion dimension to ``segment`` and add the covariates of
    every segment with their start times."""
    from .model import KNOWN_COVARIATES

    m = len(seg_cov)
    if "occasion" in ds.dims:
        ds = ds.drop_vars("occasion").rename({"occasion": "segment"})
        ds["parameters"].attrs["long_name"] = (
            "individual parameters per covariate segment (canonical units, see "
            "parameter_unit); segment_start gives each segment's start"
        )
    start = np.full((len(starts), m), np.nan)
    for s, ts in enumerate(starts):
        start[s, : len(ts)] = ts
    ds = ds.assign_coords(subject_id=("subject", ids))
    ds["segment_start"] = (
        ("subject", "segment"),
        start,
        {
            "units": "h",
            "long_name": "start of each covariate segment (NaN: the subject has "
            "fewer segments)",
        },
    )
    for name in seg_cov[0]:
        ds[name].attrs["long_name"] = f"{name} at time 0 (see {name}_by_segment)"
        v = np.stack([c[name] for c in seg_cov], axis=1).astype(float)
        v[np.isnan(start)] = np.nan
        ds[f"{name}_by_segment"] = (
            ("subject", "segment"),
            v,
            {"units": KNOWN_COVARIATES[name], "long_name": f"{name} in each segment"},
        )
    ds.attrs["time_varying_covariates"] = (
        "piecewise constant; each row's values hold from segment_start on"
    )
    return ds


def _run_ode_segments(model, t, low, scales, starts, solver, output):
    """The ODE path, one kernel call per subject and segment: each segment starts
    from the amounts the previous one ended with, at its own shifted time 0, with
    its own rate matrix, the infusions running at its start and its own volume."""
    from ._kernels import ode as kernels_ode
    from ._run import Run
    from .options import ODE_METHODS

    n, _, ncmt, _ = low.A.shape
    k = low.obs_cmt.size
    kernels = kernels_ode.solver(ncmt, None)
    obs_cmt = np.concatenate([low.obs_cmt, np.arange(ncmt, dtype=np.int64)])
    rows = k + ncmt if output.amounts else k
    buf = np.full((n, rows, t.size), np.nan)
    status = np.zeros(n, dtype=np.int64)
    nsteps = np.zeros(n, dtype=np.int64)
    for s in range(n):
        x = np.zeros(ncmt)
        ts = starts[s]
        ev_t, ev_c, ev_k, ev_v = (
            low.ev_time[s],
            low.ev_cmt[s],
            low.ev_kind[s],
            low.ev_value[s],
        )
        for j, a in enumerate(ts):
            b = ts[j + 1] if j + 1 < len(ts) else np.inf
            before = (ev_k == RATE) & (ev_t < a)
            rate = np.zeros(ncmt)
            np.add.at(rate, ev_c[before], ev_v[before])
            on = np.flatnonzero(rate != 0.0)
            inside = (ev_t >= a) & (ev_t < b) & ((ev_k == BOLUS) | (ev_k == RATE))
            e_time = np.concatenate([np.zeros(on.size), ev_t[inside] - a])
            e_cmt = np.concatenate([on, ev_c[inside]]).astype(np.int64)
            e_kind = np.concatenate([np.full(on.size, RATE), ev_k[inside]]).astype(
                np.int64
            )
            e_val = np.concatenate([rate[on], ev_v[inside]])
            idx = np.flatnonzero((t >= a) & (t < b))
            times = t[idx] - a
            if np.isfinite(b):
                times = np.append(times, b - a)
            if times.size == 0:
                continue
            scale = np.concatenate([scales[j][s], np.ones(ncmt)])
            out = np.empty((k + ncmt, times.size))
            st, steps = kernels.solve_subject(
                np.ascontiguousarray(low.A[s, j].ravel()),
                x,
                e_time,
                e_cmt,
                e_kind,
                e_val,
                np.ascontiguousarray(times),
                obs_cmt,
                scale,
                float(solver.rtol),
                float(solver.atol),
                ODE_METHODS[solver.method],
                True,
                int(solver.max_steps),
                out,
            )
            nsteps[s] += steps
            buf[s, :, idx] = out[:rows, : idx.size].T
            if st != 0:
                status[s] = st
                break
            x = out[k:, -1].copy()
    return Run(
        buf,
        status,
        nsteps,
        None,
        f"ode: {solver.method} (Dormand-Prince 5(4) / Rodas4)",
    )
