"""simulate() on the exact path against independent oracles and invariants."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import xarray as xr

import ketasim as ks
from ketasim import Dose, Regimen

from .conftest import V1_PER_KG, design_rate_matrix


def expm_reference(A, dose_mg, t_inf, times):
    """x(t) for a zero-order infusion into compartment 0, one expm per time point:
    independent of the kernel's step splitting and propagator cache."""
    n = A.shape[0]
    r = np.zeros(n)
    r[0] = dose_mg / t_inf
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n] = A
    M[:n, n:] = np.eye(n)
    xs = []
    for t in times:
        tin = min(t, t_inf)
        P = scipy.linalg.expm(M * tin)
        x = P[:n, n:] @ r
        if t > t_inf:
            x = scipy.linalg.expm(A * (t - t_inf)) @ x
        xs.append(x)
    return np.array(xs)


def test_w1_matches_scipy_expm_reference():
    """W1: 0.5 mg/kg over 40 min, 70 kg, output every minute for 24 h."""
    times = ks.grid("24 h", "1 min")
    ds = ks.simulate(
        "domino",
        Dose.infusion("0.5 mg/kg", duration="40 min"),
        times=times,
        subjects=ks.Subjects(covariates={"weight": 70.0}),
    )
    got = ds.concentration.sel(analyte="ketamine").values[0]
    x = expm_reference(design_rate_matrix(), 35.0, 40 / 60, times)
    ref = x[:, 0] / (V1_PER_KG * 70.0) * 1000.0  # mg/L -> ng/mL
    assert got[0] == 0.0 and ref[0] == 0.0
    rel = np.abs(got[1:] - ref[1:]) / ref[1:]
    assert rel.max() <= 1e-9, rel.max()


def test_units_and_provenance():
    ds = ks.simulate("domino", Dose.bolus("10 mg"), times=[0.0, 1.0])
    assert ds.concentration.attrs["units"] == "ng/mL"
    assert ds.time.attrs["units"] == "h"
    assert ds.attrs["model_id"] == "domino"
    assert len(ds.attrs["model_sha256"]) == 64
    assert "Domino" in ds.attrs["references"]
    assert ds.attrs["ketasim_version"] == ks.__version__
    assert ds.attrs["solver"].startswith("exact")
    assert ds.weight.attrs["units"] == "kg"


COORDS_SRC = """{
    "subject": ("subject", np.arange(3)),
    "analyte": ("analyte", ["ketamine", "norketamine"]),
    "time": ("time", np.array([0.0, 0.5, 2.0]), {"units": "h"}),
    "label": ("dose", np.array(["a", None], dtype=object)),
    "dose": ("dose", np.array(["first", 2], dtype=object)),
    "weight": ("subject", np.array([60.0, 70.0, 80.0]), {"units": "kg"}),
}"""
COORDS = eval(COORDS_SRC)  # also run in a fresh process below


def test_prebuilt_indexes_equal_xarray_defaults():
    """simulate builds the dimension coordinates' indexes itself (to keep dask out of
    the first call); they must be what xarray builds from the same values."""
    import xarray as xr

    from ketasim._assemble import coordinates

    ours = xr.Dataset(coords=coordinates(COORDS))
    plain = xr.Dataset(coords=COORDS)
    xr.testing.assert_identical(ours, plain)
    assert (
        set(ours.xindexes)
        == set(plain.xindexes)
        == {"subject", "analyte", "time", "dose"}
    )
    for name in plain.xindexes:
        a, b = ours.xindexes[name], plain.xindexes[name]
        assert type(a) is type(b)
        assert a.coord_dtype == b.coord_dtype and a.index.dtype == b.index.dtype
        assert a.index.equals(b.index)
        assert ours[name].dtype == plain[name].dtype


def test_building_coordinates_does_not_import_dask():
    """xarray's own index building imports dask when it is installed (the control);
    simulate's does not."""
    pytest.importorskip("dask")

    def dask_modules(build):
        code = (
            "import sys, numpy as np, xarray as xr\n"
            "import ketasim\n"
            "from ketasim._assemble import coordinates\n"
            f"xr.Dataset(coords={build})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask'))\n"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()

    if dask_modules(COORDS_SRC) == "[]":
        pytest.skip("this xarray builds indexes without importing dask")
    assert dask_modules(f"coordinates({COORDS_SRC})") == "[]"


def test_bolus_at_time_zero_is_post_dose():
    ds = ks.simulate(
        "domino",
        Dose.bolus("10 mg"),
        times=[0.0],
        subjects=ks.Subjects(covariates={"weight": 70.0}),
    )
    assert ds.concentration.item() == pytest.approx(
        10.0 / (V1_PER_KG * 70) * 1000, rel=1e-14
    )


def test_mass_balance():
    """Amount in the body + eliminated (k10 · V1 · AUC) = amount dosed, at all times."""
    reg = Regimen(
        [Dose.infusion("35 mg", duration="40 min"), Dose.bolus("20 mg", time="3 h")]
    )
    times = ks.grid("30 h", "10 min")
    ds = ks.simulate(
        "domino", reg, times=times, output=ks.Trajectories(amounts=True, auc=True)
    )
    body = ds.amount.isel(subject=0).sum("compartment").values
    v1 = V1_PER_KG * 70.0
    eliminated = 0.4381 * 60 * v1 * ds.auc.isel(subject=0, analyte=0).values / 1000
    given = np.clip(times / (40 / 60), 0, 1) * 35.0 + np.where(times >= 3.0, 20.0, 0)
    np.testing.assert_allclose(body + eliminated, given, rtol=1e-11, atol=1e-12)


def test_superposition():
    a = Dose.infusion("35 mg", duration="40 min")
    b = Dose.bolus("12 mg", time="2.5 h")
    times = ks.grid("12 h", "5 min")
    ca = ks.simulate("domino", a, times=times).concentration.values
    cb = ks.simulate("domino", b, times=times).concentration.values
    cab = ks.simulate("domino", Regimen([a, b]), times=times).concentration.values
    np.testing.assert_allclose(cab, ca + cb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("duration,tol", [(1e-2, 5e-2), (1e-4, 5e-4), (1e-6, 5e-6)])
def test_short_infusion_approaches_bolus(duration, tol):
    times = np.linspace(0.5, 12, 100)
    bolus = ks.simulate("domino", Dose.bolus("35 mg"), times=times).concentration
    inf = ks.simulate(
        "domino", Dose.infusion("35 mg", duration=duration), times=times
    ).concentration
    rel = float(np.max(np.abs(inf - bolus) / bolus))
    # the infusion is the bolus delayed by about duration/2; the error is first order
    assert rel <= tol


def test_bioavailability_is_auc_ratio():
    times = ks.grid("400 h", "30 min")
    iv = ks.simulate(
        "domino", Dose.bolus("56 mg"), times=times, output=ks.Trajectories(auc=True)
    )
    inn = ks.simulate(
        "domino",
        Dose.bolus("56 mg", route="intranasal"),
        times=times,
        output=ks.Trajectories(auc=True),
    )
    ratio = inn.auc[0, 0, -1].item() / iv.auc[0, 0, -1].item()
    assert ratio == pytest.approx(0.48, rel=1e-9)


def test_exact_auc_one_compartment_closed_form(tmp_path):
    """AUC(0, t) of a 1-compartment bolus: D/CL (1 - exp(-CL/V t))."""
    m = one_compartment(tmp_path)
    times = np.array([0.5, 2.0, 10.0])
    ds = ks.simulate(
        m, Dose.bolus("100 mg"), times=times, output=ks.Trajectories(auc=True)
    )
    cl, v = 10.0, 50.0
    ref = 100.0 / cl * (1 - np.exp(-cl / v * times)) * 1000.0
    np.testing.assert_allclose(ds.auc[0, 0].values, ref, rtol=1e-12)


def one_compartment(tmp_path):
    p = tmp_path / "one.toml"
    p.write_text("""
schema_version = 1
id = "one"
name = "one compartment"
drug = "ketamine"
enantiomer = "racemic"
population = "test"
sampling = "unknown"
grade = "choice"
[[references]]
key = "t"
citation = "test"
[parameters.V]
value = 50
unit = "L"
description = "volume"
source = "test"
grade = "choice"
[parameters.CL]
value = 10
unit = "L/h"
description = "clearance"
source = "test"
grade = "choice"
[compartments.central]
role = "central"
volume = "V"
analyte = "ketamine"
[[flows]]
from = "central"
cl = "CL"
[routes.iv]
kind = "intravenous"
target = "central"
[analytes.ketamine]
compartment = "central"
mw = 237.73
""")
    return ks.load_model(p)


def test_salt_form_converts_to_base():
    times = [1.0, 5.0]
    base = ks.simulate("domino", Dose.bolus("10 mg"), times=times).concentration
    salt = ks.simulate("domino", Dose.bolus("10 mg", salt="hcl"), times=times)
    np.testing.assert_allclose(salt.concentration / base, 237.73 / 274.19, rtol=1e-12)
    assert salt.dose_mg.item() == pytest.approx(10 * 237.73 / 274.19)


def test_per_kg_everything_is_weight_invariant():
    """Domino scales V1 and only V1 by weight, with weight-free rate constants, so a
    mg/kg dose gives the same concentrations at every weight."""
    times = ks.grid("6 h", "15 min")
    ds = ks.simulate(
        "domino",
        Dose.infusion("0.5 mg/kg", duration="40 min"),
        times=times,
        subjects=ks.Subjects(covariates={"weight": [50.0, 70.0, 120.0]}),
    )
    c = ds.concentration.values
    np.testing.assert_allclose(c[0], c[1], rtol=1e-12)
    np.testing.assert_allclose(c[2], c[1], rtol=1e-12)
    np.testing.assert_allclose(ds.dose_mg[:, 0], [25.0, 35.0, 60.0])


def test_parameter_table_equals_single_runs():
    """Bit-identical whether a subject runs alone or in a vectorised block (37 =
    two blocks of 16 plus 5 run one at a time)."""
    rng = np.random.default_rng(3)
    n = 37
    k10 = 0.4381 * np.exp(rng.normal(0, 0.3, n))
    v1 = 0.063 * np.exp(rng.normal(0, 0.3, n))
    reg = Regimen.at([0, 3], Dose.infusion("0.5 mg/kg", duration="40 min"), unit="d")
    times = ks.grid("4 d", "30 min")
    pop = ks.simulate(
        "domino",
        reg,
        times=times,
        subjects=ks.Subjects(parameters={"k10": (k10, "1/min"), "V1": (v1, "L/kg")}),
    )
    for i in range(n):
        one = ks.simulate(
            "domino",
            reg,
            times=times,
            subjects=ks.Subjects(
                parameters={"k10": (k10[i], "1/min"), "V1": (v1[i], "L/kg")}
            ),
        )
        np.testing.assert_array_equal(pop.concentration[i], one.concentration[0])
    assert pop.parameters.sel(parameter="k10").values == pytest.approx(k10 * 60)


def test_out_buffer_is_used_and_checked():
    times = ks.grid("2 h", "1 min")
    buf = np.empty((1, 1, times.size))
    ds = ks.simulate(
        "domino", Dose.bolus("5 mg"), times=times, output=ks.Trajectories(out=buf)
    )
    assert np.shares_memory(ds.concentration.values, buf)
    with pytest.raises(
        ValueError,
        match=r"ks\.Trajectories\(out=\.\.\.\) must be a C-contiguous float64 array "
        r"of shape \(1, 1, 121\)",
    ):
        ks.simulate(
            "domino",
            Dose.bolus("5 mg"),
            times=times,
            output=ks.Trajectories(out=np.empty((1, 1, 120))),
        )


def test_metabolite_formation_molar(tmp_path):
    """Parent -> metabolite with fraction fm: amounts convert by MW ratio; checked
    against a hand-built expm and by molar mass balance."""
    p = tmp_path / "met.toml"
    p.write_text(METABOLITE_MODEL)
    m = ks.load_model(p)
    times = np.array([0.5, 1.0, 4.0, 12.0])
    ds = ks.simulate(
        m,
        Dose.bolus("100 mg"),
        times=times,
        output=ks.Trajectories(amounts=True, auc=True),
    )
    cl, v, fm, cln, vn = 60.0, 100.0, 0.8, 30.0, 50.0
    ratio = 223.70 / 237.73
    A = np.array([[-cl / v, 0.0], [fm * cl / v * ratio, -cln / vn]])
    ref = np.array([scipy.linalg.expm(A * t) @ [100.0, 0.0] for t in times])
    np.testing.assert_allclose(ds.amount[0].values.T, ref, rtol=1e-12)
    conc = ds.concentration[0].values
    np.testing.assert_allclose(conc[1], ref[:, 1] / vn * 1000, rtol=1e-12)
    # moles: parent + metabolite + eliminated parent (1-fm) + eliminated metabolite
    auc_p = ds.auc[0, 0].values / 1000 * v  # mg·h in central... ×k = mg eliminated
    auc_m = ds.auc[0, 1].values / 1000 * vn
    mol = (
        ref[:, 0] / 237.73
        + ref[:, 1] / 223.70
        + (1 - fm) * cl / v * auc_p / 237.73
        + cln / vn * auc_m / 223.70
    )
    np.testing.assert_allclose(mol, 100.0 / 237.73, rtol=1e-11)


METABOLITE_MODEL = """
schema_version = 1
id = "met"
name = "parent and metabolite"
drug = "ketamine"
enantiomer = "racemic"
population = "test"
sampling = "unknown"
grade = "choice"
[[references]]
key = "t"
citation = "test"
[parameters.V]
value = 100
unit = "L"
description = "parent volume"
source = "test"
grade = "choice"
[parameters.CL]
value = 1
unit = "L/min"
description = "parent clearance"
source = "test"
grade = "choice"
[parameters.fm]
value = 0.8
unit = "1"
description = "fraction metabolised to NK"
source = "test"
grade = "choice"
[parameters.VN]
value = 50
unit = "L"
description = "metabolite volume"
source = "test"
grade = "choice"
[parameters.CLN]
value = 30
unit = "L/h"
description = "metabolite clearance"
source = "test"
grade = "choice"
[compartments.central]
role = "central"
volume = "V"
analyte = "ketamine"
[compartments.nk]
role = "metabolite"
volume = "VN"
analyte = "norketamine"
[[flows]]
from = "central"
to = "nk"
cl = "CL"
fraction = "fm"
[[flows]]
from = "nk"
cl = "CLN"
[routes.iv]
kind = "intravenous"
target = "central"
[analytes.ketamine]
compartment = "central"
mw = 237.73
[analytes.norketamine]
compartment = "nk"
mw = 223.70
"""


# ---- every error message -----------------------------------------------------------
ERRORS = [
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg", route="rectal")),
        ks.DoseError,
        "uses route 'rectal', which model 'domino' does not define; its routes are "
        "intranasal, iv",
    ),
    (
        lambda: ks.simulate("domino", Dose("56 mg", route="intranasal", duration=1.0)),
        ks.DoseError,
        "route 'intranasal' is extravascular",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), times=[0, 2, 1]),
        ValueError,
        r"times must be sorted: times\[2\] = 1 h comes after times\[1\] = 2 h",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), times=[0, np.nan]),
        ValueError,
        r"times must be finite; times\[1\] = nan",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), times=[-1, 0]),
        ValueError,
        "must be >= 0",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), subjects=ks.Subjects(parameters={"CL": 3})
        ),
        ValueError,
        "model 'domino' has no parameter 'CL'",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), subjects=ks.Subjects(covariates={"wieght": 3})
        ),
        ValueError,
        "unknown covariate 'wieght'",
    ),
    (
        lambda: ks.simulate(
            "domino",
            Dose.bolus("5 mg"),
            subjects=ks.Subjects(covariates={"weight": -3}),
        ),
        ValueError,
        r"covariate 'weight' must be in \[0.3, 400\] kg \(a plausible human "
        r"value; check the unit\); got -3 for subject 0",
    ),
    (
        lambda: ks.simulate(
            "domino",
            Dose.bolus("5 mg"),
            subjects=ks.Subjects(
                covariates={"weight": [60, 70]}, parameters={"k10": ([1, 2, 3], "1/h")}
            ),
        ),
        ValueError,
        "per-subject arrays must all have the same length",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), solver="magic"),
        TypeError,
        r"solver must be ks.Exact\(\) or ks.ODE\(...\); got 'magic' \(str\)",
    ),
    (
        lambda: ks.simulate("domino", [Dose.bolus("5 mg")]),
        TypeError,
        "regimen must be a Regimen or a Dose; got list",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), solver=ks.ODE(rtol=0)),
        ValueError,
        r"ODE needs rtol in \(0, 1\) and atol finite and > 0 \(mg\); got "
        r"rtol=0, atol=1e-09",
    ),
    (
        lambda: ks.simulate(
            "domino",
            Dose.bolus("5 mg"),
            subjects=ks.Subjects(parameters={"V1": "-1 L/kg"}),
        ),
        ValueError,
        r"parameters\['V1'\] is a volume and must be > 0; got -1 L/kg",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), subjects=ks.Subjects(parameters={"F_IN": 1.5})
        ),
        ValueError,
        r"parameters\['F_IN'\] is a fraction .* must be <= 1; got 1.5 "
        r"\(subject 0\)",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), times="24 h"),
        TypeError,
        r"times must be an array of hours; got the string '24 h'. For a regular grid "
        r"use ks.grid\('24 h', '5 min'\)",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), times=["0 h", "1 h"]),
        TypeError,
        r"times must be an array of hours \(numbers\); got list",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), output=ks.Metrics(above=np.nan)
        ),
        ValueError,
        "above must be a finite concentration >= 0 ng/mL; got nan",
    ),
    (
        lambda: ks.simulate("domino", Dose.bolus("5 mg"), output=ks.Metrics(above=-5)),
        ValueError,
        "above must be a finite concentration >= 0 ng/mL; got -5",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), output=ks.Metrics(above=[50, 100])
        ),
        TypeError,
        "above must be one concentration in ng/mL",
    ),
    (
        lambda: ks.simulate(
            "domino", Dose.bolus("5 mg"), output=ks.Metrics(above="100 min")
        ),
        ks.UnitError,
        "above must be a concentration such as 100 or '100 ng/mL'; got '100 min'",
    ),
]


@pytest.mark.parametrize("call,exc,message", ERRORS)
def test_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_racemic_dose_to_enantiomer_model(tmp_path):
    src = one_compartment(tmp_path).path.read_text()
    # an S model measures S-ketamine (models/README.md, "Analyte names")
    src = src.replace('analyte = "ketamine"', 'analyte = "s_ketamine"').replace(
        "[analytes.ketamine]", "[analytes.s_ketamine]"
    )
    s_model = tmp_path / "s.toml"
    s_model.write_text(
        src.replace(
            'drug = "ketamine"\nenantiomer = "racemic"',
            'drug = "esketamine"\nenantiomer = "S"',
        )
    )
    with pytest.raises(
        ks.DoseError,
        match="is ketamine but model 'one' describes "
        r"esketamine \(S\) and declares no share",
    ):
        ks.simulate(s_model, Dose.bolus("100 mg", drug="ketamine"), times=[1.0])
    split = tmp_path / "split.toml"
    split.write_text(
        src.replace(
            'drug = "ketamine"\nenantiomer = "racemic"',
            'drug = "esketamine"\nenantiomer = "S"\nracemic_fraction = 0.5',
        )
    )
    half = ks.simulate(split, Dose.bolus("100 mg", drug="ketamine"), times=[1.0])
    s50 = ks.simulate(split, Dose.bolus("50 mg"), times=[1.0])
    np.testing.assert_allclose(half.concentration, s50.concentration, rtol=1e-15)
    assert half.dose_mg.item() == 50.0


def test_weight_from_height_and_bmi():
    """Given height and BMI but no weight, weight is BMI x height^2 (as Population
    derives it), not the 70-kg default; a mg/kg dose scales with it."""
    h, bmi = np.array([150.0, 190.0]), np.array([20.0, 30.0])
    ds = ks.simulate(
        "domino",
        Dose.bolus("1 mg/kg"),
        times=[0.5],
        subjects=ks.Subjects(covariates={"height": h, "bmi": bmi}),
    )
    w = bmi * (h / 100) ** 2
    np.testing.assert_allclose(ds.weight.values, w, rtol=1e-15)
    np.testing.assert_allclose(ds.dose_mg.values[:, 0], w, rtol=1e-15)
    lazy = ks.simulate(
        "domino",
        Dose.bolus("1 mg/kg"),
        times=[0.5],
        subjects=ks.Subjects(covariates={"height": h, "bmi": bmi}),
        chunks=1,
    )
    np.testing.assert_allclose(lazy.weight.values, w, rtol=1e-15)
    np.testing.assert_allclose(lazy.dose_mg.values[:, 0], w, rtol=1e-15)
    with pytest.raises(
        ValueError, match="per-subject arrays must all have the same length"
    ):
        ks.simulate(
            "domino",
            Dose.bolus("1 mg/kg"),
            times=[0.5],
            subjects=ks.Subjects(
                covariates={"height": [150.0, 160.0, 170.0], "bmi": bmi}
            ),
        )


def test_metrics_mode_carries_the_models_provenance():
    m = ks.simulate("domino", Dose.bolus("5 mg"), times=[0.0, 1.0], output=ks.Metrics())
    ds = ks.simulate("domino", Dose.bolus("5 mg"), times=[0.0, 1.0])
    for key in (
        "model_id",
        "model_name",
        "references",
        "model_sha256",
        "ketasim_version",
        "model_grade",
    ):
        assert m.attrs[key] == ds.attrs[key], key
    assert "Domino" in m.attrs["references"]


def test_unit_spellings():
    """Greek mu and the micro sign both read as micro; a unit with kg twice is not
    an amount (it used to read as a flat mg)."""
    from ketasim.units import parse_unit

    assert parse_unit("\u03bcg/L").factor == parse_unit("\u00b5g/L").factor == 1e-3
    assert parse_unit("\u00b5L").factor == parse_unit("uL").factor == 1e-6
    with pytest.raises(ks.DoseError, match="must be a drug amount"):
        Dose.bolus("1 mg/kg/kg")


# -- inter-occasion variability: every occasion's parameters --------------------------


@pytest.fixture(scope="module")
def two_sessions():
    """simons_2022 (IOV on some parameters) sublingual on days 0 and 7."""
    reg = ks.Regimen(
        [
            Dose.bolus("50 mg", route="sublingual"),
            Dose.bolus("50 mg", route="sublingual", time="7 d"),
        ]
    )
    pop = ks.Population(20, seed=1, covariates={"weight": np.full(20, 70.0)})
    ds = ks.simulate("simons_2022", reg, population=pop, times=ks.grid("8 d", "1 h"))
    return reg, pop, ds


def test_parameters_carry_an_occasion_dimension_with_iov(two_sessions):
    """`parameters` showed occasion 1 only, labelled as the individual parameters,
    while the day-7 session ran with other values (session AUCs differ)."""
    reg, pop, ds = two_sessions
    assert ds.parameters.dims == ("subject", "occasion", "parameter")
    np.testing.assert_array_equal(ds.occasion.values, [0, 1])
    assert "per occasion" in ds.parameters.attrs["long_name"]
    assert "occasion = dose_session" in ds.parameters.attrs["long_name"]
    m = ks.load_model("simons_2022")
    iov = {v.parameter for v in m.variability if v.iov_omega > 0}
    p = ds.parameters
    for name in ds.parameter.values:
        a, b = (p.sel(parameter=name, occasion=k).values for k in (0, 1))
        if name in iov:  # drawn anew for the second session
            assert np.all(a != b), name
        else:  # no IOV: the same value in both sessions
            np.testing.assert_array_equal(a, b)
    # occasion 0 is the first session's: a run of that session alone (the draws
    # are laid out occasion by occasion) has the same values
    first = ks.simulate(
        "simons_2022",
        ks.Regimen(reg.doses[:1]),
        population=pop,
        times=ks.grid("1 d", "1 h"),
    )
    np.testing.assert_array_equal(
        first.parameters.sel(occasion=0).values, p.sel(occasion=0).values
    )


def test_parameters_without_iov_have_no_occasion(two_sessions):
    reg, pop, _ = two_sessions
    no_iov = ks.Population(
        20, seed=1, covariates={"weight": np.full(20, 70.0)}, iov=False
    )
    ds = ks.simulate("simons_2022", reg, population=no_iov, times=ks.grid("8 d", "1 h"))
    assert ds.parameters.dims == ("subject", "parameter")
    assert "occasion" not in ds.coords
    assert ds.parameters.attrs["long_name"] == (
        "individual parameters (canonical units, see parameter_unit)"
    )


def test_occasion_parameters_round_trip_netcdf_and_dask(two_sessions, tmp_path):
    reg, pop, ds = two_sessions
    pytest.importorskip("dask")
    lazy = ks.simulate(
        "simons_2022", reg, population=pop, times=ks.grid("8 d", "1 h"), chunks=6
    )
    assert lazy.parameters.dims == ("subject", "occasion", "parameter")
    xr.testing.assert_identical(lazy.compute(), ds)
    ds.to_netcdf(tmp_path / "iov.nc")
    with xr.open_dataset(tmp_path / "iov.nc") as back:
        np.testing.assert_array_equal(back.parameters.values, ds.parameters.values)
        assert back.parameters.dims == ds.parameters.dims
