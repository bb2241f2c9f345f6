"""Weight initialisation and the default random generator (``tinyfcn.manual_seed``)."""

from __future__ import annotations

import math

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator that layer initialisation and unseeded dropout draw from."""
    global _generator
    _generator = np.random.default_rng(seed)


def default_generator() -> np.random.Generator:
    return _generator


def fan_in_out(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, kh, kw), as torch.nn.init computes them."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(shape: tuple, bound: float, dtype=np.float32, rng=None) -> np.ndarray:
    rng = _generator if rng is None else rng
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def torch_default_(shape: tuple, fan_in: int, dtype=np.float32, rng=None) -> np.ndarray:
    """PyTorch's default for conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform_(shape, 1.0 / math.sqrt(max(fan_in, 1)), dtype, rng)


def kaiming_normal_(shape: tuple, dtype=np.float32, rng=None) -> np.ndarray:
    """He et al. 2015: N(0, 2 / fan_in), for layers followed by a ReLU."""
    rng = _generator if rng is None else rng
    fan_in, _ = fan_in_out(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)
