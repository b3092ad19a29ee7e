"""Lowering: the only bridge from Python objects to the flat arrays kernels take.

Bioavailability, lag, zero-order durations, body-weight scaling and salt -> base are
applied here, once, vectorised over subjects. Events come out rectangular (S, E), each
row sorted by time: kind 0 = bolus (mg into a compartment), 1 = change of a zero-order
input rate (mg/h), 2 = padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dosing import MAX_DEVICE_GAP_H, DoseError, Regimen
from .model import Model

BOLUS, RATE, PAD, OCCASION, MARK = 0, 1, 2, 3, 4
DEVICE_RTOL = 1e-3  # a Dose counts as one device within 0.1 % of its amount
# Largest concentration (ng/mL) or AUC (ng·h/mL) bound a run may reach: doses whose
# total, times the largest amount -> concentration factor (and the horizon, for the
# AUC), exceeds it are refused (check_magnitude). Doubles overflow at 1.8e308; the
# 8 decades left are headroom for the kernels' intermediate sums (Taylor terms,
# Runge-Kutta stages), so a run that passes cannot overflow to inf.
MAX_MAGNITUDE = 1e300


def _subjects_text(bad: np.ndarray, limit: int = 5) -> str:
    """'subject 3' or 'subjects 0, 4, 9 (of 12 affected)' for a boolean mask."""
    idx = np.flatnonzero(bad)
    if idx.size == 1:
        return f"subject {idx[0]}"
    shown = ", ".join(str(i) for i in idx[:limit])
    return f"subjects {shown}" + (
        f" ... ({idx.size} affected)" if idx.size > limit else ""
    )


def _dose_text(i: int, d) -> str:
    """'doses[2] (0.5 mg/kg hcl by route 'iv' at 72 h)'."""
    salt = f" {d.salt}" if d.salt != "base" else ""
    return (
        f"doses[{i}] ({d.amount:g} {d.unit}{salt} by route {d.route!r} at {d.time:g} h)"
    )


def _check_dose_values(values: np.ndarray, what: str, i: int, d, unit: str) -> None:
    """Event values of doses[i] (mg, mg/h or h), after weight, salt and
    bioavailability scaling, must be finite: an overflow there (1e307 mg times a
    weight) would reach the kernels as inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        s = int(np.argmax(bad))
        raise DoseError(
            f"{_dose_text(i, d)}: its {what} is {values[s]} {unit} "
            f"for {_subjects_text(bad)} after weight, salt and bioavailability "
            f"scaling, not a finite number. Check the dose amount and unit, the "
            f"weight and the route's parameters"
        )


def _flow_parameters(model: Model, f) -> list[str]:
    """Names of the parameters a flow's rate constant is computed from."""
    names = [f.rate]
    if f.kind == "cl":
        names += [c.volume for c in model.compartments if c.name == f.source]
    if isinstance(f.fraction, str):
        names.append(f.fraction)
    return [x for x in names if x is not None]


def _flow_rates(model: Model, f, params, n: int) -> np.ndarray:
    """A flow's rate constant (1/h) per subject, as Model.rate_matrices forms it."""
    k = np.broadcast_to(np.asarray(params[f.rate], dtype=float), (n,))
    with np.errstate(all="ignore"):  # a zero volume or mean transit time: inf
        if f.kind == "cl":
            vol = next(c.volume for c in model.compartments if c.name == f.source)
            k = k / params[vol]
        elif f.kind == "mtt":
            k = f.count / k
    return np.broadcast_to(k, (n,))


def _check_rates(model: Model, occ_params: list, A: np.ndarray, keep, n: int) -> None:
    """Every flow's rate constant is finite and >= 0 and its fraction in [0, 1],
    for every subject (and occasion); otherwise name the flow, the parameters
    behind it with their values, and the subjects. Then, as a backstop, the
    lowered rate matrices (S, M, n, n) must be finite and compartmental
    (off-diagonal >= 0, diagonal <= 0). Vectorised: O(flows × S + S n^2)."""
    reasons = []
    for params in occ_params:
        for f in model.flows:
            if f.source not in keep:
                continue
            k = _flow_rates(model, f, params, n)
            frac = np.broadcast_to(model.value_of(f.fraction, params, n, 1.0), (n,))
            # a fraction the model file declares may exceed 1 (above_one) may
            top = np.inf if f.fraction in model.fractions_above_one else 1.0
            wrong = ~(np.isfinite(k) & (k >= 0) & (frac >= 0) & (frac <= top))
            if not wrong.any():
                continue
            s = int(np.argmax(wrong))
            names = _flow_parameters(model, f)
            shown = ", ".join(
                f"{x} = {np.broadcast_to(params[x], (n,))[s]:g}" for x in names
            )
            what = (
                "fraction"
                if np.isfinite(k[s]) and k[s] >= 0
                else "non-finite rate"
                if not np.isfinite(k[s])
                else "negative rate"
            )
            reasons.append(
                f"the flow {f.source} -> {f.target or 'elimination'} has a {what} "
                f"for {_subjects_text(wrong)} ({shown}; rate constant {k[s]:g} 1/h"
                + (f", fraction {frac[s]:g}" if what == "fraction" else "")
                + ")"
            )
        if reasons:
            raise ValueError(
                f"model {model.id!r}: {'; '.join(reasons)}. Rate constants must be "
                f"finite and >= 0 (volumes, clearances and mean transit times > 0) "
                f"and fractions in [0, 1]; check these individual parameter values "
                f"and the overrides or covariates that produced them"
            )
    # boolean temporaries only (1/8 of A's size; no copy of A for 1e6 subjects)
    finite = np.isfinite(A).all(axis=(2, 3))
    negative = A < 0
    ii = np.arange(A.shape[-1])
    negative[:, :, ii, ii] = False  # diagonal entries are outflows: <= 0
    ok = (
        finite
        & ~negative.any(axis=(2, 3))
        & ~(np.diagonal(A, axis1=2, axis2=3) > 0).any(axis=2)
    )
    if not ok.all():
        bad = ~ok.all(axis=1)
        s = int(np.argmax(bad))
        raise ValueError(
            f"model {model.id!r}: the rate matrix of {_subjects_text(bad)} is not "
            f"finite and compartmental (off-diagonal entries >= 0, diagonal <= 0): "
            f"{A[s].tolist()} 1/h; check the individual parameter values"
        )


def check_magnitude(model: Model, regimen: Regimen, low: Lowered, t_end: float) -> None:
    """Refuse doses whose results would overflow double precision.

    For a compartmental rate matrix (checked by :func:`lower`) no amount exceeds
    the total input, so a subject's concentrations are at most total mg × its
    largest obs_scale (ng/mL per mg), and its AUC that times ``t_end`` (h). Either
    above :data:`MAX_MAGNITUDE` raises a DoseError naming the largest dose.
    O(subjects × doses)."""
    if not low.dose_mg.size:
        return
    total = np.abs(low.dose_mg).sum(axis=1)
    scale = np.abs(low.obs_scale).max(axis=1) if low.obs_scale.size else np.ones(1)
    with np.errstate(over="ignore", invalid="ignore"):
        peak = total * scale
        bound = peak * max(1.0, float(t_end))
    bad = ~(bound <= MAX_MAGNITUDE)
    if not bad.any():
        return
    s = int(np.argmax(bad))
    i = int(np.argmax(np.abs(low.dose_mg[s])))
    d = regimen.doses[i]
    # times are at most MAX_TIME_H (1e6 h), so the span alone never overflows; when
    # only the AUC does, say that it is the amount over the span to times[-1]
    span = (
        ""
        if not peak[s] <= MAX_MAGNITUDE
        else f" over the {float(t_end):g} h to the last output time (times[-1])"
    )
    raise DoseError(
        f"{_dose_text(i, d)} gives {low.dose_mg[s, i]:.4g} mg to "
        f"{_subjects_text(bad)} ({total[s]:.4g} mg in all): concentrations could "
        f"reach {peak[s]:.3g} ng/mL and AUCs{span} {bound[s]:.3g} ng*h/mL, above "
        f"{MAX_MAGNITUDE:g}, where double precision overflows to inf. Check the "
        f"amount and its unit"
    )


def _device_text(i: int, d) -> str:
    """'doses[1] (device 2 of route 'intranasal' at 72 h)'."""
    return f"doses[{i}] (device {d.device} of route {d.route!r} at {d.time:.6g} h)"


def _gap_text(hours: float) -> str:
    return f"{hours * 60:.4g} min" if hours < 2 else f"{hours:.4g} h"


def sessions(regimen: Regimen) -> np.ndarray:
    """Session (occasion) index of each dose, nondecreasing in dose order.

    A dose without ``device=`` opens a new session. On routes that absorb per
    device, device 1 opens a new session and device k >= 2 joins the session of
    device k-1 of the same route, which must be the dose just before it and at
    most :data:`~ketasim.dosing.MAX_DEVICE_GAP_H` (1 h) earlier; device 1 must come
    more than that after the previous device of its route. Anything else raises a
    DoseError naming the dose: a wrong device number would silently give a spray
    the first device's absorption, or a later device's (reduced) one.
    """
    doses = regimen.doses
    out = np.empty(len(doses), dtype=np.int64)
    rule = (
        f"in one session the devices of a route are numbered 1, 2, 3, ... in "
        f"time order, each at most {MAX_DEVICE_GAP_H * 60:g} min after the one "
        f"before (the label gives 5 min)"
    )
    last: dict[str, int] = {}  # route -> index of its latest device dose
    k = -1
    for i, d in enumerate(doses):
        j = last.get(d.route) if d.device is not None else None
        if d.device is None or d.device == 1:
            if j is not None and d.time - doses[j].time <= MAX_DEVICE_GAP_H:
                raise DoseError(
                    f"{_device_text(i, d)} starts a new session only "
                    f"{_gap_text(d.time - doses[j].time)} after "
                    f"{_device_text(j, doses[j])}; {rule}. If it is the next device "
                    f"of that session give device={doses[j].device + 1}; a new "
                    f"session must start more than {MAX_DEVICE_GAP_H * 60:g} min "
                    f"after the last device of the previous one"
                )
            k += 1
        elif j is None:
            raise DoseError(
                f"{_device_text(i, d)} is a later device of a session, but no "
                f"device {d.device - 1} of route {d.route!r} comes before it; {rule}. "
                f"Number the session's devices from 1 (device=1 for the first), or "
                f"build the schedule with ks.esketamine_induction"
            )
        elif doses[j].device != d.device - 1:
            raise DoseError(
                f"{_device_text(i, d)} follows {_device_text(j, doses[j])}, not "
                f"device {d.device - 1}; {rule}. Give it "
                f"device={doses[j].device + 1} if it continues that session, or "
                f"device=1 if it starts a new one"
            )
        elif d.time - doses[j].time > MAX_DEVICE_GAP_H:
            raise DoseError(
                f"{_device_text(i, d)} comes {_gap_text(d.time - doses[j].time)} "
                f"after {_device_text(j, doses[j])}, more than the "
                f"{MAX_DEVICE_GAP_H * 60:g} min allowed between devices of one "
                f"session; {rule}. If it starts a new session give it device=1, "
                f"otherwise move it within {MAX_DEVICE_GAP_H * 60:g} min of "
                f"doses[{j}]"
            )
        elif j != i - 1:
            o = doses[i - 1]
            raise DoseError(
                f"{_device_text(i, d)} is separated from its session's previous "
                f"device, {_device_text(j, doses[j])}, by doses[{i - 1}] "
                f"({o.route!r} at {o.time:.6g} h); {rule}, with no other dose "
                f"between them. Give the other dose before the session's first "
                f"device or after its last"
            )
        if d.device is not None:
            last[d.route] = i
        out[i] = k
    return out


@dataclass(frozen=True)
class Lowered:
    A: np.ndarray  # (S, M, n, n) 1/h, one matrix per occasion
    ev_time: np.ndarray  # (S, E) h
    ev_cmt: np.ndarray  # (S, E) int64, index into `compartments`
    ev_kind: np.ndarray  # (S, E) int64
    ev_value: np.ndarray  # (S, E) mg or mg/h
    obs_cmt: np.ndarray  # (K,) int64
    obs_scale: np.ndarray  # (S, K) ng/mL per mg
    compartments: tuple[str, ...]  # compartments kept (reachable from the doses)
    dose_mg: np.ndarray  # (S, D) base mg actually given per dose, before F


def drug_factor(model: Model, i: int, d) -> float:
    """Share of dose ``d`` the model describes: 1, or ``racemic_fraction`` for a
    racemic dose given to an enantiomer model that declares one; else an error."""
    if d.drug is None or d.drug == model.drug:
        return 1.0
    if d.drug == "ketamine" and model.racemic_fraction is not None:
        return model.racemic_fraction
    hint = (
        "give the enantiomer amount (e.g. half the racemic dose) with "
        f"drug={model.drug!r}, or use a racemic model"
        if d.drug == "ketamine"
        else f"use a model of {d.drug}"
    )
    raise DoseError(
        f"doses[{i}] is {d.drug} but model {model.id!r} describes "
        f"{model.drug} ({model.enantiomer}) and declares no share of a "
        f"racemic dose (racemic_fraction); {hint}"
    )


def check_routes(
    model: Model, regimen: Regimen, analytes: set[str] | None = None
) -> None:
    """Every dose's route exists in the model and fits it (duration only for IV;
    ``device=`` exactly on routes that absorb per device, numbered as
    :func:`sessions` requires), and its drug is the model's (or a racemic dose the
    model knows how to split)."""
    for i, d in enumerate(regimen.doses):
        share = drug_factor(model, i, d)
        route = model.routes.get(d.route)
        if route is None:
            raise DoseError(
                f"doses[{i}] uses route {d.route!r}, which model {model.id!r} does not "
                f"define; its routes are {', '.join(sorted(model.routes))}"
            )
        if d.duration is not None and not route.intravenous:
            raise DoseError(
                f"doses[{i}]: route {d.route!r} is extravascular; its input profile "
                f"(bioavailability, lag, zero-order duration) comes from the model, so "
                f"a dose duration ({d.duration:g} h) cannot be applied. Drop "
                "duration=."
            )
        if route.device_mg is None and d.device is not None:
            raise DoseError(
                f"doses[{i}] has device={d.device}, but route {d.route!r} of model "
                f"{model.id!r} does not absorb per device (it declares no device "
                f"amount), so the device would only regroup sessions silently. Drop "
                f"device="
            )
        if route.device_mg is not None and d.device is None:
            # counting every spray as the first device would overstate what the
            # later devices of a session deliver
            raise DoseError(
                f"doses[{i}] on route {d.route!r} of model {model.id!r} has no "
                f"device=: this route absorbs per {route.device_mg:g}-mg device, less "
                f"from the second device of a session on. Give each Dose its place "
                f"in the session (device=1, 2, ... a few minutes apart), or build "
                f"the schedule with ks.esketamine_induction, which sets them"
            )
        if route.device_mg is not None:
            # a label's salt amount (32.3 mg HCl for 28 mg base) rounds to 0.02 %
            dev = route.device_mg
            mg = d.amount * d.base_factor * share
            if d.per_kg or abs(mg - dev) > DEVICE_RTOL * dev:
                got = (
                    f"{d.amount:g} mg/kg"
                    if d.per_kg
                    else f"{mg:.4g} mg"
                    + (
                        f" of base (from {d.amount:g} mg {d.salt})"
                        if d.salt != "base"
                        else ""
                    )
                )
                raise DoseError(
                    f"doses[{i}]: route {d.route!r} of model {model.id!r} takes one "
                    f"{dev:g}-mg device per Dose, because what it absorbs depends on "
                    f"the device's place in the session; got {got}. Give one Dose "
                    f"per device (device=1, 2, ... a few minutes apart), as "
                    f"ks.esketamine_induction does."
                )
    sessions(regimen)  # devices numbered in order, within the gap (else DoseError)
    check_analyte_limits(model, regimen, analytes)


def check_analyte_limits(
    model: Model, regimen: Regimen, analytes: set[str] | None = None
) -> None:
    """Doses after which the model cannot predict one of its analytes (its
    file's ``[[analytes.<name>.limits]]``): ``refuse`` raises a DoseError, ``warn``
    issues a :class:`~ketasim.ModelLimitWarning`; both name the dose and the
    reason."""
    import warnings

    from ._warn import ModelLimitWarning, in_chunk, stacklevel

    for a in model.analytes:
        if analytes is not None and a.name not in analytes:
            continue  # not used by the caller (estimation from other analytes)
        for lim in a.limits:
            for i, d in enumerate(regimen.doses):
                if lim.routes and d.route not in lim.routes:
                    continue
                if lim.shorter_than is not None and not (
                    d.duration is None or d.duration < lim.shorter_than
                ):
                    continue
                what = f"{_dose_text(i, d)}" + (
                    ""
                    if lim.shorter_than is None
                    else f", {'a bolus' if d.duration is None else 'an input'}"
                    f" shorter than {lim.shorter_than:g} h"
                )
                text = (
                    f"model {model.id!r} cannot predict {a.name} after {what}: "
                    f"{lim.reason}"
                )
                if lim.action == "refuse":
                    raise DoseError(text)
                if not in_chunk():
                    warnings.warn(
                        ModelLimitWarning(text, analyte=a.name),
                        stacklevel=stacklevel(),
                    )
                break  # one warning per limit and run


def downstream(model: Model, start: set[str]) -> set[str]:
    """``start`` and the compartments whose amounts depend on them (through flows)."""
    seen = set(start)
    frontier = list(start)
    while frontier:
        c = frontier.pop()
        for f in model.flows:
            if f.source == c and f.target is not None and f.target not in seen:
                seen.add(f.target)
                frontier.append(f.target)
    return seen


def reachable(model: Model, targets: set[str]) -> tuple[str, ...]:
    """Compartments reachable from ``targets`` through flows, plus observed ones,
    in model order. Pruning the rest keeps W2's IV-only run at 3 states, not 4."""
    seen = downstream(model, targets) | {a.compartment for a in model.analytes}
    return tuple(c for c in model.compartment_names if c in seen)


def lower(
    model: Model,
    regimen: Regimen,
    params: dict[str, np.ndarray] | list,
    weight: np.ndarray,
    n: int,
    *,
    prune: bool = True,
    markers: bool = False,
    covariates=None,
) -> Lowered:
    """``params``: individual parameters, or a list of them per occasion (session)
    when inter-occasion variability is drawn; then the rate matrix switches at the
    start of each session. ``markers`` adds a kind-4 event at each dose start (the
    metrics-only kernel's window boundaries), ahead of that dose's own events.
    ``covariates`` (name -> (n,) arrays): sex and height for doses per kg of
    ideal, lean or adjusted body weight (``Dose.weight_basis``)."""
    check_routes(model, regimen)
    occ_params = params if isinstance(params, list) else [params]
    sess = sessions(regimen)
    switch = _rates_switch(model, occ_params)
    targets = {
        pw.target for d in regimen.doses for pw in model.routes[d.route].pathways
    }
    keep = reachable(model, targets) if prune else model.compartment_names
    index = {c: i for i, c in enumerate(keep)}

    # one column of events per row appended to `rows` (times, cmts, kinds, values)
    rows = ([], [], [], [])
    dose_mg = np.empty((n, len(regimen.doses)))
    for di, d in enumerate(regimen.doses):
        params = occ_params[sess[di]] if len(occ_params) > 1 else occ_params[0]
        if switch and (di == 0 or sess[di] != sess[di - 1]):
            _add_rows(
                rows,
                np.full(n, d.time),
                np.zeros(n, dtype=np.int64),
                np.full(n, OCCASION, dtype=np.int64),
                np.full(n, float(sess[di])),
            )
        if markers:
            _add_rows(
                rows,
                np.full(n, d.time),
                np.zeros(n, dtype=np.int64),
                np.full(n, MARK, dtype=np.int64),
                np.full(n, float(di)),
            )
        mg = _dose_amount(model, di, d, _basis_weight(d, di, weight, covariates), n)
        dose_mg[:, di] = mg
        _dose_rows(rows, model, di, d, mg, params, index, n)
    ev_time, ev_cmt, ev_kind, ev_value = _event_table(*rows, n)

    used = occ_params if switch else occ_params[:1]
    sel = np.array([model.compartment_index(c) for c in keep], dtype=np.int64)
    with np.errstate(all="ignore"):  # non-finite rates are named just below
        A = np.stack(
            [model.rate_matrices(p, n)[:, sel][:, :, sel] for p in used], axis=1
        )
    A = np.ascontiguousarray(A)
    _check_rates(model, used, A, keep, n)
    obs_full, scale = _observation(model, occ_params, n)
    obs = np.array(
        [index[model.compartment_names[i]] for i in obs_full], dtype=np.int64
    )
    return Lowered(
        A,
        ev_time,
        ev_cmt,
        ev_kind,
        ev_value,
        obs,
        np.ascontiguousarray(scale),
        keep,
        dose_mg,
    )


def _rates_switch(model: Model, occ_params: list) -> bool:
    """The rate matrix switches per session only if IOV touches a flow or volume."""
    rate_names = {f.rate for f in model.flows} | {c.volume for c in model.compartments}
    return len(occ_params) > 1 and any(
        not np.array_equal(occ_params[0][k], p[k])
        for p in occ_params[1:]
        for k in rate_names
        if k is not None
    )


def _add_rows(rows: tuple, time, cmt, kind, value) -> None:
    """Append one event per subject (four (n,) columns) to ``rows``."""
    for col, a in zip(rows, (time, cmt, kind, value), strict=True):
        col.append(a)


def _basis_weight(d, di: int, weight: np.ndarray, covariates) -> np.ndarray:
    """The weight (kg) doses[di] scales with: total body weight, or the ideal,
    lean or adjusted weight its ``weight_basis`` names (``ketasim.bodysize``)."""
    basis = getattr(d, "weight_basis", "total")
    if basis == "total" or not d.per_kg:
        return weight
    from .bodysize import dosing_weight

    cov = dict(covariates or {})
    cov["weight"] = weight
    try:
        return dosing_weight(basis, cov)
    except ValueError as exc:
        raise DoseError(f"{_dose_text(di, d)}: {exc}") from None


def _dose_amount(model: Model, di: int, d, weight: np.ndarray, n: int) -> np.ndarray:
    """Base mg of doses[di] per subject (salt, drug share and body weight applied)."""
    mg = np.full(n, d.amount * d.base_factor * drug_factor(model, di, d))
    if d.per_kg and np.isnan(weight).any():
        raise DoseError(
            f"{_dose_text(di, d)} is per kg, but no body weight is known: model "
            f"{model.id!r} has no weight covariate and none was given. Pass "
            f"subjects=ks.Subjects(covariates={{'weight': 70}}) (kg) or a "
            f"Population, or give the dose "
            f"in mg"
        )
    if d.per_kg:
        with np.errstate(over="ignore", invalid="ignore"):
            mg = mg * weight
    _check_dose_values(mg, "amount", di, d, "mg")
    return mg


def _pathway_fractions(model: Model, d, params, n: int) -> list[np.ndarray]:
    """The share of dose ``d`` taken by each pathway of its route, per subject (a
    ``"rest"`` pathway takes what the others leave)."""
    route = model.routes[d.route]
    fracs = []
    for pw in route.pathways:
        f = (
            np.ones(n)
            if pw.fraction == "rest"
            else model.value_of(pw.fraction, params, n, 1.0)
        )
        if pw.later_devices is not None and (d.device or 1) >= 2:
            f = f * params[pw.later_devices]
        fracs.append(f)
    for pi, pw in enumerate(route.pathways):
        if pw.fraction == "rest":
            f = 1.0 - sum(x for j, x in enumerate(fracs) if j != pi)
            if np.any(f < 0):
                s = int(np.argmax(f < 0))
                raise DoseError(
                    f"route {d.route!r}: the other pathways take more than the "
                    f"whole dose for subject {s} (rest = {f[s]:.3g}); check the "
                    "fraction parameters"
                )
            fracs[pi] = f
    for pi, pw in enumerate(route.pathways):
        if pw.bioavailability is not None:  # first pass of what enters the pathway
            fracs[pi] = fracs[pi] * model.value_of(pw.bioavailability, params, n, 1.0)
    return fracs


def _dose_rows(
    rows: tuple, model: Model, di: int, d, mg: np.ndarray, params, index: dict, n: int
) -> None:
    """The events of doses[di] (``mg`` per subject): per pathway, a bolus at the
    lagged start, or a rate step up at the start and down at the end of a
    zero-order input (a zero duration is a bolus plus a padding row, so that rows
    stay rectangular)."""
    route = model.routes[d.route]
    fracs = _pathway_fractions(model, d, params, n)
    for pw, frac in zip(route.pathways, fracs, strict=True):
        with np.errstate(over="ignore", invalid="ignore"):
            amount = mg * frac
        _check_dose_values(amount, f"amount into {pw.target!r}", di, d, "mg")
        start = d.time + model.value_of(pw.lag, params, n, 0.0)
        _check_dose_values(
            start, f"start into {pw.target!r} (after the lag)", di, d, "h"
        )
        c = np.full(n, index[pw.target], dtype=np.int64)
        if d.duration is not None:
            dur = np.full(n, d.duration)
        elif pw.duration is not None:
            dur = params[pw.duration]
        else:
            _add_rows(rows, start, c, np.full(n, BOLUS, dtype=np.int64), amount)
            continue
        zero = dur <= 0.0  # a zero duration is a bolus; keep rows rectangular
        safe = np.where(zero, 1.0, dur)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            rate = amount / safe
        _check_dose_values(np.where(zero, 0.0, dur), "duration", di, d, "h")
        _check_dose_values(rate, f"input rate into {pw.target!r}", di, d, "mg/h")
        _add_rows(
            rows,
            start,
            c,
            np.where(zero, BOLUS, RATE).astype(np.int64),
            np.where(zero, amount, rate),
        )
        _add_rows(
            rows,
            start + np.where(zero, 0.0, dur),
            c,
            np.where(zero, PAD, RATE).astype(np.int64),
            np.where(zero, 0.0, -rate),
        )


def _event_table(
    times: list, cmts: list, kinds: list, values: list, n: int
) -> tuple[np.ndarray, ...]:
    """The (S, E) event arrays, each row sorted by time (stable: rows at one time
    keep the order they were added in)."""
    if not times:
        return (
            np.zeros((n, 0)),
            np.zeros((n, 0), dtype=np.int64),
            np.zeros((n, 0), dtype=np.int64),
            np.zeros((n, 0)),
        )
    if all(_shared(t) for t in times):  # the usual case: one shared table
        order = np.argsort([t[0] for t in times], kind="stable")
        return tuple(
            np.tile(np.array([a[i][0] for i in order]), (n, 1))
            if all(_shared(x) for x in a)
            else np.stack([a[i] for i in order], axis=1)
            for a in (times, cmts, kinds, values)
        )
    ev_time = np.stack(times, axis=1)
    order = np.argsort(ev_time, axis=1, kind="stable")
    return tuple(
        np.ascontiguousarray(np.take_along_axis(np.stack(a, axis=1), order, axis=1))
        for a in (times, cmts, kinds, values)
    )


def _observation(model: Model, occ_params: list, n: int) -> tuple:
    """(observed compartments in model order, (S, K) ng/mL per mg): every volume
    finite and > 0, and the same on every occasion (the exact kernels convert
    amounts with one volume per subject)."""
    with np.errstate(all="ignore"):  # a zero volume: named just below
        obs_full, scale = model.observation(occ_params[0], n)
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        s, k = (int(x[0]) for x in np.nonzero(bad))
        vol = model._volume_param(model.analytes[k].compartment)
        v = occ_params[0][vol]
        raise ValueError(
            f"model {model.id!r}: the volume {vol!r} of analyte "
            f"{model.analytes[k].name!r} is {np.broadcast_to(v, (n,))[s]:g} L for "
            f"{_subjects_text(bad[:, k])}; concentrations need a finite volume > 0. "
            f"Check that parameter's individual values"
        )
    for m, p in enumerate(occ_params[1:], start=2):
        moved = np.any(model.observation(p, n)[1] != scale, axis=0)
        if moved.any():
            cmts = {model.compartment_names[obs_full[k]] for k in np.flatnonzero(moved)}
            vols = sorted({c.volume for c in model.compartments if c.name in cmts})
            raise ValueError(
                f"model {model.id!r}: inter-occasion variability changes the volume "
                f"of an observed compartment ({', '.join(vols)}) from occasion 1 to "
                f"{m}; the exact kernels convert amounts with one volume per "
                f"subject, so this is not supported. Put the IOV on clearances or "
                f"absorption, or simulate with Population(iov=False)"
            )
    return obs_full, scale


def _shared(a: np.ndarray) -> bool:
    """Every subject has the same value (one row serves them all)."""
    return bool(np.all(a == a[0]))


def with_auc(low: Lowered) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rate matrix augmented with one integrator state per analyte.

    d(AUC_k)/dt = concentration_k = scale_k × x[obs_k], so the exact propagation
    returns the exact cumulative AUC (ng·h/mL) at every output time, not a
    trapezoid on the grid. Returns (A, extra obs_cmt, extra obs_scale)."""
    S, M, n, _ = low.A.shape
    K = low.obs_cmt.size
    A = np.zeros((S, M, n + K, n + K))
    A[:, :, :n, :n] = low.A
    for k in range(K):
        A[:, :, n + k, low.obs_cmt[k]] = low.obs_scale[:, k, None]
    return A, np.arange(n, n + K, dtype=np.int64), np.ones((S, K))
