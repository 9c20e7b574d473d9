"""The rendered book as a reader's browser sees it: headless Chromium opens every page.

Builds on the HTML tests of ``test_book.py`` (its ``html`` fixture: ``LOSSDECAY_TEST_BOOK``, or a smoke
book built on the spot). Each page is loaded by Debian's ``chromium`` with ``--dump-dom`` (the DOM after
the page's scripts ran), then: the page loaded (it has its article), every figure the executed chapter
produced is an ``<img>`` of ``_images/`` whose file is there and not empty, no relative link points to a
missing file, no page shows a Python traceback, every formula was typeset by the MathJax the book serves
itself (no script from the network, no raw TeX left), and, at a 1280-pixel window, no code block scrolls
sideways. Without chromium these tests are skipped, except under ``CI=true``, where they fail
(``.ci/run`` installs chromium).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from html import unescape as html_unescape
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


def dump_dom(chromium, tmp_dir: Path, page: Path, *extra: str) -> str:
    """The DOM of ``page`` once its scripts ran; virtual time lets deferred ones (MathJax) finish first."""
    return browse(chromium, tmp_dir, page.resolve().as_uri(), "--dump-dom", "--virtual-time-budget=10000", *extra)


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
        found[name] = dump_dom(chromium, tmp, page)
    return found


#: The mime prefix of an output that myst-nb's glue stored without displaying it.
GLUED = "application/papermill.record/"


def executed_figures(html, name: str) -> int:
    """How many figures the executed chapter produced: image outputs of cells that are not removed, and
    figures glued with myst-nb's ``glue(..., display=False)`` (each chapter pastes its key figure into
    the "at a glance" box with ``{glue:figure}``, so it is shown there)."""
    nb = html.parent / "site" / "book" / f"{name}.ipynb"
    if not nb.is_file():
        pytest.fail(f"the executed chapter {nb} is not beside the built book")
    count = 0
    for cell in json.loads(nb.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-cell", "remove-output"} & set(tags):
            continue
        count += sum(any(k.startswith(("image/", GLUED + "image/")) for k in o.get("data", {}))
                     for o in cell.get("outputs", []))
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


# -- formulas -------------------------------------------------------------------------------------------
def _visible_text(dom: str) -> str:
    """The page's text outside code, scripts and styles (where TeX source may legitimately appear)."""
    dom = re.sub(r"(?is)<(script|style|pre|code|mjx-container)\b.*?</\1>", " ", dom)
    return re.sub(r"<[^>]+>", " ", dom)


def math_nodes(html, name: str) -> int:
    """How many formulas Sphinx wrote into the page (``math`` spans and blocks, before any script ran)."""
    return len(re.findall(r'class="math[ "]', page_path(html, name).read_text()))


def test_some_pages_have_math(html):
    assert sum(math_nodes(html, name) for name in PAGES) > 10, "no formulas at all: did the build change?"


@pytest.mark.parametrize("name", PAGES)
def test_formulas_are_typeset_offline(doms, html, name):
    static = page_path(html, name).read_text()
    remote = re.findall(r'<script[^>]+src="(?:https?:)?//[^"]+"', static)
    assert not remote, f"{name}: scripts loaded from the network: {remote}"
    expected = math_nodes(html, name)
    if not expected:
        pytest.skip(f"{name} has no formulas")
    mathjax = re.search(r'<script[^>]+src="([^"]*mathjax[^"]*)"', static)
    assert mathjax, f"{name}: no MathJax script"
    served = page_path(html, name).parent / unquote(urlsplit(mathjax.group(1)).path)
    assert served.is_file(), f"{name}: {mathjax.group(1)} is not in the built site"
    dom = doms[name]
    typeset = len(re.findall(r"<mjx-container\b", dom))
    assert typeset >= expected, f"{name}: {expected} formulas, {typeset} typeset by MathJax"
    assert "<mjx-merror" not in dom, f"{name}: MathJax reports a TeX error"
    text = _visible_text(dom)
    for raw in (r"\(", r"\[", "$$"):
        at = text.find(raw)
        assert at < 0, f"{name}: raw TeX {raw!r} shown: ...{' '.join(text[max(0, at - 80):at + 80].split())}..."
    dollar = re.search(r"\$[^$\s][^$]{0,80}?[\\^_{}][^$]{0,80}?\$", text)
    assert not dollar, f"{name}: raw TeX shown: {dollar.group(0)!r}"


# -- code that fits -------------------------------------------------------------------------------------
WINDOW = (1280, 900)
# Injected into a copy of each page: once fonts and MathJax are ready, every hidden cell is opened and each
# <pre> of the article is measured; the result is written into the DOM for --dump-dom to carry out.
_MEASURE = """
<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const typeset = window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve();
  Promise.all([document.fonts.ready, typeset]).then(() => setTimeout(() => {
    const found = [...document.querySelectorAll("article pre")].map(pre => ({
      where: pre.closest("div.cell_input") ? "code cell" : pre.closest("div.cell_output")
             ? "cell output" : "code block",
      scroll: pre.scrollWidth, client: pre.clientWidth,
      line: pre.textContent.split("\\n").reduce((a, b) => b.length > a.length ? b : a, ""),
    }));
    const root = document.documentElement;  // the page itself: a wide table or figure scrolls it
    found.push({where: "page", scroll: root.scrollWidth, client: root.clientWidth, line: ""});
    const out = document.createElement("script");
    out.type = "application/json"; out.id = "lossdecay-measured";
    out.textContent = JSON.stringify(found);
    document.body.appendChild(out);
  }, 100));
});
</script>
"""


@pytest.fixture(scope="module")
def code_widths(chromium, html, tmp_path_factory):
    """Every <pre> of every page at a 1280-pixel window: ``{page: [{where, scroll, client, line}]}``."""
    tmp = tmp_path_factory.mktemp("widths")
    found = {}
    for name in PAGES:
        page = page_path(html, name)
        probe = page.with_name(f"_measure-{name}.html")  # beside the page: its relative links still work
        probe.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
        try:
            dom = dump_dom(chromium, tmp, probe, f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars")
        finally:
            probe.unlink()
        result = re.search(r'<script type="application/json" id="lossdecay-measured">(.*?)</script>', dom, re.S)
        assert result, f"{name}: the measuring script left no result"
        found[name] = json.loads(html_unescape(result.group(1)))
    return found


@pytest.mark.parametrize("name", PAGES)
def test_no_code_scrolls_sideways_at_1280_pixels(code_widths, name):
    """Neither a code block nor the page itself (a table, a figure, a full-width cell) is wider than the
    window."""
    blocks = code_widths[name]
    shown = [b for b in blocks if b["client"] > 0]
    assert len(shown) == len(blocks), f"{name}: a <pre> was not laid out (a hidden cell did not open?)"
    wide = [b for b in blocks if b["scroll"] > b["client"]]
    assert not wide, f"{name}: {len(wide)} block(s) wider than the window at {WINDOW[0]} px, e.g. " + "; ".join(
        f"{b['where']} {b['scroll']} > {b['client']} px: {b['line'].strip()[:100]!r}" for b in wide[:5])
