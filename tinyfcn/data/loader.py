"""DataLoader: reproducible, resumable mini-batches of (images (N, 3, H, W), labels (N, H, W)).

Everything random is a pure function of ``(seed, epoch, sample)``: epoch e visits the samples in
the order ``default_rng([seed, e]).permutation(n)`` and sample i is transformed with
``default_rng([seed, e, i])``. So batch b of epoch e is the same whether a run got there without
stopping or was resumed with ``loader.epoch(e, start_batch=b)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def collate(
    samples: list[tuple[np.ndarray, np.ndarray]], indices: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Stack N (image (3, H, W), label (H, W)) pairs: float32 (N, 3, H, W), int64 (N, H, W).

    ``indices`` are the samples' data set indices, named in the errors.
    """
    for i, (image, label) in zip(indices, samples, strict=True):
        if image.ndim != 3 or label.shape != image.shape[1:]:
            raise ValueError(
                f"DataLoader: sample {i} should be image (C, H, W) and label (H, W), got image "
                f"{tuple(image.shape)} and label {tuple(label.shape)}"
            )
    if len({image.shape for image, _ in samples}) > 1:
        sizes = ", ".join(
            f"sample {i}: {tuple(image.shape)}"
            for i, (image, _) in zip(indices, samples, strict=True)
        )
        raise ValueError(
            f"DataLoader cannot stack images of different sizes into one batch ({sizes}); give "
            f"the loader a transform that makes them equal, e.g. RandomCrop or CenterCrop"
        )
    images = np.stack([image for image, _ in samples]).astype(np.float32, copy=False)
    return images, np.stack([label for _, label in samples]).astype(np.int64, copy=False)


class DataLoader:
    """Batches of ``batch_size`` samples from ``dataset`` (anything with ``len`` and ``[i]``).

    ``loader.epoch(e, start_batch=0)`` yields the batches of epoch e from batch ``start_batch``
    on. ``for batch in loader`` runs one epoch and moves on: the first loop is epoch 0, the next
    epoch 1, and so on; ``loader.next_epoch`` is the epoch the next loop will run (set it to
    resume). ``len(loader)`` is the number of batches per epoch: ``ceil(n / batch_size)``, or
    ``floor(n / batch_size)`` with ``drop_last`` (which drops a smaller final batch).
    ``transform(image, label, rng)`` runs on each sample before stacking.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        transform: Callable | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if int(seed) < 0:
            raise ValueError(f"DataLoader: seed must be >= 0 (a NumPy SeedSequence), got {seed}")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), bool(shuffle)
        self.seed, self.drop_last, self.transform = int(seed), bool(drop_last), transform
        self.next_epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in visiting order: a permutation, or 0..n-1."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches ``start_batch, start_batch + 1, ...`` of ``epoch``."""
        if int(epoch) < 0 or not 0 <= int(start_batch) <= len(self):
            raise ValueError(
                f"DataLoader.epoch: need epoch >= 0 and 0 <= start_batch <= {len(self)} batches, "
                f"got epoch={epoch}, start_batch={start_batch}"
            )
        return self._batches(int(epoch), int(start_batch))

    def _batches(self, epoch: int, start_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order(epoch)
        for b in range(start_batch, len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            yield collate([self._sample(epoch, i) for i in indices], indices)

    def _sample(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.dataset[i]
        if self.transform is not None:
            image, label = self.transform(
                image, label, np.random.default_rng([self.seed, epoch, i])
            )
        return image, label

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
        return self.epoch(epoch)

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={len(self.dataset)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})"
        )
