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

import contextvars
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
# set while subset() builds a chunk: the whole population has warned already
_IN_SUBSET = contextvars.ContextVar("ketasim_population_subset", default=False)


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


#: The adult distribution (see ``Population``): height in cm, normal by sex
#: (female flag -> (mean, sd)), truncated to _HEIGHT_RANGE; log BMI (kg/m²) normal,
#: median 25.5, CV 17 %, truncated to 17-45, independent of sex and height.
_HEIGHT = {0: (176.0, 7.0), 1: (163.0, 6.5)}
_HEIGHT_RANGE = (145.0, 205.0)
_LOG_BMI = np.log(25.5)
_LOG_BMI_SD = np.sqrt(np.log1p(0.17**2))
_LOG_BMI_RANGE = (np.log(17.0), np.log(45.0))
#: an adult BMI (kg/m²) outside this range is implausible: a ValidityWarning
PLAUSIBLE_ADULT_BMI = (15.0, 60.0)
_GRID = 65  # points of the conditional height density (spacing <= 0.94 cm)


def height_interval(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights (cm) the adult distribution allows for ``weight`` (kg): height in
    145-205 cm and BMI = weight / height² in 17-45 kg/m². Where no height does
    (weight under 17 x 1.45² = 35.7 kg or over 45 x 2.05² = 189.1 kg), the BMI
    truncation is dropped: 145-205 cm."""
    w = np.asarray(weight, dtype=float)
    lo = np.maximum(_HEIGHT_RANGE[0], 100.0 * np.sqrt(w / np.exp(_LOG_BMI_RANGE[1])))
    hi = np.minimum(_HEIGHT_RANGE[1], 100.0 * np.sqrt(w / np.exp(_LOG_BMI_RANGE[0])))
    empty = ~(lo < hi)
    return np.where(empty, _HEIGHT_RANGE[0], lo), np.where(empty, _HEIGHT_RANGE[1], hi)


def log_height_density(h, weight, female) -> np.ndarray:
    """Log of the density of height ``h`` (cm) given ``weight`` (kg) and sex under
    the adult distribution, up to a constant, on :func:`height_interval`.

    Height H ~ N(m, s²) and log BMI B ~ N(mb, sb²) independently, so (H, W = B H²)
    has density f_H(h) f_B(w/h²) / h², and f_B(b) ∝ φ((log b - mb)/sb) / b makes the
    1/h² cancel: f(h | w) ∝ φ((h - m)/s) φ((log w - 2 log h - mb)/sb)."""
    f = np.asarray(female, dtype=float)
    m = np.where(f == 1.0, _HEIGHT[1][0], _HEIGHT[0][0])
    s = np.where(f == 1.0, _HEIGHT[1][1], _HEIGHT[0][1])
    w = np.asarray(weight, dtype=float)
    zb = (np.log(w) - 2.0 * np.log(np.asarray(h) / 100.0) - _LOG_BMI) / _LOG_BMI_SD
    return -0.5 * ((h - m) / s) ** 2 - 0.5 * zb**2


def height_given_weight(u, weight, female, block: int = 8192) -> np.ndarray:
    """Heights (cm) drawn from their distribution given the weight (kg) and sex,
    by inverting the conditional CDF at the uniforms ``u``: the density of
    :func:`log_height_density` on :func:`height_interval`, its log taken piecewise
    linear between 65 grid points (spacing <= 0.94 cm), so that the CDF is
    integrated and inverted exactly in each cell; heights are within 0.001 cm of
    a 4097-point grid's. Vectorised in blocks of ``block`` patients."""
    u, w, f = (np.asarray(a, dtype=float) for a in (u, weight, female))
    out = np.empty(u.shape)
    x = np.linspace(0.0, 1.0, _GRID)
    for a in range(0, u.size, block):
        sl = slice(a, a + block)
        lo, hi = height_interval(w[sl])
        dx = (hi - lo) / (_GRID - 1)
        h = lo[:, None] + (hi - lo)[:, None] * x[None, :]
        lp = log_height_density(h, w[sl, None], f[sl, None])
        lp -= lp.max(axis=1, keepdims=True)
        # log density linear in each cell: p0 e^(k s), s in grid steps, mass
        # p0 (e^k - 1) / k; exact for a Gaussian up to its curvature in a cell
        k = np.diff(lp, axis=1)
        small = np.abs(k) < 1e-9
        ks = np.where(small, 1.0, k)
        p0 = np.exp(lp[:, :-1])
        cdf = np.zeros(lp.shape)
        cdf[:, 1:] = np.cumsum(
            p0 * np.where(small, 1.0 + 0.5 * k, np.expm1(k) / ks), axis=1
        )
        t = u[sl] * cdf[:, -1]
        j = np.clip((cdf < t[:, None]).sum(axis=1), 1, _GRID - 1)
        r = np.arange(j.size)
        # solve p0 (e^(k s) - 1) / k = t - cdf for s in cell j-1..j
        q = (t - cdf[r, j - 1]) / np.maximum(p0[r, j - 1], 1e-300)
        kj = k[r, j - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(small[r, j - 1], q, np.log1p(kj * q) / ks[r, j - 1])
        s = np.where(np.isfinite(s), s, 1.0)
        out[sl] = h[r, j - 1] + np.clip(s, 0.0, 1.0) * dx
    return out


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
        distribution below, conditional on the given ones: weight missing but
        height or BMI given is BMI × height²; weight given without height is
        drawn with a height from its distribution given that weight (Notes);
        weight and BMI without height give height = √(weight / BMI). An adult
        whose BMI is then outside 15–60 kg/m² gets a ValidityWarning naming the
        patient and the values (kept, never clamped). Use it to supply a real
        cohort. Children (age under 18 y, from
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

    Given a weight w (and the sex, drawn from ``female`` or given), height is drawn
    from the same joint distribution conditioned on w: (H, W = BMI × H²) has density
    f_H(h) f_BMI(w/h²)/h², and the log-normal BMI density's 1/BMI cancels the 1/h²,
    so f(h | w) ∝ φ((h − m)/s) φ((log w − 2 log(h/100) − log 25.5)/σ), σ² =
    log(1 + 0.17²), on the heights where both truncations hold (145–205 cm and
    BMI 17–45, i.e. √(w/45) ≤ h/100 ≤ √(w/17)). Height being normal, not
    log-normal, this is not a normal in log height (the closed form for log-normal
    height does not apply), so it is drawn by inverting its CDF numerically
    (65-point grid, within 0.001 cm) at the same uniform as the unconditioned
    height. A 50 kg man is then at most √(50/17) m = 171.5 cm (BMI >= 17), not
    192 cm (BMI 13.5). Where no height fits (w under 35.7 kg or over 189.1 kg) the
    BMI truncation is dropped and height stays in 145–205 cm. BMI being
    independent of height and sex, a given height leaves BMI's draw as it is. Sex
    is not conditioned on the given sizes: ``female`` is the proportion asked for.

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
            if "height" not in table and {"weight", "bmi"} <= set(table):
                _check_derived_height(100.0 * np.sqrt(table["weight"] / table["bmi"]))
            object.__setattr__(self, "covariates", table)
        self._check_children()
        if not _IN_SUBSET.get():  # the whole population has warned
            self._warn_implausible_bmi()

    def _warn_implausible_bmi(self) -> None:
        """ValidityWarning for adults whose table makes their BMI implausible
        (outside PLAUSIBLE_ADULT_BMI): a given BMI, a given weight and height, or a
        given weight no height in the adult distribution fits. Never clamped."""
        import warnings

        from ._validate import ADULT_AGE
        from ._warn import ValidityWarning, stacklevel

        table = self.covariates or {}
        sizes = {"weight", "height", "bmi"} & set(table)
        if not sizes or sizes == {"height"}:
            return  # BMI drawn from 17-45 kg/m²
        if "age" in table:
            age = table["age"]
        else:
            u = uniforms(self.seed, "covariates", self.subjects, 1, offset=3)[:, 0]
            age = self.age[0] + (self.age[1] - self.age[0]) * u
        adult = age >= ADULT_AGE
        if sizes == {"weight"}:  # heights drawn given the weight
            w = table["weight"]
            fits = (w >= np.exp(_LOG_BMI_RANGE[0]) * (_HEIGHT_RANGE[0] / 100) ** 2) & (
                w <= np.exp(_LOG_BMI_RANGE[1]) * (_HEIGHT_RANGE[1] / 100) ** 2
            )
            rows = np.flatnonzero(adult & ~fits)
            if not rows.size:
                return
            cov = self.covariates_for(self.subjects[rows])
            bmi, height = cov["bmi"], cov["height"]
            how = "drawn height"
        else:  # BMI fixed by the table: no need to draw anything
            rows = np.flatnonzero(adult)
            t = {k: v[rows] for k, v in table.items()}
            if "bmi" not in t:  # weight and height given
                t["bmi"] = t["weight"] / (t["height"] / 100.0) ** 2
            if not {"weight", "height"} & set(t):  # BMI alone: height drawn
                t["height"] = self.covariates_for(self.subjects[rows])["height"]
            if "weight" not in t:
                t["weight"] = t["bmi"] * (t["height"] / 100.0) ** 2
            if "height" not in t:
                t["height"] = 100.0 * np.sqrt(t["weight"] / t["bmi"])
            cov = {**t, "age": age[rows]}
            bmi, height = t["bmi"], t["height"]
            how = {
                "height": "height",
                "weight": "height (from weight and bmi)",
                "bmi": "drawn height",
            }[next(k for k in ("height", "weight", "bmi") if k in table)]
        blo, bhi = PLAUSIBLE_ADULT_BMI
        bad = np.flatnonzero(~((bmi >= blo) & (bmi <= bhi)))
        if not bad.size:
            return
        shown = "; ".join(
            f"patient {rows[k]} (age {cov['age'][k]:.3g} y): weight "
            f"{cov['weight'][k]:.4g} kg, {how} {height[k]:.4g} cm, BMI "
            f"{bmi[k]:.3g} kg/m²"
            for k in bad[:3]
        )
        more = " (first 3 shown)" if bad.size > 3 else ""
        warnings.warn(
            f"{bad.size} of {self.n} patients are adults with a BMI outside "
            f"{blo:g}-{bhi:g} kg/m², implausible for an adult{more}: {shown}. "
            f"Kept as given, not clamped; check the covariates table's units "
            f"(weight kg, height cm, bmi kg/m²) and rows",
            ValidityWarning,
            stacklevel=stacklevel(),
        )

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
        token = _IN_SUBSET.set(True)
        try:
            return self._subset(start, stop, table)
        finally:
            _IN_SUBSET.reset(token)

    def _subset(self, start, stop, table) -> Population:
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
        given = set(self.covariates or ())
        if "female" in given:  # the table's sex, not a drawn one, picks the height
            female = np.asarray(self.covariates["female"], dtype=float)[
                idx - self.offset
            ]
        if "weight" in given and not given & {"height", "bmi"}:
            # height given the weight, under the same joint model and uniform
            w = self.covariates["weight"][idx - self.offset]
            height = height_given_weight(u[:, 1], w, female)
        else:
            height = np.where(
                female == 1.0,
                _truncnorm(u[:, 1], *_HEIGHT[1], *_HEIGHT_RANGE),
                _truncnorm(u[:, 1], *_HEIGHT[0], *_HEIGHT_RANGE),
            )
        bmi = np.exp(_truncnorm(u[:, 2], _LOG_BMI, _LOG_BMI_SD, *_LOG_BMI_RANGE))
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
            # a child's height and BMI from the adult distribution would be
            # wrong numbers on the result: unknown (NaN) unless the table has them
            child = out["age"] < ADULT_AGE
            if child.any():
                for name in ("height", "bmi"):
                    if name not in given:
                        out[name] = np.where(child, np.nan, out[name])
            if {"weight", "bmi"} <= given and "height" not in given:
                # the one height that weight and BMI imply (adults and children)
                out["height"] = 100.0 * np.sqrt(out["weight"] / out["bmi"])
            elif "weight" in given and "bmi" not in given:
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


def _check_derived_height(height: np.ndarray) -> None:
    """Height derived from weight and BMI must be in range too."""
    from ._validate import COVARIATE_RANGES

    lo, hi = COVARIATE_RANGES["height"]
    bad = ~((height >= lo) & (height <= hi))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"height derived from 100 x sqrt(weight / bmi) is {height[i]:.4g} cm "
            f"for patient {i}, outside [{lo:g}, {hi:g}] cm; check weight (kg) and "
            f"bmi (kg/m2), or give height"
        )


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
