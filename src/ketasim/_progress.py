"""Progress bars for long runs: tqdm on stderr, in terminals and notebooks only."""

from __future__ import annotations

import sys


def wanted(progress) -> bool:
    """``progress="auto"``: on only when stderr is a terminal or a notebook; never
    under pytest (no tty) or in batch jobs. Callers show a bar for ``"auto"`` only
    on long runs, for ``True`` always (see :func:`show`)."""
    if progress in (True, False):
        return bool(progress)
    if progress != "auto":
        raise ValueError(f"progress must be True, False or 'auto'; got {progress!r}")
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except Exception:  # IPython absent, or not running a kernel
        pass
    return sys.stderr is not None and sys.stderr.isatty()  # None under pythonw


def show(progress, long: bool) -> bool:
    """A bar for this run: ``progress=True`` forces it, ``"auto"`` wants a terminal
    or notebook and a long run, ``False`` never."""
    return wanted(progress) and (long or not isinstance(progress, str))


class Bar:
    """``with Bar(total, "simulating", enabled) as bar: bar.update(k)``: a tqdm bar
    on stderr counting subjects, or nothing when not ``enabled`` (tqdm is then not
    even imported) or when there is no stderr (pythonw, some services)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled and sys.stderr is not None
        self.done = 0
        self._bar = None
        if self.enabled:
            from tqdm import tqdm

            # the text bar, not tqdm.auto's widget: the same bar in a notebook
            # and a terminal, and no ipywidgets needed
            self._bar = tqdm(
                total=self.total, desc=label, unit="subject", file=sys.stderr
            )

    def __enter__(self):
        return self

    def update(self, k: int) -> None:
        self.done += k
        if self._bar is not None:
            self._bar.update(k)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
