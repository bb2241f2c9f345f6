"""Checkpoints (atomic .npz round trips) and weight import from PyTorch: pytorch-fcn state dicts
and torchvision's VGG16, with a torch.nn VGG16 built the torchvision way as the oracle."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import tinyfcn.io as tio
from tests.helpers import assert_close
from tinyfcn.models import VGG16, FCN8s, FCN32s, surgery
from tinyfcn.models.torchvision_vgg16 import TORCHVISION_VGG16

WIDTH, FC = 1 / 16, 16  # small models: conv1_1 has 4 channels, fc6/fc7 16


def randomised(model, seed):
    """Every parameter drawn at random (score layers included, which FCN starts at zero)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    return model


def fcn8s(geometry="paper", dtype=np.float32, seed=0):
    model = FCN8s(num_classes=5, geometry=geometry, width=WIDTH, fc_channels=FC)
    return randomised(model.to(dtype=dtype), seed).eval()


def assert_same_weights(ours, theirs):
    ours, theirs = dict(ours), dict(theirs)
    assert list(ours) == list(theirs)
    for k in ours:
        a, b = np.asarray(ours[k]), np.asarray(theirs[k])
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{k}: ours {a.dtype} vs {b.dtype}"


def x_image(shape=(2, 3, 37, 45), dtype=np.float32, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- .npz checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "geometry,dtype", [("paper", np.float32), ("compact", np.float64)], ids=["paper", "compact"]
)
def test_checkpoint_round_trip_is_bit_exact(tmp_path, geometry, dtype):
    model = fcn8s(geometry, dtype, seed=0)
    path = tmp_path / "fcn8s.npz"
    tio.save_checkpoint(path, model)
    fresh = fcn8s(geometry, dtype, seed=1)
    assert not np.array_equal(fresh.fc6.weight.data, model.fc6.weight.data)
    assert tio.load_model_weights(fresh, path) is fresh
    assert_same_weights(fresh.state_dict(), model.state_dict())
    x = x_image(dtype=dtype)
    assert np.array_equal(fresh(x), model(x))
    assert np.array_equal(fresh.predict(x), model.predict(x))


def test_checkpoint_round_trip_on_device(tmp_path, xp, device):
    """Save from the model's device (CuPy arrays are copied to NumPy), load onto it again."""
    model = fcn8s("compact").to(device)
    path = tmp_path / "ckpt.npz"
    tio.save_checkpoint(path, model)
    fresh = fcn8s("compact", seed=1).to(device)
    tio.load_model_weights(fresh, path)
    theirs = model.state_dict()
    for k, ours in fresh.state_dict().items():
        assert isinstance(ours, xp.ndarray) and bool((ours == theirs[k]).all()), k
    x = xp.asarray(x_image())
    assert bool((fresh(x) == model(x)).all())


def test_checkpoint_layout_metadata_and_state(tmp_path):
    model = fcn8s()
    rng = np.random.default_rng(3)
    momentum = {k: rng.standard_normal(v.shape) for k, v in model.state_dict().items()}
    state = {"optim": {"lr": 1e-4, "momentum": momentum, "steps": [np.int64(3), 4]}}
    path = tmp_path / "ckpt.npz"
    tio.save_checkpoint(path, model, state=state, step=7, epoch=np.int64(2), losses=(0.5, 0.25))

    with np.load(path) as f:  # the file itself: readable with NumPy alone
        assert f["model/conv1_1.weight"].shape == (4, 3, 3, 3)
        assert f["state/optim/momentum/fc6.weight"].dtype == np.float64
        assert f[tio.META_KEY].shape == () and f[tio.META_KEY].dtype.kind == "U"

    ckpt = tio.load_checkpoint(path)
    assert_same_weights(ckpt["model"], model.state_dict())
    meta = ckpt["meta"]
    assert meta["model_class"] == "FCN8s" and meta["config"] == model.config
    assert (meta["step"], meta["epoch"], meta["losses"]) == (7, 2, [0.5, 0.25])
    assert meta["format"] == "tinyfcn-checkpoint" and "state_layout" not in meta
    optim = ckpt["state"]["optim"]
    assert optim["lr"] == 1e-4 and optim["steps"] == [3, 4]
    assert_same_weights(optim["momentum"], momentum)


def test_checkpoint_without_model(tmp_path):
    tio.save_checkpoint(tmp_path / "s.npz", state={"w": np.arange(3)}, note="no model")
    ckpt = tio.load_checkpoint(tmp_path / "s.npz")
    assert ckpt["model"] is None and ckpt["meta"]["note"] == "no model"
    assert np.array_equal(ckpt["state"]["w"], np.arange(3))
    with pytest.raises(ValueError, match="no model weights"):
        tio.load_model_weights(fcn8s(), tmp_path / "s.npz")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(step=np.zeros(3)), TypeError, "step is an array"),
        (dict(tag={1, 2}), TypeError, r"tag \(set\)"),
        (dict(config={}), ValueError, "'config' is reserved"),
        (dict(state={"optim": {0: np.zeros(1)}}), TypeError, "state/optim has the key 0"),
        (dict(state={"a/b": np.zeros(1), "a": {"b": np.ones(1)}}), ValueError, "state/a/b"),
        (dict(state={"x": np.array([None])}), TypeError, "state/x is an object array"),
    ],
    ids=["array-extra", "set-extra", "reserved", "int-key", "same-path", "object-array"],
)
def test_save_refuses_what_it_cannot_round_trip(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        tio.save_checkpoint(tmp_path / "c.npz", fcn8s(), **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "exc", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"]
)
def test_crash_mid_save_keeps_the_old_checkpoint(tmp_path, monkeypatch, exc):
    old = fcn8s(seed=0)
    path = tmp_path / "ckpt.npz"
    tio.save_checkpoint(path, old, step=1)
    before = path.read_bytes()

    real_savez = np.savez

    def savez_then_crash(file, **arrays):
        half = dict(list(arrays.items())[: len(arrays) // 2])
        real_savez(file, **half)  # half the arrays reach the (temporary) file ...
        raise exc  # ... then the disk fills up, or the user presses Ctrl-C

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(type(exc)):
        tio.save_checkpoint(path, fcn8s(seed=1), step=2)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    assert path.read_bytes() == before
    ckpt = tio.load_checkpoint(path)
    assert ckpt["meta"]["step"] == 1
    assert_same_weights(ckpt["model"], old.state_dict())


def test_save_writes_a_synced_temporary_file_then_renames_it(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", fd)) or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda a, b: events.append(("replace", a, b)) or real_replace(a, b)
    )
    path = tmp_path / "ckpt.npz"
    tio.save_checkpoint(path, fcn8s())
    replaces = [e for e in events if e[0] == "replace"]
    assert len(replaces) == 1
    _, tmp, target = replaces[0]
    assert os.path.dirname(tmp) == str(tmp_path) and os.fspath(target) == str(path)
    assert events.index(replaces[0]) > 0 and events[0][0] == "fsync"  # data synced first
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not NamedTemporaryFile's 0600


def test_load_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        tio.load_checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        tio.load_model_weights(fcn8s(), missing)

    good = tmp_path / "good.npz"
    tio.save_checkpoint(good, fcn8s())
    data = good.read_bytes()
    corrupt = {
        "truncated.npz": data[: len(data) // 2],
        "garbage.npz": b"not a zip file at all" * 10,
        "flipped.npz": data[:300] + bytes([data[300] ^ 0xFF]) + data[301:],
    }
    for name, content in corrupt.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}.*not a readable tinyfcn checkpoint"):
            tio.load_checkpoint(tmp_path / name)

    np.savez(tmp_path / "plain.npz", w=np.zeros(2))
    with pytest.raises(ValueError, match="plain.npz.*not a tinyfcn checkpoint"):
        tio.load_checkpoint(tmp_path / "plain.npz")


def test_loading_another_network_names_the_keys(tmp_path):
    path = tmp_path / "fcn32s.npz"
    tio.save_checkpoint(path, FCN32s(num_classes=5, width=WIDTH, fc_channels=FC))
    with pytest.raises(KeyError, match="fcn32s.npz") as info, pytest.warns(UserWarning):
        tio.load_model_weights(fcn8s(), path)
    message = str(info.value)
    assert (
        "missing keys: score_pool4.weight" in message
        and "unexpected keys: upscore.weight" in message
    )

    wider = tmp_path / "wider.npz"
    tio.save_checkpoint(wider, FCN8s(num_classes=5, width=1 / 8, fc_channels=FC))
    with pytest.raises(KeyError, match=r"conv1_1.weight: checkpoint \(8, 3, 3, 3\) vs model \(4"):
        with pytest.warns(UserWarning, match="width"):
            tio.load_model_weights(fcn8s(), wider)


def test_loading_into_another_geometry_warns(tmp_path):
    path = tmp_path / "paper.npz"
    tio.save_checkpoint(path, fcn8s("paper"))
    with pytest.warns(UserWarning, match="'geometry': 'paper'.*'geometry': 'compact'"):
        tio.load_model_weights(fcn8s("compact"), path)


# --- PyTorch .pth files --------------------------------------------------------------------------


def torch_state_dict(model, prefix=""):
    return {prefix + k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {  # pytorch-fcn's trainer
            "epoch": 3,
            "iteration": 1200,
            "arch": "FCN8s",
            "optim_state_dict": {"state": {}, "param_groups": [{"lr": 1e-10}]},
            "model_state_dict": sd,
            "best_mean_iu": 0.6,
        },
        lambda sd: {"state_dict": sd, "epoch": 1},
    ],
    ids=["plain", "model_state_dict", "state_dict"],
)
@pytest.mark.parametrize("prefix", ["", "module."], ids=["bare", "dataparallel"])
def test_pth_import(tmp_path, wrap, prefix):
    model = fcn8s("compact", seed=0)  # pytorch-fcn's keys and shapes; compact runs faster
    path = tmp_path / "fcn8s.pth"
    torch.save(wrap(torch_state_dict(model, prefix)), path)

    state_dict = tio.load_torch_state_dict(path)
    assert_same_weights(state_dict, model.state_dict())
    assert state_dict["fc6.weight"].shape == (FC, 32, 7, 7)
    assert state_dict["upscore8.weight"].shape == (5, 5, 16, 16)

    fresh = fcn8s("compact", seed=1)
    tio.load_model_weights(fresh, path)
    assert_same_weights(fresh.state_dict(), model.state_dict())
    x = x_image()
    assert np.array_equal(fresh(x), model(x))


def test_pth_export_round_trip(tmp_path):
    model = fcn8s("compact", np.float64)
    path = tmp_path / "export.pth"
    tio.save_torch_state_dict(model, path)
    theirs = torch.load(path, weights_only=True)
    assert list(theirs) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert theirs[k].dtype == torch.float64 and np.array_equal(theirs[k].numpy(), v), k
    fresh = fcn8s("compact", np.float64, seed=5)
    tio.load_model_weights(fresh, path)
    assert_same_weights(fresh.state_dict(), model.state_dict())


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda sd: sd.update(score=sd.pop("score_fr.weight")), "missing keys: score_fr.weight"),
        (lambda sd: sd.update(score=sd.pop("score_fr.weight")), "unexpected keys: score"),
        (lambda sd: sd.pop("upscore8.weight"), "missing keys: upscore8.weight"),
        (lambda sd: sd.update(fc7_bias=sd["fc7.bias"][:3]), "unexpected keys: fc7_bias"),
        (
            lambda sd: sd.update({"fc7.bias": sd["fc7.bias"][:3]}),
            r"fc7.bias: checkpoint \(3,\) vs model \(16,\)",
        ),
    ],
    ids=["renamed-missing", "renamed-unexpected", "missing", "unexpected", "shape"],
)
def test_pth_with_wrong_keys_fails_naming_them(tmp_path, edit, match):
    state_dict = torch_state_dict(fcn8s())
    edit(state_dict)
    path = tmp_path / "bad.pth"
    torch.save(state_dict, path)
    with pytest.raises(KeyError, match=match) as info:
        tio.load_model_weights(fcn8s(), path)
    assert "bad.pth" in str(info.value)


def test_pth_that_is_no_state_dict(tmp_path):
    torch.save({"epoch": 3, "weights": {"a": 1}}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="meta.pth.*'epoch' is a int, not a tensor"):
        tio.load_torch_state_dict(tmp_path / "meta.pth")
    torch.save(torch.nn.ReLU(), tmp_path / "module.pth")  # a pickled module: refused, not run
    with pytest.raises(ValueError, match="module.pth.*weights_only"):
        tio.load_torch_state_dict(tmp_path / "module.pth")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        tio.load_torch_state_dict(tmp_path / "nothing.pth")


def test_torch_is_imported_lazily_with_a_clear_error(tmp_path, monkeypatch):
    code = "import sys, tinyfcn.io, tinyfcn.models; assert 'torch' not in sys.modules"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)

    torch.save(torch_state_dict(fcn8s()), tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch.*pip install torch"):
        tio.load_torch_state_dict(tmp_path / "w.pth")
    arrays = {k: np.array(v) for k, v in fcn8s().state_dict().items()}
    assert_same_weights(tio.load_torch_state_dict(arrays), arrays)  # NumPy dicts need no torch


# --- torchvision's VGG16 -------------------------------------------------------------------------


VGG_FC = 32


def torchvision_vgg16(c, fc):
    """torchvision.models.vgg16's module tree (features / avgpool / classifier), in plain torch.nn,
    with channels c(64) ... c(512) and fc units: the oracle for key names, shapes and outputs."""
    layers, c_in = [], 3
    for convs, channels in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
        for _ in range(convs):
            layers += [torch.nn.Conv2d(c_in, c(channels), 3, padding=1), torch.nn.ReLU(True)]
            c_in = c(channels)
        layers.append(torch.nn.MaxPool2d(2, 2))
    net = torch.nn.Module()
    net.features = torch.nn.Sequential(*layers)
    net.avgpool = torch.nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = torch.nn.Sequential(
        torch.nn.Linear(c_in * 49, fc),
        torch.nn.ReLU(True),
        torch.nn.Dropout(),
        torch.nn.Linear(fc, fc),
        torch.nn.ReLU(True),
        torch.nn.Dropout(),
        torch.nn.Linear(fc, 1000),
    )
    return net.double().eval()


def torch_vgg_forward(net, x):
    with torch.no_grad():
        h = net.avgpool(net.features(torch.from_numpy(x)))
        return net.classifier(torch.flatten(h, 1)).numpy()


@pytest.fixture(scope="module")
def vgg_weights():
    """A random torchvision-layout VGG16 at width 1/16 and its state dict (float64 tensors)."""
    torch.manual_seed(0)
    net = torchvision_vgg16(lambda ch: ch // 16, VGG_FC)
    return net, {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_torchvision_names():
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    names = [f"conv{s}_{i}" for s, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]
    expected = {f"features.{i}": name for i, name in zip(convs, names, strict=True)}
    expected.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
    assert TORCHVISION_VGG16 == expected


def test_vgg16_import_matches_torch(vgg_weights, tmp_path):
    net, weights = vgg_weights
    path = tmp_path / "vgg16.pth"
    torch.save(weights, path)
    x = x_image((1, 3, 224, 224), np.float64, seed=2)
    theirs = torch_vgg_forward(net, x)

    dense = tio.load_model_weights(VGG16(width=WIDTH, fc_channels=VGG_FC).double().eval(), path)
    assert np.array_equal(dense.fc6.weight.data, weights["classifier.0.weight"].numpy())
    assert np.array_equal(dense.conv5_3.bias.data, weights["features.28.bias"].numpy())
    assert_close(dense(x), theirs, "dense VGG16 scores", rtol=1e-10, atol=1e-12)

    # convolutionalization, two ways: surgery on the dense model, and importing straight in
    surgical = surgery.convolutionalize(dense).eval()
    direct = VGG16(width=WIDTH, fc_channels=VGG_FC, fully_conv=True).double().eval()
    tio.load_vgg16_torchvision(direct, weights)
    assert_same_weights(direct.state_dict(), surgical.state_dict())
    assert direct.fc6.weight.shape == (VGG_FC, 32, 7, 7)
    scores = surgical(x)
    assert scores.shape == (1, 1000, 1, 1)
    assert_close(scores[:, :, 0, 0], dense(x), "convolutionalized vs dense", rtol=1e-10)
    assert_close(direct(x)[:, :, 0, 0], theirs, "fully_conv VGG16 scores", rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("geometry", ["paper", "compact"])
def test_vgg16_import_into_fcn8s(vgg_weights, geometry):
    _, weights = vgg_weights
    model = FCN8s(num_classes=5, geometry=geometry, width=WIDTH, fc_channels=VGG_FC)
    untouched = {
        k: v.copy() for k, v in model.state_dict().items() if not k.startswith(("conv", "fc"))
    }
    assert tio.load_vgg16_torchvision(model, weights) is model

    for tv, ours in TORCHVISION_VGG16.items():
        if ours.startswith("conv"):
            for kind in ("weight", "bias"):
                source = weights[f"{tv}.{kind}"].numpy().astype(np.float32)
                assert np.array_equal(getattr(getattr(model, ours), kind).data, source), ours
    fc6 = weights["classifier.0.weight"].numpy().reshape(VGG_FC, 32, 7, 7).astype(np.float32)
    assert np.array_equal(model.fc6.weight.data, fc6)
    fc7 = weights["classifier.3.weight"].numpy()[:, :, None, None].astype(np.float32)
    assert np.array_equal(model.fc7.weight.data, fc7)
    assert np.array_equal(
        model.fc7.bias.data, weights["classifier.3.bias"].numpy().astype(np.float32)
    )
    # fc8 ignored: score layers stay at zero, upsampling stays bilinear
    assert_same_weights({k: model.state_dict()[k] for k in untouched}, untouched)
    assert not model.score_fr.weight.data.any()


def test_vgg16_import_errors(vgg_weights):
    _, weights = vgg_weights
    fcn = FCN8s(num_classes=5, width=WIDTH, fc_channels=VGG_FC)

    dropped = {k: v for k, v in weights.items() if k != "features.28.bias"}
    with pytest.raises(KeyError, match="missing keys: features.28.bias"):
        tio.load_vgg16_torchvision(fcn, dropped)

    bn = dict(weights, **{"features.1.running_mean": torch.zeros(4)})
    with pytest.raises(KeyError, match="unexpected keys: features.1.running_mean.*vgg16_bn"):
        tio.load_vgg16_torchvision(fcn, bn)

    with pytest.raises(
        KeyError, match=r"classifier.6.weight \(1000, 32\) -> fc8.weight \(10, 32\)"
    ):
        tio.load_vgg16_torchvision(VGG16(num_classes=10, width=WIDTH, fc_channels=VGG_FC), weights)

    with pytest.raises(
        KeyError, match=r"classifier.0.weight \(32, 1568\) -> fc6.weight \(32, 32, 1"
    ):
        compact_1x1 = FCN8s(
            num_classes=5, geometry="compact", width=WIDTH, fc_channels=VGG_FC, fc6_kernel=1
        )
        tio.load_vgg16_torchvision(compact_1x1, weights)

    # full-size ImageNet shapes (zero-stride views: no memory) into a width-0.25 model
    full = {k: np.broadcast_to(np.float32(0), shape) for k, shape in full_vgg16_shapes().items()}
    quarter = FCN8s(num_classes=21, width=0.25)
    with pytest.raises(KeyError) as info:
        tio.load_vgg16_torchvision(quarter, full)
    message = str(info.value)
    assert "features.0.weight (64, 3, 3, 3) -> conv1_1.weight (16, 3, 3, 3)" in message
    assert "64 conv1_1 channels (width 1), the model has 16 (width=0.25)" in message
    assert not quarter.score_fr.weight.data.any()  # nothing was half-loaded

    with pytest.raises(TypeError, match="VGG16 or FCN"):
        tio.load_vgg16_torchvision(torch.nn.Linear(2, 2), weights)


def full_vgg16_shapes():
    net = torch.device("meta")  # shapes only, no memory
    with net:
        full = torchvision_vgg16(lambda ch: ch, 4096)
    return {k: tuple(v.shape) for k, v in full.state_dict().items()}
