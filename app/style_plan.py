"""The "style per object" plan: a few readable lines (``cube = mosaic + dots``) the UI fills in as the visitor
clicks, which API callers can also write by hand. Style tokens: a built-in style name, ``upload`` (the image
uploaded with the request) or ``history:N`` (the N-th image of the session's history)."""

from __future__ import annotations

from pathlib import Path


def parse_plan(text: str) -> dict[str, list[str]]:
    plan: dict[str, list[str]] = {}
    for raw in (text or "").replace(";", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"style plan line {line!r}: write it as 'object = style' (e.g. 'cube = mosaic')")
        obj, styles = (part.strip() for part in line.split("=", 1))
        tokens = [t.strip() for t in styles.split("+") if t.strip()]
        if not obj or not tokens:
            raise ValueError(f"style plan line {line!r}: needs an object and at least one style")
        plan.setdefault(obj, []).extend(tokens)
    return plan


def format_plan(plan: dict[str, list[str]]) -> str:
    return "\n".join(f"{obj} = {' + '.join(styles)}" for obj, styles in plan.items())


def resolve_style(token: str, builtin: dict[str, Path], upload: str | None, history: list[str]) -> Path:
    """A style token -> an image path the studio owns (never a path the visitor typed)."""
    if token in builtin:
        return builtin[token]
    if token == "upload":
        if not upload:
            raise ValueError("the plan uses 'upload' but no style image was uploaded")
        return Path(upload)
    if token.startswith("history:"):
        idx = token.split(":", 1)[1]
        if not idx.isdigit() or not 0 <= int(idx) < len(history):
            raise ValueError(f"style {token!r}: the session history has {len(history)} images")
        return Path(history[int(idx)])
    raise ValueError(f"unknown style {token!r}; built-in styles: {', '.join(builtin)}, or 'upload', 'history:N'")
