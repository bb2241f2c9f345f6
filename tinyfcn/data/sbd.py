"""SBDSegmentation: the Semantic Boundaries Dataset (Hariharan et al. 2011), VOC's 20 classes on
11,355 images, which FCN and its widely used PyTorch port (wkentaro/pytorch-fcn) train on.

Layout under ``root`` (``benchmark_RELEASE/dataset``; ``benchmark_RELEASE`` itself is accepted)::

    train.txt, val.txt        one image id per line (8,498 and 2,857 ids)
    img/<id>.jpg              the RGB image
    cls/<id>.mat              a MATLAB struct GTcls; GTcls.Segmentation is the (H, W) class map

The labels are MATLAB files, so reading them needs SciPy (``pip install 'tinyfcn[sbd]'``). The
class map is read as the port reads it: ``loadmat(path)['GTcls'][0]['Segmentation'][0]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .images import read_image
from .voc import VOC_CLASSES, check_same_size, checked_index


def is_sbd_root(root: str | Path) -> bool:
    """True for a folder laid out as SBD's ``dataset`` (``img/`` and ``cls/``) or holding one."""
    root = Path(root)
    return any((r / "img").is_dir() and (r / "cls").is_dir() for r in (root, root / "dataset"))


def _loadmat():
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise ImportError(
            "SBD's labels are MATLAB .mat files and reading them needs SciPy, which is not "
            "installed: pip install 'tinyfcn[sbd]' (or pip install scipy)"
        ) from error
    return loadmat


def load_sbd_label(path: str | Path) -> np.ndarray:
    """``cls/<id>.mat`` -> int64 (H, W) class ids (0 background, 1..20 VOC classes, 255 ignore)."""
    loadmat = _loadmat()
    try:
        label = loadmat(str(path))["GTcls"][0]["Segmentation"][0]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"SBD label {path} does not exist") from error
    except (KeyError, IndexError, ValueError, TypeError, OSError) as error:
        raise ValueError(
            f"{path} is not an SBD class label (expected a struct GTcls with a field "
            f"Segmentation): {type(error).__name__}: {error}"
        ) from error
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(
            f"{path}: GTcls.Segmentation should be an (H, W) integer map, got "
            f"{label.dtype} {label.shape}"
        )
    return label.astype(np.int64)


class SBDSegmentation:
    """``ds[i] -> (image float32 (3, H, W) in [0, 1], label int64 (H, W))`` for one SBD split.

    Same interface as ``VOCSegmentation`` (class names, ``transform(image, label, rng)`` with
    ``rng = default_rng([seed, i])``); the split is ``train`` or ``val`` (any ``<split>.txt``
    in the root). All listed files are checked to exist up front.
    """

    class_names = VOC_CLASSES
    num_classes = len(VOC_CLASSES)

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"SBDSegmentation: root folder {root} does not exist")
        if not (root / "cls").is_dir() and (root / "dataset" / "cls").is_dir():
            root = root / "dataset"  # benchmark_RELEASE given: its data set lives in dataset/
        _loadmat()  # no SciPy: say so now, not at the first label
        self.root, self.split, self.transform, self.seed = root, split, transform, int(seed)
        self.image_dir, self.label_dir = root / "img", root / "cls"
        split_file = root / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in root.glob("*.txt"))
            raise FileNotFoundError(
                f"SBDSegmentation: missing split file {split_file}; splits found: {found}"
            )
        self.ids = [s.strip() for s in split_file.read_text().splitlines() if s.strip()]
        for kind, folder, ext in (
            ("image", self.image_dir, ".jpg"),
            ("label", self.label_dir, ".mat"),
        ):
            missing = [i for i in self.ids if not (folder / f"{i}{ext}").is_file()]
            if missing:
                raise FileNotFoundError(
                    f"SBDSegmentation: {len(missing)} {kind}(s) listed in {split_file} are "
                    f"missing, e.g. {folder / (missing[0] + ext)}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = checked_index("SBDSegmentation", index, len(self.ids))
        name = self.ids[i]
        image = read_image(self.image_dir / f"{name}.jpg")
        label = load_sbd_label(self.label_dir / f"{name}.mat")
        check_same_size("SBDSegmentation", self.image_dir / f"{name}.jpg", image, label)
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng([self.seed, i]))
        return image, label

    def __repr__(self) -> str:
        return f"SBDSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
