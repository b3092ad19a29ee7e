"""``simulate``, the one verb: a dose becomes numbers in four stages.

1. **subjects** (:mod:`ketasim._times`, :mod:`ketasim._subjects`): the output
   times are checked; known subjects are validated or a population's patients
   drawn (covariates, individual parameters), after a memory check.
2. **lower** (:mod:`ketasim._lower`): doses become per-subject event tables, the
   model's flows rate matrices, the analytes observation scales.
3. **run** (:mod:`ketasim._run`, :mod:`ketasim._run_ode`): the kernels fill the
   (subject, output, time) buffer, or stream per-dose metrics, with a status per
   subject.
4. **assemble** (:mod:`ketasim._assemble`): the labelled xarray Dataset.

``chunks=`` runs the same pipeline lazily, one Dask task per chunk of subjects
(:mod:`ketasim._dask`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._assemble import assemble_metrics, assemble_trajectories
from ._lower import check_magnitude, lower
from ._run import STATUS, SolveError, check_status, run_metrics_chunk, run_trajectories
from ._subjects import (
    check_iiv,
    check_metrics_memory,
    draw_subjects,
    occasions,
    population_parameters,
    subject_table,
    warn_validity,
)
from ._times import GRID_MAX_POINTS, check_times, default_times, grid, warn_late_doses
from ._tvcov import is_time_varying, run_time_varying
from ._warn import CHUNK_START, GridWarning, ValidityWarning, stacklevel
from .dosing import Dose, Regimen
from .model import Model
from .modelfile import load_model
from .options import ODE, Exact, Metrics, Subjects, Trajectories
from .population import Population

__all__ = [
    "GRID_MAX_POINTS",
    "GridWarning",
    "SolveError",
    "ValidityWarning",
    "grid",
    "simulate",
]


_MOVED = {
    "covariates": "subjects=ks.Subjects(covariates=...)",
    "parameters": "subjects=ks.Subjects(parameters=...)",
    "rtol": "solver=ks.ODE(rtol=...)",
    "atol": "solver=ks.ODE(atol=...)",
    "ode_method": "solver=ks.ODE(method=...)",
    "max_steps": "solver=ks.ODE(max_steps=...)",
    "amounts": "output=ks.Trajectories(amounts=True)",
    "auc": "output=ks.Trajectories(auc=True)",
    "residual": "output=ks.Trajectories(residual=True)",
    "out": "output=ks.Trajectories(out=...)",
    "dose_windows": "output=ks.Trajectories(dose_windows=...)",
    "above": "output=ks.Metrics(above=...)",
    "chunk": "output=ks.Metrics(chunk=...)",
}


def simulate(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    times=None,
    population: Population | None = None,
    subjects: Subjects | None = None,
    solver: Exact | ODE | None = None,
    output: Trajectories | Metrics | None = None,
    errors: str = "raise",
    chunks: int | None = None,
    progress: bool | str = "auto",
    **moved,
) -> xr.Dataset:
    """Simulate plasma concentrations for one subject, a table of subjects or a
    virtual population.

    Parameters
    ----------
    model : Model, str or Path
        A model, a bundled model name (``"domino"``) or a model-file path.
    regimen : Regimen or Dose
        The doses; routes must be defined by the model.
    times : array_like, optional
        Output times in h after t = 0, sorted, >= 0 and at most
        :data:`~ketasim.dosing.MAX_TIME_H` (1e6 h, about 114 years). Default:
        every 5 min until 24 h after the end of the last dose.
    population : Population, optional
        Virtual patients: covariates, inter-individual variability and
        inter-occasion variability (one draw per dosing session) from one seed.
        A model without inter-individual variability (no omegas; ``ketasim
        models`` says which) refuses ``iiv=True``, Population's default: pass
        ``Population(n, seed, iiv=False)`` for typical patients.
    subjects : Subjects, optional
        Known subjects instead: covariates and individual parameters per row, no
        random effects (:class:`~ketasim.Subjects`). With a ``population`` it may
        carry ``parameters`` only (1 or ``population.n`` values each), which
        replace those of every patient (per-kg values scale with each patient's
        weight). Without either, one subject with the model's reference
        covariates and typical parameters.
    solver : Exact or ODE, optional
        :class:`~ketasim.Exact` (matrix-exponential propagation; linear
        time-invariant models, no tolerance) or :class:`~ketasim.ODE` (adaptive
        integration with its tolerances). Default: ``Exact()`` for linear
        time-invariant models, ``ODE()`` for models with a user rhs or time
        effects.
    output : Trajectories or Metrics, optional
        :class:`~ketasim.Trajectories` (default: concentration curves, with
        optional amounts, cumulative AUC, residual-error samples, an ``out=``
        buffer) or :class:`~ketasim.Metrics` (per-dose Cmax, Tmax, AUC, pre-dose
        level and time above, streamed in chunks; exact solver only).
    errors : {"raise", "keep"}
        On solver failure raise :class:`SolveError`, or keep NaN rows and report
        them in ``status``.
    chunks : int, optional
        Return a Dask-backed Dataset whose per-subject variables are computed
        ``chunks`` subjects at a time, lazily, on whatever Dask scheduler is active
        (threads by default, or a ``dask.distributed`` cluster once a ``Client`` is
        created). Same numbers as the in-memory run. Write it with
        ``ds.to_zarr(...)`` or ``ds.to_netcdf(...)`` to stream to disk.
    progress : bool or "auto"
        A progress bar on stderr for long runs. ``"auto"``: only in a terminal or a
        notebook, never when output is redirected (tests, batch jobs).

    Returns
    -------
    xarray.Dataset
        ``concentration`` (subject, analyte, time) in ng/mL (or, with
        ``Metrics``, per-dose metrics (subject, analyte, dose)), ``parameters``,
        ``status``, the dose table, covariates as ``subject`` coordinates and
        provenance attributes: ``model_id``, ``model_name``, ``model_drug``,
        ``model_enantiomer``, ``model_sampling``, ``model_grade``, ``model_file``,
        ``model_sha256``, ``references`` (the model's citations), ``ketasim_version``,
        ``solver``, ``time_convention``; ``rtol``, ``atol`` and ``atol_units`` on the
        ODE path; ``seed`` and ``population`` when a ``population`` is given.

    Examples
    --------
    >>> import ketasim as ks
    >>> dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    >>> ds = ks.simulate("domino", dose, times=ks.grid("2 h", "20 min"))
    >>> print(ds.concentration.sel(analyte="ketamine").round(1).values)
    [[  0.  209.6 240.3  55.1  45.8  40.4  35.8]]
    >>> ds = ks.simulate("domino", dose,
    ...                  subjects=ks.Subjects(covariates={"weight": 90}),
    ...                  solver=ks.ODE(rtol=1e-8), output=ks.Trajectories(auc=True))
    """
    if moved:
        name = next(iter(moved))
        where = _MOVED.get(name)
        if where is None:
            raise TypeError(f"simulate() got an unexpected keyword argument {name!r}")
        raise TypeError(f"simulate() no longer takes {name}=; write {where}")
    if solver is not None and not isinstance(solver, Exact | ODE):
        raise TypeError(
            f"solver must be ks.Exact() or ks.ODE(...); got {solver!r}"
            f" ({type(solver).__name__})"
        )
    if output is None:
        output = Trajectories()
    if not isinstance(output, Trajectories | Metrics):
        raise TypeError(
            f"output must be ks.Trajectories(...) or ks.Metrics(...); "
            f"got {output!r} ({type(output).__name__})"
        )
    if subjects is not None and not isinstance(subjects, Subjects):
        raise TypeError(
            f"subjects must be ks.Subjects(covariates=..., "
            f"parameters=...); got {type(subjects).__name__}"
        )
    if (
        subjects is not None
        and population is not None
        and subjects.covariates is not None
    ):
        raise ValueError(
            "a population brings its own covariates: give them to "
            "Population(covariates=...), not to ks.Subjects(covariates="
            "...); with a population, subjects= may carry parameters= "
            "only (individual values that replace every patient's)"
        )
    return pipeline(
        model,
        regimen,
        times=times,
        population=population,
        subjects=subjects if subjects is not None else Subjects(),
        solver=solver,
        output=output,
        errors=errors,
        chunks=chunks,
        progress=progress,
    )


def pipeline(
    model: Model | str | Path,
    regimen: Regimen | Dose,
    *,
    times,
    population: Population | None,
    subjects: Subjects,
    solver: Exact | ODE | None,
    output: Trajectories | Metrics,
    errors: str,
    chunks: int | None,
    progress,
) -> xr.Dataset:
    """The pipeline behind :func:`simulate`, its options as the option objects
    (``solver`` None: the model's default). ``population`` and ``subjects`` may
    both be given here: a population with parameter overrides (a Dask chunk)."""
    model, regimen, solver = _prepare(model, regimen, solver, errors)
    t = check_times(default_times(regimen) if times is None else times)
    warn_late_doses(regimen, t)
    if population is not None and not isinstance(population, Population):
        raise TypeError(
            f"population must be a ketasim.Population; got {type(population).__name__}"
        )
    check_iiv(model, population)  # stage 1's rule, once for every path
    _check_output(model, solver, output, chunks)
    if chunks is not None and is_time_varying(subjects.covariates):
        raise ValueError(
            "chunks= is not supported with time-varying covariates (a covariate "
            "table with a 'time' column); run in memory (chunks=None)"
        )
    if chunks is not None:
        from ._dask import lazy

        return lazy(
            model, regimen, t, chunks, population, subjects, solver, output, errors
        )
    return run_in_memory(
        model,
        regimen,
        t,
        population,
        subjects,
        solver,
        output,
        errors,
        progress=progress,
    )


def run_in_memory(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    population,
    subjects: Subjects,
    solver,
    output,
    errors: str,
    *,
    progress,
) -> xr.Dataset:
    """The in-memory run of validated arguments: trajectories or metrics."""
    if population is None and is_time_varying(subjects.covariates):
        return run_time_varying(model, regimen, t, subjects, solver, output, errors)
    if isinstance(output, Metrics):
        return _metrics(
            model, regimen, t, population, subjects, output, errors, progress
        )
    # 1. subjects: covariates and individual parameters (their memory checked)
    n, cov, params = draw_subjects(
        model, regimen, t, population, subjects, output, solver.name
    )
    # 2. lower: doses -> event tables, flows -> rate matrices, observation scales
    low = lower(
        model,
        regimen,
        params,
        cov["weight"],
        n,
        prune=model.rhs is None,
        covariates=cov,
    )
    _check_rhs_occasions(model, params)
    # 3. run: the kernels; the ODE path's rhs and time effects see one value per
    # subject, occasion 1's (an rhs with IOV is refused above; IOV on rates needs
    # the exact solver)
    first = params[0] if isinstance(params, list) else params
    result = run_trajectories(
        model, regimen, t, low, first, n, solver, output, progress
    )
    check_status(model, result, t, errors)
    # 4. assemble: `parameters` reports every occasion's values (IOV: an occasion
    # dimension)
    labels = (
        population.subjects
        if population is not None
        else np.arange(n) + (CHUNK_START.get() or 0)
    )
    return assemble_trajectories(
        model, regimen, t, low, params, cov, result, output, solver, population, labels
    )


def _prepare(model, regimen, solver, errors):
    """The model loaded, the regimen a Regimen, the solver chosen (Exact for a
    linear time-invariant model, else ODE) and checked against the model."""
    model = load_model(model)
    if isinstance(regimen, Dose):
        regimen = Regimen([regimen])
    if not isinstance(regimen, Regimen):
        raise TypeError(
            f"regimen must be a Regimen or a Dose; got {type(regimen).__name__}"
        )
    if not regimen.doses:  # a filtered-away regimen, not usually meant
        import warnings

        warnings.warn(
            "the regimen has no doses, so every concentration is 0; give the doses "
            "(ks.Regimen([...]), a protocol such as ks.six_infusion_course())",
            ValidityWarning,
            stacklevel=stacklevel(),
        )
    if errors not in ("raise", "keep"):
        raise ValueError(f"errors must be 'raise' or 'keep'; got {errors!r}")
    if model.rhs is None and not model.flows:
        raise ValueError(
            f"model {model.id!r} has no flows and no rhs; add flows to "
            "the model file or attach an rhs with model.with_rhs(f)"
        )
    if solver is None:
        solver = Exact() if model.linear_time_invariant else ODE()
    if solver.name == "exact" and not model.linear_time_invariant:
        why = "a user rhs" if model.rhs is not None else "time-varying parameters"
        raise ValueError(
            f"the exact solver needs a linear time-invariant model; "
            f"this model has {why}, so use solver=ks.ODE()"
        )
    return model, regimen, solver


def _check_output(model: Model, solver, output, chunks) -> None:
    """What to produce, against the model, solver and ``chunks``."""
    if isinstance(output, Metrics):
        if solver.name == "ode":
            why = (
                "; this model has a user rhs"
                if model.rhs is not None
                else "; this model has time-varying parameters"
                if not model.linear_time_invariant
                else "; leave solver= out or pass solver=ks.Exact()"
            )
            raise ValueError(
                f"ks.Metrics() needs the exact solver (a linear "
                f"time-invariant model){why}. Or simulate the curves "
                f"(ks.Trajectories()) and use ks.metrics(ds)"
            )
        return
    if chunks is not None and output.out is not None:
        raise ValueError(
            "chunks= builds a lazy Dask result; it cannot fill ks.Trajectories(out=...)"
        )
    if output.residual and not model.residual:
        raise ValueError(
            f"model {model.id!r} defines no residual error model; "
            "ks.Trajectories(residual=True) needs a "
            "[residual.<analyte>] table"
        )


def _check_rhs_occasions(model: Model, params) -> None:
    if (
        isinstance(params, list)
        and model.rhs is not None
        and any(
            not np.array_equal(params[0][k], q[k])
            for q in params[1:]
            for k in model.parameters
        )
    ):
        raise ValueError(
            "inter-occasion variability on the parameters of a "
            "user rhs is not implemented: the rhs sees one value per "
            "subject. Simulate with Population(iov=False), or one "
            "session at a time"
        )


def _metrics(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    population,
    subjects: Subjects,
    output: Metrics,
    errors: str,
    progress,
) -> xr.Dataset:
    """Per-dose metrics, streamed chunk by chunk over subjects (bounded memory):
    each chunk is drawn, lowered and run; only its metrics are kept."""
    from ._progress import Bar, show

    if not regimen.doses:
        raise ValueError("ks.Metrics() needs at least one dose")
    if population is not None:
        n, cov_all, over_all = population.n, None, None
    else:
        n, cov_all, over_all = subject_table(
            model, subjects.covariates, subjects.parameters
        )
    starts = np.array(regimen.times, dtype=float)
    W, K, chunk = starts.size, len(model.analytes), output.chunk
    check_metrics_memory(
        model, regimen, n, chunk, occasions(model, regimen, population)
    )
    # the kernel writes every window that holds an output time; the others (no
    # output time between the dose and the next) keep NaN, as on the post-hoc path
    values = (
        *(np.full((n, K, W), np.nan) for _ in range(3)),  # cmax, tmax, above
        np.full((n, K, W + 1), np.nan),  # cumulative AUC at each dose, end
        np.full((n, K, W), np.nan),
    )  # pre-dose level
    status = np.zeros(n, dtype=np.int64)
    level = output.level
    covs: dict[str, np.ndarray] = {}
    with Bar(n, "simulating (metrics)", show(progress, n * t.size > 5e7)) as bar:
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            # 1. subjects
            if population is not None:
                # this chunk's labels only (population.subjects is all n)
                idx = np.arange(population.offset + a, population.offset + b)
                _, cov, _, params = population_parameters(
                    model, regimen, population, subjects.parameters, idx, warn=False
                )
            else:
                cov = {k: v[a:b] for k, v in cov_all.items()}
                params = model.individual_parameters(
                    cov, overrides={k: v[a:b] for k, v in over_all.items()}, n=b - a
                )
            for k, v in cov.items():
                covs.setdefault(k, np.empty(n))[a:b] = v
            # 2. lower, 3. run
            low = lower(
                model,
                regimen,
                params,
                cov["weight"],
                b - a,
                markers=True,
                covariates=cov,
            )
            check_magnitude(model, regimen, low, t[-1])  # an overflow, by name
            run_metrics_chunk(
                low,
                t,
                starts,
                level,
                tuple(v[a:b] for v in values),
                status[a:b],
                progress,
            )
            bar.update(b - a)
    if population is not None:  # all patients, once
        warn_validity(model, covs)
    bad = np.flatnonzero(status)
    if bad.size and errors == "raise":
        raise SolveError(
            f"{bad.size} of {n} subjects failed (first: subject {bad[0]}): {STATUS[4]}"
        )
    # 4. assemble
    labels = population.subjects if population is not None else np.arange(n)
    return assemble_metrics(
        model, regimen, t, values, status, covs, labels, output.above, level, population
    )
