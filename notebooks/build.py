"""Build the executed walkthrough notebooks from their percent-format sources.

Each ``NN_name.py`` here is a script whose cells start with ``# %%`` (code) or ``# %% [markdown]``
(markdown, every line a ``# `` comment). This script turns each into ``NN_name.ipynb`` and executes
it, so the committed notebooks show real outputs of the same library calls.

    uv run --group notebooks python notebooks/build.py            # all notebooks
    uv run --group notebooks python notebooks/build.py 01_solvers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def cells_from_percent(text: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format script into notebook cells."""
    cells = []
    for chunk in text.split("# %%")[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines()]
            cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        elif body:
            cells.append(nbformat.v4.new_code_cell(body))
    return cells


def build(source: Path, timeout: int = 900) -> Path:
    """Execute ``source`` as a notebook (working directory: the repository root); returns the .ipynb path."""
    nb = nbformat.v4.new_notebook(cells=cells_from_percent(source.read_text()))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}).execute()
    out = source.with_suffix(".ipynb")
    nbformat.write(nb, out)
    return out


def main(argv: list[str]) -> int:
    sources = [HERE / a for a in argv] if argv else sorted(HERE.glob("[0-9][0-9]_*.py"))
    for src in sources:
        print(f"executing {src.name} ...", flush=True)
        print(f"  wrote {build(src).relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
