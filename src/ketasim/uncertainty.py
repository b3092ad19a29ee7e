"""Parameter uncertainty: replicate trials whose typical values are drawn from the
published precision of a model's fixed effects (``[precision]`` in the model file).

A replicate is one trial: one draw of the typical values (on the scale the paper
estimated them: normal for ``scale = "linear"``, log-normal for ``scale = "log"``)
and a population of new patients (covariates, IIV, IOV) simulated with them. The
spread of a population statistic across replicates is its uncertainty: the median
session-1 Cmax of 1 000 patients with its 90 % confidence interval.

Random numbers are counter-based, as for patients (:mod:`ketasim.population`): the
j-th typical-value draw of replicate k is a pure function of (seed, k, j), and the
patients of replicate k are subjects ``k*n .. k*n + n - 1`` of the population's
seed. So one seed gives the same numbers for any thread count or ``Metrics(chunk=)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from .dosing import Dose, Regimen
from .model import Model
from .options import Metrics
from .population import Population, normals

__all__ = ["draw_typical_values", "simulate_trials", "trial_ci"]

#: The most replicates one call draws (each is a population of patients).
MAX_REPLICATES = 100_000


def _check_precision(model: Model) -> None:
    if not model.precision:
        raise ValueError(
            f"model {model.id!r} gives no published precision of its typical values "
            f"(no [precision] section in its model file), so replicate trials cannot "
            f"be drawn. Choose a model that gives it (bundled: "
            f"{', '.join(with_precision()) or 'none'}), or add "
            f"[precision.<parameter>] with se, rse or ci95 read in the paper, its "
            f"scale and source"
        )


def with_precision() -> list[str]:
    """The bundled models whose files give the precision of typical values."""
    from .modelfile import list_models, load_model

    return [m for m in list_models() if load_model(m).precision]


def draw_typical_values(
    model: Model | str, replicates: int, seed: int
) -> dict[str, np.ndarray]:
    """The typical values of ``replicates`` trials, drawn from the model's published
    precision: parameter name -> (replicates,) values in the parameter's canonical
    unit (``model.parameters[name].canonical_unit``). Parameters without precision
    keep their typical value in every replicate (they are not returned).

    ``scale = "linear"``: value + se z; ``scale = "log"``: value exp(se z); z
    standard normal, correlated as ``[[precision_correlations]]`` says (else
    independent between parameters). A draw that leaves the parameter's valid range (a
    volume, clearance or rate constant <= 0, a fraction outside [0, 1]) is refused,
    naming the replicate: it is not clamped or redrawn."""
    from .model import parameter_roles
    from .modelfile import load_model

    model = load_model(model)
    _check_precision(model)
    replicates = _check_count(replicates)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0; got {seed!r}")
    z = normals(int(seed), "uncertainty", np.arange(replicates), len(model.precision))
    if model.precision_correlations:  # correlated estimates: z L^T, R = L L^T
        names = [p.parameter for p in model.precision]
        R = np.eye(len(names))
        for a, b, r in model.precision_correlations:
            i, j = names.index(a), names.index(b)
            R[i, j] = R[j, i] = r
        z = z @ np.linalg.cholesky(R).T
    roles = parameter_roles(model)
    out = {}
    for j, pr in enumerate(model.precision):
        p = model.parameters[pr.parameter]
        v = (
            p.value + pr.se * z[:, j]
            if pr.scale == "linear"
            else p.value * np.exp(pr.se * z[:, j])
        )
        rule = roles.get(pr.parameter, ("finite",))[0]
        bad = {
            "positive": ~(v > 0),
            "nonnegative": ~(v >= 0),
            "fraction": ~((v >= 0) & (v <= 1)),
        }.get(rule, ~np.isfinite(v))
        if np.any(bad):
            k = int(np.argmax(bad))
            raise ValueError(
                f"replicate {k} drew {pr.parameter} = {v[k]:.4g} {p.canonical_unit} "
                f"(typical {p.value:.4g}, SE {pr.se:.4g} on the {pr.scale} scale), "
                f"outside its valid range ({rule}). The published precision is too "
                f"wide for a normal draw on the linear scale here; use another seed "
                f"or fewer replicates, or check the [precision] entry's scale"
            )
        out[pr.parameter] = v
    return out


def _check_count(replicates) -> int:
    if (
        isinstance(replicates, bool)
        or not isinstance(replicates, int | np.integer)
        or not 1 <= replicates <= MAX_REPLICATES
    ):
        raise ValueError(
            f"replicates must be a whole number from 1 to {MAX_REPLICATES}; got "
            f"{replicates!r}"
        )
    return int(replicates)


def _with_typical(model: Model, values: dict[str, np.ndarray], k: int) -> Model:
    params = dict(model.parameters)
    for name, v in values.items():
        params[name] = dataclasses.replace(params[name], value=float(v[k]))
    return dataclasses.replace(model, parameters=params)


def simulate_trials(
    model,
    regimen: Regimen | Dose,
    population: Population,
    replicates: int,
    *,
    times=None,
    output: Metrics | None = None,
    errors: str = "raise",
    chunks: int | None = None,
) -> xr.Dataset:
    """Simulate ``replicates`` trials of ``population.n`` patients each, the
    typical values of each trial drawn from the model's published precision
    (:func:`draw_typical_values`, from ``population.seed``).

    Parameters
    ----------
    model : Model, str or Path
        A model with a ``[precision]`` section (``kamp_2020_meta``); others are
        refused.
    regimen : Regimen or Dose
        The doses.
    population : Population
        The patients of one trial; trial k simulates subjects ``k*n .. k*n + n - 1``
        of its seed (new patients per trial; a ``covariates`` table is the same
        cohort in every trial, with new random effects).
    replicates : int
        Number of trials, 1 to :data:`MAX_REPLICATES`.
    times : array_like, optional
        Output times in h (as :func:`ketasim.simulate`).
    output : Metrics, optional
        Per-dose metrics (the default ``ks.Metrics()``), streamed in chunks of
        ``output.chunk`` patients.
    errors : {"raise", "keep"}
        As :func:`ketasim.simulate`.
    chunks : int, optional
        Return a Dask-backed Dataset computed ``chunks`` trials per task, lazily
        (the same numbers as the in-memory run). Covariates are drawn at the call,
        for the validity warnings.

    Returns
    -------
    xarray.Dataset
        The metrics of :func:`ketasim.simulate` with ``output=ks.Metrics()``, with
        a ``replicate`` dimension before ``subject`` (``subject``: the patient's
        position in its trial; coordinate ``patient``: its index in the
        population's seed), ``typical_<name>`` (replicate) for each drawn typical
        value in its unit, and attributes ``replicates``, ``uncertainty_seed``
        and ``uncertainty`` (what was drawn, on which scale, from which source).

    Examples
    --------
    >>> import ketasim as ks
    >>> ds = ks.simulate_trials("kamp_2020_meta", ks.Dose.infusion("0.5 mg/kg",
    ...     duration="40 min"), ks.Population(200, seed=1, iiv=False), 20)
    >>> ci = ks.trial_ci(ds.cmax.isel(dose=0, analyte=0))
    """
    from ._subjects import (
        check_iiv,
    )
    from ._times import check_times, default_times, warn_late_doses
    from .simulate import _prepare

    if output is None:
        output = Metrics()
    if not isinstance(output, Metrics):
        raise TypeError(
            f"output must be ks.Metrics(...) for replicate trials (per-dose metrics "
            f"of every patient of every trial); got {type(output).__name__}. For "
            f"curves, simulate one trial at a time with its typical values "
            f"(ks.draw_typical_values)"
        )
    if not isinstance(population, Population):
        raise TypeError(
            f"population must be a ketasim.Population (the patients of one trial); "
            f"got {type(population).__name__}"
        )
    model, regimen, solver = _prepare(model, regimen, None, errors)
    _check_precision(model)
    replicates = _check_count(replicates)
    if solver.name != "exact":
        raise ValueError(
            f"replicate trials need the exact solver (a linear time-invariant "
            f"model); model {model.id!r} is not"
        )
    if not regimen.doses:
        raise ValueError("replicate trials need at least one dose")
    t = check_times(default_times(regimen) if times is None else times)
    warn_late_doses(regimen, t)
    check_iiv(model, population)
    typical = draw_typical_values(model, replicates, population.seed)
    K = replicates
    if chunks is None:
        ds = _block(model, regimen, t, population, typical, 0, K, output, errors)
    else:
        ds = _lazy(model, regimen, t, population, typical, K, output, errors, chunks)
    for name, v in typical.items():
        p = model.parameters[name]
        ds[f"typical_{name}"] = xr.DataArray(
            v,
            dims="replicate",
            attrs={
                "units": p.canonical_unit,
                "long_name": f"typical {name} of the replicate (drawn): "
                f"{p.description}",
            },
        )
    ds.attrs["replicates"] = K
    ds.attrs["uncertainty_seed"] = int(population.seed)
    ds.attrs["uncertainty"] = "; ".join(_described(model, pr) for pr in model.precision)
    return ds


def _block(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    population: Population,
    typical: dict[str, np.ndarray],
    r0: int,
    r1: int,
    output: Metrics,
    errors: str,
    *,
    warn: bool = True,
) -> xr.Dataset:
    """Trials ``r0 .. r1 - 1``: their patients drawn, lowered and run in chunks of
    ``output.chunk`` patients; the metrics with (replicate, subject) dimensions."""
    from ._assemble import assemble_metrics
    from ._lower import check_magnitude, lower
    from ._run import STATUS, SolveError, run_metrics_chunk
    from ._subjects import (
        check_metrics_memory,
        occasions,
        population_parameters,
        warn_validity,
    )

    n, K = population.n, r1 - r0
    N = n * K
    starts = np.array(regimen.times, dtype=float)
    W, A, chunk = starts.size, len(model.analytes), output.chunk
    check_metrics_memory(
        model, regimen, N, chunk, occasions(model, regimen, population)
    )
    values = (
        *(np.full((N, A, W), np.nan) for _ in range(3)),
        np.full((N, A, W + 1), np.nan),
        np.full((N, A, W), np.nan),
    )
    status = np.zeros(N, dtype=np.int64)
    covs: dict[str, np.ndarray] = {}
    models = [_with_typical(model, typical, k) for k in range(r0, r1)]
    # trial k: subjects k*n .. k*n + n - 1 of the seed (a covariates table, indexed
    # from the offset, is the same cohort in every trial)
    pops = [
        dataclasses.replace(population, offset=population.offset + k * n)
        for k in range(r0, r1)
    ]
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        parts = []
        for j in range(a // n, (b - 1) // n + 1):
            lo, hi = max(a, j * n) - j * n, min(b, (j + 1) * n) - j * n
            idx = pops[j].offset + np.arange(lo, hi)
            _, cov, _, params = population_parameters(
                models[j], regimen, pops[j], None, idx, warn=False
            )
            parts.append((cov, params))
        cov = {c: np.concatenate([p[0][c] for p in parts]) for c in parts[0][0]}
        if isinstance(parts[0][1], list):
            params = [
                {q: np.concatenate([p[1][m][q] for p in parts]) for q in parts[0][1][m]}
                for m in range(len(parts[0][1]))
            ]
        else:
            params = {q: np.concatenate([p[1][q] for p in parts]) for q in parts[0][1]}
        for c, v in cov.items():
            covs.setdefault(c, np.empty(N))[a:b] = v
        low = lower(
            model, regimen, params, cov["weight"], b - a, markers=True, covariates=cov
        )
        check_magnitude(model, regimen, low, t[-1])
        run_metrics_chunk(
            low, t, starts, output.level, tuple(v[a:b] for v in values), status[a:b]
        )
    if warn:
        warn_validity(model, covs)
    bad = np.flatnonzero(status)
    if bad.size and errors == "raise":
        raise SolveError(
            f"{bad.size} of {N} patients failed (first: replicate "
            f"{r0 + bad[0] // n}, subject {bad[0] % n}): {STATUS[4]}"
        )
    patient = population.offset + r0 * n + np.arange(N)
    flat = assemble_metrics(
        model,
        regimen,
        t,
        values,
        status,
        covs,
        patient,
        output.above,
        output.level,
        population,
    )
    return _split(flat, K, n, r0)


def _lazy(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    population: Population,
    typical: dict[str, np.ndarray],
    K: int,
    output: Metrics,
    errors: str,
    chunks,
) -> xr.Dataset:
    """A Dask-backed result: one task per ``chunks`` trials (the same numbers as
    the in-memory run: each trial's draws depend on its index only). Covariates are
    drawn now, for the validity warnings of every patient (cheap); the metrics when
    computed."""
    import dask
    import dask.array as da

    from ._subjects import warn_validity
    from ._validate import is_whole

    if isinstance(chunks, bool) or not is_whole(chunks) or chunks < 1:
        raise ValueError(
            f"chunks must be a whole number of trials >= 1; got {chunks!r}"
        )
    chunks = int(chunks)
    n = population.n
    trials = [
        dataclasses.replace(population, offset=population.offset + k * n)
        for k in range(K)
    ]
    drawn = [p.covariates_for(p.subjects) for p in trials]
    covs = {c: np.concatenate([d[c] for d in drawn]) for c in drawn[0]}
    warn_validity(model, covs)
    # the layout of a result (names, dims, dtypes, attrs) from one small trial
    template = _block(
        model,
        regimen,
        t,
        dataclasses.replace(population, n=1, covariates=_first(population)),
        typical,
        0,
        1,
        output,
        "keep",
        warn=False,
    )
    blocks = [(r0, min(K, r0 + chunks)) for r0 in range(0, K, chunks)]
    run = dask.delayed(_block, pure=True)
    tasks = [
        run(model, regimen, t, population, typical, r0, r1, output, errors, warn=False)
        for r0, r1 in blocks
    ]

    def lazy(name: str, v: xr.DataArray):
        if "replicate" not in v.dims:
            return v.dims, v.values, v.attrs
        pieces = []
        for (r0, r1), task in zip(blocks, tasks, strict=True):
            shape = tuple(
                (r1 - r0) if d == "replicate" else n if d == "subject" else s
                for d, s in zip(v.dims, v.shape, strict=True)
            )
            get = dask.delayed(lambda b, k=name: b[k].values, pure=True)(task)
            pieces.append(da.from_delayed(get, shape, dtype=v.dtype))
        axis = v.dims.index("replicate")
        return v.dims, da.concatenate(pieces, axis=axis), v.attrs

    data = {k: lazy(k, v) for k, v in template.data_vars.items()}
    coords = {
        k: lazy(k, v)
        for k, v in template.coords.items()
        if k not in ("replicate", "subject")
    }
    coords["subject"] = ("subject", np.arange(n), template["subject"].attrs)
    coords["replicate"] = ("replicate", np.arange(K), template["replicate"].attrs)
    attrs = dict(template.attrs)
    attrs["population"] = repr(population)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _first(population: Population):
    """A covariates table of the population's first patient (None without one)."""
    if population.covariates is None:
        return None
    return {k: v[:1] for k, v in population.covariates.items()}


def _described(model: Model, pr) -> str:
    """One drawn typical value: its mean, SE and distribution, and its source."""
    p = model.parameters[pr.parameter]
    if pr.scale == "linear":
        return (
            f"{pr.parameter}: normal, {p.value:.6g} {p.canonical_unit}, SE "
            f"{pr.se:.4g} {p.canonical_unit} ({pr.source})"
        )
    return (
        f"{pr.parameter}: log-normal, median {p.value:.6g} {p.canonical_unit}, SE "
        f"of the log {pr.se:.4g} ({pr.source})"
    )


def _split(flat: xr.Dataset, K: int, n: int, r0: int = 0) -> xr.Dataset:
    """The flat (K n subjects) Dataset with its ``subject`` dimension split into
    (replicate, subject)."""

    def shaped(v: xr.DataArray):
        if "subject" not in v.dims:
            return v.dims, v.values, v.attrs
        v = v.transpose("subject", ...)
        return (
            ("replicate", "subject", *v.dims[1:]),
            v.values.reshape((K, n, *v.shape[1:])),
            v.attrs,
        )

    data = {k: shaped(v) for k, v in flat.data_vars.items()}
    coords = {k: shaped(v) for k, v in flat.coords.items() if k != "subject"}
    coords["patient"] = (
        ("replicate", "subject"),
        flat["subject"].values.reshape(K, n),
        {"long_name": "the patient's index in the population's seed"},
    )
    coords["subject"] = ("subject", np.arange(n), {"long_name": "patient in trial"})
    coords["replicate"] = (
        "replicate",
        r0 + np.arange(K),
        {"long_name": "trial replicate"},
    )
    return xr.Dataset(data, coords=coords, attrs=dict(flat.attrs))


def trial_ci(
    da: xr.DataArray,
    statistic: str | float = "median",
    level: float = 0.9,
) -> xr.Dataset:
    """A population statistic of each replicate trial and its confidence interval
    across replicates (percentile interval).

    Parameters
    ----------
    da : DataArray
        A metric with ``replicate`` and ``subject`` dimensions (from
        :func:`simulate_trials`), e.g. ``ds.cmax.isel(dose=0)``.
    statistic : "median", "mean" or a percentile in (0, 100)
        The population statistic computed over the subjects of each trial.
    level : float
        Confidence level in (0, 1): the interval runs from the (1 - level)/2 to
        the (1 + level)/2 quantile of the replicates' statistics.

    Returns
    -------
    xarray.Dataset
        ``statistic`` (replicate, ...): each trial's value; ``estimate``: its
        median across replicates; ``lower`` and ``upper``: the interval; all in
        ``da``'s units. A NaN in a trial (a failed patient kept with
        ``errors="keep"``, a window without output times) makes that trial's
        statistic NaN, and the interval NaN: nothing is left out silently.
    """
    if not isinstance(da, xr.DataArray) or not {"replicate", "subject"} <= set(da.dims):
        raise ValueError(
            "trial_ci needs a DataArray with 'replicate' and 'subject' dimensions "
            "(a metric of ks.simulate_trials); got "
            + (f"dims {da.dims}" if isinstance(da, xr.DataArray) else type(da).__name__)
        )
    if (
        isinstance(level, bool)
        or not isinstance(level, float | int)
        or not (0 < level < 1)
    ):
        raise ValueError(f"level must be a number in (0, 1), e.g. 0.9; got {level!r}")
    if statistic == "median":
        per, what = da.median("subject", skipna=False), "median"
    elif statistic == "mean":
        per, what = da.mean("subject", skipna=False), "mean"
    elif (
        not isinstance(statistic, bool)
        and isinstance(statistic, float | int)
        and 0 < statistic < 1
        and statistic != int(statistic)
    ):
        raise ValueError(
            f"statistic is a percentile in percent (95 for the 95th); got "
            f"{statistic!r}, which would be the {statistic:g}th percentile. For a "
            f"fraction multiply by 100 ({statistic * 100:g})"
        )
    elif (
        not isinstance(statistic, bool)
        and isinstance(statistic, float | int)
        and 0 < statistic < 100
    ):
        per = da.quantile(statistic / 100.0, "subject", skipna=False).drop_vars(
            "quantile"
        )
        what = f"P{statistic:g}"
    else:
        raise ValueError(
            f"statistic must be 'median', 'mean' or a percentile in (0, 100); got "
            f"{statistic!r}"
        )
    units = da.attrs.get("units")
    if units is None:
        raise ValueError(
            "the DataArray has no attrs['units']; pass a metric of "
            "ks.simulate_trials (its units travel with it)"
        )
    q = (1 - level) / 2, (1 + level) / 2
    bounds = per.quantile(list(q), "replicate", skipna=False)
    name = da.name or "value"
    pct = f"{level * 100:g} %"
    attrs = {"units": units}
    return xr.Dataset(
        {
            "statistic": per.assign_attrs(
                units=units, long_name=f"{what} {name} of each trial"
            ),
            "estimate": per.median("replicate", skipna=False).assign_attrs(
                attrs, long_name=f"{what} {name}: median across trials"
            ),
            "lower": bounds.isel(quantile=0, drop=True).assign_attrs(
                attrs, long_name=f"{what} {name}: lower end of the {pct} CI"
            ),
            "upper": bounds.isel(quantile=1, drop=True).assign_attrs(
                attrs, long_name=f"{what} {name}: upper end of the {pct} CI"
            ),
        },
        attrs={
            "statistic": what,
            "level": float(level),
            "replicates": int(da.sizes["replicate"]),
            "interval": f"percentile interval of the trials' {what} ({pct})",
        },
    )
