"""The layers of FCN-8s one by one (compact geometry): what ``bench layers`` times."""

from __future__ import annotations

from dataclasses import dataclass

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


def layer_specs(size: int = 224) -> list[LayerSpec]:
    """FCN-8s in compact geometry (3x3 convs padded by 1, ceil-mode 2x2 pools) at ``size`` input.

    s[i] = ceil(s[i-1] / 2): the spatial size entering conv1..conv5 (s[0..4]) and fc6 (s[5]).
    """
    s = [size]
    for _ in range(5):
        s.append(-(-s[-1] // 2))
    specs = []
    widths = [(3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]
    for block, (cin, width, depth) in enumerate(widths, start=1):
        group = "conv1-2" if block <= 2 else "conv3-5"
        for i in range(1, depth + 1):
            c = cin if i == 1 else width
            specs.append(
                LayerSpec(f"conv{block}_{i}", "conv", c, width, 3, 1, 1, s[block - 1], group)
            )
        specs.append(
            LayerSpec(f"pool{block}", "pool", width, width, 2, 2, 0, s[block - 1], "pools")
        )
    return specs + [
        LayerSpec("fc6", "conv", 512, 4096, 7, 1, 3, s[5], "fc6"),
        LayerSpec("fc7", "conv", 4096, 4096, 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_fr", "conv", 4096, 21, 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_pool4", "conv", 512, 21, 1, 1, 0, s[4], "1x1 convs"),
        LayerSpec("score_pool3", "conv", 256, 21, 1, 1, 0, s[3], "1x1 convs"),
        LayerSpec("upscore2", "convT", 21, 21, 4, 2, 1, s[5], "upscore"),
        LayerSpec("upscore_pool4", "convT", 21, 21, 4, 2, 1, s[4], "upscore"),
        LayerSpec("upscore8", "convT", 21, 21, 16, 8, 4, s[3], "upscore"),
    ]
