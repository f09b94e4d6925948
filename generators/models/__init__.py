"""Denoisers: one family per module."""

from .s2dit import S2DiT
from .snapgen_dit import SnapGenDiT
from .snapgen_unet import SnapGenUNet
from .tiny_decoder import TinyVAEDecoder

FAMILIES = {"unet": SnapGenUNet, "dit": SnapGenDiT}
"""Family name (as training configs and checkpoints say it) -> class."""

__all__ = ["FAMILIES", "S2DiT", "SnapGenDiT", "SnapGenUNet", "TinyVAEDecoder"]
