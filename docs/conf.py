"""Sphinx configuration of the logreg-mnist site.

Every page under tutorial/, howto/, reference/ and explanation/ that has code is a MyST
notebook, executed when the site is built (``nb_execution_mode = "force"``): the numbers and
pictures on the pages are computed by the package at that moment. A cell that raises fails the
build; with ``-W --keep-going -n`` so does every warning and every broken reference.

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -n -b html docs docs/_build/html

The pages' runs and figures are written to ``<build dir>/../work`` (``LOGREG_MNIST_DOCS_WORKDIR``),
never into the sources. Nothing is fetched from the network: MathJax is served from a local copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "logreg-mnist"
author = "the logreg-mnist authors"
copyright = "the logreg-mnist authors, BSD-3-Clause"  # noqa: A001 - Sphinx's name

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax 3 served from _static/mathjax: the pages render offline
    "sphinxarg.ext",
    "logreg_docs",  # the tutorial's working directory, the downloadable notebook
]

exclude_patterns = ["_build", "_ext", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}

# MyST and its notebooks
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # every cell runs at every build: the pages cannot drift from the code
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "show"
nb_render_markdown_format = "myst"  # Markdown a cell displays (the exit-code table) may hold tables

# API reference from the docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = True  # SoftmaxRegressionClassifier follows scikit-learn's style
napoleon_use_ivar = True  # "Attributes:" as fields, not as second descriptions of dataclass fields
napoleon_use_rtype = False
napoleon_preprocess_types = True  # "{'sgd', 'cg'}, default=0.13" as literals, not as class names

# Strict builds: every reference must resolve. There is no intersphinx (no network at build
# time), so names from other projects and from typing stay plain text.
nitpicky = True
# Internal modules (engines, reporting, plots, fetching) are not part of the documented API:
# references to them in docstrings stay plain text.
nitpick_ignore_regex = [
    (r"py:(mod|class|func|obj)", r"logreg_mnist\.(engines|reporting|plots|data\.known|data\.fetch)(\..*)?"),
    (r"py:(class|func)", r"(Engine|Reporter|fetch_files)"),
    (r"py:(func|data)", r"(_clean_message|MESSAGE_LIMIT)"),  # private helpers named in errors.py
    (r"py:obj", r"(True|False|None)"),
    (r"py:class", r".*[ (),].*"),  # scikit-learn-style type prose: "ndarray of shape (n_classes,)"
    (r"py:(class|obj|data|exc)", r"(numpy|np|os|PIL|Image|pathlib|collections|typing|argparse|sklearn|"
                                 r"matplotlib|concurrent|io|safetensors)(\..*)?"),
    (r"py:(class|obj)", r"(Any|Path|Mapping|Sequence|Iterator|Iterable|Callable|ndarray|dtype|"
                        r"array-like|array|optional|callable|PathLike|Figure|Engine|Reporter|"
                        r"int|float|str|bool|bytes|dict|list|tuple|None|numbers\..*)"),
]

# HTML
html_theme = "furo"
html_title = "logreg-mnist"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sourcelink = True
html_theme_options = {
    "source_directory": "docs/",
    "navigation_with_keys": True,
}
smartquotes = False  # flags stay "--flag" in the generated CLI reference, never an en dash
