"""The whole tutorial as one Jupyter notebook, made from the site's own pages.

    python docs/_ext/tutorial_notebook.py OUT.ipynb

The tutorial's pages (``docs/tutorial/NN-*.md``, MyST notebooks, in the order of their numbers)
are read with jupytext and joined: the same cells, in the same order, so the notebook a learner
opens in Jupyter is the site's source. Sphinx's roles (``{py:func}`x```) become plain code
spans and directive fences become quotes, since Jupyter renders neither.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorial"
SETUP_TAG = "remove-cell"  # the pages' hidden set-up cell: kept once, at the top

_ROLE = re.compile(r"\{[a-z:]+\}`(?:[^`<]*<)?~?([^`>]+)>?`")
_FENCE = re.compile(r"^:::+\s*\{(\w+)\}\s*(.*)$")


def pages() -> list[Path]:
    """The tutorial's pages in their order: ``NN-name.md``, by NN."""
    return sorted(TUTORIAL.glob("[0-9][0-9]-*.md"))


def _plain_markdown(text: str) -> str:
    """Markdown that Jupyter renders: roles as code spans, ``:::{note}`` fences as quotes."""
    out: list[str] = []
    quoting = False
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            quoting = True
            title = fence.group(2) or fence.group(1).capitalize()
            out.append(f"> **{title}**")
            continue
        if quoting and re.fullmatch(r":::+\s*", line):
            quoting = False
            continue
        line = _ROLE.sub(r"`\1`", line)
        out.append(f"> {line}" if quoting else line)
    return "\n".join(out)


def build(out: str | Path) -> Path:
    """Write the joined notebook to ``out`` and return its path."""
    import jupytext
    import nbformat

    cells = []
    seen_setup = False
    for page in pages():
        for cell in jupytext.read(page, fmt="md:myst").cells:
            if SETUP_TAG in cell.get("metadata", {}).get("tags", []):
                if seen_setup:
                    continue
                seen_setup = True
            if cell.cell_type == "markdown":
                cell.source = _plain_markdown(cell.source)
            cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/_ext/tutorial_notebook.py OUT.ipynb")
    print(build(sys.argv[1]))
