"""Event handlers of the 3D Stylize tab: scene loading, clicks, style choices, and the stylization job.

Heavy work goes through ``stylize3d.pipeline.run`` in a worker thread so the handler can stream live previews
and progress while it runs.
"""

import html
import logging
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np

from stylize3d.archive import zip_dir
from stylize3d.export import write_viewer_ply
from stylize3d.gaussians import BACKGROUND_LABEL
from stylize3d.images import load_array, to_uint8
from stylize3d.labels import selection_coverage
from stylize3d.pipeline import RunOptions, TargetSpec, check_targets, run
from stylize3d.preview import legend_colors, overlay, preview_view
from stylize3d.reconstruct import ReconstructConfig, reconstruct
from stylize3d.scenes import load_scene
from stylize3d.selection import parse_box, scene_segments, select_click
from stylize3d.stylize import StylizeConfig, load_style

from .jobs import run_job
from .public_errors import public_message
from .scene_inputs import RECONSTRUCT, resolve_scene
from .services import Services
from .sessions import Session
from .style_plan import format_plan, parse_plan, resolve_style

logger = logging.getLogger(__name__)

TAB = "stylize"
SIZES = [128, 192, 256]
DISPLAY_PX = 512  # the view is upscaled by an integer factor to about this width
DEFAULTS = StylizeConfig()


def _session(services: Services, request: gr.Request | None) -> Session:
    return services.sessions.get(getattr(request, "session_hash", None))


def _object_choices(scene) -> list[str]:
    """Selectable objects: every labelled object but the background (id 0, e.g. the ground plane)."""
    return [name for oid, name in sorted(scene.object_names.items())
            if oid != BACKGROUND_LABEL and (scene.labels == oid).any()]


def _render(session: Session, index: int, objects: list[str], show_all: bool) -> np.ndarray:
    loaded = session.tab(TAB)["scene"]
    view = session.tab(TAB).get("view")
    if view is None or session.tab(TAB).get("view_index") != index:
        view = preview_view(loaded.scene, loaded.cameras, index, loaded.background)
        session.tab(TAB)["view"], session.tab(TAB)["view_index"] = view, index
    names = {n.lower() for n in loaded.scene.object_names.values()}
    selected = {loaded.scene.object_id(o) for o in objects or [] if o.lower() in names}
    highlight = None
    segments = session.tab(TAB).get("segments", {})
    for token in objects or []:
        if token in segments:  # a segment clicked on an unlabelled scene
            cov = selection_coverage(view.weights, segments[token]).reshape(view.labels.shape)
            highlight = (cov >= 0.5).numpy() | (highlight if highlight is not None else False)
    return _upscale(overlay(view.rgb, view.labels, selected, show_all=show_all, highlight=highlight))


def _legend(scene) -> str:
    """Object names with the colour each shows in the view (HTML), so clicks and the list read the same."""
    colors = legend_colors(scene)
    items = [
        f'<span style="display:inline-block;margin:2px 10px 2px 0"><span style="display:inline-block;width:12px;'
        f'height:12px;border-radius:3px;background:rgb{colors[oid]};margin-right:4px;border:1px solid #888">'
        f"</span>{html.escape(name)}</span>"
        for oid, name in sorted(scene.object_names.items())
        if oid in colors
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

    # -------------------------------------------------------------------------------------------- scenes

    def _resolve(self, session: Session, source: str, upload: str | None) -> tuple[str, str]:
        limits = self.services.config
        return resolve_scene(session, source, upload, max_unpacked_bytes=limits.max_unpacked_bytes,
                             max_session_bytes=limits.max_session_bytes)

    def load_scene_handler(self, source: str, upload: str | None, size: int, request: gr.Request):
        """Show a scene: the built-in one, or an uploaded .ply / dataset (reconstruction has its own event)."""
        if source == RECONSTRUCT:
            return (gr.skip(),) * 5 + ("Reconstructing: this takes a few minutes (see the progress bar).", gr.skip())
        session = _session(self.services, request)
        try:
            spec, label = self._resolve(session, source, upload)
            loaded = load_scene(spec, int(size))
        except ValueError as err:
            raise gr.Error(public_message(err)) from err
        return self._show_scene(session, spec, label, loaded, int(size))

    def reconstruct_handler(self, source: str, upload: str | None, size: int, steps: int, request: gr.Request,
                            progress):
        """Train Gaussians on an uploaded nerfstudio dataset (labelled from its masks), then show them.

        On failure the scene on screen stays as it was and the status says what failed."""
        if source != RECONSTRUCT:
            return (gr.skip(),) * 7
        session = _session(self.services, request)
        try:
            spec, label = self._resolve(session, source, upload)

            def work(emit, should_stop):
                stats = reconstruct(spec, Path(spec) / "scene.ply", ReconstructConfig(iters=int(steps), size=int(size)),
                                    progress=lambda step, total, msg: emit("progress", step / total, msg),
                                    should_stop=should_stop)
                return stats, load_scene(spec, int(size))

            job = run_job(self.services, session, "reconstruction", work)
            while True:
                event = next(job)
                if event[0] == "progress":
                    progress(event[1], desc=event[2])
        except StopIteration as done:
            stats, loaded = done.value
        except (ValueError, gr.Error) as err:  # reported in the page; the previous scene stays
            shown = session.tab(TAB).get("label", "no scene")
            message = f"Reconstruction failed: {public_message(err)}. Still showing **{shown}**."
            gr.Warning(public_message(err))
            return (gr.skip(),) * 5 + (message, gr.skip())
        out = list(self._show_scene(session, spec, label, loaded, int(size)))
        psnr = "n/a" if stats["psnr"] is None else f"{stats['psnr']:.1f} dB"
        out[5] = (f"Reconstructed **{label}** in {stats['seconds']:.0f} s: {stats['num_gaussians']:,} Gaussians, "
                  f"held-out PSNR {psnr}. " + out[5])
        if stats.get("advice"):
            out[5] += f"\n\n**Warning:** {stats['advice']}"
        return tuple(out)

    def _show_scene(self, session: Session, spec: str, label: str, loaded, size: int):
        session.tab(TAB).update(scene=loaded, spec=spec, label=label, view=None, view_index=None, size=size,
                            segments={}, segment_ids=None)
        choices = _object_choices(loaded.scene)
        note = "" if choices else (" It has no object labels (no instance masks): click an object in the view to "
                                   "select it, or give a 3D box.")
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
        if "scene" not in session.tab(TAB):
            raise gr.Error("load a scene first")
        return _render(session, int(index), objects, show_all)

    # ------------------------------------------------------------------------------------ selection, plan

    def click_handler(self, objects: list[str], plan_text: str, active: str | None, box: str, index: int,
                      show_all: bool, evt: gr.SelectData, request: gr.Request):
        """A click on the view toggles the object under the pointer (on an unlabelled scene: the 3D segment under
        it); the object just selected becomes the one the next style click goes to."""
        session = _session(self.services, request)
        if "scene" not in session.tab(TAB) or session.tab(TAB).get("view") is None:
            raise gr.Error("load a scene first")
        loaded, view = session.tab(TAB)["scene"], session.tab(TAB)["view"]
        h, w = view.labels.shape
        scale = _display_scale(w)
        x, y = (int(v) // scale for v in evt.index[:2])
        if not (0 <= x < w and 0 <= y < h):
            raise gr.Error(f"click at ({x}, {y}) is outside the {w}x{h} view")
        objects = list(objects or [])
        choices = _object_choices(loaded.scene)
        unchanged = (gr.update(), gr.update(), gr.update(), gr.update())
        if choices:
            oid = int(view.labels[y, x])
            if oid == BACKGROUND_LABEL:
                gr.Info("Nothing selectable there: click on an object.")
                return unchanged
            token = loaded.scene.object_names[oid]
        else:
            try:
                if session.tab(TAB).get("segment_ids") is None:  # once per scene, not per click
                    session.tab(TAB)["segment_ids"] = scene_segments(loaded.scene)
                mask, _ = select_click(loaded.scene, view.weights, view.width, x, y, session.tab(TAB)["segment_ids"])
            except ValueError:
                gr.Info("Nothing there: click on the scene.")
                return unchanged
            token = f"click:{int(index)},{x},{y}"
            session.tab(TAB).setdefault("segments", {})[token] = mask
            session.tab(TAB).setdefault("click_sizes", {})[token] = max(h, w)  # the pixels it is in
            share = float(mask.float().mean())
            if share > 0.5:
                gr.Warning(f"This click selects {share:.0%} of the scene: try a 3D box for a finer selection.")
        added = token not in objects
        objects = objects + [token] if added else [o for o in objects if o != token]
        plan, active_update = self._sync_plan(objects, plan_text, active, box, newest=token if added else None)
        choices = sorted(set(choices) | {o for o in objects if o.startswith("click:")}) if not choices else choices
        return (gr.update(choices=choices, value=objects), _render(session, int(index), objects, show_all),
                plan, active_update)

    def _sync_plan(self, objects: list[str], plan_text: str, active: str | None, box: str,
                   newest: str | None = None):
        """(plan text, active-object update): one plan line per target, new targets get the first built-in style,
        and the target just added becomes active. A plan that does not parse is kept and reported."""
        try:
            plan = parse_plan(plan_text)
        except ValueError as err:
            gr.Warning(f"The style plan was not changed: {err}")
            return gr.update(), gr.update()
        targets = list(objects or []) + (["box"] if (box or "").strip() else [])
        default = next(iter(self.services.builtin_styles()))
        new = [t for t in targets if t not in plan]
        plan = {t: plan.get(t, [default]) for t in targets}
        if newest in targets:
            active = newest
        elif new:
            active = new[-1]
        elif active not in targets:
            active = targets[-1] if targets else None
        return format_plan(plan), gr.update(choices=targets, value=active)

    def objects_handler(self, objects: list[str], plan_text: str, active: str | None, index: int, show_all: bool,
                        box: str, request: gr.Request):
        """Ticks in the list (or a new box): keep the plan in step; the object just ticked becomes active."""
        session = _session(self.services, request)
        plan, active_update = self._sync_plan(objects, plan_text, active, box)
        image = _render(session, int(index), objects, show_all) if "scene" in session.tab(TAB) else gr.update()
        return plan, active_update, image

    def example_handler(self, objects: list[str], plan_text: str, index: int, show_all: bool, request: gr.Request):
        """A "Try one" row: its objects and its own styles, the last object active."""
        session = _session(self.services, request)
        plan = parse_plan(plan_text)
        loaded = session.tab(TAB).get("scene")
        names = {n.lower() for n in loaded.scene.object_names.values()} if loaded is not None else set()
        if loaded is not None and not all(o.lower() in names for o in objects):
            gr.Warning("The 'Try one' rows are for the built-in scene: choose it and press Load scene first.")
            return gr.update(), gr.update(), gr.update(), gr.update()
        image = _render(session, int(index), objects, show_all) if loaded is not None else gr.update()
        return objects, format_plan(plan), gr.update(choices=list(plan), value=list(plan)[-1]), image

    @staticmethod
    def _assign(plan_text: str, active: str | None, token: str, add: bool) -> str:
        if not active:
            raise gr.Error("select an object first (click it in the view or tick it in the list)")
        try:
            plan = parse_plan(plan_text)
        except ValueError as err:
            raise gr.Error(f"fix the style plan first: {err}") from err
        plan[active] = (plan.get(active, []) + [token]) if add else [token]
        return format_plan(plan)

    def gallery_handler(self, plan_text: str, active: str | None, add: bool, evt: gr.SelectData):
        name = list(self.services.builtin_styles())[evt.index]
        return self._assign(plan_text, active, name, add)

    def upload_style_handler(self, plan_text: str, active: str | None, add: bool, upload: str | None):
        """An uploaded style is checked at once; a bad one is named, removed from the box, and forgotten."""
        if not upload:
            return plan_text, gr.update()
        try:
            load_style(upload)
        except ValueError as err:
            gr.Warning(f"Style image not used: {public_message(err)}")
            return plan_text, None
        return (self._assign(plan_text, active, "upload", add) if active else plan_text), gr.update()

    def history_handler(self, plan_text: str, active: str | None, add: bool, evt: gr.SelectData):
        return self._assign(plan_text, active, f"history:{evt.index}", add)

    def cancel_handler(self, request: gr.Request):
        session = _session(self.services, request)
        if not session.busy.locked():
            return "Nothing is running: there is nothing to stop."
        session.stop.set()
        return "Stopping after the current step; the results so far will be exported."

    # -------------------------------------------------------------------------------------------- the run

    def _targets(
        self, session: Session, objects: list[str], box: str, plan_text: str, upload: str | None,
        run_size: int | None = None,
    ) -> list[TargetSpec]:
        """Plan + selection -> engine targets. Clicks are pixels of the view they were made on (its size is
        kept per click), moved to the same spot of the run's render size."""
        plan = parse_plan(plan_text)
        builtin = self.services.builtin_styles()
        history = session.history
        targets = list(objects or []) + (["box"] if (box or "").strip() else [])
        unknown = [k for k in plan if k not in targets]
        if unknown:
            raise ValueError(f"the style plan names {', '.join(map(repr, unknown))}, which "
                             f"{'is' if len(unknown) == 1 else 'are'} not selected; selected: "
                             f"{', '.join(targets) or 'nothing'}")
        specs = []
        for obj in targets:
            tokens = plan.get(obj)
            if not tokens:
                raise ValueError(f"choose a style for {obj!r} (click a style in the gallery)")
            styles = [str(resolve_style(t, builtin, upload, history)) for t in tokens]
            if obj == "box":
                specs.append(TargetSpec(styles=styles, box=parse_box(box)))
            elif obj.startswith("click:"):
                try:
                    v, x, y = (int(p) for p in obj.split(":", 1)[1].split(","))
                except ValueError as err:
                    raise ValueError(f"{obj!r}: a click is written click:VIEW,X,Y") from err
                shown = session.tab(TAB).get("click_sizes", {}).get(obj) or session.tab(TAB).get("size") or run_size
                if run_size and shown and run_size != shown:
                    x, y = (min(run_size - 1, int((c + 0.5) * run_size / shown)) for c in (x, y))
                specs.append(TargetSpec(styles=styles, click=(v, x, y)))
            else:
                specs.append(TargetSpec(styles=styles, object=obj))
        if not specs:
            raise ValueError(
                "select at least one object: click it in the view, tick it in the list, or give a 3D box"
            )
        check_targets(specs)
        return specs

    @staticmethod
    def _config(iters, style_weight, content_weight, seed) -> StylizeConfig:
        try:
            return replace(DEFAULTS, iters=int(iters), style_weight=float(style_weight),
                           content_weight=float(content_weight), seed=int(seed))
        except (TypeError, OverflowError) as err:
            raise ValueError(f"settings: {err}") from err

    def _scene_for_run(self, session: Session, source: str, upload: str | None) -> tuple[str, str | None]:
        """(spec, note): what is on screen is what is stylized. A scene chosen but not loaded is not used
        silently: the note says so. Without a scene on screen (API callers), the one named is used."""
        chosen, label = self._resolve(session, source, upload)
        shown = session.tab(TAB).get("spec")
        if shown is None or shown == chosen:
            return chosen, None
        return shown, (f"Stylized the scene on screen (**{session.tab(TAB).get('label')}**): press **Load scene** to "
                       f"switch to {label}.")

    def validate_handler(self, source, upload, objects, box, plan_text, style_upload, iters, style_weight,
                         content_weight, seed, request: gr.Request):
        """Cheap checks before the heavy job is queued (gr.Error shows in the page); disables Stylize."""
        session = _session(self.services, request)
        try:
            self._scene_for_run(session, source, upload)
            self._targets(session, objects, box, plan_text, style_upload)
            self._config(iters, style_weight, content_weight, seed)
        except ValueError as err:
            raise gr.Error(public_message(err)) from err
        if session.busy.locked():
            raise gr.Error("a job is already running in this session")
        self._check_disk(session)
        return gr.update(interactive=False, value="Stylizing...")

    def _check_disk(self, session: Session) -> None:
        used, cap = session.disk_bytes(), self.services.config.max_session_bytes
        if used > cap:
            raise gr.Error(f"this session holds {used / 2**20:.0f} MB of results (limit {cap / 2**20:.0f} MB): "
                           "download what you need and reload the page to start afresh")

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
            spec, note = self._scene_for_run(session, source, upload)
            targets = self._targets(session, objects, box, plan_text, style_upload, int(size))
            cfg = self._config(iters, style_weight, content_weight, seed)
        except ValueError as err:
            raise gr.Error(public_message(err)) from err
        self._check_disk(session)
        out_dir = session.new_dir("run")
        options = RunOptions(scene=spec, size=int(size), stylize=cfg)

        def work(emit, should_stop):
            return run(targets, out_dir, options, progress=lambda stage, frac, msg: emit("progress", stage, frac, msg),
                       should_stop=should_stop, preview=lambda step, img: emit("preview", step, to_uint8(img)),
                       preview_every=self.services.config.preview_every, preview_view=int(view_index))

        last = "starting"
        job = run_job(self.services, session, "stylization", work,
                      busy_message="a stylization is already running in this session")
        manifest = None
        try:
            while True:
                event = next(job)
                if event[0] == "waiting":
                    yield {"status": "Waiting for a free slot: the studio is busy with other visitors' jobs."}
                elif event[0] == "progress":
                    last = f"{event[1]}: {event[3]}"
                    progress(event[2], desc=last)
                else:
                    yield {"view": _upscale(event[2]), "status": f"Step {event[1]}/{cfg.iters} ({last}): live "
                           f"preview of view {int(view_index)}. **Stop early** keeps what is there."}
        except StopIteration as done:
            manifest = done.value
        results = self._results(session, spec, int(size), out_dir, manifest, int(view_index))
        if note:
            results["status"] = note + " " + results["status"]
        yield results

    @staticmethod
    def _results(session: Session, spec: str, size: int, out_dir: Path, manifest: dict, view_index: int) -> dict:
        renders = sorted((out_dir / "renders").glob("*.png"))
        after = renders[min(view_index, len(renders) - 1)]
        if session.tab(TAB).get("spec") != spec or session.tab(TAB).get("size") != size:  # keep the viewer in step
            session.tab(TAB).update(scene=load_scene(spec, size), spec=spec, size=size, view=None, view_index=None,
                                segment_ids=None)
        loaded = session.tab(TAB)["scene"]
        before = preview_view(loaded.scene, loaded.cameras, view_index, loaded.background)
        session.tab(TAB).update(view=before, view_index=view_index)
        history = session.history
        history.append(str(after))
        archive = zip_dir(out_dir, out_dir.parent / f"{out_dir.name}.zip")
        viewer = write_viewer_ply(out_dir / "stylized.ply", out_dir.parent / f"{out_dir.name}-viewer.ply")
        m = manifest["metrics"]
        leak = "n/a" if m["leakage_psnr_db"] is None else f"{m['leakage_psnr_db']:.0f} dB"
        untouched = ("identical" if m["untouched_max_abs_diff"] == 0 else
                     "n/a" if m["untouched_max_abs_diff"] is None else f"max change {m['untouched_max_abs_diff']:.3f}")
        nnfm = ("n/a" if m["nnfm_before"] is None else f"{m['nnfm_before']:.3f} -> {m['nnfm_after']:.3f}")
        notes = "".join(f"\n\n**{o['name']}**: {n}" for o in manifest["objects"] for n in o.get("notes", []))
        status = (
            f"Done in {manifest['timings']['total_s']:.1f} s with the **{manifest['backbone']}** backbone"
            f"{' (stopped early)' if manifest['stopped_early'] else ''}. Pixels the selection does not reach: "
            f"{untouched}; leakage PSNR around it {leak} (100 = identical); NNFM {nnfm}. "
            f"[Results below](#compare).{notes}"
        )
        before_img = to_uint8(before.rgb)
        return {
            "view": _upscale(load_array(after)),
            "status": status,
            "compare": (before_img, str(after)),
            "renders": [str(p) for p in renders],
            "orbit": str(out_dir / "orbit.mp4"),
            "splats": str(viewer),
            "download": str(archive),
            "manifest": manifest,
            "history": list(history),
        }
