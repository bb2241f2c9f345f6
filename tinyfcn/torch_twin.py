"""A PyTorch twin of any tinyfcn FCN: the same graph in torch.nn, for parity tests and benchmarks.

The twin is built from the tinyfcn model's own layer hyperparameters (kernels, strides, paddings,
crop offsets, skip scales) and takes its weights through ``state_dict``, whose keys are the same in
both. torch is imported only when a twin is built: the library never needs it.
"""

from __future__ import annotations

from typing import Any

from .backend import asnumpy


def build_torch_twin(model: Any, device: str = "cpu", dtype: Any = None):
    """A ``torch.nn.Module`` computing ``model``'s forward, with a copy of its weights."""
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn as tnn
    except ImportError as error:  # pragma: no cover - torch is a test/bench extra
        raise ImportError("build_torch_twin needs PyTorch: pip install 'tinyfcn[test]'") from error

    from .nn import Conv2d as OurConv
    from .nn import ConvTranspose2d as OurUp

    class TorchFCN(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, layer in model.named_modules():
                if isinstance(layer, OurConv):
                    setattr(
                        self,
                        name,
                        tnn.Conv2d(
                            layer.in_channels,
                            layer.out_channels,
                            layer.kernel_size,
                            layer.stride,
                            layer.padding,
                            layer.dilation,
                            bias=layer.bias is not None,
                        ),
                    )
                elif isinstance(layer, OurUp):
                    setattr(
                        self,
                        name,
                        tnn.ConvTranspose2d(
                            layer.in_channels,
                            layer.out_channels,
                            layer.kernel_size,
                            layer.stride,
                            layer.padding,
                            layer.output_padding,
                            bias=layer.bias is not None,
                            dilation=layer.dilation,
                        ),
                    )
            self.p = model.drop6.p

        def forward(self, x):
            H, W = x.shape[2:]
            if model.geometry == "compact":
                x = F.pad(x, (0, -W % 32, 0, -H % 32))
            h, pools = x, {}
            for stage in model.stage_names:
                for name in stage:
                    if name.startswith("conv"):
                        h = F.relu(getattr(self, name)(h))
                    elif name.startswith("pool"):
                        h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                        pools[name] = h
            h = F.dropout(F.relu(self.fc6(pools["pool5"])), self.p, self.training)
            h = F.dropout(F.relu(self.fc7(h)), self.p, self.training)
            score = self.score_fr(h)
            *fusions, last = model.decoder()
            for step in fusions:
                score = getattr(self, step.upsample)(score)
                pool = pools[step.skip] * step.scale if step.scale != 1 else pools[step.skip]
                skip = getattr(self, step.score)(pool)
                o = model.crop_offsets[step.score]
                score = score + skip[:, :, o : o + score.shape[2], o : o + score.shape[3]]
            o = model.crop_offsets[last.upsample]
            return getattr(self, last.upsample)(score)[:, :, o : o + H, o : o + W]

    twin = TorchFCN()
    first = model.conv1_1.weight.data
    dtype = dtype or {"float64": torch.float64}.get(str(first.dtype), torch.float32)
    twin = twin.to(device=device, dtype=dtype)  # before loading: no rounding through float32
    state = {k: torch.from_numpy(asnumpy(v).copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin.train(model.training)
