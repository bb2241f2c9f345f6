"""``tinyfcn.data.read_image``: the pixels a person sees, for the image files people have."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tinyfcn.data import VOCSegmentation, read_image, save_label_png


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK"])
def test_other_modes_become_rgb_in_0_1(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    im.save(path)
    image = read_image(path)
    assert image.shape == (3, 9, 11) and image.dtype == np.float32
    with Image.open(path) as again:
        expected = np.asarray(again.convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_array_equal(image, expected)


def test_sixteen_bit_uses_the_full_range(tmp_path):
    ramp = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = read_image(tmp_path / "ramp.png")
    np.testing.assert_allclose(image[0, 0], [0, 1 / 255, 32768 / 65535, 1], rtol=1e-6)
    assert np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2])


def test_a_corrupt_file_is_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(OSError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_voc_says_when_exif_turned_a_photo_away_from_its_label(tmp_path):
    """A label drawn on the stored pixels of a photo tagged 'rotate 90': the shapes cross, and
    the error says why instead of only quoting two sizes."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp_path / sub).mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.zeros((12, 20, 3), np.uint8)
    Image.fromarray(stored).save(tmp_path / "JPEGImages" / "a.jpg", exif=exif)
    save_label_png(np.zeros((12, 20), np.uint8), tmp_path / "SegmentationClass" / "a.png")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    with pytest.raises(ValueError, match="20x12 but its label is 12x20.*EXIF orientation"):
        VOCSegmentation(tmp_path, "train")[0]


def _png16(path, pixels: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG written by hand (Pillow writes 16-bit grey only): 2 = RGB, 4 = grey+alpha."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    h, w = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("color_type", [2, 4], ids=["rgb16", "grey-alpha16"])
def test_sixteen_bit_colour_and_grey_alpha_are_not_clipped_either(tmp_path, color_type):
    channels = 3 if color_type == 2 else 2
    pixels = np.full((3, 4, channels), 32768, np.uint16)
    pixels[0, 0, 0] = 65535
    _png16(tmp_path / "x.png", pixels, color_type)
    image = read_image(tmp_path / "x.png")
    assert image.shape == (3, 3, 4)
    np.testing.assert_allclose(image[:, 1:, :], 128 / 255)  # the high byte: 0x80
    assert image[0, 0, 0] == 1.0
