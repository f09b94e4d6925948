"""nerfstudio method plugins (entry point group ``nerfstudio.method_configs``):

- ``pocket-splatfacto``: splatfacto that trains offline (it never builds torchmetrics' LPIPS, which downloads
  AlexNet weights; eval reports PSNR and SSIM only).
- ``pocket-stylize``: per-object stylization of a trained splatfacto scene with stylize3d's losses (NNFM on the
  object's pixels, content loss to the unstylized render, colour transfer before and after)::

    ns-train pocket-stylize --data DATASET --load-dir RUN/nerfstudio_models \\
        --pipeline.model.style-image style.png --pipeline.model.objects cube,sphere

Geometry is frozen: the optimisers see only features_dc/features_rest, their gradients are masked to the
selected Gaussians, and after every step the other rows are written back from a copy, so they cannot change.
Per-Gaussian labels come from the checkpoint (a pocket-stylize run), a labelled ``.ply`` or the dataset's
instance masks (multi-view voting). Renders go through ``stylize3d.rasterize.render``: gsplat on CUDA, the torch
tile rasterizer on CPU, so the model also runs (slowly) with ``--machine.device-type cpu``. ``--load-dir`` loads
only the Gaussians (safely, ``weights_only``), never the optimiser state, and training starts at step 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras as NsCameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig, get_viewmat
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from stylize3d.cameras import Cameras
from stylize3d.gaussians import BACKGROUND_LABEL, GaussianScene, num_sh_bases
from stylize3d.labels import transfer_labels, vote_labels
from stylize3d.nerfstudio_data import dataset_instance_masks
from stylize3d.nerfstudio_run import (
    CONFIG_NAME,
    encode_object_names,
    find_checkpoint,
    load_checkpoint_state,
    load_splatfacto_run,
    scene_from_pipeline_state,
)
from stylize3d.stylize import view_losses

logger = logging.getLogger(__name__)
GEOMETRY = ("means", "scales", "quats", "opacities")


# ------------------------------------------------------------------------------------- offline splatfacto


class _NoLPIPS:
    """Stands in for torchmetrics' LPIPS(alex), whose constructor downloads AlexNet weights."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return torch.tensor(float("nan"))


@contextmanager
def _lpips_disabled():
    import torchmetrics.image.lpip as lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = _NoLPIPS
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original


class OfflineSplatfactoModel(SplatfactoModel):
    """splatfacto without LPIPS: builds and evaluates with no network access."""

    def populate_modules(self) -> None:
        with _lpips_disabled():  # splatfacto imports the class inside populate_modules
            super().populate_modules()

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        return {k: v for k, v in metrics.items() if "lpips" not in k}, images

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        # a checkpoint of real splatfacto carries LPIPS' AlexNet weights; this model has none
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("lpips.")}
        return super().load_state_dict(state_dict, **kwargs)


@dataclass
class OfflineSplatfactoModelConfig(SplatfactoModelConfig):
    _target: Type = field(default_factory=lambda: OfflineSplatfactoModel)


# ------------------------------------------------------------------------------------- pure pieces (tested on CPU)


def ns_to_cameras(camera: NsCameras, camera_to_worlds: torch.Tensor | None = None) -> Cameras:
    """nerfstudio cameras (OpenGL camera-to-world [C, 3, 4]) -> ours (OpenCV world-to-camera), same size."""
    c2w = camera.camera_to_worlds if camera_to_worlds is None else camera_to_worlds
    viewmats = get_viewmat(c2w.reshape(-1, 3, 4).float())  # [C, 4, 4]
    Ks = camera.get_intrinsics_matrices().reshape(-1, 3, 3).to(viewmats)
    return Cameras(viewmats, Ks, int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0]))


def mask_rows_hook(selected: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Gradient hook keeping only the selected rows (``selected`` [N] bool) of a [N, ...] parameter's grad."""
    keep = selected.detach()

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * keep.reshape(-1, *([1] * (grad.ndim - 1))).to(grad)

    return hook


# ------------------------------------------------------------------------------------- pocket-stylize model


@dataclass
class PocketStylizeModelConfig(OfflineSplatfactoModelConfig):
    _target: Type = field(default_factory=lambda: PocketStylizeModel)
    splatfacto_run: Optional[Path] = None
    """A trained splatfacto run to stylize (its folder, config.yml or a .ckpt); or pass --load-dir."""
    style_image: Tuple[Path, ...] = ()
    """Style image(s): one for all objects, or one per object in the order of --objects."""
    objects: str = ""
    """Comma-separated object names or ids to stylize (names from the dataset's transforms.json)."""
    labels_from: Literal["auto", "checkpoint", "ply", "masks"] = "auto"
    """Per-Gaussian labels: from the checkpoint, --labels-ply, or the dataset's instance masks by multi-view
    voting. auto: the first of these that is available."""
    labels_ply: Optional[Path] = None
    """A labelled .ply (stylize3d's, in the dataset's frame); labels go to the nearest Gaussian centre."""
    backbone: str = "auto"
    """Feature backbone: auto (VGG16 if its weights are local, else EfficientNet-Lite0), vgg16, effnet-lite0,
    filterbank."""
    style_weight: float = 1.0
    content_weight: float = 1e-3
    tv_weight: float = 0.0
    color_transfer: bool = True
    """Match each object's colours to its style before and after optimisation (ARF)."""
    color_transfer_floor: float = 0.04
    view_dependent: bool = False
    """Also train the higher SH bands (off: a style is a diffuse appearance; see stylize3d.stylize)."""
    style_long_side: int = 256
    max_render_side: int = 512
    """Renders with a longer side are resized to it before the backbone."""
    max_color_transfer_views: int = 8
    random_init: bool = True  # placeholder Gaussians until the trained ones are loaded; never seeded from points
    num_random: int = 64
    num_downscales: int = 0  # the trained scene renders at full resolution from the first step


class PocketStylizeModel(OfflineSplatfactoModel):
    """Appearance-only, per-object stylization of a splatfacto scene."""

    config: PocketStylizeModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.strategy = _FrozenStrategy()
        n = self.num_points
        self.register_buffer("object_labels", torch.zeros(n, dtype=torch.long))
        self.register_buffer("object_names_json", encode_object_names({BACKGROUND_LABEL: "background"}))
        self._data: dict | None = None
        self._prepared = False
        self._last_step: int | None = None
        if self.config.splatfacto_run is not None:
            self.set_scene(load_splatfacto_run(self.config.splatfacto_run))
        self._freeze_geometry()

    # --- state
    def set_scene(self, scene: GaussianScene) -> None:
        """Take the trained Gaussians (and labels, if any). A lower SH degree than the config's is zero-padded
        (renders the same), so the run's config.yml stays true; a higher one is refused."""
        dev = self.object_labels.device
        want = num_sh_bases(self.config.sh_degree) - 1
        if scene.shN.shape[1] > want:
            raise ValueError(f"pocket-stylize: the scene has SH degree {scene.sh_degree}, the model "
                             f"{self.config.sh_degree}; pass --pipeline.model.sh-degree {scene.sh_degree}")
        if scene.shN.shape[1] < want:
            scene = replace(scene, shN=F.pad(scene.shN, (0, 0, 0, want - scene.shN.shape[1])))
        values = {"means": scene.means, "scales": scene.scales, "quats": scene.quats,
                  "opacities": scene.opacities[:, None], "features_dc": scene.sh0[:, 0], "features_rest": scene.shN}
        for k, v in values.items():
            self.gauss_params[k] = torch.nn.Parameter(v.detach().to(dev, torch.float32).clone())
        self.object_labels = scene.labels.to(dev).long().clone()
        self.object_names_json = encode_object_names(scene.object_names).to(dev)
        self._freeze_geometry()
        self._prepared = False

    def _freeze_geometry(self) -> None:
        for k in GEOMETRY:
            self.gauss_params[k].requires_grad_(False)

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        state_dict = dict(state_dict)
        n = state_dict["gauss_params.means"].shape[0] if "gauss_params.means" in state_dict else self.num_points
        labels, names = state_dict.pop("object_labels", None), state_dict.pop("object_names_json", None)
        state_dict["object_labels"] = labels if labels is not None else torch.zeros(n, dtype=torch.long)
        state_dict["object_names_json"] = names if names is not None else self.object_names_json
        self.object_labels = torch.zeros(n, dtype=torch.long, device=self.object_labels.device)  # sizes to match
        self.object_names_json = torch.zeros_like(state_dict["object_names_json"], device=self.object_labels.device)
        result = super().load_state_dict(state_dict, **kwargs)
        self._freeze_geometry()
        self._prepared = False
        return result

    def get_gaussian_param_groups(self):
        return {k: [self.gauss_params[k]] for k in ("features_dc", "features_rest")}

    def attach_data(self, datamanager) -> None:
        """Called by the pipeline: the training cameras, their images' paths and the dataparser transform."""
        outputs = datamanager.train_dataparser_outputs
        self._data = {"cameras": datamanager.train_dataset.cameras, "image_filenames": list(outputs.image_filenames),
                      "root": Path(datamanager.config.dataparser.data or datamanager.config.data or "."),
                      "transform": outputs.dataparser_transform, "scale": float(outputs.dataparser_scale)}

    # --- rendering
    def scene(self, sh0: torch.Tensor | None = None, shN: torch.Tensor | None = None) -> GaussianScene:
        p = self.gauss_params
        return GaussianScene(p["means"], p["scales"], p["quats"], p["opacities"].reshape(-1),
                             (p["features_dc"] if sh0 is None else sh0)[:, None], p["features_rest"] if shN is None
                             else shN, labels=self.object_labels)

    def _view(self, i: int) -> Cameras:
        return ns_to_cameras(self._data["cameras"][i : i + 1].to(self.device))

    def get_outputs(self, camera: NsCameras):
        from stylize3d.rasterize import render

        if not isinstance(camera, NsCameras):
            raise ValueError(f"pocket-stylize: get_outputs needs nerfstudio Cameras, got {type(camera).__name__}")
        c2w = self.camera_optimizer.apply_to_camera(camera) if self.training else camera.camera_to_worlds
        cams = ns_to_cameras(camera, c2w)
        bg = self._get_background_color()
        out = render(self.scene(), cams, 0, background=bg)
        self.last_size = (cams.height, cams.width)
        outputs = {"rgb": out.rgb.clamp(0.0, 1.0), "depth": out.normalized_depth()[..., None],
                   "accumulation": out.alpha[..., None], "background": bg}
        if self.training and self._prepared:
            with torch.no_grad():
                outputs["rgb_reference"] = render(self.scene(self._ref_dc[:, 0], self._ref_rest), cams, 0,
                                                  background=bg).rgb.clamp(0.0, 1.0)
                outputs["coverage"] = self._coverage(cams)
        return outputs

    def _coverage(self, cams: Cameras) -> torch.Tensor:
        """[H, W, T] blend weight of each target's Gaussians at each pixel."""
        from stylize3d.rasterize import render

        onehot = torch.stack([t["mask"] for t in self._targets], dim=1).float()  # [N, T]
        scene, chunks = self.scene(), []
        for c in range(0, onehot.shape[1], 3):
            part = onehot[:, c:c + 3]
            chunks.append(render(scene, cams, 0, colors=F.pad(part, (0, 3 - part.shape[1]))).rgb[..., : part.shape[1]])
        return torch.cat(chunks, dim=-1)

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        if "coverage" not in outputs:
            return {"style_loss": outputs["rgb"].sum() * 0.0}
        return view_losses(outputs["rgb"], outputs["rgb_reference"], outputs["coverage"], self._backbone,
                                  [t["style_feats"] for t in self._targets], self.config.style_weight,
                                  self.config.content_weight, self.config.tv_weight, self.config.max_render_side)

    # --- training callbacks
    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes):
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            self._last_step = trainer._start_step + trainer.config.max_num_iterations - 1
        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.step_cb,
                             args=[training_callback_attributes.optimizers]),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._after_step),
        ]

    def step_cb(self, optimizers, step) -> None:
        super().step_cb(optimizers, step)
        if not self._prepared:
            self.prepare()

    @torch.no_grad()
    def _after_step(self, step: int) -> None:
        """Write back the unselected rows (exactly unchanged whatever the optimiser does); colour transfer at the end."""
        keep = ~self._selected
        self.gauss_params["features_dc"][keep] = self._ref_dc[keep, 0]
        self.gauss_params["features_rest"][keep] = self._ref_rest[keep]
        if self.config.color_transfer and step == self._last_step:
            self._color_transfer()

    # --- preparation: labels, targets, style features, colour transfer before
    def prepare(self) -> None:
        from stylize3d.backbones import load_backbone
        from stylize3d.stylize import load_style, style_features

        labels, names = self._resolve_labels()
        self.object_labels = labels.to(self.device)
        self.object_names_json = encode_object_names(names).to(self.device)
        wanted = [o.strip() for o in self.config.objects.split(",") if o.strip()]
        if not wanted:
            raise ValueError(f"pocket-stylize: --pipeline.model.objects is empty; this scene has: "
                             f"{', '.join(f'{k}:{v}' for k, v in sorted(names.items()))}")
        styles = list(self.config.style_image)
        if len(styles) not in (1, len(wanted)):
            raise ValueError(f"pocket-stylize: {len(styles)} style images for {len(wanted)} objects; give one for "
                             f"all or one per object (--pipeline.model.style-image)")
        # not a registered submodule: its weights stay out of the checkpoint
        object.__setattr__(self, "_backbone", load_backbone(self.config.backbone, device=self.device))
        self._targets = []
        for i, name in enumerate(wanted):
            oid = GaussianScene.object_id(SimpleNamespace(object_names=names), name)
            mask = (self.object_labels == oid)
            if not mask.any():
                raise ValueError(f"pocket-stylize: object {name!r} (id {oid}) has no Gaussians")
            img = load_style(styles[i % len(styles)]).to(self.device)
            self._targets.append({"name": names[oid], "mask": mask, "style": img,
                                  "style_feats": style_features(self._backbone, [img], self.config.style_long_side)})
        self._selected = torch.stack([t["mask"] for t in self._targets]).any(0)
        p = self.gauss_params
        with torch.no_grad():
            if not self.config.view_dependent:
                p["features_rest"][self._selected] = 0.0
            self._ref_dc = p["features_dc"].detach().clone()[:, None]  # [N, 1, 3] the unstylized colours
            self._ref_rest = p["features_rest"].detach().clone()
            if self.config.color_transfer:
                self._color_transfer()
        p["features_dc"].register_hook(mask_rows_hook(self._selected))
        rest_rows = self._selected if self.config.view_dependent else torch.zeros_like(self._selected)
        p["features_rest"].register_hook(mask_rows_hook(rest_rows))
        self._prepared = True
        logger.info("pocket-stylize: %s, %d of %d Gaussians trainable", ", ".join(t["name"] for t in self._targets),
                    int(self._selected.sum()), self.num_points)

    def _resolve_labels(self) -> tuple[torch.Tensor, dict[int, str]]:
        import json

        mode = self.config.labels_from
        names = {int(k): str(v) for k, v in json.loads(bytes(self.object_names_json.cpu().tolist())).items()}
        if mode == "checkpoint" or (mode == "auto" and bool((self.object_labels != BACKGROUND_LABEL).any())):
            if not (self.object_labels != BACKGROUND_LABEL).any():
                raise ValueError("pocket-stylize: the checkpoint has no object labels (labels_from=checkpoint)")
            return self.object_labels.clone(), names
        if mode == "ply" or (mode == "auto" and self.config.labels_ply is not None):
            return self._labels_from_ply()
        if self._data is None:
            raise ValueError("pocket-stylize: labels from masks need the training dataset (run through ns-train)")
        return self._labels_from_masks()

    def _labels_from_ply(self) -> tuple[torch.Tensor, dict[int, str]]:
        from stylize3d.ply import read_ply

        if self.config.labels_ply is None:
            raise ValueError("pocket-stylize: labels_from=ply needs --pipeline.model.labels-ply")
        src = read_ply(self.config.labels_ply)
        means = src.means.double()
        if self._data is not None:  # the dataset's frame -> the dataparser's, where the Gaussians live
            T = self._data["transform"].double()
            means = self._data["scale"] * (means @ T[:3, :3].T + T[:3, 3])
        return transfer_labels(means, src.labels, self.means.detach()), dict(src.object_names)

    def _labels_from_masks(self) -> tuple[torch.Tensor, dict[int, str]]:
        from stylize3d.nerfstudio_data import object_names_from_meta
        from stylize3d.rasterize import render

        masks, meta_path, meta = dataset_instance_masks(self._data["root"], self._data["image_filenames"])
        cams = [self._view(i) for i in range(len(masks))]
        masks = [_fit_mask(m, c).to(self.device) for m, c in zip(masks, cams)]
        scene = self.scene()
        labels = vote_labels(lambda v, colors: render(scene, cams[v], 0, colors=colors).rgb, masks, self.num_points)
        names = object_names_from_meta(meta_path, meta.get("object_names")) or {}
        for oid in labels.unique().tolist():
            names.setdefault(int(oid), "background" if oid == BACKGROUND_LABEL else f"object {oid}")
        logger.info("pocket-stylize: voted labels over %d views", len(masks))
        return labels, names

    @torch.no_grad()
    def _color_transfer(self) -> None:
        """Fit x -> A x + b from each object's rendered pixels to its style's, applied to its Gaussians' SH."""
        from stylize3d.color_transfer import fit_color_transfer
        from stylize3d.rasterize import render
        from stylize3d.stylize import linear_transform_sh

        if self._data is None:
            logger.warning("pocket-stylize: no dataset cameras attached; colour transfer skipped")
            return
        num_views = len(self._data["cameras"])
        step = max(1, num_views // self.config.max_color_transfer_views)
        cams = [self._view(i) for i in range(0, num_views, step)]
        p = self.gauss_params
        for t in self._targets:
            onehot = F.pad(t["mask"].float()[:, None], (0, 2))
            pixels = []
            for c in cams:
                cov = render(self.scene(), c, 0, colors=onehot).rgb[..., 0]
                pixels.append(render(self.scene(), c, 0).rgb[cov >= 0.5])
            pixels = torch.cat(pixels)
            if len(pixels) < 2:
                logger.warning("pocket-stylize: %s covers no pixels; colour transfer skipped", t["name"])
                continue
            A, b = fit_color_transfer(pixels, t["style"].reshape(-1, 3), floor=self.config.color_transfer_floor)
            m = t["mask"]
            new0, newN = linear_transform_sh(p["features_dc"][m][:, None], p["features_rest"][m], A, b)
            p["features_dc"][m] = new0[:, 0]
            p["features_rest"][m] = newN


def _fit_mask(mask: torch.Tensor, cams: Cameras) -> torch.Tensor:
    """Instance mask resized (nearest) to the camera's size when nerfstudio downscaled the images."""
    if tuple(mask.shape) == (cams.height, cams.width):
        return mask
    return F.interpolate(mask[None, None].float(), size=(cams.height, cams.width), mode="nearest-exact")[0, 0].long()


class _FrozenStrategy:
    """Replaces gsplat's densification strategy: geometry never changes, so nothing to grow, prune or reset."""

    absgrad = False

    def step_pre_backward(self, *args, **kwargs) -> None:
        pass

    def step_post_backward(self, *args, **kwargs) -> None:
        pass


# ------------------------------------------------------------------------------------- pipeline and trainer


class PocketStylizePipeline(VanillaPipeline):
    def __init__(self, config, device, *args, **kwargs) -> None:
        super().__init__(config, device, *args, **kwargs)
        if hasattr(self.model, "attach_data"):
            self.model.attach_data(self.datamanager)


@dataclass
class PocketStylizePipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: PocketStylizePipeline)


class PocketStylizeTrainer(Trainer):
    """``--load-dir`` / ``--load-checkpoint`` load only the Gaussians of the trained scene (weights_only): its
    optimiser state and step belong to the reconstruction, not to the stylization, which starts at step 0."""

    def _load_checkpoint(self) -> None:
        path = None
        if self.config.load_dir is not None:
            path = find_checkpoint(self.config.load_dir, self.config.load_step)
        elif self.config.load_checkpoint is not None:
            path = Path(self.config.load_checkpoint)
        if path is None:
            if getattr(self.pipeline.model.config, "splatfacto_run", None) is None:
                raise ValueError("pocket-stylize needs a trained splatfacto scene: pass --load-dir RUN/nerfstudio_models "
                                 "or --pipeline.model.splatfacto-run RUN")
            return
        if (path.parent.parent / CONFIG_NAME).is_file():  # a run: its config says the SH degree and method
            scene = load_splatfacto_run(path)
        else:
            scene = scene_from_pipeline_state(load_checkpoint_state(path)["pipeline"], str(path))
        self.pipeline.model.set_scene(scene)
        self.optimizers = self.setup_optimizers()  # new parameters: the optimisers must hold these
        logger.info("pocket-stylize: loaded the Gaussians of %s", path)


# ------------------------------------------------------------------------------------- method configs


def _datamanager() -> FullImageDatamanagerConfig:
    return FullImageDatamanagerConfig(dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                                      cache_images_type="uint8")


def _splatfacto_optimizers(max_steps: int) -> dict:
    """splatfacto's optimiser settings (nerfstudio/configs/method_configs.py)."""
    def adam(lr):
        return AdamOptimizerConfig(lr=lr, eps=1e-15)

    return {
        "means": {"optimizer": adam(1.6e-4),
                  "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=max_steps)},
        "features_dc": {"optimizer": adam(0.0025), "scheduler": None},
        "features_rest": {"optimizer": adam(0.0025 / 20), "scheduler": None},
        "opacities": {"optimizer": adam(0.05), "scheduler": None},
        "scales": {"optimizer": adam(0.005), "scheduler": None},
        "quats": {"optimizer": adam(0.001), "scheduler": None},
        "camera_opt": {"optimizer": adam(1e-4), "scheduler": ExponentialDecaySchedulerConfig(
            lr_final=5e-7, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0)},
        "bilateral_grid": {"optimizer": adam(2e-3), "scheduler": ExponentialDecaySchedulerConfig(
            lr_final=1e-4, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0)},
    }


pocket_splatfacto = MethodSpecification(
    config=TrainerConfig(
        method_name="pocket-splatfacto", steps_per_eval_image=100, steps_per_eval_batch=0, steps_per_save=2000,
        steps_per_eval_all_images=1000, max_num_iterations=30000, mixed_precision=False,
        pipeline=VanillaPipelineConfig(datamanager=_datamanager(), model=OfflineSplatfactoModelConfig()),
        optimizers=_splatfacto_optimizers(30000), vis="tensorboard",
    ),
    description="splatfacto that trains offline (no LPIPS weights download); eval reports PSNR and SSIM",
)

pocket_stylize = MethodSpecification(
    config=TrainerConfig(
        _target=PocketStylizeTrainer, method_name="pocket-stylize", steps_per_eval_image=100,
        steps_per_eval_batch=0, steps_per_save=1000, steps_per_eval_all_images=100000, max_num_iterations=300,
        mixed_precision=False,
        pipeline=PocketStylizePipelineConfig(
            datamanager=FullImageDatamanagerConfig(dataparser=NerfstudioDataParserConfig(load_3D_points=False),
                                                   cache_images_type="uint8"),
            model=PocketStylizeModelConfig()),
        optimizers={k: {"optimizer": AdamOptimizerConfig(lr=0.05, eps=1e-15), "scheduler": None}  # as stylize3d
                    for k in ("features_dc", "features_rest")},
        vis="tensorboard",
    ),
    description="per-object stylization of a trained splatfacto scene (stylize3d losses; geometry frozen)",
)
