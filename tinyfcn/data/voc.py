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

from .images import read_image
from .labels import load_label_png

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


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
        i = checked_index("VOCSegmentation", index, len(self.ids))
        name = self.ids[i]
        image = read_image(self.image_dir / f"{name}.jpg")
        label = load_label_png(self.label_dir / f"{name}.png").astype(np.int64)
        wrong = (label >= self.num_classes) & (label != 255)
        if wrong.any():
            raise ValueError(
                f"{self.label_dir / (name + '.png')}: label values "
                f"{sorted(set(label[wrong].tolist()))} in {int(wrong.sum())} pixels are not VOC "
                f"classes (0 to {self.num_classes - 1}, 255 = ignore)"
            )
        check_same_size("VOCSegmentation", self.image_dir / f"{name}.jpg", image, label)
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng([self.seed, i]))
        return image, label

    def __repr__(self) -> str:
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def checked_index(op: str, index: int, n: int) -> int:
    """``index`` in [-n, n) as a position in [0, n), or an IndexError that names the data set."""
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"{op} index {index} out of range for {n}")
    return i % n


def check_same_size(op: str, image_path, image: np.ndarray, label: np.ndarray) -> None:
    """An image (3, H, W) and its label (H, W) must cover the same pixels."""
    if image.shape[1:] != label.shape:
        raise ValueError(
            f"{op}: image {image_path} is {image.shape[1]}x{image.shape[2]} but its label is "
            f"{label.shape[0]}x{label.shape[1]}{_turned_hint(image, label)}"
        )


def _turned_hint(image: np.ndarray, label: np.ndarray) -> str:
    if image.shape[1:] != label.shape[::-1]:
        return ""
    return (
        " (turned by 90 degrees: the photo has an EXIF orientation, which tinyfcn applies, and the "
        "label was drawn on the stored pixels)"
    )
