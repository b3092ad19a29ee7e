"""The user guide's pasted outputs are what its code prints now.

Each page's Python blocks run in order in one namespace, in a fresh working
directory; a fenced block that directly follows a Python block is that block's
printed output and must equal it (line by line, trailing spaces aside). ``>>>``
blocks run as doctests. A CSV shown on the page (a block starting ``ID,``) is
written to the file the next Python block reads. The pages checked here are the
ones whose outputs no other test reads; tests/test_docs.py runs the README's quick
start and the pages without pasted output.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import pytest

import ketasim as ks

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide"
PAGES = [
    "covariates.md",
    "effects.md",
    "estimation.md",
    "planning.md",
    "routes.md",
    "uncertainty.md",
]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


@pytest.mark.parametrize("page", PAGES)
def test_guide_page_prints_what_it_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```(\w*)\n(.*?)```", (GUIDE / page).read_text(), re.S)
    namespace: dict = {"ks": ks}
    checked = 0
    for i, (lang, code) in enumerate(blocks):
        where = f"docs/guide/{page}, block {i + 1}"
        if lang != "python":
            if code.startswith("ID,") and i + 1 < len(blocks):
                csv = re.search(r"\"(\w+\.csv)\"", blocks[i + 1][1])
                if csv:
                    (tmp_path / csv.group(1)).write_text(code)
            continue
        if code.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(code, namespace, where, page, 0)
            test.globs = namespace
            runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
            report = io.StringIO()
            runner.run(test, out=report.write, clear_globs=False)
            assert runner.failures == 0, report.getvalue()
            checked += 1
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, where, "exec"), namespace)
        follows = blocks[i + 1] if i + 1 < len(blocks) else None
        if follows is not None and follows[0] != "python" and out.getvalue():
            assert _lines(out.getvalue()) == _lines(follows[1]), where
            checked += 1
    assert checked, f"docs/guide/{page} shows no output to check"
