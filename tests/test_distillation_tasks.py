"""The distillation tasks are one registry in the data layer (``data.distillation.DISTILL_TASKS``): every entry
loads, the config's ``task`` field and its per-task defaults read it, and a new entry is all a new task takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spuriouslab.data import distillation as dd
from spuriouslab.data.images import DataError
from spuriouslab.errors import ConfigError
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.experiments.fields import MAX_SAMPLES

EXP = get_experiment("distillation")


def _folder(root, classes=("a", "b"), oods=("other", "shifted"), size=12):
    """A tiny image folder: root/{train,test}/<class>/*.png and root/ood/<name>/<class>/*.png."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for d in [root / "train", root / "test", *[root / "ood" / o for o in oods]]:
        for ci, c in enumerate(classes):
            (d / c).mkdir(parents=True)
            for i in range(5):
                img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                img[2:8, 2:8, ci] = 250
                Image.fromarray(img).save(d / c / f"{i}.png")


def _values(name: str, tmp_path) -> dd.TaskValues:
    """Tiny values for any entry: a folder built here for a task reading data_root, the entry's canvas."""
    spec = dd.DISTILL_TASKS[name]
    root = None
    if spec.needs_root:
        _folder(tmp_path / "data")
        root = str(tmp_path / "data")
    canvas = spec.defaults.get("canvas", 16)
    return dd.TaskValues(n=20, n_test=10, d=24, d_core=4, d_bg=4, n_classes=3, canvas=canvas, data_root=root)


@pytest.mark.parametrize("name", list(dd.DISTILL_TASKS))
def test_every_registered_task_loads_a_tiny_task(name, tmp_path):
    spec = dd.DISTILL_TASKS[name]
    values = _values(name, tmp_path)
    try:
        task = dd.load_task(name, values, seed=3)
    except DataError as exc:  # an image data set that is not on this machine (Debian's Fashion-MNIST)
        assert spec.dataset is not None and spec.dataset != "digits", exc
        pytest.skip(f"{spec.dataset} not found: {exc}")
    n_train = len(task.x_train)
    assert 0 < n_train <= values.n and 0 < len(task.x_test) <= values.n_test
    assert len(task.y_train) == n_train and task.y_train.dtype == torch.int64
    assert len(task.x_teacher) == len(task.y_teacher) > 0
    assert int(task.y_train.max()) < task.n_classes
    assert list(task.ood) == (list(spec.ood) if spec.ood else ["other", "shifted"])
    for k, x in task.ood.items():
        assert x.shape[1:] == task.x_test.shape[1:] and len(dd.ood_labels(task, k)) == len(x)
    if spec.mlp:
        assert task.input_shape == (values.d,) and task.basis is not None
    else:
        assert len(task.input_shape) == 3 and task.input_shape[0] == 3
        assert 0.0 <= float(task.x_train.min()) and float(task.x_train.max()) <= 1.0
    again = dd.load_task(name, values, seed=3)  # seeded: the same data again
    torch.testing.assert_close(again.x_train, task.x_train, rtol=0, atol=0)
    if spec.dataset is not None:
        ident = dd.task_identity(name, None)
        assert ident["data"] == spec.dataset and len(ident["data_checksum"]) == 64
        assert dd.task_load_bytes(name) > 0
    else:
        assert dd.task_identity(name, values.data_root) == {} and dd.task_load_bytes(name) == 0.0


def test_the_folder_task_keeps_each_ood_sets_own_labels(tmp_path):
    task = dd.load_task("folder", _values("folder", tmp_path), seed=0)
    for k in task.ood:
        assert torch.equal(dd.ood_labels(task, k), torch.tensor([0] * 5 + [1] * 5))
    assert dd.ood_labels(dd.load_task("synthetic", _values("synthetic", tmp_path), 0), "flip").shape == (10,)


@pytest.mark.parametrize("name", list(dd.DISTILL_TASKS))
def test_the_configs_task_defaults_are_the_entrys(name, tmp_path):
    values = {"task": name, **({"data_root": str(tmp_path)} if dd.DISTILL_TASKS[name].needs_root else {})}
    cfg = EXP.make_config(values)
    for key, value in dd.DISTILL_TASKS[name].defaults.items():
        assert getattr(cfg, key) == value, key
    assert cfg.mlp() == dd.DISTILL_TASKS[name].mlp
    assert dd.TaskValues.of(cfg).n == cfg.n and dd.TaskValues.of(cfg).canvas == cfg.canvas
    assert dd.ALL_SAMPLES == MAX_SAMPLES  # "every image" of a folder is the configs' largest sample count


def test_the_task_names_are_the_ones_configs_and_records_use():
    assert list(dd.DISTILL_TASKS) == [
        "synthetic",
        "digits-background",
        "fashion-background",
        "digits-renditions",
        "fashion-renditions",
        "cifar10-renditions",
        "folder",
    ]
    assert dd.DISTILL_TASKS["digits-background"].dataset == "digits"
    assert dd.DISTILL_TASKS["fashion-background"].dataset == "fashion-mnist"


def test_an_unknown_task_is_one_line_listing_the_allowed_names(cli):
    allowed = (
        "allowed: synthetic, digits-background, fashion-background, digits-renditions, fashion-renditions, "
        "cifar10-renditions, folder"
    )
    with pytest.raises(ConfigError, match=allowed):
        EXP.make_config({"task": "nosuch"})
    code, _, err = cli("run", "distillation", "--set", "task=nosuch")
    assert code == 2
    assert err.strip() == f"spuriouslab: error: task: got 'nosuch'; {allowed}"
    with pytest.raises(ValueError, match=allowed):
        dd.load_task("nosuch", dd.TaskValues(n=2, n_test=2), 0)


def test_a_data_set_is_one_entry(monkeypatch):
    """One line registers digits a second time as a background task: the config accepts the name and takes the
    entry's defaults, and a run loads it and records it (a new greyscale data set of DATASETS is the same line)."""
    entry = dd.background_task("digits", n=48, n_test=24, batch_size=16, epochs=1, teacher_epochs=1, log_every=1)
    monkeypatch.setitem(dd.DISTILL_TASKS, "digits2-background", entry)
    cfg = EXP.make_config({"task": "digits2-background"})
    assert (cfg.n, cfg.n_test, cfg.canvas, cfg.batch_size, cfg.seeds) == (48, 24, 16, 16, 3)
    recs = run_points(EXP, EXP.make_config({"task": "digits2-background", "seeds": 1, "embed": 4}))
    assert [r["task"] for r in recs] == ["digits2-background"] and recs[0]["ood_sets"] == dd.IMAGE_OOD
    assert recs[0]["n_train"] == 48 and 0 <= recs[0]["acc_student_red"] <= 1
    assert EXP.run.resolve(cfg)["data"] == "digits"  # a resumed run checks the same images


def test_a_task_with_its_own_loader_is_one_entry(monkeypatch):
    """An entry with its own ``load``: the run reads its data through the registry, its defaults included."""
    calls = []

    def load(v: dd.TaskValues, seed: int) -> dd.DistillTask:
        calls.append((v.n, seed))
        return dd.synthetic_task(seed, v.d, 3, 3, 2, v.n, v.n_test, 0.3, ood=["flip", "scale3"])

    entry = dd.TaskSpec(
        load,
        "two classes, two OOD sets",
        {"n": 30, "n_test": 20, "d": 12, "batch_size": 0, "epochs": 2, "teacher_epochs": 2, "log_every": 1},
        mlp=True,
        ood=("flip", "scale3"),
    )
    monkeypatch.setitem(dd.DISTILL_TASKS, "two-class", entry)
    cfg = EXP.make_config({"task": "two-class", "seeds": 1, "width": 8, "embed": 4, "activation": "relu"})
    recs = run_points(EXP, cfg)
    assert [n for n, _ in calls] == [30] and len(recs) == 1
    assert recs[0]["task"] == "two-class" and recs[0]["ood_sets"] == ["flip", "scale3"]
    assert recs[0]["n_train"] == 30 and "acc_student_scale3" in recs[0]
