"""Pipelines: text-to-image and streaming text-to-video."""

from .text_to_image import PocketTextToImagePipeline, is_pipeline_folder
from .text_to_video import PocketTextToVideoPipeline

__all__ = ["PocketTextToImagePipeline", "PocketTextToVideoPipeline", "is_pipeline_folder"]
