"""The book's shape: paired chapters, parameters cells, and the HTML built from executed chapters.

`make test` builds the smoke-profile book first and points LOSSDECAY_TEST_BOOK at its HTML; run alone,
the HTML tests build it themselves (about a minute).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from lossdecay_lib.chapters import build_book, execute_chapter, list_chapters, run_chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = list_chapters(ROOT)


def test_toc_lists_the_chapters_in_order():
    assert CHAPTERS[:2] == ["schedules", "equivalence"]


@pytest.mark.parametrize("name", CHAPTERS)
def test_pair_agrees(name):
    py = jupytext.read(ROOT / "book" / f"{name}.py")
    nb = jupytext.read(ROOT / "book" / f"{name}.ipynb")
    cells = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]  # noqa: E731
    assert cells(py) == cells(nb), f"book/{name}.py and .ipynb differ: run `make sync`"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_a_parameters_cell_with_profile_and_seed(name):
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = params[0].source
    assert re.search(r'^profile = "auto"', src, re.M) and re.search(r"^seed = \d+", src, re.M)


#: Pages that are about the book, not a result: no "at a glance" box.
NO_GLANCE = {"reproducing"}
FOLDED = {"hide-input", "remove-cell", "remove-input"}


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_opens_with_its_result_and_folds_its_setup(name):
    """The shape of QuantEcon's and d2l's pages: the first text cell says the claim and, in an "At a
    glance" box, the result; the code cells before the second text cell (install, parameters, imports,
    bookkeeping) are folded away."""
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    text = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
    if name not in NO_GLANCE:
        assert "{admonition} At a glance" in nb.cells[text[0]].source, f"book/{name}.py: no 'At a glance' box"
    setup = [c for c in nb.cells[:text[1]] if c.cell_type == "code"]
    shown = [c.source.splitlines()[0] for c in setup if not FOLDED & set(c.metadata.get("tags", []))]
    assert setup and not shown, f"book/{name}.py: setup cells shown unfolded: {shown}"


def test_papermill_never_writes_over_the_paired_source(tmp_path):
    with pytest.raises(ValueError, match="refusing to write"):
        execute_chapter(ROOT, "schedules", ROOT / "book", {"profile": "smoke"})
    with pytest.raises(ValueError, match="unknown chapter"):
        run_chapters(ROOT, tmp_path, {"profile": "smoke"}, only=["nonexistent"])


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    given = os.environ.get("LOSSDECAY_TEST_BOOK")
    if given:
        path = (ROOT / given).resolve()
        assert (path / "index.html").is_file(), f"LOSSDECAY_TEST_BOOK={given} holds no built book"
        return path
    out = tmp_path_factory.mktemp("book")
    saved = os.environ.get("LOSSDECAY_RECORDS")
    os.environ["LOSSDECAY_RECORDS"] = str(out / "records")  # never into the committed records/
    try:
        run_chapters(ROOT, out / "executed", {"profile": "smoke"})
    finally:
        if saved is None:
            os.environ.pop("LOSSDECAY_RECORDS")
        else:
            os.environ["LOSSDECAY_RECORDS"] = saved
    return build_book(ROOT, out / "executed", out)


@pytest.mark.parametrize("name", CHAPTERS)
def test_rendered_chapter_shows_its_figures_and_run_facts(html, name):
    page = html / "book" / f"{name}.html"
    assert page.is_file()
    text = page.read_text()
    images = re.findall(r'<img[^>]+src="([^"]+)"', text)
    figures = [src for src in images if "_images/" in src]
    assert figures, f"{name}: no figure on the page"
    for src in figures:
        assert (page.parent / src).resolve().stat().st_size > 5000, src
    assert "Traceback (most recent call last)" not in text
    assert "|---|" not in text and "|\u2014|" not in text, "a Markdown table output was not rendered as a table"
    assert "profile: smoke" in text and "Executed in" in text and "lossdecay_lib 0.1.0" in text
    assert "injected-parameters" not in text and "# Parameters" not in text
    assert re.search(rf'colab\.research\.google\.com/github/[^"]+/blob/main/book/{name}\.ipynb', text), "Colab link"


def test_rendered_book_has_no_broken_internal_links(html):
    for page in html.rglob("*.html"):
        for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', page.read_text()):
            assert (page.parent / href).resolve().is_file(), f"{page.name} links to missing {href}"


def test_environment_yml_names_the_pinned_packages():
    req = {line.split("==")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")}
    env = (ROOT / "environment.yml").read_text()
    pinned = {m.lower() for m in re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)==", env, re.M)}
    assert req == pinned, f"only in requirements.txt: {req - pinned}; only in environment.yml: {pinned - req}"


def test_a_parameter_no_chapter_declares_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) profil for schedules; valid parameters: .*profile"):
        run_chapters(ROOT, tmp_path, {"profil": "gpu"}, only=["schedules"])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, says", [
    (["run", "--profile", "huge"], "unknown profile 'huge'; valid profiles: "),
    (["run", "--only", "nosuch"], "unknown chapter(s) nosuch; chapters: schedules, "),
    (["run", "-p", "epochs", "5"], "unknown parameter(s) epochs for "),
    (["run", "--seed", "-1"], "seed must be a non-negative integer"),
    (["run", "--jobs", "many"], "argument --jobs: invalid int value"),
])
def test_command_line_answers_bad_input_with_one_line_and_status_2(tmp_path, args, says):
    env = {**os.environ, "LOSSDECAY_RECORDS": str(tmp_path / "records")}
    out = subprocess.run([sys.executable, "-m", "lossdecay_lib.chapters", *args, "--out", str(tmp_path / "out")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "records").exists(), "nothing ran"


def test_build_without_executed_chapters_is_one_line_and_touches_nothing(tmp_path):
    site = tmp_path / "book" / "_build" / "site"
    site.mkdir(parents=True)
    (site / "keep").write_text("a previous build")
    out = subprocess.run([sys.executable, "-m", "lossdecay_lib.chapters", "build", "--executed", str(tmp_path),
                          "--out", str(tmp_path / "book")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: chapter(s) schedules, "), out.stderr
    assert "not executed into" in lines[0]
    assert (site / "keep").is_file(), "the previous build was removed before the check"


# Code lines of the chapters fit the page: at a 1280-pixel window the article's code cells show 88
# characters (tests/test_browser.py measures it in Chromium; this finds the line in the source).
CODE_WIDTH = 88


@pytest.mark.parametrize("name", CHAPTERS)
def test_shown_code_lines_fit_the_page(name):
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    long = [(i, line) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and not {"remove-cell", "remove-input"} & set(cell.metadata.get("tags", []))
            for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert not long, f"book/{name}.py: {len(long)} shown code line(s) over {CODE_WIDTH} characters:\n" + "\n".join(
        f"  cell {i}: {line}" for i, line in long)


def test_install_cells_use_the_repository_of_config_yml():
    """The README's promise: `repository.url` (and branch) in _config.yml is the public home, and each
    chapter's install cell, which cannot read it in Colab, names the same address."""
    config = (ROOT / "_config.yml").read_text()
    url = re.search(r'^repository:\n(?:\s+.*\n)*?\s+url:\s*"?([^"\s]+)"?', config, re.M).group(1)
    branch = re.search(r'^repository:\n(?:\s+.*\n)*?\s+branch:\s*"?([^"\s]+)"?', config, re.M).group(1)
    for name in CHAPTERS:
        found = set(re.findall(r"git\+(https://[^\"@\s]+)@(\w+)", (ROOT / "book" / f"{name}.py").read_text()))
        assert found == {(url, branch)}, f"book/{name}.py installs from {found}, _config.yml says {url}@{branch}"
