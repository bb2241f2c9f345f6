"""tinyfcn.viz: the VOC palette, palette PNGs, overlays and the PNG figures."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyfcn import viz


def _blobs(n=3, h=24, w=32, seed=0):
    """Images (n, 3, h, w) in [0, 1] and label maps with background, two objects and ignore."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, size=(n, 3, h, w))
    labels = np.zeros((n, h, w), dtype=np.int64)
    labels[:, 4:12, 4:14] = 15
    labels[:, 14:20, 18:28] = 7
    labels[:, 0, :] = 255
    return images, labels


def _png_size(path):
    assert path.exists() and path.stat().st_size > 1000, "expected a non-empty PNG"
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size  # (width, height)


# ----------------------------------------------------------------------------------- palette


@pytest.mark.parametrize(
    "class_id, rgb",
    [(0, (0, 0, 0)), (1, (128, 0, 0)), (2, (0, 128, 0)), (3, (128, 128, 0)), (4, (0, 0, 128)),
     (15, (192, 128, 128)), (20, (0, 64, 128)), (255, (224, 224, 192))],
    ids=lambda v: str(v),
)  # fmt: skip
def test_voc_palette_known_colours(class_id, rgb):
    palette = viz.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[class_id]) == rgb


def test_voc_palette_prefix_and_distinct_colours():
    full = viz.voc_palette()
    np.testing.assert_array_equal(viz.voc_palette(21), full[:21])
    assert len({tuple(c) for c in full}) == 256, "the bit interleaving is a bijection on 0..255"


def test_colorize_maps_ids_through_the_palette():
    label = np.array([[0, 1, 2], [15, 255, 3]], dtype=np.int32)
    rgb = viz.colorize(label)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, viz.voc_palette()[label])
    assert tuple(rgb[1, 1]) == (224, 224, 192), "255 (ignore) keeps its palette colour"


@pytest.mark.parametrize(
    "label, message",
    [(np.zeros((2, 2)), "integer"), (np.array([[0, 256]]), r"\[0, 255\]"),
     (np.array([[-1, 0]]), r"\[0, 255\]"), (np.zeros((1, 2, 2), np.int64), r"\(H, W\)")],
    ids=["float", "too-big", "negative", "3-d"],
)  # fmt: skip
def test_colorize_rejects_bad_labels_with_a_reason(label, message):
    with pytest.raises(ValueError, match=message):
        viz.colorize(label)


# ----------------------------------------------------------------------------------- label PNGs


def test_label_png_round_trip_is_exact_and_palette_mode(tmp_path):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 21, size=(17, 23))
    label[:3] = 255
    label[5, :] = 20
    path = viz.save_label_png(label, tmp_path / "sub" / "2007_000032.png")
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette, viz.voc_palette())
        # What a viewer shows is the VOC colour image.
        np.testing.assert_array_equal(np.array(image.convert("RGB")), viz.colorize(label))
    loaded = viz.load_label_png(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (17, 23)
    np.testing.assert_array_equal(loaded, label)


def test_load_label_png_accepts_grayscale_and_rejects_rgb(tmp_path):
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(label).save(tmp_path / "l.png")
    np.testing.assert_array_equal(viz.load_label_png(tmp_path / "l.png"), label)
    Image.fromarray(viz.colorize(label)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="'RGB'"):
        viz.load_label_png(tmp_path / "rgb.png")


# ----------------------------------------------------------------------------------- images


def test_to_uint8_image_layouts_and_dtypes():
    rng = np.random.default_rng(2)
    chw = rng.uniform(0, 1, size=(3, 5, 7))
    expected = np.rint(chw.transpose(1, 2, 0) * 255).astype(np.uint8)
    out = viz.to_uint8_image(chw)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(viz.to_uint8_image(chw.transpose(1, 2, 0)), expected)
    np.testing.assert_array_equal(viz.to_uint8_image(expected), expected)
    np.testing.assert_array_equal(viz.to_uint8_image(expected.transpose(2, 0, 1)), expected)
    np.testing.assert_array_equal(viz.to_uint8_image(np.array([[-0.5, 2.0]]))[0, :, 0], [0, 255])
    grey = viz.to_uint8_image(np.full((1, 2, 4), 0.5, dtype=np.float32))
    assert grey.shape == (2, 4, 3) and (grey == 128).all()
    with pytest.raises(ValueError, match="channels"):
        viz.to_uint8_image(np.zeros((4, 5, 6)))


def test_to_uint8_image_and_colorize_take_device_arrays(xp):
    image = xp.asarray(np.linspace(0, 1, 3 * 4 * 5).reshape(3, 4, 5))
    assert isinstance(viz.to_uint8_image(image), np.ndarray)
    label = xp.asarray(np.array([[0, 15], [255, 1]]))
    np.testing.assert_array_equal(viz.colorize(label), viz.voc_palette()[[[0, 15], [255, 1]]])


def test_overlay_keeps_background_and_ignore_and_blends_objects():
    images, labels = _blobs(n=1)
    image, label = images[0], labels[0]
    rgb = viz.to_uint8_image(image)
    out = viz.overlay(image, label, alpha=0.5)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    keep = (label == 0) | (label == 255)
    np.testing.assert_array_equal(out[keep], rgb[keep])
    objects = ~keep
    assert (out[objects] != rgb[objects]).any(axis=-1).mean() > 0.9
    blend = np.rint(0.5 * rgb[objects] + 0.5 * viz.colorize(label)[objects].astype(float))
    np.testing.assert_array_equal(out[objects], blend.astype(np.uint8))
    np.testing.assert_array_equal(viz.overlay(image, label, alpha=0.0), rgb)
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay(image, label[:, :-1])


# ----------------------------------------------------------------------------------- figures


def test_prediction_grid_columns_grow_with_prediction_sets(tmp_path):
    images, labels = _blobs()
    rng = np.random.default_rng(3)
    preds = {name: rng.integers(0, 21, size=labels.shape) for name in ("32s", "16s", "8s")}
    one = viz.prediction_grid(images, labels, preds["8s"], tmp_path / "one.png")
    three = viz.prediction_grid(
        images, labels, preds, tmp_path / "three.png", class_names=["bg"] * 21, title="FCNs"
    )
    assert one == tmp_path / "one.png"
    (w1, h1), (w3, h3) = _png_size(one), _png_size(three)
    # image | ground truth | predictions: 3 vs 5 columns of ~220 px each.
    assert 500 < w1 < 900 and w3 - w1 > 350, (w1, w3)
    assert 600 < h1 < 1100 and abs(h3 - h1) < 150, (h1, h3)  # three rows plus the legend


def test_prediction_grid_max_rows_and_no_ground_truth(tmp_path):
    images, labels = _blobs(n=6)
    full = _png_size(viz.prediction_grid(images, labels, labels, tmp_path / "a.png"))
    capped = _png_size(viz.prediction_grid(images, labels, labels, tmp_path / "b.png", max_rows=2))
    assert capped[1] < full[1] * 0.6, (capped, full)
    hwc = [viz.to_uint8_image(im) for im in images]
    no_gt = _png_size(viz.prediction_grid(hwc, None, {"p": labels}, tmp_path / "c.png"))
    assert no_gt[0] < full[0] - 150, "no ground-truth column"
    with pytest.raises(ValueError, match="label map"):
        viz.prediction_grid(images, labels, labels[:, :-1], tmp_path / "d.png")


def _write_log(path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        header = ["step", "epoch", "lr", "train_loss", "val_loss", "mean_iou", "pixel_accuracy"]
        writer.writerow(header)
        for step in range(0, 200, 10):
            validate = step % 50 == 0
            writer.writerow([
                step, step // 100, 1e-3, 2.0 / (1 + step / 50),
                1.5 / (1 + step / 60) if validate else "",
                min(1.0, step / 200) if validate else "",
                0.5 + step / 500 if validate else "",
            ])  # fmt: skip


def test_learning_curves_from_csv_with_empty_cells(tmp_path):
    log = tmp_path / "train_log.csv"
    _write_log(log)
    path = viz.plot_learning_curves(log, tmp_path / "curves.png")
    width, height = _png_size(path)
    assert width > 1.8 * height, "two panels side by side"


def test_learning_curves_from_rows_and_columns(tmp_path):
    rows = [{"step": s, "train_loss": 1 / (s + 1), "mean_iou": None if s % 2 else s / 10}
            for s in range(10)]  # fmt: skip
    _png_size(viz.plot_learning_curves(rows, tmp_path / "rows.png"))
    columns = {"epoch": [0, 1, 2], "val_loss": [1.0, "", 0.5], "pixel_accuracy": [0.5, 0.7, 0.8]}
    _png_size(viz.plot_learning_curves(columns, tmp_path / "cols.png"))
    with pytest.raises(ValueError, match="no loss or metric columns"):
        viz.plot_learning_curves({"step": [0, 1], "lr": [0.1, 0.1]}, tmp_path / "none.png")


def test_metrics_bar_chart(tmp_path):
    results = {
        "FCN-32s": {"mean_iou": 0.594, "pixel_accuracy": 0.891, "iou": np.zeros(21)},
        "FCN-16s": {"mean_iou": 0.620, "pixel_accuracy": 0.900},
        "FCN-8s": {"mean_iou": 0.622},  # a missing metric is simply not drawn
    }
    width, height = _png_size(viz.metrics_bar_chart(results, tmp_path / "bars.png", title="VOC"))
    assert 500 < width < 1500 and 300 < height < 700
    many = {f"m{k}": {"mean_iou": 0.1 * k, "pixel_accuracy": 0.5} for k in range(8)}
    assert _png_size(viz.metrics_bar_chart(many, tmp_path / "many.png"))[0] > width
    with pytest.raises(ValueError, match="no scalar metrics"):
        viz.metrics_bar_chart({"a": {"iou": np.zeros(3)}}, tmp_path / "bad.png")


def test_figures_never_import_pyplot(tmp_path):
    """Figures use Figure + the Agg canvas: no pyplot, so a user's backend and state are untouched.

    (Reading ``matplotlib.get_backend()`` would itself import pyplot, so the check is on pyplot.)
    """
    code = (
        "import sys; from tinyfcn import viz; "
        f"viz.metrics_bar_chart({{'a': {{'mean_iou': 0.5}}}}, {str(tmp_path / 'b.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'viz imported pyplot'"
    )
    repo_root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)
