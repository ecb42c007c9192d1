"""Sphinx hooks of the logreg-mnist site.

- The pages' cells work in one directory outside the sources, ``<build dir>/../work``, named
  to the kernels by ``LOGREG_MNIST_DOCS_WORKDIR``: the tutorial run made on one page is read
  by the next, and nothing generated lands beside the sources.
- Shell cells (``%%bash``) find the ``logreg-mnist`` command of the interpreter that builds.
- The tutorial is joined into one notebook, offered at ``<site>/logreg-mnist-tutorial.ipynb``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sphinx.application import Sphinx

import tutorial_notebook

WORKDIR_ENV = "LOGREG_MNIST_DOCS_WORKDIR"
NOTEBOOK = "logreg-mnist-tutorial.ipynb"


def _builder_inited(app: Sphinx) -> None:
    build = Path(app.outdir).parent
    work = Path(os.environ.get(WORKDIR_ENV) or build / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ[WORKDIR_ENV] = str(work)  # inherited by the kernels that run the pages
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    extra = build / "notebook"
    tutorial_notebook.build(extra / NOTEBOOK)
    app.config.html_extra_path = [*app.config.html_extra_path, str(extra)]


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
