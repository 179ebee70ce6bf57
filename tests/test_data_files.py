"""Data files are data: nothing read runs foreign code (CIFAR pickles, checkpoints), corrupt files of every format
load or fail in one line (fuzzed), the data set a run resolved is fixed at its first point and checked on resume,
and image folders that cannot be used are refused in one line."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import fuzzing
import spuriouslab.data.images as images
from conftest import cifar_batches, one_line_exit_2, records, sets
from spuriouslab.data.datasets import DATASETS
from spuriouslab.data.images import DataError, read_cifar_batch
from spuriouslab.store import Checkpoints


@pytest.fixture(autouse=True)
def _fresh_cache():
    images._load_cached.cache_clear()
    yield
    images._load_cached.cache_clear()


# ---------------------------------------------------------------------------------------------- foreign code
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_dir(root: Path, poison: bool, marker: Path) -> Path:
    # the payload hidden inside a valid batch dict
    return cifar_batches(root, extra={"data_batch_1": {b"batch_label": _Payload(marker)}} if poison else None)


def test_a_malicious_cifar_batch_is_refused_and_never_runs(cli, tmp_path):
    marker = tmp_path / "pwned"
    _cifar_dir(tmp_path / "data", True, marker)
    with pytest.raises(DataError, match="refusing to load posix.system"):
        read_cifar_batch(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1")
    one_line_exit_2(
        cli(
            "run", "memorization", *sets("data=cifar10", "n_train=10", "width=50"),
            "--data-root", tmp_path / "data", "--out", tmp_path / "r",
        ),
        "refusing to load",
    )  # fmt: skip
    code, stdout, _ = cli("data", "info", "--data-root", tmp_path / "data")
    assert code == 0 and "cifar10" in stdout and "refusing to load" in stdout
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_string_labels_in_a_cifar_batch(cli, tmp_path):
    d = _cifar_dir(tmp_path / "data", False, tmp_path / "m")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}))
    one_line_exit_2(
        cli(
            "run", "memorization", *sets("data=cifar10", "n_train=10"), "--data-root", tmp_path / "data",
            "--out", tmp_path / "r",
        ),
        "labels must be a list of N integers",
    )  # fmt: skip


def test_a_malicious_checkpoint_is_refused_set_aside_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ck = Checkpoints(tmp_path / "checkpoints")
    ck.directory.mkdir()
    with open(ck.path("g"), "wb") as fh:
        pickle.dump({"net": _Payload(marker)}, fh)
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert ck.load("g") is None
    assert not marker.exists() and not ck.path("g").exists()
    assert (ck.directory / "g.pt.corrupt").exists()
    ck.save("g", {"step": 3, "w": torch.ones(2)})  # what a real checkpoint holds loads with weights_only
    assert ck.load("g")["step"] == 3


# --------------------------------------------------------------------------------------------------- fuzzing
@pytest.mark.parametrize("fmt", list(fuzzing.FORMATS))
def test_fuzzed_files_load_or_fail_in_one_line(tmp_path, fmt):
    n = fuzzing.SUITE_CASES.get(fmt, 300)
    counts = fuzzing.FORMATS[fmt](tmp_path, n)
    assert sum(counts.values()) == n
    if fmt not in fuzzing.LENIENT:
        assert counts["error"] > n // 6  # the corruption is noticed, not silently accepted


def test_fuzzed_cifar_batches_through_data_info(cli, tmp_path):
    d = _cifar_dir(tmp_path / "data", False, tmp_path / "m")
    raw = (d / "data_batch_2").read_bytes()
    for case in fuzzing.mutations(raw, 25, 11):
        (d / "data_batch_2").write_bytes(case)
        images._load_cached.cache_clear()
        code, stdout, stderr = cli("data", "info", "--data-root", tmp_path / "data")
        assert code == 0 and "Traceback" not in stdout + stderr
        line = next(x for x in stdout.splitlines() if x.startswith("cifar10"))
        assert " ok " in line or "data_batch_2" in line


# ------------------------------------------------------------------------------------------ data=auto, pinned
def _fake_fashion(root: Path, value: int = 0) -> None:
    from spuriouslab.data.images import MNIST_FILES, write_idx

    rng = np.random.default_rng(value)
    (root / "fashion-mnist").mkdir(parents=True, exist_ok=True)
    for stem in MNIST_FILES:
        n = 120 if stem.startswith("train") else 60
        arr = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            if "images" in stem
            else (np.arange(n) % 10).astype(np.uint8)
        )
        write_idx(root / "fashion-mnist" / stem, arr)


BG = [
    *sets("data=digits", "n_train=60", "n_test=20", "epochs=1", "seeds=1", "vis_channels=2", "vis_steps=2"),
    *sets("vis_rounds=1", "cam_images=10", "batch_size=30", "depth=8", "pipeline=padded"),
    "--no-progress",
]


def test_data_auto_is_fixed_at_the_first_point_and_checked_on_resume(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(
        DATASETS,
        "fashion-mnist",
        dataclasses.replace(DATASETS["fashion-mnist"], system=tmp_path / "none", checksum=None),
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPURIOUSLAB_DATA", raising=False)
    run = tmp_path / "b"
    args = [*BG, "--set", "data=auto", "--set", f"data_root={tmp_path / 'd'}"]  # the later --set wins
    assert cli("run", "background-features", *args, "--out", run)[0] == 0  # Fashion-MNIST absent: digits
    assert json.loads((run / "resolved.json").read_text())["{}"]["data"] == "digits"
    _fake_fashion(tmp_path / "d")  # now present: the resumed run still reads digits, and says so
    images._load_cached.cache_clear()
    code, stdout, err = cli("run", "background-features", *args, "--set", "pipeline=padded,control", "--out", run)
    assert code == 0, err
    assert "keeps it (fashion-mnist is found now" in err
    assert {r["data"] for r in records(run)} == {"digits"} and len(records(run)) == 2
    assert "data=digits" in stdout
    # the data a run started on changed under it: refused in one line, nothing written
    first = json.loads((run / "resolved.json").read_text())
    first["{}"]["data_checksum"] = "0" * 64
    (run / "resolved.json").write_text(json.dumps(first))
    one_line_exit_2(
        cli("run", "background-features", *args, "--set", "pipeline=padded,control", "--out", run),
        "not the data this run started with",
    )
    assert len(records(run)) == 2


def test_data_fetch_into_an_impossible_root(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_line_exit_2(cli("data", "fetch", "mnist", "--data-root", blocker / "sub"), str(blocker))
    one_line_exit_2(cli("data", "fetch", "mnist", "--data-root", "/proc/no/such"), "/proc/no")


def test_a_streamed_folder_mixing_grey_and_colour_is_refused_as_in_memory(cli, tmp_path):
    from PIL import Image

    from test_distillation import _folder

    _folder(tmp_path / "data")
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(tmp_path / "data" / "train" / "a" / "0.png")
    common = [
        *sets("task=folder", f"data_root={tmp_path / 'data'}", "canvas=12", "epochs=1", "seeds=1", "batch_size=4"),
        *sets("embed=4"),
        "--no-progress",
    ]
    one_line_exit_2(
        cli("run", "distillation", *common, "--set", "teacher_epochs=1", "--out", tmp_path / "m"), "differ in size"
    )
    one_line_exit_2(
        cli(
            "run", "distillation", *common,
            *sets("teacher=distill_models:linear_teacher", "streaming=true", "workers=0"), "--out", tmp_path / "s",
        ),
        "mixes greyscale",
    )  # fmt: skip
    assert not (tmp_path / "m").exists() and not (tmp_path / "s").exists()
