"""Network pieces WeakSTIL defines itself, and the allow-list of layer names a card may use.

* :class:`SmallCNN` is the CPU-friendly encoder of the ``small-cnn`` card: a 4x4 patchify stem
  (224 px -> 56x56) followed by four residual stages that halve the resolution, then global
  average pooling. About 1.2 M parameters and ~330 tiles/s on one CPU core at 224 px.
* :class:`CTransPathConvStem` is CTransPath's convolutional patch embedding for timm's Swin-T.

Cards name layers as ``"@name"`` strings (for example ``mlp_layer: "@SwiGLUPacked"``); only the
names in :data:`LAYER_NAMES` resolve, so a card (which may come from a user directory) can never
make WeakSTIL import arbitrary code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, s: int, p: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class _Stage(nn.Module):
    """Strided 3x3 conv to ``cout`` channels, then one residual 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Sequential(*_conv_bn(cin, cout, 3, 2, 1))
        self.body = nn.Sequential(*_conv_bn(cout, cout, 3, 1, 1, relu=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.body(x))


class SmallCNN(nn.Module):
    """Small residual CNN; ``forward`` returns the pooled ``(B, widths[-1])`` embedding."""

    def __init__(self, widths: tuple[int, ...] | list[int] = (32, 64, 128, 256), stem: int = 4):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError("small_cnn needs at least two widths")
        self.stem = nn.Sequential(*_conv_bn(3, widths[0], stem, stem, 0))
        self.stages = nn.Sequential(*[_Stage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # zero-init the last BN of each residual branch: every stage starts as its shortcut
        for stage in self.stages:
            nn.init.zeros_(stage.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


class CTransPathConvStem(nn.Module):
    """CTransPath's patch embedding for timm's Swin: two 3x3/2 conv-BN-ReLU, then 1x1 conv.

    Accepts (and ignores where irrelevant) the keyword arguments timm's ``SwinTransformer``
    passes to its ``embed_layer``; outputs NHWC as timm's Swin expects.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 4,
                 in_chans: int = 3, embed_dim: int = 96, norm_layer: Any = None, **_: Any):
        super().__init__()
        ps = patch_size if isinstance(patch_size, int) else patch_size[0]
        if ps != 4 or embed_dim % 8:
            raise ValueError("CTransPath's ConvStem needs patch size 4 and embed_dim divisible by 8")
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = size
        self.patch_size = (4, 4)
        self.grid_size = (size[0] // 4, size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        stem: list[nn.Module] = []
        cin, cout = in_chans, embed_dim // 8
        for _i in range(2):
            stem += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin, cout = cout, cout * 2
        stem.append(nn.Conv2d(cin, embed_dim, 1))
        self.proj = nn.Sequential(*stem)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def set_input_size(self, img_size: Any = None, **_: Any) -> None:  # timm API compatibility
        if img_size is not None:
            size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
            self.img_size = size
            self.grid_size = (size[0] // 4, size[1] // 4)
            self.num_patches = self.grid_size[0] * self.grid_size[1]

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return img_size[0] // 4, img_size[1] // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).permute(0, 2, 3, 1)  # NCHW -> NHWC
        return self.norm(x)


def _swiglu_packed() -> Any:
    from timm.layers import SwiGLUPacked

    return SwiGLUPacked


#: Layer names a card may reference as ``"@name"`` in ``model_kwargs``.
LAYER_NAMES: dict[str, Any] = {
    "SwiGLUPacked": _swiglu_packed,
    "SiLU": lambda: nn.SiLU,
    "GELU": lambda: nn.GELU,
    "ctranspath_convstem": lambda: CTransPathConvStem,
}

#: Architectures WeakSTIL builds itself (card ``source: weakstil``).
WEAKSTIL_MODELS: dict[str, Any] = {"small_cnn": SmallCNN}


def resolve_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Replace ``"@name"`` strings by the allow-listed layer classes."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:]
            if name not in LAYER_NAMES:
                raise KeyError(f"unknown layer {value!r} (known: {', '.join('@' + n for n in LAYER_NAMES)})")
            value = LAYER_NAMES[name]()
        out[key] = value
    return out
