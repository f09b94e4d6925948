"""Compact generators (text-to-image, text-to-video)."""
