"""The notice of a first compile: one line on stderr when numba compiles inside a
kernel call, a ticking bar where bars show, and nothing when the kernel is compiled
already or loads from numba's disk cache."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from numba import njit

import ketasim as ks
from ketasim._progress import compile_notice

LINE = (
    "ketasim: compiling the test kernel (numba; once per machine, later runs load "
    "it from the cache; about 3 s on 2 cores)\n"
)


def _fresh():
    """A function numba has not compiled yet (a new one per call)."""

    @njit
    def f(x):
        return x * 2.0 + 1.0

    return f


def test_a_compile_says_so_in_one_line_and_a_bar_then_nothing(capsys):
    f = _fresh()
    with compile_notice("test kernel", True, 3):
        assert f(1.0) == 3.0
    err = capsys.readouterr().err
    assert err.startswith(LINE)
    assert err.count("ketasim: compiling") == 1
    # the bar (tqdm, carriage returns) ends with the count of compiled functions
    assert "compiling: 100%" in err and "1 functions, cached for next time" in err
    with compile_notice("test kernel", True, 3):  # compiled already: silent
        assert f(2.0) == 5.0
    assert capsys.readouterr().err == ""


def test_the_bar_ticks_while_a_compile_runs(capsys):
    """A compile slower than the estimate: the bar's total grows with the elapsed
    time (the estimate is not a promise), and it ticks on its own thread."""
    from numba.core import event

    f = _fresh()
    with compile_notice("test kernel", True, 1) as notice:
        # a 'compile' of 1.3 s: numba's event, as a cache miss fires it
        with event.trigger_event("numba:compile", data={"dispatcher": f}):
            time.sleep(1.3)
        assert notice._bar.total >= 2
    err = capsys.readouterr().err
    assert err.startswith(LINE.replace("about 3 s", "about 1 s"))
    assert "now f" in err  # the function being compiled, named while it runs


def test_no_notice_without_progress_or_outside_a_terminal(capsys):
    for progress in (False, "auto"):  # pytest's stderr is not a terminal
        f = _fresh()
        with compile_notice("test kernel", progress, 3):
            f(1.0)
        assert capsys.readouterr().err == ""


def test_a_kernel_loaded_from_the_disk_cache_is_silent(tmp_path):
    """Two processes on one empty NUMBA_CACHE_DIR: the first compiles (and says
    so), the second loads the cached kernel and prints nothing."""
    mod = tmp_path / "cached_kernel.py"
    mod.write_text(
        textwrap.dedent(
            """
            from numba import njit

            @njit(cache=True)
            def g(x):
                return x + 1.0
            """
        )
    )
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from ketasim._progress import compile_notice
        import cached_kernel
        with compile_notice("test kernel", True, 3):
            assert cached_kernel.g(1.0) == 2.0
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        for _ in range(2)
    ]
    assert runs[0].stderr.startswith(LINE)
    assert runs[1].stderr == ""


def test_simulate_says_nothing_once_its_kernels_are_compiled(capsys):
    d = ks.Dose.bolus("5 mg")
    ks.simulate("domino", d, times=[1.0, 2.0], progress=True)  # may compile
    capsys.readouterr()
    ds = ks.simulate("domino", d, times=[1.0, 2.0], progress=True)
    err = capsys.readouterr().err
    assert "simulating" in err and "compiling" not in err
    assert np.isfinite(ds.concentration.values).all()
