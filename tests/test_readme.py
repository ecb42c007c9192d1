"""The README's Python examples run as written, and the tests find the data the user has."""

from __future__ import annotations

import re

import pytest

from . import conftest
from .conftest import NAMES, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _python_block(containing: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if containing in b]
    assert len(blocks) == 1, f"expected one python block with {containing!r}, found {len(blocks)}"
    return blocks[0]


@pytest.mark.realdata
def test_the_scikit_learn_snippet_runs_as_written(real_mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("LOGREG_MNIST_DATA_DIR", str(real_mnist_dir))
    namespace: dict = {}
    exec(compile(_python_block("GridSearchCV"), "README.md", "exec"), namespace)
    search = namespace["search"]
    assert search.best_params_["softmaxregressionclassifier__learning_rate"] in (0.05, 0.13)
    assert search.score(namespace["X"], namespace["y"]) > 0.8
    assert capsys.readouterr().out.startswith("{'softmaxregressionclassifier__learning_rate': ")


def test_the_readme_maps_the_chapters_names():
    for name in ("load_data", "LogisticRegression", "sgd_optimization_mnist", "predict()", "best_model.pkl"):
        assert re.search(rf"^\| `{re.escape(name)}", README, flags=re.M), name
    assert "`load_model` returns a `(LogisticRegression, dict)` pair" in README
    assert "load_history(" in README


def test_real_data_is_also_found_in_the_user_cache(tmp_path, monkeypatch):
    cache = tmp_path / "xdg" / "logreg-mnist" / "mnist"
    cache.mkdir(parents=True)
    monkeypatch.delenv("LOGREG_MNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(conftest, "REPO", tmp_path / "repo")  # no ../shared beside it
    assert conftest.real_data_dir() is None
    for name in NAMES:
        (cache / f"{name}.gz").write_bytes(b"")
    assert conftest.real_data_dir() == cache
