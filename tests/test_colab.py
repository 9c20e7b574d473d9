"""Each chapter opens in Colab as it is: its first code cell installs the library, pinned to the book."""

import re

import jupytext
import pytest

from test_book import CHAPTERS, ROOT


def config_repository():
    text = (ROOT / "_config.yml").read_text()
    block = text[text.index("repository:"):]
    url = re.search(r'^\s+url:\s*"?([^"\s]+)"?', block, re.M).group(1)
    branch = re.search(r'^\s+branch:\s*"?([^"\s]+)"?', block, re.M).group(1)
    return url, branch


@pytest.mark.parametrize("name", CHAPTERS)
def test_first_code_cell_installs_the_library_when_missing(name):
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "remove-cell" in first.metadata.get("tags", []), "the install cell is hidden in the rendered page"
    src = first.source
    url, branch = config_repository()
    assert f'"lossdecay_lib @ git+{url}@{branch}"' in src, f"installs from {url}@{branch} (_config.yml repository)"
    assert 'find_spec("lossdecay_lib") is None' in src and '"pip", "install", "-q"' in src
    assert not re.search(r"^\s*(import|from)\s+lossdecay_lib", src, re.M), "the install cell must not need the library"
    assert "parameters" in code[1].metadata.get("tags", []), "the parameters cell follows the install cell"


def test_install_cell_is_a_no_op_where_the_library_is_installed(monkeypatch):
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    nb = jupytext.read(ROOT / "book" / f"{CHAPTERS[0]}.py")
    exec(compile(next(c for c in nb.cells if c.cell_type == "code").source, "install-cell", "exec"), {})
    assert calls == [], "the library is installed here, so the cell must not run pip"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # as on Colab: not installed
    exec(compile(next(c for c in nb.cells if c.cell_type == "code").source, "install-cell", "exec"), {})
    assert calls and calls[0][0][-1].startswith("lossdecay_lib @ git+"), calls
