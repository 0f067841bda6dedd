"""GLEAM-C encoder: registry ImageNet weights mapped completely, clear errors, embedding function."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from data_assets.errors import ConfigError
from data_assets.registry_assets import asset_path
from gleam_models.config import EncoderConfig
from gleam_models.embed import make_embed_fn
from gleam_models.encoder import (create_encoder, load_backbone_weights, load_encoder, map_state_dict,
                                  read_state_dict)
from gleam_models.checkpoint import save_model
from gleam_models.synthetic import make_synthetic_dataset

SMALL = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}


def test_mobilenet_v2_registry_weights_map_every_key_and_classify_like_torchvision():
    source = read_state_dict(asset_path("mobilenet_v2"))
    timm_model = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=1000).eval()
    before = {k: v.clone() for k, v in timm_model.state_dict().items()}
    dropped = load_backbone_weights(timm_model, source, "mobilenet_v2")  # strict load: none missing/unexpected
    assert dropped == []  # with a 1000-class head every tensor, classifier included, has a home
    after = timm_model.state_dict()
    left_random = [k for k in after if k.endswith(("weight", "bias")) and torch.equal(after[k], before[k])]
    assert left_random == []
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(asset_path("mobilenet_v2"), map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(timm_model(x), reference(x), rtol=1e-4, atol=1e-4)


def test_mobilenet_v2_encoder_uses_all_backbone_weights_and_drops_only_the_head():
    source = read_state_dict(asset_path("mobilenet_v2"))
    encoder = create_encoder(EncoderConfig(backbone="mobilenetv2_100", weights="registry:mobilenet_v2", input_size=SMALL))
    state = encoder.backbone.state_dict()
    assert len(state) == len(source) - 2  # classifier.1.weight/bias are the only unused tensors
    torch.testing.assert_close(state["conv_stem.weight"], source["features.0.0.weight"])
    torch.testing.assert_close(state["bn2.running_var"], source["features.18.1.running_var"])
    out = encoder(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 1280)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_efficientnet_lite0_registry_weights_map():
    encoder = create_encoder(EncoderConfig(backbone="tf_efficientnet_lite0", weights="registry:efficientnet_lite0",
                                           input_size=SMALL, embed_dim=64))
    assert encoder.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    torch.testing.assert_close(encoder.mean.flatten(), torch.full((3,), 0.5))  # TF Lite0: inputs in [-1, 1]


@pytest.mark.parametrize("backbone, weights", [("efficientnet_lite0", "registry:efficientnet_lite0"),
                                               ("mobilenetv2_050", "registry:mobilenet_v2")])
def test_registry_weights_on_a_look_alike_backbone_are_refused(backbone, weights):
    with pytest.raises(ValueError, match=r"fit only model.backbone: (tf_efficientnet_lite0|mobilenetv2_100)"):
        EncoderConfig(backbone=backbone, weights=weights)


def test_the_tf_ported_lite0_weights_classify_a_real_photo_only_as_tf_efficientnet_lite0():
    """The registry Lite0 weights, with the head, on matplotlib's photo of Grace Hopper: timm's
    tf_efficientnet_lite0 (TF padding, its own mean/std) reads "military uniform" (ImageNet class
    652) as MobileNetV2 does; efficientnet_lite0 with ImageNet's mean/std ranks another class first."""
    import matplotlib
    from PIL import Image

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    pixels = torch.tensor(np.asarray(Image.open(photo).convert("RGB").resize((224, 224)))).permute(2, 0, 1)[None]
    source = read_state_dict(asset_path("efficientnet_lite0"))

    def top1(arch: str) -> int:
        net = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
        net.load_state_dict(map_state_dict(source, net.state_dict())[0], strict=True)
        cfg = timm.data.resolve_model_data_config(net)
        x = (pixels / 255.0 - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            return int(net(x).argmax())

    assert top1("tf_efficientnet_lite0") == 652
    assert top1("efficientnet_lite0") != 652


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown timm architecture 'mobilenetv2_10'.*mobilenetv2_100"):
        create_encoder(EncoderConfig(backbone="mobilenetv2_10", weights="none"))


def test_weights_of_another_architecture_are_refused_clearly(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(path))
    with pytest.raises(ConfigError, match="does not fit|cannot be mapped"):
        create_encoder(EncoderConfig(weights=str(path), input_size=SMALL))


def test_checkpoint_of_another_architecture_names_the_difference(tmp_path):
    other = create_encoder(EncoderConfig(backbone="test_efficientnet", weights="none", input_size=SMALL))
    save_model(tmp_path / "model.safetensors", other, None)
    with pytest.raises(ConfigError) as err:
        load_encoder(EncoderConfig(backbone="test_resnet", weights="none", input_size=SMALL), tmp_path / "model.safetensors")
    msg = str(err.value)
    assert "model.safetensors" in msg and "test_resnet" in msg
    assert "missing" in msg and "unexpected" in msg
    # same architecture, different projection size: a shape mismatch, named
    proj = create_encoder(EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL))
    save_model(tmp_path / "proj.safetensors", proj, None)
    with pytest.raises(ConfigError, match=r"proj.weight checkpoint \(16, \d+\) vs model \(32, \d+\)"):
        load_encoder(EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=32, input_size=SMALL),
                     tmp_path / "proj.safetensors")


def test_checkpoint_roundtrip_and_embed_fn(tmp_path):
    cfg = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL)
    encoder = create_encoder(cfg)
    with torch.no_grad():
        encoder.proj.weight.mul_(3)
    save_model(tmp_path / "model.safetensors", encoder, None)
    loaded = load_encoder(cfg, tmp_path / "model.safetensors")
    torch.testing.assert_close(loaded.proj.weight, encoder.proj.weight)
    manifest = make_synthetic_dataset(tmp_path / "data", n_locations=5, modalities=("panorama",), size=40)
    import pandas as pd
    df = pd.read_parquet(manifest)
    embed = make_embed_fn(loaded, cfg, tmp_path / "cache", batch_size=2)
    sats = [tmp_path / "data" / p for p in df["satellite_path"]]
    panos = [tmp_path / "data" / p for p in df["query_path"]]
    a, b = embed(sats, "satellite"), embed(panos, "panorama")
    assert a.shape == (5, 16) and b.shape == (5, 16) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(embed(sats, "satellite"), a, rtol=1e-5, atol=1e-6)  # from the cache now
    assert list((tmp_path / "cache").rglob("*.npy"))
    with pytest.raises(ConfigError, match="view 'drone'"):
        embed(sats, "drone")
