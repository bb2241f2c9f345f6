"""Confusion matrix and the FCN paper's four metrics: numbers worked out by hand, the reference
score.py formulas, ignored pixels, absent classes, whole-data-set accumulation, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tinyfcn.backend import asnumpy
from tinyfcn.metrics import ConfusionMatrix, segmentation_metrics

# rows: ground truth, columns: prediction
HAND = np.array(
    [
        [3, 1, 0],
        [0, 2, 2],
        [1, 0, 1],
    ]
)


def pixels_from_matrix(matrix: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, preds) with matrix[i, j] pixels labelled i and predicted j, in shuffled order."""
    pairs = [(i, j) for i, j in np.ndindex(*matrix.shape) for _ in range(matrix[i, j])]
    order = np.random.default_rng(seed).permutation(len(pairs))
    pairs = np.array(pairs)[order]
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def loop_confusion_matrix(labels, preds, num_classes, ignore_index=255) -> np.ndarray:
    """The oracle: count each (label, pred) pair one pixel at a time."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for label, pred in zip(labels.ravel(), preds.ravel(), strict=True):
        if label != ignore_index:
            matrix[label, pred] += 1
    return matrix


def fcn_score_py(hist: np.ndarray) -> dict:
    """The four numbers as the reference FCN score.py computes them from its histogram."""
    hist = hist.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = np.diag(hist).sum() / hist.sum()
        per_class_acc = np.diag(hist) / hist.sum(1)
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        return {
            "pixel_accuracy": acc,
            "mean_accuracy": np.nanmean(per_class_acc),
            "mean_iou": np.nanmean(iu),
            "fw_iou": (freq[freq > 0] * iu[freq > 0]).sum(),
            "iou": iu,
            "accuracy": per_class_acc,
        }


def assert_metrics(result: dict, expected: dict, label: str) -> None:
    assert set(result) == {
        "pixel_accuracy",
        "mean_accuracy",
        "mean_iou",
        "fw_iou",
        "iou",
        "accuracy",
    }
    for key, theirs in expected.items():
        ours = np.asarray(result[key], dtype=np.float64)
        assert np.allclose(ours, theirs, rtol=1e-12, atol=0, equal_nan=True), (
            f"{label}: {key} ours {ours} vs expected {np.asarray(theirs)}"
        )


def test_three_classes_by_hand(xp):
    """HAND: t_i (row sums) = 4, 4, 2 of 10 pixels; predicted (column sums) = 4, 3, 3;
    n_ii = 3, 2, 1. Unions t_i + sum_j n_ji - n_ii = 4+4-3, 4+3-2, 2+3-1 = 5, 5, 4."""
    labels, preds = pixels_from_matrix(HAND)
    cm = ConfusionMatrix(3).update(
        xp.asarray(labels.reshape(2, 5)), xp.asarray(preds.reshape(2, 5))
    )
    assert cm.matrix.dtype == np.int64 and np.array_equal(cm.matrix, HAND)
    assert_metrics(
        cm.compute(),
        {
            "pixel_accuracy": (3 + 2 + 1) / 10,  # 0.6
            "accuracy": [3 / 4, 2 / 4, 1 / 2],
            "mean_accuracy": (3 / 4 + 2 / 4 + 1 / 2) / 3,  # 0.58333
            "iou": [3 / 5, 2 / 5, 1 / 4],
            "mean_iou": (3 / 5 + 2 / 5 + 1 / 4) / 3,  # 0.41667
            "fw_iou": (4 * 3 / 5 + 4 * 2 / 5 + 2 * 1 / 4) / 10,  # 0.45
        },
        "hand-made 3-class matrix",
    )


@pytest.mark.parametrize("num_classes,seed", [(2, 0), (5, 1), (21, 2)])
def test_matches_loop_count_and_reference_score_py(num_classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=(3, 17, 13))
    labels[rng.random(labels.shape) < 0.1] = 255
    labels[labels == num_classes - 1] = 0  # the last class never in the labels ...
    preds = rng.integers(0, num_classes, size=labels.shape)  # ... but predicted: IU 0, acc NaN
    cm = ConfusionMatrix(num_classes).update(labels, preds)
    assert np.array_equal(cm.matrix, loop_confusion_matrix(labels, preds, num_classes))
    result = cm.compute()
    assert_metrics(result, fcn_score_py(cm.matrix), f"{num_classes} classes vs score.py")
    assert result["iou"][-1] == 0 and np.isnan(result["accuracy"][-1])


def test_perfect_prediction_scores_one():
    labels = np.array([[0, 1, 2, 255], [2, 2, 1, 0]], dtype=np.uint8)
    result = segmentation_metrics(labels, labels.copy(), num_classes=3)  # 255 at ignored pixels
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert result[key] == 1.0, key
    assert result["iou"] == [1.0, 1.0, 1.0] and result["accuracy"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("ignore_index", [255, -1, 2], ids=["255", "minus-1", "a-class-2"])
def test_ignored_pixels_are_not_counted(ignore_index):
    labels, preds = pixels_from_matrix(HAND[:2, :2])
    extra = np.full(7, ignore_index)
    extra_preds = np.array([0, 1, 1, 0, 1, 0, 0])  # anything: these pixels must not count
    cm = ConfusionMatrix(3, ignore_index).update(
        np.concatenate([labels, extra]), np.concatenate([preds, extra_preds])
    )
    assert np.array_equal(cm.matrix[:2, :2], HAND[:2, :2]) and cm.matrix.sum() == HAND[:2, :2].sum()

    everything = ConfusionMatrix(3, ignore_index=None).update(np.array([0, 2]), np.array([1, 2]))
    assert everything.matrix.sum() == 2  # None ignores nothing


def test_absent_class_is_nan_and_left_out_of_the_means():
    """HAND padded with a fourth class that occurs in neither labels nor predictions."""
    labels, preds = pixels_from_matrix(HAND)
    cm = ConfusionMatrix(4).update(labels, preds)
    result = cm.compute()
    assert np.isnan(result["iou"][3]) and np.isnan(result["accuracy"][3])
    assert_metrics(result, fcn_score_py(cm.matrix), "HAND plus an absent class vs score.py")
    three = ConfusionMatrix(3).update(labels, preds).compute()
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert result[key] == three[key], f"{key}: the absent class changed it"
    assert result["iou"][:3] == three["iou"] and result["accuracy"][:3] == three["accuracy"]


def test_whole_data_set_rule_is_not_a_mean_of_per_image_scores():
    """Image 1: four pixels of class 0, all right -> mean IU 1 (class 1 absent).
    Image 2: four pixels of class 1, two predicted 0 -> IU_0 = 0/2, IU_1 = 2/4, mean IU 0.25.
    Mean of the per-image mean IUs: 0.625. The data set: matrix [[4, 0], [2, 2]],
    IU_0 = 4 / (4 + 6 - 4) = 2/3, IU_1 = 2 / (4 + 2 - 2) = 1/2, mean IU 7/12."""
    images = [
        (np.zeros((2, 2), int), np.zeros((2, 2), int)),
        (np.ones((2, 2), int), np.array([[0, 0], [1, 1]])),
    ]
    per_image = [segmentation_metrics(lab, pred, 2)["mean_iou"] for lab, pred in images]
    assert per_image == [1.0, 0.25]

    cm = ConfusionMatrix(2)
    for lab, pred in images:
        cm.update(lab, pred)
    assert np.array_equal(cm.matrix, [[4, 0], [2, 2]])
    assert cm.compute()["mean_iou"] == pytest.approx(7 / 12, rel=1e-12)
    assert cm.compute()["mean_iou"] != pytest.approx(np.mean(per_image))


def test_updates_accumulate_like_one_update_on_the_concatenation(xp):
    rng = np.random.default_rng(5)
    batches = []
    for shape in [(2, 7, 9), (1, 5, 3), (4, 6, 6)]:
        labels = rng.integers(0, 6, size=shape)
        labels[rng.random(shape) < 0.2] = 255
        batches.append((labels, rng.integers(0, 6, size=shape)))
    cm = ConfusionMatrix(6)
    for labels, preds in batches:
        cm.update(xp.asarray(labels), xp.asarray(preds))
    whole = ConfusionMatrix(6).update(
        np.concatenate([b[0].ravel() for b in batches]),
        np.concatenate([b[1].ravel() for b in batches]),
    )
    assert np.array_equal(cm.matrix, whole.matrix)
    assert cm.compute() == whole.compute()

    halves = (
        ConfusionMatrix(6)
        .update(*batches[0])
        .merge(ConfusionMatrix(6).update(*batches[1]).update(*batches[2]))
    )
    assert np.array_equal(halves.matrix, whole.matrix)
    cm.reset()
    assert cm.matrix.sum() == 0


def test_uint8_labels_do_not_overflow():
    """21 * 20 + 20 = 440 does not fit in uint8: the codes must be formed in int64."""
    labels = np.array([20, 20, 19, 0], dtype=np.uint8)
    preds = np.array([20, 3, 19, 0], dtype=np.uint8)
    matrix = ConfusionMatrix(21).update(labels, preds).matrix
    assert (matrix[20, 20], matrix[20, 3], matrix[19, 19], matrix[0, 0]) == (1, 1, 1, 1)
    assert matrix.sum() == 4


def test_all_ignored_gives_nan_without_warnings(xp):
    labels, preds = xp.full((2, 2), 255), xp.zeros((2, 2), dtype=xp.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ConfusionMatrix(3).update(labels, preds).compute()
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert np.isnan(result[key]), key


def test_matrix_is_read_only_and_format_is_a_table():
    labels, preds = pixels_from_matrix(HAND)
    cm = ConfusionMatrix(4).update(labels, preds)
    with pytest.raises(ValueError, match="read-only"):
        cm.matrix[0, 0] = 7
    text = cm.format(["background", "cat", "dog", "aeroplane"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "IU", "%", "acc", "%", "pixels"]
    assert lines[1].split() == ["background", "60.00", "75.00", "4"]
    assert lines[4].split() == ["aeroplane", "-", "-", "0"]  # absent
    assert "mean IU" in text and "41.67" in text and "f.w. IU" in text and "45.00" in text
    assert ConfusionMatrix(2).format().splitlines()[1].split()[0] == "0"
    with pytest.raises(ValueError, match="3 class names for a matrix of 4 classes"):
        cm.format(["a", "b", "c"])


@pytest.mark.parametrize(
    "labels,preds,error,match",
    [
        (
            np.zeros((2, 3), int),
            np.zeros((2, 1, 3), int),
            ValueError,
            r"shape \(2, 3\).*\(2, 1, 3\)",
        ),
        (np.array([0, 3, 3, 1]), np.zeros(4, int), ValueError, r"labels hold 3 \(2 pixels\)"),
        (np.array([0, -2, 1]), np.zeros(3, int), ValueError, "labels hold -2"),
        (np.array([0, 1, 2]), np.array([0, 1, 7]), ValueError, "preds hold 7"),
        (np.array([0, 1]), np.array([0.0, 1.0]), TypeError, r"argmax.*float64"),
        (np.array([0.0, 1.0]), np.array([0, 1]), TypeError, "labels must be an integer array"),
    ],
    ids=["shape", "label-too-big", "label-negative", "pred-too-big", "float-preds", "float-labels"],
)
def test_bad_input_is_a_clear_error(labels, preds, error, match):
    cm = ConfusionMatrix(3)
    with pytest.raises(error, match=match):
        cm.update(labels, preds)
    assert cm.matrix.sum() == 0, "a refused batch must not be half counted"


def test_bad_construction_and_merge():
    with pytest.raises(ValueError, match="positive integer"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="cannot merge a matrix of 4 classes"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
    with pytest.raises(TypeError, match="ConfusionMatrix"):
        ConfusionMatrix(3).merge(np.zeros((3, 3)))


def test_cupy_and_numpy_give_the_same_matrix(xp):
    rng = np.random.default_rng(9)
    labels, preds = rng.integers(0, 4, size=(2, 8, 8)), rng.integers(0, 4, size=(2, 8, 8))
    on_device = ConfusionMatrix(4).update(xp.asarray(labels), xp.asarray(preds))
    assert isinstance(on_device.matrix, np.ndarray)
    assert np.array_equal(asnumpy(on_device.matrix), loop_confusion_matrix(labels, preds, 4))
