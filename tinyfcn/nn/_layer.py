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


def conv_repr(layer: Any, **extra: Any) -> str:
    """``in, out, kernel_size=..., stride=...`` of a (transposed) conv: defaults left out."""
    s = f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}"
    for name in ("stride", "padding", "output_padding", "dilation"):
        value = getattr(layer, name, None)
        if value is not None and value != ((1, 1) if name in ("stride", "dilation") else (0, 0)):
            s += f", {name}={value}"
    s += "" if layer.bias is not None else ", bias=False"
    return s + "".join(f", {k}={v!r}" for k, v in extra.items())
