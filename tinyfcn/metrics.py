"""Segmentation metrics from one confusion matrix accumulated over a whole data set: the four
numbers of the FCN paper (Long, Shelhamer, Darrell, section 5) and per-class IU and accuracy.

With n_ij the number of pixels of class i predicted as class j, t_i = sum_j n_ij the pixels of
class i, and n_cl the number of classes:

    pixel accuracy           sum_i n_ii / sum_i t_i
    mean accuracy            (1/n_cl) sum_i n_ii / t_i
    mean IU                  (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU    (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Every pixel of the data set goes into one matrix before any ratio is taken: the mean IU of a
data set is not the mean of per-image mean IUs. As in the reference ``score.py``
(``np.nanmean``), a class's accuracy is NaN when it never occurs in the labels (t_i = 0), its IU
is NaN when it occurs neither in the labels nor in the predictions, and the means run over the
classes that are not NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import asnumpy, get_array_module


class ConfusionMatrix:
    """Counts (ground truth, prediction) pixel pairs over a data set; rows are ground truth.

    ``update(labels, preds)`` once per batch (``preds = scores.argmax(1)``), then ``compute()``.
    Labels equal to ``ignore_index`` (VOC's 255 "void" borders) are not counted; ``None`` counts
    every pixel. Counts are kept on the host as int64, exact at any data-set size.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self._matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """(num_classes, num_classes) int64, ``matrix[i, j]`` = pixels of class i predicted j
        (a read-only view: change the counts through ``update``, ``merge`` and ``reset``)."""
        view = self._matrix.view()
        view.flags.writeable = False
        return view

    def reset(self) -> None:
        self._matrix.fill(0)

    def update(self, labels: Any, preds: Any) -> ConfusionMatrix:
        """Add one batch: ``labels`` and ``preds`` integer arrays of one shape, e.g. (N, H, W),
        NumPy or CuPy. Counts ``bincount(num_classes * label + pred)`` over the pixels whose
        label is not ``ignore_index``. Returns self."""
        xp = get_array_module(labels, preds)
        labels, preds = xp.asarray(labels), xp.asarray(preds)
        if labels.shape != preds.shape:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} and preds of shape {tuple(preds.shape)} "
                "differ; preds should be the class indices scores.argmax(1), shape (N, H, W)"
            )
        for name, a in (("labels", labels), ("preds", preds)):
            if a.dtype.kind not in "iu":
                hint = " (class indices: take scores.argmax(1))" if name == "preds" else ""
                raise TypeError(f"{name} must be an integer array{hint}, got dtype {a.dtype}")
        # int64 before any arithmetic: in uint8, 21 * 20 + 20 would wrap around
        labels, preds = labels.reshape(-1).astype(xp.int64), preds.reshape(-1).astype(xp.int64)
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            labels, preds = labels[keep], preds[keep]
        if labels.size == 0:  # every pixel ignored (cupy.bincount refuses an empty array)
            return self
        self._check_range("labels", labels, xp)
        self._check_range("preds", preds, xp)
        n = self.num_classes
        counts = xp.bincount(n * labels + preds, minlength=n * n)
        self._matrix += asnumpy(counts).astype(np.int64).reshape(n, n)
        return self

    def _check_range(self, name: str, a: Any, xp: Any) -> None:
        """Values outside 0..num_classes-1 are a clear error, not a silently wrong matrix."""
        bad = (a < 0) | (a >= self.num_classes)
        if not bool(bad.any()):
            return
        values = asnumpy(xp.unique(a[bad]))
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        expected = f"class indices 0..{self.num_classes - 1}"
        if name == "labels" and self.ignore_index is not None:
            expected += f" or ignore_index {self.ignore_index}"
        where = " at pixels whose label is not ignored" if name == "preds" else ""
        raise ValueError(
            f"{name} hold {shown} ({int(bad.sum())} pixels){where}; expected {expected}"
        )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from another worker or split). Returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a matrix of {other.num_classes} classes (ignore_index "
                f"{other.ignore_index}) into one of {self.num_classes} (ignore_index "
                f"{self.ignore_index})"
            )
        self._matrix += other._matrix
        return self

    def compute(self) -> dict[str, Any]:
        """``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``, ``fw_iou`` (floats) and per-class
        ``iou`` and ``accuracy`` (lists of floats, NaN for an absent class; see the module
        docstring). Every value is NaN while no pixel has been counted."""
        m = self._matrix.astype(np.float64)
        n_ii = np.diag(m)
        t = m.sum(axis=1)  # t_i: pixels whose ground truth is class i
        predicted = m.sum(axis=0)  # sum_j n_ji: pixels predicted as class i
        union = t + predicted - n_ii
        total = t.sum()
        accuracy = _divide(n_ii, t)
        iou = _divide(n_ii, union)
        return {
            "pixel_accuracy": float(n_ii.sum() / total) if total else float("nan"),
            "mean_accuracy": _nanmean(accuracy),
            "mean_iou": _nanmean(iou),
            "fw_iou": float((t[t > 0] * iou[t > 0]).sum() / total) if total else float("nan"),
            "iou": [float(v) for v in iou],
            "accuracy": [float(v) for v in accuracy],
        }

    def format(self, class_names: list[str] | None = None) -> str:
        """A text table: per-class IU, accuracy and pixel count, then the four metrics (in %)."""
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a matrix of {self.num_classes} classes"
            )
        result = self.compute()
        width = max(12, *(len(name) for name in class_names))
        lines = [f"{'class':<{width}}  {'IU %':>7}  {'acc %':>7}  {'pixels':>12}"]
        for i, name in enumerate(class_names):
            pixels = int(self._matrix[i].sum())
            iou, acc = _percent(result["iou"][i]), _percent(result["accuracy"][i])
            lines.append(f"{name:<{width}}  {iou:>7}  {acc:>7}  {pixels:>12}")
        lines.append("")
        for key, label in (
            ("pixel_accuracy", "pixel accuracy"),
            ("mean_accuracy", "mean accuracy"),
            ("mean_iou", "mean IU"),
            ("fw_iou", "f.w. IU"),
        ):
            lines.append(f"{label:<{width}}  {_percent(result[key]):>7}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self._matrix.sum())})"
        )


def segmentation_metrics(
    labels: Any, preds: Any, num_classes: int, ignore_index: int | None = 255
) -> dict[str, Any]:
    """``ConfusionMatrix(num_classes, ignore_index).update(labels, preds).compute()``: the metrics
    of one batch or one whole data set held in memory at once."""
    return ConfusionMatrix(num_classes, ignore_index).update(labels, preds).compute()


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b == 0 (a class with nothing to measure), without a warning."""
    return np.divide(a, b, out=np.full(a.shape, np.nan), where=b > 0)


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries (``np.nanmean``), NaN without a warning when there are none."""
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else float("nan")


def _percent(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.2f}"
