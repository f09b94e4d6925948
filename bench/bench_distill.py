"""Teacher vs few-step students, side by side in one run: ShapesEval on the same prompts and seeds, latency per
image measured interleaved (one image at a time, rows taking turns), and a grid of the same prompts per row.

    python bench/bench_distill.py --teacher assets/models/pocket-t2i \
        --student kd=runs/kd/pipeline --student adv=runs/adv/pipeline --student kdmd=runs/kdmd/pipeline \
        [--per-task 4] [--images-per-prompt 2] [--json bench/results/distill_cpu.json] \
        [--markdown docs/distillation.md] [--grid docs/distill_grid.png]

Each student runs at 1, 2 and 4 steps and at its own default step count, with the guidance its ``sampling.json``
names (1 for adv and kdmd: the teacher's guidance is distilled in; a kd student keeps its teacher's sampler);
the teacher at 28 steps, guidance 4.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from generators.evaluation.run_shapes_eval import evaluate_pipeline
from generators.evaluation.shapes_eval import prompts
from generators.pipelines.loading import load_t2i, read_sampling
from generators.training.ship import label_grid

GRID = ["a photo of a red circle", "a photo of two blue squares", "a photo of a yellow star left of a green circle",
        "a photo of three triangles", "a pattern of blue and white waves", "orange brush strokes on blue"]


def _latency(rows: list[dict], repeats: int) -> None:
    """Seconds per image, rows taking turns so that machine noise hits them alike."""
    times = {r["name"]: [] for r in rows}
    for k in range(repeats + 1):
        for r in rows:
            t0 = time.perf_counter()
            r["pipe"]("a photo of a red circle", num_inference_steps=r["steps"], guidance_scale=r["guidance"],
                      generator=torch.Generator().manual_seed(k), output_type="np")
            if k:  # the first round warms up
                times[r["name"]].append(time.perf_counter() - t0)
    for r in rows:
        r["s_per_image"] = round(statistics.median(times[r["name"]]), 4)


def _document(table: list[str], facts: dict, args) -> str:
    """The table with what it was measured on and the command that measures it again."""
    grid = f"\n![the same prompts and seeds per row]({args.grid.name})\n" if args.grid else ""
    return f"""# Few-step students vs their teacher

Measured side by side in one run of `python {shlex.join(['bench/bench_distill.py', *sys.argv[1:]])}` on
{facts['machine']}: ShapesEval on the same {facts['images']} images per row (the same prompts and seeds:
{facts['per_task']} prompts per task, {facts['images_per_prompt']} images each), then seconds per image (median of {args.repeats} rounds, one image at
a time, the rows taking turns so that the machine's noise hits them alike). How each student was trained:
`docs/distillation_log.md`.

{chr(10).join(table)}
{grid}"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--teacher-steps", type=int, default=28)
    p.add_argument("--student", action="append", default=[], help="NAME=PIPELINE_DIR (repeatable)")
    p.add_argument("--student-steps", default="1,2,4")
    p.add_argument("--per-task", type=int, default=4)
    p.add_argument("--images-per-prompt", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--grid", type=Path)
    args = p.parse_args()

    teacher = load_t2i(args.teacher)
    rows = [dict(name=f"teacher {args.teacher_steps} steps", model=str(args.teacher), pipe=teacher,
                 steps=args.teacher_steps, guidance=4.0)]
    for spec in args.student:
        name, _, folder = spec.partition("=")
        pipe = load_t2i(folder)
        sampling = read_sampling(Path(folder))
        guidance = sampling.get("guidance_scale", 4.0)
        own = sampling.get("num_inference_steps")  # a kd student's own sampler (many steps) is a row too
        for steps in sorted({int(s) for s in args.student_steps.split(",")} | ({int(own)} if own else set())):
            rows.append(dict(name=f"{name} {steps} step{'s' * (steps > 1)}", model=folder, pipe=pipe, steps=steps,
                             guidance=guidance))
    metas = prompts(args.per_task)
    for r in rows:
        report = evaluate_pipeline(r["pipe"], metas, args.images_per_prompt, r["steps"], r["guidance"])
        r["shapes_eval"] = report["summary"]
        print(f"{r['name']}: overall {r['shapes_eval']['overall']:.3f}")
    _latency(rows, args.repeats)
    base = rows[0]["s_per_image"]
    for r in rows:
        r["speedup_vs_teacher"] = round(base / r["s_per_image"], 2)
    table = ["| model | steps | guidance | ShapesEval overall | held-out | single | two | counting | colours | "
             "position | colour attr. | s / image | vs teacher |", "|" + "---|" * 13]
    for r in rows:
        t = r["shapes_eval"]["tasks"]
        table.append(f"| {r['name'].rsplit(' ', 2)[0]} | {r['steps']} | {r['guidance']:g} | "
                     f"{r['shapes_eval']['overall']:.3f} | {r['shapes_eval']['held_out']:.3f} | "
                     + " | ".join(f"{t[k]:.2f}" for k in ("single_object", "two_object", "counting", "colors",
                                                          "position", "color_attr"))
                     + f" | {r['s_per_image']:.3f} | {r['speedup_vs_teacher']:.1f}x |")
    print("\n".join(table))
    facts = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
             "images": rows[0]["shapes_eval"]["images"], "per_task": args.per_task,
             "images_per_prompt": args.images_per_prompt}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**facts, "rows": [{k: v for k, v in r.items() if k != "pipe"}
                                                          for r in rows]}, indent=1))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(_document(table, facts, args))
    if args.grid:
        images, captions = [], []
        for r in rows:
            gens = [torch.Generator().manual_seed(i) for i in range(len(GRID))]
            images += r["pipe"](GRID, num_inference_steps=r["steps"], guidance_scale=r["guidance"],
                                generator=gens).images
            captions += [f"{r['name']}: {g}" for g in GRID]
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        label_grid(images, captions, cols=len(GRID)).save(args.grid)


if __name__ == "__main__":
    main()
