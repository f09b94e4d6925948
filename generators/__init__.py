"""Compact generators (text-to-image, text-to-video): attention blocks, models, pipelines, data, evaluation,
training. Nothing heavy is imported here."""
