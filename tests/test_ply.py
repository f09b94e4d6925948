import numpy as np
import pytest
import torch

from stylize3d.gaussians import GaussianScene, num_sh_bases
from stylize3d.ply import read_ply, write_ply

STANDARD = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"], ["opacity", "scale_0", "scale_1",
            "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _scene(n: int, degree: int, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    k = num_sh_bases(degree) - 1
    scene = GaussianScene(
        means=torch.randn(n, 3, generator=g) * 3,
        scales=torch.randn(n, 3, generator=g) - 4,
        quats=torch.randn(n, 4, generator=g),
        opacities=torch.randn(n, generator=g),
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, k, 3, generator=g) * 0.1,
        labels=torch.randint(0, 3, (n,), generator=g),
        object_names={0: "background", 1: "red box", 2: "tórus 2", 5: ' odd "name"\nline 2 '},
    )
    scene.means[0, 0] = -0.0  # signed zero and a subnormal must survive bit for bit
    scene.opacities[1] = 1e-40
    return scene


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


def _ply_bytes(props: list[tuple[str, str]], rows: np.ndarray | None, n: int | None = None,
               fmt: str = "binary_little_endian", extra_header: str = "") -> bytes:
    """A hand-built PLY: props are (ply type, name); rows a structured array (or None for header only)."""
    n = len(rows) if n is None else n
    head = ["ply", f"format {fmt} 1.0", f"element vertex {n}"] + [f"property {t} {p}" for t, p in props]
    head = "\n".join(head) + "\n" + extra_header + "end_header\n"
    if rows is None:
        return head.encode()
    if fmt == "ascii":
        body = "".join(" ".join(repr(v.item()) for v in r) + "\n" for r in rows)
        return (head + body).encode()
    return head.encode() + rows.tobytes()


def _standard_rows(n: int, k: int, dtype: str = "<f4", seed: int = 0) -> tuple[list[tuple[str, str]], np.ndarray]:
    names = STANDARD[0] + [f"f_rest_{i}" for i in range(3 * k)] + STANDARD[1]
    rows = np.zeros(n, dtype=[(p, dtype) for p in names])
    rng = np.random.default_rng(seed)
    for p in names:
        rows[p] = rng.standard_normal(n)
    ply_type = {"<f4": "float", ">f4": "float", "<f8": "double"}[dtype]
    return [(ply_type, p) for p in names], rows


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_roundtrip_bitwise_with_labels(tmp_path, degree):
    scene = _scene(50, degree)
    path = write_ply(tmp_path / "s.ply", scene)
    back = read_ply(path)
    assert back.sh_degree == degree
    for name, t in scene.tensors().items():
        got = getattr(back, name)
        assert got.dtype == t.dtype and got.shape == t.shape, name
        assert torch.equal(_bits(got), _bits(t)), name
    assert back.object_names == scene.object_names
    assert back.labels.dtype == torch.long
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ply"]  # no temp file left behind


def test_layout_is_standard_3dgs(tmp_path):
    n, k = 4, 3  # degree 1
    shN = torch.zeros(n, k, 3)
    for kk in range(k):
        for c in range(3):
            shN[:, kk, c] = 100 * c + kk
    scene = _scene(n, 1)
    scene.shN = shN
    path = write_ply(tmp_path / "s.ply", scene)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    props = [ln.split()[-1].decode() for ln in header.splitlines() if ln.startswith(b"property")]
    expected = STANDARD[0] + [f"f_rest_{i}" for i in range(9)] + STANDARD[1] + ["label"]
    assert props == expected
    assert b"format binary_little_endian 1.0" in header and b'comment object 1 "red box"' in header
    assert b'comment object 2 "t\\u00f3rus 2"' in header  # PLY headers are ASCII
    assert b"property int label" in header
    rows = np.frombuffer(body, dtype=[(p, "<f4") for p in expected[:-1]] + [("label", "<i4")])
    for c in range(3):
        for kk in range(k):  # channel-major: f_rest index = c*K + k
            assert np.all(rows[f"f_rest_{c * k + kk}"] == 100 * c + kk)
    assert np.array_equal(rows["x"], scene.means[:, 0].numpy())
    assert np.array_equal(rows["label"], scene.labels.numpy())


def test_reads_reference_style_file_without_labels(tmp_path):
    """A file as the 3DGS reference / nerfstudio export writes it (plyfile-compatible layout, no label)."""
    props, rows = _standard_rows(6, 15)  # degree 3
    path = tmp_path / "ref.ply"
    path.write_bytes(_ply_bytes(props, rows))
    s = read_ply(path)
    assert s.sh_degree == 3 and s.num_gaussians == 6
    assert torch.equal(s.means, torch.from_numpy(np.stack([rows["x"], rows["y"], rows["z"]], 1)))
    assert torch.equal(s.shN[:, 4, 2], torch.from_numpy(rows["f_rest_34"].copy()))  # c=2, k=4 -> 2*15+4
    assert torch.equal(s.quats[:, 3], torch.from_numpy(rows["rot_3"].copy()))
    assert torch.equal(s.labels, torch.zeros(6, dtype=torch.long))
    assert s.object_names == {0: "background"}


def test_plyfile_reads_our_output(tmp_path):
    import plyfile
    scene = _scene(5, 2)
    el = plyfile.PlyData.read(str(write_ply(tmp_path / "s.ply", scene)))["vertex"]
    assert np.array_equal(el["opacity"], scene.opacities.numpy())
    assert np.array_equal(el["f_rest_8"], scene.shN[:, 0, 1].numpy())  # c=1, k=0 -> 1*8+0
    assert np.array_equal(el["label"], scene.labels.numpy())


def test_ascii_big_endian_double_and_extra_properties(tmp_path):
    props, rows = _standard_rows(3, 0)
    ascii_path = tmp_path / "a.ply"
    ascii_path.write_bytes(_ply_bytes(props, rows, fmt="ascii"))
    assert torch.equal(read_ply(ascii_path).means[:, 1], torch.from_numpy(rows["y"].copy()))

    be_props, be_rows = _standard_rows(3, 0, dtype=">f4")
    be = tmp_path / "be.ply"
    be.write_bytes(_ply_bytes(be_props, be_rows, fmt="binary_big_endian"))
    assert torch.equal(read_ply(be).scales[:, 2], torch.from_numpy(be_rows["scale_2"].astype(np.float32)))

    d_props, d_rows = _standard_rows(3, 3, dtype="<f8")
    extra = np.zeros(3, dtype=d_rows.dtype.descr + [("red", "u1"), ("label", "<i2")])
    for p in d_rows.dtype.names:
        extra[p] = d_rows[p]
    extra["red"] = [1, 2, 3]
    extra["label"] = [0, 7, 4]
    mixed = tmp_path / "mixed.ply"
    names = "comment object 4 hand written name\n"  # unquoted names (edited by hand) are read as-is
    mixed.write_bytes(_ply_bytes(d_props + [("uchar", "red"), ("short", "label")], extra, extra_header=names))
    s = read_ply(mixed)
    assert s.sh_degree == 1
    assert torch.equal(s.opacities, torch.from_numpy(d_rows["opacity"].astype(np.float32)))
    assert s.labels.tolist() == [0, 7, 4]
    assert s.object_names == {0: "background", 4: "hand written name", 7: "object 7"}


def _expect_error(tmp_path, data: bytes, pattern: str) -> None:
    path = tmp_path / "bad.ply"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=pattern) as err:
        read_ply(path)
    assert "bad.ply" in str(err.value)


def test_bad_magic_and_format(tmp_path):
    _expect_error(tmp_path, b"hello world\n", "not a PLY file")
    _expect_error(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PLY file")
    props, rows = _standard_rows(2, 0)
    bad_fmt = _ply_bytes(props, rows).replace(b"binary_little_endian", b"binary_middle_endian")
    _expect_error(tmp_path, bad_fmt, "unsupported PLY format")
    _expect_error(tmp_path, b"ply\nformat ascii 1.0\nelement vertex 1\n", "no end_header")
    _expect_error(tmp_path, _ply_bytes([("float128", "x")], None, n=1), "unsupported PLY property")


def test_missing_properties_listed(tmp_path):
    props, rows = _standard_rows(2, 0)
    keep = [p for p in props if p[1] not in ("opacity", "rot_3")]
    sub = np.zeros(2, dtype=[(p, "<f4") for _, p in keep])
    _expect_error(tmp_path, _ply_bytes(keep, sub), "missing vertex properties: opacity, rot_3")
    _expect_error(tmp_path, b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex' element")


def test_truncated_body(tmp_path):
    props, rows = _standard_rows(10, 15)  # 62 floats per vertex
    data = _ply_bytes(props, rows)
    _expect_error(tmp_path, data[:-5], r"truncated PLY body: 10 vertices need 2,480 bytes, the file has 2,475")
    _expect_error(tmp_path, _ply_bytes(props, rows, fmt="ascii").rsplit(b"\n", 3)[0], "truncated PLY body")


def test_nan_inf_rejected(tmp_path):
    props, rows = _standard_rows(4, 0)
    rows["scale_1"][2] = np.nan
    _expect_error(tmp_path, _ply_bytes(props, rows), "1 Gaussians have NaN/inf values in 'scales'")
    rows["scale_1"][2] = 0
    rows["x"][:2] = np.inf
    _expect_error(tmp_path, _ply_bytes(props, rows), "2 Gaussians have NaN/inf values in 'means'")
    scene = _scene(3, 0)
    scene.sh0[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        write_ply(tmp_path / "nan_out.ply", scene)
    assert not (tmp_path / "nan_out.ply").exists()


def test_zero_and_absurd_vertex_counts(tmp_path):
    props, rows = _standard_rows(1, 0)
    _expect_error(tmp_path, _ply_bytes(props, rows[:0]), "zero vertices")
    # 30M declared in a ~400-byte file: refused from the header, before any allocation
    _expect_error(tmp_path, _ply_bytes(props, rows, n=30_000_000), "30,000,000 vertices, over the limit")
    _expect_error(tmp_path, _ply_bytes(props, rows, n=10**30), "over the limit")


def test_bad_f_rest_count(tmp_path):
    props, rows = _standard_rows(2, 15)
    keep = [p for p in props if p[1] != "f_rest_44"]  # 44 coefficients: not 3*((d+1)^2-1)
    sub = np.zeros(2, dtype=[(p, "<f4") for _, p in keep])
    _expect_error(tmp_path, _ply_bytes(keep, sub), r"44 f_rest properties.*\[0, 9, 24, 45\]")
    gap = [p for p in props if p[1] != "f_rest_0"] + [("float", "f_rest_45")]  # 45 but not 0..44
    sub = np.zeros(2, dtype=[(p, "<f4") for _, p in gap])
    _expect_error(tmp_path, _ply_bytes(gap, sub), "f_rest_0..M-1")


def test_missing_file_and_overwrite(tmp_path):
    with pytest.raises(ValueError, match="no such PLY file"):
        read_ply(tmp_path / "nope.ply")
    path = tmp_path / "s.ply"
    write_ply(path, _scene(8, 3, seed=1))
    write_ply(path, _scene(5, 0, seed=2))
    assert read_ply(path).num_gaussians == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ply"]
