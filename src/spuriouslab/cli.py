"""Command line: ``spuriouslab run | sweep | reproduce | probe | report | list | data | theory gamma``.

Each command parses its options, calls the library and prints: runs, sweeps and reports through
:mod:`spuriouslab.runner` (plan, device, memory check, run directory, executor, report), the papers' figures through
:mod:`spuriouslab.reproduction`.  It maps the typed errors to exit codes: bad input
(:class:`~spuriouslab.errors.ConfigError`) one line and 2, failed groups (:class:`~spuriouslab.runner.RunFailed`) 1,
Ctrl-C (:class:`~spuriouslab.errors.RunInterrupted`) 130.

Every user error (bad --set key or value, bad config file, impossible combination) is one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from spuriouslab.bounded import clean_line
from spuriouslab.errors import ConfigError, RunInterrupted
from spuriouslab.runner import load_config_file, parse_sets

if TYPE_CHECKING:
    from spuriouslab.executors.slurm import SlurmOptions
    from spuriouslab.runner import RunResult

__all__ = ["app", "load_config_file", "main", "parse_sets"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Study how networks and their kernel proxies learn and memorize spurious features.",
)
theory_app = typer.Typer(no_args_is_help=True, help="Closed-form predictions.")
app.add_typer(theory_app, name="theory")
data_app = typer.Typer(no_args_is_help=True, help="Image data: what is found where; downloads.")
app.add_typer(data_app, name="data")


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show every warning raised inside as one line on stderr, as it happens."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = lambda message, *a, **k: typer.echo(
            f"spuriouslab: warning: {clean_line(str(message))}", err=True
        )
        yield


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A command's body: warnings as one line each; a bad input (ConfigError) or a refusal of the file system
    (OSError) as one line on stderr and exit status 2, never a traceback."""
    try:
        with warnings_to_stderr():
            yield
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk, a path that vanished, permissions
        fail(_os_error(exc))


def fail(message: str) -> None:
    """The one line a bad input ends with (bounded, control characters escaped: it may quote a file), exit 2."""
    typer.echo(f"spuriouslab: error: {clean_line(message)}", err=True)
    raise typer.Exit(2)


# --------------------------------------------------------------------------------------- running
EXECUTOR_HELP = "local | ray | slurm | submitit-local (see the docs' executors page)"
SLURM_PARTITION = typer.Option(None, "--slurm-partition", help="slurm: the partition (default: the cluster's)")
SLURM_TIME = typer.Option(None, "--slurm-time", help="slurm: minutes per task before it is requeued (default 60)")
SLURM_MEM = typer.Option(None, "--slurm-mem", help="slurm: GB of memory per task (default: the partition's)")
SLURM_CPUS = typer.Option(None, "--slurm-cpus", help="slurm: CPU cores (and torch threads) per task (default 1)")
SLURM_GPUS = typer.Option(None, "--slurm-gpus", help="slurm: GPUs per task (default 1 with --device cuda, else 0)")
SLURM_ARRAY = typer.Option(
    None, "--slurm-array-parallelism", help="slurm: tasks of the job array that run at once (local: processes)"
)
SLURM_FOLDER = typer.Option(None, "--slurm-folder", help="slurm: submitit's scripts and logs (default DIR/submitit)")


def slurm_options(
    executor: str,
    partition: str | None,
    time_min: int | None,
    mem_gb: float | None,
    cpus: int | None,
    gpus: int | None,
    parallelism: int | None,
    folder: Path | None,
) -> SlurmOptions | None:
    """The ``--slurm-*`` options as :class:`~spuriouslab.executors.slurm.SlurmOptions` (None when the executor
    is not a SLURM one and none is given)."""
    from spuriouslab.executors.slurm import SlurmOptions

    given = {
        "partition": partition,
        "time_min": time_min,
        "mem_gb": mem_gb,
        "cpus_per_task": cpus,
        "gpus_per_node": gpus,
        "array_parallelism": parallelism,
        "folder": folder,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given and executor not in ("slurm", "submitit-local"):
        return None
    return SlurmOptions().replace(**given)


def print_result(result: RunResult) -> None:
    """A finished run as the CLI shows it: the summary on stdout, where its files are and its counts on stderr."""
    typer.echo(result.summary)
    typer.echo(f"results: {result.results_path}; figures: {result.figures}; summary: {result.summary_path}", err=True)
    typer.echo(f"spuriouslab: {result.sweep.line()}", err=True)


def execute(call: Callable[[], RunResult]) -> None:
    """Run ``call`` (a runner call) and print its result; failed groups: exit 1 (after the report of what was
    done); Ctrl-C: what is saved and how to resume, exit 130."""
    from spuriouslab.runner import RunFailed

    try:
        result = call()
    except RunInterrupted as exc:
        typer.echo(f"\nspuriouslab: {clean_line(str(exc))}", err=True)
        raise typer.Exit(130) from None
    except RunFailed as exc:
        if exc.result is not None:
            print_result(exc.result)
        typer.echo(f"spuriouslab: {clean_line(str(exc))}", err=True)
        raise typer.Exit(1) from None
    print_result(result)


def note(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def run(
    experiment: str = typer.Argument(..., help="experiment name (see `spuriouslab list`)"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file of config fields"),
    set_: list[str] = typer.Option(
        None,
        "--set",
        "-s",
        help="key=value override (repeatable); lists as a,b,c or "
        "[a,b,c], on any field (a list on a non-axis field "
        "sweeps it)",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/<experiment>-<config hash>)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes for the local executor"),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    address: str = typer.Option(None, "--address", help="Ray cluster address (else $RAY_ADDRESS, else local)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the points of groups that failed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    data_root: Path = typer.Option(None, "--data-root", help="where image data lives (same as --set data_root=DIR)"),
    slurm_partition: str = SLURM_PARTITION,
    slurm_time: int = SLURM_TIME,
    slurm_mem: float = SLURM_MEM,
    slurm_cpus: int = SLURM_CPUS,
    slurm_gpus: int = SLURM_GPUS,
    slurm_array_parallelism: int = SLURM_ARRAY,
    slurm_folder: Path = SLURM_FOLDER,
) -> None:
    """Run an experiment's grid into a run directory (resumes: completed points are skipped)."""
    from spuriouslab import runner

    with user_errors():
        values = runner.parse_sets(list(set_ or []))
        slurm = slurm_options(
            executor,
            slurm_partition,
            slurm_time,
            slurm_mem,
            slurm_cpus,
            slurm_gpus,
            slurm_array_parallelism,
            slurm_folder,
        )
        execute(
            lambda: runner.run(
                experiment,
                values,
                config=config,
                out=out,
                device=device,
                executor=executor,
                jobs=jobs,
                address=address,
                slurm=slurm,
                retry_failed=retry_failed,
                progress=progress,
                data_root=data_root,
                log=note,
            )
        )


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="a sweep spec: experiment:, base values, grid: {field: values}"),
    set_: list[str] = typer.Option(None, "--set", "-s", help="key=value overrides of the spec's base values"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/<experiment>-<spec hash>)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes for the local executor"),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    address: str = typer.Option(None, "--address", help="Ray cluster address (else $RAY_ADDRESS, else local)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the points of groups that failed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    slurm_partition: str = SLURM_PARTITION,
    slurm_time: int = SLURM_TIME,
    slurm_mem: float = SLURM_MEM,
    slurm_cpus: int = SLURM_CPUS,
    slurm_gpus: int = SLURM_GPUS,
    slurm_array_parallelism: int = SLURM_ARRAY,
    slurm_folder: Path = SLURM_FOLDER,
) -> None:
    """Run a grid over any config fields (lists or ranges, seeds included) into one run directory."""
    from spuriouslab import runner

    with user_errors():
        overrides = runner.parse_sets(list(set_ or []))
        slurm = slurm_options(
            executor,
            slurm_partition,
            slurm_time,
            slurm_mem,
            slurm_cpus,
            slurm_gpus,
            slurm_array_parallelism,
            slurm_folder,
        )
        execute(
            lambda: runner.sweep(
                spec,
                overrides,
                out=out,
                device=device,
                executor=executor,
                jobs=jobs,
                address=address,
                slurm=slurm,
                retry_failed=retry_failed,
                progress=progress,
                log=note,
            )
        )


@app.command()
def reproduce(
    name: str = typer.Argument(None, help="a paper figure (see --list)"),
    list_figures: bool = typer.Option(False, "--list", help="name every figure, what it shows and its runtime"),
    all_: bool = typer.Option(
        False,
        "--all",
        help="every figure this machine and the data found allow, one verdict table and one HTML report (resumable)",
    ),
    budget: str = typer.Option(
        "cpu", "--budget", help="with --all: cpu (minutes on a CPU) or gpu (adds the paper-scale figures; needs a GPU)"
    ),
    only: str = typer.Option(None, "--only", help="with --all: a comma-separated list of figures"),
    set_: list[str] = typer.Option(None, "--set", "-s", help="key=value overrides of the figure's config"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/<figure>)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    data_root: Path = typer.Option(None, "--data-root", help="where image data lives"),
    seeds: int = typer.Option(
        None,
        "--seeds",
        min=1,
        max=10_000,
        help="extend the figure's run (its --out) to N seeds: only the new seeds are computed, then every claim is "
        "judged again (N: the seeds to decide an inconclusive verdict names, chosen before the run)",
    ),
    across: str = typer.Option(
        None,
        "--across",
        help="claims across scale: run the figure with KNOB swept over V1,V2,... (KNOB=V1,V2,...), or over the knob "
        "and values the figure declares ('declared'), into runs/<figure>-across-<knob>; with --all, 'declared' also "
        "runs every selected figure that declares one",
    ),
) -> None:
    """Run one named figure of either paper with that paper's recipe and write its report; or, with --all, every
    figure the budget, the machine and the data allow."""
    from spuriouslab import reproduction
    from spuriouslab.figures import listing

    with user_errors():
        if all_:
            if name is not None:
                raise ConfigError(f"reproduce: give a figure name or --all, not both (got {name!r} and --all)")
            if budget not in ("cpu", "gpu"):
                raise ConfigError(f"--budget: got {budget!r}; allowed: cpu, gpu")
            if across is not None and across.strip() != "declared":
                raise ConfigError(f"--across: with --all, give 'declared' (got {across!r}); or run one figure")
            if set_ or seeds is not None:
                raise ConfigError(
                    f"{'--set' if set_ else '--seeds'}: not with --all (each figure runs its own recipe); run one "
                    "figure to change it"
                )
            try:
                done = reproduction.run_all(
                    budget,
                    out=out,
                    only=reproduction.parse_only(only),
                    device=device,
                    jobs=jobs,
                    progress=progress,
                    data_root=data_root,
                    echo=note,
                    across=across is not None,
                )
            except RunInterrupted as exc:
                typer.echo(f"\nspuriouslab: {exc}", err=True)
                raise typer.Exit(130) from None
            typer.echo(done.table)
            typer.echo(f"verdicts: {done.directory / 'verdicts.md'}; report: {done.page}", err=True)
            if done.failed:
                raise typer.Exit(1)
            return
        if only is not None:
            raise ConfigError("--only: goes with --all")
        if list_figures or name is None:
            typer.echo(listing())
            return
        sets = list(set_ or [])
        common: dict[str, Any] = dict(
            out=out, device=device, jobs=jobs, progress=progress, data_root=data_root, log=note
        )
        if across is not None:
            if seeds is not None:
                raise ConfigError("--seeds: not with --across (extend the figure's own run)")
            execute(lambda: reproduction.run_across(name, across, sets, **common))
            return
        execute(lambda: reproduction.run_figure(name, sets, seeds=seeds, **common))


@app.command()
def probe(
    model: str = typer.Argument(..., help="the classifier: package.module:factory (or a module-level nn.Module)"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="state dict to load into the model"),
    set_: list[str] = typer.Option(None, "--set", "-s", help="key=value (data=, colour=, eval_border=, layer=, n=...)"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/probe-<config hash>)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    data_root: Path = typer.Option(None, "--data-root", help="where image data lives"),
) -> None:
    """Measure a torch image classifier's reliance on the border: the background-features numbers for your model."""
    from spuriouslab import runner

    with user_errors():
        sets = [f"model={model}", *([f"checkpoint={checkpoint}"] if checkpoint else []), *(set_ or [])]
        values = runner.parse_sets(sets)
        execute(
            lambda: runner.run(
                "probe", values, out=out, device=device, progress=progress, data_root=data_root, log=note
            )
        )


@app.command()
def report(
    directories: list[Path] = typer.Argument(..., help="one or more run directories"),
    html_out: Path = typer.Option(None, "--html", help="also write one self-contained HTML page here"),
    x: str = typer.Option(None, "--x", help="a swept field: figures of each experiment's headline metrics vs it"),
    out: Path = typer.Option(None, "--out", "-o", help="where the cross-run tables and figures go (default report/)"),
) -> None:
    """One run: rebuild its results, figures and summary from its records alone.  Several runs (or --html or --x):
    tables across runs (Markdown, CSV, LaTeX), figures over a swept field and one HTML page under --out, the runs
    themselves left untouched."""
    from spuriouslab import runner

    with user_errors():
        summary = runner.report(directories, html=html_out, x=x, out=out)
        typer.echo(summary)
        if len(directories) > 1 or html_out is not None or x is not None or out is not None:
            typer.echo(
                f"tables and figures: {out or Path('report')}" + (f"; HTML: {html_out}" if html_out else ""), err=True
            )


@app.command("list")
def list_() -> None:
    """Experiments with their config fields and defaults, and the other commands."""
    from spuriouslab.activations import activation_names
    from spuriouslab.experiments import EXPERIMENTS, get_experiment

    for name in EXPERIMENTS:
        exp = get_experiment(name)
        typer.echo(f"{name}: {exp.summary}")
        defaults = exp.default_config()  # as resolved: presets and data-set layers applied
        for field, info in exp.Config.model_fields.items():
            default = defaults.get(field, info.default)
            shown = json.dumps(default) if not isinstance(default, str) else default
            typer.echo(f"    {field:<16} {shown:<34} {info.description or ''}")
        typer.echo("")
    typer.echo(f"activations: {', '.join(activation_names())}")
    typer.echo("commands:")
    typer.echo(
        "    spuriouslab run EXPERIMENT [--config FILE.yaml] [--set key=value ...] [--out DIR] [--device auto|cpu|cuda]"
    )
    typer.echo(
        "    spuriouslab probe package.module:factory [--checkpoint FILE] [--set data=cifar10 --set colour=brick ...]"
    )
    typer.echo("    spuriouslab reproduce NAME | --list                       (the papers' figures, by name)")
    typer.echo(
        "    spuriouslab sweep SPEC.yaml [--executor local|ray|slurm|submitit-local] [--jobs N] [--slurm-partition P] "
        "[--retry-failed]"
    )
    typer.echo("    spuriouslab report DIR [DIR ...] [--html OUT.html] [--x FIELD] [--out DIR]")
    typer.echo("    spuriouslab data info [--data-root DIR]      spuriouslab data fetch mnist|fashion-mnist|cifar10")
    typer.echo("    spuriouslab theory gamma --activation relu --alpha 0.5 [--model rf|ntk] [--n N --d D]")


@theory_app.command("gamma")
def theory_gamma(
    activation: str = typer.Option("relu", "--activation", "-a", help="registered name or hermite:c0,c1,..."),
    alpha: float = typer.Option(0.5, "--alpha", help="spurious fraction d_y/d in (0, 1)"),
    model: str = typer.Option(None, "--model", "-m", help="rf or ntk (default: both)"),
    n: int = typer.Option(None, "--n", help="training samples N (with --d: the finite-N prediction)"),
    d: int = typer.Option(None, "--d", help="input dimension d"),
) -> None:
    """Predicted mean feature alignment: the N<<d and N>>d limits and, with --n and --d, at psi=(N-1)/d."""
    from spuriouslab.activations import get_activation
    from spuriouslab.theory import predict_alignment

    try:
        get_activation(activation)
        if not 0 < alpha < 1:
            raise ConfigError(f"--alpha: got {alpha}; must lie strictly between 0 and 1")
        if model not in (None, "rf", "ntk"):
            raise ConfigError(f"--model: got {model!r}; allowed: rf, ntk")
        if (n is None) != (d is None):
            raise ConfigError("--n and --d go together: give both for the finite-N prediction, or neither")
        if n is not None and (n < 1 or d < 1):
            raise ConfigError(f"--n/--d: got n={n}, d={d}; both must be >= 1")
        for m in [model] if model else ["rf", "ntk"]:
            p = predict_alignment(activation, m, alpha, n, d)
            line = (
                f"{m:<4} {activation}  alpha={alpha:g}  gamma(N<<d)={p.gamma_few:.6f}  gamma(N>>d)={p.gamma_many:.6f}"
            )
            if p.gamma_pred is not None:
                line += f"  gamma(N={n}, d={d}, psi={p.psi:.4g})={p.gamma_pred:.6f}"
            typer.echo(line)
    except ConfigError as exc:
        fail(str(exc))


@data_app.command("info")
def data_info(data_root: Path = typer.Option(None, "--data-root", help="also look here first")) -> None:
    """List the image data sets found, where, and whether they verify."""
    from spuriouslab.data.images import info, search_roots

    typer.echo(
        "search order: "
        + ", ".join(str(r) for r in search_roots(data_root))
        + ", /usr/share/datasets/fashion-mnist (Debian)"
    )
    for row in info(data_root):
        if row["status"] == "ok":
            typer.echo(
                f"{row['name']:<14} ok       {row['train']}+{row['test']} images {row['shape']}  "
                f"sha256 {row['checksum']}  {row['verified']}  [{row['where']}]"
            )
        else:
            typer.echo(f"{row['name']:<14} {row['status']:<8} {row['detail']}")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="mnist | fashion-mnist | cifar10"),
    data_root: Path = typer.Option(None, "--data-root", help="download into this root"),
) -> None:
    """Download a data set from its canonical location (checksums verified, files written atomically)."""
    from spuriouslab.data.images import fetch, load_images

    with user_errors():  # a bad name, a failed download, or a root that cannot be written (one line each)
        where = fetch(name, data_root)
        d = load_images(name, data_root)
        typer.echo(f"{name}: {len(d.x_train)}+{len(d.x_test)} images in {where}; {d.verified}")


def main() -> None:
    from spuriouslab.runtime import tune_allocator

    tune_allocator()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
