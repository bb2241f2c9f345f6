"""``tinyfcn import-weights W.pth --from pytorch-fcn``: a checkpoint that predicts and evaluates as
the port does. The oracle is the torch twin run on the port's own preprocessing of the image
(BGR, 0-255, mean BGR subtracted, float64 then float32, as pytorch-fcn's dataset transform)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tests.cli_run import run_tinyfcn
from tinyfcn.models import FCN8s, FCN16s

torch = pytest.importorskip("torch")

MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434])  # the port's, typed in again


def port_input(rgb_uint8: np.ndarray):
    """pytorch-fcn's ``VOCClassSegBase.transform`` of an image read with PIL, as a batch."""
    img = rgb_uint8[:, :, ::-1].astype(np.float64) - MEAN_BGR
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None]


def random_fcn(cls, seed, classes=21):
    """A small paper-geometry FCN with every weight random, score layers included."""
    model = cls(num_classes=classes, geometry="paper", width=1 / 16, fc_channels=16)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    return model.eval()


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    """(folder, torch twin, .pth path): the port's FCN-8s weights as its users have them."""
    from tinyfcn.torch_twin import build_torch_twin

    folder = tmp_path_factory.mktemp("port")
    twin = build_torch_twin(random_fcn(FCN8s, seed=0)).eval()
    torch.save(twin.state_dict(), folder / "fcn8s_from_caffe.pth")
    return folder, twin, folder / "fcn8s_from_caffe.pth"


def _port_labels(twin, rgb):
    with torch.no_grad():
        return twin(port_input(rgb)).argmax(1)[0].numpy()


def test_predict_with_imported_weights_equals_the_port(port, tmp_path):
    folder, twin, pth = port
    ckpt = tmp_path / "fcn8s.npz"
    result = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", ckpt)
    assert result.returncode == 0, result.stderr
    assert "FCN8s" in result.stdout and "BGR" in result.stdout
    rgb = np.random.default_rng(1).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    result = run_tinyfcn("predict", ckpt, tmp_path / "photo.png", "--out", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    ours = np.array(Image.open(tmp_path / "p" / "photo_labels.png"))
    theirs = _port_labels(twin, rgb)
    assert len(np.unique(theirs)) > 5  # a map worth comparing, not one class
    np.testing.assert_array_equal(ours, theirs)
    # the comparison has power: tinyfcn's own normalisation (RGB, 0-1) gives another map
    rgb01 = torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0).float()[None]
    with torch.no_grad():
        assert (twin((rgb01 - 0.5) / 0.25).argmax(1)[0].numpy() == theirs).mean() < 0.9


def test_the_checkpoint_metadata_keeps_the_port_preprocessing(port, tmp_path):
    from tinyfcn import io

    _, _, pth = port
    out = tmp_path / "w.npz"
    assert run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", out).returncode == 0
    meta = io.load_checkpoint(out)["meta"]
    assert meta["model_class"] == "FCN8s" and meta["config"]["geometry"] == "paper"
    assert meta["preprocess"]["channel_order"] == "BGR" and meta["preprocess"]["scale"] == 255
    np.testing.assert_array_equal(meta["preprocess"]["mean"], MEAN_BGR)
    assert meta["class_names"][15] == "person"


def test_evaluate_with_imported_weights_equals_the_port(port, tmp_path):
    """A two-image VOC tree; the metrics printed are those of the port's predictions."""
    from tinyfcn.data import save_label_png
    from tinyfcn.metrics import ConfusionMatrix

    _, twin, pth = port
    voc = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(2)
    cm = ConfusionMatrix(21)
    for name, (h, w) in {"2007_000032": (33, 40), "2007_000039": (41, 29)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg", quality=90
        )
        label = rng.integers(0, 21, (h, w)).astype(np.uint8)
        label[:, 0] = 255
        save_label_png(label, voc / "SegmentationClass" / f"{name}.png")
        with Image.open(voc / "JPEGImages" / f"{name}.jpg") as jpg:  # decoded as the port does
            cm.update(label[None].astype(np.int64), _port_labels(twin, np.array(jpg))[None])
    # the port reports VOC2011's seg11valid; only that split file exists here
    (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("2007_000032\n2007_000039\n")
    ckpt = tmp_path / "fcn8s.npz"
    assert (
        run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", ckpt).returncode == 0
    )
    no_data = run_tinyfcn("evaluate", ckpt)
    assert no_data.returncode == 1 and "--data" in no_data.stderr
    assert len(no_data.stderr.strip().splitlines()) == 1
    result = run_tinyfcn("evaluate", ckpt, "--data", voc, "--split", "seg11valid")
    assert result.returncode == 0, result.stderr
    expected = cm.compute()
    for label, key in (("mean IU", "mean_iou"), ("pixel accuracy", "pixel_accuracy")):
        printed = float(re.search(rf"{label}\s+([0-9.]+)", result.stdout).group(1))
        assert printed == pytest.approx(expected[key], abs=6e-5), label


def test_compact_geometry_is_refused_with_the_reason(port, tmp_path):
    _, _, pth = port
    out = tmp_path / "w.npz"
    result = run_tinyfcn(
        "import-weights", pth, "--from", "pytorch-fcn", "--geometry", "compact", "--out", out
    )
    assert result.returncode == 1 and not out.exists()
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "paper geometry" in err[0] and "compact" in err[0], result.stderr
    assert pth.name in err[0]


def test_the_refusal_is_true_compact_geometry_computes_another_function(port):
    """Why compact is refused: the same weights, the same input, other labels."""
    from tinyfcn.experiment import preprocess
    from tinyfcn.pytorch_fcn import PREPROCESS

    _, twin, pth = port
    compact = FCN8s(num_classes=21, geometry="compact", width=1 / 16, fc_channels=16)
    compact.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    rgb = np.random.default_rng(3).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    image = rgb.transpose(2, 0, 1).astype(np.float32) / 255
    ours = compact.predict(preprocess(image, {"preprocess": PREPROCESS}))[0]
    assert (ours == _port_labels(twin, rgb)).mean() < 0.5


def test_which_network_is_read_from_the_keys_and_the_name(tmp_path):
    from tinyfcn import io
    from tinyfcn.torch_twin import build_torch_twin

    fcn16s = tmp_path / "fcn16s.pth"
    torch.save(build_torch_twin(random_fcn(FCN16s, seed=4, classes=7)).state_dict(), fcn16s)
    atonce = tmp_path / "fcn8s-atonce_from_caffe.pth"
    torch.save(build_torch_twin(random_fcn(FCN8s, seed=5)).state_dict(), atonce)
    for pth, cls, classes in ((fcn16s, "FCN16s", 7), (atonce, "FCN8sAtOnce", 21)):
        out = tmp_path / f"{pth.stem}.npz"
        result = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", out)
        assert result.returncode == 0, result.stderr
        meta = io.load_checkpoint(out)["meta"]
        assert meta["model_class"] == cls and meta["config"]["num_classes"] == classes
    wrong = run_tinyfcn(
        "import-weights",
        fcn16s,
        "--from",
        "pytorch-fcn",
        "--model",
        "fcn8s",
        "--out",
        tmp_path / "x",
    )
    assert wrong.returncode == 1 and "fcn16s" in wrong.stderr and "--model fcn8s" in wrong.stderr


def test_it_will_not_overwrite_a_file_without_force(port, tmp_path):
    _, _, pth = port
    out = tmp_path / "keep.npz"
    out.write_bytes(b"precious")
    result = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", out)
    assert result.returncode == 1 and "--force" in result.stderr and out.read_bytes() == b"precious"
    forced = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", out, "--force")
    assert forced.returncode == 0 and out.read_bytes() != b"precious"


def test_a_file_that_is_not_the_port_is_one_line_naming_it(tmp_path):
    pth = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, pth)
    result = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", tmp_path / "o")
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1 and "vgg16.pth" in err[0], result.stderr
    assert "torchvision VGG16" in err[0]


def test_import_weights_help():
    result = run_tinyfcn("import-weights", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for phrase in ("pytorch-fcn", "BGR", "104.00698793", "(default: paper)", "(default: None)"):
        assert phrase in text, phrase


def test_an_out_folder_that_does_not_exist_is_named(port, tmp_path):
    _, _, pth = port
    out = tmp_path / "no" / "such" / "w.npz"
    result = run_tinyfcn("import-weights", pth, "--from", "pytorch-fcn", "--out", out)
    assert result.returncode == 1 and f"the folder {out.parent} does not exist" in result.stderr


def test_a_checkpoint_with_the_port_preprocessing_in_compact_geometry_is_refused(tmp_path):
    """A hand-made checkpoint: the port's preprocessing, but a compact network."""
    from tinyfcn import io
    from tinyfcn.pytorch_fcn import PREPROCESS

    compact = FCN8s(num_classes=21, geometry="compact", width=1 / 16, fc_channels=16)
    io.save_checkpoint(tmp_path / "w.npz", compact, preprocess=PREPROCESS)
    photo = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    result = run_tinyfcn("predict", tmp_path / "w.npz", photo, "--out", tmp_path / "o")
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1, result.stderr
    assert "w.npz" in err[0] and "paper geometry" in err[0]


def test_the_port_trainer_checkpoint_imports_and_pickled_code_does_not(port, tmp_path):
    """pytorch-fcn's trainer saves checkpoint.pth.tar with the weights under model_state_dict
    and NumPy scalars beside them (best_mean_iu); those are data. A pickled call is refused."""
    from tinyfcn import io

    _, twin, _ = port
    tar = tmp_path / "checkpoint.pth.tar"
    torch.save(
        {
            "epoch": 3,
            "iteration": 1000,
            "arch": "FCN8s",
            "optim_state_dict": {},
            "model_state_dict": twin.state_dict(),
            "best_mean_iu": np.float64(0.61),
        },
        tar,
    )
    out = tmp_path / "w.npz"
    result = run_tinyfcn("import-weights", tar, "--from", "pytorch-fcn", "--out", out)
    assert result.returncode == 0, result.stderr
    weights = io.load_checkpoint(out)["model"]
    np.testing.assert_array_equal(weights["fc6.weight"], twin.fc6.weight.detach().numpy())

    class Call:
        def __reduce__(self):
            return (print, ("this ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"conv1_1.weight": Call()}, evil)
    result = run_tinyfcn("import-weights", evil, "--from", "pytorch-fcn", "--out", tmp_path / "e")
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1 and "evil.pth" in err[0], result.stderr
    assert "this ran" not in result.stdout and "\x1b[" not in err[0]
