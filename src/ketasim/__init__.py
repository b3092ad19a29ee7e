"""ketasim: fast population pharmacokinetics of ketamine, esketamine and metabolites.

The public surface is re-exported here; everything else is private. Importing ketasim
compiles nothing: numba kernels compile (or load from numba's cache) on first use.
"""

__version__ = "0.1.0"

from . import accessor as _accessor  # noqa: F401  (registers ds.pk)
from ._analytes import analyte_name
from ._effect_metrics import discharge_time, effect, effect_time_above, peak_effect
from ._warn import ModelLimitWarning
from .dosing import Dose, DoseError, Regimen
from .estimation import estimate, forecast, next_dose
from .metrics import metrics, pta, summary
from .model import Model
from .modelfile import (
    DEFAULT_MODEL,
    ModelFileError,
    cite,
    list_models,
    load_model,
    model_from_dict,
)
from .nonmem import read_nonmem, simulate_nonmem, write_nonmem
from .options import ODE, Exact, Metrics, Subjects, Trajectories
from .planning import (
    DoseFinding,
    Target,
    TCIPlan,
    elasticities,
    find_dose,
    plot_tornado,
    sweep,
    tci,
    tci_performance,
    tornado,
)
from .population import Population
from .protocols import (
    boosters,
    clinic_course,
    esketamine_induction,
    home_course,
    six_infusion_course,
)
from .results import ScenarioResults, open_results, save
from .routes import Absorption, route_table
from .scenario import Scenario, compare, run_scenarios
from .simulate import GridWarning, SolveError, ValidityWarning, grid, simulate
from .uncertainty import draw_typical_values, simulate_trials, trial_ci
from .units import UnitError
from .validation import validate

__all__ = [
    "DEFAULT_MODEL",
    "ODE",
    "Absorption",
    "Dose",
    "DoseError",
    "DoseFinding",
    "Exact",
    "GridWarning",
    "Metrics",
    "Model",
    "ModelFileError",
    "ModelLimitWarning",
    "Population",
    "Regimen",
    "Scenario",
    "ScenarioResults",
    "SolveError",
    "Subjects",
    "TCIPlan",
    "Target",
    "Trajectories",
    "UnitError",
    "ValidityWarning",
    "__version__",
    "analyte_name",
    "boosters",
    "cite",
    "clinic_course",
    "compare",
    "discharge_time",
    "draw_typical_values",
    "effect",
    "effect_time_above",
    "elasticities",
    "esketamine_induction",
    "estimate",
    "find_dose",
    "forecast",
    "grid",
    "home_course",
    "list_models",
    "load_model",
    "metrics",
    "model_from_dict",
    "next_dose",
    "open_results",
    "peak_effect",
    "plot_tornado",
    "pta",
    "read_nonmem",
    "route_table",
    "run_scenarios",
    "save",
    "simulate",
    "simulate_nonmem",
    "simulate_trials",
    "six_infusion_course",
    "summary",
    "sweep",
    "tci",
    "tci_performance",
    "tornado",
    "trial_ci",
    "validate",
    "write_nonmem",
]
