"""The warnings a run issues, the user's line they point at, and the context of a
Dask chunk, in which they are not repeated (the call itself has warned)."""

from __future__ import annotations

import contextvars


class ValidityWarning(UserWarning):
    """An input is valid but implausible or outside what the result supports: patients
    outside the covariate (or weight) ranges a model was estimated on, a single dose
    above any clinical or anaesthetic dose (over 2000 mg or 20 mg/kg, or that much per
    hour of an infusion), or a target-controlled infusion whose pump limit keeps it
    from reaching its target. The message names the value received."""


class GridWarning(UserWarning):
    """Doses start after the last output time: they are not simulated, and their
    per-dose metrics are NaN."""


class ModelLimitWarning(UserWarning):
    """A dose falls outside what a model can predict for one of its analytes
    (its file's ``[[analytes.<name>.limits]]`` say why); the numbers are returned
    but should not be trusted. ``analyte`` names that analyte (None if not
    given)."""

    def __init__(self, *args: object, analyte: str | None = None) -> None:
        super().__init__(*args)
        self.analyte = analyte


# while a Dask task simulates its chunk: the index of the chunk's first subject in
# the whole run (the call itself has warned already); None outside chunks
CHUNK_START = contextvars.ContextVar("ketasim_chunk_start", default=None)


def in_chunk() -> bool:
    """True inside a Dask chunk's run, whose warnings the whole call has issued."""
    return CHUNK_START.get() is not None


def stacklevel() -> int:
    """``warnings.warn`` stacklevel of the first caller outside ketasim, so that a
    warning points at the user's line whichever path issued it."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_globals.get("__name__", "") + ".").startswith(
        "ketasim."
    ):
        frame, level = frame.f_back, level + 1
    return level
