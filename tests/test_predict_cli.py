"""``tinyfcn predict`` with the files users have: same names in two folders, a bad file among
good ones, 16-bit and EXIF-rotated images. Run as ``python -m tinyfcn`` in a subprocess."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.cli_run import run_tinyfcn, tiny_checkpoint
from tinyfcn.data.images import read_image
from tinyfcn.predict import output_names


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.npz")


def _photo(path, shape, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _labels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P", path
        return np.array(im)


def test_same_stem_in_two_folders_gives_two_output_sets(tmp_path, checkpoint):
    a = _photo(tmp_path / "in" / "a" / "x.png", (20, 30), 1)
    b = _photo(tmp_path / "in" / "b" / "x.png", (25, 30), 2)
    out = tmp_path / "out"
    result = run_tinyfcn("predict", checkpoint, a, b, "--out", out)
    assert result.returncode == 0, result.stderr
    assert _labels(out / "a" / "x_labels.png").shape == (20, 30)
    assert _labels(out / "b" / "x_labels.png").shape == (25, 30)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a/x_labels.png",
        "a/x_overlay.png",
        "b/x_labels.png",
        "b/x_overlay.png",
    ]
    # each output set is that image's own: predicting b alone writes the same bytes
    alone = tmp_path / "alone"
    assert run_tinyfcn("predict", checkpoint, b, "--out", alone).returncode == 0
    for suffix in ("_labels.png", "_overlay.png"):
        assert (alone / f"x{suffix}").read_bytes() == (out / "b" / f"x{suffix}").read_bytes()


def test_output_names():
    assert output_names(["d/x.png"]) == {"d/x.png": "x"}
    assert output_names(["d/x.png", "d/y.png"]) == {"d/x.png": "x", "d/y.png": "y"}
    assert output_names(["d/a/x.png", "d/b/x.png"]) == {"d/a/x.png": "a/x", "d/b/x.png": "b/x"}
    # same folder, same stem, other extension: the extension stays in the name
    assert output_names(["d/x.png", "d/x.jpg", "d/y.png"]) == {
        "d/x.png": "x.png",
        "d/x.jpg": "x.jpg",
        "d/y.png": "y",
    }
    assert output_names(["d/x.png", "d/../d/x.png"]) == {"d/x.png": "x"}  # named twice: once


def test_a_bad_file_skips_only_itself_and_every_failure_is_named(tmp_path, checkpoint):
    first = _photo(tmp_path / "first.png", (17, 23), 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG")
    last = _photo(tmp_path / "last.png", (19, 21), 4)
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    result = run_tinyfcn("predict", checkpoint, first, bad, last, missing, "--out", out)
    assert result.returncode == 1
    for name in ("first", "last"):  # before and after the bad file
        assert (out / f"{name}_labels.png").is_file() and (out / f"{name}_overlay.png").is_file()
    assert not list(out.glob("bad*")) and not list(out.glob("missing*"))
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in result.stderr, result.stderr
    assert err[0].startswith("tinyfcn predict: error: 2 of 4 images failed")
    assert str(bad) in err[0] and str(missing) in err[0]
    assert f"{bad}: FAILED" in result.stdout and f"{missing}: FAILED" in result.stdout


def test_sixteen_bit_grey_reads_as_the_eight_bit_image_it_stands_for(tmp_path, checkpoint):
    grey8 = np.random.default_rng(5).integers(0, 256, (21, 26), dtype=np.uint8)
    Image.fromarray(grey8).save(tmp_path / "eight.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # v * 257
    with Image.open(tmp_path / "sixteen.png") as im:
        assert im.mode.startswith("I"), im.mode
    image = read_image(tmp_path / "sixteen.png")
    assert image.shape == (3, 21, 26) and image.dtype == np.float32
    np.testing.assert_array_equal(image, read_image(tmp_path / "eight.png"))
    assert (image < 1).mean() > 0.99  # not clipped to white

    out = tmp_path / "out"
    result = run_tinyfcn(
        "predict", checkpoint, tmp_path / "eight.png", tmp_path / "sixteen.png", "--out", out
    )
    assert result.returncode == 0, result.stderr
    for suffix in ("_labels.png", "_overlay.png"):
        assert (out / f"sixteen{suffix}").read_bytes() == (out / f"eight{suffix}").read_bytes()


@pytest.mark.parametrize("orientation", [3, 6, 8], ids=["rot180", "rot90cw", "rot90ccw"])
def test_exif_orientation_is_applied_before_predicting(tmp_path, checkpoint, orientation):
    upright = np.random.default_rng(6).integers(0, 256, (18, 29, 3), dtype=np.uint8)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    # what a camera stores: the pixels turned the other way, and a tag that turns them back
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90}.get(
        orientation, Image.Transpose.ROTATE_270
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(upright).transpose(stored).save(tmp_path / "camera.png", exif=exif)
    np.testing.assert_array_equal(
        read_image(tmp_path / "camera.png"), read_image(tmp_path / "upright.png")
    )
    out = tmp_path / "out"
    result = run_tinyfcn(
        "predict", checkpoint, tmp_path / "upright.png", tmp_path / "camera.png", "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert _labels(out / "camera_labels.png").shape == (18, 29)
    for suffix in ("_labels.png", "_overlay.png"):
        assert (out / f"camera{suffix}").read_bytes() == (out / f"upright{suffix}").read_bytes()


def test_an_output_never_overwrites_an_input(tmp_path, checkpoint):
    x = _photo(tmp_path / "x.png", (16, 16), 7)
    victim = _photo(tmp_path / "x_labels.png", (16, 16), 8)
    before = victim.read_bytes()
    result = run_tinyfcn("predict", checkpoint, victim, x, "--out", tmp_path)
    assert result.returncode == 1 and "one of the inputs" in result.stderr
    assert victim.read_bytes() == before
    assert (tmp_path / "x_labels_labels.png").is_file()


def test_predict_help_says_the_naming_and_the_defaults():
    result = run_tinyfcn("predict", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for phrase in (
        "a/x_labels.png and b/x_labels.png",
        "(default: predictions)",
        "(default: cpu)",
        "EXIF orientation",
        "16-bit",
        "exit status is then 1",
    ):
        assert phrase in text, phrase


def test_out_that_is_a_file_and_a_pth_checkpoint_are_one_line_each(tmp_path, checkpoint):
    photo = _photo(tmp_path / "x.png", (16, 16), 9)
    result = run_tinyfcn("predict", checkpoint, photo, "--out", photo)
    assert result.returncode == 1 and f"--out {photo} is a file" in result.stderr
    pth = tmp_path / "fcn8s.pth"
    pth.write_bytes(b"PK not read")
    result = run_tinyfcn("predict", pth, photo, "--out", tmp_path / "o")
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1 and "import-weights" in err[0], result.stderr
