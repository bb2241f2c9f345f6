"""ShapesDataset: a synthetic segmentation data set of discs, squares, triangles and thin rings.

Image ``i`` is drawn from ``np.random.default_rng([seed, i])`` when it is asked for, so the data set
needs no files, any index can be read in any order, and the same ``(seed, i)`` always gives the same
arrays. Rings are annuli 2-4 px wide: a coarse (1/32) score map cannot draw them, which is what the
skip connections of FCN-16s and FCN-8s are for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHAPES_CLASSES = ("background", "disc", "square", "triangle", "ring")
DISC, SQUARE, TRIANGLE, RING = 1, 2, 3, 4


def disc_mask(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of the object centre (dy, dx are offsets)."""
    return dy * dy + dx * dx <= radius * radius


def ring_mask(dy: np.ndarray, dx: np.ndarray, radius: float, width: float) -> np.ndarray:
    """An annulus: ``radius - width < distance <= radius``."""
    d2 = dy * dy + dx * dx
    return (d2 <= radius * radius) & (d2 > (radius - width) ** 2)


def square_mask(dy: np.ndarray, dx: np.ndarray, half: float, angle: float) -> np.ndarray:
    """A square of side ``2 * half`` rotated by ``angle``: both rotated coordinates within half."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, c * dy - s * dx
    return np.maximum(np.abs(u), np.abs(v)) <= half


def triangle_mask(dy: np.ndarray, dx: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Inside the triangle with ``vertices`` (3, 2) of (y, x) offsets: inside all three edges.

    The edge function ``cross(b - a, p - a)`` has the sign of the triangle's orientation for every
    point p inside; multiplying by that sign makes the test work for either vertex order.
    """
    (ay, ax), (by, bx), (cy, cx) = vertices
    orientation = np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
    inside = np.ones(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for (py, px), (qy, qx) in (((ay, ax), (by, bx)), ((by, bx), (cy, cx)), ((cy, cx), (ay, ax))):
        inside &= orientation * ((qx - px) * (dy - py) - (qy - py) * (dx - px)) >= 0
    return inside


# the typical colour of each object class with class_colours=True (index = class)
CLASS_HUES = np.array(
    [[0.5, 0.5, 0.5], [0.85, 0.2, 0.2], [0.2, 0.8, 0.25], [0.25, 0.35, 0.9], [0.95, 0.85, 0.2]],
    dtype=np.float32,
)


class ShapesDataset:
    """``ds[i] -> (image float32 (3, H, W) in [0, 1], label int64 (H, W) in 0..4)``.

    Each image holds ``min_objects..max_objects`` objects of random class, size (``object_scale``:
    the extent as a fraction of ``min(H, W)``), position and colour, drawn in order so later objects
    occlude earlier ones; the label is the class of the visible object at each pixel. Colours are
    drawn independently of the class (only shape tells classes apart) but kept at least
    ``min_contrast`` (RGB distance) away from the background under the object. With
    ``class_colours=True`` each class draws its colour around its own hue (discs reddish, squares
    greenish, triangles bluish, rings yellowish, +-0.2 per channel), as real classes have typical
    colours (sky, grass): colour then says roughly *what*, and the network's work is *where*, the
    boundaries and thin rings that FCN's skips are about. Backgrounds keep all hues, so colour
    alone is not enough. Backgrounds are
    smooth two-colour gradients, sometimes with soft stripes and blobs (still labelled background),
    and Gaussian noise of standard deviation ``noise`` covers the whole image.

    ``seed`` is an int or a tuple of ints; image i comes from ``default_rng([*seed, i])``.
    ``cache=True`` keeps generated samples in memory (each access returns fresh copies).
    """

    class_names = SHAPES_CLASSES
    num_classes = len(SHAPES_CLASSES)

    def __init__(
        self,
        num_images: int,
        size: int | tuple[int, int] = 96,
        seed: int | Sequence[int] = 0,
        min_objects: int = 1,
        max_objects: int = 4,
        noise: float = 0.08,
        object_scale: tuple[float, float] = (0.12, 0.45),
        ring_width: tuple[float, float] = (2.0, 4.0),
        min_contrast: float = 0.3,
        class_colours: bool = False,
        cache: bool = False,
    ) -> None:
        H, W = (size, size) if isinstance(size, (int, np.integer)) else size
        if num_images < 0 or min(H, W) < 8:
            raise ValueError(
                f"ShapesDataset: need num_images >= 0 and an image size of at least 8x8, got "
                f"num_images={num_images}, size={size!r}"
            )
        if not 0 <= min_objects <= max_objects:
            raise ValueError(
                f"ShapesDataset: need 0 <= min_objects <= max_objects, got {min_objects}, "
                f"{max_objects}"
            )
        if not 0 < object_scale[0] <= object_scale[1] or not 0 < ring_width[0] <= ring_width[1]:
            raise ValueError(
                f"ShapesDataset: object_scale and ring_width must be increasing positive ranges, "
                f"got {object_scale} and {ring_width}"
            )
        self.num_images, self.size = int(num_images), (int(H), int(W))
        self.seed = (int(seed),) if isinstance(seed, (int, np.integer)) else tuple(map(int, seed))
        self.min_objects, self.max_objects = int(min_objects), int(max_objects)
        self.noise, self.min_contrast = float(noise), float(min_contrast)
        self.class_colours = bool(class_colours)
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.ring_width = (float(ring_width[0]), float(ring_width[1]))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self._ys = np.arange(H, dtype=np.float32)[:, None]  # pixel-centre coordinates,
        self._xs = np.arange(W, dtype=np.float32)[None, :]  # broadcast rather than full grids

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(index)
        if i < 0:
            i += self.num_images
        if not 0 <= i < self.num_images:
            raise IndexError(f"ShapesDataset index {index} out of range for {self.num_images}")
        if self._cache is not None and i in self._cache:
            image, label = self._cache[i]
            return image.copy(), label.copy()
        image, label = self.generate(np.random.default_rng([*self.seed, i]))
        if self._cache is not None:
            self._cache[i] = (image.copy(), label.copy())
        return image, label

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (image, label) pair drawn from ``rng``: background, objects in order, then noise."""
        H, W = self.size
        image = self._background(rng)
        label = np.zeros((H, W), dtype=np.int64)
        for _ in range(rng.integers(self.min_objects, self.max_objects + 1)):
            self._draw_object(rng, image, label)
        if self.noise > 0:
            image += self.noise * rng.standard_normal((3, H, W), dtype=np.float32)
        return np.clip(image, 0.0, 1.0, out=image), label

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A linear gradient between two colours, plus soft stripes and blobs half of the time."""
        H, W = self.size
        ys, xs = self._ys / H, self._xs / W
        c0, c1 = rng.uniform(0.05, 0.95, (2, 3, 1, 1)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xs + np.sin(angle) * ys
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = c0 + t[None] * (c1 - c0)
        if rng.random() < 0.5:  # stripes: a sinusoid of period 6-20 px in a random direction
            period, beta = rng.uniform(6, 20), rng.uniform(0, np.pi)
            along = np.cos(beta) * self._xs + np.sin(beta) * self._ys
            wave = np.sin(2 * np.pi / period * along + rng.uniform(0, 2 * np.pi))
            tint = rng.uniform(-0.12, 0.12, (3, 1, 1)).astype(np.float32)
            image = image + tint * wave[None]
        if rng.random() < 0.5:  # blobs: Gaussian bumps with soft edges, so no shape boundary
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0, H), rng.uniform(0, W)
                sigma = rng.uniform(0.08, 0.25) * min(H, W)
                bump = np.exp(-((self._ys - cy) ** 2 + (self._xs - cx) ** 2) / (2 * sigma**2))
                image = image + rng.uniform(-0.2, 0.2, (3, 1, 1)).astype(np.float32) * bump[None]
        return image.astype(np.float32)

    def _draw_object(self, rng: np.random.Generator, image: np.ndarray, label: np.ndarray) -> None:
        """Paint one object of random class into ``image`` and ``label`` (in place, in its box)."""
        H, W = self.size
        cls = int(rng.integers(1, self.num_classes))
        extent = rng.uniform(*self.object_scale) * min(H, W)  # diameter or side, in pixels
        cy, cx = rng.uniform(0.1, 0.9) * H, rng.uniform(0.1, 0.9) * W
        reach = extent * 0.75  # half the diagonal of a rotated square: covers every shape
        r0, r1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, H)
        c0, c1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, W)
        if r0 >= r1 or c0 >= c1:
            return
        dy, dx = self._ys[r0:r1] - cy, self._xs[:, c0:c1] - cx
        if cls == DISC:
            mask = disc_mask(dy, dx, extent / 2)
        elif cls == SQUARE:
            angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, np.pi / 2)
            mask = square_mask(dy, dx, extent / 2, angle)
        elif cls == TRIANGLE:  # circumradius extent / sqrt(3): side ~ extent, corners jittered
            angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3
            angles = angles + rng.uniform(-0.3, 0.3, 3)
            radius = extent / np.sqrt(3)
            mask = triangle_mask(dy, dx, radius * np.stack([np.sin(angles), np.cos(angles)], 1))
        else:
            width = rng.uniform(*self.ring_width)
            mask = ring_mask(dy, dx, max(extent / 2, width + 2), width)
        box = image[:, r0:r1, c0:c1]
        under = box[:, mask] if mask.any() else box.reshape(3, -1)
        colour = self._contrasting_colour(rng, under, cls)
        shade = rng.uniform(-0.08, 0.08) * (dx + dy) / max(extent / 2, 1.0)  # gentle lighting
        painted = colour[:, None, None] + shade[None]
        box[:, mask] = np.broadcast_to(painted, box.shape)[:, mask]
        label[r0:r1, c0:c1][mask] = cls

    def _contrasting_colour(self, rng: np.random.Generator, under: np.ndarray, cls: int):
        """A random RGB colour at least ``min_contrast`` from the mean colour ``under`` it:
        uniform, or around the class's hue with ``class_colours``.

        Eight candidates are drawn at once; the first far enough wins, else the farthest.
        """
        candidates = rng.uniform(0.0, 1.0, (8, 3)).astype(np.float32)
        if self.class_colours:
            hue = CLASS_HUES[cls]
            candidates = np.clip(hue + 0.4 * (candidates - 0.5), 0.0, 1.0).astype(np.float32)
        distance = np.linalg.norm(candidates - under.mean(axis=1), axis=1)
        ok = np.flatnonzero(distance >= self.min_contrast)
        return candidates[ok[0] if ok.size else int(np.argmax(distance))]

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(num_images={self.num_images}, size={self.size}, seed={self.seed}, "
            f"objects={self.min_objects}..{self.max_objects}, noise={self.noise})"
        )


def split_shapes(
    train: int = 1000, val: int = 200, size: int | tuple[int, int] = 96, seed: int = 0, **kwargs
) -> tuple[ShapesDataset, ShapesDataset]:
    """A (train, val) pair of ShapesDatasets with disjoint seeds ``(seed, 0)`` and ``(seed, 1)``.

    Train image i comes from ``default_rng([seed, 0, i])`` and val image j from
    ``default_rng([seed, 1, j])``: no val image is a train image. ``kwargs`` go to both.
    """
    return (
        ShapesDataset(train, size=size, seed=(seed, 0), **kwargs),
        ShapesDataset(val, size=size, seed=(seed, 1), **kwargs),
    )
