"""Imports flow one way (app -> stylize3d, generators); the engines never import gradio or each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_engines_are_independent_of_the_ui_and_of_each_other():
    assert not {"gradio", "app", "generators"} & _imports("stylize3d")
    assert not {"gradio", "app", "stylize3d"} & _imports("generators")


def test_console_script_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'pocket-studio = "app.cli:main"' in text


def test_app_holds_no_model_code():
    """The UI calls the engines; tensors and networks stay in stylize3d / generators."""
    assert not {"torch", "torchvision", "diffusers"} & _imports("app")
