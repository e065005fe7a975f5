"""A classifier's preprocessing is part of its config (docs/classifiers.md): a torchvision model gets
its weights enum's own transforms by default (read from the enum, not hard-coded), a state dict what
its config states (required: its training recipe is not in the file), the demo CNN none.

Before this a state-dict classifier always got ImageNet preprocessing, so a 10-class ResNet-18
trained on 32-px images was silently fed 224-px upsampled inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from diffxai.config.checks import check_config
from diffxai.core.errors import DiffxaiError
from diffxai.models.classifiers import Classifier, Preprocess, load_classifier
from helpers import build_tiny_resnet_state_dict, tiny_config


def _inputs_seen(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    """What the network itself receives for images ``x`` in [-1, 1]."""
    seen = []
    handle = clf.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            clf(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    "arch, weights, resize, crop",
    [
        ("resnet18", "IMAGENET1K_V1", 256, 224),
        ("resnet50", "IMAGENET1K_V2", 232, 224),
        ("efficientnet_b0", "IMAGENET1K_V1", 256, 224),  # bicubic
        ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1", 384, 384),  # bicubic
    ],
)
def test_torchvision_default_is_the_weights_own_transforms(arch, weights, resize, crop):
    w = torchvision.models.get_model_weights(arch)[weights]
    pre = Preprocess.of_weights(w)
    t = w.transforms()
    assert (pre.resize, pre.crop) == (resize, crop) == (t.resize_size[0], t.crop_size[0])
    assert pre.mean == tuple(t.mean) and pre.std == tuple(t.std) and pre.interpolation == t.interpolation.value
    # applied to a [-1, 1] batch it equals torchvision's own transform of the [0, 1] images
    x = torch.rand(2, 3, 40, 56) * 2 - 1
    torch.testing.assert_close(pre(x, 3), t((x + 1) / 2), rtol=1e-5, atol=1e-5)


def test_resnet18_v1_default_is_the_posters_recipe():
    """The weights' transforms for the poster's ResNet-18 are exactly what was hard-coded before
    (Resize(256), CenterCrop(224), ImageNet mean/std, bilinear, antialiased): no result changes."""
    from torchvision.transforms.v2 import functional as TF

    pre = Preprocess.of_weights(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert pre == Preprocess.imagenet()
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    old = TF.center_crop(TF.resize((x + 1) / 2, [256], antialias=True), [224, 224]).expand(-1, 3, -1, -1)
    old = TF.normalize(old, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert torch.equal(pre(x, 3), old)


def test_a_state_dict_classifier_gets_the_preprocessing_its_config_states(tmp_path):
    """A 10-class ResNet-18 trained on 32-px images in [-1, 1] sees 32-px inputs, not 224-px ones."""
    path = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=10)
    spec = {"source": "state_dict", "arch": "resnet18", "path": str(path), "num_classes": 10}
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    clf = load_classifier({**spec, "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}})
    seen = _inputs_seen(clf, x)
    assert seen.shape == (3, 3, 32, 32)
    torch.testing.assert_close(seen, x)  # ((x + 1) / 2 - 0.5) / 0.5 = x
    assert torch.equal(_inputs_seen(load_classifier({**spec, "preprocess": "none"}), x), x)
    cifar = {"resize": 32, "crop": 32, "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.243, 0.261]}
    seen = _inputs_seen(load_classifier({**spec, "preprocess": cifar}), torch.rand(2, 3, 64, 48) * 2 - 1)
    assert seen.shape == (2, 3, 32, 32)  # shorter side to 32, then the centre 32 x 32
    with pytest.raises(DiffxaiError, match="preprocess is required with source state_dict") as err:
        load_classifier(spec)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_one_channel_image_is_repeated_for_a_three_channel_network(tmp_path):
    path = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=10)
    clf = load_classifier(
        {"source": "state_dict", "arch": "resnet18", "path": str(path), "num_classes": 10, "preprocess": {"resize": 16}}
    )
    seen = _inputs_seen(clf, torch.rand(2, 1, 8, 8) * 2 - 1)
    assert seen.shape == (2, 3, 16, 16) and torch.equal(seen[:, 0], seen[:, 2])


def test_the_demo_classifier_sees_its_training_range():
    from diffxai.models.classifiers import DemoCNN

    clf = Classifier(DemoCNN(10, 1, 4), None, 10)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(_inputs_seen(clf, x), x)


# --- the config: documented, checked up front ----------------------------------------------

STATE_DICT = {"source": "state_dict", "arch": "resnet18", "path": "PATH", "num_classes": 10}
CASES = {
    "state_dict_without_preprocess": ({}, "config.models.classifier.preprocess: required for source state_dict"),
    "mean_without_std": ({"preprocess": {"mean": [0.5]}}, "config.models.classifier.preprocess.std"),
    "mean_and_std_differ": (
        {"preprocess": {"mean": [0.5], "std": [0.5, 0.5, 0.5]}},
        "config.models.classifier.preprocess.std",
    ),
    "two_means": ({"preprocess": {"mean": [0.5, 0.5], "std": [0.5, 0.5]}}, "config.models.classifier.preprocess.mean"),
    "unknown_word": ({"preprocess": "imagenet"}, "config.models.classifier.preprocess"),
    "unknown_key": ({"preprocess": {"size": 32}}, "config.models.classifier.preprocess.size: unknown key"),
    "bad_size": ({"preprocess": {"resize": [32]}}, "config.models.classifier.preprocess.resize"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_preprocess_is_one_line_naming_the_field(tmp_path, case):
    change, expected = CASES[case]
    path = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=10)
    cfg = tiny_config()
    cfg["models"]["classifier"] = {**STATE_DICT, "path": str(path), **change}
    with pytest.raises(DiffxaiError) as err:
        check_config(cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith(expected), str(err.value)


def test_the_demo_takes_no_other_preprocessing():
    cfg = tiny_config()
    cfg["models"]["classifier"]["preprocess"] = {"resize": 32}
    with pytest.raises(DiffxaiError, match=r"^config\.models\.classifier\.preprocess: the demo classifier"):
        check_config(cfg)
    cfg["models"]["classifier"]["preprocess"] = "none"
    check_config(cfg)


def test_preprocess_is_a_setting_of_every_job_that_loads_the_classifier(tmp_path):
    """So a changed recipe reruns the classifier's jobs; unset, a torchvision model's is its weights'
    (given by arch and weights already), so existing runs rerun nothing; the demo's never."""
    from diffxai.workflow.params import rule_params

    path = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=10)
    cfg = check_config(tiny_config())
    assert "preprocess" not in rule_params("likelihood_compute", cfg, {"cls": "digit_3"})["models"]["classifier"]
    pre = {"resize": 32, "mean": [0.5], "std": [0.5]}
    cfg = tiny_config()
    cfg["models"]["classifier"] = {**STATE_DICT, "path": str(path), "preprocess": pre}
    cfg = check_config(cfg)
    for rule in ("likelihood_compute", "attribution_compute", "schedules_generate", "components_baseline"):
        wc = {"cls": "digit_3", "method": "ig", "schedule": "uniform"}
        got = rule_params(rule, cfg, wc)["models"]["classifier"]["preprocess"]
        assert got == {"crop": None, "interpolation": "bilinear", "mean": [0.5], "resize": 32, "std": [0.5]}, rule
    tv = {"source": "torchvision", "arch": "resnet18", "weights": "IMAGENET1K_V1", "num_classes": 10}
    cfg = tiny_config()
    cfg["models"]["classifier"] = tv
    assert rule_params("likelihood_compute", check_config(cfg), {"cls": "digit_3"})["models"]["classifier"] == {
        "arch": "resnet18",
        "source": "torchvision",
        "weights": "IMAGENET1K_V1",
    }
