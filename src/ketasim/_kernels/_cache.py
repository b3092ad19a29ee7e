"""Numba's disk cache for ketasim's kernels, invalidated by a change to any of them.

numba's ``cache=True`` keys a cached function on a hash of the one file that
defines it. A kernel compiles in the functions it calls from other files
(``linear.block_linear`` inlines the step loops of ``_unrolled.py`` and the
propagators of ``expm.py``; ``map.py`` calls ``expm.expm_into``), and when only such
a file changes (a branch switch, an edit, a partial upgrade) numba would load the
old machine code and return the old code's numbers without a word (numba's
documentation lists this among the limitations of its cache).

:func:`register` puts cache locators first in numba's list that accept only
functions defined in a file of this directory (``ketasim/_kernels``) and give them
a source stamp that is a SHA-256 of every ``*.py`` file here (names and contents):
a change to any of them makes numba's index of every kernel stale, so each one
compiles again once and is cached anew. Where the cache lives is unchanged
(``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` next to the sources, else the
user-wide directory): the locators are numba's own with only the stamp replaced.
Every other function, the user's included, gets numba's locators as before.
A kernel module imported after the sources changed under a running process
(a checkout or an upgrade while a notebook runs) may compile in old code still in
memory: its kernels get a stamp no later process computes, so they are never loaded.

No kernel calls numba code outside this directory (``tests/test_kernel_cache.py``
checks it). The ODE kernels are cached from module files written by ``ode.py``
whose names carry a hash of their text, which already includes what they compile
in. ``NUMBA_CACHE_LOCATOR_CLASSES``, when set, replaces numba's list and so these
locators too.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from numba.core import caching

KERNEL_DIR = Path(__file__).resolve().parent

# numba 0.59 names the locators with a leading underscore, 0.68 without
_IMPL = getattr(caching, "CacheImpl", None) or caching._CacheImpl
_BASES = [
    getattr(caching, name, None) or getattr(caching, "_" + name)
    for name in (
        "UserProvidedCacheLocator",
        "InTreeCacheLocator",
        "UserWideCacheLocator",
    )
]


@functools.cache
def _files() -> tuple[Path, ...]:
    return tuple(sorted(KERNEL_DIR.glob("*.py")))


def kernel_files() -> list[Path]:
    """The files whose contents the kernels' source stamp hashes, sorted by name
    (listed once per process)."""
    return list(_files())


@functools.lru_cache(maxsize=8)
def _digest(stats: tuple) -> str:
    # keyed on every file's (name, mtime, size): re-hashed only when one changes
    h = hashlib.sha256()
    for name, _mtime, _size in stats:
        h.update(name.encode() + b"\0")
        h.update((KERNEL_DIR / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def source_stamp() -> str:
    """SHA-256 (hex) of the names and contents of :func:`kernel_files`."""
    stats = []
    for path in _files():
        st = path.stat()
        stats.append((path.name, st.st_mtime_ns, st.st_size))
    return _digest(tuple(stats))


@functools.lru_cache(maxsize=64)
def _in_kernel_dir(py_file: str) -> bool:
    try:
        return Path(os.path.realpath(py_file)).parent == KERNEL_DIR
    except (OSError, ValueError):
        return False


#: the stamp when this process stamped its first kernel
_FIRST: dict[str, str] = {}


class _KernelStamp:
    """Mixin over one of numba's source-file locators: only for files of
    ``ketasim/_kernels``, stamped with :func:`source_stamp`."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _in_kernel_dir(py_file):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        try:
            stamp = source_stamp()
        except OSError:  # a file unreadable: numba's own stamp of the defining file
            return super().get_source_stamp()
        first = _FIRST.setdefault("stamp", stamp)
        if stamp != first:
            # the sources changed after this process imported its first kernel: a
            # kernel compiled now may inline old code still in memory, so it gets
            # a stamp no later process computes and is never loaded again
            return ("ketasim._kernels", stamp, "changed mid-run", first, os.getpid())
        return ("ketasim._kernels", stamp)


LOCATORS = tuple(
    type(f"Kernel{base.__name__.lstrip('_')}", (_KernelStamp, base), {})
    for base in _BASES
)


def register() -> None:
    """Put :data:`LOCATORS` first in numba's locator list (once). Must run before
    the kernel modules are imported: numba picks a function's locator when the
    decorator runs."""
    classes = _IMPL._locator_classes
    if classes[: len(LOCATORS)] != list(LOCATORS):
        _IMPL._locator_classes = [*LOCATORS, *(c for c in classes if c not in LOCATORS)]
