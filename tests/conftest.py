import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    run_slow = os.environ.get("RUN_SLOW") == "1"
    skip_slow = pytest.mark.skip(reason="slow: set RUN_SLOW=1")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def scene_cache(tmp_path_factory):
    """A private cache folder for generated scenes, shared by the whole test session."""
    path = tmp_path_factory.mktemp("pocket-cache")
    old = os.environ.get("POCKET_STUDIO_CACHE")
    os.environ["POCKET_STUDIO_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("POCKET_STUDIO_CACHE", None)
    else:
        os.environ["POCKET_STUDIO_CACHE"] = old


@pytest.fixture(scope="session")
def builtin_dir(scene_cache):
    """The default built-in scene, generated once per session (as on a user's first run)."""
    from stylize3d.builtin_scene import builtin_scene_dir

    return builtin_scene_dir()


TINY = dict(points_per_object=120, ground_points=256, num_views=12, image_size=48)


@pytest.fixture(scope="session")
def tiny_builtin():
    """(config, scene, cameras) of a tiny built-in scene for fast unit tests."""
    from stylize3d.builtin_scene import BuiltinSceneConfig, build_gaussians, builtin_cameras

    cfg = BuiltinSceneConfig(**TINY)
    return cfg, build_gaussians(cfg), builtin_cameras(cfg)
