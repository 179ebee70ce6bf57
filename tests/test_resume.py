"""Resume: a run interrupted at a known point (after its N-th record or checkpoint, in this process) and run again
gives the uninterrupted run's table exactly, in every trained experiment and at every kind of point; what was on
disk at the interruption is what the store promises (whole groups, the checkpoint of the step reached); a
checkpoint that cannot be read or does not match is set aside and its group restarts.  Real signals to real
processes: test_signals.py."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_figures, assert_resumes_identically, interrupt_and_resume, records


def _whole_stacked_group(out):
    assert len(records(out)) == 3  # the whole first group (three stacked seeds), not one seed of it


def _whole_groups(out):
    n = len(records(out))
    assert 5 <= n < 16 and n % 2 == 0, n  # groups of two seeds, the fifth record's group complete


def _nn_checkpoint(out):
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    saved = torch.load(ckpt, weights_only=True)  # checkpoints hold tensors and plain containers only
    assert saved["step"] == 6 and saved["history"]["step"] == [0, 2, 4, 6]  # one step per epoch (100 < batch)
    assert not (out / "records.jsonl").exists() or (out / "records.jsonl").read_text() == ""


def _coloured_records(out):
    assert len(records(out)) == 2


def _background_checkpoint(out):
    (ckpt,) = (out / "checkpoints").glob("background-features-*.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 2 * 4  # epoch 2: 100 images in batches of 25


def _teacher_and_student(out):
    # the teacher's three checkpoints (every 10 of 30 epochs, the last kept for reuse), then the first student's
    # second (epoch 20 of 40)
    (teacher,) = (out / "checkpoints").glob("distillation-teacher-*.pt")
    (student,) = (out / "checkpoints").glob("distillation-student-*.pt")
    assert torch.load(teacher, weights_only=True)["step"] == 30
    assert torch.load(student, weights_only=True)["step"] == 20


CASES = {
    "contamination-stacked": ("records", 1, _whole_stacked_group),
    "memorization": ("records", 5, _whole_groups),
    "memorization-nn": ("checkpoints", 3, _nn_checkpoint),
    "coloured": ("records", 2, _coloured_records),
    "background-features": ("checkpoints", 2, _background_checkpoint),
    "distillation": ("checkpoints", 5, _teacher_and_student),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_interrupted_run_resumes_to_the_uninterrupted_table(cli, tmp_path, tiny_run, name):
    kind, n, at_interruption = CASES[name]
    args, out = tiny_run.args(name), tmp_path / "run"
    interrupt_and_resume(cli, args, out, kind, n)
    at_interruption(out)
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    table = assert_resumes_identically(tiny_run(name), out)
    kept = [p.name for p in (out / "checkpoints").glob("*.pt") if not p.name.startswith("distillation-teacher-")]
    assert not kept, "a completed group's checkpoints are removed (a trained teacher's is kept for reuse)"
    if name == "coloured":
        assert len(table) == 4 and set(table.rho) == {0.5, 1.0}
        assert {"acc_reversed", "worst_group_acc", "colour_flip", "spurious_corr", "logit_change"} <= set(table)
        assert_figures(out, "coloured_spectrum")


def test_an_interrupted_run_resumes_twice(cli, tmp_path, tiny_run):
    """Interrupted again after resuming (at the next group's first checkpoint): the third run still gives the
    uninterrupted table."""
    args, out = tiny_run.args("contamination-stacked"), tmp_path / "run"
    interrupt_and_resume(cli, args, out, "checkpoints", 2)
    interrupt_and_resume(cli, args, out, "records", 1)
    assert len(records(out)) == 3
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    assert_resumes_identically(tiny_run("contamination-stacked"), out)


def test_a_group_interrupted_before_its_records_are_written_keeps_its_training(cli, tmp_path, tiny_run, monkeypatch):
    """Killed between the end of a group and its records on disk: the group's checkpoint is still there (it is
    dropped only after the append), and the rerun finishes the group from it without training again."""
    from conftest import Interrupted, interrupted_after
    from spuriouslab.store import RunStore

    args, out = tiny_run.args("memorization-nn"), tmp_path / "run"
    with monkeypatch.context() as mp:

        def interrupted(self, records, durable=None):
            raise Interrupted("before the group's records are written")

        mp.setattr(RunStore, "append", interrupted)
        code, _, err = cli(*args, "--out", out)
    assert code == 130, err
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 8  # the group's training, complete
    with interrupted_after("checkpoints", 10**9) as counts:
        code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    assert counts["checkpoints"] < 4, counts  # resumed from the complete checkpoint, not trained again
    assert not list((out / "checkpoints").glob("*.pt"))
    assert_resumes_identically(tiny_run("memorization-nn"), out)


def _shapes(ckpt):
    saved = torch.load(ckpt, weights_only=True)
    first = next(iter(saved["model"]))
    saved["model"][first] = torch.zeros(3, 3)
    torch.save(saved, ckpt)


def _junk(ckpt):
    torch.save({"junk": 1}, ckpt)


def _truncated(ckpt):
    ckpt.write_bytes(b"PK\x03\x04 truncated")


@pytest.mark.parametrize(
    "name, tamper, message",
    [
        ("distillation", _shapes, "does not match this run"),  # loads, but another model's shapes (the teacher's)
        ("background-features", _junk, "does not match this run"),  # loads, but not a training state
        ("memorization-nn", _truncated, "unreadable checkpoint"),  # torch cannot read it
    ],
)
def test_a_checkpoint_that_does_not_match_or_cannot_be_read_is_set_aside(
    cli, tmp_path, tiny_run, name, tamper, message
):
    """It is set aside (``*.corrupt``) with a warning, its group restarts from scratch, and the run completes with
    the uninterrupted table."""
    args, out = tiny_run.args(name), tmp_path / "run"
    interrupt_and_resume(cli, args, out, "checkpoints", 1)
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    tamper(ckpt)
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    assert message in err and "restarts from scratch" in err and f"moved to {ckpt.name}.corrupt" in err, err
    assert (ckpt.parent / f"{ckpt.name}.corrupt").exists()
    table = assert_resumes_identically(tiny_run(name), out)
    assert (table.status == "ok").all()
