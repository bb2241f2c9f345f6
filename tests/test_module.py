"""Parameter, Module and Sequential: names (checked against torch.nn), modes, dtypes, devices,
state dicts, the cache that backward consumes, and no_grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyfcn.backend import asnumpy, cupy_available
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import (
    Conv2d,
    Dropout,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    is_grad_enabled,
    manual_seed,
    no_grad,
)


class Affine(Module):
    """y[n, c] = x[n, c] * weight[c] + bias[c]: a tiny layer with two parameters."""

    def __init__(self, channels: int = 3, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weight = Parameter(rng.standard_normal(channels))
        self.bias = Parameter(rng.standard_normal(channels), lr_mult=2.0, decay_mult=0.0)

    def forward(self, x):
        self._save(x)
        return x * self.weight.data[:, None, None] + self.bias.data[:, None, None]

    def backward(self, dy):
        x = self._take_cache()
        self.weight.accumulate((dy * x).sum(axis=(0, 2, 3)))
        self.bias.accumulate(dy.sum(axis=(0, 2, 3)))
        return dy * self.weight.data[:, None, None]


class Net(Module):
    """A submodule assigned before the module's own parameter, and a nested Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Affine(3, seed=1)
        self.scale = Parameter(np.array([1.5]))
        self.relu = ReLU()
        self.head = Sequential(Affine(3, seed=2), ReLU(), MaxPool2d(2), Dropout(0.5, seed=0))
        self.gain = Parameter(np.array([0.5, 2.0]))


class TorchAffine(torch.nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(channels, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(channels, dtype=torch.float64))


class TorchNet(torch.nn.Module):
    """The same tree in torch.nn: the oracle for names and their order."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = TorchAffine(3)
        self.scale = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Sequential(
            TorchAffine(3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Dropout(0.5)
        )
        self.gain = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))


EXPECTED_NAMES = [
    "scale",
    "gain",
    "stem.weight",
    "stem.bias",
    "head.0.weight",
    "head.0.bias",
]


# ----------------------------------------------------------------------------------------------
# Names


def test_named_parameters_order_and_dotted_names_match_torch():
    ours = [name for name, _ in Net().named_parameters()]
    theirs = [name for name, _ in TorchNet().named_parameters()]
    assert ours == theirs == EXPECTED_NAMES
    assert list(Net().state_dict()) == list(TorchNet().state_dict()) == EXPECTED_NAMES


def test_named_modules_match_torch():
    ours = [name for name, _ in Net().named_modules()]
    theirs = [name for name, _ in TorchNet().named_modules()]
    assert ours == theirs
    assert [type(m).__name__ for m in Net().children()] == ["Affine", "ReLU", "Sequential"]


def test_reassigning_a_parameter_or_submodule_keeps_its_place():
    """``layer.weight = Parameter(...)`` replaces the parameter where it stands, as in torch;
    state dicts and optimizers that index parameters by position depend on that order."""
    ours, theirs = Net(), TorchNet()
    ours.stem.weight = Parameter(np.ones(3))
    theirs.stem.weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    ours.scale = Parameter(np.array([3.0]))
    theirs.scale = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.stem = Affine(3, seed=5)
    theirs.stem = TorchAffine(3)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == EXPECTED_NAMES
    np.testing.assert_array_equal(ours.scale.data, [3.0])


def test_assigning_none_removes_a_parameter_or_submodule():
    net = Net()
    net.scale = None
    net.relu = None
    assert "scale" not in dict(net.named_parameters())
    assert "relu" not in [name for name, _ in net.named_modules()]
    del net.gain
    assert "gain" not in dict(net.named_parameters())
    assert not hasattr(net, "gain")


def test_assigning_a_plain_value_to_a_registered_name_raises():
    """As in torch: an array in place of a Parameter is almost always a forgotten ``.data``."""
    net = Net()
    with pytest.raises(TypeError, match=r"'scale'.*scale\.data"):
        net.scale = np.zeros(1)
    with pytest.raises(TypeError, match="'relu'.*Module or None expected"):
        net.relu = "not a module"
    assert "scale" in dict(net.named_parameters())


def test_parameters_are_the_named_ones():
    net = Net()
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert net.num_parameters() == 1 + 2 + 3 + 3 + 3 + 3
    assert net.head[0] is dict(net.named_modules())["head.0"]


def test_setattr_before_init_raises():
    class Forgetful(Module):
        def __init__(self) -> None:
            self.weight = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match=r"Module.__init__\(\)"):
        Forgetful()


def test_repr_lists_children():
    text = repr(Net())
    for part in ("Net(", "(stem): Affine()", "(head): Sequential(", "(2): MaxPool2d(", "p=0.5"):
        assert part in text, text


# ----------------------------------------------------------------------------------------------
# Parameter


def test_parameter_attributes_and_repr():
    p = Parameter(np.zeros((2, 3), dtype=np.float32), lr_mult=2.0, decay_mult=0.0)
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.size == 6 and p.device == "cpu"
    assert p.grad is None and p.requires_grad
    assert "lr_mult=2.0, decay_mult=0.0" in repr(p)
    frozen = Parameter(np.zeros(2), requires_grad=False)
    assert "requires_grad=False" in repr(frozen)


def test_parameter_accumulates_and_checks_shape():
    p = Parameter(np.zeros(3, dtype=np.float32))
    g = np.array([1.0, 2.0, 3.0])
    p.accumulate(g)
    assert p.grad.dtype == np.float32  # the gradient lives in the parameter's dtype
    g[0] = 100.0
    assert p.grad[0] == 1.0, "accumulate must copy, not alias, the first gradient"
    p.accumulate(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(p.grad, [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) for a parameter \(3,\)"):
        p.accumulate(np.zeros(2))
    frozen = Parameter(np.zeros(3), requires_grad=False)
    frozen.accumulate(np.ones(3))
    assert frozen.grad is None


# ----------------------------------------------------------------------------------------------
# Gradients: backward, zero_grad, Sequential


def test_sequential_gradcheck_with_parameters(xp):
    model = Sequential(Affine(3, seed=1), ReLU(), Affine(3, seed=2))
    model.to("cpu" if xp is np else "cuda")
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5)))
    result = assert_gradcheck(model, x)
    assert set(result.errors) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}


def test_sequential_runs_forward_in_order_and_backward_in_reverse():
    calls = []

    class Recorder(Module):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def forward(self, x):
            calls.append(("forward", self.tag))
            return x + 1

        def backward(self, dy):
            calls.append(("backward", self.tag))
            return dy * 2

    seq = Sequential(Recorder("a"), Recorder("b"), Recorder("c"))
    assert len(seq) == 3 and [m.tag for m in seq] == ["a", "b", "c"] and seq[-1].tag == "c"
    assert seq(np.zeros(1))[0] == 3
    assert seq.backward(np.ones(1))[0] == 8
    assert calls == [("forward", t) for t in "abc"] + [("backward", t) for t in "cba"]


def test_backward_accumulates_and_zero_grad_resets():
    model = Sequential(Affine(3, seed=1), ReLU(), Affine(3, seed=2))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    dy = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    model(x)
    model.backward(dy)
    first = {name: p.grad.copy() for name, p in model.named_parameters()}
    model(x)
    model.backward(dy)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[name], rtol=1e-14, err_msg=name)
    arrays = [p.grad for p in model.parameters()]
    model.zero_grad()
    for p, array in zip(model.parameters(), arrays, strict=True):
        assert p.grad is array, "zero_grad reuses the gradient buffer"
        assert (p.grad == 0).all()
    fresh = Affine(3)
    fresh.zero_grad()  # no gradient yet: stays None
    assert fresh.weight.grad is None


def test_backward_without_forward_raises():
    with pytest.raises(RuntimeError, match=r"Affine.backward\(\) called without"):
        Affine().backward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        Sequential(ReLU(), Affine()).backward(np.zeros((1, 3, 2, 2)))


def test_backward_twice_after_one_forward_raises():
    layer = Affine()
    layer(np.zeros((1, 3, 2, 2)))
    layer.backward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(RuntimeError, match="backward already ran"):
        layer.backward(np.zeros((1, 3, 2, 2)))


def test_base_module_forward_and_backward_are_abstract():
    with pytest.raises(NotImplementedError, match="Module has no forward"):
        Module()(np.zeros(1))
    with pytest.raises(NotImplementedError, match="Module has no backward"):
        Module().backward(np.zeros(1))


# ----------------------------------------------------------------------------------------------
# no_grad


def test_no_grad_keeps_no_cache_and_restores_the_mode():
    model = Sequential(Affine(3), ReLU())
    x = np.random.default_rng(0).standard_normal((1, 3, 2, 2))
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = model(x)
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled(), "leaving a nested no_grad must not re-enable gradients"
    assert is_grad_enabled()
    np.testing.assert_array_equal(y, model(x))  # same output with and without no_grad
    fresh = Sequential(Affine(3), ReLU())
    with no_grad():
        fresh(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        fresh.backward(np.ones_like(y))


def test_a_no_grad_forward_leaves_an_earlier_cache_valid():
    """As in PyTorch: evaluating under no_grad between a forward and its backward is harmless."""
    rng = np.random.default_rng(0)
    model = Sequential(Affine(3), ReLU(), Dropout(0.5, seed=1))
    x, dy = rng.standard_normal((1, 3, 2, 2)), rng.standard_normal((1, 3, 2, 2))
    model(x)
    expected = model.backward(dy)
    model(x)
    with no_grad():
        model(rng.standard_normal((1, 3, 4, 4)))
    model[2].rng = np.random.default_rng(1)  # the same dropout mask as the first forward
    model(x)
    with no_grad():
        model.eval()(rng.standard_normal((1, 3, 4, 4)))
    np.testing.assert_array_equal(model.backward(dy), expected)


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ValueError):
        with no_grad():
            raise ValueError("boom")
    assert is_grad_enabled()


# ----------------------------------------------------------------------------------------------
# Modes, dtypes and devices


def test_train_and_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.head[3].training
    # a dropout deep inside a model is the identity in eval mode
    x = np.random.default_rng(0).uniform(1, 2, size=(1, 3, 4, 4))
    net.head.eval()
    without_dropout = net.head[2](net.head[1](net.head[0](x)))
    np.testing.assert_array_equal(net.head(x), without_dropout)
    net.head.train()
    assert not np.array_equal(net.head(x), without_dropout)


@pytest.mark.parametrize("method", ["to", "float", "double"])
def test_to_dtype_casts_parameters_and_gradients(method):
    net = Net()
    net.stem(np.ones((1, 3, 2, 2)))
    net.stem.backward(np.ones((1, 3, 2, 2)))
    if method == "to":
        net.to(dtype=np.float32)
        target = np.float32
    elif method == "float":
        net.float()
        target = np.float32
    else:
        net.float()
        net.double()
        target = np.float64
    assert all(p.dtype == target for p in net.parameters())
    assert net.stem.weight.grad.dtype == target and net.stem.bias.grad.dtype == target
    assert net.stem(np.ones((1, 3, 2, 2), dtype=target)).dtype == target


def test_to_clears_stale_caches():
    layer = Affine()
    layer(np.ones((1, 3, 2, 2)))
    layer.to(dtype=np.float32)
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward(np.ones((1, 3, 2, 2)))


def test_to_device_checks_the_name():
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\)"):
        Net().to("gpu")
    net = Net().to("cpu")
    assert all(isinstance(p.data, np.ndarray) and p.device == "cpu" for p in net.parameters())


@pytest.mark.skipif(cupy_available(), reason="checks the error raised without CuPy")
def test_to_cuda_without_cupy_says_how_to_install_it():
    try:
        import cupy  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="needs CuPy"):
            Net().to("cuda")
    else:
        pytest.skip("CuPy is installed (without a device)")


def test_to_device_round_trip(xp, device):
    net = Net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    net.to(device)
    assert all(p.device == device for p in net.parameters())
    y = net.stem(xp.ones((1, 3, 2, 2)))
    assert type(y) is xp.ndarray
    net.stem.backward(xp.ones((1, 3, 2, 2)))
    assert net.stem.weight.grad.__class__ is xp.ndarray
    net.to("cpu")
    for name, value in net.state_dict().items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# ----------------------------------------------------------------------------------------------
# State dicts


def test_state_dict_round_trip(xp, device):
    source, target = Net(), Net()
    source.stem.weight.data[:] = [1.0, 2.0, 3.0]
    target.to(device)
    sd = source.state_dict()
    assert list(sd) == EXPECTED_NAMES
    assert sd["stem.weight"] is source.stem.weight.data  # not copied, like torch
    target.load_state_dict(sd)
    for name, p in target.named_parameters():
        assert p.device == device
        np.testing.assert_array_equal(asnumpy(p.data), sd[name], err_msg=name)
    source.stem.weight.data[:] = 0.0
    np.testing.assert_array_equal(asnumpy(target.stem.weight.data), [1.0, 2.0, 3.0])
    # and back from the device
    again = Net()
    again.load_state_dict(target.state_dict())
    np.testing.assert_array_equal(again.stem.weight.data, [1.0, 2.0, 3.0])


def test_load_state_dict_keeps_the_model_dtype_and_arrays():
    model = Net().float()
    weight_array = model.stem.weight.data
    model.load_state_dict(Net().state_dict())  # float64 arrays into a float32 model
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model.stem.weight.data is weight_array, "loading copies into the existing arrays"
    np.testing.assert_allclose(model.stem.weight.data, Net().stem.weight.data, rtol=1e-6)


def test_load_state_dict_from_torch_tensors():
    theirs = TorchNet()
    with torch.no_grad():
        for i, p in enumerate(theirs.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float64) + 10 * i)
    ours = Net()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for (name, p), (name_t, p_t) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert name == name_t
        np.testing.assert_array_equal(p.data, p_t.detach().numpy(), err_msg=name)


def test_load_state_dict_names_every_bad_key_at_once():
    model = Net()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = dict(Net().state_dict())
    del sd["stem.bias"]
    del sd["head.0.weight"]
    sd["stem.gamma"] = np.zeros(3)
    sd["fc8.weight"] = np.zeros(3)
    sd["gain"] = np.zeros(5)
    sd["scale"] = np.zeros((1, 1))
    sd["stem.weight"] = np.full(3, 9.0)  # a good key: must not be loaded when the call fails
    with pytest.raises(KeyError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    for part in (
        "missing keys: stem.bias, head.0.weight",
        "unexpected keys: stem.gamma, fc8.weight",
        "gain: checkpoint (5,) vs model (2,)",
        "scale: checkpoint (1, 1) vs model (1,)",
    ):
        assert part in message, message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed")


def test_load_state_dict_non_strict_skips_missing_and_unexpected_keys():
    model = Net()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.load_state_dict(
        {"stem.weight": np.full(3, 7.0), "score_fr.weight": np.zeros(1)}, strict=False
    )
    np.testing.assert_array_equal(model.stem.weight.data, [7.0, 7.0, 7.0])
    for name, value in model.state_dict().items():
        if name != "stem.weight":
            np.testing.assert_array_equal(value, before[name], err_msg=name)
    with pytest.raises(KeyError, match=r"shape mismatch: stem.weight: checkpoint \(4,\)"):
        model.load_state_dict({"stem.weight": np.zeros(4)}, strict=False)


def test_zero_grad_defers_the_zeros_until_they_are_read_or_overwritten():
    """zero_grad() writes nothing; the next backward overwrites, or reading .grad fills zeros."""
    p = Parameter(np.ones((2, 3)))
    p.accumulate(np.full((2, 3), 5.0))
    p.zero_grad()
    assert (p._grad == 5.0).all()  # nothing written yet
    p.accumulate(np.full((2, 3), 2.0))  # zero + 2, not 5 + 2
    np.testing.assert_array_equal(p.grad, np.full((2, 3), 2.0))
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, np.zeros((2, 3)))  # read: zeros filled in
    p.accumulate(np.ones((2, 3)))
    np.testing.assert_array_equal(p.grad, np.ones((2, 3)))


def test_a_conv_weight_after_zero_grad_holds_this_backward_only():
    manual_seed(0)
    conv = Conv2d(2, 3, 3, padding=1).double()
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((1, 3, 5, 5))
    conv(x)
    conv.backward(dy)
    first = conv.weight.grad.copy()
    conv.zero_grad()
    conv(x)
    conv.backward(2 * dy)
    np.testing.assert_allclose(conv.weight.grad, 2 * first, rtol=1e-12)
    conv.zero_grad()
    conv(x)  # a forward without backward: the gradient reads as zero
    np.testing.assert_array_equal(conv.weight.grad, np.zeros_like(first))
