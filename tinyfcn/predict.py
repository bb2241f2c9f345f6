"""``tinyfcn predict`` over many files: one output set per input, and a bad file skips only itself.

Outputs are named after each input's path relative to the deepest folder holding all the inputs,
without its extension, so ``a/x.png b/x.png`` write ``OUT/a/x_labels.png`` and
``OUT/b/x_labels.png`` (one input, or inputs from one folder: ``OUT/x_labels.png``). Inputs that
differ only in their extension keep it (``x.jpg_labels.png``, ``x.png_labels.png``); a file named
twice is predicted once.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

SUFFIXES = ("_labels.png", "_overlay.png")


def output_names(paths: list[str]) -> dict[str, str]:
    """``{input path: output name}`` for the distinct inputs, in order (see the module docstring).

    ``output_names(["a/x.png", "b/x.png"]) == {"a/x.png": "a/x", "b/x.png": "b/x"}``.
    """
    first: dict[str, str] = {}  # absolute path -> the path as given, first spelling wins
    for path in paths:
        first.setdefault(os.path.abspath(path), path)
    try:
        root = os.path.commonpath([os.path.dirname(a) for a in first])
    except ValueError:  # different drives (Windows): keep each whole path
        root = ""
    relative = {
        a: os.path.relpath(a, root) if root else os.path.splitdrive(a)[1].lstrip("\\/")
        for a in first
    }
    stems = {a: os.path.splitext(r)[0] for a, r in relative.items()}
    taken = Counter(stems.values())
    return {given: (relative[a] if taken[stems[a]] > 1 else stems[a]) for a, given in first.items()}


def predict_files(
    model,
    meta: dict,
    paths: list[str],
    out: str | Path,
    device: str = "cpu",
    say: Callable[[str], None] = print,
) -> list[str]:
    """Predict each image of ``paths`` and write its label PNG and overlay under ``out``.

    A file that cannot be read or predicted is reported through ``say`` and skipped; the rest go
    on. Returns one line per failed input (``"<path>: <reason>"``), empty when all succeeded.
    """
    from PIL import Image

    from . import viz
    from .experiment import load_image, predict_image

    out = Path(out)
    names = output_names(paths)
    inputs = {os.path.abspath(p) for p in names}
    class_names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    failures = []
    for path, name in names.items():
        targets = [out / f"{name}{suffix}" for suffix in SUFFIXES]
        try:
            clash = [str(t) for t in targets if os.path.abspath(t) in inputs]
            if clash:
                raise ValueError(
                    f"its output {clash[0]} is one of the inputs; choose another --out"
                )
            image = load_image(path)
            label = predict_image(model, image, meta, device)
            blend = Image.fromarray(viz.overlay(image, label))
            targets[0].parent.mkdir(parents=True, exist_ok=True)
            viz.save_label_png(label, targets[0])
            blend.save(targets[1], format="PNG")
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the batch
            reason = " ".join(str(error).split()) or type(error).__name__
            if str(path) not in reason:
                reason = f"{path}: {reason}"
            failures.append(reason)
            say(f"{path}: FAILED ({reason})")
            continue
        found = ", ".join(class_names[c] for c in np.unique(label).tolist())
        say(f"{path}: {image.shape[1]}x{image.shape[2]} -> {targets[0]}, {targets[1]} ({found})")
    return failures
