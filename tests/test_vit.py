"""The small Vision Transformer (spuriouslab.nets.vit): its size, shapes, errors, seeding, stacking over seeds, its
Grad-CAM counterpart on a case whose answer is known, and one CLI run per experiment that takes it."""

import math

import pandas as pd
import pytest
import torch

from spuriouslab.data.borders import frame_mask
from spuriouslab.errors import ConfigError
from spuriouslab.nets import analysis
from spuriouslab.nets.models import MODELS, ResNetCIFAR, build_model
from spuriouslab.nets.train import seeded
from spuriouslab.nets.vit import ViT, sincos_2d


def _formula(c: int, k: int, p: int, d: int, depth: int, r: int) -> int:
    """Parameters by hand: patch embedding (conv weight + bias), per block two LayerNorms (2d each), qkv (d x 3d +
    3d), output projection (d x d + d), MLP (d x rd + rd, rd x d + d); the final LayerNorm; the head."""
    block = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (r * d * d + r * d) + (r * d * d + d)
    return c * p * p * d + d + depth * block + 2 * d + d * k + k


def test_parameter_count_of_a_stated_configuration():
    # 3 x 12 x 20 images, 7 classes, patch 4, dim 32, depth 3, 2 heads, MLP ratio 2
    m = ViT(3, (12, 20), 7, patch=4, dim=32, depth=3, heads=2, mlp_ratio=2)
    assert sum(q.numel() for q in m.parameters()) == _formula(3, 7, 4, 32, 3, 2) == 27_495
    # the registry's default on CIFAR-sized inputs; heads change no count
    assert MODELS["vit"].size((3, 32, 32), 10)[0] == _formula(3, 10, 4, 64, 4, 2) == 137_802
    assert sum(q.numel() for q in ViT(3, 32, 10, heads=8).parameters()) == 137_802
    # the position embedding is a fixed buffer, not a parameter
    assert "pos_embed" in dict(m.named_buffers()) and not any("pos" in n for n, _ in m.named_parameters())


def test_the_meta_device_count_includes_the_attention_maps():
    # leaf outputs per sample: patch embedding DT; per block norm1, qkv (3), proj, norm2, fc2 (7 TD), fc1 and GELU
    # (2 r TD), the softmax's heads x T^2; the final norm TD; the head K
    T, D, L, h, r, K = 64, 64, 4, 4, 2, 10
    assert MODELS["vit"].size((3, 32, 32), K)[1] == D * T + L * (7 * T * D + 2 * r * T * D + h * T * T) + T * D + K


@pytest.mark.parametrize("size,patch", [((21, 21), 7), ((15, 9), 3), ((9, 15), 3), ((5, 5), 5), ((7, 3), 1)])
def test_shapes_for_odd_sizes_the_patch_divides(size, patch):
    m = ViT(2, size, 3, patch=patch, dim=16, depth=1, heads=2)
    x = torch.rand(4, 2, *size)
    tokens = (size[0] // patch) * (size[1] // patch)
    assert m.tokens(x).shape == (4, tokens, 16) and m(x).shape == (4, 3) and m.features(x).shape == (4, 16)
    assert m.patch_embed(x).shape == (4, 16, size[0] // patch, size[1] // patch)


def test_a_patch_that_does_not_divide_is_a_one_line_error():
    with pytest.raises(ValueError) as info:
        ViT(3, (10, 12), 5, patch=4)
    msg = str(info.value)
    assert "\n" not in msg and "patch: got 4" in msg and "10" in msg and "12" in msg
    with pytest.raises(ConfigError, match=r"^vit-encoder: patch: got 4.*\(9\).*\(9\)$"):
        build_model("vit-encoder", (3, 9, 9), 8)
    for kwargs, needle in [({"heads": 3}, "heads: got 3"), ({"dim": 30, "heads": 2}, "dim: got 30")]:
        with pytest.raises(ValueError, match=needle):
            ViT(3, 8, 2, **kwargs)
    with pytest.raises(ValueError, match="got images of 8x12; this ViT takes 8x8"):
        ViT(3, 8, 2)(torch.zeros(1, 3, 8, 12))


def test_sincos_embedding_is_beyer_et_al_s():
    pe = sincos_2d(2, 3, 8)  # omega = (1, 1e-4): token (r, c) -> sin c w, cos c w, sin r w, cos r w
    r, c = 1, 2
    w = torch.tensor([1.0, 1e-4], dtype=torch.float64)
    expected = torch.cat([(c * w).sin(), (c * w).cos(), (r * w).sin(), (r * w).cos()]).float()
    torch.testing.assert_close(pe[r * 3 + c], expected)
    assert torch.equal(pe[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def _seeded_vit(seed: int, shape=(3, 12, 12), n_out=5) -> torch.nn.Module:
    return seeded(
        lambda: build_model("vit", shape, n_out, dim=16, depth=2, heads=2), torch.Generator().manual_seed(seed)
    )


def test_a_seeded_forward_pass_is_reproducible():
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    before = torch.random.get_rng_state()
    a, b, c = _seeded_vit(3)(x), _seeded_vit(3)(x), _seeded_vit(4)(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global stream is neither read nor changed
    torch.manual_seed(3)  # the registry's contract: the numbers PyTorch's own initialisation gives under that seed
    reference = build_model("vit", (3, 12, 12), 5, dim=16, depth=2, heads=2)
    torch.testing.assert_close(reference(x), a, rtol=0, atol=0)


def _linear_vit() -> ViT:
    """A ViT whose logit 0 is linear in the patch embedding: blocks zeroed to the identity (their residual branches
    end in zero projections), the final LayerNorm replaced by the identity, embedding channel 0 = the sum of a
    patch's channel-0 pixels (other channels 0), head row 0 reads channel 0 with a large bias (class 0 is always
    predicted).  Then y_0 = mean_t (E_t + pos_t)_0 + 10, Grad-CAM's channel weights are the mean gradients
    (1 / T on channel 0, 0 elsewhere), and the map of patch t is exactly s_t / T (s_t its channel-0 pixel sum)."""
    m = ViT(3, 12, 2, patch=4, dim=8, depth=1, heads=2)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.patch_embed.weight[0, 0] = 1.0
        m.head.weight[0, 0] = 1.0
        m.head.bias[0] = 10.0
    m.norm = torch.nn.Identity()
    return m


def test_gradcam_on_the_patch_embedding_on_a_case_with_a_known_answer():
    m = _linear_vit()
    assert analysis.cam_layer(m) == (m.patch_embed, "nearest")
    outer = torch.zeros(1, 3, 12, 12)
    outer[:, 0] = torch.from_numpy(frame_mask(12, 12, 4)).float()  # ones on the 8 outer patches of the 3 x 3 grid
    frac, maps = analysis.gradcam_border_fraction(m, outer, torch.from_numpy(frame_mask(12, 12, 4)))
    assert frac == pytest.approx(1.0) and maps.shape == (1, 12, 12)
    # every pixel of an outer patch carries s / T = 16 / 9; the centre patch 0: the map sums to 8 x 16 x 16 / 9
    torch.testing.assert_close(maps[0], outer[0, 0] * 16 / 9)
    assert float(maps.sum()) == pytest.approx(8 * 16 * 16 / 9, rel=1e-5)
    # a 2-pixel frame holds 80 of the 128 pixels of the outer patches, whose values are equal
    frac2, _ = analysis.gradcam_border_fraction(m, outer, torch.from_numpy(frame_mask(12, 12, 2)))
    assert frac2 == pytest.approx(80 / 128)
    centre = torch.zeros(1, 3, 12, 12)
    centre[:, 0, 4:8, 4:8] = 1.0  # mass on the centre patch only: none on the frame
    frac0, maps0 = analysis.gradcam_border_fraction(m, centre, torch.from_numpy(frame_mask(12, 12, 4)))
    assert frac0 == 0.0 and float(maps0.sum()) == pytest.approx(16 / 9 * 16, rel=1e-5)
    # a classifier wrapping a ViT encoder is dispatched to the encoder's patch embedding; a ResNet is unchanged
    from spuriouslab.nets.models import Classifier

    wrapped = Classifier(m, 2, 3)
    assert analysis.cam_layer(wrapped)[0] is m.patch_embed
    resnet = ResNetCIFAR(3, 10, 8)
    assert analysis.cam_layer(resnet) == (resnet.last_block, "bilinear")


def test_the_token_visualization_raises_its_units():
    m = _seeded_vit(0, (3, 8, 8)).eval()
    channels = [0, 3, 7]
    start = torch.full((3, 3, 8, 8), 0.5)
    before = analysis.channel_activation(m, m.feature_layer, start, channels, tokens=True)
    vis = analysis.visualize_channels(m, m.feature_layer, (3, 8, 8), channels, rounds=1, steps=15, tokens=True)
    after = analysis.channel_activation(m, m.feature_layer, vis, channels, tokens=True)
    assert (after > before + 1e-4).all() and vis.min() >= 0 and vis.max() <= 1


# ------------------------------------------------------------------------------------------ the CLI, end to end
def sets(*pairs: str) -> list[str]:
    """``--set`` arguments, one per ``key=value``."""
    return [arg for pair in pairs for arg in ("--set", pair)]


SMALL_VIT = sets("vit_dim=8", "vit_depth=1", "vit_heads=2")
NN = [
    *sets("preset=quick", "data=digits", "n_train=40", "n_test=40", "epochs=2", "step_size=2", "log_every=2"),
    *sets("seeds=2", "model=vit"),
    *SMALL_VIT,
    "--no-progress",
]


def _one_line_exit_2(result, needle: str) -> None:
    code, _, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in stderr, stderr


def test_a_patch_that_does_not_divide_through_the_cli(cli, tmp_path):
    # digits are 8x8; a 1-pixel border makes 10x10: the message names the size including the border
    _one_line_exit_2(
        cli("run", "memorization-nn", *NN, *sets("border=1"), "--out", tmp_path / "n"),
        "vit_patch: got 4; the images are 10x10 including the border (8x8 + 2 x 1)",
    )
    bf = sets("model=vit", "data=digits", "vit_patch=3")
    _one_line_exit_2(
        cli("run", "background-features", *bf, "--out", tmp_path / "b"), "vit_patch: got 3; digits images are 8x8"
    )
    _one_line_exit_2(
        cli(
            "run",
            "distillation",
            *sets("task=digits-background", "encoder=vit-encoder", "canvas=18"),
            "--out",
            tmp_path / "d",
        ),
        "vit-encoder: patch: got 4; it must divide the image height (18) and width (18)",
    )
    _one_line_exit_2(
        cli("run", "background-features", *sets("model=vit", "vit_heads=3"), "--out", tmp_path / "h"),
        "vit_heads: got 3",
    )
    assert not any((tmp_path / d).exists() for d in "nbdh")  # refused before a run directory is made


def test_memorization_nn_with_the_vit_end_to_end(cli, tmp_path):
    code, _, err = cli("run", "memorization-nn", *NN, *sets("border=2"), "--out", tmp_path / "n")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "n" / "results.parquet")
    assert len(df) == 2 and set(df.model) == {"vit"} and (df.status == "ok").all()
    assert df.spurious_acc.between(0, 1).all() and len(df.curve_test_acc.iloc[0]) == 2


def test_the_coloured_task_with_the_vit_end_to_end(cli, tmp_path):
    coloured = sets("border=1", "vit_patch=2", "border_content=coloured", "rho=1.0")  # 10x10 images, 5x5 patches
    code, _, err = cli("run", "memorization-nn", *NN, *coloured, "--out", tmp_path / "c")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "c" / "results.parquet")
    assert len(df) == 2 and (df.status == "ok").all()
    for col in ["acc_id", "acc_reversed", "worst_group_acc", "colour_flip", "spurious_corr"]:
        assert df[col].notna().all(), col


def test_background_features_with_the_vit_end_to_end(cli, tmp_path):
    tiny = sets("model=vit", "data=digits", "n_train=40", "n_test=20", "epochs=1", "seeds=1", "batch_size=20")
    tiny += sets("vis_channels=2", "vis_rounds=1", "vis_steps=2", "cam_images=10")
    code, _, err = cli("run", "background-features", *tiny, *SMALL_VIT, "--no-progress", "--out", tmp_path / "b")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert sorted(df.pipeline) == ["control", "padded"] and (df.status == "ok").all()
    assert (df.parameters == _formula(3, 10, 4, 8, 1, 2)).all()  # the registry's ViT at these options
    for col in ["gradcam_border_plain", "gradcam_border_train_colour", "vis_border_axis_abs", "acc_colour_gap"]:
        assert df[col].notna().all(), col
    # digits are 8x8 with a 1-pixel test frame and 4x4 patches: every patch holds 7 of its 16 pixels on the frame,
    # so with each patch's value on its pixels the fraction is 7/16 whatever the map
    assert df.gradcam_border_plain.sub(7 / 16).abs().max() < 1e-6
    assert "ViT (patch 4, dim 8, depth 1, 2 heads)" in (tmp_path / "b" / "summary.md").read_text()


def test_distillation_with_the_vit_encoder_end_to_end(cli, tmp_path):
    tiny = sets("task=digits-background", "encoder=vit-encoder", "epochs=1", "teacher_epochs=1", "log_every=1")
    tiny += sets("seeds=1", "n=40", "n_test=20", "embed=8", "batch_size=20")
    code, _, err = cli("run", "distillation", *tiny, "--no-progress", "--out", tmp_path / "d")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert len(df) == 1 and (df.status == "ok").all()
    assert all(math.isfinite(v) for v in df.acc_student_id) and df.acc_teacher_id.notna().all()
    assert "encoder: vit-encoder" in (tmp_path / "d" / "config.yaml").read_text()


def test_the_vit_presets_are_reproducible_by_name_beside_their_counterparts():
    import yaml

    from spuriouslab.figures import FIGURES, config_path
    from spuriouslab.reproduction import VIT_FIGURES

    names = list(FIGURES)
    for name, (counterpart, _) in VIT_FIGURES.items():
        assert names.index(name) == names.index(counterpart) + 1
        spec = yaml.safe_load(config_path(name).read_text())
        assert spec.get("model") == "vit" or spec.get("encoder") == "vit-encoder"
