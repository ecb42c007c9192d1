"""The site's sources: its examples run as written, the README lands on it, the notebook is its pages.

The site itself is built strictly, with every cell executed, by .ci/run (sphinx-build -W); these
tests check what a reader of the sources meets without building it.
"""

from __future__ import annotations

import re

import pytest

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = REPO / "docs"
CHAPTER_NAMES = ("sgd_optimization_mnist", "LogisticRegression", "load_data", "predict", "logistic_cg")


def _code_cells(page: str) -> list[str]:
    """The sources of a MyST notebook page's code cells, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    return [re.sub(r"\A(?::[^\n]*\n)+\n?", "", cell) for cell in cells]  # without the cell's :tags: lines


def _cell(page: str, containing: str) -> str:
    cells = [c for c in _code_cells(page) if containing in c]
    assert len(cells) == 1, f"expected one code cell with {containing!r} in docs/{page}, found {len(cells)}"
    return cells[0]


@pytest.mark.realdata
def test_the_scikit_learn_snippet_runs_as_written(real_mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("LOGREG_MNIST_DATA_DIR", str(real_mnist_dir))
    namespace: dict = {}
    exec(compile(_cell("howto/scikit-learn.md", "GridSearchCV"), "docs/howto/scikit-learn.md", "exec"), namespace)
    search = namespace["search"]
    assert search.best_params_["softmaxregressionclassifier__learning_rate"] in (0.05, 0.13)
    assert search.score(namespace["X"], namespace["y"]) > 0.8
    assert capsys.readouterr().out.startswith("{'softmaxregressionclassifier__learning_rate': ")


def test_the_readme_is_a_landing_page():
    lines = README.splitlines()
    assert lines[0] == "# logreg-mnist", lines[0]
    assert len(lines) <= 200, f"README.md: expected at most 200 lines, found {len(lines)}"
    commands = [line for line in lines[:10] if line.startswith("python3 -m venv .venv")]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/logreg-mnist train",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
    ]
    top = "\n".join(lines[:80])
    for name in CHAPTER_NAMES:
        assert f"`{name}" in top, f"README.md: the chapter's name {name!r} is not in the first 80 lines"
    assert "sphinx-build -W --keep-going -n -b html docs docs/_build/html" in README


def test_the_readmes_links_and_pictures_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t]
    assert len(local) > 20
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_sample_inputs_exist():
    for name in ("examples/my_digit.png", "examples/digits.npy", "examples/my_digits/empty_sheet.jpg"):
        assert (REPO / name).is_file(), name
    assert len(list((REPO / "examples" / "my_digits").glob("photo_*"))) == 6


def test_every_tutorial_page_is_in_the_notebook_in_order(tmp_path):
    pytest.importorskip("jupytext", reason="the docs extra: pip install -e '.[docs]'")
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("tutorial_notebook", DOCS / "_ext" / "tutorial_notebook.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    pages = [p.name for p in maker.pages()]
    assert pages == sorted(p.name for p in (DOCS / "tutorial").glob("[0-9][0-9]-*.md")) and len(pages) == 12

    notebook = nbformat.read(maker.build(tmp_path / "tutorial.ipynb"), as_version=4)
    nbformat.validate(notebook)
    got = [c.source.strip() for c in notebook.cells if c.cell_type == "code"]
    expected = []
    for page in pages:
        expected += [c.strip() for c in _code_cells(f"tutorial/{page}")]
    setup = expected[0]
    assert "LOGREG_MNIST_DOCS_WORKDIR" in setup
    expected = [setup] + [c for c in expected if c != setup]  # the hidden set-up cell once, at the top
    assert got == expected
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "{py:" not in text and ":::" not in text  # Sphinx's roles and fences made plain for Jupyter
    assert "# 1. The data" in text and "# 12. Model selection" in text
