"""Every notebook in notebooks/ executes, and its committed copy shows its outputs.

Each notebook asserts its own claims in its cells, so executing it tests it: a
broken notebook or a claim that no longer holds fails here. The kernel imports
this checkout's adaptx (the repository root is put on its PYTHONPATH).

To refresh the committed outputs after changing a notebook or the library:
``python tests/test_notebooks.py [NAME.ipynb ...]`` (all by default).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 600_000  # outputs included; keep figures at a modest dpi


def execute_notebook(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Executes the notebook at ``path`` in a fresh kernel (cwd: notebooks/); returns it."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        record_timing=False,
    )
    client.execute(env=env)
    return nb


def _outputs(nb: nbformat.NotebookNode):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def _problems(nb: nbformat.NotebookNode) -> list[str]:
    """Errors and warnings a reader would see in the outputs."""
    found = []
    for out in _outputs(nb):
        if out.output_type == "error":
            found.append(f"{out.ename}: {out.evalue}")
        elif out.output_type == "stream" and out.name == "stderr":
            found.append(out.text)
    return found


def test_the_notebooks_are_there():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), NOTEBOOKS
    expected = [f"{i:02d}" for i in range(1, 10)]
    assert set(expected) <= set(numbers), NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path):
    nb = execute_notebook(path)
    assert not _problems(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_shows_its_outputs(path):
    """The committed copy was executed top to bottom and a reader sees its plots."""
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert any("image/png" in out.get("data", {}) for out in _outputs(nb))
    assert any("assert " in c.source for c in code), "a notebook asserts its claims"
    assert not _problems(nb)
    text = json.dumps([out for out in _outputs(nb)])
    for leak in ("site-packages", "/home/", "/tmp/"):
        assert leak not in text


def main(names: list[str]) -> None:
    for path in [NOTEBOOK_DIR / n for n in names] if names else NOTEBOOKS:
        start = time.perf_counter()
        nb = execute_notebook(path)
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - start:.1f} s", flush=True)
        for problem in _problems(nb):
            print("  ", problem.strip())


if __name__ == "__main__":
    main(sys.argv[1:])
