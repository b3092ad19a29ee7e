"""numba's disk cache of the kernels cannot go stale: a change to any file of
ketasim/_kernels makes every kernel compile again (ketasim._kernels._cache), and
unchanged sources load from the cache without a compile."""

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from numba.core import caching
from numba.core.registry import CPUDispatcher

import ketasim
from ketasim._kernels import _cache, expm, linear, ltv, map, metrics

# map._step (map.py) propagates dx/dt = A x + r by one exponential from expm.py; for
# a 1x1 A and r = 0 the matrix is diagonal, so expm.py's _exp_diagonal computes it
CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    from ketasim._kernels import map as kmap
    x = np.array([1.0])
    kmap._step(np.array([[-0.5]]), x, np.array([0.0]), 2.0, np.empty((2, 2)),
               np.empty((6, 2, 2)))
    st = kmap._step.stats
    print(json.dumps({"x": float(x[0]), "file": kmap.__file__,
                      "hits": sum(st.cache_hits.values()),
                      "misses": sum(st.cache_misses.values())}))
    """
)
EXP_LINE = "        d = np.exp(A[i, i])\n"
NEW_EXP_LINE = "        d = 2.0 * np.exp(A[i, i])\n"


def _run(root: Path, cache: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    r = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # the temporary copy ran, not the checkout or the installed package
    assert Path(res["file"]).resolve() == root / "ketasim" / "_kernels" / "map.py"
    return res


def test_an_edit_of_a_kernels_dependency_recompiles_it(tmp_path):
    """Two processes on one empty NUMBA_CACHE_DIR, then an edit of expm.py only
    (map.py, which defines the cached kernel, unchanged): numba's own stamp (a
    hash of map.py) would load the old kernel and return exp(-1); the kernel
    cache misses and returns the new code's 2 exp(-1)."""
    root = (tmp_path / "src").resolve()
    src = Path(ketasim.__file__).resolve().parent
    shutil.copytree(src, root / "ketasim", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"

    first, second = _run(root, cache), _run(root, cache)
    assert first["x"] == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert (first["misses"], first["hits"]) == (1, 0)  # compiled, cached
    assert second == first | {"misses": 0, "hits": 1}  # loaded, no compile
    assert any(cache.rglob("map._step-*.nbi"))  # in NUMBA_CACHE_DIR

    # a new time stamp with the same contents (a checkout back and forth): loaded
    os.utime(root / "ketasim" / "_kernels" / "map.py")
    os.utime(root / "ketasim" / "_kernels" / "expm.py")
    assert _run(root, cache) == second

    dep = root / "ketasim" / "_kernels" / "expm.py"
    text = dep.read_text(encoding="utf-8")
    assert text.count(EXP_LINE) == 1
    dep.write_text(text.replace(EXP_LINE, "        d = 2.0 * np.exp(A[i, i])\n"))
    edited = _run(root, cache)
    assert edited["x"] == pytest.approx(2.0 * math.exp(-1.0), rel=1e-15)
    assert (edited["misses"], edited["hits"]) == (1, 0)
    assert _run(root, cache) == edited | {"misses": 0, "hits": 1}


def test_kernels_and_only_kernels_get_the_kernel_stamp(tmp_path):
    for fn in (linear.block_linear, expm.expm_into, map.map_estimate, ltv.rhs_ltv):
        locator = fn._cache._impl.locator
        assert isinstance(locator, _cache.LOCATORS)
        assert locator.get_source_stamp() == ("ketasim._kernels", _cache.source_stamp())
    # a user's cached function elsewhere keeps numba's locator and stamp
    user = tmp_path / "user_kernel.py"
    user.write_text("def f(x):\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import user_kernel

        locator = caching.FunctionCache(user_kernel.f)._impl.locator
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("user_kernel", None)
    assert not isinstance(locator, _cache.LOCATORS)
    assert type(locator).__module__ == "numba.core.caching"


def test_the_stamp_covers_every_kernel_file():
    names = {p.name for p in _cache.kernel_files()}
    kernel_dir = Path(linear.__file__).resolve().parent
    assert names == {p.name for p in kernel_dir.glob("*.py")}
    assert {"linear.py", "expm.py", "_unrolled.py", "map.py", "ltv.py"} <= names


def _calls(fn: CPUDispatcher) -> list:
    code = fn.py_func.__code__
    return [fn.py_func.__globals__.get(n) for n in code.co_names]


def test_no_kernel_compiles_in_code_from_outside_the_kernel_directory():
    """The stamp hashes ketasim/_kernels only: every numba function a cached kernel
    calls must be defined there, and the kernel modules import nothing of ketasim
    outside it (a constant imported from elsewhere would be compiled in)."""
    kernel_dir = Path(linear.__file__).resolve().parent
    mods = [expm, linear, ltv, map, metrics, sys.modules["ketasim._kernels._unrolled"]]
    seen = 0
    for mod in mods:
        for fn in vars(mod).values():
            if not isinstance(fn, CPUDispatcher):
                continue
            for obj in _calls(fn):
                if isinstance(obj, CPUDispatcher):
                    seen += 1
                    path = Path(obj.py_func.__code__.co_filename).resolve()
                    assert path.parent == kernel_dir, (fn, obj)
                elif isinstance(obj, ModuleType):
                    assert obj.__name__.split(".")[0] in {"numpy", "numba", "math"}
        for node in ast.walk(ast.parse(Path(mod.__file__).read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), (mod.__name__, node.module)
                if node.level == 0:
                    assert not node.module.startswith("ketasim"), mod.__name__
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("ketasim") for a in node.names)
    assert seen > 20  # the walk did find the kernels' calls into one another


# a process that imported expm.py, then had its sources changed under it (a
# checkout or an upgrade while a notebook runs), then imported map.py: map._step
# compiles the old expm code it has in memory
MID_RUN_EDIT = textwrap.dedent(
    """
    import json
    from pathlib import Path
    import numpy as np
    from ketasim._kernels import expm
    p = Path(expm.__file__)
    p.write_text(p.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")
    from ketasim._kernels import map as kmap
    x = np.array([1.0])
    kmap._step(np.array([[-0.5]]), x, np.array([0.0]), 2.0, np.empty((2, 2)),
               np.empty((6, 2, 2)))
    print(json.dumps({"x": float(x[0])}))
    """
)


def test_a_kernel_compiled_after_its_sources_changed_mid_run_is_not_reused(tmp_path):
    """The kernel compiled in that process mixes old and new code; its cache entry
    must not be loaded by a later process, which has to compile the new code
    (2 exp(-1)), not return the old exp(-1)."""
    root = (tmp_path / "src").resolve()
    src = Path(ketasim.__file__).resolve().parent
    shutil.copytree(src, root / "ketasim", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"
    child = f"OLD, NEW = {EXP_LINE!r}, {NEW_EXP_LINE!r}\n"
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    r = subprocess.run(
        [sys.executable, "-c", child + MID_RUN_EDIT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(r.stdout.strip().splitlines()[-1])["x"] == pytest.approx(
        math.exp(-1.0), rel=1e-15
    )  # the old expm.py in memory
    later = _run(root, cache)
    assert later["x"] == pytest.approx(2.0 * math.exp(-1.0), rel=1e-15)
    assert (later["misses"], later["hits"]) == (1, 0)
