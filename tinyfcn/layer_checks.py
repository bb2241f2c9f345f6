"""The gradient checks ``tinyfcn gradcheck`` runs: every layer, several shapes, float64."""

from __future__ import annotations

import time

import numpy as np

from . import nn
from .gradcheck import GradcheckResult, gradcheck

# (name, layer factory, input shape); max-pool inputs get distinct values (no ties to flip)
CASES = [
    ("Conv2d 3x3 p1", lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 5)),
    (
        "Conv2d 3x2 s(2,1) p(1,0) d(1,2)",
        lambda: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        (2, 3, 7, 6),
    ),
    ("Conv2d 1x1 (score layer)", lambda: nn.Conv2d(5, 3, 1), (2, 5, 4, 3)),
    ("Conv2d 7x7 (fc6)", lambda: nn.Conv2d(2, 3, 7), (1, 2, 8, 7)),
    (
        "ConvTranspose2d k4 s2 p1",
        lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1),
        (2, 3, 3, 4),
    ),
    (
        "ConvTranspose2d k4 s2 zero_insertion",
        lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, method="zero_insertion"),
        (1, 3, 3, 4),
    ),
    (
        "ConvTranspose2d (3,4) s(2,3) op(1,2)",
        lambda: nn.ConvTranspose2d(
            2, 3, (3, 4), stride=(2, 3), padding=(1, 0), output_padding=(1, 2)
        ),
        (1, 2, 3, 3),
    ),
    (
        "ConvTranspose2d k16 s8 (upscore8)",
        lambda: nn.ConvTranspose2d(2, 2, 16, stride=8, bias=False),
        (1, 2, 2, 2),
    ),
    ("MaxPool2d 2x2 ceil", lambda: nn.MaxPool2d(2, 2, ceil_mode=True), (2, 3, 7, 5)),
    ("MaxPool2d 3x3 s2 p1", lambda: nn.MaxPool2d(3, 2, padding=1), (1, 2, 7, 8)),
    ("ReLU", lambda: nn.ReLU(), (2, 3, 4, 5)),
]


def run_layer_checks(tol: float = 1e-6) -> list[tuple[str, GradcheckResult, float]]:
    """Run every case; returns (name, result, seconds) per case."""
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    rows = []
    for name, make, shape in CASES:
        layer = make().double()
        if isinstance(layer, nn.MaxPool2d):
            x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
        else:
            x = rng.standard_normal(shape)
        start = time.perf_counter()
        result = gradcheck(layer, x, tol=tol)
        rows.append((name, result, time.perf_counter() - start))
    return rows
