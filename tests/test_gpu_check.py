"""benchmarks/gpu_check.sh: one line and exit 0 without a GPU; its notebook runner (no Jupyter
on the GPU machine) runs code cells in order, saves the figures shown, stops at a failing cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinyfcn.backend import cupy_available

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(cupy_available(), reason="a GPU is here: the script would run every check")
def test_without_a_gpu_the_check_says_so_in_one_line(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "gpu_check: no CuPy with a CUDA device here (tinyfcn.backend.cupy_available() is False): "
        "nothing to check"
    ]


def _notebook(path: Path, sources: list[str]) -> Path:
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    return path


def test_the_notebook_runner_saves_figures_and_stops_at_a_failure(tmp_path):
    runner = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "notebook"]
    good = _notebook(
        tmp_path / "good.ipynb",
        [
            "import matplotlib.pyplot as plt\nx = 3",
            "%matplotlib inline\nplt.plot([x, 1])\nplt.show()",
        ],
    )
    done = subprocess.run(runner + [str(good), str(tmp_path / "g")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "g" / "figure_1.png").stat().st_size > 1000
    bad = _notebook(tmp_path / "bad.ipynb", ["y = 1", "raise ValueError('cell says no')", "z = 2"])
    done = subprocess.run(runner + [str(bad), str(tmp_path / "b")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "cell 1 failed: ValueError: cell says no" in done.stdout
    assert "--- cell 2 ---" not in done.stdout
