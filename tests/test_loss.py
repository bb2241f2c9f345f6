"""CrossEntropyLoss: parity with torch.nn.functional.cross_entropy, ignored pixels, stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close, to_torch
from tinyfcn.backend import asnumpy
from tinyfcn.functional import cross_entropy, cross_entropy_backward, cross_entropy_forward
from tinyfcn.gradcheck import assert_gradcheck, numerical_gradient, relative_error
from tinyfcn.nn import CrossEntropyLoss

# id: (scores shape (N, C, H, W), ignore_index, fraction of pixels ignored, score scale)
CASES = {
    "batch1-21classes-odd-7x9": ((1, 21, 7, 9), 255, 0.0, 1.0),
    "batch3-5classes-13x11-some-255": ((3, 5, 13, 11), 255, 0.2, 1.0),
    "batch2-2classes-1x1": ((2, 2, 1, 1), 255, 0.0, 1.0),
    "batch2-3classes-ignore-minus100": ((2, 3, 6, 5), -100, 0.3, 1.0),
    "batch2-4classes-ignore-class-2": ((2, 4, 5, 7), 2, 0.0, 1.0),
    "batch2-6classes-mostly-ignored": ((2, 6, 4, 4), 255, 0.9, 1.0),
    "large-scores-x1000": ((2, 5, 9, 7), 255, 0.2, 1000.0),
    "large-scores-x1e5-batch1": ((1, 3, 5, 5), 255, 0.1, 1e5),
    "one-class": ((2, 1, 3, 4), 255, 0.25, 1.0),
}


def make_case(name, dtype=np.float64):
    """Random scores and labels; ignored pixels get ignore_index (for ignore_index=2, the class
    itself is ignored wherever it appears)."""
    shape, ignore_index, frac, scale = CASES[name]
    N, C, H, W = shape
    rng = np.random.default_rng(list(CASES).index(name))
    scores = (rng.standard_normal(shape) * scale).astype(dtype)
    labels = rng.integers(0, C, size=(N, H, W))
    labels[rng.random((N, H, W)) < frac] = ignore_index
    return scores, labels, ignore_index


def torch_loss_and_grad(scores, labels, ignore_index, reduction):
    st = to_torch(scores, requires_grad=True)
    loss = F.cross_entropy(
        st,
        torch.as_tensor(labels, dtype=torch.int64),
        ignore_index=ignore_index,
        reduction=reduction,
    )
    loss.backward()
    return loss, st.grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", list(CASES))
def test_cross_entropy_matches_torch(xp, name, reduction):
    scores, labels, ignore_index = make_case(name)
    layer = CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    loss = layer(xp.asarray(scores), xp.asarray(labels))
    dscores = layer.backward()
    loss_t, dscores_t = torch_loss_and_grad(scores, labels, ignore_index, reduction)
    assert np.isfinite(float(loss)), f"{name}: loss is {float(loss)}"
    assert_close(loss, loss_t, f"{name} {reduction} loss", rtol=1e-12, atol=1e-12)
    assert_close(dscores, dscores_t, f"{name} {reduction} dscores", rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_float32_matches_torch(xp, reduction):
    scores, labels, ignore_index = make_case("batch3-5classes-13x11-some-255", np.float32)
    loss, cache = cross_entropy_forward(
        xp.asarray(scores), xp.asarray(labels), ignore_index, reduction
    )
    dscores = cross_entropy_backward(cache)
    assert loss.dtype == np.float32 and dscores.dtype == np.float32
    loss_t, dscores_t = torch_loss_and_grad(scores, labels, ignore_index, reduction)
    assert_close(loss, loss_t, f"float32 {reduction} loss", rtol=1e-5, atol=1e-5)
    assert_close(dscores, dscores_t, f"float32 {reduction} dscores", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint16])
def test_integer_label_dtypes_are_accepted(xp, dtype):
    """VOC label PNGs load as uint8 with 255 on object borders."""
    scores, labels, _ = make_case("batch3-5classes-13x11-some-255")
    loss = cross_entropy(xp.asarray(scores), xp.asarray(labels.astype(dtype)))
    loss_t, _ = torch_loss_and_grad(scores, labels, 255, "mean")
    assert_close(loss, loss_t, f"{np.dtype(dtype)} labels loss", rtol=1e-12, atol=1e-12)


def test_large_scores_are_stable(xp):
    """Without the max shift, exp(1000) overflows to inf and the loss becomes nan."""
    scores, labels, _ = make_case("large-scores-x1000")
    assert np.abs(scores).max() > 1000
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.log(np.exp(scores).sum(axis=1))
    assert not np.isfinite(naive).all(), "the naive log-sum-exp should overflow here"
    loss, cache = cross_entropy_forward(xp.asarray(scores), xp.asarray(labels))
    assert np.isfinite(float(loss))
    assert np.isfinite(asnumpy(cross_entropy_backward(cache))).all()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [255, -100, 0])
def test_all_pixels_ignored_gives_zero_loss_and_zero_gradient(xp, reduction, ignore_index):
    """Documented difference: PyTorch's mean over zero pixels is nan; tinyfcn returns 0 and a
    zero gradient so that one fully ignored crop cannot poison a training run."""
    scores = np.random.default_rng(0).standard_normal((2, 4, 3, 5))
    labels = np.full((2, 3, 5), ignore_index)
    layer = CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    loss = layer(xp.asarray(scores), xp.asarray(labels))
    dscores = asnumpy(layer.backward())
    assert float(loss) == 0.0
    assert dscores.shape == scores.shape and (dscores == 0).all()
    if reduction == "mean":  # the difference the docstring documents
        loss_t, _ = torch_loss_and_grad(scores, labels, ignore_index, reduction)
        assert torch.isnan(loss_t)


def test_ignored_pixels_get_no_gradient_and_do_not_count(xp):
    scores, labels, _ = make_case("batch3-5classes-13x11-some-255")
    ignored = labels == 255
    assert ignored.any() and (~ignored).any()
    loss, cache = cross_entropy_forward(xp.asarray(scores), xp.asarray(labels))
    dscores = asnumpy(cross_entropy_backward(cache))
    assert (dscores.transpose(0, 2, 3, 1)[ignored] == 0).all()
    # changing the scores of ignored pixels changes nothing
    other = scores.copy()
    other.transpose(0, 2, 3, 1)[ignored] = 50.0
    assert float(cross_entropy(xp.asarray(other), xp.asarray(labels))) == pytest.approx(
        float(loss), rel=1e-14
    )
    # the mean divides by the number of valid pixels
    total = float(cross_entropy(xp.asarray(scores), xp.asarray(labels), reduction="sum"))
    assert float(loss) == pytest.approx(total / (~ignored).sum(), rel=1e-14)


def test_backward_scales_with_dloss_and_is_repeatable(xp):
    scores, labels, _ = make_case("batch2-3classes-ignore-minus100")
    _, cache = cross_entropy_forward(xp.asarray(scores), xp.asarray(labels), -100)
    once = asnumpy(cross_entropy_backward(cache))
    scaled = asnumpy(cross_entropy_backward(cache, 2.5))
    again = asnumpy(cross_entropy_backward(cache))
    np.testing.assert_allclose(scaled, 2.5 * once, rtol=1e-15)
    np.testing.assert_array_equal(again, once)  # the backward does not modify its cache
    layer = CrossEntropyLoss(ignore_index=-100)
    layer(xp.asarray(scores), xp.asarray(labels))
    np.testing.assert_allclose(asnumpy(layer.backward(-0.5)), -0.5 * once, rtol=1e-15)


def test_gradient_rows_sum_to_zero(xp):
    """softmax - onehot sums to 0 over the classes at every pixel."""
    scores, labels, _ = make_case("batch1-21classes-odd-7x9")
    _, cache = cross_entropy_forward(xp.asarray(scores), xp.asarray(labels), reduction="sum")
    np.testing.assert_allclose(asnumpy(cross_entropy_backward(cache)).sum(axis=1), 0, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "name", ["batch2-3classes-ignore-minus100", "batch2-6classes-mostly-ignored"]
)
def test_cross_entropy_gradcheck(xp, name, reduction):
    scores, labels, ignore_index = make_case(name)
    layer = CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    assert_gradcheck(layer, xp.asarray(scores), xp.asarray(labels))


def test_cross_entropy_numerical_gradient_directly():
    """The same check without the gradcheck machinery: d loss / d scores by central
    differences against the backward."""
    scores, labels, _ = make_case("batch3-5classes-13x11-some-255")
    scores = np.ascontiguousarray(scores[:, :, :4, :3])
    labels = np.ascontiguousarray(labels[:, :4, :3])
    _, cache = cross_entropy_forward(scores, labels)
    analytic = cross_entropy_backward(cache)
    numeric = numerical_gradient(lambda: float(cross_entropy(scores, labels)), scores)
    assert relative_error(analytic, numeric) < 1e-7


def test_layer_backward_without_forward_raises():
    with pytest.raises(RuntimeError, match="CrossEntropyLoss.backward"):
        CrossEntropyLoss().backward()


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_scores_raise(xp, bad):
    scores, labels, _ = make_case("batch2-2classes-1x1")
    scores[1, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        cross_entropy(xp.asarray(scores), xp.asarray(labels))


def test_out_of_range_labels_are_named(xp):
    scores = np.zeros((2, 5, 3, 3))
    labels = np.zeros((2, 3, 3), dtype=np.int64)
    labels[0, 0, 0] = 7
    labels[1, 2, 1] = -3
    labels[1, 2, 2] = 255  # ignored, not an error
    labels[0, 1, 1] = 7
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\].*3 pixels.*\[-3, 7\]"):
        cross_entropy(xp.asarray(scores), xp.asarray(labels))


def test_label_255_is_an_error_when_not_the_ignore_index(xp):
    scores = np.zeros((1, 3, 2, 2))
    labels = np.array([[[0, 1], [2, 255]]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ignore_index=-100.*\[255\]"):
        cross_entropy(xp.asarray(scores), xp.asarray(labels), ignore_index=-100)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_], ids=str)
def test_non_integer_labels_raise_type_error(xp, dtype):
    scores = np.zeros((1, 3, 2, 2))
    labels = np.zeros((1, 2, 2), dtype=dtype)
    with pytest.raises(TypeError, match=f"integer labels.*{np.dtype(dtype)}"):
        cross_entropy(xp.asarray(scores), xp.asarray(labels))


def test_labels_that_are_not_arrays_raise_type_error():
    with pytest.raises(TypeError, match="integer labels"):
        cross_entropy(np.zeros((1, 3, 1, 2)), [[[0, 1]]])


@pytest.mark.parametrize(
    "label_shape", [(2, 3), (1, 3, 4), (2, 4, 3), (2, 1, 3, 4)], ids=lambda s: "x".join(map(str, s))
)
def test_wrong_label_shape_raises(xp, label_shape):
    scores = np.zeros((2, 5, 3, 4))
    labels = np.zeros(label_shape, dtype=np.int64)
    with pytest.raises(ValueError, match=r"labels of shape \(2, 3, 4\)"):
        cross_entropy(xp.asarray(scores), xp.asarray(labels))


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 3), (1, 2, 5, 3, 4)], ids=["2d", "3d", "5d"])
def test_wrong_score_ndim_raises(xp, shape):
    with pytest.raises(ValueError, match=r"4-d input \(N, C, H, W\)"):
        cross_entropy(xp.zeros(shape), xp.zeros(shape[:1] + shape[2:], dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.int64, np.float16])
def test_non_float_scores_raise(xp, dtype):
    with pytest.raises(TypeError, match=str(np.dtype(dtype))):
        cross_entropy(xp.zeros((1, 3, 2, 2), dtype=dtype), xp.zeros((1, 2, 2), dtype=np.int64))


@pytest.mark.parametrize("reduction", ["none", "Mean", "", None])
def test_invalid_reduction_raises(xp, reduction):
    with pytest.raises(ValueError, match="reduction must be one of"):
        CrossEntropyLoss(reduction=reduction)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cross_entropy(
            xp.zeros((1, 3, 2, 2)), xp.zeros((1, 2, 2), dtype=np.int64), reduction=reduction
        )
