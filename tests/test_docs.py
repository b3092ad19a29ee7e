"""The documentation: generated files in sync with their sources, the README's quick
start printing what the README says, no reference to files outside the repository,
and the site building in strict mode (broken links, missing pages and unresolved
references fail it)."""

from __future__ import annotations

import colorsys
import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock
from PIL import Image

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


def test_ci_runs_exactly_the_readme_test_command():
    section = README.read_text().split("`.ci/run` runs exactly this:", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == command, (
        f".ci/run ends with {ci[-1]!r}, the README has {command!r}"
    )
    assert "scripts/install-test-deps.sh" in command


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
ADDED_PAGE = "zz-added-by-the-test.md"


def _build_site(out: Path) -> dict:
    """`mkdocs build --strict` on a copy of docs/ with one extra guide page, into
    out/site; returns the exit code and output (the tests assert on them)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    shutil.copytree(ROOT / "docs", out / "docs")  # the notebook link: its file
    (out / "docs" / "guide" / ADDED_PAGE).write_text(
        "# Added by the test\n\nSee [doses](dosing.md).\n"
    )
    config["docs_dir"] = str(out / "docs")
    config["site_dir"] = str(out / "site")
    for ext in config["markdown_extensions"]:
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            ext["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            handler = plugin["mkdocstrings"]["handlers"]["python"]
            handler["paths"] = [str(ROOT / "src")]
    (out / "mkdocs.yml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=out,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return {
        "returncode": run.returncode,
        "output": run.stdout + run.stderr,
        "site": str(out / "site"),
    }


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> dict:
    """The site, built once per test run. Under pytest-xdist every worker would run a
    session fixture: the first builds into the run's shared temporary directory
    under a file lock, the others read its result (pytest-xdist's documented
    recipe)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _build_site(tmp_path_factory.mktemp("site-build"))
    shared = tmp_path_factory.getbasetemp().parent  # one per run, all workers
    record = shared / "site-build.json"
    with FileLock(str(shared / "site-build.lock")):
        if not record.is_file():
            out = shared / "site-build"
            out.mkdir()
            record.write_text(json.dumps(_build_site(out)))
        return json.loads(record.read_text())


def test_site_builds_strictly_and_the_guide_picks_up_new_pages(built_site):
    """`mkdocs build --strict` on a copy of docs/ with one extra guide page: the build
    passes (every link, anchor, snippet and API reference resolves) and the new page
    is in the navigation without any nav file naming it."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    assert set(config["validation"].values()) == {"warn"}  # warnings fail (strict)
    assert built_site["returncode"] == 0, built_site["output"]
    site = Path(built_site["site"])
    home = (site / "index.html").read_text()
    assert 'href="guide/zz-added-by-the-test/"' in home
    assert "Added by the test" in home
    api = (site / "api" / "index.html").read_text()
    missing = [
        name
        for name in ks.__all__
        if callable(getattr(ks, name))
        and f'id="ketasim.{name}"' not in api
        and f'id="ketasim.{name}.{name}"' not in api
    ]
    assert not missing, f"not on the API page: {missing}"
    assert "Relative tolerance, in [2.2e-14, 1)" in api  # ODE's docstring, rendered
    nb = (site / "examples" / "dose_planning" / "index.html").read_text()
    assert "sampling: venous | grade: C" in nb  # a stored output of its first cell


# ---- the front page in a real browser ----------------------------------------------
#: where a Chromium is looked for, in order (KETASIM_CHROMIUM first); the same list
#: as scripts/install-test-deps.sh, which installs Debian's chromium when none is found
CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
INSTALL_BROWSER = (
    "run `bash scripts/install-test-deps.sh` (it installs Debian's chromium package "
    "with apt-get), or install Chromium or Chrome yourself, or set "
    "KETASIM_CHROMIUM=/path/to/chrome"
)
#: Material for MkDocs' `primary: indigo` header colour, as its palette stylesheet
#: defines it: hsl(231, 48%, 48%) (mkdocs-material, src/templates/assets/stylesheets/
#: palette/_primary.scss); converted here, not read from the page
INDIGO = tuple(round(255 * c) for c in colorsys.hls_to_rgb(231 / 360, 0.48, 0.48))
VIEWPORT = {"width": 1280, "height": 900}


def _chromium() -> str:
    named = os.environ.get("KETASIM_CHROMIUM")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            pytest.fail(f"KETASIM_CHROMIUM={named} is not an executable file")
        return named
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "no Chromium for the screenshot check of the documentation site (looked for "
        f"KETASIM_CHROMIUM and {', '.join(CHROMIUM_NAMES)} on PATH): {INSTALL_BROWSER}"
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def served_site(built_site):
    """The built site over HTTP on the loopback interface (as `mkdocs serve` shows
    it: directory URLs resolve), for the length of one test."""
    assert built_site["returncode"] == 0, (
        "the site did not build:\n" + (built_site["output"])
    )
    handler = functools.partial(_QuietHandler, directory=built_site["site"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _render_front_page(url: str, browser_path: str, png_path: Path) -> dict:
    """Load the front page in headless Chromium (the system's, through Playwright),
    with requests to any other host refused (the test must not depend on the
    network: the theme's web font falls back to a system font), take a screenshot of
    the first screen and read the rendered DOM."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright is not installed: run `bash scripts/install-test-deps.sh` (or "
            'pip install -e ".[test]")'
        )
    seen: dict = {"external": [], "failed": [], "errors": []}

    def route(request_route):
        if request_route.request.url.startswith(url):
            request_route.continue_()
        else:
            seen["external"].append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", route)
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on(
                "response",
                lambda r: r.status >= 400 and seen["failed"].append((r.url, r.status)),
            )
            page.on(
                "requestfailed",
                lambda r: (
                    r.url.startswith(url) and seen["failed"].append((r.url, r.failure))
                ),
            )
            page.goto(url, wait_until="load", timeout=120_000)
            page.screenshot(path=str(png_path))
            seen["dom"] = page.evaluate(
                """() => ({
                title: document.title,
                h1: document.querySelector("h1")?.textContent.trim(),
                header: document.querySelector(".md-header")?.getBoundingClientRect()
                    .height,
                nav: [...document.querySelectorAll(
                    "nav.md-nav--primary .md-nav__link")].map(
                    (a) => a.textContent.trim()),
                images: [...document.images].map((i) => ({
                    src: i.getAttribute("src"), complete: i.complete,
                    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                    shownWidth: i.getBoundingClientRect().width})),
            })"""
            )
        finally:
            browser.close()
    return seen


def test_front_page_renders_in_a_headless_browser(served_site, tmp_path):
    """The front page as a reader sees it: headless Chromium loads the built site, the
    screenshot is a real page (not blank, the theme's indigo header painted), and the
    rendered DOM has the title, the navigation of docs/.nav.yml and the demo figure,
    loaded at its file's size. Every file the page asks for is served."""
    png_path = tmp_path / "front-page.png"
    seen = _render_front_page(served_site, _chromium(), png_path)
    where = f"(screenshot: {png_path})"

    # the screenshot: a PNG of the viewport, with content, the header in indigo
    png = png_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", where
    assert len(png) > 30_000, f"{len(png)} bytes: a near-empty page {where}"
    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape == (VIEWPORT["height"], VIEWPORT["width"], 3), where
    grey = pixels.mean(axis=2)
    assert grey.std() > 20.0, f"pixel standard deviation {grey.std():.1f} {where}"
    dark = (grey < 128).mean()  # text, the header: a blank page has none
    assert 0.02 < dark < 0.6, f"{dark:.1%} of pixels dark {where}"
    dom = seen["dom"]
    assert 40 <= dom["header"] <= 80, dom["header"]
    band = pixels[: int(dom["header"]) - 4]  # above the header's shadow
    indigo = (np.abs(band - INDIGO).max(axis=2) <= 3).mean()
    assert indigo > 0.7, f"{indigo:.0%} of the header is {INDIGO} {where}"
    assert (np.abs(pixels[200:] - INDIGO).max(axis=2) <= 3).mean() < 0.01, where

    # the rendered DOM
    assert dom["title"] == "ketasim" and dom["h1"].startswith("ketasim"), dom
    labels = [
        next(iter(entry)) if isinstance(entry, dict) else None
        for entry in yaml.safe_load((ROOT / "docs" / ".nav.yml").read_text())["nav"]
    ]
    missing = [x for x in labels if x is not None and x not in dom["nav"]]
    assert not missing, f"not in the navigation: {missing}; it has {dom['nav']}"
    assert "Getting started" in dom["nav"]
    headings = [  # a page that includes its text (a snippet) has no heading here
        re.search(r"^# (.+)$", p.read_text(), flags=re.M)
        for p in (ROOT / "docs" / "guide").glob("*.md")
    ]
    guide_titles = {h.group(1).strip() for h in headings if h} | {"Added by the test"}
    assert len(guide_titles) >= 10
    assert guide_titles <= set(dom["nav"]), guide_titles - set(dom["nav"])
    figure = [i for i in dom["images"] if i["src"] == "ketasim-demo.png"]
    with Image.open(ROOT / "docs" / "ketasim-demo.png") as image:
        width, height = image.size
    assert len(figure) == 1, dom["images"]
    assert figure[0]["complete"], figure
    loaded = (figure[0]["naturalWidth"], figure[0]["naturalHeight"])
    assert loaded == (width, height), f"the figure loaded as {loaded} px: {figure}"
    assert figure[0]["shownWidth"] > 400, figure  # shown, at a readable width

    # nothing of the site missing or broken; the only other host is the web font's
    assert not seen["failed"], seen["failed"]
    assert not seen["errors"], seen["errors"]
    assert all(u.startswith("https://fonts.googleapis.com/") for u in seen["external"])
