"""Stage 3, ODE path: adaptive integration for models with a user rhs or time
effects (or when asked for with ``solver=ks.ODE()``).

``run_ode`` builds each subject's parameter vector for the kernel's rhs (the rate
matrix, the time-varying matrices ``A - t0 A1`` and ``A1``, or the user's
parameters), runs the compiled population kernel, and turns an exception raised
inside it (by a user's rhs) into a :class:`~ketasim.SolveError` naming the subject.
"""

from __future__ import annotations

import numpy as np

from ._lower import Lowered
from ._progress import compile_notice
from ._run import COMPILE_S, SolveError, chunks, subject_list
from .dosing import Regimen
from .model import Model
from .options import ODE_METHODS

_rhs_cache: dict = {}


def run_ode(
    model: Model,
    regimen: Regimen,
    t: np.ndarray,
    low: Lowered,
    A,
    params,
    obs_cmt,
    obs_scale,
    buf,
    status,
    ode,
    auc: bool,
    progress,
) -> np.ndarray:
    """Integrate every subject into ``buf`` with the tolerances, method and step
    limit of ``ode`` (an ODE); return the accepted steps per subject."""
    from ._kernels import ode as kernels_ode

    if A.shape[1] != 1:
        raise ValueError(
            "inter-occasion variability on rate parameters needs "
            "the exact solver (solver=ks.Exact())"
        )
    n = buf.shape[0]
    A = A[:, 0]
    nstate = A.shape[-1] if model.rhs is None else len(low.compartments)
    jac_const = model.rhs is None and not model.time_effects
    rhs, p = _rhs_parameters(model, regimen, t, low, A, params, n, auc, jac_const)
    if model.rhs is not None:
        check_rhs_parameters(model, p)
    kernels = kernels_ode.solver(nstate, rhs)
    x0 = np.zeros((n, nstate))
    nsteps = np.zeros(n, dtype=np.int64)
    args = (
        t,
        obs_cmt,
        float(ode.rtol),
        float(ode.atol),
        ODE_METHODS[ode.method],
        jac_const,
        int(ode.max_steps),
    )
    what = "ODE solver" + (
        f" for {nstate}-state systems" if model.rhs is None else " for this rhs"
    )
    with compile_notice(what, progress, COMPILE_S["ode"]):
        _integrate(
            model, kernels, p, x0, low, obs_scale, args, buf, status, nsteps, progress
        )
    return nsteps


def _rhs_parameters(
    model: Model,
    regimen: Regimen,
    t,
    low: Lowered,
    A,
    params,
    n: int,
    auc: bool,
    jac_const: bool,
):
    """The kernel's rhs (None: its own dxdt = A x) and each subject's parameter
    vector for it."""
    if jac_const:
        return None, np.ascontiguousarray(A.reshape(n, -1))
    if model.rhs is None:
        from ._kernels.ltv import rhs_ltv

        K = low.obs_cmt.size
        A1 = model.time_derivative_matrices(params, n)
        sel = [model.compartment_index(c) for c in low.compartments]
        A1 = A1[:, sel][:, :, sel]
        if auc:
            A1 = np.pad(A1, ((0, 0), (0, K), (0, K)))
        # parameter x (1 + slope t), t in h after the first dose:
        # A(t) = A + (t - t0) A1 = (A - t0 A1) + t A1
        t0 = float(regimen.times[0]) if regimen.doses else 0.0
        check_time_effects(model, t0, float(t[-1]))
        return rhs_ltv, np.ascontiguousarray(
            np.hstack([(A - t0 * A1).reshape(n, -1), A1.reshape(n, -1)])
        )
    return compiled(model.rhs), np.ascontiguousarray(
        np.stack([params[k] for k in model.parameters], axis=1)
    )


def _integrate(
    model: Model,
    kernels,
    p,
    x0,
    low: Lowered,
    obs_scale,
    args,
    buf,
    status,
    nsteps,
    progress,
) -> None:
    """The population kernel, a slice of subjects at a time, with an exception
    from a user's rhs (or numba's failure to compile it) said in its terms."""
    from numba.core.errors import NumbaError

    t = args[0]
    n = buf.shape[0]
    a = b = 0
    try:
        for a, b, bar in chunks(n, n * 3000, progress, "integrating"):
            # the kernel writes every subject's status; one left at -1 was cut
            # short by an exception in the rhs, which numba's parallel kernel
            # does not always re-raise (from a worker thread it can be lost)
            status[a:b] = -1
            kernels.solve_population(
                p[a:b],
                x0[a:b],
                low.ev_time[a:b],
                low.ev_cmt[a:b],
                low.ev_kind[a:b],
                low.ev_value[a:b],
                t,
                args[1],
                obs_scale[a:b],
                *args[2:],
                buf[a:b],
                status[a:b],
                nsteps[a:b],
            )
            if (status[a:b] == -1).any():
                raise kernel_exception(
                    model, kernels, None, status, (a, b), p, x0, low, obs_scale, args
                )
            bar.update(b - a)
    except SolveError:
        raise
    except NumbaError as exc:
        if model.rhs is None:
            raise
        name = getattr(model.rhs, "__name__", "rhs")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TypeError(
            f"numba could not compile the model's rhs {name}(t, x, p, dxdt): "
            f"{first} -- the rhs must be plain numeric code numba can compile "
            f"(numpy arrays and math; no Python objects), writing dxdt in "
            f"place; numba's full message follows"
        ) from exc
    except Exception as exc:  # raised inside the kernel: by a user's rhs
        # (numba's parallel kernel wraps it in a SystemError, the original
        # as its cause)
        raise kernel_exception(
            model, kernels, exc, status, (a, b), p, x0, low, obs_scale, args
        ) from exc


def check_time_effects(model: Model, t0: float, t_end: float) -> None:
    """A linear time effect, parameter x (1 + slope (t - t0)), must keep its
    parameter positive until the last output time: a negative slope reaches 0 at
    t0 + 1/|slope|, after which the model would create drug."""
    for name, slope in model.time_effects:
        factor = 1.0 + slope * (t_end - t0)
        if not factor > 0:
            raise ValueError(
                f"time_effects of model {model.id!r}: {name} x (1 + {slope:g} t) "
                f"(t in h after the first dose at {t0:g} h) reaches 0 at "
                f"{t0 - 1.0 / slope:g} h, before the last output time {t_end:g} h; "
                f"the model does not hold that long. End the output times earlier"
            )


def check_rhs_parameters(model: Model, p: np.ndarray) -> None:
    """The parameter vectors a user rhs receives (S, P) are finite; else name the
    parameter and the subjects."""
    bad = ~np.isfinite(p)
    if bad.any():
        s, k = (int(x[0]) for x in np.nonzero(bad))
        name = model.parameter_names[k]
        raise ValueError(
            f"parameter {name!r} is {p[s, k]} for "
            f"{subject_list(np.flatnonzero(bad[:, k]))}; the model's rhs needs "
            f"finite parameter values. Check the overrides or covariates that "
            f"produced it"
        )


def kernel_exception(
    model, kernels, exc, status, span, p, x0, low, obs_scale, args
) -> SolveError:
    """A SolveError for an exception raised inside the ODE kernel (by a user's
    rhs: ketasim's own kernels never raise), re-raised by numba (``exc``, a
    SystemError whose cause is the original) or lost in a worker thread (None;
    ``status`` -1 marks the subjects it cut short). Those subjects are run again
    one at a time, serially, to name the first whose integration raises."""
    orig = exc
    if isinstance(exc, SystemError):
        orig = exc.__cause__ or exc.__context__ or exc
    a, b = span
    t, obs_cmt, rtol, atol, method, jac_const, max_steps = args
    subject = ""
    out = np.empty((obs_cmt.size, t.size))
    cut = np.flatnonzero(status[a:b] == -1) + a
    for s in cut if cut.size else range(a, b):
        try:
            kernels.solve_subject(
                p[s],
                x0[s],
                low.ev_time[s],
                low.ev_cmt[s],
                low.ev_kind[s],
                low.ev_value[s],
                t,
                obs_cmt,
                obs_scale[s],
                rtol,
                atol,
                method,
                jac_const,
                max_steps,
                out,
            )
        except Exception as again:  # the same failure, now attributable
            subject = f" for subject {s}"
            orig = again
            break
    if orig is None:  # the serial run did not raise again: nothing to name
        return SolveError(
            f"the ODE kernel stopped early for {subject_list(cut)} without a "
            f"status (an exception in the model's rhs that numba did not pass on)"
        )
    what = f"{type(orig).__name__}: {orig}" if str(orig) else type(orig).__name__
    if model.rhs is None:
        return SolveError(
            f"the ODE kernel raised {what}{subject}; ketasim's own "
            f"kernels never should (a bug: please report it with the "
            f"call)"
        )
    name = getattr(model.rhs, "__name__", "rhs")
    return SolveError(
        f"the model's rhs {name}(t, x, p, dxdt) raised {what}{subject} while "
        f"integrating. The rhs is called at any time and state the solver tries "
        f"(amounts may be slightly below 0 within atol), so it must not raise: "
        f"return finite derivatives for every such input"
    )


def compiled(rhs):
    """One numba dispatcher per user function: a new wrapper per call would make
    numba recompile the whole population kernel each time."""
    from numba.core.registry import CPUDispatcher

    if isinstance(rhs, CPUDispatcher):
        return rhs
    hit = _rhs_cache.get(rhs)
    if hit is None:
        import numba

        hit = _rhs_cache[rhs] = numba.njit(rhs)
    return hit
