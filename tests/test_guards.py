"""Numerical guards: overflowing doses, non-finite or negative rates, exceptions in
a user rhs, negative amounts from the ODE solver and absurd output grids are
refused or reported by name, never returned as silent inf, NaN or garbage."""

import copy
import importlib
import re

import numba
import numpy as np
import pytest
from examples.michaelis_menten import MODEL

import ketasim as ks
from ketasim._kernels import ode
from ketasim._lower import MAX_MAGNITUDE, check_magnitude, lower
from ketasim.dosing import DoseError

# the modules (ketasim.simulate, the attribute, is the function): the public entry
# point, and the subject stage that holds the memory bound
sim = importlib.import_module("ketasim.simulate")
subj = importlib.import_module("ketasim._subjects")
T = np.array([0.0, 0.5, 1.0, 2.0])


# -- grids and result sizes ----------------------------------------------------------


def test_grid_refuses_an_absurd_step_with_the_count():
    with pytest.raises(
        ValueError,
        match=r"grid from 0 h to 24 h every '1e-9 h' would "
        r"have 24,000,000,001 points; at most 10,000,000 are allowed "
        r"\(179 GiB for the times alone",
    ):
        ks.grid("1 d", "1e-9 h")


def test_grid_of_an_absurd_span_prints_a_short_count():
    """A 1e300 h span printed a 301-digit point count."""
    with pytest.raises(
        ValueError,
        match=r"grid from 0 h to 1e\+300 h every '1 h' "
        r"would have 1e\+300 points; at most 10,000,000 are allowed "
        r"\(7\.45e\+291 GiB",
    ):
        ks.grid("1e300 h", "1 h")
    with pytest.raises(ValueError, match=r"would have more than 1e308 points"):
        ks.grid("1e308 h", "1e-10 h")  # the count overflows to inf


def test_grid_limit_is_inclusive():
    """10 million points pass (a year every ~3 s), one more is refused."""
    assert ks.grid("9999999 s", "1 s").size == sim.GRID_MAX_POINTS
    with pytest.raises(ValueError, match=r"would have 10,000,001 points"):
        ks.grid("10000000 s", "1 s")


def test_default_times_of_a_very_long_regimen_ask_for_times():
    dose = ks.Dose.bolus("5 mg", time="100 week")  # 16 800 h: 201 601 points, fine
    assert ks.simulate("domino", dose).time.size == (16800 + 24) * 12 + 1
    far = ks.Dose.bolus("5 mg", time=1e6)
    with pytest.raises(
        ValueError,
        match=r"the default output times \(every 5 min "
        r"until 24 h after the last dose ends at 1e\+06 h\) would be "
        r"1\.2e\+07 points, more than 10,000,000; pass times=",
    ):
        ks.simulate("domino", far)


# -- absurd time spans (generated-input findings 4 and 9) -----------------------------
# A dose at 1e300 h and output times up to 1e300 h were refused as an overflowing
# *amount* (check_magnitude) or a status 4 "check the dose amounts": the cause was the
# time. Times beyond MAX_TIME_H (1e6 h) are refused where they enter, by name.


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda: ks.Dose("84 mg", route="iv", time="1e300 h"),
            r"time must be at most 1e\+06 h \(about 114 years after the start of the "
            r"simulation\); got 1e\+300 h\. Check its unit "
            r"\(a number is read as hours\)",
        ),
        (
            lambda: ks.Dose("6.4e-282 mg/kg", route="iv", time="1e300 h", duration=0.5),
            r"time must be at most 1e\+06 h",
        ),
        (
            lambda: ks.Dose.infusion("1 mg", duration="1e7 h"),
            r"duration must be at most 1e\+06 h \(about 114 years\); got 10000000 h",
        ),
        (
            lambda: ks.Dose.bolus("1 mg", time=1e6 + 1),
            r"time must be at most 1e\+06 h .*got 1000001 h",
        ),
    ],
)
def test_dose_times_beyond_the_bound_are_refused(make, message):
    with pytest.raises(DoseError, match=message):
        make()


def test_output_times_beyond_the_bound_are_refused_by_index():
    with pytest.raises(
        ValueError,
        match=r"times must be at most 1e\+06 h \(about 114 "
        r"years after t = 0\); got times\[2\] = 1e\+300 h\. Check "
        r"their unit: times are hours",
    ):
        ks.simulate("domino", ks.Dose.bolus("84 mg"), times=[0.0, 1.0, 1e300, 1e301])


def test_times_at_the_bound_simulate():
    """1e6 h itself is accepted: a dose 1 h before it and an output at it match the
    same dose at 0 h one hour on (time invariance)."""
    far = ks.simulate(
        "domino", ks.Dose.bolus("84 mg", time=1e6 - 1.0), times=[1e6 - 2.0, 1e6]
    ).concentration.values[0, 0]
    with pytest.raises(ValueError, match=r"got times\[1\] = 1000001 h"):
        ks.simulate("domino", ks.Dose.bolus("84 mg"), times=[0.0, 1e6 + 1.0])
    near = ks.simulate(
        "domino", ks.Dose.bolus("84 mg"), times=[1.0]
    ).concentration.values[0, 0]
    assert far[0] == 0.0
    np.testing.assert_allclose(far[1], near[0], rtol=1e-9)


def test_result_above_the_memory_bound_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(subj, "RESULT_MAX_BYTES", 1000)
    t = np.linspace(0.0, 10.0, 100)
    cov = {"weight": [60.0, 80.0]}
    with pytest.raises(
        ValueError,
        match=r"the result would need [0-9.e+-]+ GiB at its "
        r"peak \(2 subjects x [0-9,]+ bytes: 1 outputs "
        r"\(concentrations\) x 100 times x 8 bytes, [0-9,]+ bytes of "
        r"parameters, covariates, dose events and per-dose values\), "
        r"more than the limit of 9\.31e-07 GiB .* Use fewer subjects "
        r"or fewer output times .* output=ks\.Metrics\(\) .* chunks=",
    ):
        ks.simulate(
            "domino",
            ks.Dose.bolus("5 mg"),
            times=t,
            subjects=ks.Subjects(covariates=cov),
        )
    with pytest.raises(ValueError, match=r": 2 outputs \(concentrations, AUC\) x 40 "):
        ks.simulate(
            "domino",
            ks.Dose.bolus("5 mg"),
            times=t[:40],
            subjects=ks.Subjects(covariates=cov),
            output=ks.Trajectories(auc=True),
        )
    # the ways out the message names work under a bound that refuses the curves
    monkeypatch.setattr(subj, "RESULT_MAX_BYTES", 3500)  # 4.4 kB vs 3.1 kB
    with pytest.raises(ValueError, match=r"the result would need"):
        ks.simulate(
            "domino",
            ks.Dose.bolus("5 mg"),
            times=t,
            subjects=ks.Subjects(covariates=cov),
        )
    m = ks.simulate(
        "domino",
        ks.Dose.bolus("5 mg"),
        times=t,
        subjects=ks.Subjects(covariates=cov),
        output=ks.Metrics(),
    )
    assert m.cmax.shape == (2, 1, 1)
    monkeypatch.setattr(subj, "RESULT_MAX_BYTES", 16 * 2**10)
    one = ks.simulate("domino", ks.Dose.bolus("5 mg"), times=t[:50])
    assert one.concentration.shape == (1, 1, 50)


def _needed(message: str) -> tuple[int, int]:
    """(subjects, bytes per subject) from a memory-bound message."""
    m = re.search(r"\((\d+) subjects x ([0-9,]+) bytes", message)
    return int(m[1]), int(m[2].replace(",", ""))


def _refusal(**kw) -> str:
    with pytest.raises(ValueError, match=r"the result would need") as info:
        ks.simulate("fanta_2015", ks.Dose.bolus("5 mg"), **kw)
    return str(info.value)


@pytest.fixture
def nothing_per_patient(monkeypatch):
    """Drawing any patient's covariates or random effects is a test failure: the
    bound must be checked before the first per-subject array exists."""

    def drawn(*args, **kw):
        raise AssertionError("a per-subject array was drawn before the memory check")

    for name in ("covariates_for", "etas", "iov_etas"):
        monkeypatch.setattr(ks.Population, name, drawn)


@pytest.mark.parametrize(
    "kw, message",
    [
        (
            {},
            r"the result would need [0-9.]+e\+04 GiB at its peak \(3000000000 subjects "
            r"x [0-9,]+ bytes: 1 outputs \(concentrations\) x 289 times x 8 bytes, ",
        ),
        (
            dict(output=ks.Metrics()),
            r"\(3000000000 subjects x [0-9,]+ bytes: 1 analytes "
            r"x 1 doses x 6 per-dose values x 8 bytes, covariates and status, and the "
            r"working arrays of 65536 subjects at a time\), more than the limit of "
            r"1 GiB \(half of this machine's memory\)\. Use fewer subjects, or chunks=",
        ),
        (
            dict(chunks=1000),
            r"\(3000000000 subjects x 256 bytes: subject labels and "
            r"covariates, which a lazy result keeps in memory as coordinates\), more "
            r"than the limit of 1 GiB .* Split the population into runs of fewer "
            r"subjects \(population\.subset\(start, stop\)\)",
        ),
    ],
    ids=["trajectories", "metrics", "chunks"],
)
def test_a_huge_population_is_refused_before_any_patient_is_drawn(
    monkeypatch, nothing_per_patient, kw, message
):
    """Population(3e9) met numpy's MemoryError (22.4 GiB of covariates) or the
    OS's kill: the bound came after the patients were drawn."""
    monkeypatch.setattr(subj, "RESULT_MAX_BYTES", 2**30)
    with pytest.raises(ValueError, match=message) as info:
        ks.simulate(
            "domino",
            ks.Dose.bolus("5 mg"),
            population=ks.Population(3_000_000_000, seed=1, iiv=False),
            **kw,
        )
    n, per = _needed(str(info.value))
    if not kw:  # at least the concentrations themselves (independent count)
        assert per >= 289 * 8


def test_the_bound_counts_residual_amounts_and_auc(monkeypatch):
    """Trajectories(residual=True) keeps a second copy of the concentrations (the
    observed values); auc and amounts add outputs: each adds its own bytes per
    subject."""
    monkeypatch.setattr(subj, "RESULT_MAX_BYTES", 1000)
    kw = dict(
        times=np.linspace(0.0, 10.0, 100), population=ks.Population(50_000, seed=1)
    )
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ks.Population, "covariates_for", None)  # never reached
        n, plain = _needed(_refusal(**kw))
        _, noisy = _needed(
            text := _refusal(output=ks.Trajectories(residual=True), **kw)
        )
        _, more = _needed(
            _refusal(output=ks.Trajectories(auc=True, amounts=True), **kw)
        )
    assert n == 50_000
    assert (
        "2 analytes x 100 times x 8 bytes for the observed concentrations "
        "(ks.Trajectories(residual=True))" in text
    )  # fanta_2015: ketamine and norketamine
    # the observed copy, plus this run's share of one block of draws (3 per time,
    # with about 6 temporaries)
    block = 6 * 8 * 3 * 100 * subj.residual_block(100) / 50_000
    assert 2 * 100 * 8 <= noisy - plain <= 2 * 100 * 8 + block + 1
    # AUC: one output per analyte; amounts: the compartments an IV bolus reaches
    ncmt = len(ks.load_model("fanta_2015").compartment_names)
    assert (2 + 1) * 100 * 8 <= more - plain <= (2 + ncmt) * (100 + 1) * 8


def test_the_estimated_peak_bounds_the_measured_one():
    """tracemalloc (which numpy reports to) measures the run's real peak: the
    estimate the bound uses is above it, beyond a fixed overhead (xarray, the
    model), for a large table of subjects with few times and for a run with
    residual error, AUC and amounts."""
    import tracemalloc

    cases = [
        dict(population=ks.Population(40_000, seed=1), times=[0.0, 1.0]),
        dict(
            population=ks.Population(2_000, seed=1),
            times=ks.grid("1 d", "5 min"),
            output=ks.Trajectories(residual=True, auc=True, amounts=True),
        ),
    ]
    for kw in cases:
        ks.simulate("fanta_2015", ks.Dose.bolus("5 mg"), **kw)  # imports, compiles
        with pytest.MonkeyPatch.context() as m:
            m.setattr(subj, "RESULT_MAX_BYTES", 0)
            n, per = _needed(_refusal(**kw))
        tracemalloc.start()
        try:
            ks.simulate("fanta_2015", ks.Dose.bolus("5 mg"), **kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= n * per + 4 * 2**20, (peak, n * per)


def test_memory_bound_is_half_the_physical_memory():
    mem = subj._physical_memory()
    assert subj.RESULT_MAX_BYTES == (mem or 16 * 2**30) // 2


# -- doses that overflow ---------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, message",
    [
        (
            "1e307 mg",
            r"doses\[0\] \(1e\+307 mg by route 'iv' at 0 h\) gives 1e\+307 mg "
            r"to subject 0 \(1e\+307 mg in all\): concentrations could reach "
            r"inf ng/mL",
        ),
        (
            "1e300 mg",
            r"doses\[0\] \(1e\+300 mg by route 'iv' at 0 h\) gives 1e\+300 mg "
            r"to subject 0 \(1e\+300 mg in all\): concentrations could reach "
            r"2\.27e\+302 ng/mL and AUCs 2\.27e\+302 ng\*h/mL, above 1e\+300",
        ),
        (
            "1e306 mg/kg",
            r"doses\[0\] \(1e\+306 mg/kg by route 'iv' at 0 h\) gives "
            r"7e\+307 mg to subject 0",
        ),
    ],
)
def test_overflowing_dose_is_refused_by_name(amount, message):
    with pytest.raises(DoseError, match=message):
        ks.simulate("domino", ks.Dose.bolus(amount), times=T[:3])


@pytest.mark.parametrize("solver", ["exact", "ode"])
def test_large_but_representable_dose_is_linear(solver):
    """1e290 mg is absurd but representable: the result is exactly linear in the
    dose (an independent invariant), finite, with status 0."""

    def how(atol):  # the tolerances apply to the ODE solver only
        return ks.Exact() if solver == "exact" else ks.ODE(rtol=1e-10, atol=atol)

    small = ks.simulate("domino", ks.Dose.bolus("1 mg"), times=T, solver=how(1e-14))
    big = ks.simulate(
        "domino", ks.Dose.bolus("1e290 mg"), times=T, solver=how(1e-14 * 1e290)
    )
    assert big.status.item() == 0
    assert np.isfinite(big.concentration.values).all()
    np.testing.assert_allclose(
        big.concentration.values / 1e290, small.concentration.values, rtol=1e-8
    )


def test_check_magnitude_names_the_largest_dose():
    m = ks.load_model("domino")
    reg = ks.Regimen(
        [
            ks.Dose.bolus("5 mg"),
            ks.Dose.bolus("1e296 mg", time=1.0),
            ks.Dose.bolus("1e295 mg", time=2.0),
        ]
    )
    w = np.array([70.0, 70.0])
    low = lower(m, reg, m.individual_parameters({"weight": w}, n=2), w, 2)
    # 1.1e296 mg in V1 = 4.41 L: 2.5e298 ng/mL, so the AUC bound decides
    check_magnitude(m, reg, low, 1.0)
    with pytest.raises(
        DoseError,
        match=r"doses\[1\] \(1e\+296 mg by route 'iv' at "
        r"1 h\) gives 1e\+296 mg to subjects 0, 1 \(1\.1e\+296 mg in "
        r"all\): concentrations could reach 2\.49e\+298 ng/mL and AUCs "
        r"over the 48 h to the last output time \(times\[-1\]\) "
        r"1\.2e\+300 ng\*h/mL",
    ):
        check_magnitude(m, reg, low, 48.0)
    # a concentration overflow alone is not blamed on the span
    with pytest.raises(
        DoseError,
        match=r"concentrations could reach 2\.\d+e\+301 "
        r"ng/mL and AUCs 2\.\d+e\+301 ng\*h/mL, above 1e\+300",
    ):
        big = ks.Regimen([ks.Dose.bolus("1e299 mg")])
        check_magnitude(
            m,
            big,
            lower(m, big, m.individual_parameters({"weight": w}, n=2), w, 2),
            1.0,
        )
    assert MAX_MAGNITUDE == 1e300


def test_non_finite_dose_amount_after_weight_scaling_is_named():
    """1e307 mg/kg x 70 kg is inf mg before any kernel sees it."""
    m = ks.load_model("domino")
    reg = ks.Regimen(
        [
            ks.Dose.bolus("5 mg"),
            ks.Dose.infusion("1e307 mg/kg", duration="1 h", time=3.0),
        ]
    )
    w = np.array([1.0, 70.0])
    with pytest.raises(
        DoseError,
        match=r"doses\[1\] \(1e\+307 mg/kg by route 'iv' "
        r"at 3 h\): its amount is inf mg for subject 1 after weight, "
        r"salt and bioavailability scaling",
    ):
        lower(m, reg, m.individual_parameters({"weight": w}, n=2), w, 2)


# -- rate matrices ---------------------------------------------------------------------


def _params(model, n, **changes):
    w = np.full(n, 70.0)
    p = {
        k: np.array(np.broadcast_to(v, (n,)), dtype=float)
        for k, v in model.individual_parameters({"weight": w}, n=n).items()
    }
    for name, value in changes.items():
        p[name][1:] = value  # subject 0 keeps its valid value
    return p, w


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"k10": -1.0},
            r"the flow central -> elimination has a negative rate for "
            r"subjects 1, 2 \(k10 = -1; rate constant -1 1/h\)",
        ),
        (
            {"k12": np.inf},
            r"the flow central -> peripheral1 has a non-finite rate for "
            r"subjects 1, 2 \(k12 = inf; rate constant inf 1/h\)",
        ),
        (
            {"k31": np.nan},
            r"the flow peripheral2 -> central has a non-finite rate for "
            r"subjects 1, 2 \(k31 = nan; rate constant nan 1/h\)",
        ),
        (
            {"V1": 0.0},
            r"the volume 'V1' of analyte 'ketamine' is 0 L for subjects 1, 2; "
            r"concentrations need a finite volume > 0",
        ),
    ],
)
def test_bad_rates_are_named_before_the_kernel(change, message):
    """Checked on the lowered arrays whatever produced the individual values (the
    parameter checks upstream refuse most of them earlier)."""
    m = ks.load_model("domino")
    p, w = _params(m, 3, **change)
    with pytest.raises(ValueError, match=message):
        lower(m, ks.Regimen([ks.Dose.bolus("5 mg")]), p, w, 3)


def test_valid_rates_pass_and_lower_is_unchanged():
    m = ks.load_model("domino")
    p, w = _params(m, 2)
    low = lower(m, ks.Regimen([ks.Dose.bolus("5 mg")]), p, w, 2)
    assert np.isfinite(low.A).all() and (np.diagonal(low.A, axis1=2, axis2=3) < 0).all()


# -- the ODE kernels -------------------------------------------------------------------


def _mm():
    return ks.model_from_dict(copy.deepcopy(MODEL))


def test_exception_in_a_user_rhs_names_the_rhs_and_the_subject():
    def raising_rhs(t, x, p, dxdt):
        if p[0] > 250.0:  # V = 3 L/kg: only the 90 kg subject (270 L)
            raise ValueError("volume too large for this rhs")
        dxdt[0] = -x[0]

    model = _mm().with_rhs(raising_rhs)
    with pytest.raises(
        ks.SolveError,
        match=r"the model's rhs raising_rhs\(t, x, p, "
        r"dxdt\) raised ValueError: volume too large for this rhs for "
        r"subject 1 while integrating.*must not raise",
    ) as info:
        ks.simulate(
            model,
            ks.Dose.bolus("10 mg"),
            times=T,
            subjects=ks.Subjects(covariates={"weight": [70.0, 90.0]}),
        )
    assert not isinstance(info.value, SystemError)


def test_out_of_bounds_index_in_a_boundschecked_rhs_is_named():
    @numba.njit(boundscheck=True)
    def oob_rhs(t, x, p, dxdt):
        dxdt[0] = -p[1] * x[3]  # one state only

    with pytest.raises(
        ks.SolveError,
        match=r"the model's rhs oob_rhs\(t, x, p, "
        r"dxdt\) raised IndexError: index is out of bounds for "
        r"subject 0",
    ):
        ks.simulate(_mm().with_rhs(oob_rhs), ks.Dose.bolus("10 mg"), times=T)


def test_own_ode_kernel_returns_a_status_under_a_huge_state():
    """A 1e300 mg bolus in domino's three states made the solver divide by a step
    that had underflowed to 0: a ZeroDivisionError inside the parallel kernel,
    surfacing as SystemError. Compiled with the numpy error model the kernel
    returns (a finite result or a status) instead of raising. Called directly:
    simulate() refuses this dose before the kernel (check_magnitude)."""
    m = ks.load_model("domino")
    w = np.array([70.0])
    low = lower(
        m,
        ks.Regimen([ks.Dose.bolus("1e300 mg")]),
        m.individual_parameters({"weight": w}, n=1),
        w,
        1,
    )
    k = ode.solver(3)
    out = np.zeros((1, 1, T.size))
    status = np.zeros(1, dtype=np.int64)
    steps = np.zeros(1, dtype=np.int64)
    k.solve_population(
        np.ascontiguousarray(low.A[:, 0].reshape(1, -1)),
        np.zeros((1, 3)),
        low.ev_time,
        low.ev_cmt,
        low.ev_kind,
        low.ev_value,
        T,
        low.obs_cmt,
        low.obs_scale,
        1e-6,
        1e-9,
        0,
        True,
        100_000,
        out,
        status,
        steps,
    )
    assert status[0] in (0, 3)
    if status[0] == 0:  # linear in the dose: 1e300 x the 1 mg result
        ref = ks.simulate(m, ks.Dose.bolus("1 mg"), times=T).concentration.values
        np.testing.assert_allclose(out / 1e300, ref, rtol=1e-4)


def _draining_rhs(t, x, p, dxdt):
    dxdt[0] = -100.0  # removes 100 mg/h whatever is left: wrong below 0 mg


def test_negative_amount_is_status_5_not_a_silent_result():
    model = _mm().with_rhs(_draining_rhs)
    times = np.array([0.0, 0.05, 0.2, 1.0])
    with pytest.raises(
        ks.SolveError,
        match=r"1 of 1 subjects failed: status 5 for "
        r"subject 0 \(NaN from t = 0\.2 h\): a compartment amount went "
        r"negative beyond the tolerance",
    ):
        ks.simulate(model, ks.Dose.bolus("10 mg"), times=times)
    ds = ks.simulate(model, ks.Dose.bolus("10 mg"), times=times, errors="keep")
    assert ds.status.item() == 5
    c = ds.concentration.values[0, 0]
    # 10 mg - 100 mg/h t in V = 210 L, exact for a linear-in-t amount
    np.testing.assert_allclose(c[:2], [10 / 210 * 1000, 5 / 210 * 1000], rtol=1e-9)
    assert np.isnan(c[2:]).all()


def test_decay_to_zero_is_not_flagged_negative():
    """Fast elimination over 20 half-lives ends near 0 with rounding-size values
    of either sign; the tolerance (atol + rtol x the state's peak) lets them be."""
    ds = ks.simulate(
        "domino",
        ks.Dose.bolus("5 mg"),
        times=ks.grid("72 h", "1 h"),
        solver=ks.ODE(method="dopri5"),
    )
    assert ds.status.item() == 0
    ref = ks.simulate("domino", ks.Dose.bolus("5 mg"), times=ks.grid("72 h", "1 h"))
    np.testing.assert_allclose(
        ds.concentration.values, ref.concentration.values, rtol=1e-4, atol=1e-6
    )


def test_solve_error_names_every_failing_subject_per_status():
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    with pytest.raises(
        ks.SolveError,
        match=r"3 of 3 subjects failed: status 1 for "
        r"subjects 0, 1, 2 \(NaN from t = 1 h for subject 0\): the ODE "
        r"solver reached max_steps.*errors='keep'",
    ):
        ks.simulate(
            "domino",
            d,
            times=ks.grid("4 h", "1 h"),
            subjects=ks.Subjects(covariates={"weight": [60.0, 70.0, 80.0]}),
            solver=ks.ODE(max_steps=5),
        )


def test_non_finite_rhs_parameter_is_named():
    """The parameter vectors a user rhs receives are checked before the kernel
    (called directly: the parameter checks upstream refuse such values first)."""
    from ketasim._run_ode import check_rhs_parameters

    model = _mm()
    p = np.array([[210.0, 40.0, 0.15], [210.0, np.inf, 0.15], [210.0, np.inf, 0.15]])
    with pytest.raises(
        ValueError,
        match=r"parameter 'Vmax' is inf for subjects 1, 2; "
        r"the model's rhs needs finite parameter values",
    ):
        check_rhs_parameters(model, p)
    check_rhs_parameters(model, p[:1])  # finite: passes


def test_backstop_refuses_a_non_compartmental_matrix():
    """A negative off-diagonal entry no single flow explains (here: written into
    the lowered matrix directly) is still refused, with the matrix."""
    from ketasim._lower import _check_rates

    m = ks.load_model("domino")
    p, w = _params(m, 2)
    low = lower(m, ks.Regimen([ks.Dose.bolus("5 mg")]), p, w, 2)
    A = low.A.copy()
    A[1, 0, 1, 0] = -1.0
    with pytest.raises(
        ValueError,
        match=r"the rate matrix of subject 1 is not finite "
        r"and compartmental \(off-diagonal entries >= 0, diagonal <= "
        r"0\)",
    ):
        _check_rates(m, [p], A, low.compartments, 2)
    _check_rates(m, [p], low.A, low.compartments, 2)


def test_overflowing_dose_is_refused_in_metrics_mode_too():
    with pytest.raises(
        DoseError,
        match=r"doses\[0\] \(1e\+307 mg by route 'iv' at 0 "
        r"h\) gives 1e\+307 mg to subject 0",
    ):
        ks.simulate("domino", ks.Dose.bolus("1e307 mg"), times=T, output=ks.Metrics())


#: flint_2017's patient: its reference weight, 70 kg, is outside the 3.4-35 kg
#: it was estimated on, so simulate needs a weight
CHILD = {"weight": 20.0}


def _flint_with_slope(slope):
    import tomllib

    from ketasim.modelfile import models_dir

    d = tomllib.loads((models_dir() / "flint_2017.toml").read_text())
    d["time_effects"][0]["slope"] = slope
    return ks.model_from_dict(d)


def test_time_effect_reaching_zero_within_the_times_is_refused():
    """CLN x (1 - 0.01 t) is 0 at 100 h: the model would create drug after that."""
    m = _flint_with_slope(-0.01)
    dose = ks.Dose.infusion("1 mg/kg", duration="1 h")
    with pytest.raises(
        ValueError,
        match=r"time_effects of model 'flint_2017': CLN x "
        r"\(1 \+ -0.01 t\) \(t in h after the first dose at 0 h\) "
        r"reaches 0 at 100 h, before the last output time 200 h",
    ):
        ks.simulate(
            m,
            dose,
            times=ks.grid("200 h", "1 h"),
            subjects=ks.Subjects(covariates=CHILD),
        )
    ds = ks.simulate(
        m,
        dose,
        times=ks.grid("99 h", "1 h"),  # holds until then
        subjects=ks.Subjects(covariates=CHILD),
    )
    assert np.isfinite(ds.concentration.values).all()


def test_non_finite_state_from_a_time_effect_names_it():
    m = _flint_with_slope(1e300)
    with pytest.raises(
        ks.SolveError,
        match=r"status 3 for subject 0 .*this model's "
        r"parameters change in time \(CLN x \(1 \+ 1e\+300 t\), t in h "
        r"after the first dose\), up to the last output time 200 h",
    ):
        ks.simulate(
            m,
            ks.Dose.infusion("1 mg/kg", duration="1 h"),
            times=ks.grid("200 h", "1 h"),
            subjects=ks.Subjects(covariates=CHILD),
        )


def test_stiff_time_effect_outputs_match_solve_ivp():
    """CLN x (1 + 1e6 t): stiff, with a Jacobian that changes every step. The
    Rodas4 steps end on output times (its long-step interpolant gave -1.9e-3 and
    0.47 ng/mL where the solution is ~1e-5, with status 0); every output agrees
    with scipy's Radau at tight tolerance."""
    from scipy.integrate import solve_ivp

    m = _flint_with_slope(1e6)
    t = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    ds = ks.simulate(
        m,
        ks.Dose.bolus("10 mg"),
        times=t,
        subjects=ks.Subjects(covariates=CHILD),
        output=ks.Trajectories(amounts=True),
    )
    params = m.individual_parameters(
        {k: np.array([v]) for k, v in {**m.covariates, **CHILD}.items()}, n=1
    )
    A, A1 = m.rate_matrices(params, 1)[0], m.time_derivative_matrices(params, 1)[0]
    x0 = np.zeros(A.shape[0])
    x0[m.compartment_index(m.routes["iv"].pathways[0].target)] = 10.0
    ref = solve_ivp(
        lambda s, x: (A + s * A1) @ x,
        (0.0, 3.0),
        x0,
        method="Radau",
        t_eval=t,
        rtol=1e-11,
        atol=1e-16,
        jac=lambda s, x: A + s * A1,
    )
    got = ds.amount.values[0]
    assert (got >= 0).all()
    np.testing.assert_allclose(got, ref.y, rtol=1e-4, atol=1e-9 * 10)
