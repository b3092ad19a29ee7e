"""Progress bars for long runs, and the notice of a first compile: tqdm on stderr, in
terminals and notebooks only."""

from __future__ import annotations

import sys
from contextlib import contextmanager


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


class _CompileListener:
    """numba ``numba:compile`` events (fired on a cache miss only: loading a
    cached kernel fires none) -> one line on stderr at the first compile, then a
    bar of the elapsed time against the estimate, ticking every half second (the
    compile holds no lock a thread needs: LLVM releases the GIL, numba's typing
    lets it switch), with the count of compiled functions and the one being
    compiled."""

    def __init__(self, what: str, seconds: float, bar: bool):
        self.what = what
        self.seconds = float(seconds)
        self.bar_wanted = bar
        self.started = False
        self.functions = 0
        self.current = ""
        self._bar = None
        self._stop = None
        self._thread = None
        self._t0 = 0.0

    def on_start(self, event) -> None:
        d = event.data.get("dispatcher")
        self.current = getattr(getattr(d, "py_func", None), "__name__", "")
        if self.started:
            return
        self.started = True
        from tqdm import tqdm

        # tqdm.write: above any bar already on screen (a run's "simulating" bar)
        tqdm.write(compile_line(self.what, self.seconds), file=sys.stderr)
        if self.bar_wanted:
            self._start_bar()

    def on_end(self, event) -> None:
        self.functions += 1

    def _start_bar(self) -> None:
        import threading
        import time

        from tqdm import tqdm

        self._t0 = time.perf_counter()
        self._bar = tqdm(
            total=max(1, round(self.seconds)),
            desc="compiling",
            file=sys.stderr,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
            "(estimate){postfix}",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        import time

        while not self._stop.wait(0.5):
            self._show(time.perf_counter() - self._t0)

    def _show(self, elapsed: float) -> None:
        bar = self._bar
        if elapsed >= bar.total:  # slower than the estimate: the bar keeps going
            bar.total = int(elapsed) + 1
        bar.n = elapsed
        bar.set_postfix_str(f"{self.functions} functions, now {self.current}")

    def close(self) -> None:
        if self._bar is None:
            return
        import time

        self._stop.set()
        self._thread.join()
        elapsed = time.perf_counter() - self._t0
        self._bar.total = max(1, round(elapsed))
        self._bar.n = self._bar.total
        self._bar.set_postfix_str(f"{self.functions} functions, cached for next time")
        self._bar.close()


def compile_line(what: str, seconds: float) -> str:
    """The one line that announces a compile (stderr)."""
    return (
        f"ketasim: compiling the {what} (numba; once per machine, later runs load "
        f"it from the cache; about {seconds:.0f} s on 2 cores)"
    )


@contextmanager
def compile_notice(what: str, progress, seconds: float):
    """``with compile_notice("exact solver for 4 states", progress, 10):`` around a
    kernel call: if numba compiles anything inside the block (the first call on a
    machine; a cached kernel loads silently), one line on stderr says what, that it
    happens once and about how long (``seconds``, measured on a 2-core machine),
    and, where a progress bar would show (:func:`wanted`), a bar ticks the elapsed
    time until the compile ends. Nothing with ``progress=False``, without a stderr,
    or under ``"auto"`` outside a terminal or notebook (pytest, batch jobs)."""
    if not wanted(progress) or sys.stderr is None:
        yield None
        return
    from numba.core import event

    listener = _CompileListener(what, seconds, bar=True)

    class Hook(event.Listener):  # numba's interface, bound to this notice
        def on_start(self, ev):
            listener.on_start(ev)

        def on_end(self, ev):
            listener.on_end(ev)

    try:
        with event.install_listener("numba:compile", Hook()):
            yield listener
    finally:
        listener.close()
