"""The gradient checker itself: its error measure, its finite differences, and that it fails
when a backward pass is wrong (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyfcn.gradcheck import (
    GradcheckResult,
    assert_gradcheck,
    gradcheck,
    numerical_gradient,
    relative_error,
)
from tinyfcn.nn import Module, Parameter

# ----------------------------------------------------------------------------------------------
# relative_error


def test_relative_error_is_zero_only_for_equal_arrays():
    a = np.random.default_rng(0).standard_normal((3, 4))
    assert relative_error(a, a.copy()) == 0.0
    b = a.copy()
    b[1, 2] = np.nextafter(b[1, 2], np.inf)
    assert relative_error(a, b) > 0.0


def test_relative_error_formula_symmetry_and_scale():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    expected = np.max(np.abs(a - b)) / np.max(np.abs(a) + np.abs(b))
    assert relative_error(a, b) == pytest.approx(expected, rel=1e-15)
    assert relative_error(a, b) == relative_error(b, a)
    assert relative_error(1e6 * a, 1e6 * b) == pytest.approx(relative_error(a, b), rel=1e-12)
    assert relative_error(1e-3 * a, 1e-3 * b) == pytest.approx(relative_error(a, b), rel=1e-12)


def test_relative_error_is_at_most_one():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a, b = rng.standard_normal(5), rng.standard_normal(5)
        assert 0.0 <= relative_error(a, b) <= 1.0
    a = rng.standard_normal(5)
    assert relative_error(a, -a) == pytest.approx(1.0)
    assert relative_error(a, np.zeros(5)) == pytest.approx(1.0)


def test_relative_error_floor_for_tiny_values():
    """The denominator never drops below 1e-8: two tiny gradients count as equal."""
    assert relative_error(np.array([1e-12]), np.array([0.0])) == pytest.approx(1e-4)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_relative_error_edge_cases():
    assert relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert relative_error([1, 2], [1, 2]) == 0.0  # lists and integers are converted
    with pytest.raises(ValueError, match=r"shapes differ, \(3,\) vs \(1, 3\)"):
        relative_error(np.zeros(3), np.zeros((1, 3)))
    assert math.isnan(relative_error(np.array([1.0, np.nan]), np.array([1.0, 2.0])))


# ----------------------------------------------------------------------------------------------
# numerical_gradient


def test_numerical_gradient_of_a_known_function():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4))
    c = rng.standard_normal((3, 4))
    x_before = x.copy()

    def f():
        return float(np.sum(c * np.sin(x)) + np.sum(x**3) / 3)

    numeric = numerical_gradient(f, x)
    analytic = c * np.cos(x) + x**2
    assert numeric.shape == x.shape and numeric.dtype == np.float64
    assert relative_error(numeric, analytic) < 1e-8
    np.testing.assert_array_equal(x, x_before)  # every perturbation is undone exactly


def test_numerical_gradient_of_a_quadratic_form():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((5, 5))
    x = rng.standard_normal(5)
    numeric = numerical_gradient(lambda: float(x @ A @ x), x)
    assert relative_error(numeric, (A + A.T) @ x) < 1e-9


def test_numerical_gradient_needs_a_contiguous_array():
    x = np.zeros((4, 4))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        numerical_gradient(lambda: 0.0, x)


# ----------------------------------------------------------------------------------------------
# gradcheck: passes a right backward, fails every wrong one


class Scale(Module):
    """y = k x; ``error`` makes the backward wrong by that factor (1.0 = right)."""

    def __init__(self, k: float = 3.0, error: float = 1.0) -> None:
        super().__init__()
        self.k, self.error = k, error

    def forward(self, x):
        return self.k * x

    def backward(self, dy):
        return self.k * self.error * dy


class Flatten(Module):
    """y = x.reshape(N, W, H) (a reinterpretation of the same memory, not a transpose).

    The right backward reshapes dy back; the classic bug transposes it instead. The shapes
    agree whenever H and W differ only in order, so nothing but the values can catch it.
    """

    def __init__(self, buggy: bool) -> None:
        super().__init__()
        self.buggy = buggy

    def forward(self, x):
        self._save(x.shape)
        N, H, W = x.shape
        return x.reshape(N, W, H)

    def backward(self, dy):
        shape = self._take_cache()
        return dy.transpose(0, 2, 1) if self.buggy else dy.reshape(shape)


class Affine(Module):
    """y = w * x + b per channel; ``weight_error`` corrupts the weight gradient only."""

    def __init__(self, weight_error: float = 1.0, nan_bias_grad: bool = False) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.weight = Parameter(rng.standard_normal(3))
        self.bias = Parameter(rng.standard_normal(3))
        self.weight_error, self.nan_bias_grad = weight_error, nan_bias_grad

    def forward(self, x):
        self._save(x)
        return x * self.weight.data[:, None, None] + self.bias.data[:, None, None]

    def backward(self, dy):
        x = self._take_cache()
        self.weight.accumulate(self.weight_error * (dy * x).sum(axis=(0, 2, 3)))
        db = dy.sum(axis=(0, 2, 3))
        self.bias.accumulate(db * np.nan if self.nan_bias_grad else db)
        return dy * self.weight.data[:, None, None]


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_gradcheck_passes_right_backward_passes():
    assert gradcheck(Scale(), rand(2, 3)).max_error < 1e-9
    assert gradcheck(Flatten(buggy=False), rand(2, 3, 5)).max_error < 1e-9
    result = assert_gradcheck(Affine(), rand(2, 3, 4, 4))
    assert set(result.errors) == {"input", "weight", "bias"} and result.passed
    assert "ok" in str(result)


@pytest.mark.parametrize("error", [1.01, 0.999, -1.0, 0.0], ids=lambda e: f"factor-{e}")
def test_gradcheck_catches_a_backward_off_by_a_factor(error):
    result = gradcheck(Scale(error=error), rand(2, 3))
    assert not result.passed
    assert result.errors["input"] == pytest.approx(abs(1 - error) / (1 + abs(error)), rel=1e-6)
    with pytest.raises(AssertionError, match=r"gradient check of Scale failed:[\s\S]*FAILED"):
        assert_gradcheck(Scale(error=error), rand(2, 3))


def test_gradcheck_catches_a_transposed_reshape():
    x = rand(2, 3, 5, seed=1)
    result = gradcheck(Flatten(buggy=True), x)
    assert not result.passed and result.errors["input"] > 0.1, str(result)
    # An all-ones upstream gradient would have hidden the bug: both backward passes agree on it.
    ones = np.ones((2, 5, 3))
    right, wrong = Flatten(buggy=False), Flatten(buggy=True)
    right(x)
    wrong(x)
    assert relative_error(right.backward(ones), wrong.backward(ones)) == 0.0


def test_gradcheck_catches_a_wrong_parameter_gradient():
    result = gradcheck(Affine(weight_error=1.05), rand(2, 3, 4, 4))
    assert not result.passed
    assert result.errors["input"] < 1e-7 and result.errors["bias"] < 1e-7
    assert result.errors["weight"] > 1e-3
    with pytest.raises(AssertionError, match=r"weight\s+\d\.\d+e-0\d"):
        assert_gradcheck(Affine(weight_error=1.05), rand(2, 3, 4, 4))


def test_gradcheck_fails_on_a_nan_gradient_after_a_good_one():
    """A nan error must fail the check wherever it appears in the table; Python's ``max`` skips
    a nan that is not the first element, so the result must not rely on it."""
    result = gradcheck(Affine(nan_bias_grad=True), rand(2, 3, 4, 4))
    assert list(result.errors) == ["input", "weight", "bias"]
    assert math.isnan(result.errors["bias"])
    assert not result.passed
    assert math.isnan(result.max_error)
    for errors in ({"input": 1e-10, "w": math.nan}, {"input": math.nan, "w": 1e-10}):
        assert not GradcheckResult(errors=errors).passed


def test_gradcheck_skips_frozen_parameters_and_check_params_false():
    module = Affine()
    module.bias.requires_grad = False
    assert set(gradcheck(module, rand(1, 3, 2, 2)).errors) == {"input", "weight"}
    bad = Affine(weight_error=2.0)
    assert gradcheck(bad, rand(1, 3, 2, 2), check_params=False).passed


def test_gradcheck_needs_float64():
    with pytest.raises(TypeError, match="float64 input, got float32"):
        gradcheck(Scale(), rand(2, 3).astype(np.float32))
    module = Affine()
    module.weight.data = module.weight.data.astype(np.float32)
    with pytest.raises(TypeError, match=r"weight is float32.*module.double\(\)"):
        gradcheck(module, rand(1, 3, 2, 2))


def test_gradcheck_result_reporting():
    result = GradcheckResult(errors={"input": 1e-9, "weight": 3e-3}, tol=1e-6)
    assert result.max_error == 3e-3 and not result.passed
    text = str(result)
    assert "input" in text and "weight" in text and "3.00e-03" in text and "FAILED" in text
    assert GradcheckResult().passed and GradcheckResult().max_error == 0.0
