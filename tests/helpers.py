"""Helpers for comparing tinyfcn with the PyTorch oracle; failures say "ours vs theirs"."""

from __future__ import annotations

import numpy as np
import torch

from tinyfcn.backend import asnumpy


def to_torch(a, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(asnumpy(a), requires_grad=requires_grad)


def assert_close(ours, theirs, name: str, rtol: float = 1e-10, atol: float = 1e-10) -> None:
    """Equal within tolerance; the message names the tensor and shows ours vs theirs."""
    ours = asnumpy(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else asnumpy(theirs)
    assert ours.shape == theirs.shape, f"{name}: shape ours {ours.shape} vs theirs {theirs.shape}"
    if not np.allclose(ours, theirs, rtol=rtol, atol=atol):
        diff = np.abs(ours - theirs)
        i = np.unravel_index(np.argmax(diff), diff.shape)
        raise AssertionError(
            f"{name}: max |ours - theirs| = {diff.max():.3e} at {i}: ours {ours[i]!r} vs "
            f"theirs {theirs[i]!r} (rtol {rtol}, atol {atol})"
        )


def distinct_values(rng: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """A random permutation of 0.1 * (0..size-1): no ties, so a finite difference cannot flip
    a max-pool argmax."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) * 0.1).astype(dtype)


def assert_same_as_textbook(ours, textbook, name: str, rel: float = 1e-12) -> None:
    """The engine's result equals the textbook's: max |ours - textbook| <= rel * max |textbook|
    (float64; only the order of the sums may differ)."""
    ours, textbook = asnumpy(ours), asnumpy(textbook)
    assert ours.shape == textbook.shape, f"{name}: shape {ours.shape} vs textbook {textbook.shape}"
    scale = max(float(np.abs(textbook).max(initial=0.0)), 1e-300)
    err = float(np.abs(ours - textbook).max(initial=0.0)) / scale
    assert err <= rel, f"{name}: engine vs textbook relative error {err:.2e} > {rel:.0e}"
