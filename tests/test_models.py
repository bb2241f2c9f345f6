"""FCN-32s/16s/8s/8s-at-once: PyTorch-twin parity, output sizes, crop offsets, init, surgery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close
from tinyfcn import nn
from tinyfcn.gradcheck import relative_error
from tinyfcn.models import VGG16, FCN8s, FCN8sAtOnce, FCN16s, FCN32s, geometry
from tinyfcn.models.summary import summary_rows
from tinyfcn.models.surgery import bilinear_kernel, convolutionalize
from tinyfcn.torch_twin import build_torch_twin

VARIANTS = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]
SMALL = dict(num_classes=5, width=1 / 16, fc_channels=16)


def randomise(model, seed=0):
    """Random weights everywhere (score layers start at zero, which would hide the skips)."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    return model


@pytest.mark.parametrize("geometry_", ["paper", "compact"])
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_parity_with_pytorch_twin(cls, geometry_):
    """Scores, input gradient and every parameter gradient equal PyTorch's in float64."""
    model = randomise(cls(geometry=geometry_, **SMALL).double()).eval()
    twin = build_torch_twin(model, dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 37, 45))
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    y = model(x)
    assert y.shape == (2, 5, 37, 45)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    model.zero_grad()
    dx = model.backward(dy)
    errors = {
        "scores": relative_error(y, yt.detach().numpy()),
        "input": relative_error(dx, xt.grad.numpy()),
    }
    theirs = dict(twin.named_parameters())
    assert set(theirs) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        errors[name] = relative_error(p.grad, theirs[name].grad.numpy())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-8, f"largest relative error {errors[worst]:.2e} in {worst}"


# --- sizes and geometry ------------------------------------------------------------------------


@pytest.mark.parametrize("geometry_", ["paper", "compact"])
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("hw", [(1, 1), (31, 33), (32, 32), (7, 100), (65, 17)], ids=str)
def test_scores_have_input_size(cls, geometry_, hw):
    model = cls(geometry=geometry_, num_classes=3, width=1 / 32, fc_channels=4)
    x = np.zeros((1, 3) + hw, dtype=np.float32)
    with nn.no_grad():
        assert model(x).shape == (1, 3) + hw


@pytest.mark.parametrize("hw", [(500, 375), (500, 500)], ids=str)
@pytest.mark.parametrize("geometry_", ["paper", "compact"])
def test_scores_have_input_size_at_voc_sizes(geometry_, hw):
    model = FCN8s(geometry=geometry_, num_classes=3, width=1 / 64, fc_channels=4)
    with nn.no_grad():
        assert model(np.zeros((1, 3) + hw, dtype=np.float32)).shape == (1, 3) + hw


def test_paper_crop_offsets_are_derived_not_typed():
    assert FCN32s(width=1 / 32).crop_offsets == {"upscore": 19}
    assert FCN16s(width=1 / 32).crop_offsets == {"score_pool4": 5, "upscore16": 27}
    assert FCN8s(width=1 / 32).crop_offsets == {"score_pool4": 5, "score_pool3": 9, "upscore8": 31}


def test_compact_geometry_needs_no_crop():
    for cls in VARIANTS:
        assert set(cls(geometry="compact", width=1 / 32).crop_offsets.values()) == {0}


def test_coordinate_maps_compose_and_reject_misalignment():
    conv = nn.Conv2d(1, 1, 3, padding=100)
    pool = nn.MaxPool2d(2, 2, ceil_mode=True)
    m = geometry.path_map([conv, pool])
    # conv: x + 99; pool: (x + 99 - 1/2) / 2
    assert m == geometry.CoordMap(geometry.Fraction(1, 2), geometry.Fraction(197, 4))
    with pytest.raises(ValueError, match="different scales"):
        geometry.crop_offset(m, geometry.CoordMap())
    half = geometry.CoordMap(geometry.Fraction(1, 2), geometry.Fraction(1, 4))
    with pytest.raises(ValueError, match="misaligned"):
        geometry.crop_offset(half, geometry.CoordMap(geometry.Fraction(1, 2)))


def test_receptive_field_of_vgg16_pool5():
    """pool5 of VGG16 sees 212 pixels with stride 32: the numbers students compute by hand."""
    model = FCN32s(width=1 / 32)
    stride, rf = geometry.receptive_field(model._trunk_layers("pool5"))
    assert (stride, rf) == (32, 212)


# --- initialisation ----------------------------------------------------------------------------


def test_bilinear_kernel_taps_and_diagonal():
    w = bilinear_kernel(3, 4)
    np.testing.assert_allclose(w[0, 0, 1], [0.1875, 0.5625, 0.5625, 0.1875])
    np.testing.assert_allclose(w[1, 1, :, 0] / w[1, 1, 0, 0], [1, 3, 3, 1])
    taps = w[2, 2, 0] / w[2, 2, 0].sum() * 2  # the 1-d taps: 0.25, 0.75, 0.75, 0.25
    np.testing.assert_allclose(taps, [0.25, 0.75, 0.75, 0.25])
    assert np.count_nonzero(w[0, 1]) == 0 and np.count_nonzero(w[2, 0]) == 0


def test_bilinear_upsampling_matches_bilinear_interpolation_inside():
    """k4 s2 p1 with the bilinear kernel is x2 bilinear interpolation (away from the border)."""
    up = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False).double()
    up.weight.data = bilinear_kernel(2, 4, np.float64)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 7))
    ours = up(x)
    theirs = F.interpolate(torch.tensor(x), scale_factor=2, mode="bilinear", align_corners=False)
    assert_close(ours[:, :, 1:-1, 1:-1], theirs[:, :, 1:-1, 1:-1], "bilinear interior")


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_paper_initialisation(cls):
    model = cls(width=1 / 32)
    for name, p in model.named_parameters():
        if name.startswith("score_"):
            assert not p.data.any(), f"{name} should start at zero"
        if name.startswith("upscore"):
            assert p.lr_mult == 0, f"{name} should be frozen"
            np.testing.assert_array_equal(p.data, bilinear_kernel(21, p.shape[2]))
        if name.endswith(".bias"):
            assert (p.lr_mult, p.decay_mult) == (2.0, 0.0), name
    std = model.conv3_1.weight.data.std()
    assert abs(std - np.sqrt(2 / (model.conv3_1.in_channels * 9))) < 0.3 * std  # He init
    learnable = cls(width=1 / 32, learnable_upsampling=True)
    assert all(p.lr_mult == 1 for n, p in learnable.named_parameters() if n.startswith("upscore"))


def test_the_same_seed_gives_every_variant_the_same_trunk():
    """So that a 32s/16s/8s comparison differs only in the skips (the score layers they add
    must not draw from the generator before the trunk is initialised)."""
    states = []
    for cls in VARIANTS:
        nn.manual_seed(7)
        states.append(cls(width=1 / 32, dropout=0.5).state_dict())
    shared = [k for k in states[0] if k.startswith(("conv", "fc6", "fc7", "score_fr"))]
    assert "conv1_1.weight" in shared and "fc7.weight" in shared
    for state in states[1:]:
        for k in shared:
            np.testing.assert_array_equal(state[k], states[0][k], err_msg=k)
    nn.manual_seed(8)
    assert not np.array_equal(
        VARIANTS[0](width=1 / 32).conv1_1.weight.data, states[0]["conv1_1.weight"]
    )


def test_staged_initialisation_copies_shared_weights():
    m32 = randomise(FCN32s(**SMALL))
    m16 = FCN16s.from_fcn32s(m32)
    for name, value in m32.state_dict().items():
        if name != "upscore.weight":
            np.testing.assert_array_equal(m16.state_dict()[name], value, err_msg=name)
    assert not m16.score_pool4.weight.data.any()
    m16 = randomise(m16, seed=3)
    m8 = FCN8s.from_fcn16s(m16)
    for name in ("conv1_1.weight", "fc6.weight", "score_fr.bias", "score_pool4.weight"):
        np.testing.assert_array_equal(m8.state_dict()[name], m16.state_dict()[name], err_msg=name)
    assert not m8.score_pool3.weight.data.any()


# --- state dicts -------------------------------------------------------------------------------


def test_full_width_fcn8s_state_dict_matches_the_pytorch_port():
    shapes = {k: tuple(v.shape) for k, v in FCN8s().state_dict().items()}
    assert shapes["conv1_1.weight"] == (64, 3, 3, 3)
    assert shapes["conv5_3.bias"] == (512,)
    assert shapes["fc6.weight"] == (4096, 512, 7, 7)
    assert shapes["fc7.weight"] == (4096, 4096, 1, 1)
    assert shapes["score_fr.weight"] == (21, 4096, 1, 1)
    assert shapes["score_pool4.weight"] == (21, 512, 1, 1)
    assert shapes["score_pool3.weight"] == (21, 256, 1, 1)
    assert shapes["upscore2.weight"] == (21, 21, 4, 4)
    assert shapes["upscore_pool4.weight"] == (21, 21, 4, 4)
    assert shapes["upscore8.weight"] == (21, 21, 16, 16)
    assert len(shapes) == 26 + 4 + 6 + 3


def test_state_dict_names_of_32s_and_16s():
    assert "upscore.weight" in FCN32s(width=1 / 32).state_dict()
    keys = FCN16s(width=1 / 32).state_dict()
    assert {"upscore2.weight", "upscore16.weight", "score_pool4.weight"} <= set(keys)


def test_load_state_dict_names_the_bad_keys():
    model = FCN8s(**SMALL)
    state = dict(model.state_dict())
    state.pop("score_pool3.weight")
    state["upscore3.weight"] = state["upscore2.weight"]
    state["fc7.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(KeyError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for key in ("score_pool3.weight", "upscore3.weight", "fc7.weight"):
        assert key in message


# --- VGG16 and convolutionalization -----------------------------------------------------------


def test_convolutionalized_vgg_equals_the_dense_classifier():
    nn.manual_seed(0)
    dense = randomise(VGG16(num_classes=7, width=1 / 16, fc_channels=8).double(), 2).eval()
    conv = convolutionalize(dense)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    expected = dense(x)
    got = conv(x)
    assert got.shape == (2, 7, 1, 1)
    assert relative_error(got[:, :, 0, 0], expected) < 1e-12
    heat = conv(np.random.default_rng(1).standard_normal((1, 3, 320, 288)))
    assert heat.shape == (1, 7, 4, 3)  # a heat map: ceil(H/32) - 6 by ceil(W/32) - 6


def test_dense_vgg_rejects_other_sizes():
    with pytest.raises(ValueError, match="224x224"):
        VGG16(width=1 / 32, fc_channels=4)(np.zeros((1, 3, 100, 100), np.float32))


def test_vgg_trunk_resolutions():
    vgg = VGG16(width=1 / 32, fc_channels=4)
    pool3, pool4, pool5 = vgg.features(np.zeros((1, 3, 224, 224), np.float32))
    assert pool3.shape[2:] == (28, 28) and pool4.shape[2:] == (14, 14)
    assert pool5.shape[2:] == (7, 7)


def test_predict_returns_label_map():
    model = randomise(FCN8s(geometry="compact", **SMALL))
    labels = model.predict(
        np.random.default_rng(0).standard_normal((2, 3, 20, 30)).astype(np.float32)
    )
    assert labels.shape == (2, 20, 30) and labels.max() < 5 and model.training


def test_summary_names_a_crop_that_does_not_fit():
    """Floor pooling at H = 500 leaves FCN-32s's upscore at 512 rows, too few for the crop at 19:
    the summary says so, as the forward pass does, instead of printing a table that cannot run."""
    model = FCN32s(num_classes=3, width=1 / 32)
    model.summary((500, 500))  # ceil mode: fits
    for i in range(1, 6):
        getattr(model, f"pool{i}").ceil_mode = False
    too_small = r"upscore is 512x512, too small for a 500x500 crop at offset 19"
    with pytest.raises(ValueError, match=too_small):
        model.summary((500, 500))
    rows = {r.name: r for r in summary_rows(model, (500, 500))}  # the tracer still shows why
    assert rows["upscore"].shape[1:] == (512, 512)
    with pytest.raises(ValueError, match="does not fit"):
        model(np.zeros((1, 3, 500, 500), np.float32))
