"""The studio's plain parts, without a server: sessions, style plans, uploads, zips."""

import os
import time
import zipfile
from pathlib import Path

import pytest

from app.scene_inputs import BUILTIN, UPLOAD, resolve_scene
from app.sessions import SessionStore
from app.style_plan import format_plan, parse_plan, resolve_style
from stylize3d.archive import safe_extract_zip, zip_dir


def test_sessions_have_own_folders_and_are_swept(tmp_path):
    store = SessionStore(tmp_path, ttl_s=60)
    a, b = store.get("abc"), store.get("../../etc")
    assert a.folder != b.folder and a.folder.parent == tmp_path and b.folder.parent == tmp_path
    (a.folder / "x.png").write_bytes(b"1")
    old = time.time() - 3600
    a.last_seen = old
    os.utime(a.folder, (old, old))
    assert store.sweep() == 1 and not a.folder.exists() and b.folder.exists()
    store.drop(b.id)
    assert not b.folder.exists() and len(store) == 0


def test_style_plan_round_trip_and_errors(tmp_path):
    plan = parse_plan("cube = mosaic + dots\nsphere=waves; box = upload")
    assert plan == {"cube": ["mosaic", "dots"], "sphere": ["waves"], "box": ["upload"]}
    assert parse_plan(format_plan(plan)) == plan
    with pytest.raises(ValueError, match="object = style"):
        parse_plan("cube mosaic")
    builtin = {"mosaic": tmp_path / "mosaic.png"}
    assert resolve_style("mosaic", builtin, None, []) == builtin["mosaic"]
    for bad, match in (("/etc/passwd", "unknown style"), ("history:3", "history has 0"), ("upload", "no style image")):
        with pytest.raises(ValueError, match=match):
            resolve_style(bad, builtin, None, [])


def _zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_safe_extract_refuses_escapes_and_missing_transforms(tmp_path):
    with pytest.raises(ValueError, match="escapes"):
        safe_extract_zip(_zip(tmp_path / "slip.zip", {"transforms.json": "{}", "../evil.txt": "x"}), tmp_path / "a")
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(ValueError, match="no transforms.json"):
        safe_extract_zip(_zip(tmp_path / "empty.zip", {"readme.txt": "x"}), tmp_path / "b")
    with pytest.raises(ValueError, match="not a readable zip"):
        (tmp_path / "bad.zip").write_text("nope")
        safe_extract_zip(tmp_path / "bad.zip", tmp_path / "c")
    with pytest.raises(ValueError, match="over the limit"):
        safe_extract_zip(_zip(tmp_path / "big.zip", {"transforms.json": "0" * 5000}), tmp_path / "d", max_bytes=1000)
    root = safe_extract_zip(_zip(tmp_path / "ok.zip", {"scene/transforms.json": "{}", "scene/images/a.png": "x"}),
                            tmp_path / "e")
    assert root == tmp_path / "e" / "scene" and (root / "images" / "a.png").exists()


def test_zip_dir_round_trip(tmp_path):
    src = tmp_path / "out"
    (src / "renders").mkdir(parents=True)
    (src / "manifest.json").write_text("{}")
    (src / "renders" / "view_000.png").write_bytes(b"png")
    archive = zip_dir(src, tmp_path / "out.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["manifest.json", "renders/view_000.png"]


def test_uploads_land_in_the_session_folder(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = store.get("s1")
    assert resolve_scene(session, BUILTIN, None) == ("builtin", "built-in scene")
    ply = tmp_path / "mine.ply"
    ply.write_bytes(b"ply\n")
    spec, label = resolve_scene(session, UPLOAD, str(ply))
    assert label == "mine.ply" and spec.startswith(str(session.folder))
    with pytest.raises(ValueError, match="upload a 3DGS .ply"):
        resolve_scene(session, UPLOAD, str(tmp_path / "x.exe"))


def test_importing_the_studio_loads_nothing_heavy(tmp_path, monkeypatch):
    """Building the UI touches no scene and no backbone (both load on a visitor's request)."""
    monkeypatch.setenv("POCKET_STUDIO_CACHE", str(tmp_path / "cache"))
    import stylize3d.backbones as backbones
    from app.services import Services, StudioConfig
    from app.studio import build_demo

    calls = []
    monkeypatch.setattr(backbones, "load_backbone", lambda *a, **k: calls.append(a))
    demo = build_demo(Services(StudioConfig(output_root=tmp_path / "out")))
    assert demo is not None and not calls and not (tmp_path / "cache").exists()


def test_api_only_sessions_are_swept_with_their_cached_copies(tmp_path):
    """A session that only calls the API never closes a tab: the TTL alone must remove its folder, whatever the
    folder's mtime says, and the web server's cached copies of its files."""
    from gradio import processing_utils

    from app.gradio_cache import forget_cached_copies

    cache = tmp_path / "gradio-cache"
    store = SessionStore(tmp_path / "sessions", ttl_s=60, on_drop=lambda f: forget_cached_copies(f, cache))
    api = store.get("api-client")
    run = api.new_dir("run")
    run.mkdir()
    (run / "view_000.png").write_bytes(b"stylized pixels")
    copy = processing_utils.save_file_to_cache(run / "view_000.png", str(cache))  # what Gradio serves
    assert os.path.exists(copy)
    assert store.sweep(now=time.time() + 30) == 0 and api.folder.exists()  # still fresh
    assert store.sweep(now=time.time() + 120) == 1  # by the TTL alone (it never closed a tab)
    assert not api.folder.exists() and not os.path.exists(copy) and len(store) == 0


def test_session_disk_and_unpacked_size_are_capped(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = store.get("s1")
    bomb = _zip(tmp_path / "bomb.zip", {"transforms.json": "{}", "images/a.png": b"\0" * 200_000})
    assert bomb.stat().st_size < 5_000
    with pytest.raises(ValueError, match="unpacks to"):
        resolve_scene(session, UPLOAD, str(bomb), max_unpacked_bytes=100_000)
    assert not any(session.folder.rglob("*.png"))
    (session.folder / "old-run.bin").write_bytes(b"\0" * 50_000)
    ply = tmp_path / "mine.ply"
    ply.write_bytes(b"ply\n" + b"\0" * 20_000)
    with pytest.raises(ValueError, match="already holds"):
        resolve_scene(session, UPLOAD, str(ply), max_session_bytes=60_000)


def test_errors_shown_to_visitors_name_their_file_not_server_folders(tmp_path):
    import tempfile

    from app.public_errors import public_message as _public

    session = SessionStore(tmp_path / "sessions").get("s1")
    upload = Path(tempfile.gettempdir()) / "gradio" / "3f9a0c1d2e" / "style.png"
    msg = f"{upload} is not a readable image; {session.folder}/uploads/9f8e/scene.ply: bad header; style '/etc/x'"
    shown = _public(msg, session)
    assert str(tmp_path) not in shown and "3f9a0c1d2e" not in shown and tempfile.gettempdir() not in shown
    assert shown.startswith("style.png is not") and "scene.ply: bad header" in shown
    assert "'/etc/x'" in shown  # what the visitor typed is quoted back as typed
