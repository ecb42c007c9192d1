"""The data package's layout: modules in layers with no import circle; digests and pixel constants declared once."""

from __future__ import annotations

import ast
import io
import tokenize
from itertools import pairwise
from pathlib import Path

import logreg_mnist.data as data_package
from logreg_mnist.data import cache, fetch, known

DATA = Path(data_package.__file__).parent
SRC = DATA.parent
# Lowest first: each module may import only those before it (the order data/__init__.py documents).
LAYERS = ("pixels", "known", "idx", "stream", "dataset", "cache", "fetch", "legacy", "mnist")
PIXEL_NAMES = {"SIDE", "PIXEL_SCALE", "BLANK_LEVEL"}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _data_imports(name: str) -> set[str]:
    """The data modules that ``data/<name>.py`` imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse((DATA / f"{name}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def test_each_data_module_imports_only_the_modules_below_it():
    assert sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__") == sorted(LAYERS)
    for i, name in enumerate(LAYERS):
        above = _data_imports(name) - set(LAYERS[:i])
        assert not above, f"data/{name}.py imports {sorted(above)}; expected only modules below it, {LAYERS[:i]}"


def test_the_known_digests_are_declared_once_and_used_by_fetch_and_cache():
    assert known.MNIST.sha256 is known.MNIST_SHA256
    assert fetch.MNIST_SHA256 is known.MNIST_SHA256 and cache.MNIST_SHA256 is known.MNIST_SHA256
    for name, size in known.MNIST_SIZES.items():
        assert fetch.raw_size_limit(known.MNIST_SHA256[name]) == size
    digests = {sha for k in known.KNOWN_DATASETS for sha in k.sha256.values()}
    for path in _sources():
        if path != DATA / "known.py":
            text = path.read_text(encoding="utf-8")
            assert not [d for d in digests if d in text], f"{path} spells a known dataset's digest"


def test_the_pixel_constants_are_declared_once():
    for path in _sources():
        if path == DATA / "pixels.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)}
        assert not assigned & PIXEL_NAMES, f"{path} declares {sorted(assigned & PIXEL_NAMES)} again"
        code = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
                if t.type in (tokenize.OP, tokenize.NUMBER, tokenize.NAME)]
        scaled = [b.start[0] for a, b in pairwise(code) if a.string in ("*", "/") and b.string == "256"]
        assert not scaled, f"{path}:{scaled}: pixels scaled by 256 by hand; use data.pixels.PIXEL_SCALE"
