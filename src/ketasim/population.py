"""Virtual populations: covariates, inter-individual and inter-occasion variability.

Random numbers are counter-based: the k-th standard normal of subject i in stream
``s`` is a pure function of (seed, s, i, k). A SplitMix64 output mix of the counter,
keyed by ``numpy.random.SeedSequence(seed)``, gives a uniform that the inverse normal
CDF maps to N(0, 1). So one seed gives identical patients for any thread count, chunk
size or Dask partitioning, subject 17 is the same patient in a population of 100 or
1 000 000, and a million patients take well under a second (a Generator per subject
costs ~13 µs here, 13 s per million).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .model import KNOWN_COVARIATES, Model

__all__ = ["Population"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
STREAMS = {"covariates": 1, "iiv": 2, "iov": 3, "residual": 4, "uncertainty": 5}
_MAX_DRAWS = 1 << 24


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def normals(
    seed: int, stream: str, subjects: np.ndarray, ndraws: int, offset: int = 0
) -> np.ndarray:
    """Standard normals (len(subjects), ndraws): draw ``offset + k`` of each subject.

    Deterministic in (seed, stream, subject index, draw index) only."""
    from scipy.special import ndtri  # here, not at import: scipy.special takes 0.15 s

    return ndtri(uniforms(seed, stream, subjects, ndraws, offset))


def uniforms(
    seed: int, stream: str, subjects: np.ndarray, ndraws: int, offset: int = 0
) -> np.ndarray:
    key = np.random.SeedSequence([int(seed), STREAMS[stream]]).generate_state(
        1, np.uint64
    )[0]
    subj = np.asarray(subjects, dtype=np.uint64)[:, None]
    draw = np.arange(offset, offset + ndraws, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        ctr = subj * np.uint64(_MAX_DRAWS) + draw + np.uint64(1)
        z = _mix(key + ctr * _GAMMA)
    # 53 random bits -> (0, 1), never 0 or 1, so ndtri stays finite
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _truncnorm(u, mean, sd, lo, hi):
    from scipy.special import ndtr, ndtri

    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(a + u * (b - a))


@dataclass(frozen=True)
class Population:
    """``n`` virtual patients drawn reproducibly from ``seed``.

    Parameters
    ----------
    n : int
        Number of patients.
    seed : int
        One seed for everything random (covariates, IIV, IOV, residual error).
    covariates : mapping, optional
        A table of covariates (name -> array of length ``n``, plain numbers): weight
        in kg, age in years, height in cm, bmi in kg/m², female/asian/japanese
        exactly 0 or 1. Finite and humanly plausible (age 0–120 y, height
        30–250 cm, weight 0.3–400 kg, BMI 8–100 kg/m²), else an error naming the
        covariate and the patient. Missing ones are drawn from the adult
        distribution below; weight missing but height or BMI given is BMI ×
        height². Use it to supply a real cohort. Children (age under 18 y, from
        the table or the ``age`` range) need weight, or height and BMI, in the
        table: the adult distribution does not describe them, and their drawn
        (adult) height and BMI are NaN, unknown, unless the table gives them.
    female : float
        Proportion of women (adult distribution), in [0, 1].
    age : (float, float)
        Age range in years, 0 <= low <= high <= 120; ages are uniform on it. A
        range reaching below 18 y is refused unless ``covariates`` gives weight
        (or height and BMI) for every patient: sizes are drawn for adults only.
    asian, japanese : float
        Proportions flagged Asian / Japanese (Japanese implies Asian), in [0, 1].
    iiv, iov : bool
        Draw inter-individual / inter-occasion random effects (False gives
        typical-value patients differing only by covariates). Booleans only:
        ``iiv="no"`` is an error, not a true value. ``simulate`` refuses
        ``iiv=True`` on a model without inter-individual variability (its
        patients would be identical apart from their covariates): say
        ``iiv=False`` there.

    Notes
    -----
    The adult distribution is a modelling choice meant to be realistic, not a survey:
    height normal by sex (men 176 ± 7 cm, women 163 ± 6.5 cm, truncated to
    145–205 cm), body-mass index log-normal (median 25.5 kg/m², CV 17 %, truncated to
    17–45), weight = BMI × height², so weight correlates with sex and height.
    There is no distribution for children: drawing their sizes from growth charts
    (weight and height for age and sex) would need a verified source, which
    ketasim does not have yet, so a paediatric cohort's weights come from the
    ``covariates`` table.

    Examples
    --------
    >>> pop = Population(1000, seed=1)
    >>> cov = pop.covariates_for(range(3))
    >>> sorted(cov)
    ['age', 'asian', 'bmi', 'female', 'height', 'japanese', 'weight']
    """

    n: int
    seed: int
    covariates: Mapping[str, np.ndarray] | None = field(default=None, repr=False)
    female: float = 0.5
    age: tuple[float, float] = (18.0, 65.0)
    asian: float = 0.0
    japanese: float = 0.0
    iiv: bool = True
    iov: bool = True
    offset: int = 0

    def __post_init__(self) -> None:
        from ._validate import (
            COVARIATE_RANGES,
            check_bool,
            check_derived_weight,
            check_proportion,
            covariate_values,
            finite_number,
            is_table,
            is_whole,
        )

        if not is_whole(self.n) or self.n < 1:
            raise ValueError(f"n must be a whole number >= 1; got {self.n!r}")
        if not is_whole(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0; got {self.seed!r}")
        if not is_whole(self.offset) or self.offset < 0:
            raise ValueError(f"offset must be a whole number >= 0; got {self.offset!r}")
        for name in ("female", "asian", "japanese"):
            object.__setattr__(self, name, check_proportion(getattr(self, name), name))
        if self.japanese > self.asian and self.japanese > 0:
            raise ValueError(
                f"japanese ({self.japanese}) cannot exceed asian "
                f"({self.asian}): Japanese patients are flagged Asian too"
            )
        if not isinstance(self.age, tuple | list) or len(self.age) != 2:
            raise TypeError(
                f"age must be a (low, high) range in years such as "
                f"(18, 65); got {self.age!r}"
            )
        lo, hi = (finite_number(v, f"age[{i}]") for i, v in enumerate(self.age))
        amax = COVARIATE_RANGES["age"][1]
        if not 0 <= lo <= hi <= amax:
            raise ValueError(
                f"age must be (low, high) years with 0 <= low <= high <= "
                f"{amax:g}; got {self.age!r}"
            )
        object.__setattr__(self, "age", (lo, hi))
        for name in ("iiv", "iov"):  # Population(iiv="no") must not mean yes
            object.__setattr__(self, name, check_bool(getattr(self, name), name))
        if self.covariates is not None:
            if not is_table(self.covariates):
                raise TypeError(
                    f"covariates must be a mapping (name -> array of "
                    f"{self.n} values), e.g. a dict or a DataFrame's "
                    f"columns; got {type(self.covariates).__name__}"
                )
            table = {}
            for name, v in dict(self.covariates).items():
                if name not in KNOWN_COVARIATES:
                    raise ValueError(
                        f"unknown covariate {name!r}; known covariates: "
                        f"{', '.join(KNOWN_COVARIATES)}"
                    )
                a = covariate_values(name, v)
                if a.shape != (self.n,):
                    raise ValueError(
                        f"covariate {name!r} needs {self.n} values (one "
                        f"per patient); got shape {a.shape}"
                    )
                table[name] = a
            if "weight" not in table and {"height", "bmi"} <= set(table):
                check_derived_weight(table["bmi"] * (table["height"] / 100.0) ** 2)
            object.__setattr__(self, "covariates", table)
        self._check_children()

    def _check_children(self) -> None:
        """Refuse children without a weight: the drawn sizes are adults'
        (a 3-year-old would weigh 47-119 kg, and a mg/kg dose follow)."""
        from ._validate import ADULT_AGE

        table = self.covariates or {}
        if "weight" in table or {"height", "bmi"} <= set(table):
            return
        fix = (
            "give each patient's weight in kg (or height in cm and bmi) in the "
            "covariates table, e.g. Population(n, seed, covariates={'weight': "
            "..., 'age': ...}) with arrays of n values; ketasim draws adult sizes "
            "only (no verified growth charts yet)"
        )
        if "age" in table:
            young = table["age"] < ADULT_AGE
            if young.any():
                i = int(np.argmax(young))
                raise ValueError(
                    f"covariates['age'] has children (patient {i} is "
                    f"{table['age'][i]:g} y, under {ADULT_AGE:g}) but the table "
                    f"gives no weight, so they would get adult weights drawn from "
                    f"the adult height and BMI distribution: {fix}"
                )
        elif self.age[0] < ADULT_AGE:
            raise ValueError(
                f"age range {self.age[0]:g}-{self.age[1]:g} y reaches below "
                f"{ADULT_AGE:g} y, but children would get adult weights (drawn from "
                f"the adult height and BMI distribution): {fix}, or an adult age "
                f"range such as age=(18, 65)"
            )

    @property
    def subjects(self) -> np.ndarray:
        """Subject indices: the random streams are keyed by these."""
        return np.arange(self.offset, self.offset + self.n)

    def subset(self, start: int, stop: int) -> Population:
        """Patients ``start .. stop-1`` of this population, the same patients (same
        random streams): how Dask chunks and metrics-only chunks split a run."""
        if not 0 <= start < stop <= self.n:
            raise ValueError(
                f"subset needs 0 <= start < stop <= {self.n}; got {start}, {stop}"
            )
        table = (
            None
            if self.covariates is None
            else {k: v[start:stop] for k, v in self.covariates.items()}
        )
        return Population(
            stop - start,
            self.seed,
            table,
            self.female,
            self.age,
            self.asian,
            self.japanese,
            self.iiv,
            self.iov,
            self.offset + start,
        )

    def covariates_for(
        self, subjects: Sequence[int] | np.ndarray
    ) -> dict[str, np.ndarray]:
        """Covariates of the given subject indices (drawn, or from the table)."""
        from ._validate import ADULT_AGE

        idx = np.asarray(subjects, dtype=np.int64)
        u = uniforms(self.seed, "covariates", idx, 6)
        female = (u[:, 0] < self.female).astype(float)
        height = np.where(
            female == 1.0,
            _truncnorm(u[:, 1], 163.0, 6.5, 145.0, 205.0),
            _truncnorm(u[:, 1], 176.0, 7.0, 145.0, 205.0),
        )
        sd = np.sqrt(np.log1p(0.17**2))
        bmi = np.exp(_truncnorm(u[:, 2], np.log(25.5), sd, np.log(17.0), np.log(45.0)))
        lo, hi = self.age
        out = {
            "female": female,
            "height": height,
            "bmi": bmi,
            "weight": bmi * (height / 100.0) ** 2,
            "age": lo + (hi - lo) * u[:, 3],
            "japanese": (u[:, 4] < self.japanese).astype(float),
        }
        # Japanese patients are Asian: draw Asian given not Japanese
        rest = (self.asian - self.japanese) / max(1e-300, 1.0 - self.japanese)
        out["asian"] = np.maximum(out["japanese"], (u[:, 5] < rest).astype(float))
        if self.covariates is not None:
            for name, v in self.covariates.items():
                out[name] = v[idx - self.offset]
            given = set(self.covariates)
            # a child's height and BMI from the adult distribution would be
            # wrong numbers on the result: unknown (NaN) unless the table has them
            child = out["age"] < ADULT_AGE
            if child.any():
                for name in ("height", "bmi"):
                    if name not in given:
                        out[name] = np.where(child, np.nan, out[name])
            if "weight" in given and "bmi" not in given:
                out["bmi"] = out["weight"] / (out["height"] / 100.0) ** 2
            elif "weight" not in given and given & {"height", "bmi"}:
                # weight = BMI x height^2 with the table's height or BMI, not the
                # drawn ones (the drawn weight would contradict the table)
                out["weight"] = out["bmi"] * (out["height"] / 100.0) ** 2
        return out

    def etas(
        self, model: Model, subjects: Sequence[int] | np.ndarray
    ) -> dict[str, np.ndarray]:
        """Inter-individual random effects per parameter (correlated as the model
        says), shape (len(subjects),)."""
        idx = np.asarray(subjects, dtype=np.int64)
        var = [v for v in model.variability if v.omega > 0]
        if not self.iiv or not var:
            return {}
        z = normals(self.seed, "iiv", idx, len(var))
        L = _cholesky(model, var)
        eta = z @ L.T
        return {v.parameter: eta[:, i] for i, v in enumerate(var)}

    def iov_etas(
        self, model: Model, subjects: Sequence[int] | np.ndarray, n_occasions: int
    ) -> dict[str, np.ndarray]:
        """Inter-occasion random effects, shape (len(subjects), n_occasions).

        Draws are laid out occasion by occasion (draw ``m * len(var) + i`` for
        occasion m, variable i), so a patient's first sessions get the same effects
        whether or not more sessions follow: a course and the same course with
        boosters differ only by the boosters."""
        idx = np.asarray(subjects, dtype=np.int64)
        var = [v for v in model.variability if v.iov_omega > 0]
        if not self.iov or not var:
            return {}
        z = normals(self.seed, "iov", idx, len(var) * n_occasions).reshape(
            idx.size, n_occasions, len(var)
        )
        return {v.parameter: z[:, :, i] * v.iov_omega for i, v in enumerate(var)}

    def check_validity(self, model: Model, cov: Mapping[str, np.ndarray]) -> list[str]:
        """Messages for covariates outside the model's validity ranges."""
        return validity_messages(model, cov)


def validity_messages(model: Model, cov: Mapping[str, np.ndarray]) -> list[str]:
    """Messages for covariates outside the ranges ``model`` was estimated on."""
    msgs = []
    for name, (lo, hi) in model.validity.items():
        if name not in cov:
            continue
        v = np.asarray(cov[name], dtype=float)
        out = (v < lo) | (v > hi)
        if out.any():
            msgs.append(
                f"{int(out.sum())} of {v.size} patients have {name} "
                f"outside [{lo:g}, {hi:g}] {KNOWN_COVARIATES[name]}, the "
                f"range model {model.id!r} was estimated on (observed "
                f"{v.min():.3g}-{v.max():.3g})"
            )
    from .bodysize import unranged_weight_message

    msg = unranged_weight_message(model, cov)  # weight-scaled, no weight range
    if msg:
        msgs.append(msg)
    return msgs


def _cholesky(model: Model, var) -> np.ndarray:
    """Cholesky factor of the IIV covariance matrix of ``var``. The model-file
    loader checks that it exists; a Model built or altered otherwise gets a
    ValueError naming the parameters, not numpy's bare LinAlgError."""
    names = ", ".join(v.parameter for v in var)
    try:
        with np.errstate(over="raise", invalid="raise"):
            L = np.linalg.cholesky(_omega_matrix(model, var))
    except (np.linalg.LinAlgError, OverflowError, FloatingPointError) as exc:
        raise ValueError(
            f"model {model.id!r}: the inter-individual covariance matrix of {names} "
            f"(omega {', '.join(f'{v.omega:.3g}' for v in var)} and the "
            f"correlations) cannot be factorised to draw random effects ({exc}); "
            f"each omega must be finite and > 0 with omega² representable, and the "
            f"correlations must hold together"
        ) from None
    return L


def _omega_matrix(model: Model, var) -> np.ndarray:
    names = [v.parameter for v in var]
    om = np.diag([v.omega**2 for v in var])
    sd = {v.parameter: v.omega for v in var}
    for a, b, rho in model.correlations:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            om[i, j] = om[j, i] = rho * sd[a] * sd[b]
    return om
