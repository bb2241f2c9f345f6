"""The layers of FCN-8s one by one (compact geometry): what ``bench layers`` times."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.vgg import scaled

GROUPS = ("conv1-2", "conv3-5", "fc6", "1x1 convs", "pools", "upscore")
# fwd+bwd ratio (tinyfcn / torch) the kernels aim for; the table marks a group member above it
TARGETS = {"conv1-2": 1.8, "conv3-5": 1.3, "1x1 convs": 1.2}


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``kind`` is "conv", "pool" or "convT"; ``hw`` the input's spatial size."""

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    hw: int
    group: str

    def flops(self, batch: int) -> int:
        """2*MACs of the forward pass (0 for a pool): conv at its output, convT at its input."""
        k2 = self.kernel * self.kernel
        if self.kind == "conv":
            out = (self.hw + 2 * self.padding - self.kernel) // self.stride + 1
            return 2 * batch * self.cout * self.cin * k2 * out * out
        if self.kind == "convT":
            return 2 * batch * self.cin * self.cout * k2 * self.hw * self.hw
        return 0


def layer_specs(size: int = 224, width: float = 1.0) -> list[LayerSpec]:
    """FCN-8s in compact geometry (3x3 convs padded by 1, ceil-mode 2x2 pools) at ``size`` input,
    every channel count but the 21 classes scaled by ``width`` (as the models do).

    s[i] = ceil(s[i-1] / 2): the spatial size entering conv1..conv5 (s[0..4]) and fc6 (s[5]).
    """
    s = [size]
    for _ in range(5):
        s.append(-(-s[-1] // 2))
    specs = []

    def c(channels: int) -> int:
        return scaled(channels, width)

    stages = [(3, c(64), 2), (c(64), c(128), 2), (c(128), c(256), 3), (c(256), c(512), 3)]
    stages.append((c(512), c(512), 3))
    for block, (cin, cout, depth) in enumerate(stages, start=1):
        group = "conv1-2" if block <= 2 else "conv3-5"
        for i in range(1, depth + 1):
            c_in = cin if i == 1 else cout
            specs.append(
                LayerSpec(f"conv{block}_{i}", "conv", c_in, cout, 3, 1, 1, s[block - 1], group)
            )
        specs.append(LayerSpec(f"pool{block}", "pool", cout, cout, 2, 2, 0, s[block - 1], "pools"))
    return specs + [
        LayerSpec("fc6", "conv", c(512), c(4096), 7, 1, 3, s[5], "fc6"),
        LayerSpec("fc7", "conv", c(4096), c(4096), 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_fr", "conv", c(4096), 21, 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_pool4", "conv", c(512), 21, 1, 1, 0, s[4], "1x1 convs"),
        LayerSpec("score_pool3", "conv", c(256), 21, 1, 1, 0, s[3], "1x1 convs"),
        LayerSpec("upscore2", "convT", 21, 21, 4, 2, 1, s[5], "upscore"),
        LayerSpec("upscore_pool4", "convT", 21, 21, 4, 2, 1, s[4], "upscore"),
        LayerSpec("upscore8", "convT", 21, 21, 16, 8, 4, s[3], "upscore"),
    ]
