"""Analyte names: one enantiomer-explicit convention, common names as aliases.

Every bundled model names its analytes ``<enantiomer>_<compound>``: no prefix for
the racemate (R + S together), ``s_`` or ``r_`` for one enantiomer, e.g.
``ketamine`` (racemic ketamine), ``s_ketamine``, ``r_ketamine``, ``norketamine``
(racemic), ``s_norketamine``, ``s_hydroxynorketamine``. Wherever a user names an
analyte (``compare``, the plots, ``write_nonmem``, scenario files, model files)
the common names are accepted too and mean the same analyte: ``esketamine`` is
``s_ketamine``, ``noresketamine`` is ``s_norketamine``; ``S-ketamine``,
``S(+)-ketamine`` and ``(S)-norketamine`` read as their ``s_`` names. A plain
``ketamine`` always means the racemate: it never selects ``s_ketamine``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The compounds an analyte name may name (after an optional ``s_``/``r_``).
COMPOUNDS: tuple[str, ...] = (
    "ketamine",
    "norketamine",
    "hydroxynorketamine",
    "dehydronorketamine",
    "hydroxyketamine",
)

#: What the prefixes mean, for messages and the docs.
PREFIXES: dict[str, str] = {"": "racemic (R+S)", "s_": "S-", "r_": "R-"}

_ABBREVIATIONS = {
    "ket": "ketamine",
    "nk": "norketamine",
    "hnk": "hydroxynorketamine",
    "dhnk": "dehydronorketamine",
}

#: Common names, after normalisation, and the canonical name each stands for.
ALIASES: dict[str, str] = {
    "esketamine": "s_ketamine",
    "arketamine": "r_ketamine",
    "noresketamine": "s_norketamine",
    "esnorketamine": "s_norketamine",
    "norarketamine": "r_norketamine",
    "racemic_ketamine": "ketamine",
    "racemic_norketamine": "norketamine",
}
for _compound in COMPOUNDS:
    ALIASES[f"rs_{_compound}"] = _compound
for _short, _compound in _ABBREVIATIONS.items():
    for _prefix in ("", "s_", "r_"):
        ALIASES[f"{_prefix}{_short}"] = f"{_prefix}{_compound}"
    ALIASES[f"rs_{_short}"] = _compound

CANONICAL: tuple[str, ...] = tuple(p + c for p in PREFIXES for c in COMPOUNDS)

#: Molecular formula of each compound's free base (enantiomers share it).
FORMULAS: dict[str, dict[str, int]] = {
    "ketamine": {"C": 13, "H": 16, "Cl": 1, "N": 1, "O": 1},
    "norketamine": {"C": 12, "H": 14, "Cl": 1, "N": 1, "O": 1},
    "hydroxynorketamine": {"C": 12, "H": 14, "Cl": 1, "N": 1, "O": 2},
    "dehydronorketamine": {"C": 12, "H": 12, "Cl": 1, "N": 1, "O": 1},
    "hydroxyketamine": {"C": 13, "H": 16, "Cl": 1, "N": 1, "O": 2},
}

#: Standard atomic weights (g/mol; IUPAC conventional values for C, H, Cl, N, O).
ATOMIC_WEIGHTS: dict[str, float] = {
    "C": 12.011,
    "H": 1.008,
    "Cl": 35.45,
    "N": 14.007,
    "O": 15.999,
}


def base_molecular_weight(name: str) -> tuple[float, str] | None:
    """The free base's molecular weight (g/mol) of a canonical analyte name and
    its formula (``(237.73, "C13H16ClNO")`` for ``s_ketamine``); None for a name
    outside :data:`COMPOUNDS`."""
    compound = name.removeprefix("s_").removeprefix("r_")
    atoms = FORMULAS.get(compound)
    if atoms is None:
        return None
    mw = sum(ATOMIC_WEIGHTS[e] * n for e, n in atoms.items())
    return mw, "".join(f"{e}{n if n > 1 else ''}" for e, n in atoms.items())


def _normalise(name: str) -> str:
    """Lower case, optical-rotation signs dropped, ``(S)`` -> ``s``, separators
    (space, hyphen) -> ``_``: ``"S(+)-Ketamine"`` -> ``"s_ketamine"``."""
    n = name.strip().lower()
    n = re.sub(r"\((?:\+|-|−|±)\)", "", n)  # S(+)-, R(-)-, (±)-
    n = re.sub(r"\((r,\s*s|s,\s*r|rs|sr)\)|^(r,\s*s|s,\s*r)(?=[\s\-_])", "rs", n)
    n = re.sub(r"\(([rs])\)", r"\1", n)
    n = re.sub(r"[\s\-]+", "_", n).strip("_")
    return n


def canonical(name: str) -> str | None:
    """The canonical analyte name ``name`` stands for, or None if it names none.

    >>> canonical("esketamine"), canonical("S-norketamine"), canonical("ketamine")
    ('s_ketamine', 's_norketamine', 'ketamine')
    """
    if not isinstance(name, str):
        return None
    n = _normalise(name)
    if n in CANONICAL:
        return n
    return ALIASES.get(n)


def analyte_name(name: str) -> str:
    """The canonical name of an analyte, given it or a common name.

    Results (``ds.analyte``) carry canonical names; use this to select with a
    common one: ``ds.concentration.sel(analyte=ks.analyte_name("esketamine"))``.

    Examples
    --------
    >>> import ketasim as ks
    >>> ks.analyte_name("esketamine"), ks.analyte_name("S-norketamine")
    ('s_ketamine', 's_norketamine')
    >>> ks.analyte_name("ketamine")  # the racemate, never s_ketamine
    'ketamine'

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        ``name`` names no analyte; the message gives the naming convention.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"analyte name must be a str; got {type(name).__name__} {name!r}"
        )
    c = canonical(name)
    if c is None:
        raise ValueError(f"{name!r} names no analyte: {CONVENTION_HINT}")
    return c


def describe(name: str) -> str:
    """A canonical name in words: ``"s_norketamine"`` -> ``"S-norketamine"``."""
    for prefix in ("s_", "r_"):
        if name.startswith(prefix):
            return PREFIXES[prefix] + name[len(prefix) :]
    return f"racemic (R+S) {name}"


def aliases_of(name: str) -> list[str]:
    """The common names (not the normalised spellings) that stand for ``name``."""
    return [a for a, c in ALIASES.items() if c == name and "_" not in a]


CONVENTION_HINT = (
    "analyte names are <enantiomer>_<compound>: 'ketamine' and 'norketamine' "
    "for the racemate (R+S), 's_ketamine' (alias 'esketamine'), 'r_ketamine' "
    "(alias 'arketamine'), 's_norketamine' (alias 'noresketamine'), "
    "'s_hydroxynorketamine' ... (models/README.md, 'Analyte names')"
)


def resolve(name: object, available: Iterable[str], where: str) -> str:
    """The analyte of ``available`` that ``name`` (a canonical name or an alias)
    names; ``where`` says whose analytes they are, for the error.

    A name matches an available analyte when both stand for the same canonical
    name, so results saved with the old names (``esketamine``) are found by the
    new ones and the other way round.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        No available analyte has that name; the message lists those there are
        and says what the name means in ketasim's naming.
    """
    have = [str(a) for a in available]
    if not isinstance(name, str):
        raise TypeError(
            f"analyte must be a name (str); got {type(name).__name__} {name!r}"
            + (f"; {where} have {', '.join(map(repr, have))}" if have else "")
        )
    if name in have:
        return name
    c = canonical(name)
    if c is not None:
        hits = [a for a in have if canonical(a) == c]
        if len(hits) == 1:
            return hits[0]
    msg = f"no analyte {name!r} in {where}; they have {', '.join(map(repr, have))}"
    if c is None:
        msg += f". {CONVENTION_HINT}"
    else:
        if c != name:
            msg += f" ({name!r} is {c!r}, {describe(c)})"
        if c in COMPOUNDS:
            sided = [a for a in have if canonical(a) in (f"s_{c}", f"r_{c}")]
            if sided:
                msg += (
                    f". {c!r} means the racemate (R+S); these results hold "
                    f"{' and '.join(describe(canonical(a) or a) for a in sided)}: "
                    f"name it {sided[0]!r}"
                )
    raise ValueError(msg)
