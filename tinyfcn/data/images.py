"""Read a photo as the pixels a person sees: EXIF orientation applied, 16-bit scaled, not clipped.

``Image.convert("RGB")`` alone gets two common files wrong: it ignores the EXIF orientation tag (a
phone photo comes out on its side, and so does its label map), and it clips 16-bit grey images
(mode ``I;16``, values 0..65535) at 255, so almost any such image turns white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> float32 (3, H, W) RGB in [0, 1], upright.

    The EXIF orientation is applied (``ImageOps.exif_transpose``). 16-bit grey (``I;16``, or
    ``I`` as some readers report a 16-bit PNG) is divided by 65535, its full range, which is
    ``(v / 257) / 255``: the 8-bit value it stands for. Grey, palette, CMYK and alpha images
    become RGB (alpha dropped). Raises OSError naming the file when it cannot be read.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
                grey = np.asarray(im, dtype=np.float32) / 65535.0
                rgb = np.repeat(np.clip(grey, 0.0, 1.0)[None], 3, axis=0)
                return np.ascontiguousarray(rgb, dtype=np.float32)
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError as error:
        raise FileNotFoundError(f"cannot read image {path}: no such file") from error
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for a corrupt file
        raise OSError(f"cannot read image {path}: {error}") from error
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))
