"""Run an experiment into a run directory from Python: :func:`run` (the ``spuriouslab run`` command is a thin
layer over it), :func:`sweep` (a sweep spec), :func:`report` (rebuild one run's report, or one over many runs).

:func:`run` validates the values and every combination of the grid (:mod:`spuriouslab.plan`), resolves the
device, checks that the largest group fits in memory, checks what needs more than the config (data on disk),
names the run directory, opens it (:class:`~spuriouslab.store.RunStore`: one writer at a time), pins what the
machine resolved (the data set ``data=auto`` found, checksums), runs the pending points with an executor
(:mod:`spuriouslab.executors`: resume skips recorded points) and writes the report.  It returns a
:class:`RunResult` (the directory, the records read back from ``results.parquet``, the verdicts, the summary) and
raises typed errors: :class:`~spuriouslab.errors.ConfigError` for bad input (its subclasses
:class:`~spuriouslab.errors.MemoryRefused` and :class:`~spuriouslab.errors.ExecutorUnavailable` included),
:class:`RunFailed` when groups failed, :class:`~spuriouslab.errors.RunInterrupted` on Ctrl-C.  Nothing is printed
on stdout; notes go to ``log`` (stderr by default).

.. code-block:: python

    import spuriouslab

    result = spuriouslab.run("memorization", {"n_train": [10, 100], "activation": "relu"}, out="runs/a")
    result.records        # a DataFrame: one row per grid point and seed
    result.verdicts       # the claims' verdicts
    spuriouslab.run("contamination", {"width": [64, 128]}, executor="submitit-local")   # the SLURM path, here
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spuriouslab import yamlio
from spuriouslab.errors import ConfigError, MemoryRefused, RunInterrupted

if TYPE_CHECKING:
    import pandas as pd

    from spuriouslab.executors import Executor
    from spuriouslab.executors.slurm import SlurmOptions
    from spuriouslab.experiments import Experiment, ExperimentConfig
    from spuriouslab.plan import Plan
    from spuriouslab.store import RunStore
    from spuriouslab.sweep import SweepResult

Log = Callable[[str], None]
PathLike = str | os.PathLike[str]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunFailed(RuntimeError):
    """A run ended with groups that failed or were interrupted, or with no record at all.

    The message is one line saying what failed and what to do.

    Attributes
    ----------
    result : RunResult or None
        The run, its report written from the records it has, when it has any; None when it has none.
    sweep : SweepResult
        The counts of points done, failed, skipped and interrupted.
    last_error : str or None
        The last line of the last failure recorded in ``errors.jsonl``.
    """

    def __init__(
        self, message: str, sweep: SweepResult, result: RunResult | None = None, last_error: str | None = None
    ):
        super().__init__(message)
        self.result = result
        self.sweep = sweep
        self.last_error = last_error


@dataclass
class RunResult:
    """What :func:`run` made.

    Attributes
    ----------
    experiment : str
        The experiment's name.
    directory : Path
        The run directory.
    device : str
        The device the groups ran on.
    records : pandas.DataFrame
        Every record of the run's grid, as ``results.parquet`` holds them.
    verdicts : list of dict
        The verdict rows on the experiment's claims (each setting's, for a sweep).
    summary : str
        The report's Markdown summary (``summary.md``).
    sweep : SweepResult
        The counts of points done now, done before, failed and interrupted.
    notes : list of str
        What the run noted on the way (a data set kept from the run's start, a replaced grid).
    """

    experiment: str
    directory: Path
    device: str
    records: pd.DataFrame
    verdicts: list[dict[str, Any]]
    summary: str
    sweep: SweepResult
    notes: list[str] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        """``results.parquet``."""
        return self.directory / "results.parquet"

    @property
    def summary_path(self) -> Path:
        """``summary.md``."""
        return self.directory / "summary.md"

    @property
    def figures(self) -> Path:
        """The figures' directory."""
        return self.directory / "figures"


# ---------------------------------------------------------------------------------------------- input
def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings (``--set``) as config values: each value read as YAML (``1e-3``, ``[a, b]``), or kept as
    written when it is not valid YAML; a later key overrides an earlier one.

    Raises
    ------
    ConfigError
        A pair without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set: got {pair!r}; expected key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set: got {pair!r}; the key before '=' is empty")
        try:
            value = yamlio.load(raw, f"--set {key}") if raw.strip() else ""
        except ConfigError:
            value = raw
        out[key] = value  # a later --set of the same key overrides an earlier one, as on any command line
    return out


def load_config_file(path: PathLike, experiment: str) -> dict[str, Any]:
    """The config values of a YAML file (``--config``); its ``experiment:``, when given, must be ``experiment``.

    Raises
    ------
    ConfigError
        A missing file, invalid YAML, not a mapping, or a file for another experiment.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: {path} does not exist or is not a file")
    data = yamlio.load_file(path, f"--config: {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of key: value, got {type(data).__name__}")
    named = data.pop("experiment", experiment)
    if named != experiment:
        raise ConfigError(f"--config: {path} is for experiment {named!r}, not {experiment!r}")
    return data


def spec_values(
    spec: PathLike, overrides: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], dict[str, Any], list[str]]:
    """A sweep spec's experiment, base values and grid, with ``overrides`` (``--set``) applied: an override of a
    swept field replaces the spec's grid over it (the notes say so).

    Returns
    -------
    tuple
        ``(experiment, values, grid, notes)``.
    """
    from spuriouslab.plan import load_spec

    spec = Path(spec)
    if not spec.is_file():
        raise ConfigError(f"sweep: {spec} does not exist or is not a file")
    name, values, grid = load_spec(spec)
    notes = []
    for key in overrides or {}:
        if key in grid:  # --set wins over the spec, its grid included
            notes.append(f"--set {key} replaces the spec's grid over {key} ({grid.pop(key)!r})")
    values.update(overrides or {})
    return name, values, grid, notes


# ------------------------------------------------------------------------------------- machine checks
def resolve_device(device: str) -> str:
    """``auto`` as the device this machine has (cuda when a GPU is present, else cpu); ``cuda`` only with a GPU.

    Raises
    ------
    ConfigError
        An unknown device, or cuda without a GPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: got {device!r}; allowed: auto, cpu, cuda")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("--device: got 'cuda' but no CUDA device is available; use auto or cpu")
    return device


def available_memory(device: str) -> float:
    """Bytes the run can use: free GPU memory for cuda, the machine's available memory otherwise."""
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.mem_get_info()[0])
    import psutil

    return float(psutil.virtual_memory().available)


def check_memory(
    exp: Experiment[ExperimentConfig],
    cfg: ExperimentConfig,
    device: str,
    jobs: int = 1,
    available: float | None = None,
) -> str | None:
    """Refuse a run whose largest group cannot fit in memory; returns the estimate, in words, to print.

    Parameters
    ----------
    exp, cfg : Experiment, ExperimentConfig
        The experiment and one combination of its grid.
    device : str
        The resolved device.
    jobs : int
        Groups that run at once in the memory checked.
    available : float, optional
        Bytes each group has (a SLURM task's memory); None: this machine's available memory.

    Raises
    ------
    MemoryRefused
        The largest group (times ``jobs``) needs more than is available.
    """
    est = exp.estimate(cfg)
    if est is None:
        return None
    avail = available_memory(device) if available is None else available
    need = est.peak_bytes * max(1, jobs)  # jobs groups run at once
    if need > avail:
        raise MemoryRefused(
            f"memory: the largest group needs about {need / 1e9:.3g} GB ({est.group}"
            + (f", x{jobs} jobs" if jobs > 1 else "")
            + f") but {avail / 1e9:.3g} GB is available; "
            "use smaller sizes" + (" or fewer --jobs" if jobs > 1 else "")
        )
    return (
        f"spuriouslab: {est.describe()}"
        + (f" (x{jobs} jobs)" if jobs > 1 else "")
        + f"; {avail / 1e9:.3g} GB available"
    )


def default_directory(experiment: str, resolved: Mapping[str, Any]) -> Path:
    """``runs/<experiment>-<hash of the resolved config>``: the same config, the same directory."""
    digest = hashlib.sha1(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
    return Path("runs") / f"{experiment}-{digest}"


def _executor(executor: str | Executor, jobs: int, address: str | None, slurm: SlurmOptions | None) -> Executor:
    from spuriouslab.executors import make_executor

    if isinstance(executor, str):
        return make_executor(executor, jobs=jobs, address=address, slurm=slurm)
    return executor


def _device(ex: Executor, device: str) -> str:
    from spuriouslab.executors.slurm import SlurmExecutor

    if isinstance(ex, SlurmExecutor) and ex.remote:  # the tasks' nodes have the GPUs, not this machine
        return ex.resolve_device(device)
    return resolve_device(device)


def _memory_checks(plan: Plan, ex: Executor, dev: str) -> str | None:
    from spuriouslab.executors.slurm import SlurmExecutor

    remote = isinstance(ex, SlurmExecutor) and ex.remote
    available = ex.memory_bytes() if isinstance(ex, SlurmExecutor) else None
    estimate = None
    for cfg in plan.configs[:200]:  # the largest group of every combination (the first 200)
        if remote and available is None:  # a SLURM task's memory is the partition's: nothing to compare with
            est = plan.exp.estimate(cfg)
            estimate = (
                f"spuriouslab: {est.describe()}; per task: the partition's default (--slurm-mem)" if est else None
            )
            continue
        estimate = check_memory(plan.exp, cfg, dev, ex.concurrency, available) or estimate
    return estimate


# ------------------------------------------------------------------------------------------------ run
def run(
    experiment: str,
    values: Mapping[str, Any] | None = None,
    *,
    config: PathLike | None = None,
    grid: Mapping[str, Any] | None = None,
    out: PathLike | None = None,
    device: str = "auto",
    executor: str | Executor = "local",
    jobs: int = 1,
    address: str | None = None,
    slurm: SlurmOptions | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    data_root: PathLike | None = None,
    allow_failures: bool = False,
    log: Log | None = _stderr,
    verbose: bool = True,
) -> RunResult:
    """Run an experiment's grid into a run directory (resuming: points recorded there are skipped) and write its
    report.

    Parameters
    ----------
    experiment : str
        A registered experiment (``spuriouslab list``).
    values : mapping, optional
        Config values (over the file's, when ``config`` is given).  A list on a grid axis is the axis; a list (or a
        ``{range: [...]}`` / ``{log: [...]}``) on any other field sweeps it.
    config : path, optional
        A YAML file of config values (``--config``).
    grid : mapping, optional
        Swept fields and their values, as a sweep spec's ``grid:``.
    out : path, optional
        The run directory; default ``runs/<experiment>-<config hash>``.
    device : {"auto", "cpu", "cuda"}
        Where the groups compute.
    executor : str or Executor
        ``local``, ``ray``, ``slurm``, ``submitit-local`` (see :mod:`spuriouslab.executors`), or an executor.
    jobs : int
        Worker processes of the local executor.
    address : str, optional
        The Ray cluster's address.
    slurm : SlurmOptions, optional
        The SLURM executors' partition, time, memory, CPUs, GPUs, array parallelism and folder.
    retry_failed : bool
        Run again the points of groups that failed in an earlier run.
    progress : bool
        Progress bars (on stderr).
    data_root : path, optional
        Where image data lives (``data_root``).
    allow_failures : bool
        Return the result of a run some of whose groups failed instead of raising :class:`RunFailed` (a run with no
        record at all raises either way).
    log : callable, optional
        Where notes go, one line each (default: stderr; None: nowhere).
    verbose : bool
        Also log the memory estimate and the line naming the run directory and device.

    Returns
    -------
    RunResult
        The run directory, its records, verdicts and summary, and the sweep's counts.

    Raises
    ------
    ConfigError
        Bad input, in one line naming the key, what was given and what is allowed (before the run directory is
        touched); :class:`~spuriouslab.errors.MemoryRefused` and :class:`~spuriouslab.errors.ExecutorUnavailable`
        are ConfigErrors too.
    RunFailed
        Groups failed or were interrupted (``allow_failures`` returns instead when some records exist), or none
        completed.
    RunInterrupted
        Ctrl-C; the message says what is saved and how to resume.
    """
    from spuriouslab.experiments import get_experiment
    from spuriouslab.plan import make_plan
    from spuriouslab.runtime import figure_formats

    emit: Log = log if log is not None else (lambda line: None)
    figure_formats()  # a bad $SPURIOUSLAB_FIGURE_FORMATS ends the run before it computes, not at its report
    exp = get_experiment(experiment)
    ex = _executor(executor, jobs, address, slurm)
    merged = load_config_file(config, experiment) if config is not None else {}
    merged.update(values or {})
    if data_root is not None:
        merged["data_root"] = str(data_root)
    plan = make_plan(exp, merged, grid)
    dev = _device(ex, device)
    estimate = _memory_checks(plan, ex, dev)
    for cfg in plan.configs[:1] if len(plan.configs) > 50 else plan.configs:
        exp.check(cfg)  # data on disk, sizes: fails before DIR is touched
    resolved = plan.config_dump()
    directory = Path(out) if out is not None else default_directory(experiment, resolved)
    try:
        str(directory).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"--out: {str(directory).encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; use a UTF-8 path"
        ) from None
    return _run_in(plan, directory, ex, dev, resolved, estimate, progress, retry_failed, allow_failures, emit, verbose)


def _run_in(
    plan: Plan,
    directory: Path,
    ex: Executor,
    dev: str,
    resolved: dict[str, Any],
    estimate: str | None,
    progress: bool,
    retry_failed: bool,
    allow_failures: bool,
    emit: Log,
    verbose: bool,
) -> RunResult:
    from spuriouslab.experiments import RunContext
    from spuriouslab.plan import pin_resolution
    from spuriouslab.store import RunStore, environment
    from spuriouslab.sweep import run_sweep

    exp = plan.exp
    with RunStore(directory) as store:  # the lock is released when the run ends
        store.open(
            exp.name,
            resolved,
            plan.fixed_fields(),
            environment(dev, plan.base.seed, ex.concurrency, ex.threads, ex.name),
            defaults={k: f.default for k, f in exp.Config.model_fields.items()},
        )
        try:
            notes = pin_resolution(plan, store)
            for note in notes:
                emit(f"spuriouslab: note: {note}")
            if estimate and verbose:
                emit(estimate)
            if verbose:
                emit(f"spuriouslab: {exp.name} -> {store.root} (device {dev})")
            sweep = run_sweep(plan, store, RunContext(device=dev, progress=progress), ex, retry_failed=retry_failed)
            return _finish(plan, store, dev, sweep, notes, allow_failures)
        except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on
            kept = len(store.records(plan.point_fields()))
            ckpts = sorted(Path(store.checkpoints.directory).glob("*.pt"))
            held = f" (with checkpoints of groups in flight: {len(ckpts)} in {store.checkpoints.directory})"
            raise RunInterrupted(
                f"interrupted; {kept} of {len(plan.points())} points are saved in {store.records_path}"
                f"{held if ckpts else ''}; run the same command again to resume"
            ) from None


def _finish(
    plan: Plan, store: RunStore, dev: str, sweep: SweepResult, notes: list[str], allow_failures: bool
) -> RunResult:
    """Write the report of what the store has; raise RunFailed as the counts say."""
    import pandas as pd

    from spuriouslab.report import make_report

    if not store.records(plan.point_fields()):
        last = store.last_error()
        raise RunFailed(f"{sweep.line()}; last error: {last}; see {store.errors_path}", sweep, None, last)
    df, rep = make_report(store, plan)
    store.write_table(df)
    store.write_report(rep)
    result = RunResult(
        plan.exp.name,
        Path(store.root),
        dev,
        pd.read_parquet(store.results_path),
        rep.verdicts,
        rep.summary,
        sweep,
        notes,
    )
    if allow_failures or not (sweep.failed or sweep.interrupted):
        return result
    problems = []
    if sweep.failed:
        problems.append(
            f"{sweep.failed_groups} group(s) failed; see {store.errors_path}; rerun with --retry-failed to run them "
            "again"
        )
    if sweep.interrupted:
        problems.append(
            f"{sweep.interrupted} point(s) interrupted (their jobs ended without a result); run the same command "
            "again to resume them"
        )
    raise RunFailed("; ".join(problems), sweep, result, store.last_error())


def sweep(spec: PathLike, values: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
    """Run a sweep spec (``experiment:``, base values, ``grid: {field: values}``) into a run directory.

    Parameters
    ----------
    spec : path
        The spec's YAML file.
    values : mapping, optional
        Overrides of the spec's base values; an override of a swept field replaces the spec's grid over it.
    **options
        As :func:`run` takes them (``out``, ``device``, ``executor``, ``jobs``, ...).

    Returns
    -------
    RunResult
        As :func:`run`.
    """
    log: Log | None = options.get("log", _stderr)
    name, merged, grid, notes = spec_values(spec, values)
    for note in notes:
        if log is not None:
            log(f"spuriouslab: note: {note}")
    result = run(name, merged, grid=grid, **options)
    result.notes[:0] = notes
    return result


def report(
    directories: Sequence[PathLike],
    *,
    html: PathLike | None = None,
    x: str | None = None,
    out: PathLike | None = None,
) -> str:
    """One run directory: rebuild its results, figures and summary from its records (holding its lock).  Several
    (or ``html``, ``x`` or ``out``): tables and figures across runs under ``out`` (default ``report/``) and one HTML
    page, the runs left untouched.  Returns the summary (Markdown).

    Raises
    ------
    ConfigError
        A path that is not a run directory, or an ``out`` / ``html`` inside one of the runs read.
    """
    from spuriouslab.collect import report_many
    from spuriouslab.report import build_report
    from spuriouslab.store import RunStore

    dirs = [Path(d) for d in directories]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"report: {d} is not a directory")
    if len(dirs) == 1 and html is None and x is None and out is None:
        with RunStore(dirs[0]) as store:
            store.lock()
            return build_report(store)
    target = Path(out) if out is not None else Path("report")
    runs = [d.resolve() for d in dirs]
    for flag, path in (("--out", target), ("--html", Path(html) if html is not None else None)):
        if path is None:
            continue
        real = path.resolve()
        inside = next((d for d, r in zip(dirs, runs, strict=True) if real == r or r in real.parents), None)
        if inside is not None:  # a cross-run report never writes into the runs it reads
            raise ConfigError(
                f"{flag}: {path} lies in the run directory {inside}, whose files it could overwrite; write the "
                "report elsewhere"
            )
    return report_many(dirs, target, Path(html) if html is not None else None, x)


__all__ = [
    "RunFailed",
    "RunResult",
    "check_memory",
    "load_config_file",
    "parse_sets",
    "report",
    "resolve_device",
    "run",
    "spec_values",
    "sweep",
]
