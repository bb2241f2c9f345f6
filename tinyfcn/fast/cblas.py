"""One BLAS call NumPy does not offer: C = A @ B + beta C, accumulating into C in place.

``numpy.matmul`` always overwrites its output (beta = 0), so adding nine products into one array
costs eight temporaries and eight extra passes. OpenBLAS's ``cblas_?gemm`` takes beta; this module
finds it in the OpenBLAS that NumPy loaded (as ``tinyfcn.blas`` finds the thread count) and calls it
on NumPy arrays and views whose rows (or columns) are contiguous: a view at an offset into a larger
array is passed as a pointer and a leading dimension, so nothing is copied.

``gemm(a, b, c, beta)`` computes c = a @ b + beta * c for float32 or float64; ``available(x)``
says whether it can (NumPy with an OpenBLAS found here). A hot loop of small products calls
``gemm_function(dtype)`` itself with pointers it computed once (``conv_shifted``): reading
``.ctypes.data`` and checking strides costs ~10 us a call, as much as a small GEMM.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enums
_NAMES = {np.dtype(np.float32): "cblas_sgemm", np.dtype(np.float64): "cblas_dgemm"}
_SYMBOLS = (("scipy_", "64_", ctypes.c_int64), ("", "64_", ctypes.c_int64), ("", "", ctypes.c_int))


@functools.cache
def gemm_function(dtype: np.dtype) -> Any:
    """The ctypes function ``cblas_?gemm(order, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb,
    beta, c, ldc)`` for ``dtype`` in NumPy's OpenBLAS (its integer width read from the symbol's
    name: ``64_``, a 64-bit-integer build), or None."""
    stem = _NAMES.get(np.dtype(dtype))
    if stem is None:
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    scalar = ctypes.c_float if stem == "cblas_sgemm" else ctypes.c_double
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, integer in _SYMBOLS:
            fn = getattr(lib, prefix + stem + suffix, None)
            if fn is not None:
                fn.restype = None
                fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [scalar, ctypes.c_void_p]
                fn.argtypes += [integer, ctypes.c_void_p, integer, scalar, ctypes.c_void_p, integer]
                return fn
    return None


def available(x: Any) -> bool:
    """Whether ``gemm`` can multiply arrays like ``x``: NumPy float32/float64 and a cblas found."""
    return isinstance(x, np.ndarray) and gemm_function(x.dtype) is not None


def _operand(a: np.ndarray) -> tuple[int, int]:
    """(trans, leading dimension) of a 2-D operand for a row-major call: its rows contiguous
    (NoTrans), or its columns (Trans, a transposed view)."""
    s0, s1 = a.strides
    item = a.itemsize
    if s1 == item and s0 % item == 0 and s0 // item >= max(1, a.shape[1]):
        return NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(1, a.shape[0]):
        return TRANS, s1 // item
    raise ValueError(
        f"gemm: an operand of shape {a.shape} and strides {a.strides} has neither "
        "contiguous rows nor contiguous columns"
    )


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """c (M, N) = a (M, K) @ b (K, N) + beta * c, in place; returns c. c's rows must be
    contiguous; a and b may be views at any offset of a larger array, or transposed views."""
    fn = gemm_function(c.dtype)
    if fn is None or not all(isinstance(t, np.ndarray) and t.dtype == c.dtype for t in (a, b)):
        raise TypeError(
            f"gemm: needs NumPy arrays of one dtype with a cblas found, got "
            f"{type(a).__name__} {a.dtype}, {type(b).__name__} {b.dtype}, {c.dtype}"
        )
    (M, K), (K2, N) = a.shape, b.shape
    if K2 != K or c.shape != (M, N):
        raise ValueError(f"gemm: shapes {a.shape} @ {b.shape} -> {c.shape} do not match")
    trans_c, ldc = _operand(c)
    if trans_c != NO_TRANS:
        raise ValueError(f"gemm: the output's rows must be contiguous, got strides {c.strides}")
    trans_a, lda = _operand(a)
    trans_b, ldb = _operand(b)
    if M and N:
        pointers = (a.ctypes.data, b.ctypes.data, c.ctypes.data)
        fn(
            ROW_MAJOR,
            trans_a,
            trans_b,
            M,
            N,
            K,
            1.0,
            pointers[0],
            lda,
            pointers[1],
            ldb,
            beta,
            pointers[2],
            ldc,
        )
    return c
