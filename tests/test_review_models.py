"""Review checks of the one-compartment summaries added this session against the
numbers of their cited abstracts, by closed forms written here.

kamp_2020_meta: Kamp 2020 (Anesthesiology 133:1192) abstract, weighted mean
V 252 L/70 kg, CL 79 L/h at 70 kg.
hasan_2021_s / hasan_2021_r: Hasan 2021 (Anesthesiology 135:326) abstract, S/R:
Vss 6.6 / 5.6 L/kg, metabolic clearance 1620 / 1530 mL/min, bioavailability of
the 40 mg prolonged-release tablet 15 / 19 %; doses racemic (half to each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ketasim as ks

MW_KETAMINE = 237.73  # g/mol, free base C13H16ClNO
ADULT = ks.Subjects(covariates={"weight": 70.0, "age": 30.0})


def _one(model, regimen, times):
    return ks.simulate(model, regimen, times=times, subjects=ADULT)


def test_kamp_bolus_is_dose_over_v_decaying_with_cl_over_v():
    t = np.array([0.0, 0.5, 1.0, 2.2, 6.0, 24.0])
    ds = _one("kamp_2020_meta", ks.Dose.bolus("10 mg"), t)
    c = ds.concentration.sel(analyte="ketamine").values[0]
    expected = 10.0 / 252.0 * np.exp(-79.0 / 252.0 * t) * 1000.0  # ng/mL
    np.testing.assert_allclose(c, expected, rtol=1e-9)
    assert ds.concentration.attrs["units"] == "ng/mL"


@pytest.mark.parametrize(
    "model, analyte, cl_ml_min, v_l_kg, f",
    [
        ("hasan_2021_s", "s_ketamine", 1620.0, 6.6, 0.15),
        ("hasan_2021_r", "r_ketamine", 1530.0, 5.6, 0.19),
    ],
)
def test_hasan_iv_infusion_and_tablet_closed_forms(
    model, analyte, cl_ml_min, v_l_kg, f
):
    cl = cl_ml_min * 60.0 / 1000.0  # L/h
    v = v_l_kg * 70.0  # L
    k = cl / v
    # 5 mg racemic over 30 min (the study's IV dose): 2.5 mg of each enantiomer
    t = np.array([0.25, 0.5, 1.0, 4.0, 12.0])
    ds = _one(model, ks.Dose.infusion("5 mg", duration="30 min", drug="ketamine"), t)
    c = ds.concentration.sel(analyte=analyte).values[0]
    rate = 2.5 / 0.5  # mg/h of this enantiomer
    during = rate / cl * (1 - np.exp(-k * t))
    after = rate / cl * (1 - math.exp(-k * 0.5)) * np.exp(-k * (t - 0.5))
    np.testing.assert_allclose(c, np.where(t <= 0.5, during, after) * 1000, rtol=1e-9)
    # molar units by the molecular weight (ng/mL / g/mol * 1000 = nmol/L)
    molar = ds.pk.molar().sel(analyte=analyte).values[0]
    np.testing.assert_allclose(molar, c / MW_KETAMINE * 1000, rtol=1e-12)
    assert ds.pk.molar().attrs["units"] == "nmol/L"
    # the whole-course AUC of the 40 mg tablet: F * 20 mg / CL (to 1e-3 at 20 d)
    grid = ks.grid("20 d", "10 min")
    tab = _one(model, ks.Dose("40 mg", route="oral", drug="ketamine"), grid)
    m = ks.metrics(tab, "course")
    auc = float(m.auc.sel(analyte=analyte).squeeze())
    assert m.auc.attrs["units"] == "ng*h/mL"
    assert auc == pytest.approx(f * 20.0 / cl * 1000, rel=1e-3)


def test_hasan_a_racemic_dose_gives_half_an_enantiomer_dose():
    # drug="ketamine": half of the dose is S; the default (the model's own drug,
    # esketamine) is all S: the AUCs differ by exactly 2 (dose linearity)
    t = ks.grid("3 d", "5 min")
    rac = ks.metrics(_one("hasan_2021_s", ks.Dose.bolus("10 mg", drug="ketamine"), t))
    own = ks.metrics(_one("hasan_2021_s", ks.Dose.bolus("10 mg"), t))
    assert float(own.auc.squeeze()) == pytest.approx(2 * float(rac.auc.squeeze()))
    cl = 1620.0 * 60 / 1000
    assert float(rac.auc.squeeze()) == pytest.approx(5.0 / cl * 1000, rel=1e-3)
