"""The parity, gradient-check and model tests once more with TINYFCN_FAST=0: every layer and model
on the textbook functions alone still matches PyTorch and its own finite differences."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = [
    "tests/test_conv.py",
    "tests/test_conv_transpose.py",
    "tests/test_pool.py",
    "tests/test_gradcheck.py",
    "tests/test_models.py",
    "tests/test_module.py",
]


@pytest.mark.skipif(os.environ.get("TINYFCN_FAST") == "0", reason="this run is the textbook run")
def test_parity_gradcheck_and_model_tests_pass_on_the_textbook_alone():
    env = dict(os.environ, TINYFCN_FAST="0")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SUITES]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = "\n".join(done.stdout.splitlines()[-25:])
    assert done.returncode == 0, f"TINYFCN_FAST=0 pytest {' '.join(SUITES)} failed:\n{tail}"
    assert " passed" in tail and " failed" not in tail, tail
