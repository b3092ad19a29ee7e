"""Property-based tests (hypothesis).

Two kinds:

* Generated inputs (``tests/generated_inputs.py``): doses, regimens, simulate
  and metrics arguments, ``ketasim simulate`` command lines, model-file mutations,
  scenario-file mutations and NONMEM tables, valid and invalid. Each must be
  accepted with a valid result (finite, >= 0, status 0, units attributes) or
  refused with a documented error class whose message names the field. This is the
  small profile; the large one (>= 10 000 inputs, a table of outcomes) runs on
  demand: ``python -m tests.generated_inputs --n 10000 --seed 0``.
* Valid generated linear models and regimens against an independent reference
  (piecewise ``scipy.linalg.expm`` propagation written here; exact and ODE
  solvers) and invariants: numba thread count, Dask chunks, NetCDF round trip,
  metrics mode against post-hoc metrics.

Every example is derandomized (the same inputs on every run, as CI needs).
"""

import warnings

import numba
import numpy as np
import pytest
import scipy.linalg
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ketasim as ks

from . import generated_inputs as gi

try:  # ketasim's progress="auto" asks IPython whether a notebook runs; importing
    # IPython imports jedi, which raises the recursion limit. Do it now, not inside
    # a hypothesis test, which would see the limit change under it and warn.
    import IPython  # noqa: F401
except ImportError:
    pass

SMALL = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# the ketasim error classes and the plain classes the project documents; nothing
# else (LinAlgError, ZeroDivisionError, KeyError, SystemError) is an answer
DOCUMENTED = (
    ks.DoseError,
    ks.ModelFileError,
    ks.UnitError,
    ks.SolveError,
    ValueError,
    TypeError,
)


def check(case: gi.Case) -> None:
    """Run one generated input: refused naming the field, or accepted and valid."""
    with warnings.catch_warnings():
        # out-of-range covariates and late doses warn by design; other warnings
        # (numpy overflow, ...) stay errors
        warnings.simplefilter("ignore", ks.ValidityWarning)
        warnings.simplefilter("ignore", ks.GridWarning)
        try:
            res = case.run()
        except DOCUMENTED as exc:
            assert gi._documented(exc), (
                f"{case.label}\nraised {type(exc).__module__}.{type(exc).__name__}, "
                f"not a ketasim error class: {exc}"
            )
            assert case.expect != "valid", f"valid input refused: {case.label}\n{exc}"
            assert gi.names_field(str(exc), case.fields), (
                f"{case.label}\nrefused without naming {case.fields}: {exc}"
            )
            return
    assert case.expect != "invalid", f"silently accepted: {case.label}"
    problem = gi.check_result(res)
    assert problem is None, f"{case.label}\naccepted with an invalid result: {problem}"


@SMALL
@given(case=gi.doses())
def test_generated_doses(case):
    check(case)


@SMALL
@given(case=gi.regimens())
def test_generated_regimens(case):
    check(case)


@SMALL
@given(case=gi.simulate_args())
def test_generated_simulate_arguments(case):
    check(case)


@SMALL
@given(case=gi.metrics_args())
def test_generated_metrics_arguments(case):
    check(case)


@SMALL
@given(case=gi.cli_args())
def test_generated_command_lines(case):
    check(case)


@settings(SMALL, max_examples=60)
@given(case=gi.model_mutations())
def test_generated_model_file_mutations(case):
    check(case)


@SMALL
@given(case=gi.scenario_mutations())
def test_generated_scenario_file_mutations(case):
    check(case)


@SMALL
@given(case=gi.nonmem_tables())
def test_generated_nonmem_tables(case):
    check(case)


@pytest.mark.parametrize("name", list(gi.GENERATORS))
def test_generators_make_valid_and_invalid_inputs(name):
    """Each generator draws inputs that must be refused and inputs that may be
    accepted (drawing runs nothing), so a passing run is not vacuous."""
    seen = set()

    @settings(SMALL, max_examples=60)
    @given(case=gi.GENERATORS[name]())
    def collect(case):
        seen.add(case.expect)

    collect()
    assert "invalid" in seen and seen & {"valid", "either"}, seen


@pytest.mark.parametrize(
    "kind,message",
    [
        ("silent-acceptance", "accepted"),
        ("refused-unnamed", "status 4: check the parameters"),
    ],
)
def test_classifier_flags_defects(kind, message):
    """The classifier itself: an invalid input accepted and an error that names
    nothing are defects; a foreign exception type is one too."""

    def accept():
        return ks.simulate("domino", ks.Dose.bolus("5 mg"), times=[1.0])

    def unnamed():
        raise ValueError(message)

    run = accept if kind == "silent-acceptance" else unnamed
    case = gi.Case("t", "t", run, ("V1",), "invalid")
    assert gi.classify(case).kind == kind


def test_classifier_foreign_error_and_named_refusal():
    def zero():
        return 1 / 0

    def named():
        raise ks.DoseError("duration must be > 0 h; got -40")

    assert (
        gi.classify(gi.Case("t", "t", zero, ("x",), "either")).kind == "foreign-error"
    )
    out = gi.classify(gi.Case("t", "t", named, ("duration",), "invalid"))
    assert (out.kind, out.detail) == (
        "refused-named",
        "DoseError: duration must be > 0 h; got -40",
    )
    assert (
        gi.classify(gi.Case("t", "t", named, ("amount",), "invalid")).kind
        == "refused-unnamed"
    )


# ---------------------------------------------------------------------------------
# valid linear models against an independent reference

MW = 237.73


@st.composite
def linear_models(draw):
    """A mammillary model, 1-4 compartments, random positive rate constants,
    optionally an oral route (F, ka). The central volume is in L or per kg (the
    weight covariate then scales it), elimination a rate constant in 1/h or a
    clearance in L/min (converted by the loader). Returns the model dict, the
    covariates to simulate with, and for the reference the rate matrix in 1/h
    (depot last), the individual volume in L, F and the routes."""
    n = draw(st.integers(1, 4))
    rate = st.floats(0.02, 4.0)
    vol = draw(st.floats(2.0, 80.0))  # individual central volume, L
    k10 = draw(rate)
    pairs = [(draw(rate), draw(rate)) for _ in range(n - 1)]
    oral = draw(st.booleans())
    f, ka = draw(st.floats(0.05, 1.0)), draw(rate)
    per_kg = draw(st.booleans())
    weight = draw(st.floats(40.0, 120.0))
    clearance = draw(st.booleans())

    def par(value, unit):
        return {
            "value": value,
            "unit": unit,
            "description": "generated",
            "source": "test",
            "grade": "choice",
        }

    params = {"V": par(vol / weight, "L/kg") if per_kg else par(vol, "L")}
    if clearance:  # CL = k10 V, stated in L/min
        params["CL"] = par(k10 * vol / 60.0, "L/min")
        flows = [{"from": "central", "cl": "CL"}]
    else:
        params["k10"] = par(k10, "1/h")
        flows = [{"from": "central", "k": "k10"}]
    cmts = {"central": {"role": "central", "volume": "V", "analyte": "ketamine"}}
    for j, (kout, kback) in enumerate(pairs, start=1):
        params[f"kc{j}"], params[f"k{j}c"] = par(kout, "1/h"), par(kback, "1/h")
        cmts[f"p{j}"] = {"role": "peripheral"}
        flows += [
            {"from": "central", "to": f"p{j}", "k": f"kc{j}"},
            {"from": f"p{j}", "to": "central", "k": f"k{j}c"},
        ]
    routes = {"iv": {"kind": "intravenous", "target": "central"}}
    size = n + oral
    A = np.zeros((size, size))
    A[0, 0] = -k10
    for j, (kout, kback) in enumerate(pairs, start=1):
        A[0, 0] -= kout
        A[j, 0], A[0, j], A[j, j] = kout, kback, -kback
    if oral:
        params["F"], params["ka"] = par(f, "1"), par(ka, "1/h")
        cmts["gut"] = {"role": "depot"}
        flows.append({"from": "gut", "to": "central", "k": "ka"})
        routes["oral"] = {"kind": "extravascular", "target": "gut", "fraction": "F"}
        A[n, n], A[0, n] = -ka, ka
    d = {
        "schema_version": 1,
        "id": "generated",
        "name": "generated",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "test",
        "sampling": "unknown",
        "grade": "choice",
        "references": [{"key": "t", "citation": "test"}],
        "parameters": params,
        "compartments": cmts,
        "flows": flows,
        "routes": routes,
        "analytes": {"ketamine": {"compartment": "central", "mw": MW}},
    }
    cov = {}
    if per_kg:
        d["covariates"] = {"weight": {"unit": "kg", "reference": 70.0}}
        cov = {"weight": weight}
    return d, cov, A, vol, f, sorted(routes)


@st.composite
def regimens_for(draw, routes):
    """1-4 doses (iv boluses and infusions, oral boluses), times sorted."""
    k = draw(st.integers(1, 4))
    starts = sorted(
        draw(
            st.lists(
                st.sampled_from([0.0, 0.5, 1.0, 2.5, 6.0, 12.0]), min_size=k, max_size=k
            )
        )
    )
    doses = []
    for t in starts:
        route = draw(st.sampled_from(routes))
        mg = draw(st.floats(1.0, 100.0))
        dur = draw(st.sampled_from([None, 0.25, 1.0, 3.0])) if route == "iv" else None
        doses.append(ks.Dose(f"{mg!r} mg", route=route, time=t, duration=dur))
    return ks.Regimen(doses)


def reference(A, vol, f, regimen, times):
    """Concentrations (ng/mL) by exact piecewise propagation: between breakpoints
    x' = A x + r with the constant infusion rate r, solved by the augmented matrix
    exponential expm([[A, r], [0, 0]] h). A dose at an output time is applied before
    the value is recorded (ketasim's convention)."""
    n = A.shape[0]
    oral = n - 1
    starts, ends = {}, {}
    for d in regimen.doses:
        if d.duration is None:
            starts.setdefault(d.time, []).append(("bolus", d))
        else:
            starts.setdefault(d.time, []).append(("infusion", d))
            ends.setdefault(d.time + d.duration, []).append(d)
    points = sorted(set(starts) | set(ends) | set(times))
    x, r, tc = np.zeros(n), np.zeros(n), 0.0
    out = {}
    for b in points:
        if b > tc:
            aug = np.zeros((n + 1, n + 1))
            aug[:n, :n], aug[:n, n] = A, r
            e = scipy.linalg.expm(aug * (b - tc))
            x = e[:n, :n] @ x + e[:n, n]
            tc = b
        for d in ends.get(b, []):
            r[0] -= d.amount / d.duration
        for kind, d in starts.get(b, []):
            if kind == "infusion":
                r[0] += d.amount / d.duration
            elif d.route == "iv":
                x[0] += d.amount
            else:
                x[oral] += f * d.amount
        out[b] = x[0] / vol * 1000.0
    return np.array([out[t] for t in times])


@st.composite
def model_and_regimen(draw):
    d, cov, A, vol, f, routes = draw(linear_models())
    reg = draw(regimens_for(routes))
    times = np.unique(
        np.concatenate(
            [
                np.array(draw(st.lists(st.floats(0.0, 24.0), min_size=1, max_size=12))),
                np.array(reg.times),
            ]
        )
    )
    return d, cov, A, vol, f, reg, times


@settings(SMALL, max_examples=40)
@given(model_and_regimen())
def test_linear_models_match_expm_reference(args):
    """The exact solver to 1e-9 and the adaptive ODE solver to its tolerance."""
    d, cov, A, vol, f, reg, times = args
    m = ks.model_from_dict(d)
    ref = reference(A, vol, f, reg, times)
    exact = ks.simulate(m, reg, times=times, subjects=ks.Subjects(covariates=cov))
    assert int(exact.status.item()) == 0
    np.testing.assert_allclose(
        exact.concentration.values[0, 0],
        ref,
        rtol=1e-9,
        atol=1e-11 * np.max(np.abs(ref)),
    )
    ode = ks.simulate(
        m,
        reg,
        times=times,
        subjects=ks.Subjects(covariates=cov),
        solver=ks.ODE(rtol=1e-10, atol=1e-12),
    )
    assert int(ode.status.item()) == 0
    # scored against what was asked: the solver's atol (1e-12 mg) is 1e-9/vol ng/mL
    # in the central compartment, which a tiny curve (e.g. 6e-5 ng/mL at its
    # peak) can be far below 1e-8 of; global error: up to 100 local tolerances
    np.testing.assert_allclose(
        ode.concentration.values[0, 0],
        ref,
        rtol=1e-6,
        atol=1e-8 * np.max(np.abs(ref)) + 100 * 1e-9 / vol,
    )


def test_reference_one_compartment_closed_form():
    """The reference itself against the closed form: a bolus D into V with k gives
    D/V e^(-k t); an infusion at R for T gives R/(kV)(1 - e^(-k t)) up to T."""
    A = np.array([[-0.3]])
    t = np.array([0.0, 1.0, 2.0, 5.0])
    reg = ks.Regimen([ks.Dose.bolus("10 mg")])
    np.testing.assert_allclose(
        reference(A, 20.0, 1.0, reg, t), 10 / 20 * np.exp(-0.3 * t) * 1000, rtol=1e-13
    )
    inf = ks.Regimen([ks.Dose.infusion("10 mg", duration=4.0)])
    want = np.where(
        t <= 4,
        2.5 / (0.3 * 20) * (1 - np.exp(-0.3 * t)),
        2.5 / (0.3 * 20) * (1 - np.exp(-1.2)) * np.exp(-0.3 * (t - 4)),
    )
    np.testing.assert_allclose(reference(A, 20.0, 1.0, inf, t), want * 1000, rtol=1e-13)


# ---------------------------------------------------------------------------------
# invariants on bundled models with variability

IIV_MODELS = [
    m
    for m in gi.MODELS
    if gi.model(m).variability and gi.model(m).linear_time_invariant
]


@st.composite
def population_runs(draw):
    name = draw(st.sampled_from(IIV_MODELS))
    n = draw(st.integers(2, 9))
    s = draw(st.integers(0, 1000))
    return name, n, s


def _run(name, n, s, **kw):
    m = gi.model(name)
    reg = gi._model_regimen(m)
    m = gi.predictable(m, reg)
    times = np.linspace(0.0, reg.doses[-1].time + 24.0, 49)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ks.ValidityWarning)
        return ks.simulate(
            m, reg, times=times, population=ks.Population(n, seed=s), **kw
        )


@settings(SMALL, max_examples=8)
@given(args=population_runs())
def test_one_and_two_threads_identical(args):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(*args, output=ks.Trajectories(auc=True))
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _run(*args, output=ks.Trajectories(auc=True))
    finally:
        numba.set_num_threads(before)
    xr.testing.assert_identical(one, two)


@settings(SMALL, max_examples=5)
@given(population_runs(), st.integers(1, 4))
def test_dask_chunks_identical(args, chunks):
    pytest.importorskip("dask")
    eager = _run(*args)
    lazy = _run(*args, chunks=chunks)
    xr.testing.assert_identical(lazy.compute(), eager)


@settings(SMALL, max_examples=8)
@given(args=population_runs())
def test_netcdf_round_trip(args, tmp_path_factory):
    ds = _run(*args, output=ks.Trajectories(auc=True))
    path = tmp_path_factory.mktemp("nc") / "r.nc"
    ds.to_netcdf(path, engine="netcdf4")
    with xr.open_dataset(path, engine="netcdf4") as back:
        xr.testing.assert_identical(back.load(), ds)


@settings(SMALL, max_examples=15)
@given(
    model_and_regimen(),
    st.sampled_from([None, 1.0, "0.05 mg/L"]),
    st.sampled_from(["15 min", "1 h"]),
)
def test_metrics_mode_agrees_with_post_hoc_metrics(args, above, step):
    """Per-dose Cmax, Tmax, exact AUC, time above and the pre-dose level: the same
    in ks.Metrics() output as from ks.metrics on the curves (NaN where a window has no
    output time, on both paths)."""
    d, cov, _, _, _, reg, _ = args
    m = ks.model_from_dict(d)
    t = ks.grid("30 h", step)
    streamed = ks.simulate(
        m,
        reg,
        times=t,
        subjects=ks.Subjects(covariates=cov),
        output=ks.Metrics(above=above),
    )
    curves = ks.simulate(m, reg, times=t, subjects=ks.Subjects(covariates=cov))
    post = ks.metrics(curves, "dose", above=above)
    names = ["cmax", "tmax", "auc"] + (["time_above"] if above is not None else [])
    for name in names:
        np.testing.assert_allclose(
            streamed[name].values,
            post[name].values,
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            err_msg=name,
        )
    np.testing.assert_allclose(
        streamed.predose.values,
        curves.predose.values,
        rtol=1e-9,
        atol=1e-12,
        equal_nan=True,
    )
    assert streamed.cmax.attrs.get("units") == post.cmax.attrs.get("units")
    assert streamed.auc.attrs.get("units") == post.auc.attrs.get("units")
