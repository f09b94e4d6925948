import pytest
import torch

from stylize3d.blend_cache import BlendCache
from stylize3d.builtin_scene import BACKGROUND
from stylize3d.labels import pixel_labels
from stylize3d.selection import (
    clean_selection,
    gaussian_under_pixel,
    parse_box,
    segment_scene,
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


def test_segments_of_an_unlabelled_scene_without_a_floor():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(200, 3, generator=g) * 0.2
    b = torch.rand(200, 3, generator=g) * 0.2 + torch.tensor([3.0, 0, 0])
    seg = segment_scene(torch.cat([a, b]), torch.full((400, 3), 0.5))
    grown = seg == seg[5]
    assert grown[:200].all() and not grown[200:].any()


def test_click_without_masks_selects_the_clicked_object_not_the_scene(builtin_dir):
    """The built-in scene with its labels withheld (an images-only capture): a click on any object selects
    >= 90% of that object's Gaussians and <= 5% of the others; a click on the floor selects the floor."""
    from stylize3d.scenes import load_scene

    loaded = load_scene("builtin", 128)
    scene, truth = loaded.scene, loaded.scene.labels.clone()
    views = [0, 17, 31]
    cache = BlendCache.build(scene, loaded.cameras[views], loaded.background)
    scene.labels = torch.zeros_like(truth)  # no masks, no labels
    for oid, name in scene.object_names.items():
        clicked = False
        for v in range(len(views)):
            lab = pixel_labels(cache[v].weights, truth, cache.height, cache.width)
            ys, xs = torch.nonzero(lab == oid, as_tuple=True)
            if len(ys) < 20:
                continue
            i = len(ys) // 2
            mask, got = select_click(scene, cache[v].weights, cache.width, int(xs[i]), int(ys[i]))
            obj = truth == oid
            assert got == -1
            hit, extra = float((mask & obj).sum() / obj.sum()), float((mask & ~obj).sum() / (~obj).sum())
            assert hit >= 0.9 and extra <= 0.05, f"{name} in view {views[v]}: {hit:.1%} of it, {extra:.1%} of the rest"
            clicked = True
        assert clicked, f"{name} is not visible in the test views"


def test_box_leaves_out_splats_that_reach_far_outside_it(tiny_builtin):
    from stylize3d.selection import box_overreach

    _, scene, _ = tiny_builtin
    scene = scene.clone()
    cube = scene.labels == scene.object_id("cube")
    lo, hi = scene.means[cube].min(0).values, scene.means[cube].max(0).values
    box = (*(lo - 0.02).tolist(), *(hi + 0.02).tolist())
    big = torch.nonzero(cube)[:3, 0]
    scene.scales[big] = torch.log(torch.tensor(2.0))  # 3 sigma = 6 units: paints the whole image
    assert box_overreach(scene, box)[big].all()
    assert not (box_overreach(scene, box) & cube).sum() > 3
    mask = select_box(scene, box, clean=False)
    assert not mask[big].any() and mask[cube].sum() == cube.sum() - 3


def test_faint_fuzz_and_a_thick_floor_do_not_join_objects():
    """What a reconstruction looks like: a thick floor with floaters under it, two opaque objects on it, and a
    faint haze between them. Segments: the floor, and each object on its own (the haze joins the nearest)."""
    g = torch.Generator().manual_seed(0)
    floor = torch.cat([torch.rand(2000, 2, generator=g) * 4 - 2, torch.randn(2000, 1, generator=g) * 0.01], 1)
    under = torch.cat([torch.rand(200, 2, generator=g) * 4 - 2, -torch.rand(200, 1, generator=g) * 0.4], 1)

    def blob(cx):
        d = torch.nn.functional.normalize(torch.randn(600, 3, generator=g), dim=1) * 0.3
        return d + torch.tensor([cx, 0.0, 0.32])

    haze = torch.cat([torch.linspace(-0.5, 0.5, 300)[:, None], torch.zeros(300, 1), torch.full((300, 1), 0.3)], 1)
    means = torch.cat([floor, under, blob(-0.8), blob(0.8), haze])
    opac = torch.cat([torch.full((2200 + 1200,), 4.0), torch.full((300,), -3.0)])  # logits: solid / faint
    rgb = torch.cat([torch.full((2200, 3), 0.6), torch.tensor([[0.9, 0.1, 0.1]]).expand(1200, 3),
                     torch.full((300, 3), 0.5)])
    seg = segment_scene(means, rgb, opac)
    a, b = seg[2200:2800], seg[2800:3400]
    assert (seg[:2200] == 0).float().mean() > 0.97  # the floor, its floaters below included
    ida, idb = int(a.mode().values), int(b.mode().values)
    assert ida > 0 and idb > 0 and ida != idb, "the haze joined the two objects"
    assert (a == ida).float().mean() >= 0.9 and (b == idb).float().mean() >= 0.9
    assert not (seg[:2200] == ida).any() and not (b == ida).any()
