"""Command line: ``spuriouslab run | sweep | reproduce | probe | report | list | data | theory gamma``.

Each command parses and validates, then hands over: grids and executors to :mod:`spuriouslab.sweep`, the run
directory to :mod:`spuriouslab.store`, reports to :mod:`spuriouslab.report` (one run) and :mod:`spuriouslab.collect`
(many runs).

Every user error (bad --set key or value, bad config file, impossible combination) is one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import typer

from spuriouslab import yamlio
from spuriouslab.errors import ConfigError

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
def warnings_to_stderr():
    """Show every warning raised inside as one line on stderr, as it happens."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = lambda message, *a, **k: typer.echo(f"spuriouslab: warning: {message}", err=True)
        yield


@contextlib.contextmanager
def user_errors():
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
    typer.echo(f"spuriouslab: error: {message}", err=True)
    raise typer.Exit(2)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
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


def load_config_file(path: Path, experiment: str) -> dict[str, Any]:
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


def available_memory(device: str) -> float:
    """Bytes the run can use: free GPU memory for cuda, the machine's available memory otherwise."""
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.mem_get_info()[0])
    import psutil

    return float(psutil.virtual_memory().available)


def check_memory(exp, cfg, device: str, jobs: int = 1) -> str | None:
    """Refuse a run whose largest group cannot fit in memory; returns the estimate, in words, to print."""
    est = exp.estimate(cfg)
    if est is None:
        return None
    avail = available_memory(device)
    need = est.peak_bytes * max(1, jobs)  # jobs groups run at once
    if need > avail:
        raise ConfigError(
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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: got 'cuda' but no CUDA device is available; use auto or cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device: got {device!r}; allowed: auto, cpu, cuda")
    return device


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
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (else $RAY_ADDRESS, else local)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the points of groups that failed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    data_root: Path = typer.Option(None, "--data-root", help="where image data lives (same as --set data_root=DIR)"),
) -> None:
    """Run an experiment's grid into a run directory (resumes: completed points are skipped)."""
    with user_errors():
        sets = list(set_ or []) + ([f"data_root={data_root}"] if data_root else [])
        _run(
            experiment, config, sets, out, device, jobs, executor, progress, address=address, retry_failed=retry_failed
        )


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="a sweep spec: experiment:, base values, grid: {field: values}"),
    set_: list[str] = typer.Option(None, "--set", "-s", help="key=value overrides of the spec's base values"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/<experiment>-<spec hash>)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes for the local executor"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (else $RAY_ADDRESS, else local)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the points of groups that failed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
) -> None:
    """Run a grid over any config fields (lists or ranges, seeds included) into one run directory."""
    from spuriouslab.sweep import load_spec

    with user_errors():
        if not spec.is_file():
            raise ConfigError(f"sweep: {spec} does not exist or is not a file")
        name, values, grid = load_spec(spec)
        overrides = parse_sets(list(set_ or []))
        for key in overrides:
            if key in grid:  # --set wins over the spec, its grid included
                typer.echo(
                    f"spuriouslab: note: --set {key} replaces the spec's grid over {key} ({grid.pop(key)!r})", err=True
                )
        values.update(overrides)
        _run(
            name,
            None,
            [],
            out,
            device,
            jobs,
            executor,
            progress,
            address=address,
            retry_failed=retry_failed,
            values=values,
            grid=grid,
        )


def _run(
    experiment,
    config,
    sets,
    out,
    device,
    jobs,
    executor,
    progress,
    address=None,
    retry_failed=False,
    values=None,
    grid=None,
    quiet=False,
) -> None:
    from spuriouslab.experiments import get_experiment
    from spuriouslab.store import RunStore, environment
    from spuriouslab.sweep import make_plan, pin_resolution, ray_available, worker_threads

    exp = get_experiment(experiment)
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: got {executor!r}; allowed: local, ray")
    if executor == "ray" and not ray_available():
        raise ConfigError("--executor: got 'ray' but Ray is not installed; pip install -c constraints.txt -e '.[ray]'")
    if values is None:
        values = load_config_file(config, experiment) if config else {}
        values.update(parse_sets(sets))
    plan = make_plan(exp, values, grid)
    dev = resolve_device(device)
    estimate = None
    for cfg in plan.configs[:200]:  # the largest group of every combination (the first 200)
        estimate = check_memory(exp, cfg, dev, jobs if executor == "local" else 1) or estimate
    for cfg in plan.configs[:1] if len(plan.configs) > 50 else plan.configs:
        exp.check(cfg)  # data on disk, sizes: fails before DIR is touched
    resolved = plan.config_dump()
    if out is None:
        digest = hashlib.sha1(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
        out = Path("runs") / f"{experiment}-{digest}"
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"--out: {str(out).encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; use a UTF-8 path"
        ) from None
    import torch

    threads = 1 if executor == "ray" else (worker_threads(jobs) if jobs > 1 else torch.get_num_threads())
    with RunStore(out) as store:  # the lock is released when the run ends
        store.open(
            experiment,
            resolved,
            plan.fixed_fields(),
            environment(dev, plan.base.seed, jobs, threads, executor),
            defaults={k: f.default for k, f in exp.Config.model_fields.items()},
        )
        try:
            for note in pin_resolution(plan, store):
                typer.echo(f"spuriouslab: note: {note}", err=True)
            if estimate and not quiet:
                typer.echo(estimate, err=True)
            _sweep_and_report(plan, store, dev, progress, executor, jobs, address, retry_failed, quiet)
        except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on
            kept = len(store.records(plan.point_fields()))
            typer.echo(
                f"\nspuriouslab: interrupted; {kept} of {len(plan.points())} points are saved in "
                f"{store.records_path} (with checkpoints of groups in flight); run the same command again to "
                "resume",
                err=True,
            )
            raise typer.Exit(130) from None


def _sweep_and_report(
    plan, store, dev, progress, executor, jobs, address=None, retry_failed=False, quiet=False
) -> None:
    """Run the plan's missing points and write the report; ``quiet``: no summary or run lines (a reproduction
    prints its own), and a failure raises :class:`RunFailed` instead of leaving the program."""
    from spuriouslab.experiments import RunContext
    from spuriouslab.report import build_report
    from spuriouslab.sweep import run_sweep

    exp = plan.exp
    if not quiet:
        typer.echo(f"spuriouslab: {exp.name} -> {store.root} (device {dev})", err=True)
    result = run_sweep(
        plan,
        store,
        RunContext(device=dev, progress=progress),
        executor=executor,
        jobs=jobs,
        retry_failed=retry_failed,
        address=address,
    )
    if quiet:
        if not store.records(plan.point_fields()) or result.failed:
            raise RunFailed(f"{result.line()}; last error: {store.last_error()}")
        build_report(store, plan)
        return
    if not store.records(plan.point_fields()):
        typer.echo(f"spuriouslab: {result.line()}; last error: {store.last_error()}; see {store.errors_path}", err=True)
        raise typer.Exit(1)
    summary = build_report(store, plan)
    typer.echo(summary)
    typer.echo(f"results: {store.results_path}; figures: {store.figures}; summary: {store.summary_path}", err=True)
    typer.echo(f"spuriouslab: {result.line()}", err=True)
    if result.failed:
        typer.echo(
            f"spuriouslab: {result.failed_groups} group(s) failed; see {store.errors_path}; "
            "rerun with --retry-failed to run them again",
            err=True,
        )
        raise typer.Exit(1)


class RunFailed(RuntimeError):
    """A run in a reproduction ended with failed groups (or none done)."""


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
) -> None:
    """Run one named figure of either paper with that paper's recipe and write its report; or, with --all, every
    figure the budget, the machine and the data allow."""
    from spuriouslab.figures import FIGURES, config_path, listing
    from spuriouslab.reproduction import subset_sets

    with user_errors():
        if all_:
            if name is not None:
                raise ConfigError(f"reproduce: give a figure name or --all, not both (got {name!r} and --all)")
            _reproduce_all(budget, only, set_, out, device, jobs, progress, data_root)
            return
        if only is not None:
            raise ConfigError("--only: goes with --all")
        if list_figures or name is None:
            typer.echo(listing())
            return
        path = config_path(name)
        experiment = yamlio.load_file(path).get("experiment")
        sets = list(set_ or []) + ([f"data_root={data_root}"] if data_root else [])
        subset = [] if any(s.startswith("data=") for s in sets) else subset_sets(FIGURES[name], found(data_root))
        if subset:
            typer.echo(
                f"spuriouslab: note: {', '.join(FIGURES[name].data)} not found: {name} runs on "
                f"{FIGURES[name].subset_data}, a subset ({' '.join(subset)})",
                err=True,
            )
        _run(experiment, path, subset + sets, out or Path("runs") / name, device, jobs, "local", progress)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


def found(data_root) -> Any:
    """Whether a data set of the registry is here: built in, or found by the data layer."""
    from spuriouslab.data.images import builtin, locate

    return lambda d: builtin(d) or locate(d, str(data_root) if data_root else None) is not None


def _reproduce_all(budget, only, set_, out, device, jobs, progress, data_root) -> None:
    from spuriouslab.reproduction import reproduce_all, write_outputs
    from spuriouslab.store import environment

    if budget not in ("cpu", "gpu"):
        raise ConfigError(f"--budget: got {budget!r}; allowed: cpu, gpu")
    if set_:
        raise ConfigError("--set: not with --all (each figure runs its own recipe); run one figure to change it")
    dev = resolve_device(device)
    out = out or Path("runs") / f"reproduce-{budget}"
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None

    def run_one(name: str, path: Path, sets: list[str], run_dir: Path) -> None:
        experiment = yamlio.load_file(path).get("experiment")
        sets = sets + ([f"data_root={data_root}"] if data_root else [])
        _run(experiment, path, sets, run_dir, dev, jobs, "local", False, retry_failed=True, quiet=True)

    outcomes = reproduce_all(
        out,
        budget,
        run_one,
        has_gpu=dev.startswith("cuda"),
        found=found(data_root),
        only=names,
        progress=progress,
        echo=lambda line: typer.echo(line, err=True),
    )
    env = environment(dev)  # its "machine" stays the architecture; "host" says what ran it, in words
    env["host"] = f"{_cpu_name() or env['machine']}, {env['cpu_count']} cores, device {dev}" + (
        f" ({env['cuda_device']})" if env.get("cuda_device") else ""
    )
    page = write_outputs(out, budget, outcomes, env)
    from spuriouslab.reproduction import verdicts_markdown

    typer.echo(verdicts_markdown(outcomes))
    typer.echo(f"verdicts: {out / 'verdicts.md'}; report: {page}", err=True)
    if any(o.status == "failed" for o in outcomes.values()):
        raise typer.Exit(1)


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
    with user_errors():
        sets = [
            f"model={model}",
            *([f"checkpoint={checkpoint}"] if checkpoint else []),
            *(set_ or []),
            *([f"data_root={data_root}"] if data_root else []),
        ]
        _run("probe", None, sets, out, device, 1, "local", progress)


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
    from spuriouslab.collect import report_many
    from spuriouslab.report import build_report
    from spuriouslab.store import RunStore

    with user_errors():
        for d in directories:
            if not d.is_dir():
                raise ConfigError(f"report: {d} is not a directory")
        if len(directories) == 1 and html_out is None and x is None and out is None:
            with RunStore(directories[0]) as store:
                store.lock()
                typer.echo(build_report(store))
            return
        runs = [d.resolve() for d in directories]
        for flag, path in (("--out", out or Path("report")), ("--html", html_out)):
            if path is None:
                continue
            real = path.resolve()
            inside = next((d for d, r in zip(directories, runs, strict=True) if real == r or r in real.parents), None)
            if inside is not None:  # a cross-run report never writes into the runs it reads
                raise ConfigError(
                    f"{flag}: {path} lies in the run directory {inside}, whose files it could "
                    "overwrite; write the report elsewhere"
                )
        summary = report_many(directories, out or Path("report"), html_out, x)
        typer.echo(summary)
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
    typer.echo("    spuriouslab sweep SPEC.yaml [--executor local|ray] [--jobs N] [--address ADDR] [--retry-failed]")
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
