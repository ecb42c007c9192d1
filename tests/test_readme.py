"""The README maps the chapter's names, and the tests find the data the user has.

The README's scikit-learn example lives in the site now: tests/test_docs.py runs it."""

from __future__ import annotations

import re

from . import conftest
from .conftest import NAMES, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


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
