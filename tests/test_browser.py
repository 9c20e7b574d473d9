"""The rendered book as a reader's browser sees it: headless Chromium opens every page.

Builds on the HTML tests of ``test_book.py`` (its ``html`` fixture: ``LOSSDECAY_TEST_BOOK``, or a smoke
book built on the spot). Each page is loaded by Debian's ``chromium`` with ``--dump-dom`` (the DOM after
the page's scripts ran), then: the page loaded (it has its article), every figure the executed chapter
produced is an ``<img>`` of ``_images/`` whose file is there and not empty, no relative link points to a
missing file, and no page shows a Python traceback. Without chromium these tests are skipped, except
under ``CI=true``, where they fail (``.ci/run`` installs chromium).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import test_book

CHAPTERS = test_book.CHAPTERS
html = test_book.html  # the fixture these tests build on: the built book's HTML folder

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
PAGES = ["intro"] + CHAPTERS
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|-{20,}\s*\w+(Error|Exception)\b")


def find_chromium():
    """The chromium executable, or None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("chromium is not installed, and under CI=true the browser checks must run: "
                    "`apt-get install -y chromium` (.ci/run does this)")
    pytest.skip("chromium is not installed (`apt-get install -y chromium`); the browser checks are skipped "
                "outside CI")


def browse(chromium, tmp_dir: Path, url: str, *extra: str, timeout: float = 120) -> str:
    """Load ``url`` in a fresh headless Chromium profile and return its stdout (the DOM with --dump-dom)."""
    profile = tmp_dir / f"profile-{len(list(tmp_dir.glob('profile-*')))}"
    out = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"chromium failed on {url}: {out.stderr[-2000:]}"
    return out.stdout


def page_path(html, name: str) -> Path:
    return html / "book" / f"{name}.html"


@pytest.fixture(scope="module")
def doms(chromium, html, tmp_path_factory):
    """The DOM of every page, as Chromium built it."""
    tmp = tmp_path_factory.mktemp("chromium")
    found = {}
    for name in PAGES:
        page = page_path(html, name)
        assert page.is_file(), f"{page} was not built"
        found[name] = browse(chromium, tmp, page.resolve().as_uri(), "--dump-dom")
    return found


def executed_figures(html, name: str) -> int:
    """How many figures the executed chapter produced (image outputs of cells that are not removed)."""
    nb = html.parent / "site" / "book" / f"{name}.ipynb"
    if not nb.is_file():
        pytest.fail(f"the executed chapter {nb} is not beside the built book")
    count = 0
    for cell in json.loads(nb.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-cell", "remove-output"} & set(tags):
            continue
        count += sum(any(k.startswith("image/") for k in o.get("data", {})) for o in cell.get("outputs", []))
    return count


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_without_traceback(doms, name):
    dom = doms[name]
    assert "<article" in dom and "bd-article" in dom, f"{name}: no article in the page Chromium loaded"
    assert re.search(r"<h1[^>]*>", dom), f"{name}: no title"
    text = re.sub(r"<[^>]+>", " ", dom)
    match = TRACEBACK.search(text)
    assert not match, f"{name}: the page shows a Python traceback: ...{text[max(0, match.start() - 200):match.end() + 200]}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_figure_the_chapter_produced_is_shown(doms, html, name):
    page = page_path(html, name)
    images = [src for src in re.findall(r'<img[^>]+src="([^"]+)"', doms[name]) if "_images/" in src]
    produced = executed_figures(html, name)
    assert produced > 0, f"{name}: the executed chapter produced no figure"
    assert len(images) == produced, f"{name}: {produced} figures produced, {len(images)} shown"
    for src in images:
        path = Path(unquote(urlsplit(src).path)) if src.startswith("file:") else (page.parent / unquote(src))
        assert path.is_file() and path.stat().st_size > 5000, f"{name}: figure {src} missing or empty"


@pytest.mark.parametrize("name", PAGES)
def test_no_internal_link_is_broken(doms, html, name):
    page = page_path(html, name)
    hrefs = re.findall(r'<a[^>]+href="([^"]+)"', doms[name])
    checked = 0
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme in ("http", "https", "mailto", "javascript", "data") or not (parts.path or parts.scheme):
            continue
        path = Path(unquote(parts.path)) if parts.scheme == "file" else (page.parent / unquote(parts.path))
        assert path.exists(), f"{name}: link {href} points to a missing {path}"
        checked += 1
    assert checked > 0, f"{name}: no internal link at all (the navigation did not render?)"


def test_verdict_links_each_chapter_with_claims(doms):
    if "verdict" not in doms:
        pytest.skip("no Verdict chapter in this book")
    table_links = set(re.findall(r'<td[^>]*>\s*<p>\s*<a[^>]+href="([a-z_]+)\.html', doms["verdict"]))
    table_links |= set(re.findall(r'<td[^>]*>\s*<a[^>]+href="([a-z_]+)\.html', doms["verdict"]))
    assert table_links, "the Verdict table links to no chapter"
    assert table_links <= set(CHAPTERS), f"links to unknown chapters: {table_links - set(CHAPTERS)}"


def test_front_page_leads_to_the_intro(chromium, html, tmp_path):
    dom = browse(chromium, tmp_path, (html / "index.html").resolve().as_uri(), "--dump-dom",
                 "--virtual-time-budget=5000")
    assert "bd-article" in dom and re.search(r"<h1[^>]*>Forget the learning rate", dom), \
        "index.html does not lead to the book's front page"


def test_screenshot_of_a_page_is_not_blank(chromium, html, tmp_path):
    shot = tmp_path / "intro.png"
    browse(chromium, tmp_path, page_path(html, "intro").resolve().as_uri(), f"--screenshot={shot}",
           "--window-size=1200,900", "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 20000, "the screenshot of the front page is (nearly) blank"
