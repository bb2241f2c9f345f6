"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on VGG16 (Long, Shelhamer, Darrell, CVPR 2015).

    image -> VGG16 trunk -> pool3 (1/8), pool4 (1/16), pool5 (1/32)
    pool5 -> fc6 (7x7 conv) -> fc7 (1x1) -> score_fr (1x1, C classes)          coarse scores, 1/32
    FCN-32s: upscore x32                                                       -> crop -> H x W
    FCN-16s: upscore2 x2 + crop(score_pool4(pool4)) -> upscore16 x16           -> crop -> H x W
    FCN-8s:  upscore2 x2 + crop(score_pool4(pool4)) -> upscore_pool4 x2
             + crop(score_pool3(pool3)) -> upscore8 x8                         -> crop -> H x W

``geometry="paper"``: the reference network: conv1_1 padding 100 (so that any input, even 1x1,
survives the 1/32 reduction and the 7x7 fc6), fc6 without padding, transposed convs without padding,
and crops at offsets derived in ``geometry.py`` (19; 5, 27; 5, 9, 31).
``geometry="compact"``: the textbook network: padding 1, fc6 7x7 padding 3 (or 1x1), transposed
convs that exactly double / multiply (k4 s2 p1, k16 s8 p4, k32 s16 p8, k64 s32 p16); the input is
zero-padded to a multiple of 32 and the scores cropped back, so every crop offset is 0.

Each backward is written out, mirroring its forward: at a skip sum the gradient goes unchanged to
both branches; a crop's gradient is zero-padded back; pool4 and pool3 receive gradient from the
trunk above them and from their score layer, added in ``FCNBase.trunk_backward``.

The decoder is described once as data, ``decoder()`` (from UPSAMPLING and SKIPS): the crop
offsets, ``summary()`` and the PyTorch twin (``tinyfcn.torch_twin``) all read it. Each forward and
backward still spells it out, on purpose: the explicit pass is what a student reads next to the
paper. The parity tests against the twin fail if the spelled-out pass and the data disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn
from ..backend import get_array_module
from ..functional._checks import check_nchw
from . import geometry as geo
from .surgery import bilinear_kernel
from .vgg import VGGTrunk, check_model_args, scaled

GEOMETRIES = ("paper", "compact")


@dataclass(frozen=True)
class Fusion:
    """One decoder step: upsample the scores (``upsample``), then, except after the last step,
    add the cropped scores of a pool, ``score_<pool>(pool * scale)``, into ``fuse_<pool>``."""

    upsample: str  # "upscore2"
    skip: str | None  # "pool4"; None for the last step (crop to the image instead)
    scale: float = 1.0  # the pool's scale before scoring (the at-once model's 0.01, 0.0001)

    @property
    def score(self) -> str:
        return f"score_{self.skip}"

    @property
    def fuse(self) -> str:
        return f"fuse_{self.skip}"


class FCNBase(VGGTrunk):
    """Trunk, fc6/fc7/score_fr, initialisation and the input/output plumbing shared by all FCNs."""

    # the layers between pool5 and the coarse scores: the convolutionalized classifier
    HEAD = ("fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "score_fr")
    # (name, kernel, stride) of the transposed convs, image side last; set by each subclass
    UPSAMPLING: tuple[tuple[str, int, int], ...] = ()
    SKIPS: tuple[str, ...] = ()  # pools read by score layers: "pool4", "pool3"
    POOL4_SCALE = 1.0  # pool4 and pool3 are scaled by these before scoring (FCN8sAtOnce)
    POOL3_SCALE = 1.0

    def __init__(
        self,
        num_classes: int = 21,
        geometry: str = "paper",
        width: float = 1.0,
        fc_channels: int | None = None,
        in_channels: int = 3,
        fc6_kernel: int = 7,
        learnable_upsampling: bool = False,
        dropout: float = 0.5,
    ) -> None:
        check_model_args(num_classes, width, fc_channels)
        super().__init__()
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        if fc6_kernel not in (7, 1) or (geometry == "paper" and fc6_kernel != 7):
            raise ValueError(
                f"fc6_kernel must be 7 (or 1 with geometry='compact'), got {fc6_kernel}"
            )
        self.config = dict(
            num_classes=num_classes,
            geometry=geometry,
            width=width,
            fc_channels=fc_channels,
            in_channels=in_channels,
            fc6_kernel=fc6_kernel,
            learnable_upsampling=learnable_upsampling,
            dropout=dropout,
        )
        self.num_classes, self.geometry = num_classes, geometry
        paper = geometry == "paper"
        self._build_trunk(width, in_channels, first_padding=100 if paper else 1)
        fc = scaled(4096, width) if fc_channels is None else int(fc_channels)
        self.fc6 = nn.Conv2d(
            self.pool_channels["pool5"], fc, fc6_kernel, padding=0 if paper else fc6_kernel // 2
        )
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout(dropout)
        # He init now, before the layers that differ between 32s, 16s and 8s draw from the
        # generator: with the same seed, all three start from the same trunk and fc6/fc7.
        self.init_he()
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        for pool in self.SKIPS:
            setattr(self, f"score_{pool}", nn.Conv2d(self.pool_channels[pool], num_classes, 1))
        for name, k, s in self.UPSAMPLING:
            setattr(
                self,
                name,
                nn.ConvTranspose2d(
                    num_classes,
                    num_classes,
                    k,
                    stride=s,
                    padding=0 if paper else (k - s) // 2,
                    bias=False,
                ),
            )
        self._initialise(learnable_upsampling)
        self.crop_offsets = self._derive_crop_offsets()
        for blob, offset in self.crop_offsets.items():
            setattr(self, f"crop_{blob}", nn.Crop(offset))

    # --- initialisation (FCN section 4.3) ----------------------------------------------------

    def _initialise(self, learnable_upsampling: bool) -> None:
        """He init for trunk and fc6/fc7; score layers zero; bilinear, frozen upsampling;
        biases at twice the learning rate without weight decay (the reference solver's setup).
        (The He init of trunk and fc6/fc7 ran in ``__init__``, before the score layers existed.)"""
        for name, m in self.named_modules():
            if name.startswith("score_"):
                m.weight.data[...] = 0
                m.bias.data[...] = 0
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.data[...] = bilinear_kernel(m.in_channels, m.kernel_size[0])
                m.weight.lr_mult = 1.0 if learnable_upsampling else 0.0
            if getattr(m, "bias", None) is not None:
                m.bias.lr_mult, m.bias.decay_mult = 2.0, 0.0

    # --- geometry ----------------------------------------------------------------------------

    def _trunk_layers(self, up_to: str) -> list:
        names = [n for stage in self.stage_names for n in stage]
        return self.layers(names[: names.index(up_to) + 1])

    def decoder(self) -> tuple[Fusion, ...]:
        """The decoder as data, coarse to fine: what each ``forward`` below spells out."""
        skips = self.SKIPS + (None,) * (len(self.UPSAMPLING) - len(self.SKIPS))
        return tuple(
            Fusion(name, pool, 1.0 if pool is None else getattr(self, f"{pool.upper()}_SCALE"))
            for (name, _, _), pool in zip(self.UPSAMPLING, skips, strict=True)
        )

    def _derive_crop_offsets(self) -> dict[str, int]:
        """Crop offsets from coordinate maps: each skip's score map against the upsampled path,
        then the final upsampled scores against the image."""
        offsets = {}
        path = geo.path_map(self._trunk_layers("pool5") + self.layers(self.HEAD))
        for step in self.decoder():
            path = path.then(geo.layer_map(getattr(self, step.upsample)))
            if step.skip is not None:
                pool_path = geo.path_map(self._trunk_layers(step.skip))
                offsets[step.score] = geo.crop_offset(pool_path, path)
        offsets[self.UPSAMPLING[-1][0]] = geo.crop_offset(path, geo.CoordMap())
        return offsets

    # --- input and output plumbing -----------------------------------------------------------

    def _pad_input(self, x: Any) -> Any:
        """Compact geometry: zero-pad H, W up to a multiple of 32 (bottom/right)."""
        check_nchw(x, type(self).__name__, self.conv1_1.in_channels)
        if self.geometry == "paper":
            return x
        H, W = x.shape[2:]
        Hp, Wp = -(-H // 32) * 32, -(-W // 32) * 32
        if (Hp, Wp) == (H, W):
            return x
        padded = get_array_module(x).zeros(x.shape[:2] + (Hp, Wp), dtype=x.dtype)
        padded[:, :, :H, :W] = x
        return padded

    def _score_fr(self, pool5: Any) -> Any:
        return self._run(self.HEAD, pool5)

    def _score_fr_backward(self, d_score_fr: Any) -> Any:
        return self._run_backward(self.HEAD, d_score_fr)

    def _begin(self, x: Any) -> tuple:
        """Pad (compact), run the trunk and the head: (pool3, pool4, score_fr)."""
        object.__setattr__(self, "_input_hw", tuple(x.shape[2:]))
        pool3, pool4, pool5 = self.trunk_forward(self._pad_input(x))
        return pool3, pool4, self._score_fr(pool5)

    def _end(self, upscored: Any) -> Any:
        """Crop the final upsampled scores to the input size."""
        name = self.UPSAMPLING[-1][0]
        return getattr(self, f"crop_{name}")(upscored, self._input_hw)

    def _end_backward(self, dscores: Any) -> Any:
        return getattr(self, f"crop_{self.UPSAMPLING[-1][0]}").backward(dscores)

    def trunk_backward(self, d_pool5: Any, d_pool4: Any = None, d_pool3: Any = None) -> Any:
        """The image's gradient from the gradients reaching pool5 and, through the skips, pool4
        and pool3. pool4 is read twice in the forward pass (by conv5_1 and score_pool4), so its
        gradient is the sum of both; the same for pool3 (conv4_1 and score_pool3)."""
        d = self.stage_backward(5, d_pool5)
        if d_pool4 is not None:
            d = d + d_pool4
        d = self.stage_backward(4, d)
        if d_pool3 is not None:
            d = d + d_pool3
        for s in (3, 2, 1):
            d = self.stage_backward(s, d)
        return d

    def _input_grad(self, d_pool5: Any, d_pool4: Any = None, d_pool3: Any = None) -> Any:
        dx = self.trunk_backward(d_pool5, d_pool4, d_pool3)
        H, W = self._input_hw
        return dx if tuple(dx.shape[2:]) == (H, W) else dx[:, :, :H, :W].copy()

    def predict(self, x: Any) -> Any:
        """Label map (N, H, W): argmax over classes of the scores, in eval mode, without caches."""
        was_training = self.training
        self.eval()
        with nn.no_grad():
            scores = self.forward(x)
        self.train(was_training)
        return scores.argmax(axis=1)

    def summary(self, size: tuple[int, int] = (224, 224), show: bool = True) -> str:
        """A table of every layer for an input of ``size``: shapes, parameters, FLOPs, strides,
        receptive fields and crop offsets (computed from the size formulas, nothing is run)."""
        from .summary import format_summary

        table = format_summary(self, tuple(size))
        if show:
            print(table)
        return table

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _staged(cls, source: FCNBase):
    """A ``cls`` with ``source``'s configuration and every parameter the two share by name."""
    model = cls(**source.config)
    shared = {k: v for k, v in source.state_dict().items() if k in dict(model.named_parameters())}
    model.to(device=source.conv1_1.weight.device, dtype=source.conv1_1.weight.dtype)
    model.load_state_dict(shared, strict=False)
    return model


class FCN32s(FCNBase):
    """score_fr upsampled x32 in one step (k64 s32): the coarsest FCN."""

    UPSAMPLING = (("upscore", 64, 32),)

    def forward(self, x: Any) -> Any:
        """(N, 3, H, W) -> scores (N, num_classes, H, W)."""
        _, _, score_fr = self._begin(x)
        upscore = self.upscore(score_fr)
        return self._end(upscore)

    def backward(self, dscores: Any) -> Any:
        d_upscore = self._end_backward(dscores)
        d_score_fr = self.upscore.backward(d_upscore)
        return self._input_grad(self._score_fr_backward(d_score_fr))


class FCN16s(FCNBase):
    """score_fr x2, fused with the scores of pool4, then x16."""

    UPSAMPLING = (("upscore2", 4, 2), ("upscore16", 32, 16))
    SKIPS = ("pool4",)

    @classmethod
    def from_fcn32s(cls, model: FCN32s) -> FCN16s:
        """Staged training: start from a trained FCN-32s (score_pool4 starts at zero)."""
        return _staged(cls, model)

    def forward(self, x: Any) -> Any:
        _, pool4, score_fr = self._begin(x)
        upscore2 = self.upscore2(score_fr)  # 1/16
        score_pool4 = self.score_pool4(pool4)
        fuse_pool4 = upscore2 + self.crop_score_pool4(score_pool4, upscore2)
        upscore16 = self.upscore16(fuse_pool4)
        return self._end(upscore16)

    def backward(self, dscores: Any) -> Any:
        d_fuse_pool4 = self.upscore16.backward(self._end_backward(dscores))
        # the sum passes its gradient unchanged to both branches
        d_pool4 = self.score_pool4.backward(self.crop_score_pool4.backward(d_fuse_pool4))
        d_score_fr = self.upscore2.backward(d_fuse_pool4)
        return self._input_grad(self._score_fr_backward(d_score_fr), d_pool4)


class FCN8s(FCNBase):
    """score_fr x2 + pool4 scores, x2 + pool3 scores, then x8: the finest FCN."""

    UPSAMPLING = (("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8))
    SKIPS = ("pool4", "pool3")

    @classmethod
    def from_fcn16s(cls, model: FCN16s) -> FCN8s:
        """Staged training: start from a trained FCN-16s (score_pool3 starts at zero)."""
        return _staged(cls, model)

    def forward(self, x: Any) -> Any:
        pool3, pool4, score_fr = self._begin(x)
        upscore2 = self.upscore2(score_fr)  # 1/16
        score_pool4 = self.score_pool4(_scaled(pool4, self.POOL4_SCALE))
        fuse_pool4 = upscore2 + self.crop_score_pool4(score_pool4, upscore2)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)  # 1/8
        score_pool3 = self.score_pool3(_scaled(pool3, self.POOL3_SCALE))
        fuse_pool3 = upscore_pool4 + self.crop_score_pool3(score_pool3, upscore_pool4)
        upscore8 = self.upscore8(fuse_pool3)  # 1/1
        return self._end(upscore8)

    def backward(self, dscores: Any) -> Any:
        d_fuse_pool3 = self.upscore8.backward(self._end_backward(dscores))
        # fuse_pool3 = upscore_pool4 + crop(score_pool3): both branches get d_fuse_pool3
        d_score_pool3 = self.crop_score_pool3.backward(d_fuse_pool3)
        d_pool3 = _scaled(self.score_pool3.backward(d_score_pool3), self.POOL3_SCALE)
        d_fuse_pool4 = self.upscore_pool4.backward(d_fuse_pool3)
        # fuse_pool4 = upscore2 + crop(score_pool4): both branches get d_fuse_pool4
        d_score_pool4 = self.crop_score_pool4.backward(d_fuse_pool4)
        d_pool4 = _scaled(self.score_pool4.backward(d_score_pool4), self.POOL4_SCALE)
        d_score_fr = self.upscore2.backward(d_fuse_pool4)
        return self._input_grad(self._score_fr_backward(d_score_fr), d_pool4, d_pool3)


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained in one stage: pool4 scaled by 0.01 and pool3 by 0.0001 before scoring,
    so that the skips start small next to the 1/32 path (the reference "at-once" model)."""

    POOL4_SCALE = 0.01
    POOL3_SCALE = 0.0001


def _scaled(x: Any, scale: float) -> Any:
    """x * scale. Its own adjoint: the backward pass scales the gradient by the same number."""
    return x if scale == 1.0 else x * np.asarray(scale, dtype=x.dtype)
