"""Gradio studio (UI only)."""
