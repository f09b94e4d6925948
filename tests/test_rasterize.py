"""The tile rasterizer against its slow reference twin (forward and backward), projection and SH by hand, and
gsplat against the torch path on CUDA."""

import math

import pytest
import torch

from stylize3d.cameras import Cameras, intrinsics, look_at
from stylize3d.gaussians import GaussianScene
from stylize3d.rasterize import (
    blend_weights,
    camera_center,
    normalize_depth,
    project,
    rasterize_reference,
    rasterize_tiles,
    render,
)
from stylize3d.sh import SH_C0, SH_C1, SH_C2, eval_sh, rgb_to_sh0, sh0_to_rgb

W, H = 40, 32  # non-square on purpose: catches x/y transposes


def make_scene(n: int = 200, seed: int = 0, degree: int = 1, opacity_shift: float = 0.0,
               spread: float = 1.0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2 * spread
    means[:3] = torch.tensor([[5.0, 5.0, 1.0], [6.0, 6.0, 1.5], [40.0, -40.0, 0.0]])  # behind / beside camera 0
    return GaussianScene(
        means=means,
        scales=torch.log(torch.rand(n, 3, generator=g) * 0.08 + 0.01),
        quats=torch.randn(n, 4, generator=g),
        opacities=torch.randn(n, generator=g) * 1.5 + opacity_shift,
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=g) * 0.1,
    )


def make_cameras(n: int = 2, width: int = W, height: int = H) -> Cameras:
    up = torch.tensor([0.0, 0.0, 1.0])
    viewmats = [look_at(torch.tensor([3 * math.cos(a), 3 * math.sin(a), 1.0]), torch.zeros(3), up)
                for a in torch.linspace(0.3, 2.0, n).tolist()]
    return Cameras(torch.stack(viewmats), intrinsics(50.0, width, height).expand(n, 3, 3).clone(), width, height)


def _project(scene: GaussianScene, cams: Cameras, i: int = 0, **params):
    p = {k: params.get(k, getattr(scene, k)) for k in ("means", "quats", "scales")}
    return project(p["means"], p["quats"], p["scales"], cams.viewmats[i], cams.Ks[i], cams.width, cams.height)


def test_project_known_gaussian():
    means = torch.tensor([[0.2, -0.1, 2.0], [0.0, 0.0, -1.0], [50.0, 0.0, 2.0]])
    quats = torch.tensor([[2.0, 0.0, 0.0, 0.0]] * 3)  # unnormalised identity
    scales = torch.full((3, 3), math.log(0.05))
    K = torch.tensor([[100.0, 0.0, 20.0], [0.0, 100.0, 16.0], [0.0, 0.0, 1.0]])
    proj = project(means, quats, scales, torch.eye(4), K, W, H)
    assert torch.allclose(proj.means2d[0], torch.tensor([30.0, 11.0]))
    J = torch.tensor([[50.0, 0.0, -5.0], [0.0, 50.0, 2.5]], dtype=torch.float64)  # f/z, -f x/z^2, -f y/z^2
    cov2d = 0.05**2 * J @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)  # EWA footprint plus the eps2d blur
    det = cov2d[0, 0] * cov2d[1, 1] - cov2d[0, 1] ** 2
    want = torch.stack([cov2d[1, 1], -cov2d[0, 1], cov2d[0, 0]]) / det
    assert torch.allclose(proj.conics[0].double(), want, rtol=1e-5, atol=1e-8)
    mid = cov2d.trace() / 2
    radius = math.ceil(3 * math.sqrt(mid + math.sqrt(max(mid**2 - det, 0.01))))
    assert radius == 8 and proj.radii.tolist() == [radius, 0, 0]  # behind the camera / off-screen: culled
    assert proj.depths.tolist() == [2.0, -1.0, 2.0]


def test_eval_sh_by_hand():
    coeffs = torch.arange(27, dtype=torch.float32).reshape(1, 9, 3) * 0.01
    got = eval_sh(coeffs, torch.tensor([[2.0, 0.0, 0.0]]))  # normalised inside to +x
    # +x: Y = [C0, 0, 0, -C1, 0, 0, -C2[2], 0, C2[4]]
    want = SH_C0 * coeffs[0, 0] - SH_C1 * coeffs[0, 3] - SH_C2[2] * coeffs[0, 6] + SH_C2[4] * coeffs[0, 8] + 0.5
    assert torch.allclose(got[0], want, atol=1e-6)
    dc = torch.full((1, 1, 3), -5.0)
    assert eval_sh(dc, torch.tensor([[0.0, 0.0, 1.0]])).tolist() == [[0.0, 0.0, 0.0]]  # clamped at 0
    rgb = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(sh0_to_rgb(rgb_to_sh0(rgb)), rgb)


def test_eval_sh_matches_gsplat_torch_impl():
    import gsplat.cuda._torch_impl as impl
    g = torch.Generator().manual_seed(1)
    coeffs, dirs = torch.randn(50, 16, 3, generator=g), torch.randn(50, 3, generator=g)
    want = torch.clamp_min(impl._spherical_harmonics(3, dirs, coeffs) + 0.5, 0.0)
    assert torch.allclose(eval_sh(coeffs, dirs), want, atol=1e-5)


@pytest.mark.parametrize("opacity_shift,spread", [(0.0, 1.0), (4.0, 0.4)])  # sparse; dense and opaque
def test_tiles_match_reference_forward(opacity_shift, spread):
    scene, cams = make_scene(opacity_shift=opacity_shift, spread=spread), make_cameras()
    proj = _project(scene, cams)
    colors = torch.rand(scene.num_gaussians, 3, generator=torch.Generator().manual_seed(2))
    args = (proj, colors, torch.sigmoid(scene.opacities), W, H, torch.tensor([0.2, 0.3, 0.4]))
    fast, slow = rasterize_tiles(*args), rasterize_reference(*args)
    assert fast.rgb.shape == (H, W, 3) and fast.alpha.shape == (H, W) and fast.depth.shape == (H, W)
    for name in ("rgb", "alpha", "depth"):
        assert (getattr(fast, name) - getattr(slow, name)).abs().max() <= 1e-4, name
    assert (proj.radii[:3] == 0).all()
    if opacity_shift > 0:  # the T >= 1e-4 stopping rule is exercised
        assert slow.alpha.max() > 0.999
    assert 0.05 < fast.alpha.mean() < 1.0
    assert fast.rgb.shape == slow.rgb.shape


def test_tiles_match_reference_gradients():
    scene, cams = make_scene(), make_cameras()
    params = {k: getattr(scene, k).clone().requires_grad_() for k in ("means", "scales", "quats", "opacities")}
    params["colors"] = torch.rand(scene.num_gaussians, 3, generator=torch.Generator().manual_seed(3)).requires_grad_()
    probe = torch.rand(H, W, 5, generator=torch.Generator().manual_seed(4))
    grads = []
    for rasterize in (rasterize_tiles, rasterize_reference):
        proj = _project(scene, cams, 1, **params)
        out = rasterize(proj, params["colors"], torch.sigmoid(params["opacities"]), W, H, torch.tensor([0.2, 0.3, 0.4]))
        loss = (out.rgb * probe[..., :3]).sum() + (out.alpha * probe[..., 3]).sum() + (out.depth * probe[..., 4]).sum()
        grads.append(torch.autograd.grad(loss, list(params.values())))
    for name, fast, slow in zip(params, *grads):
        assert slow.abs().max() > 0.1, name
        assert torch.allclose(fast, slow, rtol=1e-3, atol=1e-5), name


def test_tile_size_does_not_change_the_image():
    scene, cams = make_scene(seed=5), make_cameras()
    proj = _project(scene, cams)
    colors = torch.rand(scene.num_gaussians, 3)
    a = rasterize_tiles(proj, colors, torch.sigmoid(scene.opacities), W, H, tile_size=16)
    b = rasterize_tiles(proj, colors, torch.sigmoid(scene.opacities), W, H, tile_size=8)
    assert (a.rgb - b.rgb).abs().max() <= 1e-6 and (a.depth - b.depth).abs().max() <= 1e-5


def test_blend_weights_rerender_the_view():
    scene, cams = make_scene(seed=6), make_cameras()
    proj = _project(scene, cams)
    opac = torch.sigmoid(scene.opacities)
    colors, bg = torch.rand(scene.num_gaussians, 3), torch.tensor([1.0, 0.5, 0.0])
    out = rasterize_tiles(proj, colors, opac, W, H, bg)
    bw = blend_weights(proj, opac, W, H)
    assert bw.weights.layout == torch.sparse_csr and bw.weights.shape == (H * W, scene.num_gaussians)
    assert not bw.weights.values().requires_grad and (bw.weights.values() > 0).all()
    rgb = (bw.weights @ colors).reshape(H, W, 3) + (1 - bw.alpha)[..., None] * bg
    assert (rgb - out.rgb).abs().max() <= 1e-5
    assert (bw.alpha - out.alpha).abs().max() <= 1e-5 and (bw.depth - out.depth).abs().max() <= 1e-4
    assert bw.weights.to_dense()[:, :3].abs().sum() == 0  # culled Gaussians get no weight
    nd = normalize_depth(out.depth, out.alpha)
    seen = out.alpha > 0.5
    assert ((nd[seen] > 1.0) & (nd[seen] < 5.5)).all() and (nd[out.alpha == 0] == 0).all()


def test_render_torch_backend_uses_view_dependent_sh():
    scene, cams = make_scene(seed=7, degree=2), make_cameras()
    out = render(scene, cams, 1, background=torch.ones(3))
    proj = _project(scene, cams, 1)
    colors = eval_sh(scene.sh_coeffs, scene.means - camera_center(cams.viewmats[1]))
    want = rasterize_tiles(proj, colors, torch.sigmoid(scene.opacities), W, H, torch.ones(3))
    assert torch.equal(out.rgb, want.rgb)
    assert torch.allclose(camera_center(cams.viewmats[1]), cams.centers[1], atol=1e-5)
    flat = render(scene, cams, 1, colors=torch.full((scene.num_gaussians, 3), 0.25), backend="torch")
    assert torch.allclose(flat.rgb, 0.25 * flat.alpha[..., None].expand(H, W, 3), atol=1e-6)
    with pytest.raises(ValueError, match="gsplat"):
        render(scene, cams, 0, backend="gsplat")
    with pytest.raises(ValueError, match="backend"):
        render(scene, cams, 0, backend="vulkan")
    with pytest.raises(ValueError, match="camera index"):
        render(scene, cams, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_matches_torch_rasterizer_on_cuda():
    """Opacities <= 0.3 keep both renderers' rules identical: outside the 3-sigma square alpha < 1/255 anyway,
    and the alpha clamp (0.99 here, 0.999 in gsplat) is never reached."""
    pytest.importorskip("gsplat")
    scene = make_scene(n=500, seed=8, degree=3).to("cuda")
    scene.opacities = torch.logit(torch.rand(500, device="cuda") * 0.25 + 0.05)
    scene.sh0.requires_grad_()
    cams = make_cameras(width=96, height=64)
    outs, grads = [], []
    for backend in ("gsplat", "torch"):
        out = render(scene, cams, 0, background=torch.tensor([0.1, 0.2, 0.3]), backend=backend)
        outs.append(out)
        grads.append(torch.autograd.grad(out.rgb.square().sum(), scene.sh0)[0])
    assert (outs[0].rgb - outs[1].rgb).abs().max() <= 1e-4
    assert (outs[0].alpha - outs[1].alpha).abs().max() <= 1e-4
    assert (outs[0].depth - outs[1].depth).abs().max() <= 1e-3
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4)
