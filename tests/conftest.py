import os
from pathlib import Path

import numpy as np
import pytest

# ketasim writes the module files of its cached ODE kernels to KETASIM_CACHE_DIR:
# keep the test run's inside the checkout (git-ignored), not in the user's cache
os.environ.setdefault(
    "KETASIM_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".ketasim-cache")
)

# The Domino base model (models/domino.toml, opentiva Domino set: V1 in L/kg, rate
# constants in 1/min; design_rate_matrix gives them per hour), typed in here
# independently of the model file on purpose.
V1_PER_KG = 0.063
K_PER_MIN = {"k10": 0.4381, "k12": 0.5921, "k21": 0.2470, "k13": 0.5900, "k31": 0.0146}


def design_rate_matrix():
    k = {n: v * 60.0 for n, v in K_PER_MIN.items()}
    return np.array(
        [
            [-(k["k10"] + k["k12"] + k["k13"]), k["k21"], k["k31"]],
            [k["k12"], -k["k21"], 0.0],
            [k["k13"], 0.0, -k["k31"]],
        ]
    )


@pytest.fixture
def rate_matrix():
    return design_rate_matrix()
