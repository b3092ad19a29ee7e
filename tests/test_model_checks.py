"""Model numbers are checked where they are read (model_from_dict / load_model) and
individual parameters where they are computed (Model.individual_parameters).

Each load-time case mutates one bundled model's dict and checks the exact key path
and message; the run-time cases check the parameter, subject, value and covariates
named."""

import math
import re
import tomllib

import numpy as np
import pytest

import ketasim as ks
from ketasim.model import check_individual
from ketasim.modelfile import ModelFileError, model_from_dict, models_dir

from .tomlwrite import dumps, mutate

NAN, INF = math.nan, math.inf


def model_dict(name):
    return tomllib.loads((models_dir() / f"{name}.toml").read_text())


def refused(data, message):
    """model_from_dict(data) raises ModelFileError whose text starts with
    ``<dict>: `` followed by ``message`` (the key path and the message)."""
    with pytest.raises(ModelFileError) as info:
        model_from_dict(data)
    assert str(info.value).startswith("<dict>: " + message), str(info.value)
    return info.value


def with_lag(value):
    """domino with a lag time parameter on its intranasal route."""
    d = model_dict("domino")
    d["parameters"]["tlag"] = {
        "value": value,
        "unit": "min",
        "description": "lag",
        "source": "test",
        "grade": "choice",
    }
    d["routes"]["intranasal"]["lag"] = "tlag"
    return d


# ---- every bundled model still loads ------------------------------------------


@pytest.mark.parametrize("name", ks.list_models())
def test_bundled_model_loads(name):
    m = ks.load_model(name)
    assert m.id == name


def test_simons_f2_is_an_explicit_fraction_above_one():
    """Simons 2022 publishes F2 = 116 %: kept as published, and marked so. F1
    (26 %) is marked too: its published log-normal IOV exceeds 1 in rare draws."""
    m = ks.load_model("simons_2022")
    assert m.fractions_above_one == ("F1", "F2")
    assert m.parameters["F2"].value == pytest.approx(1.16)
    d = model_dict("simons_2022")
    del d["parameters"]["F2"]["above_one"]
    refused(
        d,
        "[parameters.F2.value] must be between 0 and 1 as the fraction of "
        "route 'sublingual' into 'gut'; got 1.16 — a fraction, e.g. 0.45",
    )


# ---- parameter values, by how the model uses them -------------------------------

PARAMETER_CASES = [
    (
        "domino",
        "V1",
        -0.5,
        "[parameters.V1.value] must be finite and > 0 as the "
        "volume of compartment 'central'; got -0.5 L/kg",
    ),
    (
        "domino",
        "V1",
        0.0,
        "[parameters.V1.value] must be finite and > 0 as the "
        "volume of compartment 'central'; got 0.0 L/kg",
    ),
    (
        "domino",
        "k10",
        -1.0,
        "[parameters.k10.value] must be finite and > 0 as the "
        "rate constant of the flow from 'central'; got -1.0 1/min (= -60 1/h)",
    ),
    ("domino", "k10", NAN, "[parameters.k10.value] must be finite; got nan"),
    ("domino", "k10", INF, "[parameters.k10.value] must be finite; got inf"),
    ("domino", "k10", -INF, "[parameters.k10.value] must be finite; got -inf"),
    (
        "domino",
        "F_IN",
        1.5,
        "[parameters.F_IN.value] must be between 0 and 1 as the "
        "fraction of route 'intranasal' into 'depot_nasal'; got 1.5 — a fraction",
    ),
    (
        "domino",
        "F_IN",
        -0.1,
        "[parameters.F_IN.value] must be between 0 and 1 as "
        "the fraction of route 'intranasal' into 'depot_nasal'; got -0.1",
    ),
    (
        "perez_ruixo_2021",
        "Qh",
        -151.0,
        "[parameters.Qh.value] must be finite and > 0 "
        "as the clearance of the flow from 'central'; got -151.0 L/h",
    ),
    (
        "perez_ruixo_2021",
        "Dsw",
        0.0,
        "[parameters.Dsw.value] must be finite and > 0 "
        "as the input duration of route 'intranasal' into 'gut_sw'; got 0.0 h",
    ),
    (
        "perez_ruixo_2021",
        "FRn_dose",
        1.2,
        "[parameters.FRn_dose.value] must be "
        "between 0 and 1 as the later-device factor of route 'intranasal' into "
        "'nasal'; got 1.2",
    ),
    (
        "perez_ruixo_2021",
        "Fgut",
        1.01,
        "[parameters.Fgut.value] must be between 0 "
        "and 1 as the fraction of the flow from 'gut_sw' reaching 'liver'; got 1.01",
    ),
    (
        "simons_2022",
        "MTTG",
        0.0,
        "[parameters.MTTG.value] must be finite and > 0 as "
        "the mean transit time of transit chain 'gut_liver'; got 0.0 min — check the "
        "value and its unit",
    ),
    (
        "simons_2022",
        "F2",
        -0.1,
        "[parameters.F2.value] must be finite and >= 0 as "
        "the fraction of route 'sublingual' into 'gut'; got -0.1",
    ),
]


@pytest.mark.parametrize(
    "name,param,value,message",
    PARAMETER_CASES,
    ids=[f"{c[1]}={c[2]}" for c in PARAMETER_CASES],
)
def test_parameter_value_rules(name, param, value, message):
    refused(mutate(model_dict(name), ("parameters", param, "value"), value), message)


def test_percent_fraction_shows_both_units():
    d = model_dict("domino")
    d["parameters"]["F_IN"].update(value=150.0, unit="%")
    refused(
        d,
        "[parameters.F_IN.value] must be between 0 and 1 as the fraction of "
        "route 'intranasal' into 'depot_nasal'; got 150.0 % (= 1.5)",
    )


@pytest.mark.parametrize(
    "value,message",
    [
        (
            -3.0,
            "[parameters.tlag.value] must be finite and >= 0 as the lag time of "
            "route 'intranasal' into 'depot_nasal'; got -3.0 min (= -0.05 h)",
        ),
        (NAN, "[parameters.tlag.value] must be finite; got nan"),
    ],
)
def test_lag_must_be_nonnegative(value, message):
    refused(with_lag(value), message)


def test_zero_lag_is_accepted():
    m = model_from_dict(with_lag(0.0))
    assert m.parameters["tlag"].value == 0.0


# ---- literal numbers used as fractions ------------------------------------------

LITERAL_CASES = [
    (
        ("routes", "intranasal", "fraction"),
        1.5,
        "[routes.intranasal.fraction] must be between 0 and 1; got 1.5 — a fraction of "
        "the dose or flow, e.g. 0.5",
    ),
    (
        ("routes", "intranasal", "fraction"),
        -0.5,
        "[routes.intranasal.fraction] must be between 0 and 1; got -0.5",
    ),
    (
        ("routes", "intranasal", "fraction"),
        NAN,
        "[routes.intranasal.fraction] must be between 0 and 1; got nan",
    ),
    (
        ("routes", "intranasal", "fraction"),
        INF,
        "[routes.intranasal.fraction] must be between 0 and 1; got inf",
    ),
]


@pytest.mark.parametrize(
    "path,value,message", LITERAL_CASES, ids=[repr(c[1]) for c in LITERAL_CASES]
)
def test_literal_route_fraction(path, value, message):
    refused(mutate(model_dict("domino"), path, value), message)


@pytest.mark.parametrize(
    "value,message",
    [
        (1.5, "[flows[1].fraction] must be between 0 and 1; got 1.5"),
        (-0.2, "[flows[1].fraction] must be between 0 and 1; got -0.2"),
    ],
)
def test_literal_flow_fraction(value, message):
    refused(
        mutate(model_dict("perez_ruixo_2021"), ("flows", 1, "fraction"), value), message
    )


def test_literal_fraction_in_range_is_accepted():
    m = model_from_dict(
        mutate(model_dict("domino"), ("routes", "intranasal", "fraction"), 0.5)
    )
    assert m.routes["intranasal"].pathways[0].fraction == 0.5


def test_route_fractions_sum_to_at_most_one():
    d = model_dict("perez_ruixo_2021")
    d["routes"]["intranasal"]["pathways"][1]["fraction"] = "Fgut"
    refused(
        d,
        "[routes.intranasal.pathways] fractions add up to 1.18 > 1 (FRn 0.54 "
        "+ Fgut 0.64): more than the whole dose would be absorbed",
    )


# ---- above_one ----------------------------------------------------------------


@pytest.mark.parametrize(
    "param,message",
    [
        (
            "V1",
            "[parameters.V1.above_one] applies to fractions (unit '1' or '%'); 'V1' "
            "is a volume (L/kg)",
        ),
    ],
)
def test_above_one_only_on_fractions(param, message):
    d = model_dict("domino")
    d["parameters"][param]["above_one"] = "why"
    refused(d, message)


def test_above_one_on_a_parameter_not_used_as_a_fraction():
    d = model_dict("domino")
    d["parameters"]["F_X"] = {
        "value": 1.2,
        "unit": "1",
        "description": "unused",
        "source": "test",
        "grade": "choice",
        "above_one": "x",
    }
    refused(d, "[parameters.F_X.above_one] 'F_X' is not used as a fraction")


# ---- molecular weights, variances, residual SDs, device, time effects ----------

SCALAR_CASES = [
    (
        "domino",
        ("analytes", "ketamine", "mw"),
        0.0,
        "[analytes.ketamine.mw] must be finite and > 0 g/mol; got 0.0",
    ),
    (
        "domino",
        ("analytes", "ketamine", "mw"),
        INF,
        "[analytes.ketamine.mw] must be finite and > 0 g/mol; got inf",
    ),
    (
        "domino",
        ("analytes", "ketamine", "mw"),
        NAN,
        "[analytes.ketamine.mw] must be finite and > 0 g/mol; got nan",
    ),
    (
        "simons_2022",
        ("analytes", "s_ketamine", "mw"),
        1e-300,
        "[analytes.s_ketamine.mw] must be a molecular weight within [1, 1e6] g/mol; "
        "got 1e-300 — ketamine is 237.73 g/mol",
    ),
    (
        "fanta_2015",
        ("variability", "V1", "omega2"),
        -0.1,
        "[variability.V1.omega2] must be finite and >= 0; got -0.1",
    ),
    (
        "fanta_2015",
        ("variability", "V1", "omega2"),
        NAN,
        "[variability.V1.omega2] must be finite and >= 0; got nan",
    ),
    (
        "perez_ruixo_2021",
        ("variability", "ka_n", "cv"),
        INF,
        "[variability.ka_n.cv] must be finite and >= 0; got inf",
    ),
    (
        "perez_ruixo_2021",
        ("variability", "ka_n", "cv"),
        1e300,
        "[variability.ka_n.cv] gives an infinite SD of eta; got 1e+300 — a CV is a "
        "ratio",
    ),
    (
        "simons_2022",
        ("variability", "F1", "iov_omega2"),
        -0.06,
        "[variability.F1.iov_omega2] must be finite and >= 0; got -0.06",
    ),
    (
        "perez_ruixo_2021",
        ("residual", "s_ketamine", "exponential"),
        -0.276,
        "[residual.s_ketamine.exponential] must be finite and >= 0; got -0.276",
    ),
    (
        "perez_ruixo_2021",
        ("residual", "s_ketamine", "exponential"),
        NAN,
        "[residual.s_ketamine.exponential] must be finite and >= 0; got nan",
    ),
    (
        "perez_ruixo_2021",
        ("routes", "intranasal", "device"),
        "1e400 mg",
        '[routes.intranasal.device] must be a fixed amount > 0 such as "28 mg"; got '
        "'1e400 mg'",
    ),
    (
        "perez_ruixo_2021",
        ("routes", "intranasal", "device"),
        "nan mg",
        "[routes.intranasal.device] cannot read device 'nan mg'",
    ),
    (
        "flint_2017",
        ("time_effects", 0, "slope"),
        NAN,
        "[time_effects[0].slope] must be finite; got nan",
    ),
    (
        "flint_2017",
        ("time_effects", 0, "slope"),
        INF,
        "[time_effects[0].slope] must be finite; got inf",
    ),
]


@pytest.mark.parametrize(
    "name,path,value,message",
    SCALAR_CASES,
    ids=[f"{c[1][-1]}={c[2]}" for c in SCALAR_CASES],
)
def test_scalar_rules(name, path, value, message):
    refused(mutate(model_dict(name), path, value), message)


def test_additive_residual_sd_nonnegative():
    d = model_dict("perez_ruixo_2021")
    d["residual"]["s_ketamine"].update(additive=-1.0, additive_unit="ng/mL")
    refused(d, "[residual.s_ketamine.additive] must be finite and >= 0; got -1.0")


@pytest.mark.parametrize("value", [0.0, 1.5, NAN])
def test_racemic_fraction(value):
    d = model_dict("perez_ruixo_2021")
    d["racemic_fraction"] = value
    refused(
        d,
        "[racemic_fraction] applies to enantiomer models, as the share (0-1] "
        f"of a racemic dose they describe; got {value!r} for a S model",
    )


# ---- covariate references and validity ranges ----------------------------------

COVARIATE_CASES = [
    (
        "domino",
        ("covariates", "weight", "reference"),
        -70.0,
        "[covariates.weight.reference] must be a plausible weight, within [0.3, 400] "
        "kg; got -70.0",
    ),
    (
        "domino",
        ("covariates", "weight", "reference"),
        1e300,
        "[covariates.weight.reference] must be a plausible weight, within [0.3, 400] "
        "kg; got 1e+300",
    ),
    (
        "domino",
        ("covariates", "weight", "reference"),
        NAN,
        "[covariates.weight.reference] must be a plausible weight, within [0.3, 400] "
        "kg; got nan",
    ),
    (
        "perez_ruixo_2021",
        ("covariates", "asian", "reference"),
        0.5,
        "[covariates.asian.reference] must be 0 or 1 (asian is a 0/1 flag); got 0.5",
    ),
    (
        "perez_ruixo_2021",
        ("validity", "age"),
        [86, 18],
        "[validity.age] must be [low, high] with low <= high; got [86, 18] — write "
        "[18, 86]",
    ),
    (
        "perez_ruixo_2021",
        ("validity", "age"),
        [18, INF],
        "[validity.age] must be a plausible age, within [0, 120] y; got inf",
    ),
    (
        "perez_ruixo_2021",
        ("validity", "age"),
        [NAN, 86],
        "[validity.age] must be a plausible age, within [0, 120] y; got nan",
    ),
    (
        "perez_ruixo_2021",
        ("validity", "weight"),
        [-39, 170],
        "[validity.weight] must be a plausible weight, within [0.3, 400] kg; got -39",
    ),
    (
        "perez_ruixo_2021",
        ("validity", "age"),
        [18, 86, 90],
        "[validity.age] must be [low, high], two numbers; got [18, 86, 90]",
    ),
]


@pytest.mark.parametrize(
    "name,path,value,message",
    COVARIATE_CASES,
    ids=[f"{c[1][1]}={c[2]}" for c in COVARIATE_CASES],
)
def test_covariate_references_and_validity(name, path, value, message):
    refused(mutate(model_dict(name), path, value), message)


# ---- covariate effects: their own numbers --------------------------------------

EFFECT_CASES = [
    (
        "fanta_2015",
        0,
        "reference",
        0.0,
        "[covariate_effects[0].reference] must be > 0 "
        "for a power effect, (c / reference)^exponent; got 0.0 — the typical weight, "
        "e.g. 70 kg",
    ),
    (
        "fanta_2015",
        0,
        "reference",
        -70.0,
        "[covariate_effects[0].reference] must be > 0 for a power effect",
    ),
    (
        "fanta_2015",
        0,
        "exponent",
        NAN,
        "[covariate_effects[0].exponent] must be finite; got nan",
    ),
    (
        "perez_ruixo_2021",
        3,
        "slope",
        INF,
        "[covariate_effects[3].slope] must be finite; got inf",
    ),
    (
        "perez_ruixo_2021",
        0,
        "reference",
        2.0,
        "[covariate_effects[0].reference] must "
        "be 0 or 1 (asian is a 0/1 flag); got 2.0",
    ),
    (
        "perez_ruixo_2021",
        0,
        "factor",
        -0.36,
        "[covariate_effects[0].factor] must be finite and >= 0; got -0.36",
    ),
]


@pytest.mark.parametrize(
    "name,i,key,value,message",
    EFFECT_CASES,
    ids=[f"{c[2]}={c[3]}" for c in EFFECT_CASES],
)
def test_covariate_effect_numbers(name, i, key, value, message):
    refused(mutate(model_dict(name), ("covariate_effects", i, key), value), message)


# ---- covariate effects over the validity box -----------------------------------


def linear_on_fanta_cl(slope):
    d = model_dict("fanta_2015")
    d["covariate_effects"][0] = {
        "parameter": "CL",
        "covariate": "weight",
        "model": "linear",
        "reference": 70,
        "slope": slope,
        "source": "test",
    }
    return d


def test_hinge_effect_negative_inside_validity():
    """Qh × (1 + slope (age - 60)) with slope -0.1 is negative from 70 y on, inside
    the model's validity range [18, 86] y: the worst point is named."""
    d = mutate(model_dict("perez_ruixo_2021"), ("covariate_effects", 3, "slope"), -0.1)
    refused(
        d,
        "[covariate_effects[3].slope] makes parameter 'Qh' negative (factor "
        "-1.6) at age = 86 y, inside the model's validity range [18, 86] y; it "
        "must stay finite and > 0 as the clearance of the flow from 'central' — "
        "check the slope and reference, or narrow [validity] age",
    )


def test_hinge_effect_within_validity_is_accepted():
    """The same effect reaching 0 only beyond the validity range loads (the run-time
    check covers patients simulated outside it)."""
    d = mutate(model_dict("perez_ruixo_2021"), ("covariate_effects", 3, "slope"), -0.03)
    assert model_from_dict(d).covariate_effects[3].coefficient == -0.03


def test_linear_effect_without_validity_range():
    """No [validity] range for weight: the plausible human range is used, and the
    fix asks for a validity range."""
    refused(
        linear_on_fanta_cl(-0.01),
        "[covariate_effects[0].slope] makes parameter 'CL' negative (factor -2.3) "
        "at weight = 400 kg, inside the plausible human range [0.3, 400] kg "
        "(weight has no [validity] range); it must stay finite and > 0 as the "
        "clearance of the flow from 'central' — declare [validity] weight = "
        "[low, high]",
    )


def test_linear_effect_with_validity_range_is_accepted():
    d = linear_on_fanta_cl(-0.01)
    d["validity"] = {"weight": [40, 150]}
    assert model_from_dict(d).validity["weight"] == (40.0, 150.0)


def test_linear_effect_zero_on_a_volume():
    """Exactly 0 at the edge of the range is refused for a volume."""
    d = model_dict("fanta_2015")
    d["validity"] = {"weight": [40, 100]}
    d["covariate_effects"][1] = {
        "parameter": "V1",
        "covariate": "weight",
        "model": "linear",
        "reference": 70,
        "slope": 1 / 30,
        "source": "test",
    }
    refused(
        d,
        "[covariate_effects[1].slope] makes parameter 'V1' zero (factor 0) at "
        "weight = 40 kg, inside the model's validity range [40, 100] kg",
    )


def test_exponential_effect_overflow():
    d = linear_on_fanta_cl(1e5)
    d["covariate_effects"][0]["model"] = "exponential"
    refused(
        d,
        "[covariate_effects[0].slope] makes parameter 'CL' non-finite (factor "
        "inf) at weight = ",
    )


def test_categorical_effect_pushes_fraction_above_one():
    """FRn 0.54 × 1.9 for Japanese subjects = 1.03: no logit exists."""
    d = mutate(model_dict("perez_ruixo_2021"), ("covariate_effects", 2, "factor"), 1.9)
    refused(
        d,
        "[covariate_effects[2].factor] makes fraction parameter 'FRn' range "
        "over [0.54, 1.026] (largest at japanese = 1) within the covariates' "
        "ranges; it must be strictly between 0 and 1 under its logit-normal "
        "variability",
    )


def test_categorical_effect_on_a_plain_fraction():
    d = model_dict("domino")
    d["covariates"]["female"] = {"unit": "0/1", "reference": 0}
    d["covariate_effects"] = [
        {
            "parameter": "F_IN",
            "covariate": "female",
            "model": "categorical",
            "reference": 1,
            "factor": 2.5,
            "source": "test",
        }
    ]
    refused(
        d,
        "[covariate_effects[0].factor] makes fraction parameter 'F_IN' range "
        "over [0.48, 1.2] (largest at female = 1) within the covariates' ranges; "
        "it must be between 0 and 1",
    )


# ---- correlations ------------------------------------------------------------


def test_correlation_with_a_zero_variance_partner():
    """Was a ZeroDivisionError: covariance / (omega_V1 × omega_CL) with omega 0."""
    d = mutate(model_dict("fanta_2015"), ("variability", "V1", "omega2"), 0.0)
    refused(
        d,
        "[correlations[0].parameters] names 'V1', whose inter-individual "
        "variance is 0 (it has only IOV or omega = 0), so it cannot be correlated",
    )


CORRELATION_CASES = [
    (
        "covariance",
        0.5,
        "[correlations[0].covariance] gives correlation 10.7 = 0.5 / "
        "(V1 omega × CL omega = 0.04673); a correlation lies in (-1, 1)",
    ),
    ("covariance", NAN, "[correlations[0].covariance] must be finite; got nan"),
    ("parameters", ["V1", "V1"], "[correlations[0].parameters] names 'V1' twice"),
    (
        "parameters",
        ["V1", "Q"],
        "[correlations[0].parameters] names 'Q', which has no [variability.Q]",
    ),
]


@pytest.mark.parametrize(
    "key,value,message",
    CORRELATION_CASES,
    ids=["covariance", "nan", "twice", "no variability"],
)
def test_correlation_rules(key, value, message):
    refused(mutate(model_dict("fanta_2015"), ("correlations", 0, key), value), message)


def test_correlation_given_as_rho():
    d = model_dict("fanta_2015")
    d["correlations"][0] = {
        "parameters": ["V1", "CL"],
        "correlation": 1.0,
        "source": "t",
    }
    refused(d, "[correlations[0].correlation] must lie in (-1, 1); got 1.0")


def test_repeated_correlation_pair():
    d = model_dict("fanta_2015")
    d["correlations"].append(
        {"parameters": ["CL", "V1"], "correlation": 0.1, "source": "t"}
    )
    refused(d, "[correlations[2].parameters] repeats the pair ['CL', 'V1']")


def test_correlations_must_make_a_positive_definite_matrix():
    """0.9, 0.9 and -0.9 between three parameters: each is a valid correlation, the
    matrix is not. The second already cannot hold with the first (b-c would need to
    be >= 0.62), which is where the loader stops."""
    d = model_dict("fanta_2015")
    d["correlations"] = [
        {"parameters": ["V1", "CL"], "correlation": 0.9, "source": "t"},
        {"parameters": ["V1", "VN"], "correlation": 0.9, "source": "t"},
        {"parameters": ["CL", "VN"], "correlation": -0.9, "source": "t"},
    ]
    err = refused(
        d,
        "[correlations[1]] makes the inter-individual covariance "
        "matrix of V1, CL, VN not positive definite (smallest eigenvalue ",
    )
    # the eigenvalue printed is the matrix's: an independent computation
    om = np.diag([0.084, 0.026, 0.040, 0.103])
    sd = np.sqrt(np.diag(om))
    om[0, 1] = om[1, 0] = 0.9 * sd[0] * sd[1]
    om[0, 2] = om[2, 0] = 0.9 * sd[0] * sd[2]
    shown = float(re.search(r"eigenvalue (\S+)\)", str(err)).group(1))
    assert shown == pytest.approx(np.linalg.eigvalsh(om)[0], rel=1e-2)
    assert shown < 0


def test_positive_definite_correlations_simulate():
    """A valid matrix loads and draws (the check agrees with the Cholesky factor
    Population.etas uses)."""
    d = model_dict("fanta_2015")
    d["correlations"].append(
        {"parameters": ["CL", "CLN"], "correlation": 0.5, "source": "t"}
    )
    m = model_from_dict(d)
    etas = ks.Population(200, seed=3).etas(m, np.arange(200))
    r = np.corrcoef(etas["CL"], etas["CLN"])[0, 1]
    assert 0.3 < r < 0.7


# ---- omega bounds (generated-input findings 6 and 7) ----------------------------

OMEGA_CASES = [
    # omega = 1e300: omega² overflowed (OverflowError) when etas were drawn
    (
        ("variability", "CL", "omega"),
        1e300,
        "[variability.CL.omega] gives an SD of eta (omega) of 1e+300, above 5, the "
        "largest accepted (a 148-fold spread at one SD, a log-normal CV of 2.7e+05); "
        "got 1e+300 — cv is a ratio (0.3 for 30 %), omega the SD of eta, omega2 its "
        "variance",
    ),
    (
        ("variability", "CL", "omega"),
        5.000001,
        "[variability.CL.omega] gives an SD of eta (omega) of 5, above 5",
    ),
    (
        ("variability", "CL", "omega2"),
        30.0,
        "[variability.CL.omega2] gives an SD of eta (omega) of 5.477, above 5",
    ),  # sqrt(30)
    (
        ("variability", "CL", "iov_omega"),
        6.0,
        "[variability.CL.iov_omega] gives an SD of eta (omega) of 6, above 5",
    ),
    # omega = 1e-300: omega² is 0, a singular matrix (LinAlgError at simulate)
    (
        ("variability", "V2", "omega"),
        1e-300,
        "[variability.V2.omega] gives an SD of eta (omega) of 1e-300, whose variance 0 "
        "underflows double precision (below 2.23e-308); got 1e-300 — write 0 for no "
        "variability",
    ),
    (
        ("variability", "V2", "omega2"),
        1e-310,
        "[variability.V2.omega2] gives an SD of eta (omega) of 1e-155, whose variance "
        "1e-310 underflows double precision",
    ),
]


@pytest.mark.parametrize(
    "path,value,message", OMEGA_CASES, ids=[f"{c[0][-1]}={c[1]}" for c in OMEGA_CASES]
)
def test_omega_bounds(path, value, message):
    d = model_dict("herd_2007")
    del d["variability"][path[1]]["omega"]
    refused(mutate(d, path, value), message)


@pytest.mark.parametrize(
    "key,value", [("omega", 5.0), ("omega", 1e-150), ("omega", 0.0), ("cv", 3.0)]
)
def test_omega_bounds_are_inclusive_and_draw(key, value):
    """omega = 5 (the bound), a tiny omega whose square is a normal double, and
    cv = 3 (the largest cv, omega = sqrt(ln 10) = 1.52) load and draw finite etas;
    each eta is omega × a standard normal, so |eta| < 10 omega."""
    d = model_dict("herd_2007")
    del d["variability"]["CL"]["omega"]
    d["variability"]["CL"][key] = value
    m = model_from_dict(d)
    omega = next(v.omega for v in m.variability if v.parameter == "CL")
    assert omega == pytest.approx(
        value if key == "omega" else math.sqrt(math.log1p(value**2))
    )
    eta = ks.Population(50, seed=1).etas(m, np.arange(50)).get("CL", np.zeros(50))
    assert np.isfinite(eta).all() and (np.abs(eta) <= 10 * omega).all()


def test_a_singular_omega_matrix_built_by_hand_is_named_at_simulate():
    """A Model altered past the loader (omega 1e-300: omega² = 0) gets a ValueError
    naming the parameters, not numpy's LinAlgError."""
    import dataclasses

    m = ks.load_model("herd_2007")
    var = tuple(
        dataclasses.replace(v, omega=1e-300) if v.parameter == "V2" else v
        for v in m.variability
    )
    m = dataclasses.replace(m, variability=var)
    with pytest.raises(
        ValueError,
        match=r"model 'herd_2007': the inter-individual "
        r"covariance matrix of V1, V2, CL, Q \(omega 0\.64, 1e-300, "
        r"0\.381, 0\.19 and the correlations\) cannot be factorised "
        r"to draw random effects \(Matrix is not positive definite\)",
    ):
        ks.Population(3, seed=1).etas(m, np.arange(3))


# ---- run time: individual parameters -------------------------------------------


def perez_covariates(age):
    age = np.asarray(age, dtype=float)
    return {
        "age": age,
        "weight": np.full(age.shape, 70.0),
        "asian": np.zeros(age.shape),
        "japanese": np.zeros(age.shape),
    }


def test_individual_negative_clearance_names_subject_and_covariate():
    """Qh × (1 - 0.0145 (age - 60)) < 0 at age 150 (outside the validity range)."""
    m = ks.load_model("perez_ruixo_2021")
    with pytest.raises(ValueError) as info:
        m.individual_parameters(perez_covariates([40.0, 150.0]), n=2)
    assert str(info.value) == (
        "individual parameter 'Qh' of subject 1 is -46.0998 L/h (1 of 2 subjects "
        "affected); it must be finite and > 0 as the clearance of the flow from "
        "'central'. It comes from typical value 151 L/h × hinge effect of age = 150 y "
        "(factor -0.305297); check the covariates given (age) against the model's "
        "validity ranges, or the model's covariate effects"
    )


def test_individual_overflowing_random_effect():
    """exp(800) overflows: reported as the parameter at fault, with no warning."""
    m = ks.load_model("perez_ruixo_2021")
    with pytest.raises(
        ValueError,
        match=r"individual parameter 'Vc' of subject 1 is "
        r"inf L \(1 of 2 subjects affected\); it must be finite and > 0 "
        r"as the volume of compartment 'central'\. It comes from "
        r"typical value 192 L × lognormal random effect eta = 800",
    ):
        m.individual_parameters(
            perez_covariates([40.0, 40.0]), etas={"Vc": np.array([0.0, 800.0])}, n=2
        )


def test_individual_values_pass_unchanged():
    """The check changes nothing for valid subjects: V1 = 0.3 L/kg... × weight."""
    m = ks.load_model("domino")
    p = m.individual_parameters({"weight": np.array([50.0, 100.0])}, n=2)
    np.testing.assert_allclose(p["V1"], m.parameters["V1"].value * np.array([50, 100]))


def test_route_fraction_sum_checked_per_subject():
    m = ks.load_model("perez_ruixo_2021")
    d = model_dict("perez_ruixo_2021")
    d["routes"]["intranasal"]["pathways"][1]["fraction"] = "Fgut"
    d["parameters"]["Fgut"]["value"] = 0.4
    m = model_from_dict(d)
    p = m.individual_parameters(perez_covariates([40.0, 40.0]), n=2)
    p["FRn"] = np.array([0.5, 0.7])  # as a random effect could make it
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the pathway fractions of route 'intranasal' add up to 1.1 > 1 for "
            "subject 1 (FRn 0.7 + Fgut 0.4): more than the whole dose would be "
            "absorbed"
        ),
    ):
        check_individual(m, p, perez_covariates([40.0, 40.0]))


def test_simulate_refuses_a_patient_the_model_turns_negative(tmp_path):
    """A hinge effect valid over the validity range [18, 86] y reaches 0 at 110 y;
    a 115-year-old patient (a plausible age, outside validity) is refused by
    simulate, naming the parameter and the covariate."""
    d = mutate(model_dict("perez_ruixo_2021"), ("covariate_effects", 3, "slope"), -0.02)
    p = tmp_path / "m.toml"
    p.write_text(dumps(d))
    m = ks.load_model(p)
    with (
        pytest.warns(ks.ValidityWarning),
        pytest.raises(
            ValueError,
            match=r"individual parameter 'Qh' of subject 0 "
            r"is -15\.1 L/h .* hinge effect of age = 115 y",
        ),
    ):
        ks.simulate(
            m,
            ks.Dose.bolus("28 mg", route="iv"),
            times=[0.0, 1.0],
            subjects=ks.Subjects(covariates={"age": 115.0}),
        )


# ---- magnitudes no pharmacokinetic model reaches --------------------------------

MAGNITUDE_CASES = [
    (
        "flint_2017",
        ("parameters", "Q", "value"),
        1e300,
        "[parameters.Q.value] must be within [1e-09, 1e+09] L/h as the clearance of "
        "the flow from 'central'; got 1e+300 L/h — check the value and its unit",
    ),
    (
        "herd_2007",
        ("parameters", "V2", "value"),
        1e-300,
        "[parameters.V2.value] must be within [1e-09, 1e+09] L as the volume of "
        "compartment 'peripheral'; got 1e-300 L",
    ),
    (
        "flint_2017",
        ("covariate_effects", 2, "reference"),
        1e300,
        "[covariate_effects[2].reference] must be a plausible weight, within "
        "[0.3, 400] kg; got 1e+300",
    ),
    (
        "elkomy_2015",
        ("covariate_effects", 1, "reference"),
        1e-300,
        "[covariate_effects[1].reference] must be a plausible weight, within "
        "[0.3, 400] kg; got 1e-300",
    ),
    (
        "fanta_2015",
        ("covariate_effects", 0, "exponent"),
        40.0,
        "[covariate_effects[0].exponent] makes parameter 'CL' range over [",
    ),
]


@pytest.mark.parametrize(
    "name,path,value,message",
    MAGNITUDE_CASES,
    ids=[f"{c[0]}-{c[1][-1]}={c[2]}" for c in MAGNITUDE_CASES],
)
def test_magnitudes(name, path, value, message):
    refused(mutate(model_dict(name), path, value), message)


def test_individual_magnitude():
    """exp(40) × 192 L is finite but beyond any volume: refused before the solver."""
    m = ks.load_model("perez_ruixo_2021")
    with pytest.raises(
        ValueError,
        match=r"individual parameter 'Vc' of subject 0 is "
        r"4\.5\d*e\+19 L \(1 of 1 subjects affected\); it must be "
        r"within \[1e-12, 1e\+12\] L as the volume of compartment "
        r"'central'",
    ):
        m.individual_parameters(
            perez_covariates([40.0]), etas={"Vc": np.array([40.0])}, n=1
        )


def test_unknown_reference_names_the_uncited_entry():
    """A renamed [[references]] key: the parameter citing the old key is named, and
    so is the entry nothing cites (the likely misspelling)."""
    d = mutate(model_dict("herd_2007"), ("references", 0, "key"), "zzz")
    refused(
        d,
        "[parameters.V1.reference] names an unknown reference 'herd2007' — "
        "references: opentiva, zzz; references[0] (key 'zzz') is cited by no "
        "parameter",
    )


# ---- load_model's argument (generated-input finding 12) --------------------------


@pytest.mark.parametrize(
    "arg,exc,message",
    [
        (
            "",
            FileNotFoundError,
            r"^model must name a bundled model or a \.toml file; got "
            r"the empty name ''\. Bundled models: clements_nimmo_1981, domino",
        ),
        (
            ".",
            FileNotFoundError,
            r"^model '\.' is a directory, not a model file; pass a "
            r"path to a \.toml model file or a bundled model name "
            r"\(clements_nimmo_1981, ",
        ),
        (
            5,
            TypeError,
            r"^model must be a bundled model name such as 'domino' or a path to "
            r"a \.toml model file; got int 5",
        ),
    ],
)
def test_load_model_names_a_bad_argument(arg, exc, message):
    """'' and '.' raised a bare IsADirectoryError (Path('') is '.')."""
    with pytest.raises(exc, match=message):
        ks.load_model(arg)


def test_load_model_directory_named_toml_and_bundled_name_beside_a_directory(
    tmp_path, monkeypatch
):
    """A directory called x.toml is named as a directory; a directory called
    'domino' in the working directory does not hide the bundled model."""
    (tmp_path / "x.toml").mkdir()
    (tmp_path / "domino").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^model 'x\.toml' is a directory"):
        ks.load_model("x.toml")
    assert ks.load_model("domino").path == models_dir() / "domino.toml"


# ---- issue 16 review, item 1: bounds the loader missed ---------------------------


@pytest.mark.parametrize(
    "name,param,value,unit,got",
    [
        ("simons_2022", "F2", 2.5, "1", "2.5"),
        ("simons_2022", "F2", 250, "%", "250 %"),
        ("simons_2022", "F1", 26.3, "1", "26.3"),  # a percentage written with unit '1'
        ("domino", "F_IN", 50, "1", "50"),
    ],
)
def test_fraction_above_one_is_bounded(name, param, value, unit, got):
    """above_one lets a published apparent fraction exceed 1, not any number: F_IN
    = 50 (5000 %) loaded and put 50 times the dose in the body."""
    d = model_dict(name)
    d["parameters"][param].update(value=value, unit=unit, above_one="why")
    refused(
        d,
        f"[parameters.{param}.value] is a fraction marked above_one and must "
        f"be at most 2 (an apparent 200 %); got {got} — a fraction is written "
        f"0.45 (unit '1') or 45 (unit '%')",
    )


def test_fraction_above_one_bound_is_inclusive():
    d = model_dict("simons_2022")
    d["parameters"]["F2"].update(value=200, unit="%")
    assert model_from_dict(d).parameters["F2"].value == pytest.approx(2.0)


@pytest.mark.parametrize("name,i", [("fanta_2015", 0), ("perez_ruixo_2021", 0)])
def test_repeated_covariate_effect_is_refused(name, i):
    """The same effect twice (parameter, covariate, model and reference) multiplied
    the parameter by its factor twice, silently."""
    d = model_dict(name)
    e = dict(d["covariate_effects"][i])
    j = len(d["covariate_effects"])
    d["covariate_effects"].append(e)
    kind = e["model"]
    refused(
        d,
        rf"[covariate_effects[{j}]] repeats covariate_effects[{i}]: both are "
        rf"a {kind} effect of {e['covariate']} on {e['parameter']!r} with "
        rf"reference {e.get('reference', 1):g}, so the effect would be applied "
        rf"twice — remove one of covariate_effects[{i}] and "
        rf"covariate_effects[{j}]",
    )


def test_same_covariate_with_another_reference_is_accepted():
    """Two hinges of one covariate at different knots are a piecewise effect, not a
    repeat."""
    d = model_dict("fanta_2015")
    e = dict(d["covariate_effects"][0], reference=80)
    d["covariate_effects"].append(e)
    m = model_from_dict(d)
    assert [x.reference for x in m.covariate_effects[-2:]] == [70.0, 80.0]


@pytest.mark.parametrize(
    "make,key,unit,dimension",
    [
        (
            lambda u: mutate(
                model_dict("fanta_2015"), ("parameters", "ka_PO", "unit"), u
            ),
            "parameters.ka_PO.unit",
            "1/h/kg",
            "rate constant",
        ),
        (
            lambda u: mutate(with_lag(5), ("parameters", "tlag", "unit"), u),
            "parameters.tlag.unit",
            "min/kg",
            "time",
        ),
        (
            lambda u: mutate(model_dict("domino"), ("parameters", "F_IN", "unit"), u),
            "parameters.F_IN.unit",
            "1/kg",
            "dimensionless",
        ),
    ],
)
def test_per_kg_only_for_volumes_and_clearances(make, key, unit, dimension):
    refused(
        make(unit),
        f"[{key}] unit {unit!r} is a {dimension} per kg of body "
        f"weight; only volumes and clearances scale with weight — drop the /kg",
    )
