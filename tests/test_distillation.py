import numpy as np
import pandas as pd
import pytest
import torch

import spuriouslab.data.images as images
from conftest import assert_figures
from spuriouslab.data.distillation import SYNTHETIC_OOD, synthetic_task
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.nets.train import clip_grad_norm_per_seed, warmup_cosine

EXP = get_experiment("distillation")
TINY = [
    "--set",
    "epochs=40",
    "--set",
    "teacher_epochs=60",
    "--set",
    "log_every=20",
    "--set",
    "seeds=2",
    "--set",
    "n=120",
    "--set",
    "n_test=80",
    "--set",
    "width=32",
    "--set",
    "embed=8",
    "--no-progress",
]


def test_synthetic_teacher_is_exactly_invariant_and_the_fit_is_measured(tiny_run):
    task = synthetic_task(0, 64, 8, 8, 4, 50, 40)
    P = task.core_projection()
    for name in SYNTHETIC_OOD:  # only the background changed, and the teacher sees P x only
        torch.testing.assert_close(task.ood[name] @ P, task.x_test @ P, atol=1e-5, rtol=0)
        assert (task.ood[name] - task.x_test).abs().max() > 0.5
    run = tiny_run("distillation")  # the synthetic task at d=64 (8 core and 8 background dimensions)
    code, stdout, err = tiny_run.output("distillation")
    assert code == 0, err
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 4 and set(df.activation) == {"relu", "identity"}
    assert {"d: 64", "d_core: 8", "d_bg: 8"} <= set((run / "config.yaml").read_text().splitlines())
    for name in SYNTHETIC_OOD:  # the teacher's probe: identical ID and OOD accuracy
        np.testing.assert_array_equal(df[f"acc_teacher_{name}"], df.acc_teacher_id)
        assert {f"fit_mse_{name}", f"fit_cos_{name}", f"acc_student_{name}", f"acc_baseline_{name}"} <= set(df)
    assert (df.teacher_bg_norm < 1e-5).all()  # zero by construction
    assert (df.student_bg_norm > 0.05).all() and len(df.curve_student_bg_norm.iloc[0]) == len(df.curve_step.iloc[0])
    assert (df.fit_mse_id < df.fit_mse_ood_mean).all()  # the fit degrades OOD
    assert "| teacher |" in stdout and "distilled student (relu)" in stdout
    assert_figures(run, "accuracy_bars", "effective_robustness", "distillation_fit", "mechanism")
    (teacher,) = (run / "checkpoints").glob("distillation-teacher-*.pt")  # kept, shared by both groups
    assert torch.load(teacher, weights_only=True)["step"] == 30 and not list(
        (run / "checkpoints").glob("distillation-student-*")
    )  # finished students are discarded


def test_digits_background_task_end_to_end(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "distillation",
        "--set",
        "task=digits-background",
        *TINY,
        "--set",
        "epochs=3",
        "--set",
        "teacher_epochs=3",
        "--set",
        "log_every=1",
        "--set",
        "batch_size=64",
        "--out",
        tmp_path / "d",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert len(df) == 2 and list(df.ood_sets.iloc[0]) == ["red", "green", "noise", "stripes"]
    assert df.acc_teacher_id.min() > 0.1  # 3 epochs, 10 classes: above chance
    assert "student_bg_norm" not in df  # the mechanism is measured for MLP students only


@pytest.mark.skipif(
    images.locate("fashion-mnist") is None, reason="Fashion-MNIST not installed (Debian dataset-fashion-mnist)"
)
def test_fashion_background_task_end_to_end(cli, tmp_path):
    code, _, err = cli(
        "run",
        "distillation",
        "--set",
        "task=fashion-background",
        *TINY,
        "--set",
        "epochs=1",
        "--set",
        "teacher_epochs=1",
        "--set",
        "log_every=1",
        "--set",
        "batch_size=60",
        "--out",
        tmp_path / "f",
    )
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "f" / "results.parquet")) == 2


def test_an_import_string_teacher_and_student_from_the_test_suite(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "distillation",
        "--set",
        "task=digits-background",
        *TINY,
        "--set",
        "epochs=4",
        "--set",
        "log_every=2",
        "--set",
        "batch_size=64",
        "--set",
        "teacher=distill_models:linear_teacher",
        "--set",
        "student=distill_models:small_student",
        "--out",
        tmp_path / "u",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "u" / "results.parquet")
    assert len(df) == 2 and "teacher=distill_models:linear_teacher" in stdout
    assert not list((tmp_path / "u" / "checkpoints").glob("distillation-teacher-*"))  # a user teacher is not trained
    # the teacher is the given frozen map: its features on the training images are what the student fitted
    assert (df.distill_loss < df.curve_distill_loss.apply(lambda c: c[0])).all()
    # the default student is the teacher's architecture, fresh init
    assert (
        cli(
            "run",
            "distillation",
            "--set",
            "task=digits-background",
            *TINY,
            "--set",
            "epochs=2",
            "--set",
            "log_every=1",
            "--set",
            "teacher=distill_models:linear_teacher",
            "--out",
            tmp_path / "v",
        )[0]
        == 0
    )
    state = torch.nn.Linear(2, 2).state_dict()
    torch.save(state, tmp_path / "bad.pt")
    code, _, stderr = cli(
        "run",
        "distillation",
        "--set",
        "task=digits-background",
        "--set",
        "teacher=distill_models:linear_teacher",
        "--set",
        f"teacher_checkpoint={tmp_path / 'bad.pt'}",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "teacher_checkpoint:" in stderr and "does not match the teacher" in stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["teacher=nosuchpackage.mod:f"], "teacher: cannot import 'nosuchpackage.mod:f' (ModuleNotFoundError"),
        (["teacher=distill_models:not_a_module"], "returned int, not a torch.nn.Module"),
        (["teacher=distill_models"], "write package.module:factory"),
        (
            ["teacher=distill_models:linear_teacher", "student=distill_models:wrong_size_student"],
            "student: distill_models:wrong_size_student gives embeddings of shape (7,), the teacher's are (16,)",
        ),
        (["activation=tanh"], "the built-in image encoders are ReLU CNNs"),
        (["task=folder"], "data_root: task=folder needs data_root=DIR"),
    ],
)
def test_bad_distillation_input(cli, tmp_path, args, needle):
    sets = ["--set", "task=digits-background"] + [x for a in args for x in ("--set", a)]
    code, _, stderr = cli("run", "distillation", *sets, "--out", tmp_path / "x")
    assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "x").exists()


def _folder(root, classes=("a", "b"), ood=("other",), size=12, bad=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    dirs = [root / "train", root / "test", *[root / "ood" / o for o in ood]]
    for d in dirs:
        for ci, c in enumerate(classes):
            (d / c).mkdir(parents=True)
            for i in range(6):
                img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                img[2:10, 2:10, ci] = 250
                Image.fromarray(img).save(d / c / f"{i}.png")
    if bad:
        (root / bad).write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def test_image_folder_task_with_ood_sets(cli, tmp_path):
    _folder(tmp_path / "data")
    code, stdout, err = cli(
        "run",
        "distillation",
        "--set",
        "task=folder",
        "--set",
        f"data_root={tmp_path / 'data'}",
        "--set",
        "canvas=12",
        "--set",
        "epochs=3",
        "--set",
        "teacher_epochs=3",
        "--set",
        "log_every=1",
        "--set",
        "seeds=1",
        "--set",
        "batch_size=4",
        "--set",
        "embed=8",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert list(df.ood_sets.iloc[0]) == ["other"] and "acc_student_other" in df
    import shutil

    shutil.rmtree(tmp_path / "data" / "ood" / "other" / "b")
    code, _, stderr = cli(
        "run",
        "distillation",
        "--set",
        "task=folder",
        "--set",
        f"data_root={tmp_path / 'data'}",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "class 'b' (present in train/) is missing" in stderr and len(stderr.strip().splitlines()) == 1
    _folder(tmp_path / "d2", bad="train/a/3.png")
    code, _, stderr = cli(
        "run", "distillation", "--set", "task=folder", "--set", f"data_root={tmp_path / 'd2'}", "--out", tmp_path / "y"
    )
    assert code == 2 and "3.png: unreadable image" in stderr and len(stderr.strip().splitlines()) == 1


def test_per_seed_clipping_equals_clipping_each_seed_alone():
    g = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    p = torch.nn.Parameter(torch.zeros(2, 2))
    p.grad = g.clone()
    clip_grad_norm_per_seed([p], 1.0)
    torch.testing.assert_close(p.grad, torch.tensor([[0.6, 0.8], [0.3, 0.4]]), atol=1e-5, rtol=0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 4, 12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and lrs[4] == pytest.approx(1.0)
    assert lrs[-1] < 0.05 and all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_run_points_in_memory():
    cfg = EXP.make_config(
        dict(
            epochs=20,
            teacher_epochs=20,
            log_every=10,
            seeds=1,
            n=60,
            n_test=40,
            width=16,
            embed=4,
            d=32,
            d_core=4,
            d_bg=4,
            activation=["relu"],
        )
    )
    recs = run_points(EXP, cfg)
    assert len(recs) == 1 and recs[0]["status"] == "ok"


def test_streamed_folder_with_workers_and_resume(cli, tmp_path):
    _folder(tmp_path / "data", size=16)
    args = [
        "run",
        "distillation",
        "--set",
        "task=folder",
        "--set",
        f"data_root={tmp_path / 'data'}",
        "--set",
        "streaming=true",
        "--set",
        "workers=1",
        "--set",
        "teacher=distill_models:linear_teacher",
        "--set",
        "student=distill_models:small_student",
        "--set",
        "epochs=4",
        "--set",
        "log_every=2",
        "--set",
        "batch_size=4",
        "--set",
        "warmup=2",
        "--set",
        "clip=1.0",
        "--no-progress",
    ]
    code, stdout, err = cli(*args, "--out", tmp_path / "s")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert len(df) == 1 and "acc_student_other" in df and list(df.curve_step.iloc[0]) == [0, 2, 4]
    assert df.distill_loss.iloc[0] < df.curve_distill_loss.iloc[0][1] * 10 and "| teacher |" in stdout
    again = cli(*args, "--out", tmp_path / "t")
    assert again[0] == 0
    drop = lambda t: t.drop(columns=[c for c in t if c.startswith("seconds")])  # noqa: E731
    pd.testing.assert_frame_equal(drop(df), drop(pd.read_parquet(tmp_path / "t" / "results.parquet")))
    code, _, stderr = cli("run", "distillation", "--set", "streaming=true", "--out", tmp_path / "x")
    assert code == 2 and "streaming: reads task=folder data" in stderr


def test_paper_recipe_path_with_torch_probes(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "distillation",
        *TINY,
        "--set",
        "preset=paper",
        "--set",
        "epochs=4",
        "--set",
        "teacher_epochs=4",
        "--set",
        "log_every=2",
        "--set",
        "warmup=3",
        "--set",
        "batch_size=64",
        "--set",
        "activation=relu",
        "--out",
        tmp_path / "p",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "p" / "results.parquet")
    cfg = (tmp_path / "p" / "config.yaml").read_text()
    assert "probe: torch" in cfg and "clip: 1.0" in cfg and "weight_decay: 0.05" in cfg
    assert df.acc_teacher_id.between(0, 1).all() and (df.status == "ok").all()
