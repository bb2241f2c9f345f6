"""Argument normalisation and input checks shared by the ops: errors that name the problem."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(value: Any, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``, as torch.nn accepts int or pair arguments."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if not isinstance(a, (int, np.integer)) or not isinstance(b, (int, np.integer)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(a), int(b)


def check_positive(value: tuple[int, int], name: str) -> None:
    if min(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_non_negative(value: tuple[int, int], name: str) -> None:
    if min(value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_float_array(x: Any, name: str, op: str) -> None:
    """float32 or float64 only: integers and float16 are rejected with a message that says why."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{op} expected {name} to be a NumPy or CuPy array, got {type(x).__name__}")
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op} expected {name} of dtype float32 or float64, got {dtype} "
            f"(shape {tuple(x.shape)}); convert with x.astype(np.float32)"
        )


def check_nchw(x: Any, op: str, channels: int | None = None) -> None:
    """A float (N, C, H, W) array, with ``channels`` channels when given."""
    check_float_array(x, "input", op)
    if x.ndim != 4:
        raise ValueError(
            f"{op} expected a 4-d input (N, C, H, W), got {x.ndim}-d input "
            f"of shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{op} expected input with {channels} channels, got {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    if min(x.shape) < 1:
        raise ValueError(f"{op} got an empty input of shape {tuple(x.shape)}")


def check_same_dtype(op: str, **arrays: Any) -> None:
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        described = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise TypeError(f"{op} needs one floating dtype for all arrays, got {described}")
