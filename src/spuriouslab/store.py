"""One run directory = one store, and the store is the only code that writes into it (DomainBed-style: raw
per-point records, then tables built from them).

DIR/config.yaml      fully resolved configuration (with ``experiment:``)
DIR/env.json         package versions, device, threads, git commit, base seed
DIR/resolved.json    what the machine resolved at the run's first point (data=auto's data set, data checksums)
DIR/records.jsonl    one JSON line per completed grid point, appended, flushed and fsynced as it completes
DIR/errors.jsonl     one line per failed group (its points stay pending and are retried on the next run)
DIR/checkpoints/     mid-group checkpoints of long groups (:class:`Checkpoints`), removed when a group completes
DIR/results.parquet  every record as a table (rebuilt from records.jsonl)
DIR/figures/         PNG and PDF;  DIR/summary.md  the key table

Every file other than the appended logs is written atomically: to a temporary file private to its writer, then
renamed over the target.

A record's identity is its grid point (the axis values plus ``seed``); a restarted run skips points whose
record exists.  A line cut short by a crash (no trailing newline) is dropped and overwritten on resume; a line
that is not a JSON object holding the grid point's fields (garbage, a foreign file) is skipped with a warning
naming the file and line, so its point counts as not done and is recomputed; a point recorded twice counts once.

One writer at a time: a run holds an exclusive lock on DIR (``DIR/.lock``, with its pid in ``DIR/.lock.pid``)
for as long as it writes; a second process is refused at once with "DIR is in use by pid N".
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from spuriouslab.bounded import TEXT_BYTES, clean_line, read_bounded, read_tail, shown
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import renamed

if TYPE_CHECKING:
    from filelock import BaseFileLock

    from spuriouslab.experiments.base import Report

# Fault injection for the crash tests: with SPURIOUSLAB_KILL_AFTER="records:N" (or "checkpoints:N") this process
# kills itself with SIGKILL right after its N-th record (checkpoint) is durably written: a crash at a known point.
KILL_AFTER = "SPURIOUSLAB_KILL_AFTER"
_written = {"records": 0, "checkpoints": 0}


def _crash_point(kind: str, count: int = 1) -> None:
    spec = os.environ.get(KILL_AFTER, "")
    what, _, n = spec.partition(":")
    if what != kind:
        return
    _written[kind] += count
    if _written[kind] >= int(n):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def _record_problem(rec: Any, fields: list[str] | None) -> tuple[str | None, str | None]:
    """Why a line of records.jsonl is not a valid record of a run whose grid points have ``fields`` (None: it is),
    and its grid point's key (None when there are no fields or it is not valid)."""
    if not isinstance(rec, dict):
        return "not a JSON record", None
    if fields is None:
        return None, None
    if any(f not in rec for f in fields):
        return f"not a record of this run (missing {', '.join(f for f in fields if f not in rec)})", None
    if set(rec) <= {*fields, "point_id"}:
        return "a grid point with no results", None
    try:
        return None, point_key({f: rec[f] for f in fields})
    except (TypeError, ValueError):
        return "not a record of this run (unreadable grid point)", None


def _kind(value: Any) -> str | None:
    """The kind of a record's value, as a column must hold one kind (None: no value, allowed anywhere)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    kinds: dict[type, str] = {str: "string", list: "list", dict: "mapping"}
    return kinds.get(type(value), type(value).__name__)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def environment(
    device: str, seed: int | None = None, jobs: int = 1, threads: int | None = None, executor: str = "local"
) -> dict[str, Any]:
    """What a run ran with; ``threads`` is the torch threads of each process that computes (each worker's
    when ``jobs > 1``)."""
    import torch

    versions: dict[str, str | None] = {}
    for pkg in [
        "spuriouslab",
        "torch",
        "numpy",
        "scipy",
        "pandas",
        "pyarrow",
        "pydantic",
        "scikit-learn",
        "matplotlib",
    ]:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    env = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "jobs": jobs,
        "executor": executor,
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "git_commit": _git_commit(),
        "base_seed": seed,
        "versions": versions,
    }
    return env


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# the mode a file created the usual way gets (0644 under umask 022): results stay readable to colleagues
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError of writing ``path`` with the path in it ("No space left on device" alone says
    nothing about where)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a temporary file private to this writer (same directory), then rename it over
    ``path``: readers see the old file or the new one, never a partial one.  The file gets the usual mode
    (``FILE_MODE``), not the temporary file's private 0600."""
    path = Path(path)
    with naming(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class Checkpoints:
    """Checkpoints of long groups, by key, in one directory (``DIR/checkpoints``).  Loading uses
    ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain containers only, never code.
    A checkpoint that cannot be read, or that loads but does not match its run (:func:`spuriouslab.nets.train.resume`),
    is set aside (renamed ``*.corrupt``) with a warning, and its group starts from scratch."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str) -> Any:
        import torch

        path = self.path(key)
        if not path.exists():
            return None
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any unreadable file: set aside, restart the group
            self.set_aside(key, f"unreadable checkpoint ({type(exc).__name__})")
            return None

    def set_aside(self, key: str, reason: str) -> None:
        """Move checkpoint ``key`` out of the way (``*.corrupt``) with a warning: its group starts from scratch."""
        path = self.path(key)
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"{path}: {reason}; moved to {aside.name}, its group restarts from scratch", stacklevel=3)

    def save(self, key: str, obj: Any) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(key), lambda tmp: torch.save(obj, tmp))
        _crash_point("checkpoints")

    def discard(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class RunDirInUse(ConfigError):
    """Another process holds the run directory's lock."""


class RunStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.records_path = self.root / "records.jsonl"
        self.errors_path = self.root / "errors.jsonl"
        self.config_path = self.root / "config.yaml"
        self.summary_path = self.root / "summary.md"
        self.results_path = self.root / "results.parquet"
        self.figures = self.root / "figures"
        self.checkpoints = Checkpoints(self.root / "checkpoints")
        self._lock: BaseFileLock | None = None

    # ------------------------------------------------------------------- lock
    def lock(self) -> None:
        """Take the directory's exclusive lock (held until :meth:`unlock` or the process ends)."""
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return
        lock = FileLock(str(self.root / ".lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            pid = "?"
            try:
                pid = clean_line(read_tail(self.root / ".lock.pid", 32).strip() or "?", 32)
            except OSError:
                pass
            raise RunDirInUse(
                f"{self.root} is in use by pid {pid}; wait for it to finish or use another --out"
            ) from None
        self._lock = lock
        (self.root / ".lock.pid").write_text(str(os.getpid()))

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise ConfigError(f"{self.root}: no config.yaml here; is this a spuriouslab run directory?")
        from spuriouslab import yamlio

        data = yamlio.load_file(self.config_path)
        if not isinstance(data, dict) or "experiment" not in data:
            raise ConfigError(f"{self.config_path}: missing the 'experiment' field")
        return data

    def open(
        self,
        experiment: str,
        config: dict[str, Any],
        fixed_fields: Iterable[str],
        env: dict[str, Any],
        defaults: dict[str, Any] | None = None,
    ) -> None:
        """Create DIR (and take its lock) or check that it holds the same experiment with the same non-grid
        settings.  A field the stored config does not have (a run made before the field existed) matches when
        this run leaves it at its default (``defaults``)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"--out {self.root}: exists and is not a directory") from None
        except NotADirectoryError:
            raise ConfigError(f"--out {self.root}: lies under a file, not a directory") from None
        except PermissionError:
            raise ConfigError(f"--out {self.root}: cannot create it (permission denied)") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigError(f"--out {self.root}: not writable (permission denied)")
        self.lock()
        if self.config_path.exists():
            old = self.read_config()
            if old.get("experiment") != experiment:
                raise ConfigError(
                    f"--out {self.root}: holds a '{old.get('experiment')}' run, not '{experiment}'; "
                    "use another directory"
                )
            for field in fixed_fields:
                if (
                    field not in old
                    and defaults is not None
                    and field in defaults
                    and config.get(field) == defaults[field]
                ):
                    continue
                if old.get(field) != config.get(field):
                    raise ConfigError(
                        f"--out {self.root}: holds a run with {field}={old.get(field)!r}, this one has "
                        f"{field}={config.get(field)!r}; use another directory or the same setting"
                    )
        self._write_text(self.config_path, yaml.safe_dump({"experiment": experiment, **config}, sort_keys=False))
        self._write_text(self.root / "env.json", json.dumps(env, indent=2))
        self.checkpoints.directory.mkdir(exist_ok=True)

    def pin(self, found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """What each grid combination (by key) resolved on this machine, fixed at the run's first point: the
        values in ``DIR/resolved.json`` win once records exist; otherwise ``found`` is written there."""
        path = self.root / "resolved.json"
        old: Any = {}
        if path.exists() and self.records_path.exists() and self.records_path.stat().st_size:
            try:
                old = json.loads(read_bounded(path, TEXT_BYTES, "a run's resolved.json"))
            except ValueError:  # ConfigError (too large, binary) too
                old = None
            if not isinstance(old, dict):
                raise ConfigError(
                    f"{path}: not what this run resolved at its first point (edited?); remove the "
                    "file to take what this machine finds now"
                )
        merged = {**found, **old}
        if merged != old:
            self._write_text(path, json.dumps(merged, indent=2, sort_keys=True))
        return merged

    @staticmethod
    def _write_text(path: Path, text: str) -> None:
        atomic_write(path, lambda tmp: tmp.write_text(text))

    # ----------------------------------------------------------------- records
    def records(self, fields: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every valid record, each grid point once.  With ``fields`` (the grid point's fields), a line that is
        not a JSON object holding them is skipped with a warning naming the file and line; so is a record holding
        a value of another kind than the rest of its column (:meth:`_odd_ones`)."""
        if not self.records_path.exists():
            return []
        raw = self.records_path.read_bytes()
        end = raw.rfind(b"\n") + 1  # a final line without newline was cut short by a crash
        fields = list(fields) if fields is not None else None
        parsed: list[tuple[int, dict[str, Any], str | None]] = []
        for number, line in enumerate(raw[:end].split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec = renamed(rec) if isinstance(rec, dict) else rec
            except (ValueError, UnicodeDecodeError):
                rec = None
            problem, key = _record_problem(rec, fields)
            if problem:
                warnings.warn(
                    f"{self.records_path}:{number}: {problem}; skipped (its point is recomputed)", stacklevel=2
                )
                continue
            parsed.append((number, rec, key))
        odd = self._odd_ones(parsed)
        out, seen = [], set()
        for number, rec, key in parsed:
            if number in odd:
                continue
            if key is not None:
                if key in seen:
                    warnings.warn(
                        f"{self.records_path}:{number}: a second record of the same grid point; counted once",
                        stacklevel=2,
                    )
                    continue
                seen.add(key)
            out.append(rec)
        return out

    def _odd_ones(self, parsed: list[tuple[int, dict[str, Any], str | None]]) -> set[int]:
        """The line numbers of records holding a value of another kind than the rest of its column (a metric
        hand-edited to a string or ``true`` among numbers), each warned about: skipped, so that no table,
        verdict or Parquet file meets a column of mixed kinds, and its point is recomputed by a rerun."""
        kinds: dict[str, Counter[str]] = {}
        for _, rec, _ in parsed:
            for key, value in rec.items():
                kind = _kind(value)
                if kind is not None:
                    kinds.setdefault(key, Counter())[kind] += 1
        usual = {key: c.most_common(1)[0][0] for key, c in kinds.items() if len(c) > 1}
        odd: set[int] = set()
        for number, rec, _ in parsed if usual else []:
            bad = [k for k, kind in usual.items() if k in rec and _kind(rec[k]) not in (None, kind)]
            if bad:
                warnings.warn(
                    f"{self.records_path}:{number}: {bad[0]} is {shown(rec[bad[0]], 60)} where the other records "
                    f"hold a {usual[bad[0]]}; skipped (its point is recomputed)",
                    stacklevel=3,
                )
                odd.add(number)
        return odd

    def _repair_tail(self) -> None:
        if not self.records_path.exists():
            return
        raw = self.records_path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end != len(raw):
            with open(self.records_path, "r+b") as fh:
                fh.truncate(end)

    def done_keys(self, axes: Iterable[str]) -> set[str]:
        axes = list(axes)
        return {point_key({a: r[a] for a in axes}) for r in self.records(axes)}

    def append(self, records: Iterable[dict[str, Any]], durable: Callable[[], None] | None = None) -> None:
        """Append a group's records in one write, fsynced; then ``durable()`` (what may happen only once they are
        on disk: dropping the group's training checkpoints)."""
        records = list(records)
        # a group's records as one write: a kill lands before or after all of them (a stacked group's seeds
        # share one computation, so a seed recomputed alone would differ in the last digits)
        text = "".join(json.dumps(rec) + "\n" for rec in records)
        with naming(self.records_path):
            self._repair_tail()
            data = text.encode()
            fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            start = os.fstat(fd).st_size
            try:
                done = 0
                while done < len(data):  # one write(2) unless the disk fills
                    done += os.write(fd, data[done:])
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)  # all of the group or none of it
                raise
            finally:
                os.close(fd)
        if durable is not None:
            durable()
        _crash_point("records", len(records))

    def append_error(self, points: list[dict[str, Any]], message: str) -> None:
        with naming(self.errors_path), open(self.errors_path, "a") as fh:
            fh.write(json.dumps({"points": points, "error": message}, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def last_error(self) -> str | None:
        """The last line of the last recorded failure (its exception), or None."""
        if not self.errors_path.exists():
            return None
        for line in reversed(read_tail(self.errors_path).splitlines()):
            try:
                last: str = json.loads(line)["error"].strip().splitlines()[-1]
                return last
            except (ValueError, KeyError, IndexError, AttributeError):
                continue
        return None

    # ------------------------------------------------------------------ tables
    def table(self, fields: Iterable[str] | None = None) -> pd.DataFrame:
        return pd.DataFrame(self.records(fields))

    def write_table(self, df: pd.DataFrame) -> Path:
        atomic_write(self.results_path, lambda tmp: df.to_parquet(tmp, index=False))
        return self.results_path

    def write_report(self, report: Report) -> None:
        """Save a report's figures (PNG and PDF under ``figures/``) and its summary (``summary.md``)."""
        from spuriouslab.plotting import save_figure

        for name, fig in report.figures.items():
            save_figure(fig, self.figures, name, writer=atomic_write)
        self._write_text(self.summary_path, report.summary)
