"""Covariate draws with heights conditioned on given weights.

``Population.covariates_for`` for n patients (smoke 1 000, full 1 000 000) whose
weights (45-150 kg) are given without heights: each height is drawn from its
distribution given the weight by numerical inversion of the conditional CDF.
Baseline, in the same run: the same population with nothing given (heights drawn
from the closed-form truncated normal). No compilation is involved (numpy only).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import ketasim as ks


@pytest.mark.parametrize("n", [1_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_heights_given_weights(benchmark, n):
    w = np.linspace(45.0, 150.0, n)
    pop = ks.Population(n, seed=1, covariates={"weight": w})
    cov = benchmark.pedantic(pop.covariates_for, args=(pop.subjects,), rounds=3)
    free = ks.Population(n, seed=1)
    t0 = time.perf_counter()
    free.covariates_for(free.subjects)
    base_s = time.perf_counter() - t0

    np.testing.assert_array_equal(cov["weight"], w)
    assert cov["bmi"].min() >= 17.0 and cov["bmi"].max() <= 45.0
    benchmark.extra_info.update(
        {"patients": n, "nothing_given_s": base_s, "what": "heights given weights"}
    )
    if benchmark.stats is not None:
        benchmark.extra_info["ratio_over_nothing_given"] = (
            benchmark.stats.stats.median / base_s
        )
