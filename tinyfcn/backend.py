"""The array-module switch: one place decides whether an op runs on NumPy (CPU) or CuPy (GPU).

Every op starts with ``xp = get_array_module(x, w, ...)`` and then writes ``xp.matmul``,
``xp.zeros`` ...; the same source runs on both devices. Mixing NumPy and CuPy arrays in one call
is an error, never a silent copy between host and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # CuPy is optional: `pip install tinyfcn[gpu]`.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None

DEVICES = ("cpu", "cuda")


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(x: Any) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def device_of(x: Any) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cuda" if is_cupy_array(x) else "cpu"


def get_array_module(*arrays: Any):
    """Return ``numpy`` or ``cupy`` for the given arrays (``None`` entries are skipped).

    Raises ``TypeError`` when NumPy and CuPy arrays are mixed: moving data between host and
    device is always explicit (``to_device``), never a hidden copy inside an op.
    """
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        described = ", ".join(
            f"{type(a).__module__}.{type(a).__name__}{tuple(getattr(a, 'shape', ()))}"
            for a in arrays
            if a is not None
        )
        raise TypeError(
            "cannot mix NumPy (cpu) and CuPy (cuda) arrays in one call; got "
            f"{described}. Move them to one device first, e.g. model.to('cuda') and "
            "tinyfcn.backend.to_device(x, 'cuda')."
        )
    return _cupy if devices == {"cuda"} else np


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and _cupy is None:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which is not installed: pip install 'tinyfcn[gpu]'"
        )
    return device


def to_device(x: Any, device: str):
    """Return ``x`` as a NumPy (``"cpu"``) or CuPy (``"cuda"``) array; no copy if already there."""
    check_device(device)
    if device == "cpu":
        return asnumpy(x)
    return _cupy.asarray(x)


def asnumpy(x: Any) -> np.ndarray:
    """A NumPy copy of a CuPy array; NumPy arrays and scalars pass through ``np.asarray``."""
    if is_cupy_array(x):
        return _cupy.asnumpy(x)
    return np.asarray(x)
