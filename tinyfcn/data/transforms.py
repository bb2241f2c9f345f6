"""Paired transforms for segmentation: each maps (image (3, H, W) float32, label (H, W) int64).

Every transform is a callable ``t(image, label, rng) -> (image, label)`` that takes its randomness
from the explicit ``np.random.Generator`` it is given, so a sample's augmentation is reproducible
(the DataLoader hands sample i of epoch e the generator ``default_rng([seed, e, i])``). Geometric
transforms move image and label together; photometric ones leave the label alone. Labels are never
interpolated: new pixels get ``ignore_index`` (255), resampling is nearest-neighbour, so no label
value appears that was not there before. Inputs are never modified in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, images in [0, 1] (torchvision's VGG16)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # BGR, images in [0, 255] (the FCN paper)

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _size(size: int | Sequence[int], name: str) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"{name}: size must be >= 1, got {size!r}")
    return int(h), int(w)


def _check_pair(image: np.ndarray, label: np.ndarray, name: str) -> None:
    if image.ndim != 3 or label.ndim != 2 or image.shape[1:] != label.shape:
        raise ValueError(
            f"{name} expects image (C, H, W) and label (H, W) of the same H, W, got image "
            f"{tuple(image.shape)} and label {tuple(label.shape)}"
        )


def pad_to(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int], centre: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (C, H, W) / (H, W) up to at least ``size``: image with 0, label with 255 = ignore.

    Padding goes on the bottom and right, or is split evenly (extra pixel bottom/right) when
    ``centre``. Dimensions already at least as large are left alone.
    """
    H, W = label.shape
    ph, pw = max(size[0] - H, 0), max(size[1] - W, 0)
    if ph == 0 and pw == 0:
        return image, label
    top, left = (ph // 2, pw // 2) if centre else (0, 0)
    rows, cols = (top, ph - top), (left, pw - left)
    image = np.pad(image, ((0, 0), rows, cols), constant_values=0)
    return image, np.pad(label, (rows, cols), constant_values=IGNORE_INDEX)


class Compose:
    """Apply transforms in order, passing the same generator to each: ``t_n(...t_1(x, y, rng))``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image, label, rng=None):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomCrop:
    """A random (h, w) window of image (C, H, W) and label (H, W) -> (C, h, w), (h, w).

    The top-left corner is uniform over the ``(H - h + 1) x (W - w + 1)`` positions. A side smaller
    than the crop is first padded at the bottom/right (image 0, label 255 = ignore, so the loss
    skips the padding) when ``pad_if_needed``; otherwise it is an error.
    """

    def __init__(self, size: int | Sequence[int], pad_if_needed: bool = True) -> None:
        self.size, self.pad_if_needed = _size(size, "RandomCrop"), bool(pad_if_needed)

    def __call__(self, image, label, rng):
        _check_pair(image, label, "RandomCrop")
        h, w = self.size
        if label.shape[0] < h or label.shape[1] < w:
            if not self.pad_if_needed:
                raise ValueError(
                    f"RandomCrop: a {h}x{w} crop does not fit in a {label.shape[0]}x"
                    f"{label.shape[1]} image; use pad_if_needed=True"
                )
            image, label = pad_to(image, label, self.size)
        top = int(rng.integers(0, label.shape[0] - h + 1))
        left = int(rng.integers(0, label.shape[1] - w + 1))
        return image[:, top : top + h, left : left + w], label[top : top + h, left : left + w]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, pad_if_needed={self.pad_if_needed})"


class CenterCrop:
    """The central (h, w) window: (C, H, W), (H, W) -> (C, h, w), (h, w); ``rng`` is unused.

    The window starts at ``((H - h) // 2, (W - w) // 2)``. A side smaller than the crop is padded
    evenly on both sides (image 0, label 255 = ignore).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size, "CenterCrop")

    def __call__(self, image, label, rng=None):
        _check_pair(image, label, "CenterCrop")
        h, w = self.size
        image, label = pad_to(image, label, self.size, centre=True)
        top, left = (label.shape[0] - h) // 2, (label.shape[1] - w) // 2
        return image[:, top : top + h, left : left + w], label[top : top + h, left : left + w]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip:
    """With probability ``p``, mirror image (C, H, W) and label (H, W) left-right, together.

    One ``rng.random()`` draw per call, flipped or not. Shapes and label values are unchanged.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, image, label, rng):
        _check_pair(image, label, "RandomHorizontalFlip")
        if rng.random() < self.p:
            return image[:, :, ::-1].copy(), label[:, ::-1].copy()
        return image, label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def resize_indices(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source positions for resampling a length-``n_in`` axis to ``n_out`` (half-pixel centres).

    Output pixel j looks at ``x = (j + 0.5) * n_in / n_out - 0.5`` (PyTorch's
    ``align_corners=False``), clamped to [0, n_in - 1]; returns ``(i0, i1, frac)`` with
    ``x = i0 + frac`` and ``i1 = min(i0 + 1, n_in - 1)``.
    """
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(np.float32)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Output pixel j copies input pixel ``floor((j + 0.5) * n_in / n_out)``, the nearest centre."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, h, w) by bilinear interpolation: a blend of the 4 nearest pixels."""
    y0, y1, fy = resize_indices(image.shape[1], size[0])
    x0, x1, fx = resize_indices(image.shape[2], size[1])
    fy, fx = fy[:, None], fx[None, :]
    rows0, rows1 = image[:, y0], image[:, y1]  # (C, h, W) each
    top = rows0[:, :, x0] * (1 - fx) + rows0[:, :, x1] * fx
    bottom = rows1[:, :, x0] * (1 - fx) + rows1[:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(image.dtype, copy=False)


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) -> (h, w) by nearest neighbour: every output value is copied from the input."""
    rows, cols = nearest_indices(label.shape[0], size[0]), nearest_indices(label.shape[1], size[1])
    return label[rows[:, None], cols[None, :]]


class RandomScale:
    """Resize by a factor s ~ U(min_scale, max_scale): (C, H, W), (H, W) -> (C, h, w), (h, w).

    ``h = max(1, round(s * H))``, likewise w. The image is resampled bilinearly, the label by
    nearest neighbour, so the label holds only values it held before (255 stays 255).
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(
                f"RandomScale: need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}"
            )
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, image, label, rng):
        _check_pair(image, label, "RandomScale")
        s = rng.uniform(self.min_scale, self.max_scale)
        size = (max(1, round(s * label.shape[0])), max(1, round(s * label.shape[1])))
        return resize_bilinear(image, size), resize_nearest(label, size)

    def __repr__(self) -> str:
        return f"RandomScale(min_scale={self.min_scale}, max_scale={self.max_scale})"


class Normalize:
    """Per channel ``(image[c] - mean[c]) / std[c]`` on (C, H, W) -> float32; label unchanged."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape != self.std.shape or np.any(self.std <= 0):
            raise ValueError(f"Normalize: need equal-length mean and std > 0, got {mean}, {std}")

    def __call__(self, image, label, rng=None):
        if image.ndim != 3 or image.shape[0] != self.mean.shape[0]:
            raise ValueError(
                f"Normalize has {self.mean.shape[0]} channel means but got an image of shape "
                f"{tuple(image.shape)}"
            )
        return ((image - self.mean) / self.std).astype(np.float32), label

    def __repr__(self) -> str:
        mean, std = ([round(float(v), 6) for v in a.ravel()] for a in (self.mean, self.std))
        return f"{type(self).__name__}(mean={mean}, std={std})"


class ImageNetNormalize(Normalize):
    """Normalize with ImageNet's RGB statistics, for torchvision-style VGG16 weights."""

    def __init__(self) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)


def caffe_preprocess(image: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (..., 3, H, W) -> what the paper's Caffe weights expect, float32.

    Channels reversed to BGR, scaled to [0, 255], then ``CAFFE_MEAN_BGR`` subtracted per channel:
    ``out[..., c, :, :] = 255 * image[..., 2 - c, :, :] - CAFFE_MEAN_BGR[c]``. Works on one image
    or a batch.
    """
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"caffe_preprocess expects (..., 3, H, W) RGB, got {tuple(image.shape)}")
    mean = np.asarray(CAFFE_MEAN_BGR, dtype=np.float32).reshape(3, 1, 1)
    return (255.0 * image[..., ::-1, :, :] - mean).astype(np.float32)


def caffe_deprocess(image: np.ndarray) -> np.ndarray:
    """The inverse of :func:`caffe_preprocess`: BGR minus mean (..., 3, H, W) -> RGB in [0, 1]."""
    mean = np.asarray(CAFFE_MEAN_BGR, dtype=np.float32).reshape(3, 1, 1)
    return ((image + mean)[..., ::-1, :, :] / 255.0).astype(np.float32)


class CaffeNormalize:
    """The transform form of :func:`caffe_preprocess`: (3, H, W) RGB [0, 1] -> BGR - mean; label
    unchanged."""

    def __call__(self, image, label, rng=None):
        return caffe_preprocess(image), label

    def __repr__(self) -> str:
        return "CaffeNormalize()"
