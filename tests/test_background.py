import numpy as np
import pandas as pd
import pytest
import torch

import probe_models
from conftest import assert_figures
from spuriouslab.data.borders import frame, frame_mask, pad_crop_flip, parse_colour
from spuriouslab.nets import analysis
from spuriouslab.nets.models import ResNetCIFAR

TINY = [
    "--set",
    "data=digits",
    "--set",
    "n_train=200",
    "--set",
    "n_test=60",
    "--set",
    "epochs=2",
    "--set",
    "seeds=1",
    "--set",
    "vis_channels=8",
    "--set",
    "vis_steps=4",
    "--set",
    "cam_images=30",
    "--set",
    "batch_size=64",
    "--no-progress",
]


def test_pad_crop_flip_gives_the_exact_border_pixels():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    out = pad_crop_flip(x, 2, (150, 50, 50), np.random.default_rng(7))
    # the same draws by hand: crop offsets (rows, then columns) in 0..4, then the flips
    rng = np.random.default_rng(7)
    rows, cols = rng.integers(0, 5, 2), rng.integers(0, 5, 2)
    flips = rng.uniform(size=2) < 0.5
    for i in range(2):
        padded = np.empty((8, 8, 3), np.uint8)
        padded[:] = (150, 50, 50)
        padded[2:6, 2:6] = x[i]
        expected = padded[rows[i] : rows[i] + 4, cols[i] : cols[i] + 4]
        np.testing.assert_array_equal(out[i], expected[:, ::-1] if flips[i] else expected)
    assert (out == np.array([150, 50, 50], np.uint8)).all(axis=-1).any()  # some border is visible
    control = pad_crop_flip(x, 2, None, np.random.default_rng(7), crop=True, flip=False)
    np.testing.assert_array_equal(control, x)  # no padding, no flip: the images themselves
    framed = frame(x, (1, 2, 3), 1)
    assert (framed[:, 0] == (1, 2, 3)).all() and (framed[:, 1:3, 1:3] == x[:, 1:3, 1:3]).all()
    assert frame_mask(4, 4, 1).sum() == 12 and parse_colour("brick") == (150, 50, 50)


def test_resnet32_has_the_expected_parameter_count():
    m = ResNetCIFAR(3, 10, 32)
    assert sum(p.numel() for p in m.parameters()) == 464_154  # He et al.: 0.46M
    assert sum(len(s) for s in m.stages) == 15 and m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="6n"):
        ResNetCIFAR(3, 10, 33)


def test_the_visualization_increases_its_channel_activation():
    torch.manual_seed(0)
    m = ResNetCIFAR(3, 10, 8).eval()
    channels = [0, 5, 9]
    start = torch.full((3, 3, 16, 16), 0.5)
    before = analysis.channel_activation(m, m.last_block, start, channels)
    vis = analysis.visualize_channels(m, m.last_block, (3, 16, 16), channels, rounds=2, steps=20)
    after = analysis.channel_activation(m, m.last_block, vis, channels)
    assert (after > before + 1e-3).all() and vis.min() >= 0 and vis.max() <= 1
    stats = analysis.colour_stats(torch.tensor([[[[0.8]], [[0.1]], [[0.1]]]]), (204, 26, 26))
    assert stats["near_border_colour"] == 1.0 and stats["redness"] == pytest.approx(0.7) and stats["hue"] < 1


def test_border_sensitivity_is_zero_for_a_model_that_ignores_the_border():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 28, 28, 3), dtype=np.uint8)
    plain = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    framed = torch.from_numpy(frame(x, (150, 50, 50), 4)).permute(0, 3, 1, 2).float() / 255
    blind, reader = probe_models.CentreOnly(), probe_models.ReadsBorder()
    s = analysis.sensitivity(blind, plain, framed)
    assert s["repr_change"] == 0.0 and s["logit_change"] == 0.0
    s = analysis.sensitivity(reader, plain, framed)
    assert s["repr_change"] > 0.01 and s["logit_change"] > 0.01
    region = torch.from_numpy(frame_mask(28, 28, 4))
    frac, maps = analysis.gradcam_border_fraction(reader, framed, region, reader.conv)
    assert 0 < frac < 1 and maps.shape == (40, 28, 28)


def test_background_features_end_to_end(cli, tmp_path):
    small = ["--set", "n_train=100", "--set", "n_test=40", "--set", "epochs=1", "--set", "cam_images=10"]
    code, stdout, err = cli(
        "run",
        "background-features",
        *TINY,
        *small,
        "--set",
        "depth=32",
        "--set",
        "vis_channels=4",
        "--out",
        tmp_path / "b",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert sorted(df.pipeline) == ["control", "padded"] and (df.status == "ok").all()
    for col in [
        "acc_plain",
        "acc_train_colour",
        "acc_green",
        "repr_change_train_colour",
        "logit_change_blue",
        "gradcam_border_train_colour",
        "vis_redness",
        "vis_near_border_colour",
        "vis_hue",
        "vis_gain",
        "vis_border_axis",
        "vis_border_axis_abs",
        "acc_colour_gap",
    ]:
        assert df[col].notna().all(), col
    assert (df.vis_gain > 0).all() and df.parameters.iloc[0] == 464_154  # He et al.'s ResNet-32
    assert (df.vis_border_axis_abs >= df.vis_border_axis.abs() - 1e-12).all()  # a mean of |.| >= |mean|
    gap = df.acc_train_colour - df[["acc_green", "acc_blue", "acc_grey"]].mean(axis=1)
    assert np.allclose(df.acc_colour_gap, gap, atol=1e-12)
    assert_figures(tmp_path / "b", "feature_grids", "border_reliance", "gradcam_examples", "training")
    assert "| metric | control | padded |" in stdout


def test_probe_refuses_a_model_that_does_not_fit_the_data(cli, tmp_path):
    code, _, err = cli(
        "probe",
        "probe_models:centre_only",
        "--set",
        "data=digits",
        "--set",
        "eval_border=1",
        "--out",
        tmp_path / "p",
        "--no-progress",
    )
    assert code == 2 and "fails on digits images of shape (64, 3, 8, 8)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def _fake_fashion(root):
    from spuriouslab.data.images import MNIST_FILES, write_idx

    rng = np.random.default_rng(0)
    (root / "mnist").mkdir(parents=True)
    for stem in MNIST_FILES:
        n = 80 if stem.startswith("train") else 40
        arr = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            if "images" in stem
            else (np.arange(n) % 10).astype(np.uint8)
        )
        write_idx(root / "mnist" / stem, arr)


def test_probe_on_any_data_the_data_layer_reads(cli, tmp_path):
    _fake_fashion(tmp_path / "d")
    code, stdout, err = cli(
        "probe",
        "probe_models:centre_only",
        "--set",
        "data=mnist",
        "--data-root",
        tmp_path / "d",
        "--set",
        "n=40",
        "--set",
        "cam_images=10",
        "--out",
        tmp_path / "q",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "q" / "results.parquet")
    assert df.repr_change_train_colour.iloc[0] == 0.0 and df.logit_change_green.iloc[0] == 0.0
    # the spurious query of a training image is its frame with the core zeroed; this model masks the frame, so it
    # sees zeros and predicts one class c: the spurious accuracy is the share of training labels equal to c
    from spuriouslab.seeding import numpy_rng, stream_id

    rng = numpy_rng(0, stream_id("background.subset"))
    rng.permutation(40)  # the test images are drawn first
    labels = (np.arange(80) % 10)[np.sort(rng.permutation(80)[:40])]
    with torch.no_grad():
        c = int(probe_models.centre_only()(torch.zeros(1, 3, 28, 28)).argmax())
    assert df.spurious_acc.iloc[0] == pytest.approx(np.mean(labels == c)) and "| spurious_acc |" in stdout
    code, _, err = cli(
        "probe",
        "probe_models:reads_border",
        "--set",
        "data=mnist",
        "--data-root",
        tmp_path / "d",
        "--set",
        "n=40",
        "--set",
        "cam_images=10",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    assert code == 0, err
    assert pd.read_parquet(tmp_path / "r" / "results.parquet").repr_change_train_colour.iloc[0] > 0.01


@pytest.mark.parametrize(
    "args,needle",
    [
        (["probe", "nosuch.module:f"], "model: cannot import 'nosuch.module:f' (ModuleNotFoundError"),
        (["probe", "probe_models:not_a_model"], "gave str, not a torch.nn.Module"),
        (["probe", "probe_models:centre_only", "--set", "eval_border=20"], "eval_border: got 20"),
        (["probe", "probe_models:centre_only", "--set", "colour=purple"], "colour: got 'purple'; allowed: brick"),
        (["run", "background-features", "--set", "data=digits", "--set", "border=5"], "border: got 5; digits images"),
        (["run", "background-features", "--set", "other_colours=green,plaid"], "other_colours: got 'plaid'"),
        (["run", "background-features", "--set", "depth=33"], "depth: got 33"),
    ],
)
def test_bad_background_and_probe_input(cli, tmp_path, args, needle):
    mnist = tmp_path / "d"
    _fake_fashion(mnist)
    extra = ["--set", "data=mnist", "--data-root", str(mnist)] if args[0] == "probe" else []
    code, _, stderr = cli(*args, *extra, "--out", tmp_path / "x")
    assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "x").exists()


def test_probe_checkpoint_that_does_not_match(cli, tmp_path):
    _fake_fashion(tmp_path / "d")
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "bad.pt")
    code, _, stderr = cli(
        "probe",
        "probe_models:centre_only",
        "--checkpoint",
        tmp_path / "bad.pt",
        "--set",
        "data=mnist",
        "--data-root",
        tmp_path / "d",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "does not match probe_models:centre_only" in stderr and len(stderr.strip().splitlines()) == 1


def test_adversarial_training_path(cli, tmp_path):
    code, _, err = cli(
        "run",
        "background-features",
        *TINY,
        "--set",
        "depth=8",
        "--set",
        "adversarial=true",
        "--set",
        "pipeline=padded",
        "--set",
        "n_train=64",
        "--set",
        "epochs=1",
        "--set",
        "eps_ramp=2",
        "--set",
        "pgd_steps=2",
        "--out",
        tmp_path / "a",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "a" / "results.parquet")
    assert (
        len(df) == 1
        and df.status.iloc[0] == "ok"
        and "adversarial training" in (tmp_path / "a" / "summary.md").read_text()
    )


def test_pgd_stays_in_its_ball():
    from spuriouslab.experiments.background_features.run import _pgd_l2

    torch.manual_seed(0)
    m = ResNetCIFAR(3, 10, 8).eval()
    x = torch.rand(4, 3, 16, 16)
    adv = _pgd_l2(m, x, torch.zeros(4, dtype=torch.long), 0.5, 3)
    assert ((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > 0


def test_data_auto_takes_the_borders_of_the_data_it_finds(monkeypatch, tmp_path):
    """Without Fashion-MNIST anywhere, data=auto falls back to digits with digits' borders (not Fashion-MNIST's)."""
    import dataclasses

    from spuriouslab.data import images
    from spuriouslab.data.datasets import DATASETS
    from spuriouslab.experiments import get_experiment, run_points

    monkeypatch.setitem(
        DATASETS, "fashion-mnist", dataclasses.replace(DATASETS["fashion-mnist"], system=tmp_path / "none")
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPURIOUSLAB_DATA", raising=False)
    images._load_cached.cache_clear()
    exp = get_experiment("background-features")
    cfg = exp.make_config(
        {
            "n_train": 60,
            "n_test": 20,
            "epochs": 1,
            "depth": 8,
            "seeds": 1,
            "pipeline": ["padded"],
            "vis_channels": 2,
            "vis_steps": 2,
            "vis_rounds": 1,
            "cam_images": 10,
        }
    )
    exp.check(cfg)
    (rec,) = run_points(exp, cfg)
    assert rec["data"] == "digits" and (rec["border"], rec["eval_border"]) == DATASETS["digits"].padding == (2, 1)
    explicit = exp.make_config({"data": "digits", "border": 3, "eval_border": 2})
    assert (explicit.border, explicit.eval_border) == (3, 2)
    images._load_cached.cache_clear()
