"""What the suite shares: the in-process CLI, the tiny runs computed once per session, one way to say "a resumed run
is the uninterrupted one", crash injection inside the process, and checks of figures and subprocesses.

Resume tests.  Most of them interrupt a run in this process (:func:`interrupted_after`: the store's crash point
raises ``KeyboardInterrupt`` right after the N-th record or checkpoint is durably written, as Ctrl-C at that moment
would), resume it in this process and compare it with the session's uninterrupted run of the same config
(:func:`assert_resumes_identically`, exact).  A real signal is sent to a real process once per mechanism: the store's
append, the worker pool and the trainer's checkpoints, each with SIGKILL and with SIGINT (``test_signals.py``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

# The suite runs in parallel (pytest-xdist, ``-n auto`` in pyproject.toml: one worker per core, at most
# MAX_WORKERS); each worker computes with its share of the cores' threads (one on CI's two cores), or what
# OMP_NUM_THREADS says.  Without xdist (``-n 0`` or ``-p no:xdist``), two threads, fewer where the machine has fewer.
MAX_WORKERS = 4
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
torch.set_num_threads(
    int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, min(2 * WORKERS, os.cpu_count() or 1) // WORKERS)
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most MAX_WORKERS (each recomputes the session's tiny runs it needs)."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _same_threads():
    """Every test starts with the suite's torch threads: code that sets them in this process (an in-process
    executor's worker setting) does not leak into later tests, whose records the session runs' must equal."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


# Figures are saved as PNG alone in the suite (half the drawing time of PNG + PDF, the default);
# test_cli.py::test_run_writes_every_artefact checks the other formats.
os.environ["SPURIOUSLAB_FIGURE_FORMATS"] = "png"

HERE = Path(__file__).resolve().parent
# subprocesses compute with the threads of this process (torch reads OMP_NUM_THREADS at start), so that a run in a
# subprocess gives the records of the same run in this process, bit for bit; tests/ is importable (probe_models,
# distill_models)
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": str(THREADS),
    "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p),
}
CLI = [sys.executable, "-m", "spuriouslab.cli"]


def invoke(*args: object) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from spuriouslab.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    return invoke


def sets(*pairs: str) -> list[str]:
    """``--set`` arguments, one per ``key=value``."""
    return [arg for pair in pairs for arg in ("--set", pair)]


def one_line_exit_2(result: tuple[int, str, str], *needles: str) -> str:
    """A refused input: exit status 2 and one line on stderr, ``spuriouslab: error: ...`` naming each of
    ``needles``, no traceback.  Returns the line."""
    code, _, stderr = result
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spuriouslab: error: "), stderr
    assert "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def records(run: Path) -> list[dict]:
    """The records of a run directory, line by line as records.jsonl holds them."""
    import json

    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def cifar_batches(root: Path, per_batch: int = 20, extra: dict[str, dict] | None = None) -> Path:
    """CIFAR-10 in its real format in ``root/cifar-10-batches-py``: five training batches and ``test_batch``, each
    ``per_batch`` random images as uint8 rows of 3072 (R, G, B planes of 32 x 32) with labels 0-9, pickled as the
    originals are (protocol 2, bytes keys); ``extra`` adds keys to the batches it names.  Returns the folder."""
    import pickle

    import numpy as np

    from spuriouslab.data.images import CIFAR_TRAIN

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*CIFAR_TRAIN, "test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            **(extra or {}).get(name, {}),
        }
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    return d


TINY = [
    *sets("d=40", "n_train=10,30", "n_test=50", "width=300", "seeds=2", "alpha=0.5", "activation=phi2,relu"),
    "--no-progress",
]

# ----------------------------------------------------------------------------------------- the session's runs
# Each is computed once per session, the first time a test asks for it, and shared by every test that needs it.
# The sizes are the smallest that keep what the tests sharing them assert: several groups (so that a crash can land
# between them), checkpoints every logged step, two seeds.
RUNS: dict[str, list[str]] = {
    # 16 records: n_train x activation x model (rf, ntk) x 2 seeds, 8 groups
    "memorization": ["run", "memorization", *TINY],
    # the same at d=60: a second run of one experiment that differs in a fixed setting
    "memorization-d60": ["run", "memorization", *TINY, "--set", "d=60"],
    # 2 records, one stacked group
    "contamination": [
        "run",
        "contamination",
        *sets("iterations=20", "log_every=10", "seeds=2", "n=40", "n_test=40"),
        "--no-progress",
    ],
    # 6 records in two groups of three stacked seeds; 4 checkpoints a group
    "contamination-stacked": [
        "run",
        "contamination",
        *sets("iterations=40", "log_every=10", "seeds=3", "n=40", "n_test=40", "activation=relu,identity"),
        "--no-progress",
    ],
    # 2 records, one group (the CNN's seeds stacked); a checkpoint every 2 epochs
    "memorization-nn": [
        "run",
        "memorization-nn",
        *sets("model=cnn", "n_train=100", "epochs=8", "log_every=2", "seeds=2", "n_test=60"),
        "--no-progress",
    ],
    # the coloured task: 4 records over rho, one group each
    "coloured": [
        "run",
        "memorization-nn",
        *sets("preset=quick", "data=digits", "border=1", "border_content=coloured", "model=fc", "n_train=200"),
        *sets("n_test=100", "epochs=3", "step_size=3", "log_every=3", "seeds=2", "rho=0.5,1.0"),
        "--no-progress",
    ],
    # 2 records (padded, control), one ResNet-8 each; a checkpoint every epoch (4 steps of 25 images)
    "background-features": [
        "run",
        "background-features",
        *sets("data=digits", "n_train=100", "n_test=40", "epochs=4", "seeds=1", "vis_channels=2", "vis_steps=2"),
        *sets("vis_rounds=1", "cam_images=10", "batch_size=25", "depth=8"),
        "--no-progress",
    ],
    # 4 records (relu, identity students, two seeds) of the synthetic task; the teacher's checkpoints every 10 epochs
    # (the last kept, shared by both groups), then each student's
    "distillation": [
        "run",
        "distillation",
        *sets("epochs=40", "teacher_epochs=30", "log_every=10", "seeds=2", "n=120", "n_test=80", "width=32"),
        *sets("embed=8", "d=64", "d_core=8", "d_bg=8"),
        "--no-progress",
    ],
}


class SessionRuns:
    """The session's uninterrupted runs, by name (:data:`RUNS`), each computed once.  Tests read them; a test that
    writes into a run (a report, a resume, an edited records.jsonl) takes a copy (:meth:`copy`).  At the end of the
    session every run's records are checked unchanged."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs: dict[str, Path] = {}
        self.digests: dict[str, str] = {}
        self.outputs: dict[str, tuple[int, str, str]] = {}

    def __call__(self, name: str) -> Path:
        if name not in self.dirs:
            out = self.root / name
            self.outputs[name] = code, _, err = invoke(*RUNS[name], "--out", out)
            assert code == 0, err
            self.dirs[name] = out
            self.digests[name] = _digest(out / "records.jsonl")
        return self.dirs[name]

    def output(self, name: str) -> tuple[int, str, str]:
        """What the CLI gave when it made run ``name``: (exit code, stdout, stderr)."""
        self(name)
        return self.outputs[name]

    def copy(self, name: str, dest: Path) -> Path:
        """A private copy of run ``name`` at ``dest`` (without the lock files)."""
        shutil.copytree(self(name), dest, ignore=shutil.ignore_patterns(".lock", ".lock.pid"))
        return dest

    def args(self, name: str) -> list[str]:
        """The CLI arguments that made run ``name`` (without ``--out``)."""
        return list(RUNS[name])

    def check_unchanged(self) -> None:
        for name, out in self.dirs.items():
            assert _digest(out / "records.jsonl") == self.digests[name], f"a test wrote into the session's {name} run"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Iterator[SessionRuns]:
    """``tiny_run(name)``: the directory of the session's uninterrupted tiny run ``name`` (:data:`RUNS`), computed
    the first time it is asked for; ``tiny_run.copy(name, dest)`` for a copy a test may write into."""
    runs = SessionRuns(tmp_path_factory.mktemp("session-runs"))
    yield runs
    runs.check_unchanged()


# ------------------------------------------------------------------------------------------ resume and crashes
def results(run: Path) -> pd.DataFrame:
    """A run's table without its timings, one row per grid point in a fixed order (``point_id``)."""
    df = pd.read_parquet(run / "results.parquet")
    df = df.drop(columns=[c for c in df if c.startswith("seconds")])
    return df.sort_values("point_id").reset_index(drop=True)


def assert_resumes_identically(uninterrupted: Path, resumed: Path, exact: bool = True) -> pd.DataFrame:
    """The resumed run's table is the uninterrupted run's, every value exactly (timings aside), each grid point once
    in its table and in its records.jsonl.  Returns the table.

    ``exact=False`` only where part of the resumed run was computed with other thread counts than the uninterrupted
    one (worker processes take ``cores // jobs`` threads): values then compare as records of another machine do
    (:func:`matches_across_machines`)."""
    import json

    a, b = results(uninterrupted), results(resumed)
    assert not b.point_id.duplicated().any(), "a point is in the table twice"
    lines = [json.loads(line) for line in (resumed / "records.jsonl").read_text().splitlines() if line.strip()]
    assert len(lines) == len(a), f"records.jsonl holds {len(lines)} records, the uninterrupted run {len(a)}"
    assert list(a.columns) == list(b.columns) and list(a.point_id) == list(b.point_id)
    by_point = {r["point_id"]: _untimed(r) for r in _raw_records(resumed)}
    for rec in map(_untimed, _raw_records(uninterrupted)):
        other = by_point[rec["point_id"]]
        if exact:  # as JSON: every float to its last bit, NaN equal to NaN
            changed = [k for k in rec if json.dumps(rec[k]) != json.dumps(other.get(k, "missing"))]
        else:
            changed = mismatches_across_machines(rec, other)
        assert not changed and rec.keys() == other.keys(), f"{rec['point_id']}: {changed[:5]} differ"
    return b


def _raw_records(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]


def _untimed(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("seconds")}


class Interrupted(KeyboardInterrupt):
    """Raised by the injected crash point: what Ctrl-C at that moment raises (a KeyboardInterrupt)."""


@contextlib.contextmanager
def interrupted_after(kind: str, n: int) -> Iterator[dict[str, int]]:
    """Within the block, the store's crash point (``spuriouslab.store._crash_point``, where SPURIOUSLAB_KILL_AFTER
    kills a process) raises :class:`Interrupted` right after the ``n``-th record or checkpoint (``kind``: "records"
    or "checkpoints") is durably written, in this process.  Yields the counts written so far."""
    from spuriouslab import store

    counts = {"records": 0, "checkpoints": 0}

    def crash_point(what: str, count: int = 1) -> None:
        counts[what] += count
        if what == kind and counts[what] >= n:
            raise Interrupted(f"injected after {counts[what]} {what}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "_crash_point", crash_point)
        yield counts


def interrupt_and_resume(cli, args: list[str], out: Path, kind: str, n: int) -> dict[str, int]:
    """Run ``args`` into ``out``, interrupted in this process after the ``n``-th ``kind``; check the interruption
    ends as Ctrl-C does (exit 130, what was saved and how to resume).  Returns the counts written before it.  The
    caller inspects ``out`` and then resumes with the same command."""
    with interrupted_after(kind, n) as counts:
        code, _, err = cli(*args, "--out", out)
    assert code == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err, err
    assert counts[kind] >= n, counts
    return counts


# ------------------------------------------------------------------------------ records compared across machines
# A stored fixture is compared with records computed now, on whatever CPU runs the suite.  Trained in float32 on
# another CPU (other vector widths, FMA or not, other BLAS / oneDNN kernels), every value differs from the stored one
# by rounding.  The rule: a float value q of a record (a scalar, or each point of a curve) matches when
#
#     |q_now - q_stored| <= K_FLOAT32 * EPS32 * S,   S = max(1, max |q_stored| over the metric's values)
#
# EPS32 = 2**-23 is float32's machine epsilon.  S is the scale of the arithmetic that made q, not of q itself: every
# quantity here is computed from O(1) numbers (losses are O(1) at init, weights, projections and accuracies at most
# O(1)), and a difference of two of them (bg_signed_change = end - start, a background norm that is zero by
# construction, ~1e-8) carries their rounding, not a rounding relative to its own small size; a metric larger than 1
# sets its own scale.  K_FLOAT32 = 64: rounding of a different instruction order accumulates like a random walk over
# the run's steps and reductions (60 steps here: sqrt(60) ~ 8 eps), and the largest difference seen is 7.8 EPS32 * S
# (curve_bg_signed on an Intel Xeon against CI's AMD EPYC, issue 28) and 3.1 EPS32 * S here with torch's and MKL's
# vector code paths switched (ATEN_CPU_CAPABILITY=default, MKL_ENABLE_INSTRUCTIONS=SSE4_2, ONEDNN_MAX_CPU_ISA=SSE41,
# MKL_CBWR=COMPATIBLE): a margin of 8x.  The tolerance, 64 * 1.19e-7 = 7.6e-6 at S = 1, stays four orders of
# magnitude below any change of a seed, a stream or a step, which moves these values by 1e-2 or more.  Integers,
# strings, booleans and None compare exactly; NaN matches NaN.  Comparisons within one process or one machine (a
# resumed run against the uninterrupted one) stay exact: assert_resumes_identically.
EPS32 = 2.0**-23
K_FLOAT32 = 64


def _numbers(value: object) -> tuple[list[float], object] | None:
    """A number or a nested list of numbers as (its values flattened, its nesting); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return None
    if not isinstance(value, list):
        return [float(value)], None
    flat: list[float] = []
    shape: list[object] = []
    for v in value:
        got = _numbers(v)
        if got is None:
            return None
        flat += got[0]
        shape.append(got[1])
    return flat, shape


def _has_float(value: object) -> bool:
    return isinstance(value, float) or isinstance(value, list) and any(_has_float(v) for v in value)


def matches_across_machines(stored: object, now: object) -> bool:
    """Whether a record field computed now matches its stored value: floats under the float32 rule above, anything
    else (integers, strings, booleans, None, lists of them) exactly."""
    import math

    if not _has_float(stored):
        return stored == now
    old, new = _numbers(stored), _numbers(now)
    if old is None or new is None or old[1] != new[1]:
        return False
    finite = [abs(v) for v in old[0] if math.isfinite(v)]
    tol = K_FLOAT32 * EPS32 * max([1.0, *finite])
    return all(
        a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol for a, b in zip(old[0], new[0], strict=True)
    )


def mismatches_across_machines(stored: dict, now: dict) -> list[str]:
    """The fields of a stored record that a record computed now does not match (:func:`matches_across_machines`);
    a field it lacks is a mismatch."""
    return [k for k, v in stored.items() if k not in now or not matches_across_machines(v, now[k])]


# --------------------------------------------------------------------------------------------- subprocesses
@contextlib.contextmanager
def spawned(cmd: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    """A subprocess that is killed on every way out of the block (a failed assertion included).  Its SIGINT is
    the default whatever this process inherited: a suite started with SIGINT ignored (a script's ``cmd &``,
    ``nohup``) would otherwise pass "ignored" on, and the child would never see a test's Ctrl-C."""
    proc = subprocess.Popen(cmd, env=kwargs.pop("env", ENV), preexec_fn=_default_sigint, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def held(args: list[str], out: Path, point: str, tmp_path: Path) -> contextlib.AbstractContextManager:
    """``spuriouslab ARGS --out OUT`` in a session of its own, held right after ``point`` ("records:N" or
    "checkpoints:N") until it is signalled (tests/signal_at.py): the subprocess (text pipes), killed on every way
    out."""
    go = tmp_path / "never"
    cmd = [sys.executable, str(HERE / "signal_at.py"), point, f"wait={go}", *args, "--out", str(out)]
    return spawned(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_held(proc: subprocess.Popen, tmp_path: Path) -> None:
    """Until the held run (:func:`held`) is at its point (it says so in ``never.held``)."""
    import time

    deadline = time.time() + 120
    while not (tmp_path / "never.held").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        assert time.time() < deadline, "the run never reached its point"
        time.sleep(0.05)


def run_killed(args: list[str], out: Path, kill_after: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``spuriouslab ARGS --out OUT`` in a subprocess that SIGKILLs itself right after ``kill_after`` ("records:N"
    or "checkpoints:N", SPURIOUSLAB_KILL_AFTER); asserts it died of SIGKILL."""
    env = {**ENV, "SPURIOUSLAB_KILL_AFTER": kill_after}
    with spawned([*CLI, *args, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        stdout, stderr = p.communicate(timeout=timeout)
    assert p.returncode == -signal.SIGKILL, stderr.decode(errors="replace")[-3000:]
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


# ------------------------------------------------------------------------------------------------- figures
def assert_figure(path: Path, min_pixels: int = 200 * 150, min_ink: float = 0.01) -> None:
    """``path`` is a drawn figure: a PNG of at least ``min_pixels`` pixels, not one flat colour, with at least
    ``min_ink`` of its pixels away from the background (white): something is drawn on it, not just a blank
    canvas."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG", path
        width, height = im.size
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert width * height >= min_pixels, f"{path}: {width}x{height}"
    assert rgb.std() > 5, f"{path}: blank (pixel std {rgb.std():.2f})"
    ink = (np.abs(rgb - 255).max(axis=-1) > 30).mean()
    assert ink >= min_ink, f"{path}: only {ink:.4f} of the pixels are drawn"


def assert_figures(run: Path, *names: str, **kw) -> None:
    """Each of ``names`` is a drawn figure in ``run/figures`` (:func:`assert_figure`), with its PDF beside it where
    PDFs are saved."""
    from spuriouslab.runtime import figure_formats

    for name in names:
        assert_figure(run / "figures" / f"{name}.png", **kw)
        pdf = run / "figures" / f"{name}.pdf"
        assert "pdf" not in figure_formats() or pdf.read_bytes()[:5] == b"%PDF-", pdf


# ------------------------------------------------------------------------------------------ CPU time per test
# ``pytest --cpu-durations=N`` lists the N tests that took the most CPU time (this process and the subprocesses it
# waited for, user + system).  On a machine other jobs share, wall times (--durations) grow with the load; CPU time
# much less so, and on an idle 2-core machine a test's wall time is about its CPU time (half where torch keeps both
# cores busy).
def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N", help="list the N slowest tests by CPU")


_CPU: dict[str, float] = {}


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.config.getoption("--cpu-durations") is None:
        yield
        return
    start = _cpu_now()
    yield
    _CPU[item.nodeid] = _cpu_now() - start


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.getoption("--cpu-durations")
    if n is None or not _CPU:
        return
    terminalreporter.write_sep("=", f"CPU time: total {sum(_CPU.values()):.1f}s, {n} slowest tests")
    for nodeid, seconds in sorted(_CPU.items(), key=lambda kv: -kv[1])[:n]:
        terminalreporter.write_line(f"{seconds:8.2f}s  {nodeid}")
    by_file: dict[str, float] = {}
    for nodeid, seconds in _CPU.items():
        by_file[nodeid.split("::")[0]] = by_file.get(nodeid.split("::")[0], 0.0) + seconds
    terminalreporter.write_sep("=", "CPU time by file")
    for name, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.2f}s  {name}")


class MemoryCheckpoints:
    """Checkpoints kept in memory (the run directory's interface: load, save, set_aside, discard), for tests of
    phase checkpoints and resume without a run directory."""

    def __init__(self):
        self.saved: dict[str, object] = {}

    def load(self, key):
        return copy.deepcopy(self.saved.get(key))

    def save(self, key, obj):
        self.saved[key] = copy.deepcopy(obj)

    def set_aside(self, key, reason):  # pragma: no cover - a mismatch would be a bug here
        raise AssertionError(reason)

    def discard(self, key):
        self.saved.pop(key, None)
