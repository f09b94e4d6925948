"""The nerfstudio plugins: registration, offline model building, label voting, losses, gradient masking, and
the whole ns-train pocket-stylize loop (on CPU through the torch rasterizer; on CUDA through gsplat).

Scenes here are labelled blobs (no open3d), so the GPU tests also run on machines without it.
"""

import copy
import math

import nerfstudio  # noqa: E402,F401 - declared dependency: a failed import fails the suite
import pytest
import torch
import yaml
from nerfstudio.cameras.cameras import Cameras as NsCameras  # noqa: E402
from nerfstudio.cameras.cameras import CameraType  # noqa: E402
from nerfstudio.data.scene_box import SceneBox  # noqa: E402

from stylize3d import nerfstudio_plugin as plug  # noqa: E402
from stylize3d.cameras import Cameras, orbit_cameras
from stylize3d.gaussians import GaussianScene
from stylize3d.labels import transfer_labels, vote_labels
from stylize3d.nerfstudio_data import dataset_instance_masks
from stylize3d.nerfstudio_run import load_splatfacto_run, save_splatfacto_checkpoint  # noqa: E402
from stylize3d.stylize import view_losses

NAMES = {0: "ground", 1: "cube", 2: "sphere"}


def blob_scene(n_per: int = 90, seed: int = 0) -> GaussianScene:
    """A ground layer (label 0) and two coloured blobs (1: cube, 2: sphere), SH degree 1."""
    g = torch.Generator().manual_seed(seed)
    ground = torch.rand(n_per * 2, 3, generator=g) * torch.tensor([3.0, 3.0, 0.0]) - torch.tensor([1.5, 1.5, 0.0])
    blobs = [torch.randn(n_per, 3, generator=g) * 0.18 + torch.tensor(c) for c in ([0.6, 0.0, 0.4], [-0.6, 0.2, 0.4])]
    means = torch.cat([ground, *blobs])
    labels = torch.cat([torch.zeros(2 * n_per), torch.ones(n_per), torch.full((n_per,), 2.0)]).long()
    n = len(means)
    base = torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.2, 0.1], [0.1, 0.3, 0.9]])[labels]
    return GaussianScene(
        means=means, scales=torch.full((n, 3), math.log(0.09)), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        opacities=torch.full((n,), 2.0), sh0=((base - 0.5) / 0.28209479177387814)[:, None],
        shN=torch.randn(n, 3, 3, generator=g) * 0.02, labels=labels, object_names=dict(NAMES))


def blob_cameras(num_views: int = 8, size: int = 40) -> Cameras:
    return orbit_cameras(torch.tensor([0.0, 0.0, 0.3]), 3.6, num_views, size, size, elevation_deg=35.0, fov_x_deg=50.0)


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory):
    """(dataset root, base run dir, style image, scene): a dataset rendered from the blobs, and a fake
    pocket-splatfacto run whose checkpoint holds the very same Gaussians (without labels)."""
    from stylize3d.ground_truth import render_ground_truth
    from stylize3d.images import save_png
    from stylize3d.nerfstudio_data import write_dataset

    root = tmp_path_factory.mktemp("ns_blobs")
    scene, cams = blob_scene(), blob_cameras()
    gt = render_ground_truth(scene, cams, torch.ones(3))
    write_dataset(root / "data", cams, gt.images, gt.masks, None, NAMES)
    run = root / "base"
    cfg = copy.deepcopy(plug.pocket_splatfacto.config)
    cfg.pipeline.datamanager.data = root / "data"
    cfg.pipeline.model.sh_degree = 1
    run.mkdir()
    (run / "config.yml").write_text(yaml.dump(cfg))
    unlabelled = scene.clone()
    unlabelled.labels = torch.zeros_like(scene.labels)
    unlabelled.object_names = {0: "background"}
    save_splatfacto_checkpoint(unlabelled, run / "nerfstudio_models" / "step-000000100.ckpt", 100)
    g = torch.Generator().manual_seed(1)
    style = torch.rand(24, 24, 3, generator=g) * torch.tensor([0.3, 1.0, 0.4])  # greenish noise
    save_png(root / "style.png", (style * 255).byte().numpy())
    return root / "data", run, root / "style.png", scene


def stylize_config(data, out, device: str, **model):
    """pocket-stylize's TrainerConfig set up for a test: identity dataparser so the Gaussians keep their frame."""
    t = copy.deepcopy(plug.pocket_stylize.config)
    t.data = data
    t.pipeline.datamanager.data = data
    dp = t.pipeline.datamanager.dataparser
    dp.orientation_method, dp.center_method, dp.auto_scale_poses, dp.train_split_fraction = "none", "none", False, 1.0
    t.pipeline.datamanager.cache_images = "gpu"  # i.e. on the training device, which may be the CPU
    t.machine.device_type = device
    t.max_num_iterations, t.steps_per_eval_image, t.steps_per_save = 3, 10_000, 10_000
    t.output_dir = out
    for k, v in {"backbone": "filterbank", "objects": "cube,sphere", "sh_degree": 1, **model}.items():
        setattr(t.pipeline.model, k, v)
    t.set_timestamp()
    return t


def run_stylize(blob_run, tmp_path, device: str, **model):
    data, run, style, scene = blob_run
    t = stylize_config(data, tmp_path / "out", device, style_image=(style,), **model)
    if "splatfacto_run" not in model:
        t.load_dir = run / "nerfstudio_models"
    t.save_config()
    trainer = t.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return load_splatfacto_run(t.get_base_dir()), scene, trainer


def check_stylized(out: GaussianScene, scene: GaussianScene) -> None:
    assert out.object_names[1] == "cube" and out.object_names[2] == "sphere"
    assert (out.labels == scene.labels).float().mean() >= 0.97  # voted from the instance masks
    sel = (out.labels == 1) | (out.labels == 2)
    for k in ("means", "scales", "quats", "opacities"):
        assert torch.equal(getattr(out, k), getattr(scene, k)), k
    assert torch.equal(out.sh0[~sel], scene.sh0[~sel])
    assert torch.equal(out.shN[~sel], scene.shN[~sel])
    assert (out.sh0[sel] - scene.sh0[sel]).abs().mean() > 0.05
    assert torch.equal(out.shN[sel], torch.zeros_like(out.shN[sel]))  # view-independent by default


# ----------------------------------------------------------------------------------------------- registration


def test_entry_points_register_both_methods():
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert methods["pocket-stylize"].method_name == "pocket-stylize"
    assert methods["pocket-splatfacto"].method_name == "pocket-splatfacto"
    assert isinstance(methods["pocket-stylize"].pipeline.model, plug.PocketStylizeModelConfig)
    assert set(methods["pocket-stylize"].optimizers) == {"features_dc", "features_rest"}
    assert "stylization" in descriptions["pocket-stylize"]


def _build(config_cls, **kw):
    cfg = config_cls(random_init=True, num_random=32, **kw)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    return cfg.setup(scene_box=box, num_train_data=4, metadata={}, device="cpu", grad_scaler=None)


def test_models_build_offline_without_lpips(monkeypatch):
    import torchmetrics.image.lpip as lpip

    class Forbidden:
        def __init__(self, *a, **k):
            raise AssertionError("LPIPS was built (it downloads AlexNet weights)")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", Forbidden)
    for cls in (plug.OfflineSplatfactoModelConfig, plug.PocketStylizeModelConfig):
        model = _build(cls)
        assert isinstance(model.lpips, plug._NoLPIPS)
        assert model.num_points == 32
    assert lpip.LearnedPerceptualImagePatchSimilarity is Forbidden  # put back after building
    model.eval()
    metrics, images = model.get_image_metrics_and_images(
        {"rgb": torch.rand(8, 8, 3), "background": torch.zeros(3)}, {"image": torch.rand(8, 8, 3)})
    assert set(metrics) == {"psnr", "ssim"} and images["img"].shape == (8, 16, 3)


def test_stylize_model_trains_appearance_only():
    model = _build(plug.PocketStylizeModelConfig)
    groups = model.get_param_groups()
    assert set(groups) == {"features_dc", "features_rest"}
    assert not any(model.gauss_params[k].requires_grad for k in plug.GEOMETRY)


def test_trainer_without_a_scene_is_refused(blob_run, tmp_path):
    data, _, style, _ = blob_run
    t = stylize_config(data, tmp_path / "out", "cpu", style_image=(style,))
    trainer = t.setup(local_rank=0, world_size=1)
    with pytest.raises(ValueError, match="needs a trained splatfacto scene"):
        trainer.setup()


# ----------------------------------------------------------------------------------------------- pieces


def test_ns_to_cameras_matches_ours():
    cams = blob_cameras(3, 40)
    ns = NsCameras(camera_to_worlds=cams.to_opengl_c2w()[:, :3, :4], fx=cams.Ks[:, 0, 0:1], fy=cams.Ks[:, 1, 1:2],
                   cx=cams.Ks[:, 0, 2:3], cy=cams.Ks[:, 1, 2:3], width=40, height=40, camera_type=CameraType.PERSPECTIVE)
    back = plug.ns_to_cameras(ns)
    assert (back.width, back.height) == (40, 40)
    torch.testing.assert_close(back.viewmats, cams.viewmats, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.Ks, cams.Ks)


def test_vote_labels_equals_blend_weight_voting():
    from stylize3d.blend_cache import BlendCache
    from stylize3d.ground_truth import render_ground_truth
    from stylize3d.labels import labels_from_masks
    from stylize3d.rasterize import render

    scene, cams = blob_scene(), blob_cameras(6, 32)
    gt = render_ground_truth(scene, cams, torch.ones(3))
    masks = [torch.from_numpy(m).long() for m in gt.masks]
    voted = vote_labels(lambda v, c: render(scene, cams, v, colors=c).rgb, masks, scene.num_gaussians)
    cache = BlendCache.build(scene, cams)
    expected = labels_from_masks([cache[v].weights for v in range(len(cams))], masks, scene.num_gaussians)
    assert torch.equal(voted, expected)
    assert (voted == scene.labels).float().mean() > 0.95


def test_transfer_labels_takes_the_nearest_centre():
    src = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 5, 0]])
    labels = transfer_labels(src, torch.tensor([0, 3, 7]), torch.tensor([[0.9, 0.2, 0], [0.1, 4, 0], [0, 0, 0]]))
    assert labels.tolist() == [3, 7, 0]


def test_mask_rows_hook_leaves_unselected_rows_bitwise_unchanged():
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(10, 2, 3, generator=g))
    before = p.detach().clone()
    selected = torch.zeros(10, dtype=torch.bool)
    selected[[1, 4, 7]] = True
    p.register_hook(plug.mask_rows_hook(selected))
    opt = torch.optim.Adam([p], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        ((p - 3.0) ** 2).sum().backward()
        opt.step()
    assert torch.equal(p[~selected], before[~selected])
    assert (p[selected] - before[selected]).abs().min() > 0.3


def test_view_losses_on_small_tensors():
    from stylize3d.backbones import load_backbone

    backbone = load_backbone("filterbank")
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(40, 40, 3, generator=g)
    rgb = ref.clone().requires_grad_(True)
    cov = torch.zeros(40, 40, 2)
    cov[8:24, 8:24, 0] = 1.0  # object 0 covers a square; object 1 is out of view
    style = [backbone(torch.rand(1, 3, 32, 32, generator=g))[0].flatten(1)] * 2
    out = view_losses(rgb, ref, cov, backbone, style, max_side=20)  # 40 px renders shrink to 20
    assert set(out) == {"style_loss", "content_loss"}
    assert 0.0 < out["style_loss"].item() < 2.0
    assert out["content_loss"].item() == pytest.approx(0.0, abs=1e-12)  # the render is its own reference
    (grad,) = torch.autograd.grad(out["style_loss"], rgb)
    # the gradient lives on the object (the backbone's receptive field lets a trace reach further)
    assert grad[8:24, 8:24].abs().sum() > 100 * grad[32:, 32:].abs().sum()
    empty = view_losses(rgb, ref, torch.zeros(40, 40, 1), backbone, style[:1])
    assert empty["style_loss"].item() == 0.0 and empty["style_loss"].requires_grad


def test_dataset_instance_masks_names_missing_masks(blob_run, tmp_path):
    data, *_ = blob_run
    masks, path, meta = dataset_instance_masks(data, [data / "images" / "frame_00001.png"])
    assert len(masks) == 1 and masks[0].shape == (40, 40) and path.name == "transforms.json"
    with pytest.raises(ValueError, match="no instance mask for training image .*other.png"):
        dataset_instance_masks(data, [data / "images" / "other.png"])


# ----------------------------------------------------------------------------------------------- ns-train loop


def test_ns_train_pocket_stylize_on_cpu(blob_run, tmp_path):
    """The real nerfstudio Trainer: --load-dir, label voting from the masks, 3 steps, final checkpoint."""
    out, scene, trainer = run_stylize(blob_run, tmp_path, "cpu")
    check_stylized(out, scene)
    assert trainer._start_step == 0


def test_splatfacto_run_option_and_labels_from_ply(blob_run, tmp_path):
    from stylize3d.ply import write_ply

    data, run, _, scene = blob_run
    write_ply(tmp_path / "labels.ply", scene)
    out, scene, _ = run_stylize(blob_run, tmp_path, "cpu", splatfacto_run=run, labels_ply=tmp_path / "labels.ply",
                                objects="sphere", color_transfer=False, sh_degree=3)
    assert torch.equal(out.labels, scene.labels)  # nearest-centre transfer from the same Gaussians
    sel = out.labels == 2
    assert torch.equal(out.sh0[~sel], scene.sh0[~sel]) and (out.sh0[sel] != scene.sh0[sel]).any()
    # the degree-1 scene was zero-padded to the model's degree 3, which renders the same
    assert out.sh_degree == 3 and torch.equal(out.shN[~sel, :3], scene.shN[~sel]) and not out.shN[:, 3:].any()


def test_a_scene_of_higher_sh_degree_than_the_model_is_refused(blob_run):
    model = _build(plug.PocketStylizeModelConfig, sh_degree=0)
    with pytest.raises(ValueError, match="pass --pipeline.model.sh-degree 1"):
        model.set_scene(blob_run[3])


# ----------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_gpu_ns_train_pocket_stylize(blob_run, tmp_path):
    out, scene, _ = run_stylize(blob_run, tmp_path, "cuda")
    check_stylized(out, scene)


@pytest.mark.gpu
def test_gpu_vote_labels_gsplat_agrees_with_torch():
    from stylize3d.ground_truth import render_ground_truth
    from stylize3d.rasterize import render

    scene, cams = blob_scene(), blob_cameras(6, 48)
    masks = [torch.from_numpy(m).long() for m in render_ground_truth(scene, cams, torch.ones(3)).masks]
    cuda = scene.to("cuda")
    by_gsplat = vote_labels(lambda v, c: render(cuda, cams, v, colors=c, backend="gsplat").rgb,
                                 [m.cuda() for m in masks], scene.num_gaussians)
    by_torch = vote_labels(lambda v, c: render(scene, cams, v, colors=c, backend="torch").rgb, masks,
                                scene.num_gaussians)
    assert (by_gsplat.cpu() == by_torch).float().mean() >= 0.98
    assert (by_gsplat.cpu() == scene.labels).float().mean() >= 0.95
