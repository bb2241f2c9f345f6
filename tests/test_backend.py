"""The array-module switch: NumPy or CuPy per call, explicit moves, and no silent mixing."""

from __future__ import annotations

import numpy as np
import pytest

from tinyfcn import backend
from tinyfcn.backend import asnumpy, device_of, get_array_module, to_device
from tinyfcn.functional import (
    cross_entropy,
    dropout_backward,
    max_pool2d_backward,
    max_pool2d_forward,
    relu_backward,
)


def test_get_array_module_on_numpy_and_plain_values():
    assert get_array_module(np.zeros(2)) is np
    assert get_array_module(np.zeros(2), None, np.ones(3)) is np
    assert get_array_module() is np
    assert get_array_module(1.5, [1, 2]) is np
    assert device_of(np.zeros(1)) == "cpu" and device_of(3) == "cpu"
    assert not backend.is_cupy_array(np.zeros(1))


def test_to_device_cpu_does_not_copy_numpy_arrays():
    x = np.arange(6.0).reshape(2, 3)
    assert to_device(x, "cpu") is x
    y = to_device([[1, 2], [3, 4]], "cpu")
    assert isinstance(y, np.ndarray) and y.shape == (2, 2)


def test_asnumpy_passes_numpy_through():
    x = np.arange(3.0)
    assert asnumpy(x) is x
    assert asnumpy(2.5).shape == () and float(asnumpy(2.5)) == 2.5
    np.testing.assert_array_equal(asnumpy([1, 2]), [1, 2])


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:0", ""])
def test_unknown_device_names_raise(device):
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\)"):
        to_device(np.zeros(1), device)


def test_cuda_without_cupy_raises_a_helpful_error():
    if backend._cupy is not None:
        pytest.skip("CuPy is installed")
    with pytest.raises(RuntimeError, match=r"needs CuPy.*pip install 'tinyfcn\[gpu\]'"):
        to_device(np.zeros(1), "cuda")
    assert not backend.cupy_available()


# ----------------------------------------------------------------------------------------------
# GPU only: these take the CuPy variant of the xp fixture and skip without a device.


@pytest.fixture
def cupy(xp):
    if xp is np:
        pytest.skip("needs CuPy arrays")
    return xp


def test_to_device_and_back(cupy):
    x = np.arange(12.0).reshape(3, 4)
    on_gpu = to_device(x, "cuda")
    assert isinstance(on_gpu, cupy.ndarray) and device_of(on_gpu) == "cuda"
    assert get_array_module(on_gpu) is cupy
    assert to_device(on_gpu, "cuda") is on_gpu
    back = to_device(on_gpu, "cpu")
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(asnumpy(on_gpu), x)


def test_mixing_numpy_and_cupy_raises_naming_both(cupy):
    host = np.zeros((2, 3))
    device = cupy.zeros((4, 5))
    with pytest.raises(TypeError) as info:
        get_array_module(host, device)
    message = str(info.value)
    assert "cannot mix NumPy (cpu) and CuPy (cuda)" in message
    assert "numpy.ndarray(2, 3)" in message, message
    assert "cupy" in message.lower() and "(4, 5)" in message, message
    assert "to_device" in message


def test_ops_refuse_mixed_devices(cupy):
    x = cupy.asarray(np.random.default_rng(0).standard_normal((1, 2, 4, 4)))
    _, cache = max_pool2d_forward(x, 2)
    with pytest.raises(TypeError, match="cannot mix"):
        max_pool2d_backward(np.ones((1, 2, 2, 2)), cache)
    with pytest.raises(TypeError, match="cannot mix"):
        relu_backward(np.ones((1, 2, 4, 4)), x > 0)
    with pytest.raises(TypeError, match="cannot mix"):
        dropout_backward(np.ones((1, 2, 4, 4)), cupy.ones((1, 2, 4, 4)))
    with pytest.raises(TypeError, match="cannot mix"):
        cross_entropy(x, np.zeros((1, 4, 4), dtype=np.int64))
