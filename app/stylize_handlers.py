"""Event handlers of the 3D Stylize tab: scene loading, clicks, style choices, and the stylization job.

Heavy work goes through ``stylize3d.pipeline.run`` in a worker thread so the handler can stream live previews
and progress while it runs.
"""

import html
import logging
import queue
import re
import threading
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np

from stylize3d.archive import zip_dir
from stylize3d.gaussians import BACKGROUND_LABEL
from stylize3d.images import load_array, load_image, to_uint8
from stylize3d.pipeline import RunOptions, TargetSpec, run
from stylize3d.preview import object_colors, overlay, preview_view
from stylize3d.reconstruct import ReconstructConfig, reconstruct
from stylize3d.scenes import load_scene
from stylize3d.selection import gaussian_under_pixel, parse_box
from stylize3d.stylize import StylizeConfig

from .scene_inputs import RECONSTRUCT, resolve_scene
from .services import Services
from .sessions import Session
from .style_plan import format_plan, parse_plan, resolve_style

logger = logging.getLogger(__name__)

SIZES = [128, 192, 256]
DISPLAY_PX = 512  # the view is upscaled by an integer factor to about this width
DEFAULTS = StylizeConfig()


def _session(services: Services, request: gr.Request | None) -> Session:
    return services.sessions.get(getattr(request, "session_hash", None))


def _object_choices(scene) -> list[str]:
    """Selectable objects: every labelled object but the background (id 0, e.g. the ground plane)."""
    return [name for oid, name in sorted(scene.object_names.items())
            if oid != BACKGROUND_LABEL and (scene.labels == oid).any()]


def _public(err: Exception, session: Session) -> str:
    """The error's message without server paths: files in the session folder are named by their base name."""
    return re.sub(re.escape(str(session.folder)) + r"[^\s'\"]*/([^/\s'\"]+)", r"\1", str(err))


def _render(session: Session, index: int, objects: list[str], show_all: bool) -> np.ndarray:
    loaded = session.data["scene"]
    view = session.data.get("view")
    if view is None or session.data.get("view_index") != index:
        view = preview_view(loaded.scene, loaded.cameras, index, loaded.background)
        session.data["view"], session.data["view_index"] = view, index
    selected = {loaded.scene.object_id(o) for o in objects or [] if not o.startswith("click:")}
    return _upscale(overlay(view.rgb, view.labels, selected, show_all=show_all))


def _legend(scene) -> str:
    """Object names in their overlay colours (HTML), so clicks and the list read the same."""
    colors = object_colors(int(scene.labels.max()) + 1)
    items = [
        f'<span style="display:inline-block;margin:2px 10px 2px 0"><span style="display:inline-block;width:12px;'
        f'height:12px;border-radius:3px;background:rgb{tuple(int(v) for v in colors[oid])};margin-right:4px">'
        f"</span>{html.escape(name)}</span>"
        for oid, name in sorted(scene.object_names.items())
        if oid > 0 and (scene.labels == oid).any()
    ]
    return "<div>" + "".join(items) + "</div>" if items else ""


def _upscale(img: np.ndarray) -> np.ndarray:
    """Shown large and crisp (nearest, integer factor); clicks are divided back by the same factor."""
    scale = _display_scale(img.shape[1])
    return img.repeat(scale, 0).repeat(scale, 1)


def _display_scale(width: int) -> int:
    return max(1, DISPLAY_PX // width)


# ------------------------------------------------------------------------------------------------ handlers


class StylizeHandlers:
    """Event handlers; methods so that Gradio sees their real signatures (gr.Request, gr.SelectData)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def load_scene_handler(self, source: str, upload: str | None, size: int, request: gr.Request):
        """Show a scene: the built-in one, or an uploaded .ply / dataset (reconstruction has its own event)."""
        if source == RECONSTRUCT:
            return (gr.skip(),) * 5 + ("Reconstructing: this takes a few minutes (see the progress bar).", gr.skip())
        session = _session(self.services, request)
        try:
            spec, label = resolve_scene(session, source, upload)
            loaded = load_scene(spec, int(size))
        except ValueError as err:
            raise gr.Error(_public(err, session)) from err
        return self._show_scene(session, spec, label, loaded, int(size))

    def reconstruct_handler(self, source: str, upload: str | None, size: int, steps: int, request: gr.Request,
                            progress):
        """Train Gaussians on an uploaded nerfstudio dataset (labelled from its masks), then show them."""
        if source != RECONSTRUCT:
            return (gr.skip(),) * 7
        session = _session(self.services, request)
        if not session.busy.acquire(blocking=False):
            raise gr.Error("a job is already running in this session")
        try:
            session.stop.clear()
            spec, label = resolve_scene(session, source, upload)
            stats = reconstruct(spec, Path(spec) / "scene.ply", ReconstructConfig(iters=int(steps), size=int(size)),
                                progress=lambda step, total, msg: progress(step / total, desc=msg),
                                should_stop=session.stop.is_set)
            loaded = load_scene(spec, int(size))
        except ValueError as err:
            raise gr.Error(_public(err, session)) from err
        finally:
            session.busy.release()
        out = list(self._show_scene(session, spec, label, loaded, int(size)))
        out[5] = (f"Reconstructed **{label}** in {stats['seconds']:.0f} s: {stats['num_gaussians']:,} Gaussians, "
                  f"held-out PSNR {stats['psnr']:.1f} dB. " + out[5])
        return tuple(out)

    def _show_scene(self, session: Session, spec: str, label: str, loaded, size: int):
        session.data.update(scene=loaded, spec=spec, view=None, view_index=None, size=size)
        choices = _object_choices(loaded.scene)
        note = "" if choices else " It has no object labels: click it to grow a selection, or use a 3D box."
        status = f"Loaded **{label}**: {loaded.scene.num_gaussians:,} Gaussians, {len(loaded.cameras)} views.{note}"
        return (
            _render(session, 0, [], True),
            gr.update(maximum=len(loaded.cameras) - 1, value=0),
            gr.update(choices=choices, value=[]),
            "",
            gr.update(choices=[], value=None),
            status,
            _legend(loaded.scene),
        )

    def view_handler(self, index: int, objects: list[str], show_all: bool, request: gr.Request):
        session = _session(self.services, request)
        if "scene" not in session.data:
            raise gr.Error("load a scene first")
        return _render(session, int(index), objects, show_all)

    def click_handler(
        self, objects: list[str], index: int, show_all: bool, evt: gr.SelectData, request: gr.Request
    ):
        """A click on the view toggles the object under the pointer (or grows a region on unlabelled scenes)."""
        session = _session(self.services, request)
        if "scene" not in session.data or session.data.get("view") is None:
            raise gr.Error("load a scene first")
        loaded, view = session.data["scene"], session.data["view"]
        h, w = view.labels.shape
        scale = _display_scale(w)
        x, y = (int(v) // scale for v in evt.index[:2])
        if not (0 <= x < w and 0 <= y < h):
            raise gr.Error(f"click at ({x}, {y}) is outside the {w}x{h} view")
        objects = list(objects or [])
        choices = _object_choices(loaded.scene)
        oid = int(view.labels[y, x])
        if choices:
            if oid == 0:
                gr.Info("Nothing selectable there: click on an object.")
                return gr.update(), _render(session, int(index), objects, show_all)
            name = loaded.scene.object_names[oid]
            objects.remove(name) if name in objects else objects.append(name)
        else:
            if gaussian_under_pixel(view.weights, view.width, x, y) < 0:
                gr.Info("Nothing there: click on the scene.")
                return gr.update(), _render(session, int(index), objects, show_all)
            token = f"click:{int(index)},{x},{y}"
            objects.append(token)
            choices = sorted(set(choices) | {o for o in objects if o.startswith("click:")})
            return gr.update(choices=choices, value=objects), _render(session, int(index), objects, show_all)
        return gr.update(value=objects), _render(session, int(index), objects, show_all)

    def objects_handler(
        self,
        objects: list[str],
        plan_text: str,
        active: str | None,
        index: int,
        show_all: bool,
        box: str,
        request: gr.Request,
    ):
        """Keep the plan in step with the selection: new objects get the first built-in style."""
        session = _session(self.services, request)
        try:
            plan = parse_plan(plan_text)
        except ValueError:
            plan = {}
        targets = list(objects or []) + (["box"] if (box or "").strip() else [])
        default = next(iter(self.services.builtin_styles()))
        plan = {t: plan.get(t, [default]) for t in targets}
        active = active if active in targets else (targets[-1] if targets else None)
        image = _render(session, int(index), objects, show_all) if "scene" in session.data else gr.update()
        return format_plan(plan), gr.update(choices=targets, value=active), image

    @staticmethod
    def _assign(plan_text: str, active: str | None, token: str, add: bool) -> str:
        if not active:
            raise gr.Error("select an object first (click it in the view or tick it in the list)")
        plan = parse_plan(plan_text)
        plan[active] = (plan.get(active, []) + [token]) if add else [token]
        return format_plan(plan)

    def gallery_handler(self, plan_text: str, active: str | None, add: bool, evt: gr.SelectData):
        name = list(self.services.builtin_styles())[evt.index]
        return self._assign(plan_text, active, name, add)

    def upload_style_handler(self, plan_text: str, active: str | None, add: bool, upload: str | None):
        if not upload:
            return plan_text
        try:
            load_image(upload)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return self._assign(plan_text, active, "upload", add) if active else plan_text

    def history_handler(self, plan_text: str, active: str | None, add: bool, evt: gr.SelectData):
        return self._assign(plan_text, active, f"history:{evt.index}", add)

    def cancel_handler(self, request: gr.Request):
        _session(self.services, request).stop.set()
        return "Stopping after the current step; the results so far will be exported."

    def _targets(
        self, session: Session, objects: list[str], box: str, plan_text: str, upload: str | None
    ) -> list[TargetSpec]:
        plan = parse_plan(plan_text)
        builtin = self.services.builtin_styles()
        history = session.data.get("history", [])
        specs = []
        for obj in list(objects or []) + (["box"] if (box or "").strip() else []):
            tokens = plan.get(obj)
            if not tokens:
                raise ValueError(f"choose a style for {obj!r} (click a style in the gallery)")
            styles = [str(resolve_style(t, builtin, upload, history)) for t in tokens]
            if obj == "box":
                specs.append(TargetSpec(styles=styles, box=parse_box(box)))
            elif obj.startswith("click:"):
                v, x, y = (int(p) for p in obj.split(":", 1)[1].split(","))
                specs.append(TargetSpec(styles=styles, click=(v, x, y)))
            else:
                specs.append(TargetSpec(styles=styles, object=obj))
        if not specs:
            raise ValueError(
                "select at least one object: click it in the view, tick it in the list, or give a 3D box"
            )
        return specs

    def validate_handler(self, source, upload, objects, box, plan_text, style_upload, request: gr.Request):
        """Cheap checks before the heavy job is queued (gr.Error shows in the page)."""
        session = _session(self.services, request)
        try:
            resolve_scene(session, source, upload)
            for spec in self._targets(session, objects, box, plan_text, style_upload):
                for s in spec.styles:
                    load_image(s)
        except ValueError as err:
            raise gr.Error(_public(err, session)) from err

    def run_handler(
        self,
        source,
        upload,
        objects,
        box,
        plan_text,
        style_upload,
        iters,
        style_weight,
        content_weight,
        size,
        seed,
        view_index,
        request: gr.Request,
        progress,
    ):
        """Stylize; yields live previews of the current view, then the results."""
        session = _session(self.services, request)
        try:
            spec, _ = resolve_scene(session, source, upload)
            targets = self._targets(session, objects, box, plan_text, style_upload)
        except ValueError as err:
            raise gr.Error(_public(err, session)) from err
        if not session.busy.acquire(blocking=False):
            raise gr.Error("a stylization is already running in this session")
        try:
            yield from self._run_job(
                session, spec, targets, iters, style_weight, content_weight, size, seed, view_index, progress
            )
        finally:
            session.busy.release()

    def _run_job(
        self, session, spec, targets, iters, style_weight, content_weight, size, seed, view_index, progress
    ):
        session.stop.clear()
        out_dir = session.new_dir("run")
        cfg = replace(
            DEFAULTS,
            iters=int(iters),
            style_weight=float(style_weight),
            content_weight=float(content_weight),
            seed=int(seed),
        )
        options = RunOptions(scene=spec, size=int(size), stylize=cfg)
        events: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["manifest"] = run(
                    targets,
                    out_dir,
                    options,
                    progress=lambda stage, frac, msg: events.put(("progress", stage, frac, msg)),
                    should_stop=session.stop.is_set,
                    preview=lambda step, img: events.put(("preview", step, to_uint8(img), None)),
                    preview_every=self.services.config.preview_every,
                    preview_view=int(view_index),
                )
            except ValueError as err:
                outcome["error"] = _public(err, session)
            except Exception as err:  # noqa: BLE001 - reported to the page, the server keeps serving
                logger.exception("stylization failed")
                outcome["error"] = f"stylization failed: {type(err).__name__}: {err}"
            finally:
                events.put(None)

        threading.Thread(target=work, name=f"stylize-{session.id}", daemon=True).start()
        while (event := events.get()) is not None:
            kind, a, b, msg = event
            if kind == "progress":
                progress(b, desc=f"{a}: {msg}")
            else:
                yield {"view": _upscale(b), "status": f"Step {a}/{int(iters)}: live preview of view {int(view_index)}"}
        if "error" in outcome:
            raise gr.Error(outcome["error"])
        yield self._results(session, spec, int(size), out_dir, outcome["manifest"], int(view_index))

    @staticmethod
    def _results(session: Session, spec: str, size: int, out_dir: Path, manifest: dict, view_index: int) -> dict:
        renders = sorted((out_dir / "renders").glob("*.png"))
        after = renders[min(view_index, len(renders) - 1)]
        if session.data.get("spec") != spec or session.data.get("size") != size:  # keep the viewer in step
            session.data.update(scene=load_scene(spec, size), spec=spec, size=size, view=None, view_index=None)
        loaded = session.data["scene"]
        before = preview_view(loaded.scene, loaded.cameras, view_index, loaded.background)
        session.data.update(view=before, view_index=view_index)
        history = session.data.setdefault("history", [])
        history.append(str(after))
        archive = zip_dir(out_dir, out_dir.parent / f"{out_dir.name}.zip")
        m = manifest["metrics"]
        status = (
            f"Done in {manifest['timings']['total_s']:.1f} s with the **{manifest['backbone']}** backbone"
            f"{' (stopped early)' if manifest['stopped_early'] else ''}. Leakage PSNR "
            f"{m['leakage_psnr_db']:.0f} dB (100 = untouched pixels identical), NNFM "
            f"{m['nnfm_before']:.3f} -> {m['nnfm_after']:.3f}."
        )
        before_img = to_uint8(before.rgb)
        return {
            "view": _upscale(load_array(after)),
            "status": status,
            "compare": (before_img, str(after)),
            "renders": [str(p) for p in renders],
            "orbit": str(out_dir / "orbit.mp4"),
            "splats": str(out_dir / "stylized.ply"),
            "download": str(archive),
            "manifest": manifest,
            "history": list(history),
        }
