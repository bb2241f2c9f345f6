"""tinyfcn.data: the shapes data set, VOC folders, paired transforms and the DataLoader."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from tinyfcn.data import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SHAPES_CLASSES,
    VOC_CLASSES,
    CaffeNormalize,
    CenterCrop,
    Compose,
    DataLoader,
    ImageNetNormalize,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ShapesDataset,
    VOCSegmentation,
    caffe_deprocess,
    caffe_preprocess,
    load_label_png,
    save_label_png,
    split_shapes,
    voc_palette,
)
from tinyfcn.data.shapes import DISC, RING, ring_mask, square_mask, triangle_mask
from tinyfcn.data.transforms import resize_bilinear

# ----------------------------------------------------------------------------- ShapesDataset


@pytest.mark.parametrize("size", [96, (40, 64)], ids=["96", "40x64"])
def test_shapes_sample_contract(size):
    ds = ShapesDataset(5, size=size, seed=3)
    H, W = (size, size) if isinstance(size, int) else size
    assert len(ds) == 5 and ds.num_classes == 5 and ds.class_names == SHAPES_CLASSES
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, H, W) and image.dtype == np.float32
        assert label.shape == (H, W) and label.dtype == np.int64
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert 0 <= label.min() and label.max() <= 4
    with pytest.raises(IndexError, match="out of range"):
        ds[5]


def test_shapes_deterministic_and_order_independent():
    forward = [ShapesDataset(6, seed=7)[i] for i in range(6)]
    backward = ShapesDataset(6, seed=7)
    for i in reversed(range(6)):  # a fresh data set, read in the opposite order
        image, label = backward[i]
        np.testing.assert_array_equal(image, forward[i][0])
        np.testing.assert_array_equal(label, forward[i][1])
    np.testing.assert_array_equal(backward[-1][1], forward[5][1])
    other = ShapesDataset(6, seed=8)
    assert not np.array_equal(other[0][0], forward[0][0])
    assert not np.array_equal(forward[0][0], forward[1][0])


def test_shapes_cache_returns_equal_independent_copies():
    ds = ShapesDataset(3, seed=1, cache=True)
    image, label = ds[2]
    image[:] = 0  # mutating a returned sample must not corrupt the cache
    label[:] = 0
    np.testing.assert_array_equal(ds[2][1], ShapesDataset(3, seed=1)[2][1])
    np.testing.assert_array_equal(ds[2][0], ShapesDataset(3, seed=1)[2][0])


@pytest.fixture(scope="module")
def fifty_shapes():
    ds = ShapesDataset(50, size=96, seed=0)
    return [ds[i] for i in range(len(ds))]


def test_all_classes_appear_with_sensible_fractions(fifty_shapes):
    counts = sum(np.bincount(label.ravel(), minlength=5) for _, label in fifty_shapes)
    fractions = counts / counts.sum()
    print("class pixel fractions:", dict(zip(SHAPES_CLASSES, np.round(fractions, 4), strict=True)))
    assert 0.6 < fractions[0] < 0.97, fractions
    assert np.all(fractions[1:] > 0.005), fractions
    images_with = sum(np.bincount(label.ravel(), minlength=5) > 0 for _, label in fifty_shapes)
    assert np.all(images_with[1:] >= 10), images_with


def _eroded(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose whole (2r+1)^2 neighbourhood is in ``mask`` (outside the image is not)."""
    padded = np.pad(mask, r, constant_values=False)
    H, W = mask.shape
    out = np.ones_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= padded[dy : dy + H, dx : dx + W]
    return out


def test_rings_are_thin_and_discs_are_not(fifty_shapes):
    interior = {RING: [0, 0], DISC: [0, 0]}  # class -> [pixels, pixels with no other within 2 px]
    for _, label in fifty_shapes:
        for cls in interior:
            mask = label == cls
            interior[cls][0] += mask.sum()
            interior[cls][1] += _eroded(mask, 2).sum()
    ring_core = interior[RING][1] / interior[RING][0]
    disc_core = interior[DISC][1] / interior[DISC][0]
    assert ring_core < 0.05, f"{ring_core:.1%} of ring pixels are > 2 px from a non-ring pixel"
    assert disc_core > 0.4, f"only {disc_core:.1%} of disc pixels are disc-interior"


def test_colour_does_not_decide_the_class():
    """Object colours are uniform whatever the class: same mean, wide spread, for every class."""
    ds = ShapesDataset(300, size=48, seed=0)
    colours = {c: [] for c in range(1, 5)}
    for i in range(len(ds)):
        image, label = ds[i]
        for c in colours:
            if (label == c).sum() > 10:
                colours[c].append(image[:, label == c].mean(axis=1))
    for c, rgb in colours.items():
        rgb, name = np.array(rgb), SHAPES_CLASSES[c]
        assert len(rgb) > 100, f"{name}: only {len(rgb)} objects"
        assert np.all(np.abs(rgb.mean(axis=0) - 0.5) < 0.1), f"{name}: mean {rgb.mean(axis=0)}"
        assert np.all(rgb.std(axis=0) > 0.2), f"{name}: colour spread {rgb.std(axis=0)}"


def test_shape_masks():
    dy, dx = np.arange(-10, 11.0)[:, None], np.arange(-10, 11.0)[None, :]
    np.testing.assert_array_equal(square_mask(dy, dx, 4, 0.0), (abs(dy) <= 4) & (abs(dx) <= 4))
    # a square turned by 90 degrees is the same square
    np.testing.assert_array_equal(square_mask(dy, dx, 4, np.pi / 2), square_mask(dy, dx, 4, 0.0))
    vertices = np.array([[-8.0, 0.0], [6.0, -7.0], [5.0, 8.0]])
    tri = triangle_mask(dy, dx, vertices)
    np.testing.assert_array_equal(tri, triangle_mask(dy, dx, vertices[::-1]))  # either winding
    assert tri[10, 10] and not tri[0, 0] and not tri[20, 20]
    assert 0.8 < tri.sum() / 101.5 < 1.2  # area |cross| / 2 = 101.5
    ring = ring_mask(dy, dx, 9.0, 3.0)
    radii = np.hypot(dy, dx)[ring]
    assert radii.min() > 6.0 and radii.max() <= 9.0 and not ring[10, 10]


def test_split_shapes_is_disjoint():
    train, val = split_shapes(train=6, val=4, size=32, seed=5, max_objects=2)
    assert (len(train), len(val)) == (6, 4) and train.size == val.size == (32, 32)
    assert train.seed != val.seed and train.max_objects == val.max_objects == 2
    for j in range(len(val)):
        assert all(not np.array_equal(val[j][0], train[i][0]) for i in range(len(train)))


def test_shapes_generation_is_fast():
    ds = ShapesDataset(200, size=96, seed=2)
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    rate = len(ds) / (time.perf_counter() - start)
    assert rate > 100, f"{rate:.0f} images/s at 96x96 (a per-pixel Python loop?)"


def test_shapes_bad_arguments():
    with pytest.raises(ValueError, match="min_objects"):
        ShapesDataset(3, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="size"):
        ShapesDataset(3, size=4)


# ----------------------------------------------------------------------------- VOC folders


def _smooth_image(rng, h, w) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0.2, 0.8, (3, 1, 1))
    return np.clip(base + 0.2 * np.stack([ys, xs, ys * xs]), 0, 1)


def _write_voc(root, ids_sizes, split="train"):
    """A tiny VOC tree; returns {id: (image (3, H, W) float, label (H, W) int64)}."""
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (h, w) in ids_sizes.items():
        image = _smooth_image(rng, h, w)
        rgb = (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        label = rng.integers(0, 21, (h, w))
        label[0, :] = 255  # a border strip and a few scattered ignore pixels
        label[rng.random((h, w)) < 0.05] = 255
        save_label_png(label, root / "SegmentationClass" / f"{name}.png")
        written[name] = (image, label)
    (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids_sizes) + "\n")
    return written


def test_palette_png_round_trip_is_exact(tmp_path):
    label = np.random.default_rng(1).integers(0, 256, (13, 17))
    save_label_png(label, tmp_path / "l.png")
    with Image.open(tmp_path / "l.png") as png:
        assert png.mode == "P"
        assert png.getpalette()[3:6] == [128, 0, 0]  # class 1 is drawn dark red
    back = load_label_png(tmp_path / "l.png")
    assert back.dtype == np.uint8  # ids 0..255; VOCSegmentation widens them to int64
    np.testing.assert_array_equal(back, label)
    cmap = voc_palette()
    assert tuple(cmap[255]) == (224, 224, 192) and tuple(cmap[15]) == (192, 128, 128)


def test_voc_reads_images_and_exact_labels(tmp_path):
    written = _write_voc(tmp_path, {"2007_000032": (20, 30), "2007_000039": (25, 17)})
    ds = VOCSegmentation(tmp_path, split="train")
    assert len(ds) == 2 and ds.num_classes == 21 and VOC_CLASSES[0] == "background"
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
    for i, name in enumerate(["2007_000032", "2007_000039"]):
        image, label = ds[i]
        assert image.dtype == np.float32 and image.shape == (3, *written[name][1].shape)
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, written[name][1])
        assert (label == 255).any() and 0.0 <= image.min() and image.max() <= 1.0
        assert np.abs(image - written[name][0]).mean() < 0.02  # JPEG is lossy, but not much


def test_voc_transform_gets_a_per_sample_generator(tmp_path):
    _write_voc(tmp_path, {"a": (20, 30), "b": (25, 17)})
    ds = VOCSegmentation(tmp_path, transform=RandomCrop(16), seed=4)
    first = [ds[i] for i in range(2)]
    assert all(image.shape == (3, 16, 16) and label.shape == (16, 16) for image, label in first)
    np.testing.assert_array_equal(ds[1][1], first[1][1])  # same sample, same crop


def test_voc_errors_name_the_missing_piece(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VOCSegmentation(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"ImageSets.Segmentation.train\.txt"):
        VOCSegmentation(tmp_path)
    devkit = tmp_path / "VOCdevkit"
    _write_voc(devkit / "VOC2012", {"a": (8, 8)})
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        VOCSegmentation(devkit)
    root = devkit / "VOC2012"
    with pytest.raises(FileNotFoundError, match=r"splits found: \['train'\]"):
        VOCSegmentation(root, split="val")
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image\(s\).*a\.jpg"):
        VOCSegmentation(root)


def test_voc_rejects_rgb_labels(tmp_path):
    _write_voc(tmp_path, {"a": (8, 8)})
    Image.new("RGB", (8, 8), (128, 0, 0)).save(tmp_path / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match="palette"):
        VOCSegmentation(tmp_path)[0]


# ----------------------------------------------------------------------------- transforms


def _coded_pair(h: int, w: int):
    """Image channel 0 and the label both hold each pixel's flat index: alignment is checkable."""
    index = np.arange(h * w).reshape(h, w)
    image = np.stack([index, -index, np.full((h, w), 0.5)]).astype(np.float32)
    return image, index.astype(np.int64)


def _assert_aligned(image, label, name):
    keep = label != 255
    np.testing.assert_array_equal(image[0][keep], label[keep], err_msg=f"{name}: misaligned")


def test_random_crop_window_is_aligned_and_reproducible():
    image, label = _coded_pair(12, 15)
    crop = RandomCrop((5, 7))
    img, lab = crop(image, label, np.random.default_rng(0))
    assert img.shape == (3, 5, 7) and lab.shape == (5, 7)
    _assert_aligned(img, lab, "RandomCrop")
    top, left = divmod(int(lab[0, 0]), 15)  # the window is a contiguous block of the original
    np.testing.assert_array_equal(lab, label[top : top + 5, left : left + 7])
    again = crop(image, label, np.random.default_rng(0))[1]
    np.testing.assert_array_equal(again, lab)
    corners = {int(crop(image, label, np.random.default_rng(s))[1][0, 0]) for s in range(40)}
    assert len(corners) > 10  # the position really is random


def test_random_crop_pads_image_with_zero_and_label_with_ignore():
    image, label = _coded_pair(4, 6)
    image[2] = 0.7
    img, lab = RandomCrop((7, 9))(image, label, np.random.default_rng(1))
    assert img.shape == (3, 7, 9) and lab.shape == (7, 9)
    np.testing.assert_array_equal(lab[:4, :6], label)  # padding goes bottom and right
    assert np.all(lab[4:] == 255) and np.all(lab[:, 6:] == 255)
    assert np.all(img[:, 4:] == 0) and np.all(img[:, :, 6:] == 0)
    # taller than the crop but narrower: random in one axis, padded in the other
    img, lab = RandomCrop((3, 9))(image, label, np.random.default_rng(2))
    assert lab.shape == (3, 9) and np.all(lab[:, 6:] == 255)
    with pytest.raises(ValueError, match="pad_if_needed"):
        RandomCrop((7, 9), pad_if_needed=False)(image, label, np.random.default_rng(0))


def test_center_crop_offsets_and_padding():
    image, label = _coded_pair(9, 10)
    img, lab = CenterCrop((5, 4))(image, label)
    np.testing.assert_array_equal(lab, label[2:7, 3:7])  # starts at ((9-5)//2, (10-4)//2)
    _assert_aligned(img, lab, "CenterCrop")
    img, lab = CenterCrop((12, 10))(image, label)  # 3 rows of padding: 1 on top, 2 below
    np.testing.assert_array_equal(lab[1:10], label)
    assert np.all(lab[[0, 10, 11]] == 255) and np.all(img[:, [0, 10, 11]] == 0)


def test_horizontal_flip_flips_both_consistently():
    image, label = _coded_pair(5, 7)
    img, lab = RandomHorizontalFlip(p=1.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(lab, label[:, ::-1])
    np.testing.assert_array_equal(img, image[:, :, ::-1])
    img, lab = RandomHorizontalFlip(p=0.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(lab, label)
    flip = RandomHorizontalFlip(p=0.5)
    flipped = [flip(image, label, np.random.default_rng(s))[1][0, 0] != 0 for s in range(200)]
    assert 0.35 < np.mean(flipped) < 0.65


def test_random_scale_keeps_label_values_and_sizes():
    rng = np.random.default_rng(3)
    label = rng.choice(np.array([0, 3, 7, 255]), size=(23, 31))
    image = rng.random((3, 23, 31)).astype(np.float32)
    scale = RandomScale(0.5, 2.0)
    sizes = set()
    for s in range(20):
        img, lab = scale(image, label, np.random.default_rng(s))
        assert img.shape == (3, *lab.shape) and img.dtype == np.float32 and lab.dtype == np.int64
        assert set(np.unique(lab)) <= {0, 3, 7, 255}
        assert 0.0 <= img.min() and img.max() <= 1.0  # bilinear never overshoots
        s_h = lab.shape[0] / 23
        assert 0.45 < s_h < 2.05 and abs(lab.shape[1] - round(s_h * 31)) <= 1
        sizes.add(lab.shape)
    assert len(sizes) > 10
    img, lab = RandomScale(1.0, 1.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(lab, label)
    np.testing.assert_allclose(img, image, atol=1e-6)


@pytest.mark.parametrize("out", [(17, 50), (5, 8), (23, 31)], ids=["up", "down", "same"])
def test_bilinear_matches_pytorch_interpolate(out):
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(4).random((3, 23, 31))
    theirs = torch.nn.functional.interpolate(
        torch.tensor(image)[None], size=out, mode="bilinear", align_corners=False
    )[0].numpy()
    ours = resize_bilinear(image, out)
    assert np.allclose(ours, theirs, atol=1e-12), f"ours vs theirs {np.abs(ours - theirs).max()}"


def test_normalize_math():
    image = np.random.default_rng(5).random((3, 4, 6)).astype(np.float32)
    label = np.zeros((4, 6), dtype=np.int64)
    out, lab = Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(image, label)
    assert out.dtype == np.float32 and lab is label
    np.testing.assert_allclose(out[1], (image[1] - 0.2) / 0.25, rtol=1e-6)
    out, _ = ImageNetNormalize()(image, label)
    np.testing.assert_allclose(out[2], (image[2] - IMAGENET_MEAN[2]) / IMAGENET_STD[2], rtol=1e-6)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    with pytest.raises(ValueError, match="3 channel means"):
        Normalize(IMAGENET_MEAN, IMAGENET_STD)(image[:2], label)


def test_caffe_preprocess_is_bgr_times_255_minus_mean():
    image = np.zeros((3, 2, 2), dtype=np.float32)
    image[0], image[1], image[2] = 1.0, 0.5, 0.0  # R, G, B
    out = caffe_preprocess(image)
    assert CAFFE_MEAN_BGR == (104.00699, 116.66877, 122.67892)
    np.testing.assert_allclose(out[:, 0, 0], [0 - 104.00699, 127.5 - 116.66877, 255 - 122.67892])
    batch = np.random.default_rng(6).random((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(caffe_preprocess(batch)[1], caffe_preprocess(batch[1]), rtol=1e-6)
    np.testing.assert_allclose(caffe_deprocess(caffe_preprocess(batch)), batch, atol=1e-5)
    label = np.ones((2, 2), dtype=np.int64)
    out2, lab = CaffeNormalize()(image, label)
    np.testing.assert_array_equal(out2, out)
    assert lab is label


def test_compose_is_reproducible_and_leaves_inputs_alone():
    image, label = _coded_pair(30, 40)
    before = image.copy(), label.copy()
    t = Compose([RandomScale(0.7, 1.3), RandomCrop(24), RandomHorizontalFlip()])
    a = t(image, label, np.random.default_rng(9))
    b = t(image, label, np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (3, 24, 24)
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(label, before[1])


# ----------------------------------------------------------------------------- DataLoader


class Tagged:
    """Sample i is an image and a label filled with i; ``sizes`` may vary per sample."""

    def __init__(self, n: int, sizes=None):
        self.sizes = sizes or [(4, 5)] * n

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        h, w = self.sizes[i]
        return np.full((3, h, w), i, np.float32), np.full((h, w), i, np.int64)


def _tags(batches):
    return [labels[:, 0, 0].tolist() for _, labels in batches]


@pytest.mark.parametrize(
    "n, bs, drop_last, expected",
    [(10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]), (3, 5, True, [])],
    ids=["ragged", "drop_last", "exact", "too-small"],
)
def test_loader_batches(n, bs, drop_last, expected):
    loader = DataLoader(Tagged(n), batch_size=bs, shuffle=False, drop_last=drop_last)
    batches = list(loader.epoch(0))
    assert len(loader) == len(expected) and [len(b[0]) for b in batches] == expected
    for images, labels in batches:
        assert images.dtype == np.float32 and images.shape[1:] == (3, 4, 5)
        assert labels.dtype == np.int64 and labels.shape[1:] == (4, 5)
    assert sum(_tags(batches), []) == list(range(sum(expected)))


def test_loader_shuffle_is_a_reproducible_permutation():
    loader = DataLoader(Tagged(11), batch_size=3, seed=2)
    seen = sum(_tags(loader.epoch(1)), [])
    assert seen == np.random.default_rng([2, 1]).permutation(11).tolist()
    assert seen == sum(_tags(DataLoader(Tagged(11), batch_size=3, seed=2).epoch(1)), [])
    assert seen != sum(_tags(loader.epoch(2)), [])
    assert seen != sum(_tags(DataLoader(Tagged(11), batch_size=3, seed=3).epoch(1)), [])


def test_resumed_epoch_equals_the_tail_of_an_uninterrupted_one():
    t = Compose([RandomScale(0.8, 1.25), RandomCrop(40), RandomHorizontalFlip()])
    loader = DataLoader(ShapesDataset(10, size=48, seed=1), batch_size=3, seed=5, transform=t)
    full = list(loader.epoch(3))
    resumed = list(DataLoader(loader.dataset, 3, seed=5, transform=t).epoch(3, start_batch=2))
    assert len(full) == 4 and len(resumed) == 2
    for (xa, ya), (xb, yb) in zip(full[2:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert list(loader.epoch(3, start_batch=4)) == []
    with pytest.raises(ValueError, match="start_batch"):
        loader.epoch(3, start_batch=5)


def test_iterating_the_loader_advances_the_epoch():
    loader = DataLoader(Tagged(7), batch_size=2, seed=1)
    first, second = _tags(loader), _tags(loader)
    assert first == _tags(loader.epoch(0)) and second == _tags(loader.epoch(1))
    assert loader.next_epoch == 2
    loader.next_epoch = 0
    assert _tags(loader) == first


def test_loader_names_the_sizes_that_cannot_be_stacked():
    ds = Tagged(3, sizes=[(4, 5), (6, 5), (4, 5)])
    with pytest.raises(ValueError, match=r"sample 0: \(3, 4, 5\), sample 1: \(3, 6, 5\)"):
        list(DataLoader(ds, batch_size=3, shuffle=False).epoch(0))
    loader = DataLoader(ds, batch_size=3, shuffle=False, transform=CenterCrop(5))
    images, labels = next(loader.epoch(0))
    assert images.shape == (3, 3, 5, 5) and labels.shape == (3, 5, 5)
    assert np.all(labels[0, 4] == 255) and np.all(labels[0, :4] == 0)  # padded below with ignore
