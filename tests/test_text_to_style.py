"""Text -> style image -> 3D object, with the shipped model: a texture prompt gives an image that works as a
style (the object's NNFM distance to it drops, nothing outside the object changes)."""

import numpy as np
import pytest

from generators.pipelines.loading import DEFAULT_T2I, generate, load_t2i
from stylize3d.pipeline import RunOptions, TargetSpec, run
from stylize3d.stylize import StylizeConfig

pytestmark = pytest.mark.skipif(not (DEFAULT_T2I / "model_index.json").is_file(), reason="no shipped model")


def test_a_texture_prompt_stylizes_a_builtin_object(tmp_path):
    images, info = generate(load_t2i(), "a pattern of blue and white waves", seed=0)
    img = np.asarray(images[0])
    assert img.shape[0] >= 64 and img.std() > 10, "a flat image would be no style at all"
    style = tmp_path / "waves.png"
    images[0].save(style)
    manifest = run([TargetSpec(styles=[str(style)], object="cube")], tmp_path / "out",
                   RunOptions(scene="builtin", size=64, video=False, stylize=StylizeConfig(iters=20, seed=0)))
    m = manifest["metrics"]
    assert m["nnfm_after"] < m["nnfm_before"] * 0.97, m
    assert m["untouched_max_abs_diff"] == 0
