"""The tutorial notebooks: each runs top to bottom in a fresh kernel, and has figures committed.

Under test the notebooks run with TINYFCN_QUICK=1 (small sizes, short training), in a temporary
working directory so nothing they write lands in the checkout. The committed outputs come from the
full run: `jupyter nbconvert --to notebook --execute --inplace notebooks/0*.ipynb` (see
notebooks/README.md).
"""

import importlib
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _outputs(nb, output_type=None):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if output_type is None or out.get("output_type") == output_type:
                    yield out


def _has_figure(nb):
    return any("image/png" in out.get("data", {}) for out in _outputs(nb))


def test_the_series_is_numbered_one_to_nine():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 10)]


# a notebook imports what a user imports: package-level names, never a model's or data set's
# private module (tinyfcn.models.fcn, tinyfcn.data.shapes) or an underscored name
PRIVATE_MODULE = re.compile(r"tinyfcn\.(models|data|nn)\.[a-z_]+\b")
IMPORT = re.compile(r"^\s*from (tinyfcn[\w.]*) import \(?([^)\n]*(?:\n[^)]*)?)\)?", re.M)


def _public(module_path: str) -> bool:
    """tinyfcn.models.surgery is public (in tinyfcn.models.__all__); tinyfcn.models.fcn is not."""
    package, name = module_path.rsplit(".", 1)
    return name in getattr(importlib.import_module(package), "__all__", ())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_imports_public_names_only(path):
    code = "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )
    found = {m.group(0) for m in PRIVATE_MODULE.finditer(code)}
    private = sorted(m for m in found if not _public(m))
    assert not private, f"{path.name} reaches into private modules: {private}"
    for module, names in IMPORT.findall(code):
        underscored = [
            n.strip() for n in names.replace("\n", ",").split(",") if n.strip()[:1] == "_"
        ]
        assert not underscored, f"{path.name}: from {module} import {underscored}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs(path):
    """A reader on GitHub sees every output: all code cells ran, in order, no error, a figure."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts and None not in counts, f"{path.name}: some code cells were never run"
    assert counts == sorted(counts), f"{path.name}: cells were run out of order"
    errors = list(_outputs(nb, "error"))
    assert not errors, f"{path.name}: committed with an error: {errors[0].get('ename')}"
    assert _has_figure(nb), f"{path.name}: no figure in the committed outputs"
    assert "import tinyfcn" in "".join(c.source for c in nb.cells) or any(
        "from tinyfcn" in c.source for c in nb.cells
    ), f"{path.name}: does not import tinyfcn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFCN_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any exception
    assert _has_figure(nb), f"{path.name}: the quick run drew no figure"
