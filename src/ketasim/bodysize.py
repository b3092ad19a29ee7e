"""Body-size descriptors: the weight a per-kg dose scales with.

A dose in mg/kg multiplies by a weight. Which weight matters in obesity: 0.5 mg/kg
of total body weight for a 180-kg patient is 90 mg, of lean body weight about
half that. :class:`~ketasim.Dose` takes ``weight_basis=`` one of
:data:`WEIGHT_BASES`; each is computed per subject from sex (``female``, 0/1),
height (cm) and total body weight (kg) by the functions below.

- ``"total"``: total body weight TBW (kg).
- ``"ideal"`` (Devine 1974), height h in cm: men ``50 + 2.3 (h / 2.54 - 60)``,
  women ``45.5 + 2.3 (h / 2.54 - 60)``.
- ``"lean"`` (Janmahasatian 2005), BMI = TBW / (h / 100)²: men
  ``9270 TBW / (6680 + 216 BMI)``, women ``9270 TBW / (8780 + 244 BMI)``.
- ``"adjusted"`` (Bauer 2001): ``IBW + 0.4 (TBW - IBW)``.

References
----------
Devine BJ. Gentamicin therapy. Drug Intell Clin Pharm 1974;8(11):650-655
(ideal body weight: 50 kg for men, 45.5 kg for women, at 5 ft (60 in), plus
2.3 kg per inch above).

Janmahasatian S, Duffull SB, Ash S, Ward LC, Byrne NM, Green B. Quantification
of lean bodyweight. Clin Pharmacokinet 2005;44(10):1051-1065,
doi:10.2165/00003088-200544100-00004.

Bauer LA. Applied Clinical Pharmacokinetics. New York: McGraw-Hill; 2001,
aminoglycoside chapter (adjusted body weight with the factor 0.4; also in Winter
ME, Basic Clinical Pharmacokinetics).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

__all__ = [
    "ADJUSTED_FACTOR",
    "WEIGHT_BASES",
    "adjusted_body_weight",
    "dosing_weight",
    "ideal_body_weight",
    "lean_body_weight",
]

#: The weights a per-kg dose may scale with (``Dose(weight_basis=...)``).
WEIGHT_BASES = ("total", "ideal", "lean", "adjusted")

#: Share of the weight above ideal that adjusted body weight keeps (Bauer 2001;
#: the aminoglycoside convention, IBW + 0.4 (TBW - IBW)).
ADJUSTED_FACTOR = 0.4

#: Devine's formula starts at 5 ft = 152.4 cm; shorter patients get its linear
#: extrapolation, with a ValidityWarning.
DEVINE_BASE_CM = 152.4
_CM_PER_INCH = 2.54

# what each basis needs besides total body weight
_NEEDS = {
    "total": (),
    "ideal": ("female", "height"),
    "lean": ("female", "height"),
    "adjusted": ("female", "height"),
}


def _arrays(*values) -> list[np.ndarray]:
    out = [np.asarray(v, dtype=float) for v in values]
    return list(np.broadcast_arrays(*out))


def _check_female(female: np.ndarray) -> None:
    bad = ~((female == 0.0) | (female == 1.0))
    if bad.any():
        i = int(np.argmax(bad.ravel()))
        raise ValueError(
            f"female must be 0 (man) or 1 (woman) for every subject; got "
            f"{female.ravel()[i]!r} for subject {i}"
        )


def _check_covariate(x: np.ndarray, name: str) -> None:
    """``x`` finite and inside the plausible human range ``simulate`` accepts
    for covariate ``name`` (``_validate.COVARIATE_RANGES``: height 30-250 cm,
    weight 0.3-400 kg), with the same message: a height in metres (1.8) or a
    weight in g is refused, not turned into a number."""
    from ._validate import covariate_values

    covariate_values(name, x.ravel())


def ideal_body_weight(height, female) -> np.ndarray:
    """Ideal body weight (kg) by Devine (1974).

    IBW = 50 kg (men) or 45.5 kg (women) + 2.3 kg per inch of height above
    60 in (152.4 cm), with height h in cm: ``base + 2.3 * (h / 2.54 - 60)``.

    Parameters
    ----------
    height : float or array_like
        Height in cm, 30-250 (else refused: a height in metres is an error).
    female : 0/1 or array_like
        1 for a woman, 0 for a man.

    Returns
    -------
    numpy.ndarray
        IBW in kg. Below 152.4 cm the line is extrapolated (a ValidityWarning says
        how many subjects); a height whose IBW would be <= 0 kg (under about
        97 cm for men) is refused: the formula describes adults.

    References
    ----------
    Devine BJ. Gentamicin therapy. Drug Intell Clin Pharm 1974;8:650-655.

    Examples
    --------
    >>> float(ideal_body_weight(177.8, 0))  # 70 in: 50 + 2.3 * 10
    73.0
    >>> float(ideal_body_weight(167.64, 1))  # 66 in: 45.5 + 2.3 * 6
    59.3
    """
    h, f = _arrays(height, female)
    _check_covariate(h, "height")
    _check_female(f)
    ibw = np.where(f == 1.0, 45.5, 50.0) + 2.3 * (h / _CM_PER_INCH - 60.0)
    if (ibw <= 0).any():
        i = int(np.argmax((ibw <= 0).ravel()))
        raise ValueError(
            f"Devine's ideal body weight is <= 0 kg for height "
            f"{h.ravel()[i]:g} cm (subject {i}): the formula describes adults "
            f"(50 or 45.5 kg at 152.4 cm, 2.3 kg per inch). Dose this subject "
            f"on total or lean body weight"
        )
    short = h < DEVINE_BASE_CM
    if short.any():
        from ._warn import ValidityWarning, stacklevel

        warnings.warn(
            f"{int(short.sum())} of {h.size} subjects are shorter than 152.4 cm "
            f"(5 ft), where Devine's ideal body weight starts; it is extrapolated "
            f"linearly (2.3 kg per inch) below that height",
            ValidityWarning,
            stacklevel=stacklevel(),
        )
    return ibw


def lean_body_weight(weight, height, female) -> np.ndarray:
    """Lean body weight (kg) by Janmahasatian et al. (2005).

    Men: ``9270 * TBW / (6680 + 216 * BMI)``; women:
    ``9270 * TBW / (8780 + 244 * BMI)``, BMI = TBW / (h / 100)² in kg/m².

    Parameters
    ----------
    weight : float or array_like
        Total body weight in kg, 0.3-400 (else refused).
    height : float or array_like
        Height in cm, 30-250 (else refused: a height in metres is an error).
    female : 0/1 or array_like
        1 for a woman, 0 for a man.

    Returns
    -------
    numpy.ndarray
        LBW in kg.

    References
    ----------
    Janmahasatian S, Duffull SB, Ash S, Ward LC, Byrne NM, Green B.
    Quantification of lean bodyweight. Clin Pharmacokinet 2005;44:1051-1065.

    Examples
    --------
    >>> round(float(lean_body_weight(80.0, 180.0, 0)), 2)
    61.73
    """
    w, h, f = _arrays(weight, height, female)
    _check_covariate(w, "weight")
    _check_covariate(h, "height")
    _check_female(f)
    bmi = w / (h / 100.0) ** 2
    return np.where(
        f == 1.0,
        9270.0 * w / (8780.0 + 244.0 * bmi),
        9270.0 * w / (6680.0 + 216.0 * bmi),
    )


def adjusted_body_weight(weight, height, female) -> np.ndarray:
    """Adjusted body weight (kg): ``IBW + 0.4 * (TBW - IBW)``.

    IBW is Devine's (:func:`ideal_body_weight`); the factor 0.4
    (:data:`ADJUSTED_FACTOR`) is the aminoglycoside convention (Bauer 2001). The
    formula is applied as written for every subject: below ideal weight it gives
    a weight between TBW and IBW (nothing is switched silently to TBW).

    References
    ----------
    Bauer LA. Applied Clinical Pharmacokinetics. McGraw-Hill; 2001.

    Examples
    --------
    >>> float(adjusted_body_weight(123.0, 177.8, 0))  # 73 + 0.4 * 50
    93.0
    """
    w, h, f = _arrays(weight, height, female)
    _check_covariate(w, "weight")
    _check_covariate(h, "height")
    ibw = ideal_body_weight(h, f)
    return ibw + ADJUSTED_FACTOR * (w - ibw)


def dosing_weight(basis: str, covariates: Mapping[str, np.ndarray]) -> np.ndarray:
    """The weight (kg) a per-kg dose scales with, per subject.

    ``covariates``: ``weight`` (kg), and for ``"ideal"``, ``"lean"`` and
    ``"adjusted"`` also ``female`` (0/1) and ``height`` (cm), arrays of one value
    per subject. A covariate missing, or unknown (NaN) for some subject, is an
    error naming it and the subjects.
    """
    if basis not in WEIGHT_BASES:
        raise ValueError(
            f"weight_basis must be one of {', '.join(map(repr, WEIGHT_BASES))}; "
            f"got {basis!r}"
        )
    w = np.asarray(covariates["weight"], dtype=float)
    if basis == "total":
        return w
    for name in _NEEDS[basis]:
        v = covariates.get(name)
        unknown = (
            np.ones(w.shape, bool) if v is None else np.isnan(np.asarray(v, float))
        )
        if unknown.any():
            missing = (
                "no subject has it"
                if v is None
                else f"subject {int(np.argmax(unknown))} lacks it "
                f"({int(unknown.sum())} of {unknown.size} subjects do)"
            )
            what = "sex (female = 0 or 1)" if name == "female" else "height (cm)"
            raise ValueError(
                f"a dose per kg of {basis} body weight needs each subject's "
                f"{what}, and {missing}. Give {name!r} in "
                f"ks.Subjects(covariates=...) or Population(covariates=...), or "
                f"dose per kg of total body weight"
            )
    h, f = covariates["height"], covariates["female"]
    if basis == "ideal":
        return ideal_body_weight(h, f) * np.ones_like(w)
    if basis == "lean":
        return lean_body_weight(w, h, f)
    return adjusted_body_weight(w, h, f)


#: WHO class III obesity: BMI >= 40 kg/m² (World Health Organization. Obesity:
#: preventing and managing the global epidemic. WHO Technical Report Series 894,
#: Geneva 2000).
SEVERE_OBESITY_BMI = 40.0

#: Weight (kg) from which a model scaled by total body weight without a published
#: weight range warns: 40 kg/m² × (2.00 m)² = 160 kg, severe obesity at any
#: height up to 2 m. A rule on weight alone, so that it holds when height is
#: unknown and stays quiet for ordinary virtual populations (5 in a million of
#: ``Population``'s adults weigh this much); heavier patients of a shorter height
#: are not flagged by it.
SEVERE_OBESITY_KG = SEVERE_OBESITY_BMI * 2.0**2


def weight_scaled(model) -> bool:
    """Whether ``model``'s parameters scale with body weight (per-kg values or a
    covariate effect on weight)."""
    return any(p.per_kg for p in model.parameters.values()) or any(
        e.covariate == "weight" for e in model.covariate_effects
    )


def unranged_weight_message(model, cov: Mapping[str, np.ndarray]) -> str | None:
    """A validity message for a weight-scaled model without a published weight
    range (no ``[validity] weight``) and patients of at least
    :data:`SEVERE_OBESITY_KG` (160 kg): their volumes and clearances are scaled
    linearly with total body weight far beyond anything the model is known to
    describe. None when no patient is concerned (or the model declares a weight
    range: that range warns instead)."""
    if "weight" in model.validity or "weight" not in cov or not weight_scaled(model):
        return None
    w = np.asarray(cov["weight"], dtype=float)
    out = w >= SEVERE_OBESITY_KG
    if not out.any():
        return None
    ref = model.covariates.get("weight", 70.0)
    return (
        f"{int(out.sum())} of {w.size} patients weigh >= {SEVERE_OBESITY_KG:g} kg "
        f"(BMI >= {SEVERE_OBESITY_BMI:g} kg/m², WHO class III obesity, at any height "
        f"up to 2 m), up to {w[out].max():.4g} kg: model {model.id!r} scales its "
        f"parameters with total body weight and publishes no weight range it was "
        f"estimated on, so their volumes and clearances are extrapolated linearly "
        f"(x{w[out].max() / ref:.3g} the {ref:g}-kg reference patient's). Consider "
        f"a model estimated in obesity, or a dose per kg of lean or adjusted body "
        f"weight (Dose(weight_basis=...))"
    )
