"""Pipelines: text-to-image (and, later, streaming video)."""

from .text_to_image import PocketTextToImagePipeline, is_pipeline_folder

__all__ = ["PocketTextToImagePipeline", "is_pipeline_folder"]
