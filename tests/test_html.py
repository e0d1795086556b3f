"""Checks on the built book (run by `make test` after the strict build).

Marked ``book``: they read ``_build/html`` and fail, not skip, when it is missing.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from html import unescape
from pathlib import Path

import nbformat
import pytest

from mmmlib.book import Project
from mmmlib.results import repo_root

pytestmark = pytest.mark.book

ROOT = repo_root()
HTML = ROOT / "_build" / "html"
PROJECT = Project(ROOT)
SMART_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`:]+)(?::[^`]*)?`")


def html_of(rel: str) -> str:
    path = HTML / rel
    assert path.is_file(), f"{path} is missing: build the book first (make html)"
    text = unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))
    # Sphinx's smartquotes typeset ' and " as curly quotes; glued text is compared in plain quotes
    return text.translate(SMART_QUOTES)


def chapter_ids() -> list[str]:
    return [c.name for c in PROJECT.chapters()]


@pytest.mark.parametrize("name", chapter_ids())
def test_chapter_page_shows_title_and_every_glued_number(name):
    ch = PROJECT.chapter(name)
    text = html_of(f"book/chapters/{name}.html")
    assert ch.title() in text
    nb = nbformat.read(ch.source, as_version=4)
    keys = {k for c in nb.cells if c.cell_type == "markdown" for k in GLUE_ROLE.findall(c.source)}
    assert keys, f"{name} glues no number into its text"
    results = json.loads((PROJECT.results / f"{name}.json").read_text())["results"]
    for key in sorted(keys):
        assert key in results, f"{name} glues {key}, which is not in its results file"
        assert results[key]["display"] in text, f"{key} = {results[key]['display']} not shown in {name}.html"


def test_results_page_lists_every_key():
    text = html_of("book/results.html")
    for name in chapter_ids():
        results = json.loads((PROJECT.results / f"{name}.json").read_text())["results"]
        for key, r in results.items():
            assert key in text and r["display"] in text


def test_reproduce_and_cite_pages():
    repro = html_of("book/reproduce.html")
    assert "make book" in repro and "make test" in repro
    rows = re.findall(r"<tr.*?</tr>", (HTML / "book" / "reproduce.html").read_text(encoding="utf-8"), re.S)
    for name in chapter_ids():
        row = [r for r in rows if PROJECT.chapter(name).title() in unescape(r)]
        assert row, f"{name} is missing from the Reproduce page"
        assert re.search(r">\s*fresh\s*<", row[0]), f"{name} is not shown as fresh"
    cite = html_of("book/cite.html")
    assert "@book{mmm_thesis" in cite and "@incollection{mmm_thesis_ch00" in cite


def test_no_page_loads_mathjax_from_a_cdn():
    for page in HTML.rglob("*.html"):
        src = page.read_text(encoding="utf-8")
        for m in re.finditer(r'<script[^>]+src="([^"]+)"', src):
            assert "mathjax" not in m.group(1).lower() or not m.group(1).startswith("http"), (page, m.group(1))
    assert (HTML / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()


# ------------------------------------------------------------------ browser
def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def render(url: str, screenshot: Path) -> str:
    """The DOM after scripts ran (MathJax typesets on load), plus a screenshot for people."""
    exe = chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make browser-deps installs Debian's package)")
        pytest.skip("chromium not installed; `make test` installs it where it can")
    base = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", "--virtual-time-budget=15000", "--window-size=1280,2000",
    ]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [*base, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [*base, f"--user-data-dir={profile}", f"--screenshot={screenshot}", url],
            capture_output=True, text=True, timeout=120, check=True,
        )
    return dom


@pytest.mark.browser
def test_front_page_renders_math_in_a_browser(server):
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    dom = render(f"{server}/book/intro.html", shots / "intro.png")
    assert "mjx-container" in dom, "MathJax did not typeset the front page"
    assert "Deep and differentiable marketing-mix models" in dom
    assert (shots / "intro.png").stat().st_size > 10_000


@pytest.mark.browser
def test_chapter_renders_figures_and_math_in_a_browser(server):
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    name = chapter_ids()[0]
    dom = render(f"{server}/book/chapters/{name}.html", shots / f"{name}.png")
    assert dom.count("mjx-container") >= 2, "MathJax did not typeset the chapter's equations"
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    assert len(images) >= 3, "the chapter shows fewer than three figures"
    for src in images:
        assert (HTML / "book" / "chapters" / src).resolve().is_file(), src
