"""Numerical gradient checking: central differences against a layer's hand-written backward.

For a random upstream gradient g (an all-ones g would hide a permuted reshape), the scalar
L(x, theta) = <f(x; theta), g> has dL/dx = backward(g). Central differences estimate it:

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)             error O(eps^2)

and the two are compared by the relative error

    rel = max_i |a_i - b_i| / max(1e-8, max_i (|a_i| + |b_i|))

Run it in float64: in float32 the rounding error of L swamps the O(eps^2) term.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import asnumpy, get_array_module


def relative_error(a: Any, b: Any) -> float:
    """``max|a-b| / max(1e-8, max(|a|+|b|))``: scale-free, and 0 only when a == b."""
    a, b = asnumpy(a).astype(np.float64), asnumpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_gradient(f: Callable[[], float], x: Any, eps: float = 1e-6) -> np.ndarray:
    """dL/dx by central differences, perturbing ``x`` in place (and restoring it).

    ``f`` takes no argument and returns the scalar L computed from the current ``x``.
    """
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array it can perturb in place")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    for i in range(x.size):
        old = flat[i].item()
        flat[i] = old + eps
        plus = float(f())
        flat[i] = old - eps
        minus = float(f())
        flat[i] = old
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


@dataclass
class GradcheckResult:
    """Relative error per checked tensor (``"input"``, ``"input1"``, parameter names)."""

    errors: dict[str, float] = field(default_factory=dict)
    tol: float = 1e-6

    @property
    def max_error(self) -> float:
        """The largest error; nan if any is nan (Python's ``max`` would skip a later nan)."""
        if any(math.isnan(e) for e in self.errors.values()):
            return math.nan
        return max(self.errors.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tol

    def __str__(self) -> str:
        rows = [f"{name:>20s}  {err:.2e}" for name, err in self.errors.items()]
        verdict = "ok" if self.passed else f"FAILED (tol {self.tol:.0e})"
        return "\n".join(rows + [f"{'max':>20s}  {self.max_error:.2e}  {verdict}"])


def gradcheck(
    module: Any,
    *inputs: Any,
    eps: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
    check_params: bool = True,
) -> GradcheckResult:
    """Compare ``module.backward`` with central differences, for inputs and parameters.

    ``module`` has ``forward(*inputs)`` and ``backward(dy) -> dx`` (any tinyfcn layer or model).
    The first input is differentiated; further inputs (a Crop's reference, a loss's labels) are
    passed through unchanged.
    The module, inputs and parameters must be float64. Returns a GradcheckResult; use
    ``assert_gradcheck`` in tests.
    """
    if inputs[0].dtype != np.float64:
        raise TypeError(f"gradcheck needs a float64 input, got {inputs[0].dtype}")
    params = (
        list(module.named_parameters())
        if check_params and hasattr(module, "named_parameters")
        else []
    )
    for name, p in params:
        if p.dtype != np.float64:
            raise TypeError(
                f"gradcheck needs float64 parameters, {name} is {p.dtype}; "
                "call module.double() first"
            )
    xp = get_array_module(*inputs)
    y = module.forward(*inputs)
    g = xp.asarray(np.random.default_rng(seed).standard_normal(y.shape))
    for _, p in params:
        p.grad = None
    dx = module.backward(g)

    def loss() -> float:
        return float((module.forward(*inputs) * g).sum())

    result = GradcheckResult(tol=tol)
    result.errors["input"] = relative_error(dx, numerical_gradient(loss, inputs[0], eps))
    for name, p in params:
        if p.requires_grad:
            result.errors[name] = relative_error(p.grad, numerical_gradient(loss, p.data, eps))
    return result


def assert_gradcheck(module: Any, *inputs: Any, **kwargs: Any) -> GradcheckResult:
    """``gradcheck`` that raises AssertionError, with the table of errors, when it fails."""
    result = gradcheck(module, *inputs, **kwargs)
    if not result.passed:
        raise AssertionError(f"gradient check of {type(module).__name__} failed:\n{result}")
    return result
