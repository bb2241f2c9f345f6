"""VGG16 (Simonyan & Zisserman 2015): the backbone FCN is built on, and its classifier form.

Five stages of 3x3 convolutions (padding 1) + ReLU, each closed by a 2x2 max-pool (stride 2,
ceil_mode), so pool3, pool4, pool5 are 1/8, 1/16, 1/32 of the input::

    stage    layers                        channels (width 1)   output (224 input)
    1        conv1_1 conv1_2 pool1         64                   112
    2        conv2_1 conv2_2 pool2         128                  56
    3        conv3_1 conv3_2 conv3_3 pool3 256                  28   (1/8)
    4        conv4_1 conv4_2 conv4_3 pool4 512                  14   (1/16)
    5        conv5_1 conv5_2 conv5_3 pool5 512                  7    (1/32)

The classifier then flattens pool5 (512 x 7 x 7 = 25088) into dense fc6 (4096), fc7 (4096) and
fc8 (1000 classes); with ``fully_conv=True`` the same three layers are convolutions (7x7, 1x1,
1x1) and any input larger than 224 gives a spatial map of class scores (FCN's "heat map").
"""

from __future__ import annotations

from typing import Any

from .. import nn
from ..nn import init

VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convs, channels) per stage


def check_model_args(num_classes, width, fc_channels) -> None:
    """A positive integer of classes, a width > 0, fc_channels None or a positive integer."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not width > 0:  # also refuses NaN
        raise ValueError(f"width must be > 0 (1.0 is VGG16's 64 ... 512 channels), got {width!r}")
    if fc_channels is not None and (int(fc_channels) != fc_channels or fc_channels < 1):
        raise ValueError(f"fc_channels must be a positive integer, got {fc_channels!r}")


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


class VGGTrunk(nn.Module):
    """The five conv stages, as attributes named like the reference models (conv1_1 ... pool5).

    ``trunk_forward(x) -> (pool3, pool4, pool5)``; ``stage_backward(s, d)`` runs stage s in
    reverse (an FCN adds the skip gradients between stages: ``FCNBase.trunk_backward``).
    """

    def _build_trunk(self, width: float, in_channels: int, first_padding: int) -> None:
        self.width = width
        stage_names = []
        c_in = in_channels
        for s, (convs, channels) in enumerate(VGG16_STAGES, start=1):
            c_out = scaled(channels, width)
            names = []
            for i in range(1, convs + 1):
                pad = first_padding if (s, i) == (1, 1) else 1
                setattr(self, f"conv{s}_{i}", nn.Conv2d(c_in, c_out, 3, padding=pad))
                setattr(self, f"relu{s}_{i}", nn.ReLU())
                names += [f"conv{s}_{i}", f"relu{s}_{i}"]
                c_in = c_out
            setattr(self, f"pool{s}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
            stage_names.append(tuple(names + [f"pool{s}"]))
        self.stage_names = tuple(stage_names)
        self.pool_channels = {
            f"pool{s + 1}": scaled(c, width) for s, (_, c) in enumerate(VGG16_STAGES)
        }

    def layers(self, names) -> list:
        return [getattr(self, n) for n in names]

    def _run(self, names, x: Any) -> Any:
        for layer in self.layers(names):
            x = layer(x)
        return x

    def _run_backward(self, names, dy: Any) -> Any:
        for layer in reversed(self.layers(names)):
            dy = layer.backward(dy)
        return dy

    def trunk_forward(self, x: Any) -> tuple[Any, Any, Any]:
        """(pool3, pool4, pool5) of the image x (N, C, H, W)."""
        pool3 = self.stage_forward(3, self.stage_forward(2, self.stage_forward(1, x)))
        pool4 = self.stage_forward(4, pool3)
        pool5 = self.stage_forward(5, pool4)
        return pool3, pool4, pool5

    def stage_forward(self, s: int, x: Any) -> Any:
        """Stage s (1..5): its convs, ReLUs and the closing pool."""
        return self._run(self.stage_names[s - 1], x)

    def stage_backward(self, s: int, d: Any) -> Any:
        """The gradient at stage s's input from the gradient at its pool."""
        return self._run_backward(self.stage_names[s - 1], d)

    def init_he(self) -> None:
        """He initialisation of the trunk (and fc6/fc7 when present): N(0, 2/fan_in), zero bias."""
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and (
                name.startswith("conv") or name in ("fc6", "fc7")
            ):
                m.weight.data[...] = init.kaiming_normal_(m.weight.shape, m.weight.dtype)
                if m.bias is not None:
                    m.bias.data[...] = 0


class VGG16(VGGTrunk):
    """VGG16 with its classifier: dense fc6/fc7/fc8 (224x224 input), or convolutional ones.

    ``width`` scales every channel count (1.0: 64 ... 512, fc 4096). ``features(x)`` returns
    (pool3, pool4, pool5) for any input size.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        fc_channels: int | None = None,
        in_channels: int = 3,
        fully_conv: bool = False,
        dropout: float = 0.5,
    ) -> None:
        check_model_args(num_classes, width, fc_channels)
        super().__init__()
        self.config = dict(
            num_classes=num_classes,
            width=width,
            fc_channels=fc_channels,
            in_channels=in_channels,
            fully_conv=fully_conv,
            dropout=dropout,
        )
        self._build_trunk(width, in_channels, first_padding=1)
        c5 = self.pool_channels["pool5"]
        fc = scaled(4096, width) if fc_channels is None else int(fc_channels)
        self.fully_conv, self.num_classes, self.fc_channels = fully_conv, num_classes, fc
        if fully_conv:
            self.fc6 = nn.Conv2d(c5, fc, 7)
            self.fc7 = nn.Conv2d(fc, fc, 1)
            self.fc8 = nn.Conv2d(fc, num_classes, 1)
        else:
            self.flatten = nn.Flatten()
            self.fc6 = nn.Linear(c5 * 7 * 7, fc)
            self.fc7 = nn.Linear(fc, fc)
            self.fc8 = nn.Linear(fc, num_classes)
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout(dropout)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout(dropout)
        head = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
        self.head_names = tuple((["flatten"] if not fully_conv else []) + head)

    def features(self, x: Any) -> tuple[Any, Any, Any]:
        return self.trunk_forward(x)

    def forward(self, x: Any) -> Any:
        """(N, 3, 224, 224) -> (N, classes); fully convolutional: (N, 3, H, W) -> (N, classes,
        h, w) with h = ceil(H/32) - 6 (one score per 224x224 window, stride 32)."""
        if not self.fully_conv and tuple(x.shape[2:]) != (224, 224):
            raise ValueError(
                f"the dense VGG16 classifier needs 224x224 input (pool5 must be 7x7 to "
                f"flatten into fc6), got {tuple(x.shape)}; convolutionalize it "
                "(tinyfcn.models.surgery.convolutionalize) to run on any size"
            )
        return self._run(self.head_names, self.trunk_forward(x)[2])

    def backward(self, dy: Any) -> Any:
        d = self._run_backward(self.head_names, dy)
        for s in (5, 4, 3, 2, 1):
            d = self.stage_backward(s, d)
        return d
