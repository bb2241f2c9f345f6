"""Shared plumbing of the layers with parameters: compute in the weight's dtype."""

from __future__ import annotations

from typing import Any

from ..functional._checks import check_float_array


def cast_to_weight(x: Any, weight: Any, op: str) -> Any:
    """Reject non-float input; run in the weight's dtype (float64 weights -> float64 compute)."""
    check_float_array(x, "input", op)
    return x.astype(weight.dtype, copy=False)


def cast_back(dx: Any, dtype: Any) -> Any:
    """Return the input gradient in the dtype the input came in."""
    return dx if dx is None else dx.astype(dtype, copy=False)
