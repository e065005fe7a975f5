"""Real-size checkpoints without the network (diffxai.models.realsize).

The full-size networks are checked on the ``meta`` device only (parameter counts against the
published ones, nothing allocated); the ``tiny`` variants (same structure, narrow) are saved and
reloaded through the real loaders with no network, as the full-size ones would be.
"""

from __future__ import annotations

import json

import pytest
import torch

from diffxai.core.errors import DiffxaiError
from diffxai.models import realsize

IMAGENET_PREPROCESS = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("part", sorted(realsize.PUBLISHED_PARAMETERS))
def test_full_size_parameter_counts_match_the_published_ones(part):
    assert realsize.count_parameters(part) == realsize.PUBLISHED_PARAMETERS[part]


def test_published_configs_and_tiny_variants_keep_the_structure():
    unet = realsize.config("sd14/unet")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert (unet["cross_attention_dim"], unet["attention_head_dim"], unet["sample_size"]) == (768, 8, 64)
    assert realsize.config("sd14/vae")["scaling_factor"] == 0.18215
    text = realsize.config("sd14/text_encoder")
    assert (text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]) == (768, 12, 49408)
    cat = realsize.config("ddpm-cat-256/unet")
    assert cat["down_block_types"][4] == "AttnDownBlock2D"  # 256 / 2**4 = attention at 16x16
    assert realsize.SD14_SCHEDULER["beta_schedule"] == "scaled_linear"
    for part in realsize.TINY:
        full, tiny = realsize.config(part), realsize.config(part, tiny=True)
        assert set(full) == set(tiny)
        changed = {k for k in full if full[k] != tiny[k]}
        assert changed == set(realsize.TINY[part]), part
        assert not changed & {"down_block_types", "up_block_types", "layers_per_block", "num_hidden_layers"}
    realsize.config("sd14/unet")["block_out_channels"].append(1)  # a copy: the published dict is unchanged
    assert realsize.SD14_UNET["block_out_channels"] == [320, 640, 1280, 1280]


def test_state_bytes_are_the_parameter_bytes():
    assert realsize.state_bytes("resnet18") == pytest.approx(4 * realsize.PUBLISHED_PARAMETERS["resnet18"], rel=1e-3)
    unet16 = realsize.state_bytes("sd14/unet", torch.float16)
    assert unet16 == 2 * realsize.PUBLISHED_PARAMETERS["sd14/unet"]


def test_tokenizer_has_the_real_vocabulary_size():
    vocab, merges = realsize.clip_vocab_and_merges()
    assert len(vocab) == 49408 and sorted(vocab.values()) == list(range(49408))
    assert len(merges) == 49408 - 512 - 2
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    for merge in merges:
        left, right = merge.split(" ")
        assert vocab[left] < vocab[left + right] and vocab[right] < vocab[left + right], merge
    tok = realsize.build_tokenizer()
    assert len(tok) == 49408 and tok.model_max_length == 77
    ids = tok(["a photo of a tiger"], padding="max_length", max_length=77).input_ids[0]
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407
    assert "tiger</w>" in tok.convert_ids_to_tokens(ids)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("realsize")
    return realsize.build_checkpoints(out, ["sd14", "ddpm-cat-256", "resnet18"], tiny=True, log=None)


def test_tiny_sd14_saves_like_the_real_one_and_loads_offline(tiny, monkeypatch):
    from diffxai.models.loading import load_backend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tiny["sd14"]
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["scheduler"][1] == "PNDMScheduler"
    for f in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (path / f).is_file(), f
    assert (path / "text_encoder" / "model.safetensors").is_file()
    assert (path / "tokenizer" / "vocab.json").is_file() and (path / "tokenizer" / "merges.txt").is_file()
    sd = load_backend("stable_diffusion", str(path), "cpu")
    assert type(sd.scheduler).__name__ == "PNDMScheduler"
    assert len(sd.tokenizer) == 49408 and sd.tokenizer.model_max_length == 77
    for key in ("down_block_types", "up_block_types", "layers_per_block", "attention_head_dim"):
        assert _plain(sd.unet.config[key]) == _plain(realsize.SD14_UNET[key]), key
    assert sd.vae.config.scaling_factor == 0.18215 and sd.vae_scale_factor == 8
    assert sd.sample_shape() == (4, 16, 16)
    emb = sd.encode(["a photo of a tiger"])
    assert emb.shape == (1, 77, 48)
    x = torch.randn(2, *sd.sample_shape(), generator=torch.Generator().manual_seed(0))
    eps = sd.eps_guided(x, 500, emb, 7.5)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    built = realsize.build_sd14_unet(tiny=True)  # the same seed writes the same weights
    torch.testing.assert_close(sd.unet.conv_in.weight, built.conv_in.weight)


def _plain(v):
    return list(v) if isinstance(v, list | tuple) else v


def test_sd14_weights_are_saved_in_the_requested_dtype(tmp_path):
    from safetensors import safe_open

    path = realsize.save_sd14(tmp_path / "sd14", tiny=True, dtype=torch.float16)
    with safe_open(str(path / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor("conv_in.weight").dtype == torch.float16


def test_tiny_ddpm_cat_256_loads_through_the_pixel_loader(tiny):
    from diffxai.models.loading import load_backend

    model = load_backend("pixel", str(tiny["ddpm-cat-256"]), "cpu", channels=3)
    assert not model.conditional and model.sample_shape() == (3, 32, 32)
    cfg = model.scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps) == ("linear", 1e-4, 0.02, 1000)
    assert _plain(model.unet.config.down_block_types) == realsize.DDPM_CAT_256_UNET["down_block_types"]
    eps = model.eps(torch.zeros(1, 3, 32, 32), 10)
    assert eps.shape == (1, 3, 32, 32) and torch.isfinite(eps).all()


def test_resnet_state_dict_loads_through_load_classifier(tiny):
    from diffxai.models.classifiers import load_classifier

    spec = {
        "source": "state_dict",
        "arch": "resnet18",
        "path": str(tiny["resnet18"]),
        "preprocess": IMAGENET_PREPROCESS,
    }
    clf = load_classifier(spec)
    net = realsize.build_resnet("resnet18")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(clf.net(x), net(x))
        assert clf(x * 2 - 1).shape == (1, 1000)


def test_build_checkpoints_command(tmp_path):
    from diffxai.workflow.cli import main

    assert main(["build-checkpoints", str(tmp_path), "--only", "resnet18"]) == 0
    assert (tmp_path / "resnet18.safetensors").is_file()
    assert realsize.main([str(tmp_path), "--only", "resnet34"]) == 1  # what the command runs, in-process
    with pytest.raises(DiffxaiError, match="unknown checkpoint"):
        realsize.build_checkpoints(tmp_path, ["sd15"], log=None)


def test_photo_folders_from_scikit_image(tmp_path):
    from diffxai.core.files import list_images
    from diffxai.io.images import load_folder

    written = realsize.write_photo_folders(tmp_path / "cats")
    assert sorted(written) == sorted(["persian_cat", "siamese_cat", "egyptian_cat", "tiger"])
    assert [p.name for p in list_images(tmp_path / "cats" / "tiger")] == ["chelsea.png", "chelsea_mirror.png"]
    x, ids = load_folder(tmp_path / "cats" / "tiger", 8, 256)  # config/imagenet_cats.yaml: image_size 256
    assert x.shape == (2, 3, 256, 256) and ids == ["chelsea.png", "chelsea_mirror.png"]
    other = realsize.write_photo_folders(tmp_path / "mixed", {"cup": ["coffee"], "rocket": ["rocket", "astronaut"]})
    assert len(other["rocket"]) == 4
    with pytest.raises(DiffxaiError, match="no photo"):
        realsize.write_photo_folders(tmp_path / "bad", {"x": ["not_a_photo"]})
