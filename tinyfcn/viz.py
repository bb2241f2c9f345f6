"""Pictures of segmentations: the PASCAL VOC palette, palette PNGs, overlays, comparison grids,
learning curves and metric bar charts.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas and written to PNG files;
pyplot is never imported, so the global matplotlib backend and state are left untouched.
Every function accepts NumPy or CuPy arrays (copied to the host with ``backend.asnumpy``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .backend import asnumpy
from .data.labels import as_label as _as_label
from .data.labels import colorize, voc_palette

# palette PNGs live with the data (no matplotlib there); re-exported for viz users
from .data.labels import load_label_png as load_label_png
from .data.labels import save_label_png as save_label_png

PathLike = str | os.PathLike

IGNORE_INDEX = 255
# Learning-curve columns: the x axis, then which columns go to the metrics panel.
_X_COLUMNS = ("step", "iteration", "iter", "epoch")
_METRIC_COLUMNS = ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou")
# Axis labels in the paper's words (Long et al. write "IU" for intersection over union).
_METRIC_LABELS = {
    "pixel_accuracy": "pixel accuracy",
    "mean_accuracy": "mean accuracy",
    "mean_iou": "mean IU",
    "fw_iou": "f.w. IU",
}


# ----------------------------------------------------------------------------------- palette


def to_uint8_image(image: Any) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 for display.

    Accepts ``(3, H, W)`` (CHW, tinyfcn's layout) or ``(H, W, 3)``, one channel ``(1, H, W)`` /
    ``(H, W, 1)`` / ``(H, W)`` (repeated to grey RGB), NumPy or CuPy. Floats are read as [0, 1]
    and clipped (``round(255 x)``); integers are read as [0, 255] and clipped. When both the first
    and last axes have 3 entries, CHW is assumed.
    """
    image = asnumpy(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {image.shape}")
    first, last = image.shape[0], image.shape[-1]
    channels_first = first in (1, 3) and (last not in (1, 3) or first == 3)
    if channels_first:
        image = image.transpose(1, 2, 0)  # CHW -> HWC
    if image.shape[-1] not in (1, 3):
        raise ValueError(
            f"image must have 1 or 3 channels, first (CHW) or last (HWC); got shape {image.shape}"
        )
    if np.issubdtype(image.dtype, np.floating):
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255)
    image = image.astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


def overlay(
    image: Any, label: Any, alpha: float = 0.5, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Blend class colours over an image: ``out = (1 - alpha) image + alpha colour`` on object
    pixels; background (class 0) and ``ignore_index`` pixels keep the image. -> ``(H, W, 3)`` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rgb = to_uint8_image(image)
    label = _as_label(label)
    if label.shape != rgb.shape[:2]:
        raise ValueError(
            f"label shape {label.shape} does not match the image's (H, W) = {rgb.shape[:2]}"
        )
    objects = (label != 0) & (label != ignore_index)
    blended = (1.0 - alpha) * rgb + alpha * colorize(label).astype(np.float64)
    out = rgb.copy()
    out[objects] = np.rint(blended[objects]).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------- figures


def _save(fig: Figure, path: PathLike, **kwargs: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly; pyplot is never involved
    fig.savefig(path, format="png", **kwargs)
    return path


def _class_name(class_id: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and class_id < len(class_names):
        return str(class_names[class_id])
    return "ignore" if class_id == IGNORE_INDEX else f"class {class_id}"


def _pixel_accuracy(label: np.ndarray, pred: np.ndarray) -> float:
    valid = label != IGNORE_INDEX
    return float((label[valid] == pred[valid]).mean()) if valid.any() else float("nan")


def prediction_grid(
    images: Any,
    labels: Any,
    predictions: Mapping[str, Any] | Any,
    path: PathLike,
    class_names: Sequence[str] | None = None,
    max_rows: int = 8,
    title: str | None = None,
) -> Path:
    """A PNG with one row per image: image | ground truth | one column per prediction set.

    ``images`` ``(N, 3, H, W)`` (or a sequence of images ``to_uint8_image`` accepts), ``labels``
    ``(N, H, W)`` (or None: no ground-truth column), ``predictions`` ``(N, H, W)`` or a dict
    ``{"FCN-32s": p32, "FCN-8s": p8}`` for side-by-side comparisons. Each prediction cell is
    captioned with its pixel accuracy against the ground truth. The legend lists the classes
    that appear in the rows shown. Returns ``path``.
    """
    if not isinstance(predictions, Mapping):
        predictions = {"prediction": predictions}
    n = min(len(images), max_rows)
    if n == 0:
        raise ValueError("prediction_grid needs at least one image")
    rows_img = [to_uint8_image(images[i]) for i in range(n)]
    rows_gt = None if labels is None else [_as_label(labels[i], "labels[i]") for i in range(n)]
    rows_pred = {}
    for name, preds in predictions.items():
        if len(preds) < n:
            raise ValueError(f"predictions[{name!r}] has {len(preds)} maps for {n} images")
        rows_pred[name] = [_as_label(preds[i], f"predictions[{name!r}][i]") for i in range(n)]
    for i, img in enumerate(rows_img):
        maps = ([rows_gt[i]] if rows_gt else []) + [p[i] for p in rows_pred.values()]
        for m in maps:
            if m.shape != img.shape[:2]:
                raise ValueError(f"row {i}: label map {m.shape} vs image (H, W) {img.shape[:2]}")

    columns = ["image"] + (["ground truth"] if rows_gt else []) + list(rows_pred)
    height, width = rows_img[0].shape[:2]
    cell = 2.2  # inches per cell along its longer side
    cell_w, cell_h = cell * min(1.0, width / height), cell * min(1.0, height / width)
    caption_h = 0.3 if rows_gt else 0.1  # room for the "pixel acc" line under each row
    fig_w = cell_w * len(columns) + 0.4  # + the row-number label
    fig_h = (cell_h + caption_h) * n + 0.4 + (0.4 if title else 0.0)  # + column titles
    fig = Figure(figsize=(fig_w, fig_h), layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i in range(n):
        cells = [rows_img[i]] + ([colorize(rows_gt[i])] if rows_gt else [])
        cells += [colorize(p[i]) for p in rows_pred.values()]
        for j, (ax, picture) in enumerate(zip(axes[i], cells, strict=True)):
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=10)
            pred_index = j - (2 if rows_gt else 1)
            if rows_gt and pred_index >= 0:
                pred = list(rows_pred.values())[pred_index][i]
                ax.set_xlabel(f"pixel acc {_pixel_accuracy(rows_gt[i], pred):.3f}", fontsize=8)
        axes[i, 0].set_ylabel(f"#{i}", fontsize=9)
    if title:
        fig.suptitle(title)

    all_maps = list(rows_gt or []) + [m for maps in rows_pred.values() for m in maps]
    present = np.unique(np.concatenate([m.ravel() for m in all_maps]))
    palette = voc_palette()
    handles = [
        Patch(facecolor=palette[c] / 255.0, edgecolor="0.3", label=_class_name(c, class_names))
        for c in present.tolist()
    ]
    ncol = max(1, min(len(handles), int(fig.get_figwidth() / 1.3)))
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=ncol,
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path, dpi=100, bbox_inches="tight")


def _read_log(log: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]):
    """A training log as ``{column: [value or None, ...]}``; empty or non-numeric cells -> None."""
    if isinstance(log, (str, os.PathLike)):
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
    elif isinstance(log, Mapping):
        length = max((len(v) for v in log.values()), default=0)
        rows = [{k: (v[i] if i < len(v) else None) for k, v in log.items()} for i in range(length)]
    else:
        rows = list(log)
    names = list(dict.fromkeys(key for row in rows for key in row if key is not None))
    columns: dict[str, list[float | None]] = {}
    for name in names:
        values = []
        for row in rows:
            try:
                value = float(row.get(name))
            except (TypeError, ValueError):  # empty cell, missing key, text
                value = None
            values.append(value if value is not None and math.isfinite(value) else None)
        columns[name] = values
    return columns, len(rows)


def _plot_columns(ax, x, columns, names) -> None:
    for name in names:
        pts = [(xi, yi) for xi, yi in zip(x, columns[name], strict=True) if xi is not None]
        pts = [(xi, yi) for xi, yi in pts if yi is not None]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        sparse = len(pts) <= 30 or len(pts) < 0.5 * len(x)  # e.g. validation every N steps
        ax.plot(xs, ys, marker="o" if sparse else None, markersize=4, label=name)


def plot_learning_curves(
    log: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], path: PathLike
) -> Path:
    """Loss (left) and metrics (right) against the step, from a training log. Returns ``path``.

    ``log`` is a CSV file path, a list of row dicts, or a dict of columns. The x axis is the
    first of ``step``, ``iteration``, ``iter``, ``epoch`` present (else the row number). Columns
    whose name contains ``loss`` go left; ``mean_iou``, ``pixel_accuracy``, ``mean_accuracy``,
    ``fw_iou`` and other ``*iou*`` / ``*acc*`` columns go right. Empty cells are skipped, so a
    validation column logged every N steps plots as its own sparser line. The loss axis turns
    logarithmic when positive losses span more than a factor of 50.
    """
    columns, n_rows = _read_log(log)
    x_name = next((c for c in _X_COLUMNS if c in columns), None)
    x = columns[x_name] if x_name else list(range(n_rows))
    plotted = [c for c in columns if c != x_name and any(v is not None for v in columns[c])]
    losses = [c for c in plotted if "loss" in c.lower()]
    metrics = [c for c in _METRIC_COLUMNS if c in plotted]
    metrics += [
        c for c in plotted if c not in metrics and ("iou" in c.lower() or "acc" in c.lower())
    ]
    if not losses and not metrics:
        raise ValueError(
            f"the log has no loss or metric columns to plot; columns found: {list(columns)}"
        )

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)
    for ax, names, label in ((ax_loss, losses, "loss"), (ax_metric, metrics, "metric")):
        ax.set_xlabel(x_name or "row")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if not names:
            ax.text(
                0.5,
                0.5,
                f"no {label} columns in the log",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
            continue
        _plot_columns(ax, x, columns, names)
        ax.legend(fontsize=9)
    ax_loss.set_title("loss")
    ax_metric.set_title("metrics")
    loss_values = [v for c in losses for v in columns[c] if v is not None]
    if loss_values and min(loss_values) > 0 and max(loss_values) / min(loss_values) > 50:
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("loss (log scale)")
    metric_values = [v for c in metrics for v in columns[c] if v is not None]
    if metric_values and 0.0 <= min(metric_values) and max(metric_values) <= 1.0:
        ax_metric.set_ylim(-0.02, 1.02)  # a little margin so points at 0 or 1 are not cut
    return _save(fig, path, dpi=100)


def metrics_bar_chart(
    results: Mapping[str, Mapping[str, Any]], path: PathLike, title: str | None = None
) -> Path:
    """Grouped bars: one group per metric, one bar per model, each bar labelled with its value.

    ``results`` is ``{"FCN-32s": {"mean_iou": 0.61, "pixel_accuracy": 0.90}, ...}``; non-numeric
    entries (a per-class ``iou`` array) and missing metrics are left out. Returns ``path``.
    """
    if not results:
        raise ValueError("metrics_bar_chart needs at least one model's results")
    metrics: list[str] = []
    for scores in results.values():
        for metric, value in scores.items():
            if metric not in metrics and np.ndim(asnumpy(value)) == 0:
                metrics.append(metric)
    if not metrics:
        raise ValueError("no scalar metrics found in results")

    models = list(results)
    group_width = 0.8
    bar_width = group_width / len(models)
    fig = Figure(
        figsize=(max(6.0, 0.55 * len(metrics) * max(2, len(models)) + 2.0), 4.5),
        layout="constrained",
    )
    ax = fig.subplots()
    values_all = []
    for k, model in enumerate(models):
        xs, ys = [], []
        for m, metric in enumerate(metrics):
            value = results[model].get(metric)
            if value is None or np.ndim(asnumpy(value)) != 0:
                continue
            xs.append(m - group_width / 2 + (k + 0.5) * bar_width)
            ys.append(float(value))
        values_all += ys
        bars = ax.bar(xs, ys, width=bar_width * 0.95, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_xticks(range(len(metrics)), [_METRIC_LABELS.get(m, m) for m in metrics])
    ax.set_ylabel("score")
    if values_all and 0.0 <= min(values_all) and max(values_all) <= 1.0:
        ax.set_ylim(0.0, 1.1)  # headroom for the value labels
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(models), frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=100)
