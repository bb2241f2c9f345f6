"""Run the command as a user does: ``python -m tinyfcn ...`` in a subprocess, no TTY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_tinyfcn(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m tinyfcn *args`` importing this checkout; stdin closed, output captured."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("TINYFCN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tinyfcn", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def tiny_checkpoint(path, classes: int = 5, seed: int = 0) -> Path:
    """A small FCN-8s (compact, width 1/16) with random weights in every layer, saved as a
    checkpoint with a shapes run's metadata (VOC's class names for 21 classes): predictions vary
    from pixel to pixel."""
    from tinyfcn import io
    from tinyfcn.data import SHAPES_CLASSES, VOC_CLASSES
    from tinyfcn.experiment import RunConfig, run_meta
    from tinyfcn.models import FCN8s

    model = FCN8s(num_classes=classes, geometry="compact", width=1 / 16, fc_channels=8)
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] = rng.normal(0.0, 0.5, p.shape)
    names = VOC_CLASSES if classes == len(VOC_CLASSES) else SHAPES_CLASSES[:classes]
    io.save_checkpoint(path, model, **run_meta(RunConfig(), names))
    return Path(path)
