import json
import stat

import pytest

from stylize3d.atomic import (
    atomic_open,
    atomic_output_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_output_dir_appears_complete(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "a.txt").write_text("hello")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("world")
        assert not out.exists()  # nothing visible until the block succeeds
    assert (out / "a.txt").read_text() == "hello"
    assert (out / "sub" / "b.txt").read_text() == "world"
    assert _siblings(out) == ["out"]


def test_output_dir_removed_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output_dir(out) as tmp:
            (tmp / "partial.txt").write_text("half")
            raise RuntimeError("boom")
    assert not out.exists()
    assert _siblings(out) == []


def test_output_dir_refuses_nonempty_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    ran = False
    with pytest.raises(ValueError, match="not empty"):
        with atomic_output_dir(out):
            ran = True
    assert not ran  # refused before any work
    assert (out / "old.txt").read_text() == "old"
    assert _siblings(out) == ["out"]


def test_output_dir_overwrite_replaces(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # old output intact while the new one is written
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert _siblings(out) == ["out"]


def test_output_dir_overwrite_failure_keeps_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyError):
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyError("x")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert _siblings(out) == ["out"]


def test_output_dir_empty_existing_and_file_destination(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with atomic_output_dir(out) as tmp:
        (tmp / "x").write_text("1")
    assert (out / "x").read_text() == "1"
    afile = tmp_path / "afile"
    afile.write_text("i am a file")
    with pytest.raises(ValueError, match="not a folder"):
        with atomic_output_dir(afile, overwrite=True):
            pass
    assert afile.read_text() == "i am a file"


def test_write_bytes_text_json(tmp_path):
    p = atomic_write_bytes(tmp_path / "deep" / "dir" / "f.bin", b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    t = atomic_write_text(tmp_path / "f.txt", "héllo")
    assert t.read_text(encoding="utf-8") == "héllo"
    j = atomic_write_json(tmp_path / "f.json", {"a": [1, 2.5], "b": "ü"})
    assert json.loads(j.read_text(encoding="utf-8")) == {"a": [1, 2.5], "b": "ü"}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["deep", "f.json", "f.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"v": 1})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"v": float("nan")})  # NaN is not JSON
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"partial")
            raise RuntimeError("crash mid-write")
    assert json.loads(p.read_text()) == {"v": 1}
    assert _siblings(p) == ["f.json"]
