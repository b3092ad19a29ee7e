"""Stage 4 of a run: the xarray Dataset. Numbers in, a labelled result out.

``assemble_trajectories`` labels the kernel's buffer (concentrations, AUC,
amounts) with the parameters, covariates, dose table, per-dose windows, residual
samples and provenance; ``assemble_metrics`` does the same for streamed per-dose
metrics. Both build their variables on xarray's fast path (:func:`var`,
:func:`coordinates`), which never imports dask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from ._lower import Lowered, sessions
from ._subjects import residual_block
from ._times import late_doses
from .dosing import Regimen
from .model import KNOWN_COVARIATES, Model

_TIME = {"units": "h", "long_name": "time after t = 0"}


def assemble_trajectories(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    low: Lowered,
    params,
    cov: dict,
    run,
    output,
    solver,
    population,
    subjects: np.ndarray,
) -> xr.Dataset:
    """The trajectory result of ``run`` (a :class:`ketasim._run.Run`) for the
    ``subjects`` (labels); ``params`` the individual parameters, a list per
    occasion with IOV; ``solver`` the Exact or ODE it ran with."""
    from ._effects import effects_on

    on = effects_on(model, output)
    ds = _to_dataset(
        model, regimen, t, low, params, cov, run, output.auc, solver, subjects, on
    )
    if run.windows is not None:
        predose, dose_auc = run.windows
        ds["predose"] = var(
            ("subject", "analyte", "dose"),
            predose,
            {"units": "ng/mL", "long_name": "concentration just before the dose"},
        )
        ds["dose_auc"] = var(
            ("subject", "analyte", "dose"),
            dose_auc,
            {
                "units": "ng*h/mL",
                "long_name": "exact AUC from the dose to the next "
                "dose (the last: to the last output time)",
            },
        )
    if on and model.effects:
        p1 = params[0] if isinstance(params, list) else params
        asked = getattr(output, "effects", None) is True
        _add_effects(model, ds, p1, {d.route for d in regimen.doses}, asked)
    if population is not None:
        ds.attrs["seed"] = int(population.seed)
        ds.attrs["population"] = repr(population)
    if output.residual:
        seed = population.seed if population is not None else 0
        ds["observed"] = observed(model, ds.concentration, seed, subjects)
    return ds


def _to_dataset(
    model,
    regimen,
    t,
    low: Lowered,
    params,
    cov,
    run,
    auc,
    solver,
    subjects,
    effects: bool = False,
) -> xr.Dataset:
    """The trajectory result's core: concentrations (AUC, amounts), parameters,
    status, dose table, covariates as coordinates, provenance."""
    K = low.obs_cmt.size
    buf = run.buf
    parameters, params, n_occ = _parameter_table(params)
    coords = {
        "subject": ("subject", np.asarray(subjects, dtype=np.int64)),
        "analyte": ("analyte", list(model.analyte_names)),
        "time": ("time", t, _TIME),
        "molecular_weight": (
            "analyte",
            [a.mw for a in model.analytes],
            {"units": "g/mol"},
        ),
        "parameter": ("parameter", list(params)),
        "parameter_unit": (
            "parameter",
            [model.parameters[k].canonical_unit.replace("/kg", "") for k in params],
        ),
        "dose": ("dose", np.arange(len(regimen.doses))),
    }
    if n_occ:
        coords["occasion"] = (
            "occasion",
            np.arange(n_occ),
            {"long_name": "dosing session whose parameters these are (dose_session)"},
        )
    for name, v in cov.items():
        coords[name] = ("subject", v, {"units": KNOWN_COVARIATES[name]})
    conc = buf[:, :K, :] if buf.shape[1] != K else buf
    data = {
        "concentration": (
            ("subject", "analyte", "time"),
            conc,
            {"units": "ng/mL", "long_name": "plasma concentration"},
        ),
        "parameters": parameters,
        "status": ("subject", run.status, {"long_name": "solver status (0 = ok)"}),
        **_dose_table(regimen, low),
    }
    k2 = K
    if auc:
        k2 = 2 * K
        data["auc"] = (
            ("subject", "analyte", "time"),
            buf[:, K:k2, :],
            {"units": "ng*h/mL", "long_name": "cumulative AUC from t = 0"},
        )
    if effects and model.effect_sites:
        k2 = _effect_site_data(model, buf, k2, data, coords)
    if buf.shape[1] != k2:
        data["amount"] = (
            ("subject", "compartment", "time"),
            buf[:, k2:, :],
            {"units": "mg", "long_name": "amount in compartment"},
        )
        coords["compartment"] = ("compartment", list(low.compartments))
    if run.nsteps is not None:
        data["ode_steps"] = ("subject", run.nsteps, {"long_name": "accepted ODE steps"})
    attrs = {
        **model_attrs(model),
        "solver": run.solver,
        "time_convention": "value at a dose time is the state after the dose",
    }
    if solver.name == "ode":
        attrs["rtol"] = float(solver.rtol)
        attrs["atol"] = float(solver.atol)
        attrs["atol_units"] = "mg"
    return xr.Dataset(
        {k: var(*v) for k, v in data.items()}, coords=coordinates(coords), attrs=attrs
    )


def _effect_site_data(model, buf, k, data: dict, coords: dict) -> int:
    """The effect-site concentrations (the kernel's states after the AUC ones)
    into ``data``, their coordinates into ``coords``; returns the next output."""
    E = len(model.effect_sites)
    data["effect_site_concentration"] = (
        ("subject", "effect_site", "time"),
        buf[:, k : k + E, :],
        {
            "units": "ng/mL",
            "long_name": "effect-site concentration (dCe/dt = ke0 (Cp - Ce))",
        },
    )
    coords["effect_site"] = ("effect_site", list(model.effect_site_names))
    coords["effect_site_analyte"] = (
        "effect_site",
        [s.analyte for s in model.effect_sites],
    )
    return k + E


def _add_effects(model, ds: xr.Dataset, params, routes: set, warn: bool) -> None:
    """The ``effect`` variable (subject, endpoint, time) from the concentrations
    (plasma or effect-site) each endpoint's drivers name; each endpoint's unit,
    long name, baseline and direction as coordinates along ``endpoint``. An
    endpoint estimated after some routes only is NaN when a dose uses another,
    with a note in ``effect.attrs`` (and a ValidityWarning when the effects were
    asked for, ``Trajectories(effects=True)``; by default a model's effects come
    along with its concentrations, and a film dose of a model whose endpoint is
    for IV doses only is no reason to warn about the concentrations)."""
    import warnings

    from ._effects import endpoint_values
    from ._warn import ValidityWarning, stacklevel

    n = ds.sizes["subject"]

    def conc_of(d):
        if d.site is not None:
            return ds.effect_site_concentration.sel(effect_site=d.site).values
        return ds.concentration.sel(analyte=d.analyte).values

    eps = model.effects
    values = np.stack(
        [endpoint_values(model, ep, conc_of, params, n) for ep in eps], axis=1
    )
    notes = []
    for i, ep in enumerate(eps):
        other = sorted(routes - set(ep.routes)) if ep.routes is not None else []
        if other:
            values[:, i, :] = np.nan
            notes.append(
                f"effect {ep.name!r} is NaN: estimated after route(s) "
                f"{', '.join(ep.routes)} only, and this regimen uses "
                f"{', '.join(other)}. {ep.routes_note}"
            )
    for note in notes if warn else ():
        warnings.warn(note, ValidityWarning, stacklevel=stacklevel())
    units = [ep.unit for ep in eps]
    ds.coords["endpoint"] = ("endpoint", [ep.name for ep in eps])
    ds.coords["endpoint_unit"] = ("endpoint", units)
    ds.coords["endpoint_long_name"] = ("endpoint", [ep.long_name for ep in eps])
    one = len(set(units)) == 1
    ds.coords["endpoint_baseline"] = (
        "endpoint",
        [ep.baseline for ep in eps],
        {"long_name": "effect without drug", "units": units[0]}
        if one
        else {"long_name": "effect without drug (units: see endpoint_unit)"},
    )
    ds.coords["endpoint_direction"] = (
        "endpoint",
        np.array([ep.direction for ep in eps], dtype=np.int64),
        {"long_name": "+1 the drug raises the effect, -1 lowers it, 0 mixed"},
    )
    ds["effect"] = xr.Variable(
        ("subject", "endpoint", "time"),
        values,
        {
            "long_name": eps[0].long_name if len(eps) == 1 else "effect",
            **(
                {"units": units[0]}
                if one
                else {"long_name": "effect (units: see endpoint_unit)"}
            ),
            **({"note": " ".join(notes)} if notes else {}),
        },
    )


def _parameter_table(params):
    """``parameters`` (dims, table, attrs), occasion 1's parameters, and the
    number of occasions (0: no occasion dimension). ``params``: the individual
    parameters, or with inter-occasion variability a list of them per occasion
    (dosing session), reported with an ``occasion`` dimension: every session's
    values, not the first session's under a label that does not say so."""
    per_occasion = isinstance(params, list)
    occ = params if per_occasion else [params]
    names = list(occ[0])
    table = np.stack([np.stack([p[k] for k in names], axis=1) for p in occ], axis=1)
    if per_occasion:
        return (
            (
                ("subject", "occasion", "parameter"),
                table,
                {
                    "long_name": "individual parameters per occasion (canonical "
                    "units, see parameter_unit); inter-occasion variability draws "
                    "them anew for each dosing session (occasion = dose_session)"
                },
            ),
            occ[0],
            len(occ),
        )
    return (
        (
            ("subject", "parameter"),
            table[:, 0],
            {
                "long_name": "individual parameters (canonical units, see "
                "parameter_unit)"
            },
        ),
        occ[0],
        0,
    )


def _dose_table(regimen: Regimen, low: Lowered) -> dict:
    """The doses as given, with their session, device and the mg each subject
    received."""
    doses = regimen.doses
    return {
        "dose_time": (
            "dose",
            np.array(regimen.times, dtype=float),
            {"units": "h", "long_name": "dose start"},
        ),
        "dose_amount": (
            "dose",
            np.array([d.amount for d in doses]),
            {"long_name": "dose as prescribed (see dose_unit, dose_salt)"},
        ),
        "dose_unit": ("dose", [d.unit for d in doses]),
        "dose_salt": ("dose", [d.salt for d in doses]),
        "dose_weight_basis": (
            "dose",
            [d.weight_basis for d in doses],
            {"long_name": "body weight an mg/kg dose scales with (ketasim.bodysize)"},
        ),
        "dose_route": ("dose", [d.route for d in doses]),
        "dose_session": (
            "dose",
            sessions(regimen),
            {"long_name": "dosing session (devices of one session share it)"},
        ),
        "dose_device": (
            "dose",
            np.array([d.device or 0 for d in doses], dtype=np.int64),
            {"long_name": "nasal-spray device within its session (0: not a device)"},
        ),
        "dose_duration": (
            "dose",
            np.array([np.nan if d.duration is None else d.duration for d in doses]),
            {
                "units": "h",
                "long_name": "infusion duration (NaN: bolus or route-defined input)",
            },
        ),
        "dose_mg": (
            ("subject", "dose"),
            low.dose_mg,
            {"units": "mg", "long_name": "base amount given, before bioavailability"},
        ),
    }


def assemble_metrics(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    values: tuple,
    status: np.ndarray,
    covs: dict,
    subjects: np.ndarray,
    above,
    level: float,
    population,
) -> xr.Dataset:
    """The streamed metrics result. ``values`` = (cmax, tmax, time above,
    cumulative AUC at each dose start and the end, pre-dose level) as the kernel
    left them; here doses after the grid and failed subjects become NaN."""
    starts = np.array(regimen.times, dtype=float)
    cmax, tmax, tab, auc_w, pre = _metrics_values(starts, t, values, status)
    dims = ("subject", "analyte", "dose")
    data = {
        "cmax": (
            dims,
            cmax,
            {"units": "ng/mL", "long_name": "Cmax per dose (output grid)"},
        ),
        "tmax": (
            dims,
            tmax,
            {
                "units": "h",
                "long_name": "Tmax after dose start (tie rule: first of equal peaks)",
            },
        ),
        "auc": (
            dims,
            auc_w,
            {
                "units": "ng*h/mL",
                "long_name": "exact AUC from the "
                "dose to the next (last: to the last output time)",
                "method": "exact (integrated in the kernel)",
            },
        ),
        "predose": (
            dims,
            pre,
            {"units": "ng/mL", "long_name": "concentration just before the dose"},
        ),
        "status": ("subject", status, {"long_name": "solver status (0 = ok)"}),
        "dose_time": ("dose", starts, {"units": "h"}),
        "dose_session": ("dose", sessions(regimen)),
    }
    if above is not None:
        data["time_above"] = (
            dims,
            tab,
            {
                "units": "h",
                "long_name": f"time above {level:g} ng/mL (linear interpolation)",
            },
        )
    coords = {
        "subject": ("subject", subjects),
        "analyte": ("analyte", list(model.analyte_names)),
        "dose": ("dose", np.arange(starts.size)),
        "molecular_weight": (
            "analyte",
            [x.mw for x in model.analytes],
            {"units": "g/mol"},
        ),
    }
    for k, v in covs.items():
        coords[k] = ("subject", v, {"units": KNOWN_COVARIATES[k]})
    attrs = {
        **model_attrs(model),
        "output": "metrics",
        "solver": "exact: matrix-exponential propagation, metrics streamed",
        "grid": f"{t.size} output times from {t[0]:g} to {t[-1]:g} h",
    }
    if population is not None:
        attrs["seed"] = int(population.seed)
        attrs["population"] = repr(population)
    return xr.Dataset(
        {k: var(*v) for k, v in data.items()}, coords=coordinates(coords), attrs=attrs
    )


def _metrics_values(starts, t, values, status):
    """Per-dose (cmax, tmax, time above, AUC, pre-dose level) from the kernel's
    arrays. Windows that start after the last output time were not simulated: the
    last simulated dose's AUC runs to the last output time (the kernel's final
    slot); their metrics, and those of a window starting at t[-1] (empty), are
    NaN; so are a failed subject's (errors="keep")."""
    cmax, tmax, tab, aucs, pre = values
    bad = np.flatnonzero(status)
    late = late_doses(starts, t)
    empty = starts >= t[-1]
    aucs[:, :, :-1][:, :, late] = aucs[:, :, -1:]
    pre[:, :, starts <= 0.0] = 0.0
    auc_w = aucs[:, :, 1:] - aucs[:, :, :-1]
    for a in (cmax, tmax, tab, auc_w):
        a[:, :, empty] = np.nan
    pre[:, :, late] = np.nan
    for a in (cmax, tmax, tab, auc_w, pre):  # errors="keep": a failed subject's
        a[bad] = np.nan  # numbers up to the failure are not its metrics
    return cmax, tmax, tab, auc_w, pre


def observed(
    model, conc: xr.DataArray, seed: int, subjects: np.ndarray
) -> xr.DataArray:
    """Concentrations with residual error: C (1 + prop ε1) exp(exp ε2) + add ε3,
    drawn per subject index (a patient's noise is the same in any chunking)."""
    from .population import normals

    S, K, T = conc.shape
    out = np.array(conc.values)
    # the draws (3 per time) and their temporaries come a block of subjects at a
    # time, so residual=True costs one copy of the concentrations and the block's
    # working arrays, as the memory check counts; a subject's draws do not depend
    # on the block
    block = residual_block(T)
    for k, name in enumerate(model.analyte_names):
        spec = model.residual.get(name)
        if spec is None:
            continue
        for a in range(0, S, block):
            b = min(S, a + block)
            z = normals(seed, "residual", subjects[a:b], 3 * T, offset=3 * T * k)
            c = out[a:b, k, :]
            c *= 1.0 + spec.get("proportional", 0.0) * z[:, :T]
            c *= np.exp(spec.get("exponential", 0.0) * z[:, T : 2 * T])
            c += spec.get("additive_ng_per_ml", 0.0) * z[:, 2 * T :]
    return xr.DataArray(
        out,
        dims=conc.dims,
        attrs={
            "units": "ng/mL",
            "long_name": "simulated observed concentration (with "
            "residual error; may be negative with an additive error, not censored)",
        },
    )


def model_attrs(model: Model) -> dict:
    """Provenance every result carries: the model, its paper, ketasim's version."""
    return {
        "model_id": model.id,
        "model_name": model.name,
        "model_drug": model.drug,
        "model_enantiomer": model.enantiomer,
        "model_sampling": model.sampling,
        "model_grade": model.grade,
        "model_file": str(model.path) if model.path else "",
        "model_sha256": model.sha256,
        # a model changed with Model.with_route: what it came from and what changed
        "model_derived_from": model.derived_from or "",
        "model_changes": "\n".join(model.changes),
        "references": "\n".join(
            r.citation + (f" doi:{r.doi}" if r.doi else "") for r in model.references
        ),
        "ketasim_version": __version__,
    }


def var(dims, data, attrs=None) -> xr.Variable:
    """A Variable of a plain numpy array, built on xarray's fast path: it skips the
    duck-array checks that import dask.array (~0.5 s of the first simulate when
    dask is installed). Everything passed here is already a numpy array of its
    final dtype, so those checks would change nothing."""
    dims = (dims,) if isinstance(dims, str) else dims
    return xr.Variable(dims, np.asarray(data), attrs, fastpath=True)


def coordinates(coords: Mapping) -> xr.Coordinates:
    """Coordinates from ``{name: (dims, values[, attrs])}`` with the pandas index of
    every dimension coordinate built here, as xarray would build it: ``pd.Index``
    of the values, and the coordinate keeps the values' numpy dtype. xarray's own
    path first asks whether the values are a dask collection, which imports dask
    (~0.1 s of the first simulate when it is installed)."""
    from xarray.indexes import PandasIndex

    variables, indexes = {}, {}
    for name, spec in coords.items():
        v = var(*spec)
        if v.dims == (name,):
            values = v.values
            index = pd.Index(values, dtype=object if values.dtype.kind == "O" else None)
            built = PandasIndex(index, name, coord_dtype=values.dtype)
            v = built.create_variables({name: v})[name]
            indexes[name] = built
        variables[name] = v
    return xr.Coordinates(variables, indexes=indexes)
