"""Procedural images with captions: shapes to evaluate, textures to stylize with. No downloads."""

from .procedural import (
    COLORS,
    HELD_OUT_PAIRS,
    HELD_OUT_TEXTURES,
    SHAPES,
    TEXTURES,
    ProceduralDataset,
    Scene,
    render_scene,
    sample_scene,
)

__all__ = ["COLORS", "HELD_OUT_PAIRS", "HELD_OUT_TEXTURES", "SHAPES", "TEXTURES", "ProceduralDataset", "Scene",
           "render_scene", "sample_scene"]
