"""Seeded byte-flip and truncation fuzzing of the real file formats the package reads.

Each case is a corrupted copy of a valid fixture; the reader must either load it (the same content, or other
valid content) or raise the package's one-line error (:class:`~spuriouslab.errors.ConfigError`, of which
``DataError`` is one, with no newline in its message).  Anything else (another exception, a message over several
lines) is a failure.  ``python tests/fuzzing.py`` prints the counts per format.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spuriouslab.errors import ConfigError


def mutations(raw: bytes, n: int, seed: int) -> list[bytes]:
    """``n`` corrupted copies: single-byte flips (random bit patterns), multi-byte flips and truncations."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = bytearray(raw)
        kind = i % 3
        if kind == 0 and len(b):  # one byte replaced
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        elif kind == 1 and len(b):  # a few bytes anywhere
            for _ in range(int(rng.integers(2, 9))):
                b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
        else:  # truncation
            b = b[: int(rng.integers(len(b) + 1))]
        out.append(bytes(b))
    return out


def run_cases(
    cases: list[bytes], write: Callable[[bytes], None], load: Callable[[], object], same: Callable[[object], bool]
) -> Counter:
    """Outcomes: ``same`` (loaded the original content), ``other`` (loaded something else, valid),
    ``error`` (one-line error); any other outcome raises AssertionError naming the case."""
    counts: Counter = Counter()
    for i, case in enumerate(cases):
        write(case)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = load()
        except ConfigError as exc:
            assert "\n" not in str(exc), f"case {i}: a multi-line message: {exc!r}"
            counts["error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"case {i}: {type(exc).__name__}: {exc}") from None
        counts["same" if same(result) else "other"] += 1
    return counts


# ------------------------------------------------------------------------------------------ fixtures
def idx_cases(tmp: Path, n: int, compress: bool) -> Counter:
    from spuriouslab.data.images import read_idx, write_idx

    a = np.random.default_rng(0).integers(0, 256, (4, 6, 5), dtype=np.uint8)
    path = tmp / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, a, compress=compress)
    raw = path.read_bytes()
    return run_cases(
        mutations(raw, n, 1 + compress),
        path.write_bytes,
        lambda: read_idx(path),
        lambda r: isinstance(r, np.ndarray) and r.shape == a.shape and np.array_equal(r, a),
    )


def cifar_cases(tmp: Path, n: int) -> Counter:
    from spuriouslab.data.images import read_cifar_batch

    rng = np.random.default_rng(3)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, 4)],
        b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        b"filenames": [b"a.png"] * 4,
    }
    path = tmp / "data_batch_1"
    raw = pickle.dumps(batch, protocol=2)
    x0, y0 = read_cifar_batch_from(raw, path, read_cifar_batch)
    return run_cases(
        mutations(raw, n, 4),
        path.write_bytes,
        lambda: read_cifar_batch(path),
        lambda r: np.array_equal(r[0], x0) and np.array_equal(r[1], y0),
    )


def read_cifar_batch_from(raw: bytes, path: Path, reader):
    path.write_bytes(raw)
    return reader(path)


def folder_cases(tmp: Path, n: int) -> Counter:
    from PIL import Image

    import spuriouslab.data.images as images

    root = tmp / "folder"
    rng = np.random.default_rng(5)
    for split in ["train", "test"]:
        for cls in ["a", "b"]:
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    target = root / "train" / "a" / "0.png"
    raw = target.read_bytes()
    good = images.read_image_folder(root)

    def load():
        return images.read_image_folder(root)

    return run_cases(mutations(raw, n, 6), target.write_bytes, load, lambda r: np.array_equal(r.x_train, good.x_train))


def config_cases(tmp: Path, n: int) -> Counter:
    from spuriouslab.cli import load_config_file
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("memorization")
    text = (
        "experiment: memorization\nd: 40\nn_train: [10, 20]\nn_test: 30\nmodel: [rf, ntk]\nactivation: relu\n"
        "width: [300, inf]\nseeds: 2\nalpha: 0.5\nridge: [0.0, 1e-3]\n"
    )
    path = tmp / "c.yaml"
    path.write_text(text)
    good = exp.make_config(load_config_file(path, "memorization"))

    def load():
        return exp.make_config(load_config_file(path, "memorization"))

    return run_cases(mutations(text.encode(), n, 7), path.write_bytes, load, lambda c: c == good)


def records_cases(tmp: Path, n: int) -> Counter:
    from spuriouslab.store import RunStore

    store = RunStore(tmp / "run")
    store.root.mkdir()
    recs = [{"n_train": n_, "model": "rf", "seed": s, "test_acc": 0.5 + 0.01 * s} for n_ in (10, 20) for s in (0, 1)]
    store.append(recs)
    raw = store.records_path.read_bytes()
    fields = ["n_train", "model", "seed"]

    def load():
        got = store.records(fields)
        keys = [json.dumps({f: r[f] for f in fields}, sort_keys=True) for r in got]
        assert len(keys) == len(set(keys)), "a point counted twice"
        return got

    return run_cases(mutations(raw, n, 8), store.records_path.write_bytes, load, lambda r: r == recs)


def _report_cases(tmp: Path, n: int, seed: int, experiment: str, values: dict) -> Counter:
    """A real run's records.jsonl, corrupted: the run's report must come out (the same, or from what is left) or
    fail in one line."""
    import matplotlib.pyplot as plt

    from spuriouslab.experiments import get_experiment, run_points
    from spuriouslab.report import make_report
    from spuriouslab.store import RunStore
    from spuriouslab.sweep import make_plan

    exp = get_experiment(experiment)
    plan = make_plan(exp, values)
    store = RunStore(tmp / "run")
    store.open(exp.name, plan.config_dump(), plan.fixed_fields(), {})
    store.append(run_points(exp, plan.base))
    raw = store.records_path.read_bytes()
    good = make_report(store, plan)[1].summary
    plt.close("all")

    def load():
        try:
            return make_report(store, plan)[1].summary
        finally:
            plt.close("all")

    return run_cases(mutations(raw, n, seed), store.records_path.write_bytes, load, lambda r: r == good)


def distillation_records(tmp: Path, n: int) -> Counter:
    return _report_cases(
        tmp,
        n,
        9,
        "distillation",
        {
            "epochs": 4,
            "teacher_epochs": 4,
            "log_every": 2,
            "seeds": 2,
            "n": 60,
            "n_test": 40,
            "width": 16,
            "embed": 4,
            "activation": ["relu"],
        },
    )


def background_records(tmp: Path, n: int) -> Counter:
    return _report_cases(
        tmp,
        n,
        10,
        "background-features",
        {
            "data": "digits",
            "n_train": 100,
            "n_test": 40,
            "epochs": 1,
            "seeds": 1,
            "vis_channels": 2,
            "vis_steps": 2,
            "vis_rounds": 1,
            "cam_images": 10,
            "batch_size": 50,
            "depth": 8,
        },
    )


def probe_records(tmp: Path, n: int) -> Counter:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # probe_models
    return _report_cases(
        tmp,
        n,
        12,
        "probe",
        {"model": "probe_models:reads_border", "data": "digits", "eval_border": 1, "n": 40, "cam_images": 10},
    )


def sweep_spec_cases(tmp: Path, n: int) -> Counter:
    from spuriouslab.experiments import get_experiment
    from spuriouslab.sweep import load_spec, make_plan

    text = (
        "experiment: contamination\niterations: 40\nlog_every: 20\nseeds: 2\nn: 60\nn_test: 60\n"
        "grid:\n  width: {range: [16, 48, 16]}\n  lr: {log: [1e-3, 1e-1, 3]}\n  activation: [relu, identity]\n"
    )
    path = tmp / "spec.yaml"

    def load():
        name, values, grid = load_spec(path)
        plan = make_plan(get_experiment(name), values, grid)
        return [c.model_dump() for c in plan.configs], plan.points()

    path.write_text(text)
    good = load()
    return run_cases(mutations(text.encode(), n, 13), path.write_bytes, load, lambda r: r == good)


def aliased_config_cases(tmp: Path, n: int) -> Counter:
    """A config written with YAML anchors and aliases, fuzzed: an alias that comes to point elsewhere (or at
    itself) loads other content or fails in one line, never expands without bound."""
    from spuriouslab.cli import load_config_file
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("memorization")
    text = (
        "experiment: memorization\nd: &d 40\nn_train: &n [10, 20]\nn_test: 30\nmodel: [rf, ntk]\n"
        "activation: &a relu\nwidth: [300, inf]\nseeds: 2\nalpha: 0.5\nridge: [0.0, 1e-3]\n"
        "x-defaults: &defaults {d: *d, activation: *a, n_train: *n}\n"
    )
    path = tmp / "c.yaml"

    def load():
        values = load_config_file(path, "memorization")
        values.pop("x-defaults", None)
        return exp.make_config(values)

    path.write_text(text)
    good = load()
    return run_cases(mutations(text.encode(), n, 17), path.write_bytes, load, lambda c: c == good)


def alias_bomb_cases(tmp: Path, n: int) -> Counter:
    """Nested aliases of random depth and fan-out ("billion laughs"): each either expands to at most
    ``yamlio.MAX_NODES`` values and loads, or is refused in one line before it is expanded."""
    from spuriouslab import yamlio

    rng = np.random.default_rng(19)
    cases = []
    for _ in range(n):
        depth, fan = int(rng.integers(1, 10)), int(rng.integers(2, 13))
        lines = [f"l0: &l0 [{', '.join(['lol'] * fan)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, depth)]
        cases.append(("\n".join(lines) + "\n").encode())
    path = tmp / "bomb.yaml"
    return run_cases(cases, path.write_bytes, lambda: yamlio.load_file(path), lambda r: False)


def index_cases(tmp: Path, n: int) -> Counter:
    """``reproduction.json``, hand-damaged: loads (the same index, or another valid one) or is one line."""
    from spuriouslab.reproduction import Outcome, read_index, write_index

    verdict = {"claim": "c", "metric": "m", "effect": 0.1, "low": 0.0, "high": 0.2, "verdict": "holds"}
    outcomes = {
        "bm-digits": Outcome("bm-digits", "done", "", 12.5, ["seeds=3"], [verdict]),
        "zh-theory": Outcome("zh-theory", "failed", "it broke", 3.0, []),
        "bm-mnist": Outcome("bm-mnist", "skipped", "needs mnist"),
    }
    write_index(tmp, "cpu", outcomes)
    path = tmp / "reproduction.json"
    good = read_index(tmp)
    return run_cases(
        mutations(path.read_bytes(), n, 23), path.write_bytes, lambda: read_index(tmp), lambda r: r == good
    )


FORMATS = {
    "IDX (gzip)": lambda tmp, n: idx_cases(tmp, n, True),
    "IDX (raw)": lambda tmp, n: idx_cases(tmp, n, False),
    "CIFAR pickle": cifar_cases,
    "image folder (PNG)": folder_cases,
    "config file (YAML)": config_cases,
    "records.jsonl": records_cases,
    "sweep spec (YAML)": sweep_spec_cases,
    "config file (YAML with aliases)": aliased_config_cases,
    "YAML alias bombs (generated)": alias_bomb_cases,
    "reproduction.json": index_cases,
    "distillation records -> report": distillation_records,
    "background-features records (vis) -> report": background_records,
    "probe records -> report": probe_records,
}
# formats whose corruptions are mostly still valid content (a digit of a number changed, a line dropped): the
# fuzzing test does not ask that most of them be errors
LENIENT = {
    "records.jsonl",
    "YAML alias bombs (generated)",  # generated, not corrupted: the small ones load
    "distillation records -> report",
    "background-features records (vis) -> report",
    "probe records -> report",
}
# cases per format in the test suite (the report-based ones draw figures: fewer)
SUITE_CASES = {
    "distillation records -> report": 30,
    "background-features records (vis) -> report": 20,
    "probe records -> report": 30,
}


def main(n: int = 300) -> None:
    print("| format | cases | loaded, same | loaded, other valid content | one-line error |")
    print("|---|---|---|---|---|")
    for name, fn in FORMATS.items():
        tmp = Path(tempfile.mkdtemp())
        try:
            c = fn(tmp, n)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"| {name} | {n} | {c['same']} | {c['other']} | {c['error']} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
