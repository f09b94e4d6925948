"""Pipelines: text-to-image and streaming text-to-video, and the few-step students' scheduler (imported here so
that diffusers, which loads only modules already imported, can load the folders that name it)."""

from .schedulers import FewStepFlowMatchScheduler
from .text_to_image import PocketTextToImagePipeline, is_pipeline_folder
from .text_to_video import PocketTextToVideoPipeline

__all__ = ["FewStepFlowMatchScheduler", "PocketTextToImagePipeline", "PocketTextToVideoPipeline", "is_pipeline_folder"]
