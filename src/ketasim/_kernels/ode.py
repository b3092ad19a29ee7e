"""Adaptive ODE integration for nonlinear and user-defined models (numba).

Two methods, chosen automatically per subject:

- Dormand–Prince 5(4) with its 4th-order continuous extension (Dormand & Prince,
  J Comput Appl Math 6:19-26, 1980; Hairer, Nørsett & Wanner, Solving ODEs I, II.5),
  and Hairer's stiffness detection (Solving ODEs II, IV.2: h·|λ| estimated from the
  last two stages, > 3.25 on 15 accepted steps means stiff).
- Rodas4, the stiffly accurate L-stable Rosenbrock method of order 4(3) with 6
  stages (Hairer & Wanner, Solving ODEs II, 2nd ed., VI.4), cubic Hermite dense
  output, a finite-difference Jacobian (formed once per segment between events
  when ``jac_const``: linear time-invariant right-hand sides; otherwise every
  step). The six stage solves multiply by an explicit inverse of ``I/(h g) - J``
  (Gauss–Jordan, written here: small systems, no LAPACK bindings needed), formed
  again only when h or J changes; with a constant Jacobian an accepted step keeps
  its h when the controller would grow it by less than 20 % (the rule of Hairer's
  RADAU5), so the inverse is reused.

``method`` 0 starts with DOPRI5 and switches to Rodas4 for the rest of
the subject once stiffness is detected; 1 and 2 force one method. Doses are known
discontinuities: integration restarts at every event time and never steps across
one. Steps are free; output times are filled by dense output. Kernels never raise
(they are compiled with numba's numpy error model: a division by zero gives inf or
NaN, not an exception): ``status`` 0 ok, 1 max_steps exceeded, 2 step size
underflow, 3 non-finite state, 5 a negative amount beyond the tolerance (a state
below -(atol + rtol × its largest magnitude so far) after an accepted step). An
exception raised by a user's rhs cannot be turned into a status; simulate()
catches it and names the rhs.

The kernels are built per state count and right-hand side (:func:`solver`): both
are compile-time constants inside them, so loops over the states have constant trip
counts that LLVM unrolls (about 3x faster per step than the same code with the
count read from an array shape). Their source is ``_ode_solver.py``. For ketasim's
own right-hand sides (the linear ``dxdt = A x`` and the linearly time-varying
:func:`ketasim._kernels.ltv.rhs_ltv`) that source is written, with the state count
and right-hand side assigned at its top, to a module file per state count in the
cache directory (:func:`cache_dir`: ``$KETASIM_CACHE_DIR/ode``, else
``$NUMBA_CACHE_DIR/ketasim_ode``, else the user cache directory, e.g.
``~/.cache/ketasim/ode``), and numba caches the kernels of that file like any
other: a later process loads them instead of compiling (~12 s). The file name
carries a hash of the text and a file is never rewritten, so a new ketasim version
(or a changed ``ltv.py``) writes a new file and numba compiles for it once.
A user's right-hand side cannot be cached this
way (numba's cache index would record it by module and name, and a later process
that cannot import that module, a notebook or a script elsewhere, fails to load the
index): its kernels compile once per process, and so do the others when the cache
directory cannot be written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numba

SOURCE = Path(__file__).with_name("_ode_solver.py")

_SOLVERS: dict[tuple, SimpleNamespace] = {}
_LOCK = threading.Lock()  # dask's threaded scheduler may build solvers concurrently


def solver(n: int, rhs=None) -> SimpleNamespace:
    """The kernels for ``n`` states and the right-hand side ``rhs(t, x, p, dxdt)``
    (a numba function; default the linear ``dxdt = A x`` with ``p = A.ravel()``),
    built once per process and compiled (or loaded from numba's cache) on first
    call.

    ``n`` and ``rhs`` are compile-time constants inside them: every loop over the
    states has a constant trip count that LLVM unrolls into registers (about 3x
    faster per Rosenbrock step for three states than with ``n`` read from an array
    shape), and ``rhs`` can be inlined. Returns a namespace with ``n``, ``rhs``,
    ``inverse`` (the Gauss–Jordan inverse Rodas4 uses), ``solve_subject``,
    ``solve_population`` and ``cached`` (whether numba caches them on disk)."""
    key = (int(n), rhs)
    with _LOCK:
        if key not in _SOLVERS:
            kernels = _cached_module(int(n), rhs) or _run_source(int(n), rhs)
            _SOLVERS[key] = SimpleNamespace(
                n=int(n),
                rhs=kernels["rhs"],
                inverse=kernels["_inverse"],
                solve_subject=kernels["solve_subject"],
                solve_population=kernels["solve_population"],
                cached=kernels["CACHE"],
            )
        return _SOLVERS[key]


def _run_source(N: int, rhs) -> dict:
    """The kernels in a fresh namespace, not cached on disk."""
    names = {"N": N, "CACHE": False, "rhs": rhs, "__name__": f"{__name__}._solver_{N}"}
    exec(compile(SOURCE.read_text(encoding="utf-8"), str(SOURCE), "exec"), names)
    return names


def cache_dir() -> Path:
    """Where the module files of the cached ODE kernels are written:
    ``$KETASIM_CACHE_DIR/ode``, else ``$NUMBA_CACHE_DIR/ketasim_ode``, else the
    user cache directory (``~/.cache/ketasim/ode`` on Linux)."""
    if os.environ.get("KETASIM_CACHE_DIR"):
        return Path(os.environ["KETASIM_CACHE_DIR"]).resolve() / "ode"
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR).resolve() / "ketasim_ode"
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData/Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root.resolve() / "ketasim" / "ode"


def module_text(N: int, rhs) -> tuple[str, str] | None:
    """(file stem, text) of the module file for ketasim's own right-hand sides;
    None for any other. The stem carries a hash of the text: a file is never
    rewritten, so numba's cache entries for it (keyed on the file's time stamp
    and size) stay valid, and a new ketasim writes a new file."""
    from .ltv import rhs_ltv

    if rhs is None:
        tag, head = "linear", "rhs = None  # the linear dxdt = A x defined below\n"
    elif rhs is rhs_ltv:
        dep = Path(sys.modules[rhs_ltv.__module__].__file__)
        digest = hashlib.sha256(dep.read_bytes()).hexdigest()
        tag = "ltv"
        head = (
            f"# {dep.name} sha256 {digest}\n"
            f"from {rhs_ltv.__module__} import rhs_ltv as rhs\n"
        )
    else:
        return None
    text = (
        f"# ketasim: the ODE kernels for {N} states, right-hand side {tag!r}.\n"
        f"# Written from {SOURCE.name} by ketasim._kernels.ode; do not edit.\n"
        f"N, CACHE = {N}, True\n" + head + SOURCE.read_text(encoding="utf-8")
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{tag}_n{N}_{digest}", text


def _cached_module(N: int, rhs) -> dict | None:
    """The kernels from a module file of their own (numba caches those), for
    ketasim's own right-hand sides; None for any other, or if anything about the
    file fails (the caller then builds kernels that are not cached)."""
    made = module_text(N, rhs)
    if made is None:
        return None
    stem, text = made
    name = f"_ketasim_ode_{stem}"
    tmp = None
    try:
        path = cache_dir() / f"{stem}.py"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # written aside, then linked in place: never read half written
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            try:  # the first process to get here makes the file; it never changes
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return vars(module)
    except Exception:
        sys.modules.pop(name, None)
        return None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
