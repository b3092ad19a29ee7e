"""The documentation: generated files in sync with their sources, the README's quick
start printing what the README says, no reference to files outside the repository,
and the site building in strict mode (broken links, missing pages and unresolved
references fail it)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ketasim as ks
from ketasim import docs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REGENERATE = "run `python -m ketasim.docs` in the repository root"


def _between(text: str, start: str, end: str) -> str:
    i, j = text.index(start), text.index(end)
    return text[i + len(start) : j]


# ---- generated files ----------------------------------------------------------------
def test_readme_models_table_is_generated_from_the_model_files():
    table = _between(README.read_text(), docs.README_TABLE_START, docs.README_TABLE_END)
    assert table.strip() == docs.models_table("docs/models/").strip(), REGENERATE


def test_models_table_rows_state_known_facts():
    """Facts read from the papers (not from the generator): one row per bundled
    model; the esketamine nasal spray of Perez-Ruixo 2021 absorbs per device; Domino
    has no IIV; Simons 2022 has IOV; the default model is marked."""
    rows = {
        re.search(r"`(\w+)`", r).group(1): r
        for r in docs.models_table().splitlines()[2:]
    }
    assert sorted(rows) == sorted(ks.list_models())
    cells = {k: [c.strip() for c in r.strip("|").split("|")] for k, r in rows.items()}
    assert "intranasal (per device)" in cells["perez_ruixo_2021"][3]
    assert cells["domino"][4] == "none"  # IIV column
    assert cells["simons_2022"][5] != "none"  # IOV column
    assert "(**default**)" in cells[ks.DEFAULT_MODEL][0]
    assert all(
        "(**default**)" not in c[0] for k, c in cells.items() if k != ks.DEFAULT_MODEL
    )


def test_generated_site_files_are_current(tmp_path):
    docs.write_models_index(tmp_path / "models")
    docs.write_api_reference(tmp_path / "api.md")
    for rel in ("models/index.md", "models/.nav.yml", "api.md"):
        assert (ROOT / "docs" / rel).read_text() == (tmp_path / rel).read_text(), (
            f"docs/{rel} is stale: {REGENERATE}"
        )


def test_every_bundled_model_has_a_page_and_figures():
    for name in ks.list_models():
        model = ks.load_model(name)
        page = ROOT / "docs" / "models" / f"{name}.md"
        assert page.is_file(), f"no {page}: run `ketasim docs --out docs`"
        for route in model.routes:
            assert (ROOT / "docs" / "models" / f"{name}-{route}.png").is_file()


def test_short_population_keeps_the_first_clause():
    assert docs._short_population("54 children, ED sedation; 8.3 y") == "54 children"
    assert docs._short_population("adults (paper not seen)") == "adults"
    assert docs._short_population("healthy adults") == "healthy adults"


def test_update_readme_refuses_a_file_without_the_markers(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# no table here\n")
    with pytest.raises(ValueError, match="has no generated models table: expected"):
        docs.update_readme(path)
    path.write_text(f"a\n{docs.README_TABLE_START}\nold\n{docs.README_TABLE_END}\nb\n")
    assert docs.update_readme(path) is True
    assert docs.update_readme(path) is False  # idempotent
    text = path.read_text()
    assert text.startswith("a\n") and text.endswith(f"{docs.README_TABLE_END}\nb\n")
    assert "old" not in text


# ---- the README's quick start -----------------------------------------------
def test_readme_quick_start_prints_what_the_readme_shows():
    section = _between(
        README.read_text(),
        "<!-- --8<-- [start:quickstart] -->",
        "<!-- --8<-- [end:quickstart] -->",
    )
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    (lang, code), (_, shown) = blocks
    assert lang == "python"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md quick start", "exec"), {})
    assert out.getvalue().strip() == shown.strip()


#: guide pages whose Python blocks run as written, in order, sharing one namespace
#: per page (pages with pasted output are checked by their authors' tests)
RUNNABLE_GUIDE = ["dosing.md", "protocols.md", "populations.md", "metrics.md"]


@pytest.mark.parametrize("page", RUNNABLE_GUIDE)
def test_guide_examples_run(page):
    text = (ROOT / "docs" / "guide" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/guide/{page}, block {i + 1}", "exec"), namespace)


# ---- nothing refers to files outside the repository ---------------------------------
# built from pieces so that this file does not match itself
_OUTSIDE = re.compile(
    "|".join(
        [
            r"\bDESIGN" + r"(\.md)?\b",
            r"\bLITERATURE" + r"(\.md)?\b",
            r"\.\./" + "shared",
            r"/work/" + "shared",
            "\u00a7",  # section sign: the outside documents were cited by section
        ]
    )
)


def _tracked_text_files():
    try:
        names = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        names = [
            str(p.relative_to(ROOT))
            for d in ("src", "tests", "benchmarks", "examples", "models", "docs")
            for p in (ROOT / d).rglob("*")
            if p.is_file()
        ] + [p.name for p in ROOT.glob("*.md")]
    for name in names:
        path = ROOT / name
        if path.suffix in {".png", ".nc", ".zarr"} or not path.is_file():
            continue
        try:
            yield name, path.read_text()
        except UnicodeDecodeError:
            continue


def test_nothing_refers_to_files_outside_the_repository():
    hits = [
        f"{name}:{i}: {line.strip()[:120]}"
        for name, text in _tracked_text_files()
        for i, line in enumerate(text.splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not hits, "references to documents outside the repository:\n" + "\n".join(
        hits
    )


# ---- the site --------------------------------------------------------------------
def test_site_builds_strictly_and_the_guide_picks_up_new_pages(tmp_path):
    """`mkdocs build --strict` on a copy of docs/ with one extra guide page: the build
    passes (every link, anchor, snippet and API reference resolves) and the new page
    is in the navigation without any nav file naming it."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    assert set(config["validation"].values()) == {"warn"}  # warnings fail (strict)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")  # the notebook link: its file
    (tmp_path / "docs" / "guide" / "zz-added-by-the-test.md").write_text(
        "# Added by the test\n\nSee [doses](dosing.md).\n"
    )
    config["docs_dir"] = str(tmp_path / "docs")
    config["site_dir"] = str(tmp_path / "site")
    for ext in config["markdown_extensions"]:
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            ext["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            handler = plugin["mkdocstrings"]["handlers"]["python"]
            handler["paths"] = [str(ROOT / "src")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    home = (tmp_path / "site" / "index.html").read_text()
    assert 'href="guide/zz-added-by-the-test/"' in home
    assert "Added by the test" in home
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    missing = [
        name
        for name in ks.__all__
        if callable(getattr(ks, name))
        and f'id="ketasim.{name}"' not in api
        and f'id="ketasim.{name}.{name}"' not in api
    ]
    assert not missing, f"not on the API page: {missing}"
    assert "Relative tolerance, in (0, 1)." in api  # ODE's docstring, rendered
    nb = (tmp_path / "site" / "examples" / "dose_planning" / "index.html").read_text()
    assert "sampling: venous | grade: C" in nb  # a stored output of its first cell
