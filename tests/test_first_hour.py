"""Inputs a new user writes in the first hour, found by walking the README and the
user guide: each is refused with a message saying what was wrong, what was received
and how to fix it, instead of giving a silently wrong number."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ketasim as ks
from ketasim.plotting import plot_bands


@pytest.fixture(scope="module")
def course():
    """20 patients of the default model, two sessions (small and quick)."""
    return ks.simulate(
        ks.DEFAULT_MODEL,
        ks.six_infusion_course(sessions=2),
        population=ks.Population(20, seed=3),
        times=ks.grid("4 d", "10 min"),
    )


# ---- percentiles: in percent, and (low, 50, high) where labelled as such -----------
def test_summary_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.lognormal(4, 0.3, (200, 2)),
        dims=("subject", "session"),
        attrs={"units": "ng/mL"},
    )
    got = ks.summary(da, q=(10, 50, 90))
    want = np.percentile(da.values, [10, 50, 90], axis=0)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)
    assert list(got["quantile"].values) == [10, 50, 90]
    assert got.attrs["units"] == "ng/mL"


@pytest.mark.parametrize(
    "q, error, match",
    [
        ((0.05, 0.5, 0.95), ValueError, r"q is in percent \(0-100\); got \(0\.05, "),
        ((5, 150), ValueError, r"percentiles from 0 to 100 .*got 150 in \(5, 150\)"),
        ((5, float("nan")), ValueError, r"percentiles from 0 to 100 .*got nan"),
        ("5,50,95", TypeError, r"q must be a sequence of percentiles .*got '5,50,95'"),
        (50, TypeError, r"q must be a sequence of percentiles .*got 50"),
        ((), ValueError, r"at least one percentile; got \(\)"),
        ((5, "50"), TypeError, r"q must hold numbers"),
    ],
)
def test_summary_refuses_fractions_and_bad_percentiles(q, error, match):
    da = xr.DataArray(np.arange(10.0), dims="subject", attrs={"units": "h"})
    with pytest.raises(error, match=match):
        ks.summary(da, q=q)


def test_fractions_message_says_how_to_fix():
    da = xr.DataArray(np.arange(10.0), dims="subject", attrs={"units": "h"})
    with pytest.raises(ValueError, match=r"multiply by 100: \(5\.0, 50\.0, 95\.0\)"):
        ks.summary(da, q=(0.05, 0.5, 0.95))


def test_compare_band_is_the_percentiles_it_names(course):
    table = ks.compare(course, per="session", q=(10, 50, 90))
    assert "median [P10, P90]" in str(table)
    m = ks.metrics(course, "session")
    cmax = m.cmax.isel(session=0).sel(analyte="ketamine").values
    got = table.to_dataset()["value"].isel(scenario=0, metric=0).values
    np.testing.assert_allclose(got, np.percentile(cmax, [10, 50, 90]), rtol=1e-12)


@pytest.mark.parametrize(
    "q",
    [(50, 5, 95), (5, 50, 95, 99), (5, 95), (5, 40, 95), (0.05, 0.5, 0.95)],
)
def test_compare_refuses_a_band_it_would_mislabel(course, q):
    with pytest.raises(ValueError, match=r"^q (must be three|is in percent)"):
        ks.compare(course, q=q)


def test_plot_refuses_a_band_it_would_mislabel(course):
    with pytest.raises(ValueError, match=r"q must be three percentiles \(low, 50, "):
        plot_bands(course, q=(50, 5, 95))
