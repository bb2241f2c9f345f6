"""``model.summary((H, W))``: a table of every layer of an FCN, computed from the size formulas.

For each layer: output shape, parameters, FLOPs (2 x multiply-adds), the effective stride (how
many image pixels one step on this map spans: 1/32 at pool5), the receptive field of the trunk,
and the crop offsets, so a student can watch 500x500 become 16x16 and grow back. Nothing is run:
shapes come from the same formulas the layers use, so the table is instant even at full width.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .. import nn
from . import geometry as geo


@dataclass
class Row:
    name: str
    kind: str
    shape: tuple[int, int, int]  # (C, H, W)
    params: int = 0
    flops: int = 0
    scale: Fraction = Fraction(1)  # coordinate-map scale: 1/stride
    rf: int | None = None
    note: str = ""


def _flops(layer, in_shape, out_shape) -> int:
    if isinstance(layer, nn.Conv2d):
        k = layer.kernel_size[0] * layer.kernel_size[1]
        return 2 * in_shape[0] * out_shape[0] * k * out_shape[1] * out_shape[2]
    if isinstance(layer, nn.ConvTranspose2d):  # every input pixel stamps a k x k kernel
        k = layer.kernel_size[0] * layer.kernel_size[1]
        return 2 * in_shape[0] * out_shape[0] * k * in_shape[1] * in_shape[2]
    return 0


def summary_rows(model, size: tuple[int, int], check_crops: bool = False) -> list[Row]:
    """One Row per layer of ``model`` (an FCNBase) for an input of ``size`` = (H, W).

    ``check_crops``: raise where a crop window runs off its map (the forward pass would); off,
    the rows trace the sizes regardless, e.g. to show why such a network fails.
    """
    H, W = size
    if model.geometry == "compact":
        H, W = -(-H // 32) * 32, -(-W // 32) * 32
    rows = [
        Row(
            "input",
            "image",
            (model.conv1_1.in_channels, H, W),
            note="" if (H, W) == tuple(size) else f"zero-padded from {size[0]}x{size[1]}",
        )
    ]
    shape, path, done, blobs = rows[0].shape, geo.CoordMap(), [], {}

    def apply(name: str, shape, path, note="", in_trunk=True):
        layer = getattr(model, name)
        out = (
            getattr(layer, "out_channels", shape[0]),
            geo.layer_output_size(layer, shape[1], 0),
            geo.layer_output_size(layer, shape[2], 1),
        )
        path = path.then(geo.layer_map(layer))
        done.append(layer)
        rf = geo.receptive_field(done)[1] if in_trunk else None
        params = sum(p.size for p in layer.parameters())
        rows.append(
            Row(
                name,
                type(layer).__name__,
                out,
                params,
                _flops(layer, shape, out),
                path.scale,
                rf,
                note,
            )
        )
        return out, path

    for stage in model.stage_names:
        for name in stage:
            if not name.startswith("relu"):
                shape, path = apply(name, shape, path)
            if name.startswith("pool"):
                blobs[name] = (shape, path)
    for name in model.HEAD:
        if not name.startswith(("relu", "drop")):
            shape, path = apply(name, shape, path)
    for step in model.decoder():
        shape, path = apply(step.upsample, shape, path, in_trunk=False)
        if step.skip is not None:
            pool_shape, pool_path = blobs[step.skip]
            offset = model.crop_offsets[step.score]
            score_shape, _ = apply(
                step.score,
                pool_shape,
                pool_path,
                in_trunk=False,
                note=f"cropped at {offset} to {shape[1]}x{shape[2]}, added",
            )
            if check_crops:
                _check_crop(step.score, score_shape[1:], offset, shape[1:], size)
            rows.append(Row(step.fuse, "sum", shape, scale=path.scale))
    offset = model.crop_offsets[model.UPSAMPLING[-1][0]]
    if check_crops:
        _check_crop(model.UPSAMPLING[-1][0], shape[1:], offset, tuple(size), size)
    rows.append(
        Row("scores", "Crop", (shape[0],) + tuple(size), scale=path.scale, note=f"offset {offset}")
    )
    return rows


def _check_crop(name: str, have, offset: int, need, size) -> None:
    """The error the forward pass would raise: a crop window that runs off its map."""
    if any(offset + n > h for h, n in zip(have, need, strict=True)):
        raise ValueError(
            f"summary at {size[0]}x{size[1]}: {name} is {have[0]}x{have[1]}, too small for a "
            f"{need[0]}x{need[1]} crop at offset {offset} (the forward pass would fail here too; "
            "the paper geometry needs ceil_mode pooling)"
        )


def _stride(scale: Fraction) -> str:
    return "1" if scale == 1 else f"1/{1 / scale}" if scale < 1 else str(scale)


def format_summary(model, size: tuple[int, int]) -> str:
    rows = summary_rows(model, size, check_crops=True)
    lines = [
        f"{type(model).__name__} ({model.geometry} geometry, width {model.width}) on a "
        f"{size[0]}x{size[1]} input",
        f"{'layer':<14}{'type':<16}{'output (C, H, W)':<20}{'params':>12}{'GFLOPs':>9}"
        f"{'stride':>8}{'RF':>6}  note",
    ]
    for r in rows:
        rf = "" if r.rf is None else str(r.rf)
        lines.append(
            f"{r.name:<14}{r.kind:<16}{str(r.shape):<20}{r.params:>12,}"
            f"{r.flops / 1e9:>9.3f}{_stride(r.scale):>8}{rf:>6}  {r.note}"
        )
    total_p, total_f = sum(r.params for r in rows), sum(r.flops for r in rows)
    lines.append(f"{'total':<50}{total_p:>12,}{total_f / 1e9:>9.2f}")
    lines.append("crop offsets: " + ", ".join(f"{k} {v}" for k, v in model.crop_offsets.items()))
    return "\n".join(lines)
