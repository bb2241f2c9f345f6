"""Label maps as data: the PASCAL VOC palette and palette PNGs (pixel value = class id).

A VOC label PNG is a palette ('P' mode) image: each pixel stores its class id, 255 marks object
borders to ignore, and the palette only says how a viewer colours them. Read it as indices, never
as RGB. Shared by the VOC reader and ``tinyfcn.viz``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..backend import asnumpy

PathLike = str | os.PathLike


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, ``(n, 3)`` uint8.

    The bits of a class id are dealt out in turn to R, G and B, most significant colour bit
    first: bit 0 of the id goes to bit 7 of R, bit 1 to bit 7 of G, bit 2 to bit 7 of B, bit 3
    to bit 6 of R, and so on. Hence 1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0),
    15 = (192, 128, 128) (person) and 255 = (224, 224, 192) (the "ignore" border).
    """
    if n < 0:
        raise ValueError(f"voc_palette needs n >= 0 colours, got {n}")
    palette = np.zeros((n, 3), dtype=np.uint8)
    for class_id in range(n):
        c, r, g, b = class_id, 0, 0, 0
        for shift in range(7, -1, -1):  # 8 rounds of 3 bits: enough for ids below 2**24
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[class_id] = (r, g, b)
    return palette


def as_label(label: Any, name: str = "label") -> np.ndarray:
    """A host ``(H, W)`` int64 map of class ids in [0, 255], or a ValueError that says why."""
    label = asnumpy(label)
    if label.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) map of class ids, got shape {label.shape}")
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == bool):
        raise ValueError(
            f"{name} must hold integer class ids, got dtype {label.dtype}; "
            "for scores (N, C, H, W) take scores.argmax(1) first"
        )
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(
            f"{name} values must lie in [0, 255] (255 = ignore), got [{label.min()}, {label.max()}]"
        )
    return label.astype(np.int64)


def colorize(label: Any) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` uint8 RGB through the VOC palette (255 stays cream)."""
    return voc_palette()[as_label(label)]


def save_label_png(label: Any, path: PathLike) -> Path:
    """Write ``(H, W)`` class ids as a palette ('P' mode) PNG, as VOC stores SegmentationClass.

    Each pixel stores its class id; the VOC palette only says how viewers colour it, so
    ``load_label_png`` returns exactly the ids written, 255 included.
    """
    label = as_label(label).astype(np.uint8)
    height, width = label.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(label).tobytes())
    image.putpalette(voc_palette().ravel().tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def load_label_png(path: PathLike) -> np.ndarray:
    """Read a palette ('P') or grayscale ('L') label PNG -> ``(H, W)`` uint8 class ids."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(
                f"{path} is a {image.mode!r} image; a label PNG stores one class id per pixel in "
                "'P' (palette, as VOC SegmentationClass) or 'L' mode. A colour-rendered mask has "
                "lost its ids: save labels with save_label_png"
            )
        return np.array(image, dtype=np.uint8)


# ----------------------------------------------------------------------------------- images
