"""Feature backbones: real ImageNet weights classify real photos; loaders refuse bad files; nothing downloads."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from stylize3d import backbones as bb

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def effnet() -> bb.EfficientNetLite0Backbone:
    return bb.EfficientNetLite0Backbone()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache without VGG16 weights, whatever this machine holds."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def _random_vgg_trunk_state() -> dict[str, torch.Tensor]:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    return {f"features.{k}": v for k, v in make_layers(cfgs["D"][:9]).state_dict().items()}


def _photo(name: str) -> torch.Tensor:
    import skimage.data as data
    img = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255  # [1, 3, H, W]
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


def test_effnet_state_dict_matches_file_exactly(effnet):
    file_state = bb.load_state_dict_file(bb.efficientnet_lite0_weights_path())
    assert set(effnet.net.state_dict()) == set(file_state)
    assert torch.equal(
        effnet.net._blocks[15]._project_conv.weight, file_state["_blocks.15._project_conv.weight"]
    )
    assert sum(p.numel() for p in effnet.parameters()) == 4_652_008


@pytest.mark.parametrize(("photo", "classes"), [("chelsea", range(281, 286)), ("coffee", (967, 968))])
def test_effnet_classifies_real_photos(effnet, photo, classes):
    with torch.no_grad():
        logits = effnet.classify(_photo(photo))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in classes


def test_effnet_features_frozen_but_differentiable(effnet):
    effnet.train()
    assert not effnet.training and not any(p.requires_grad for p in effnet.parameters())
    img = torch.rand(2, 3, 64, 48, requires_grad=True)
    feats = effnet(img)
    assert feats.shape == (2, effnet.out_channels, 8, 6)
    feats.square().mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in effnet.parameters())


def test_effnet_rejects_bad_input(effnet):
    with pytest.raises(ValueError, match="img"):
        effnet(torch.rand(1, 4, 32, 32))


def test_vgg16_from_local_file(tmp_path):
    path = tmp_path / "vgg.pth"
    state = _random_vgg_trunk_state()
    torch.save(state, path)
    vgg = bb.load_backbone("vgg16", weights_path=path)
    assert vgg.name == "vgg16" and not any(p.requires_grad for p in vgg.parameters())
    assert torch.equal(vgg.trunk[14].weight, state["features.14.weight"])
    img = torch.rand(1, 3, 32, 40, requires_grad=True)
    feats = vgg(img)
    assert feats.shape == (1, 768, 8, 10)
    # relu3_3 is the last 256 channels; recompute it by hand
    x = (img - torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(bb.IMAGENET_STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(feats[:, 512:], vgg.trunk(x), rtol=1e-5, atol=1e-5)
    feats.sum().backward()
    assert img.grad.abs().sum() > 0


def test_auto_picks_vgg16_from_hub_cache(empty_hub, caplog):
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(_random_vgg_trunk_state(), empty_hub / "checkpoints" / bb.VGG16_FILENAME)
    with caplog.at_level(logging.INFO, logger="stylize3d.backbones"):
        assert bb.load_backbone("auto").name == "vgg16"
    assert "vgg16" in caplog.text
    assert bb.judge_backbone("effnet-lite0").name == "vgg16"


def test_auto_falls_back_offline(empty_hub, caplog):
    with caplog.at_level(logging.INFO, logger="stylize3d.backbones"):
        assert bb.load_backbone("auto").name == "effnet-lite0"
    assert "effnet-lite0" in caplog.text
    with pytest.raises(ValueError, match=r"vgg16-397923af\.pth"):
        bb.load_backbone("vgg16")


def test_corrupt_or_mismatched_weights_raise_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pth"):
        bb.VGG16Backbone(corrupt)
    wrong = tmp_path / "wrong.pth"
    state = _random_vgg_trunk_state()
    state["features.14.weight"] = torch.zeros(8, 8, 3, 3)
    torch.save(state, wrong)
    with pytest.raises(ValueError, match="wrong.pth"):
        bb.VGG16Backbone(wrong)
    with pytest.raises(ValueError, match="wrong.pth"):
        bb.EfficientNetLite0Backbone(wrong)
    with pytest.raises(ValueError, match="missing.pth"):
        bb.VGG16Backbone(tmp_path / "missing.pth")


def test_judge_differs_from_optimised(empty_hub):
    assert bb.judge_backbone("effnet-lite0").name == "filterbank"
    assert bb.judge_backbone("vgg16").name == "effnet-lite0"
    assert bb.judge_backbone("filterbank").name == "effnet-lite0"
    with pytest.raises(ValueError, match="optimised_name"):
        bb.judge_backbone("auto")
    with pytest.raises(ValueError, match="backbone name"):
        bb.load_backbone("resnet")


@pytest.mark.skipif(
    bb.find_vgg16_weights() is None, reason="torchvision's vgg16-397923af.pth not in the hub cache"
)
def test_real_vgg16_from_hub_cache():
    vgg = bb.load_backbone("auto")
    assert vgg.name == "vgg16"
    assert vgg(torch.rand(1, 3, 32, 32)).shape == (1, 768, 8, 8)
