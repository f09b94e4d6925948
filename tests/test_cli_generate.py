"""``pocket-studio generate`` as a user types it: images written atomically, what ran printed, bad input named
with exit 2 and nothing written."""

import os
import subprocess
import sys

import pytest
from PIL import Image

from app.cli import main

from .test_t2i_pipeline import text_encoder, tiny_pipeline  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, text_encoder):  # noqa: F811
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline(text_encoder).save_pretrained(folder, include_text_encoder=False)
    return folder


def test_generate_writes_images_and_says_what_ran(model_dir, tmp_path, capsys):
    out = tmp_path / "img.png"
    assert main(["generate", "--prompt", "a pattern of red and yellow stripes", "--steps", "3", "--seed", "7",
                 "--model", str(model_dir), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "3 steps" in line and "seed 7" in line and "SnapGenUNet" in line and " s" in line
    assert Image.open(out).size == (16, 16)
    assert main(["generate", "--prompt", "x", "--steps", "2", "--n", "2", "--model", str(model_dir),
                 "--out", str(tmp_path / "many.png")]) == 0
    assert sorted(p.name for p in tmp_path.glob("many-*.png")) == ["many-0.png", "many-1.png"]


@pytest.mark.parametrize("args,message", [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "   "], "prompt is empty"),
    (["--prompt", "x" * 3000], "characters"),
    (["--prompt", "x", "--steps", "0"], "steps must be"),
    (["--prompt", "x", "--steps", "100000"], "steps must be"),
    (["--prompt", "x", "--guidance", "nan"], "finite number"),
    (["--prompt", "x", "--guidance", "-1"], "guidance must be"),
    (["--prompt", "x", "--n", "1000"], "number of images"),
    (["--prompt", "x", "--width-mult", "0.5"], "runs at"),
    (["--prompt", "x", "--seed", "-4"], "seed must be"),
])
def test_bad_requests_exit_2_naming_the_problem(model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "o.png"
    assert main(["generate", *args, "--model", str(model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_model_folders_and_outputs(model_dir, tmp_path, capsys):
    (tmp_path / "notapipe").mkdir()
    assert main(["generate", "--prompt", "x", "--model", str(tmp_path / "notapipe"), "--out", str(tmp_path / "a.png")]) == 2
    assert "not a diffusers pipeline folder" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--model", str(model_dir), "--out", str(tmp_path / "a.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["generate", "--prompt", "x", "--model", str(model_dir), "--out", str(blocker / "a.png")]) == 2
    assert not list(tmp_path.glob("**/*.png"))


def test_non_utf8_prompt_from_a_real_shell(model_dir, tmp_path):
    """Bytes that are not UTF-8 arrive as surrogates in sys.argv: named, exit 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"app.cli", b"generate", b"--prompt", b"caf\xe9",
                           b"--model", os.fsencode(model_dir), b"--out", os.fsencode(tmp_path / "x.png")],
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 2 and b"not valid UTF-8" in proc.stderr, proc.stderr[-500:]
