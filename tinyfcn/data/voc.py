"""VOCSegmentation: read PASCAL VOC's segmentation folders into (image, label) arrays.

Layout under ``root`` (e.g. ``VOCdevkit/VOC2012``)::

    ImageSets/Segmentation/<split>.txt   one image id per line
    JPEGImages/<id>.jpg                  the RGB image
    SegmentationClass/<id>.png           palette PNG: pixel values ARE class indices, 255 = border

A label PNG must be read as its palette indices (Pillow mode "P"), never converted to RGB: the
colours are only the palette's way of drawing the indices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def voc_colormap(n: int = 256) -> np.ndarray:
    """VOC's palette, (n, 3) uint8: the bits of class k spread over the high bits of R, G, B.

    Bit 3j, 3j+1, 3j+2 of k set bit 7-j of R, G, B; so 1 = (128, 0, 0), 2 = (0, 128, 0),
    255 = (224, 224, 192), the cream border colour.
    """
    k = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for j in range(8):
        for c in range(3):
            cmap[:, c] |= (((k >> (3 * j + c)) & 1) << (7 - j)).astype(np.uint8)
    return cmap


def save_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a (H, W) label map of values 0..255 as a VOC-style palette PNG."""
    label = np.asarray(label)
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(
            f"save_label_png: need a (H, W) label with values in 0..255, got shape "
            f"{label.shape} and range [{label.min(initial=0)}, {label.max(initial=0)}]"
        )
    png = Image.fromarray(label.astype(np.uint8), mode="P")
    png.putpalette(voc_colormap().ravel().tolist())
    png.save(path)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> float32 (3, H, W) RGB in [0, 1] (grey or CMYK JPEGs converted to RGB)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)) / 255.0


def read_label(path: str | Path) -> np.ndarray:
    """A palette (or greyscale) PNG -> int64 (H, W) of its pixel indices, untouched."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(
                f"{path}: label PNGs must be palette ('P') or greyscale ('L') images whose pixel "
                f"values are class indices, got mode {im.mode!r}; an RGB-coloured label has "
                f"lost its indices"
            )
        return np.array(im, dtype=np.int64)


class VOCSegmentation:
    """``ds[i] -> (image float32 (3, H, W) in [0, 1], label int64 (H, W))`` for one VOC split.

    Labels hold 0..20 and 255 (object borders and "difficult" regions, ignored by the loss).
    ``transform(image, label, rng)`` runs on every sample with ``rng = default_rng([seed, i])``:
    the same every time sample i is read, so use it for fixed preprocessing and give random
    augmentation to the DataLoader, whose generators change with the epoch. ``label_dir`` selects
    another label folder of the same layout (e.g. "SegmentationClassAug" for the SBD extra labels).
    All listed files are checked to exist up front, so a broken tree fails at construction.
    """

    class_names = VOC_CLASSES
    num_classes = len(VOC_CLASSES)

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        seed: int = 0,
        label_dir: str = "SegmentationClass",
    ) -> None:
        self.root, self.split, self.transform, self.seed = Path(root), split, transform, int(seed)
        self.image_dir, self.label_dir = self.root / "JPEGImages", self.root / label_dir
        self.ids = self._read_split()
        for folder in (self.image_dir, self.label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"VOCSegmentation: missing folder {folder}")
        for kind, folder, ext in (
            ("image", self.image_dir, ".jpg"),
            ("label", self.label_dir, ".png"),
        ):
            missing = [i for i in self.ids if not (folder / f"{i}{ext}").is_file()]
            if missing:
                raise FileNotFoundError(
                    f"VOCSegmentation: {len(missing)} {kind}(s) listed in split {split!r} are "
                    f"missing, e.g. {folder / (missing[0] + ext)}"
                )

    def _read_split(self) -> list[str]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOCSegmentation: root folder {self.root} does not exist")
        sets = self.root / "ImageSets" / "Segmentation"
        split_file = sets / f"{self.split}.txt"
        if not split_file.is_file():
            hint = ""
            if sets.is_dir():
                hint = f"; splits found: {sorted(p.stem for p in sets.glob('*.txt'))}"
            elif any((self.root / sub / "ImageSets").is_dir() for sub in ("VOC2012", "VOC2011")):
                hint = "; root looks like VOCdevkit: pass its VOC2012 (or VOC2011) folder"
            raise FileNotFoundError(f"VOCSegmentation: missing split file {split_file}{hint}")
        return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(index)
        if not -len(self.ids) <= i < len(self.ids):
            raise IndexError(f"VOCSegmentation index {index} out of range for {len(self.ids)}")
        i %= len(self.ids)
        name = self.ids[i]
        image = read_image(self.image_dir / f"{name}.jpg")
        label = read_label(self.label_dir / f"{name}.png")
        if image.shape[1:] != label.shape:
            raise ValueError(
                f"VOCSegmentation: {name}: image is {image.shape[1]}x{image.shape[2]} but its "
                f"label is {label.shape[0]}x{label.shape[1]}"
            )
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng([self.seed, i]))
        return image, label

    def __repr__(self) -> str:
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
