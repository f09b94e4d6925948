import pytest
import torch

from stylize3d.blend_cache import BlendCache
from stylize3d.builtin_scene import BACKGROUND
from stylize3d.labels import pixel_labels
from stylize3d.selection import (
    clean_selection,
    gaussian_under_pixel,
    grow_from_seed,
    parse_box,
    select_box,
    select_click,
    select_object,
)


def test_select_by_name_and_id(tiny_builtin):
    _, scene, _ = tiny_builtin
    by_name = select_object(scene, "Sphere")
    by_id = select_object(scene, str(scene.object_id("sphere")))
    assert torch.equal(by_name, by_id) and by_name.sum() > 0
    with pytest.raises(ValueError, match="unknown object 'teapot'.*cube"):
        select_object(scene, "teapot")


def test_box_selects_one_object_and_empty_box_errors(tiny_builtin):
    _, scene, _ = tiny_builtin
    cube = scene.labels == scene.object_id("cube")
    lo, hi = scene.means[cube].min(0).values, scene.means[cube].max(0).values
    box = (*(lo - 0.02).tolist(), *(hi + 0.02).tolist())
    box = list(box)
    box[2] = 0.01  # above the ground plane
    mask = select_box(scene, box)
    assert (mask & cube).sum() / cube.sum() > 0.9
    assert (mask & ~cube).sum() == 0
    with pytest.raises(ValueError, match="contains no Gaussians"):
        select_box(scene, (10, 10, 10, 11, 11, 11))


def test_parse_box_errors():
    assert parse_box("1,2,3,0,0,0") == (0, 0, 0, 1, 2, 3)
    for bad in ("1,2,3", "a,b,c,d,e,f", "1,2,3,4,5,nan"):
        with pytest.raises(ValueError, match="--box"):
            parse_box(bad)


def test_clean_selection_drops_stray_points():
    g = torch.Generator().manual_seed(0)
    blob = torch.rand(300, 3, generator=g) * 0.2  # evenly spread, like samples of a surface
    stray = torch.tensor([[2.0, 2.0, 2.0], [-3.0, 1.0, 0.0]])
    means = torch.cat([blob, stray])
    cleaned = clean_selection(means, torch.ones(len(means), dtype=torch.bool))
    assert cleaned[:300].float().mean() > 0.95 and not cleaned[300:].any()


def test_click_picks_object_under_pixel(tiny_builtin):
    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    lab = pixel_labels(cache[0].weights, scene.labels, cams.height, cams.width)
    sphere = scene.object_id("sphere")
    ys, xs = torch.nonzero(lab == sphere, as_tuple=True)
    assert len(ys) > 0
    i = len(ys) // 2
    mask, oid = select_click(scene, cache[0].weights, cams.width, int(xs[i]), int(ys[i]))
    assert oid == sphere and torch.equal(mask, scene.labels == sphere)
    with pytest.raises(ValueError, match="outside"):
        gaussian_under_pixel(cache[0].weights, cams.width, cams.width + 5, 0)


def test_grow_from_seed_on_unlabelled_scene():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(200, 3, generator=g) * 0.2
    b = torch.rand(200, 3, generator=g) * 0.2 + torch.tensor([3.0, 0, 0])
    grown = grow_from_seed(torch.cat([a, b]), seed=5)
    assert grown[:200].all() and not grown[200:].any()
