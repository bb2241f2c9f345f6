"""The number of threads of NumPy's BLAS (OpenBLAS), read and set while the program runs.

Small matrices multiply faster on one thread: waking and joining OpenBLAS's threads costs more
than they save. How many threads a run uses is the planner's choice (``tinyfcn.fast.plan``).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PREFIXES = ("scipy_openblas_", "openblas_")  # NumPy's wheels, then a system OpenBLAS
_SUFFIXES = ("64_", "_64", "")  # the 64-bit-integer builds


@functools.cache  # the planner asks at every convolution; reading /proc/self/maps takes 0.7 ms
def openblas_function(stem: str, restype: Any, argtypes: tuple = ()) -> Any:
    """The function ``openblas_<stem>`` of the OpenBLAS that NumPy loaded (Linux), else None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (p + stem + s for p in _PREFIXES for s in _SUFFIXES):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, list(argtypes)
                return fn
    return None


def get_blas_threads() -> int | None:
    """OpenBLAS's thread count, or None where NumPy's BLAS is not an OpenBLAS found here."""
    fn = openblas_function("get_num_threads", ctypes.c_int)
    return None if fn is None else int(fn())


def set_blas_threads(n: int) -> bool:
    """Set OpenBLAS's thread count; False (and nothing changed) where it cannot be found."""
    if int(n) < 1:
        raise ValueError(f"set_blas_threads: need at least 1 thread, got {n}")
    fn = openblas_function("set_num_threads", None, (ctypes.c_int,))
    if fn is None:
        return False
    fn(int(n))
    return True


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenBLAS threads (None: leave them), then restore the count."""
    before = get_blas_threads() if n is not None else None
    changed = before is not None and before != n and set_blas_threads(n)
    try:
        yield
    finally:
        if changed:
            set_blas_threads(before)
