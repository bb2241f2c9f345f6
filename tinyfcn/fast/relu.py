"""ReLU on several CPU threads: the textbook's formulas, each thread on its own run of elements.

NumPy runs a ufunc on one thread; PyTorch runs its element-wise kernels on all of them. ReLU's
passes are pure memory traffic (conv1_2's output of the width-1/4 model: 8 MiB read, 8 MiB and a
2 MiB mask written), which two cores move faster than one. The flat array is cut into T runs, one
per thread (``shares.py``), and each computes the textbook's ``functional.activation`` formulas on
its run::

    forward:   mask = x > 0,  y = max(x, 0)
    backward:  dx = dy * mask, or where(mask, dy, 0) on a run that holds a nan (inf * 0)

The same numbers as the textbook, element for element.
"""

from __future__ import annotations

import numpy as np

from .shares import run_shares, runs


def relu_forward(x: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, mask) of ``functional.relu_forward`` for a C-contiguous x, ``threads`` runs at once."""
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=bool)
    flat_x, flat_y, flat_mask = x.reshape(-1), y.reshape(-1), mask.reshape(-1)
    parts = runs(flat_x.size, threads)
    zero = x.dtype.type(0)

    def relu(share: int, indices: range) -> None:
        for i in indices:
            r = parts[i]
            np.greater(flat_x[r], zero, out=flat_mask[r])
            np.maximum(flat_x[r], zero, out=flat_y[r])  # NaN propagates, as the textbook's

    run_shares(relu, len(parts), threads)
    return y, mask


def relu_backward(dy: np.ndarray, mask: np.ndarray, threads: int) -> np.ndarray:
    """``functional.relu_backward`` for C-contiguous dy and mask, ``threads`` runs at once."""
    dx = np.empty_like(dy)
    flat_dy, flat_mask, flat_dx = dy.reshape(-1), mask.reshape(-1), dx.reshape(-1)
    parts = runs(flat_dy.size, threads)
    zero = dy.dtype.type(0)

    def relu_grad(share: int, indices: range) -> None:
        for i in indices:
            r = parts[i]
            np.multiply(flat_dy[r], flat_mask[r], out=flat_dx[r])
            if np.isnan(flat_dx[r]).any():
                flat_dx[r] = np.where(flat_mask[r], flat_dy[r], zero)

    run_shares(relu_grad, len(parts), threads)
    return dx
