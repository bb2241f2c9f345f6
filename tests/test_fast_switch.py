"""The one switch: under ``tinyfcn.fast.disabled()`` (or TINYFCN_FAST=0) every model trains and
predicts on the textbook alone, not one function of ``tinyfcn/fast/`` running, and gives what the
engine gives (float64, <= 1e-12 relative)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tests.helpers import assert_same_as_textbook
from tinyfcn import fast, nn
from tinyfcn.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s

FAST_DIR = os.path.dirname(fast.__file__)
SWITCH = os.path.join(FAST_DIR, "switch.py")


def test_switch_default_env_and_nesting(monkeypatch):
    monkeypatch.delenv("TINYFCN_FAST", raising=False)
    assert fast.is_enabled()
    with fast.disabled():
        assert not fast.is_enabled()
        with fast.enabled():
            assert fast.is_enabled()
        assert not fast.is_enabled()
    assert fast.is_enabled()
    monkeypatch.setenv("TINYFCN_FAST", "0")
    assert not fast.is_enabled()
    with fast.enabled():
        assert fast.is_enabled()
    monkeypatch.setenv("TINYFCN_FAST", "1")
    assert fast.is_enabled()
    monkeypatch.setenv("TINYFCN_FAST", "slow")
    with pytest.raises(ValueError, match=r"TINYFCN_FAST must be 0 .* or 1 .*got 'slow'"):
        fast.is_enabled()


def engine_calls(run) -> set[str]:
    """Names of the functions in tinyfcn/fast/ (the switch itself aside) that ``run()`` calls."""
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            path = frame.f_code.co_filename
            if path.startswith(FAST_DIR) and path != SWITCH:
                seen.add(f"{os.path.basename(path)}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen


MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce}


def small_model(name: str, geometry: str):
    nn.manual_seed(0)
    model = MODELS[name](num_classes=3, geometry=geometry, width=1 / 16, fc_channels=8, dropout=0)
    for m in model.modules():  # learnable upsampling too: every gradient is compared
        for p in m.parameters():
            p.lr_mult = 1.0
    return model.double()


def one_step(model, x, labels):
    """Forward, loss, backward: (scores, loss, dx, {name: grad}) as NumPy copies."""
    model.zero_grad()
    criterion = nn.CrossEntropyLoss()
    scores = model(x)
    loss = criterion(scores, labels)
    dx = model.backward(criterion.backward())
    grads = {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}
    return scores.copy(), float(loss), dx.copy(), grads


CASES = [(name, "compact") for name in MODELS] + [("fcn8s", "paper"), ("fcn32s", "paper")]


@pytest.mark.parametrize("name, geometry", CASES)
def test_every_model_trains_the_same_on_the_textbook_alone(name, geometry):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 21, 29))
    labels = rng.integers(0, 3, (2, 21, 29))
    model = small_model(name, geometry)
    engine = one_step(model, x, labels)
    textbook: list = []
    with fast.disabled():
        calls = engine_calls(lambda: textbook.extend(one_step(model, x, labels)))
        calls |= engine_calls(lambda: model.predict(x))
    assert calls == set(), f"engine functions ran under fast.disabled(): {sorted(calls)}"
    assert engine_calls(lambda: one_step(model, x, labels)), "the engine should run by default"
    assert_same_as_textbook(engine[0], textbook[0], f"{name} scores")
    assert engine[1] == pytest.approx(textbook[1], rel=1e-12)
    assert_same_as_textbook(engine[2], textbook[2], f"{name} dx")
    assert engine[3].keys() == textbook[3].keys()
    for key in engine[3]:
        assert_same_as_textbook(engine[3][key], textbook[3][key], f"{name} {key}.grad")


def test_the_environment_variable_switches_a_fresh_process():
    """TINYFCN_FAST=0 in the environment: the layers take the textbook from the first call."""
    import subprocess

    code = (
        "import sys, tinyfcn.fast as f, numpy as np\n"
        "from tinyfcn import nn\n"
        "layer = nn.Conv2d(2, 3, 3)\n"
        "layer(np.zeros((1, 2, 5, 5), np.float32))\n"
        "print(f.is_enabled(), type(layer.__dict__['_cache'][1]).__name__)\n"
    )
    env = dict(os.environ, TINYFCN_FAST="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "Conv2dCache"]
