"""Sphinx hooks of the logreg-mnist site.

- The pages' cells work in one directory outside the sources, ``<build dir>/../work``, named
  to the kernels by ``LOGREG_MNIST_DOCS_WORKDIR``: the tutorial run made on one page is read
  by the next, and nothing generated lands beside the sources.
- ``work/examples`` is the repository's ``examples/`` (the sample images the pages use).
- The kernels use an IPython profile of the build's own (``<build dir>/../ipython``).
- Shell cells (``%%bash``) find the ``logreg-mnist`` command of the interpreter that builds.
- The tutorial is joined into one notebook, offered at ``<site>/logreg-mnist-tutorial.ipynb``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tutorial_notebook
from sphinx.application import Sphinx

WORKDIR_ENV = "LOGREG_MNIST_DOCS_WORKDIR"
NOTEBOOK = "logreg-mnist-tutorial.ipynb"
REPO = Path(__file__).resolve().parents[2]


def link_examples(work: Path) -> None:
    """``work/examples``: the repository's sample images, where the pages look for them."""
    examples = work / "examples"
    if not examples.exists():
        examples.symlink_to(REPO / "examples", target_is_directory=True)


def _isolate_kernels(ipython_dir: Path) -> None:
    """The kernels run with an IPython profile of the build's own, not the user's.

    A user's startup files cannot change the pages, and the kernels log errors only: their
    notice that a kernel on this machine talks to its client over TCP on the loopback address
    is not a problem of the site.
    """
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text('c.IPKernelApp.log_level = "ERROR"\n')
    os.environ["IPYTHONDIR"] = str(ipython_dir)


def _builder_inited(app: Sphinx) -> None:
    build = Path(app.outdir).parent
    work = Path(os.environ.get(WORKDIR_ENV) or build / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ[WORKDIR_ENV] = str(work)  # inherited by the kernels that run the pages
    link_examples(work)
    _isolate_kernels(build / "ipython")
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    extra = build / "notebook"
    tutorial_notebook.build(extra / NOTEBOOK)
    app.config.html_extra_path = [*app.config.html_extra_path, str(extra)]


def _resolve_short_name(app: Sphinx, env, node, contnode):
    """A docstring's ``ConfigError`` or ``nll`` finds the one documented object of that name.

    Docstrings name objects as their module sees them; the reference documents them under
    their public names. A name that matches exactly one documented Python object is linked to
    it; anything else is left to Sphinx (and reported by a nitpicky build).
    """
    if node.get("refdomain") != "py":
        return None
    last = node["reftarget"].lstrip(".~").rpartition(".")[2]
    domain = env.get_domain("py")
    matches = [name for name in domain.objects if name == last or name.endswith("." + last)]
    if len(matches) != 1:
        return None
    from sphinx.util.nodes import make_refnode

    entry = domain.objects[matches[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, matches[0])


def _join_stream_chunks(outputs: list) -> list:
    """Consecutive stream outputs of one name joined exactly as they came.

    IPython's ``%%bash`` forwards a command's output in 100-byte chunks, each its own stream
    message; MyST-NB's merging of streams (``nb_merge_streams``) ends every message with a line
    break, which would cut the commands' lines at every 100th byte. Joined first, the chunks
    become whole lines again, and MyST-NB's merging is left to do the rest.
    """
    joined: list = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous["name"] == output["name"]):
            previous["text"] += output["text"]
        else:
            joined.append(output)
    return joined


def _merge_streams_whole() -> None:
    from myst_nb.core import render

    merge = render.coalesce_streams
    if getattr(merge, "joins_chunks", False):
        return

    def merge_whole(outputs: list) -> list:
        return merge(_join_stream_chunks(outputs))

    merge_whole.joins_chunks = True  # type: ignore[attr-defined]
    render.coalesce_streams = merge_whole


def setup(app: Sphinx) -> dict:
    _merge_streams_whole()
    app.connect("builder-inited", _builder_inited)
    app.connect("missing-reference", _resolve_short_name)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
