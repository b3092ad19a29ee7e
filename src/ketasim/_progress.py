"""A dependency-free progress bar for long runs (stderr; terminals and notebooks)."""

from __future__ import annotations

import sys
import time


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
    """``with Bar(total, "simulating") as bar: bar.update(k)``."""

    def __init__(self, total: int, label: str, enabled: bool, width: int = 30):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.t0 = time.perf_counter()

    def __enter__(self):
        return self

    def update(self, k: int) -> None:
        self.done += k
        if not self.enabled or sys.stderr is None:
            return
        f = min(self.done / self.total, 1.0)
        fill = int(f * self.width)
        el = time.perf_counter() - self.t0
        eta = el / f - el if f > 0 else 0.0
        sys.stderr.write(
            f"\r{self.label} |{'█' * fill}{' ' * (self.width - fill)}| "
            f"{100 * f:5.1f}% {self.done}/{self.total}  {el:5.1f} s "
            f"(ETA {eta:4.0f} s)"
        )
        sys.stderr.flush()

    def __exit__(self, *exc):
        if self.enabled and sys.stderr is not None:
            sys.stderr.write("\n")
            sys.stderr.flush()
