"""The studio's API (gradio_client) against hostile input: bad uploads, zip-slip, server paths, style paths.

Each refusal must carry a message that names the problem, and the server must keep serving afterwards.
"""

from __future__ import annotations

import json
import urllib.request
import zipfile
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from .studio_server import studio_server  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(240)

BUILTIN = "Built-in scene"
UPLOAD = "Upload (.ply or dataset .zip)"
RECONSTRUCT = "Reconstruct from a dataset .zip"
SIZE = 128


def _text_ply(path: Path) -> None:
    path.write_text("these are not the Gaussians you are looking for\n")


def _truncated_ply(path: Path) -> None:
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 1000\n"
    header += "".join(f"property float {p}\n" for p in "xyz") + "end_header\n"
    path.write_bytes(header.encode() + b"\x00\x01\x02")


def _zip_without_transforms(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/frame_00001.png", b"not really a png")


def _zip_slip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("transforms.json", json.dumps({"frames": []}))
        zf.writestr("../evil", b"escaped")


def _not_a_scene(path: Path) -> None:
    path.write_text("hello")


BAD_UPLOADS = [
    ("text.ply", _text_ply, "is not a PLY file"),
    ("corrupt.ply", _truncated_ply, "truncated PLY body"),
    ("dataset.zip", _zip_without_transforms, "holds no transforms.json"),
    ("slip.zip", _zip_slip, "member '../evil' escapes the archive's folder"),
    ("notes.txt", _not_a_scene, "Invalid file type"),  # refused by Gradio (file_types) before the handler
]


@pytest.fixture(scope="module")
def client(studio_server):  # noqa: F811 - fixture
    from gradio_client import Client

    return Client(studio_server.url, verbose=False)


def _load_builtin(client) -> str:
    status = client.predict(BUILTIN, None, SIZE, api_name="/load_scene")[5]
    assert status.startswith("Loaded **built-in scene**"), status
    return status


@pytest.mark.parametrize("name, write, message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_is_refused_with_a_clear_message(client, studio_server, tmp_path, name, write, message):  # noqa: F811
    from gradio_client import handle_file
    path = tmp_path / name
    write(path)
    with pytest.raises(AppError, match=message):
        client.predict(UPLOAD, handle_file(str(path)), SIZE, api_name="/load_scene")
    assert not list(studio_server.output_root.parent.rglob("evil")), "a zip member escaped its folder"
    _load_builtin(client)  # the server (and this session) still work


def _raw_call(url: str, api_name: str, data: list) -> str:
    """Call an endpoint over plain HTTP (no client-side upload of local paths); returns the SSE text."""
    base = f"{url}gradio_api/call/{api_name}"
    req = urllib.request.Request(base, json.dumps({"data": data}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        event_id = json.load(resp)["event_id"]
    with urllib.request.urlopen(f"{base}/{event_id}", timeout=60) as resp:
        return resp.read().decode()


def test_server_paths_are_not_accepted_as_uploads(studio_server, builtin_dir):  # noqa: F811
    """A FileData naming a file on the server (here: the built-in scene's own .ply) must not be loaded."""
    server_file = {"path": str(builtin_dir / "scene.ply"), "meta": {"_type": "gradio.FileData"}}
    reply = _raw_call(studio_server.url, "load_scene", [UPLOAD, server_file, SIZE])
    assert "event: error" in reply and "not uploaded by a user" in reply, reply[:500]
    assert "Loaded" not in reply


@pytest.mark.parametrize(
    "plan, message",
    [
        ("cube = /etc/passwd", "unknown style '/etc/passwd'"),
        ("cube = ../../etc/passwd", "unknown style '../../etc/passwd'"),
        ("cube = history:3", "the session history has 0 images"),
        ("cube = upload", "no style image was uploaded"),
    ],
)
def test_style_plan_cannot_name_server_files(client, plan, message):
    _load_builtin(client)  # the objects list only knows the scene's names once it is loaded (see below)
    with pytest.raises(AppError, match=message):
        client.predict(BUILTIN, None, ["cube"], "", plan, None, 5, 1.0, 0.001, SIZE, 0, 0, api_name="/stylize")
    _load_builtin(client)


def test_stylize_works_from_a_fresh_client(studio_server):  # noqa: F811
    from gradio_client import Client

    fresh = Client(studio_server.url, verbose=False)
    result = fresh.predict(
        BUILTIN, None, ["cube"], "", "cube = mosaic", None, 5, 1.0, 0.001, SIZE, 0, 0, api_name="/stylize"
    )
    assert [o["name"] for o in result[7]["objects"]] == ["cube"]


def test_reconstruct_from_an_uploaded_dataset(client, tmp_path):
    """'Reconstruct from a dataset .zip': train Gaussians on the upload, label them from its masks, show them."""
    from gradio_client import handle_file

    from stylize3d.builtin_scene import BuiltinSceneConfig, write_builtin_scene

    from .conftest import TINY

    data = tmp_path / "capture"
    write_builtin_scene(data, BuiltinSceneConfig(**TINY))
    (data / "scene.ply").unlink()  # a capture has images, poses and masks, not Gaussians
    archive = tmp_path / "capture.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(data.rglob("*")):
            zf.write(p, Path("capture") / p.relative_to(data))
    with pytest.raises(AppError, match="without Gaussians"):
        client.predict(UPLOAD, handle_file(str(archive)), 128, api_name="/load_scene")
    out = client.predict(RECONSTRUCT, handle_file(str(archive)), 128, 150, api_name="/reconstruct")
    status, objects = out[5], out[2]
    assert "Reconstructed **capture.zip**" in status and "held-out PSNR" in status, status
    assert {"cube", "sphere", "torus"} <= {c[0] if isinstance(c, (list, tuple)) else c for c in objects["choices"]}


@pytest.mark.parametrize(
    "plan, message",
    [
        ("cube mosaic", "write it as 'object = style'"),
        ("cube = mosaic\nsphere = waves", "names 'sphere', which is not selected"),
        ("cube = " + " + ".join(["mosaic"] * 9), "at most 8 per object"),
    ],
)
def test_a_malformed_plan_says_what_is_wrong(client, plan, message):
    """A hand-edited plan is never silently replaced by defaults: the call fails naming the problem."""
    _load_builtin(client)
    with pytest.raises(AppError, match=message):
        client.predict(BUILTIN, None, ["cube"], "", plan, None, 5, 1.0, 0.001, SIZE, 0, 0, api_name="/stylize")


def test_out_of_range_settings_are_refused_with_a_message(client):
    _load_builtin(client)
    for args, message in (((5, 1.0, 1e308, SIZE, 0), "content weight must be|greater than maximum"),
                          ((5, 1.0, 0.001, SIZE, 2**70), "seed must be|greater than maximum")):
        with pytest.raises(AppError, match=message):
            client.predict(BUILTIN, None, ["cube"], "", "cube = mosaic", None, *args, 0, api_name="/stylize")
