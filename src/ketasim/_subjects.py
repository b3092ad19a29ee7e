"""Stage 1b of a run: who is simulated. ``subject_table`` validates a table of known
subjects (covariates, individual parameters), ``population_parameters`` draws a
population's patients (covariates, IIV, per-session IOV), and the memory guards
refuse a run too large for this machine before any per-subject array exists."""

from __future__ import annotations

import warnings

import numpy as np

from ._lower import sessions
from ._warn import ValidityWarning, in_chunk, stacklevel
from .dosing import Regimen
from .model import KNOWN_COVARIATES, Model


def _physical_memory() -> int | None:
    """Bytes of physical memory, or None where the OS does not say."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # e.g. Windows
        return None


# The most memory simulate() may use at its peak (the float64 output buffer,
# subjects x outputs x times x 8 bytes, and every per-subject array: covariates,
# parameters, dose events, per-dose values, the observed copy): half the machine's
# physical memory, or 8 GiB where that is unknown. A larger request is refused
# before any per-subject array is allocated, with the size and the ways to proceed
# (fewer subjects or times, output=ks.Metrics(), chunks=).
RESULT_MAX_BYTES = (_physical_memory() or 16 * 2**30) // 2

_LIMIT_TEXT = "(half of this machine's memory)"


def _per_subject_bytes(
    model: Model, regimen: Regimen, *, occasions: int, outputs: int, solver: str
) -> int:
    """Bytes of the per-subject arrays besides the output buffer, an upper
    estimate of their peak: covariates (drawn: their uniforms and intermediates),
    individual parameters per occasion with their random effects, the lowered dose
    events (4 tables, built from per-dose lists, so twice), the rate matrices (and
    their full-model temporaries), observation scales, doses in mg, the exact
    per-dose windows (two auxiliary tables and their copies), status, steps,
    subject labels and, on the ODE path, its parameter vectors."""
    K = len(model.analytes)
    C = len(model.compartment_names)
    P = len(model.parameters)
    D = len(regimen.doses)
    events = sum(
        2 * len(model.routes[d.route].pathways) + 2 if d.route in model.routes else 4
        for d in regimen.doses
    )
    n = (
        24  # covariates: 7 values, 6 uniforms and intermediates
        + P * (3 * occasions + 2)  # parameters, etas and IOV etas per occasion
        + 2 * 4 * events  # ev_time, ev_cmt, ev_kind, ev_value (and their lists)
        + occasions * (C + K) ** 2
        + 2 * C * C  # A (with AUC states), temporaries
        + outputs
        + D  # obs_scale, dose_mg
        + 3 * 2 * K * (2 * D + 1)  # exact per-dose windows: aux, vals, copies
        + 3
    )  # status, ode_steps, subject
    if solver == "ode":
        n += 3 * (C + K) ** 2 + C  # p (A - t0 A1, A1), x0
    return 8 * n


def check_memory(n: int, per_subject: int, detail: str, ways: str) -> None:
    """Refuse a run whose peak, ``n`` subjects x ``per_subject`` bytes, exceeds
    :data:`RESULT_MAX_BYTES`, before any per-subject array is allocated.
    ``detail`` says what a subject's bytes are; ``ways`` how to proceed."""
    size = n * per_subject
    if size > RESULT_MAX_BYTES:
        raise ValueError(
            f"the result would need {size / 2**30:.3g} GiB at its peak ({n} subjects "
            f"x {per_subject:,} bytes: {detail}), more than the limit of "
            f"{RESULT_MAX_BYTES / 2**30:.3g} GiB {_LIMIT_TEXT}. {ways}"
        )


_WAYS = (
    "Use fewer subjects or fewer output times (a longer step, or only the "
    "times you need), output=ks.Metrics() (per-dose metrics in bounded "
    "memory), or chunks= (a lazy Dask result computed and written chunk by "
    "chunk)"
)


def check_trajectory_memory(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    n: int,
    *,
    occasions: int,
    output,
    solver: str,
) -> None:
    """The peak of an in-memory trajectory run (``output``, a Trajectories): the
    output buffer (analytes, AUC states, compartment amounts) x times, the
    observed copy with ``residual=True`` (its noise is drawn in bounded blocks),
    and the other per-subject arrays (:func:`_per_subject_bytes`)."""
    from ._lower import reachable

    auc, amounts, residual = output.auc, output.amounts, output.residual
    out_given = output.out is not None

    K = len(model.analytes)
    if amounts:
        targets = {
            pw.target
            for d in regimen.doses
            if d.route in model.routes
            for pw in model.routes[d.route].pathways
        }
        ncmt = (
            len(reachable(model, targets))
            if model.rhs is None
            else len(model.compartment_names)
        )
    else:
        ncmt = 0
    from ._effects import effects_on

    # effect sites are kernel outputs; each effect endpoint is one more array
    E = len(model.effect_sites) + len(model.effects) if effects_on(model, output) else 0
    outputs = K * (1 + auc) + ncmt + E
    what = (
        "concentrations"
        + ", AUC" * auc
        + ", amounts" * amounts
        + ", effect sites and effects" * bool(E)
    )
    buffer = 0 if out_given else 8 * outputs * t.size
    # residual=True: the observed copy, and the draws of one block of subjects
    # with the generator's temporaries (about 6 arrays), shared by the n subjects
    block = min(n, residual_block(t.size))
    observed = 8 * K * t.size + -(-6 * 8 * 3 * t.size * block // n) if residual else 0
    other = _per_subject_bytes(
        model, regimen, occasions=occasions, outputs=outputs, solver=solver
    )
    detail = (
        f"{outputs} outputs ({what}) x {t.size} times x 8 bytes"
        if not out_given
        else "the ks.Trajectories(out=...) buffer is yours"
    )
    if residual:
        detail += (
            f", {K} analytes x {t.size} times x 8 bytes for the observed "
            f"concentrations (ks.Trajectories(residual=True))"
        )
    detail += (
        f", {other:,} bytes of parameters, covariates, dose events and per-dose values"
    )
    check_memory(n, buffer + observed + other, detail, _WAYS)


def occasions(model: Model, regimen: Regimen, population) -> int:
    """Occasions whose parameters a run draws: one per dosing session with
    inter-occasion variability (a population with ``iov=True`` and a model with
    IOV), else 1."""
    if (
        population is None
        or not population.iov
        or not regimen.doses
        or not any(v.iov_omega > 0 for v in model.variability)
    ):
        return 1
    return int(sessions(regimen).max()) + 1


def residual_block(T: int) -> int:
    """Subjects whose residual draws (3 per time) are made at once: about 2
    million draws, 16 MB each for the few temporaries of the generator."""
    return max(1, 2**21 // (3 * T))


def check_metrics_memory(
    model: Model, regimen: Regimen, n: int, chunk: int, occasions: int
) -> None:
    """The peak of a :class:`~ketasim.Metrics` run: per subject, its per-dose
    values (Cmax, Tmax, time above, pre-dose level, cumulative AUC and its
    differences: about 6 x analytes x doses), status, label and covariates, kept
    for all ``n``; plus the working arrays of one chunk of ``chunk`` subjects."""
    K, W = len(model.analytes), len(regimen.doses)
    kept = 8 * (6 * K * W + K + 9)
    work = _per_subject_bytes(
        model, regimen, occasions=occasions, outputs=2 * K, solver="exact"
    )
    per = kept + -(-min(n, chunk) * work // n)
    check_memory(
        n,
        per,
        f"{K} analytes x {W} doses x 6 per-dose values x 8 "
        f"bytes, covariates and status, and the working arrays of "
        f"{min(n, chunk)} subjects at a time",
        (
            "Use fewer subjects, or chunks= (a lazy Dask result computed "
            "and written chunk by chunk)"
        ),
    )


def has_iiv(model: Model) -> bool:
    """Whether the model gives inter-individual variability (an omega > 0)."""
    return any(v.omega > 0 for v in model.variability)


def _population_call(population, **changes) -> str:
    """``population`` as the call that makes it, ``changes`` applied: n, seed and
    the fields that differ from their defaults (a covariates table by its names)."""
    import dataclasses

    from .population import Population

    args = [f"{population.n}", f"seed={population.seed}"]
    for f in dataclasses.fields(Population):
        if f.name in ("n", "seed"):
            continue
        v = changes.get(f.name, getattr(population, f.name))
        if f.name == "covariates":
            if v is not None:
                table = ", ".join(f"{k!r}: ..." for k in v)
                args.append(f"covariates={{{table}}}")
        elif v != f.default or f.name in changes:
            args.append(f"{f.name}={v!r}")
    return f"Population({', '.join(args)})"


def check_iiv(model: Model, population) -> None:
    """Refuse a population that asks for inter-individual variability (``iiv=True``,
    Population's default) on a model that gives none: its patients would be
    identical apart from their covariates, without a word. Called once per
    ``simulate`` (trajectories, metrics and the Dask path alike), before any
    patient is drawn."""
    if population is None or not population.iiv or has_iiv(model):
        return
    raise ValueError(
        f"model {model.id!r} has no inter-individual variability (its file gives "
        f"no omegas), so {_population_call(population)} would give "
        f"{population.n} identical patients apart from their covariates. Pass "
        f"{_population_call(population, iiv=False)} for typical patients that "
        f"differ by covariates only, or choose a model with variability (ketasim "
        f"models lists them)"
    )


def draw_subjects(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    population,
    subjects,
    output,
    solver: str,
):
    """The subjects of a trajectory run, ``(n, covariates, parameters)``: a
    population's patients (``subjects`` may add parameter overrides) or the
    ``subjects`` table, refused before they are built if the run would not fit in
    memory (``output``: a Trajectories; ``solver``: "exact" or "ode")."""
    if population is not None:
        # before anything per patient is drawn: a Population of 3e9 patients
        # would otherwise fail in numpy's allocator (or be killed by the OS)
        check_trajectory_memory(
            model,
            regimen,
            t,
            population.n,
            occasions=occasions(model, regimen, population),
            output=output,
            solver=solver,
        )
        n, cov, _, params = population_parameters(
            model, regimen, population, subjects.parameters
        )
        return n, cov, params
    # the subjects' table is the caller's, already in memory; what is built
    # from it (parameters, events, results) is checked before it is built
    n, cov, over = subject_table(model, subjects.covariates, subjects.parameters)
    check_trajectory_memory(
        model, regimen, t, n, occasions=1, output=output, solver=solver
    )
    return n, cov, model.individual_parameters(cov, overrides=over, n=n)


def warn_validity(model: Model, covariates: dict) -> None:
    """ValidityWarnings for covariates outside the model's ranges (not inside a
    Dask chunk: the whole call warns once)."""
    from .population import validity_messages

    if not in_chunk():
        for msg in validity_messages(model, covariates):
            warnings.warn(msg, ValidityWarning, stacklevel=stacklevel())


def subject_table(
    model: Model, covariates, parameters, *, warn: bool = True, defaults: bool = True
):
    """Number of subjects, covariate arrays and parameter overrides, validated;
    a ValidityWarning for given covariates outside the model's ranges (``warn``).

    ``defaults``: the covariates not given are the model's reference values, and
    ``_validate.check_defaulted_covariates`` refuses one that does not describe the
    patient (outside the model's validity range; an adult reference weight for a
    child). False when a Population supplies the covariates (only the parameter
    overrides are read here).

    Covariates are checked by ``_validate.covariate_values`` (finite, plausible,
    flags 0/1). Overrides come back in canonical units (``_validate.parameter_values``
    reads the user's units): ``name`` -> absolute values (L, L/h, 1/h, h, fraction),
    ``name + "/kg"`` -> values per kg of body weight, which
    ``Model.individual_parameters`` multiplies by each subject's weight (a
    population's patients have theirs only there)."""
    covariates, parameters, arrays, per_kg = _read_tables(model, covariates, parameters)
    listed = {  # covariates given as sequences (one value per subject), not scalars
        name
        for name, v in covariates.items()
        if not isinstance(v, str) and np.ndim(v) == 1
    }
    empty = [f"{kind} {name!r}" for (kind, name), a in arrays.items() if a.size == 0]
    if empty:
        raise ValueError(
            f"{empty[0]} has no values (an empty array): a subjects table needs at "
            f"least one subject; give one value per subject, or leave it out "
            f"(then the model's reference covariate or typical parameter applies)"
        )
    sizes = {a.size for a in arrays.values() if a.size != 1}
    if len(sizes) > 1:
        lens = {f"{k[1]}": a.size for k, a in arrays.items() if a.size != 1}
        raise ValueError(
            f"per-subject arrays must all have the same length; got {lens}"
        )
    n = sizes.pop() if sizes else 1
    short = sorted(k for k in listed if arrays[("covariate", k)].size == 1)
    if n > 1 and short:
        raise ValueError(
            f"per-subject arrays must all have the same length; covariate "
            f"{short[0]!r} has 1 value and the others {n}. For one value shared by "
            f"every subject give a plain number ({short[0]}="
            f"{arrays[('covariate', short[0])][0]:g}), not a one-element list"
        )
    cov = _covariates(model, covariates, arrays, n, warn=warn, defaults=defaults)
    over = {}
    for name in parameters:
        v = np.broadcast_to(arrays[("parameter", name)], (n,))
        _check_override(model, name, v, per_kg[name])
        over[name + "/kg" if per_kg[name] else name] = v
    return n, cov, over


def _read_tables(model: Model, covariates, parameters):
    """The covariate and parameter tables as dicts, their names known, and their
    values as 1-D arrays keyed ``("covariate" | "parameter", name)`` (parameters
    in canonical units; ``per_kg``: which are per kg of body weight)."""
    from ._validate import covariate_values, is_table, parameter_values

    for arg, table in (("covariates", covariates), ("parameters", parameters)):
        if table is not None and not is_table(table):
            raise TypeError(
                f"{arg} must be a mapping (name -> value or per-subject "
                f"array), e.g. a dict; got {type(table).__name__}"
            )
    covariates = {} if covariates is None else dict(covariates)  # a DataFrame too
    parameters = {} if parameters is None else dict(parameters)
    for name in covariates:
        if name not in KNOWN_COVARIATES:
            raise ValueError(
                f"unknown covariate {name!r}; known covariates: "
                f"{', '.join(KNOWN_COVARIATES)}"
            )
    for name in parameters:
        if name not in model.parameters:
            raise ValueError(
                f"model {model.id!r} has no parameter {name!r}; its "
                f"parameters: {', '.join(model.parameters)}"
            )
    arrays = {}
    for name, v in covariates.items():
        arrays[("covariate", name)] = np.atleast_1d(covariate_values(name, v))
    per_kg = {}
    for name, v in parameters.items():
        a, per_kg[name] = parameter_values(model, name, v)
        arrays[("parameter", name)] = np.atleast_1d(a)
    return covariates, parameters, arrays, per_kg


def _covariates(
    model: Model, covariates: dict, arrays: dict, n: int, *, warn: bool, defaults: bool
) -> dict:
    """Every covariate the model uses, and weight, for ``n`` subjects: given,
    derived (weight from height and BMI) or the model's reference value (checked
    to describe the patient with ``defaults``); weight NaN (unknown) when neither
    given nor in the model."""
    from ._validate import check_defaulted_covariates, check_derived_weight

    cov = {}
    used = set(model.covariates) | {"weight"}
    for name in used:
        if name in covariates:
            cov[name] = np.broadcast_to(arrays[("covariate", name)], (n,)).copy()
        elif name in model.covariates:
            cov[name] = np.full(n, model.covariates[name])
        else:
            # no weight given and none in the model: unknown, so an mg/kg dose is
            # refused by name (lower) instead of being scaled by a made-up weight
            cov[name] = np.full(n, np.nan)
    for name in covariates:
        cov.setdefault(name, np.broadcast_to(arrays[("covariate", name)], (n,)).copy())
    derived = "weight" not in covariates and {"height", "bmi"} <= set(covariates)
    if derived:  # as Population does: weight from height (cm) and BMI (kg/m^2)
        cov["weight"] = cov["bmi"] * (cov["height"] / 100.0) ** 2
        check_derived_weight(cov["weight"])
    if defaults:
        check_defaulted_covariates(
            model, set(covariates) | ({"weight"} if derived else set()), cov
        )
    if warn and not in_chunk():  # the covariates given (as a
        # Population's) and weight when derived from them
        from .population import validity_messages

        given = set(covariates) | ({"weight"} if derived else set())
        for msg in validity_messages(model, {k: cov[k] for k in given}):
            warnings.warn(msg, ValidityWarning, stacklevel=stacklevel())
    return cov


def _check_override(model: Model, name: str, v: np.ndarray, per_kg: bool) -> None:
    """An individual parameter value must be > 0 (volumes, clearances, rate
    constants, mean transit times) or >= 0, and a fraction <= 1 unless the model
    allows more."""
    from ._validate import noun

    fractions = (
        {pw.fraction for r in model.routes.values() for pw in r.pathways}
        | {pw.later_devices for r in model.routes.values() for pw in r.pathways}
        | {f.fraction for f in model.flows}
    )
    mtt = {f.rate for f in model.flows if f.kind == "mtt"}
    p = model.parameters[name]
    unit = p.canonical_unit.removesuffix("/kg") + ("/kg" if per_kg else "")
    strict = p.dimension in ("volume", "clearance", "rate constant") or name in mtt
    if np.any(v <= 0) if strict else np.any(v < 0):
        i = int(np.argmax(v <= 0 if strict else v < 0))
        why = (
            "a mean transit time"
            if name in mtt and p.dimension == "time"
            else f"a {noun(p.dimension)}"
        )
        raise ValueError(
            f"parameters[{name!r}] is {why} and must be "
            f"{'> 0' if strict else '>= 0'}; got {v[i]:g} {unit} "
            f"(subject {i})"
        )
    if name in fractions and name not in model.fractions_above_one and np.any(v > 1):
        i = int(np.argmax(v > 1))
        raise ValueError(
            f"parameters[{name!r}] is a fraction of a dose or a flow "
            f"(bioavailability, formation share) and must be <= 1; "
            f"got {v[i]:g} (subject {i})"
        )


def with_units(model: Model, over: dict, n: int) -> dict:
    """``subject_table``'s overrides as ``name -> (values (n,), canonical unit)``,
    the form a Dask chunk's ``Subjects(parameters=...)`` reads back unchanged
    (factor 1, so bit for bit)."""
    out = {}
    for key, v in over.items():
        name = key.removesuffix("/kg")
        if v.size not in (1, n):
            raise ValueError(
                f"parameters[{name!r}] needs 1 or {n} values (one per "
                f"subject); got {v.size}"
            )
        unit = model.parameters[name].canonical_unit.removesuffix("/kg")
        out[name] = (np.broadcast_to(v, (n,)), unit + ("/kg" if key != name else ""))
    return out


def population_parameters(model, regimen, population, parameters, idx=None, warn=True):
    """Covariates, IIV and per-session IOV for the patients ``idx`` (default: all)
    of ``population``; ``parameters`` overrides have 1 or population.n values.
    Returns ``(n, covariates, overrides, parameters)``, the parameters a list per
    occasion (dosing session) with inter-occasion variability."""
    idx = population.subjects if idx is None else idx
    n = idx.size
    cov = population.covariates_for(idx)
    if warn and not in_chunk():  # a Dask call warns once, for all
        for msg in population.check_validity(model, cov):
            warnings.warn(msg, ValidityWarning, stacklevel=stacklevel())
    _, _, over = subject_table(model, None, parameters, defaults=False)
    for name, v in over.items():
        if v.size not in (1, population.n):
            raise ValueError(
                f"parameter {name!r} needs 1 or {population.n} values; got {v.size}"
            )
    rel = idx - population.offset
    over = {k: np.broadcast_to(v, (population.n,))[rel] for k, v in over.items()}
    etas = population.etas(model, idx)
    n_occ = int(sessions(regimen).max()) + 1 if regimen.doses else 1
    iov = population.iov_etas(model, idx, n_occ)
    if not iov:
        return n, cov, over, model.individual_parameters(cov, etas, over, n=n)
    per_occ = []
    for m in range(n_occ):
        e = dict(etas)
        for name, z in iov.items():
            e[name] = e.get(name, 0.0) + z[:, m]
        per_occ.append(model.individual_parameters(cov, e, over, n=n))
    return n, cov, over, per_occ
