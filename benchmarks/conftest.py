"""Full-size benchmarks are marked ``slow`` and skipped unless ``-m slow`` is given
or KETASIM_FULL_BENCH=1; the small-size smoke of every benchmark always runs."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    if "slow" in markexpr or os.environ.get("KETASIM_FULL_BENCH") == "1":
        return
    skip = pytest.mark.skip(reason="full size: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
