"""``pocket-studio video``: a clip streamed into an MP4, the MP4 left valid (or absent) when a stream stops
mid-way, and odd requests named."""

import imageio.v3 as iio
import numpy as np
import pytest

from app.cli import main
from app.video_file import StreamingMP4

from .test_t2i_pipeline import text_encoder  # noqa: F401 - fixture
from .test_t2v_pipeline import tiny_video_pipeline


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, text_encoder):  # noqa: F811
    folder = tmp_path_factory.mktemp("t2v")
    tiny_video_pipeline(text_encoder).save_pretrained(folder, include_text_encoder=False)
    return folder


def test_video_command_writes_the_frames_it_was_asked_for(video_dir, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["video", "--prompt", "a red circle moving left", "--frames", "5", "--model", str(video_dir),
                 "--out", str(out)]) == 0
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape == (5, 16, 16, 3)
    assert "5 frames 16x16, 4 steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--frames", "0"], "--frames must lie"), (["--prompt", "  "], "empty"), (["--out", "clip.gif"], ".mp4"),
    (["--steps", "0"], "steps must"), (["--guidance", "nan"], "finite"),
])
def test_odd_requests_are_named(video_dir, tmp_path, capsys, argv, match):
    base = {"--prompt": "a red circle moving left", "--frames": "4", "--model": str(video_dir),
            "--out": str(tmp_path / "clip.mp4")}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v if k != "--out" else str(tmp_path / v)
    assert main(["video", *[x for kv in base.items() for x in kv]]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "clip.mp4").exists()


def test_missing_default_model_is_named(tmp_path, capsys, monkeypatch):
    from generators.pipelines import loading

    monkeypatch.setattr(loading, "SHIPPED_VIDEO", tmp_path / "none")
    assert main(["video", "--prompt", "a red circle moving left", "--out", str(tmp_path / "c.mp4")]) == 2
    assert "no streaming video model is shipped" in capsys.readouterr().err


def test_a_stream_stopped_mid_way_leaves_what_was_made(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (2, 15, 17, 3), dtype=np.uint8)
    with pytest.raises(KeyboardInterrupt), StreamingMP4(tmp_path / "part.mp4") as mp4:
        mp4.append(frames)
        mp4.append(frames[0])
        raise KeyboardInterrupt
    assert iio.imread(tmp_path / "part.mp4", plugin="pyav").shape == (3, 16, 18, 3)  # odd sides padded
    with pytest.raises(RuntimeError), StreamingMP4(tmp_path / "none.mp4"):
        raise RuntimeError("stopped before the first chunk")
    assert list(tmp_path.iterdir()) == [tmp_path / "part.mp4"]  # no temp file left, no empty clip
