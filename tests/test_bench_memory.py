"""The memory benchmark: its peak-reset mechanism works, and its rows say what they should (never
their sizes against PyTorch's)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tinyfcn.bench import main
from tinyfcn.bench.memory import _child, _reset_peak, _status_kib, run_memory_benchmark

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

TINY = dict(model="fcn8s", geometry="compact", width=0.125, size=[64, 64], batch=2)


def test_reset_peak_forgets_an_earlier_allocation():
    big = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    del big
    assert _reset_peak(), "the kernel refused to reset VmHWM"
    assert _status_kib("VmHWM") - _status_kib("VmRSS") < 50 * 1024


def test_measure_sees_what_a_pass_allocates():
    """In a fresh process, as the benchmark runs it (in this one, memory that earlier tests freed
    would be reused and hide the pass's own)."""
    fwd = _child({**TINY, "library": "tinyfcn", "pass": "fwd"})
    step = _child({**TINY, "library": "tinyfcn", "pass": "fwd+bwd"})
    assert fwd["reset"] and step["reset"]
    assert 0 < fwd["above_mib"] < step["above_mib"]
    assert fwd["weights_mib"] == step["weights_mib"] > 0
    assert fwd["peak_mib"] == pytest.approx(fwd["baseline_mib"] + fwd["above_mib"])


def test_rows_json_and_command(tmp_path, capsys):
    path = tmp_path / "memory.json"
    header, rows = run_memory_benchmark(
        TINY["model"], TINY["geometry"], TINY["width"], (48, 56), batch=1, repeats=1,
        json_path=str(path),
    )  # fmt: skip
    assert [r["pass"] for r in rows] == ["fwd", "fwd+bwd"]
    for r in rows:
        assert r["tinyfcn_above_mib"] > 0 and r["torch_above_mib"] > 0
        assert r["ratio"] == pytest.approx(r["tinyfcn_above_mib"] / r["torch_above_mib"])
    assert json.loads(path.read_text())["rows"] == rows
    assert header["benchmark"] == "memory" and header["size"] == [48, 56]

    argv = "memory --geometry compact --width 0.125 --size 40 --repeats 1 --inference-only"
    assert main(argv.split()) == 0
    printed = capsys.readouterr().out
    assert "40x40" in printed and "inference" in printed and "training step" not in printed
