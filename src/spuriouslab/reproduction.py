"""``spuriouslab reproduce --all``: every named figure this machine and the data found allow, one run directory
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
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from spuriouslab.claims import count_verdicts, effect_text, seeds_text
from spuriouslab.errors import ConfigError
from spuriouslab.figures import FIGURES, ZH, Figure, config_path

Budget = Literal["cpu", "gpu"]
INDEX = "reproduction.json"

# The deep-network presets in the other family, the small Vision Transformer (spuriouslab.nets.vit), each placed
# right after its ResNet / CNN counterpart so that the evidence reads in both families side by side.  Runtimes
# measured on 2026-12-02 with ``OMP_NUM_THREADS=1 spuriouslab reproduce NAME`` on the project's 2-core machine
# while another job shared its CPU (two threads contending with it ran several times slower).  They belong in
# figures.FIGURES; they are registered from here until that file takes them.
VIT_FIGURES: dict[str, tuple[str, Figure]] = {
    "zh-padded-vit-cpu": (
        "zh-padded-cpu",
        Figure(
            ZH,
            "background_features_vit_cpu.yaml",
            "padded vs control ViT (patch 4, dim 64, depth 4) on 5000 Fashion-MNIST images, 5 epochs, 3 seeds: "
            "feature grids of its last block's MLP units and their colour, border reliance, Grad-CAM on the patch "
            "embedding",
            "8m48s (OMP_NUM_THREADS=1, CPU shared)",
        ),
    ),
    "zh-distill-digits-vit": (
        "zh-distillation-digits",
        Figure(
            ZH,
            "distillation_digits_vit.yaml",
            "distillation on digits laid on backgrounds with ViT teacher, student and baseline (30 epochs each)",
            "3m42s (OMP_NUM_THREADS=1, CPU shared)",
        ),
    ),
}


def register_vit_figures(figures: dict[str, Figure]) -> None:
    """Put :data:`VIT_FIGURES` into ``figures`` (in place, each after its counterpart; idempotent)."""
    if all(name in figures for name in VIT_FIGURES):
        return
    items = [(k, v) for k, v in figures.items() if k not in VIT_FIGURES]
    after = {counterpart: (name, fig) for name, (counterpart, fig) in VIT_FIGURES.items()}
    figures.clear()
    for name, fig in items:
        figures[name] = fig
        if name in after:
            figures[after[name][0]] = after[name][1]
    for name, (_, fig) in VIT_FIGURES.items():  # a counterpart that is not registered: at the end
        figures.setdefault(name, fig)


register_vit_figures(FIGURES)


@dataclass
class Outcome:
    """What became of one figure: ``status`` done / failed / skipped, why (skipped, failed), the seconds its run
    took (summed over the attempts that ended), the overrides it ran with and its verdict rows."""

    figure: str
    status: Literal["done", "failed", "skipped", "pending", "running"]
    reason: str = ""
    seconds: float = 0.0
    sets: list[str] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)


def skip_reason(figure: Figure, budget: Budget, has_gpu: bool, found: Callable[[str], bool]) -> str:
    """Why ``figure`` cannot run in this budget on this machine with the data found ('' when it can)."""
    if figure.gpu and budget == "cpu":
        return "paper scale: needs a GPU (--budget gpu)"
    missing = [d for d in figure.data if not found(d)]
    reasons = [f"needs {d} (spuriouslab data fetch {d})" for d in missing]
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


def select(only: list[str] | None) -> list[str]:
    """The figures to consider: all, or the ones named (in the registry's order)."""
    if not only:
        return list(FIGURES)
    unknown = [n for n in only if n not in FIGURES]
    if unknown:
        raise ConfigError(f"--only: got {unknown[0]!r}; allowed: {', '.join(FIGURES)}")
    return [n for n in FIGURES if n in only]


def read_index(out: Path) -> tuple[str | None, dict[str, Outcome]]:
    """The budget and the outcomes an earlier reproduction in ``out`` recorded (None, {} when there was none)."""
    path = out / INDEX
    if not path.exists():
        return None, {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["budget"], {name: Outcome(**o) for name, o in data["figures"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a reproduction index ({e}); move it away to start afresh") from None


def write_index(out: Path, budget: Budget, outcomes: dict[str, Outcome]) -> None:
    from spuriouslab.store import atomic_write

    data = {"budget": budget, "figures": {n: asdict(o) for n, o in outcomes.items()}}
    atomic_write(out / INDEX, lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8"))


def figure_verdicts(run_dir: Path) -> list[dict[str, Any]]:
    """The verdict rows of a finished figure's run, judged again from its records (its report is not redrawn)."""
    from spuriouslab.report import judge_run
    from spuriouslab.store import RunStore

    return judge_run(RunStore(run_dir))


def reproduce_all(
    out: Path,
    budget: Budget,
    run_one: Callable[[str, Path, list[str], Path], None],
    *,
    has_gpu: bool,
    found: Callable[[str], bool],
    only: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Outcome]:
    """Run every figure of ``budget`` (or of ``only``) into ``out/<figure>``; ``run_one(name, config, sets,
    run_dir)`` runs one (raising on failure).  Figures done in an earlier call are not run again."""
    from filelock import FileLock, Timeout
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(out / ".reproduction.lock"), timeout=0).acquire()
    except Timeout:
        raise ConfigError(f"{out}: another reproduction is running there") from None
    with lock:
        saved, previous = read_index(out)
        if saved is not None and saved != budget:
            raise ConfigError(f"{out}: holds a --budget {saved} reproduction; use another --out for --budget {budget}")
        names = select(only)
        outcomes = {n: previous.get(n, Outcome(n, "pending")) for n in names}
        bar = tqdm(names, desc="reproduce", unit="figure", disable=not progress, dynamic_ncols=True)
        if progress:  # lines above the bar, not through it
            echo = lambda line: bar.write(line, file=sys.stderr)  # noqa: E731
        for name in bar:
            bar.set_postfix_str(name)
            figure, o = FIGURES[name], outcomes[name]
            subset = subset_sets(figure, found)
            if subset:
                figure = dataclasses.replace(figure, data=(), cpu_sets=(*figure.cpu_sets, *subset))
            reason = skip_reason(figure, budget, has_gpu, found)
            if reason:
                outcomes[name] = Outcome(name, "skipped", reason)
                echo(f"{name}: skipped ({reason})")
                write_index(out, budget, outcomes)
                continue
            if o.status == "done" and (out / name).is_dir():
                o.verdicts = figure_verdicts(out / name)  # judged again: the records are the truth, not the index
                write_index(out, budget, outcomes)
                echo(f"{name}: done earlier ({_duration(o.seconds)})")
                continue
            sets = list(figure.cpu_sets) if budget == "cpu" else list(subset)
            outcomes[name] = Outcome(name, "running", "", o.seconds, sets)  # what a killed reproduction leaves
            write_index(out, budget, outcomes)
            t0 = time.perf_counter()
            try:
                run_one(name, config_path(name), sets, out / name)
                note = (
                    f"on {FIGURES[name].subset_data}, a subset ({', '.join(FIGURES[name].data)} not found)"
                    if subset
                    else ""
                )
                o = Outcome(name, "done", note, o.seconds + time.perf_counter() - t0, sets, figure_verdicts(out / name))
            except (KeyboardInterrupt, SystemExit):
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
        bar.close()
    return outcomes


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def verdict_rows(outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    """One row per judged claim: figure, claim, effect and interval, seeds, verdict, reason, the figure's runtime."""
    rows = []
    for name, o in outcomes.items():
        for v in o.verdicts:
            rows.append(
                {
                    "figure": name,
                    "claim": v["claim"],
                    "metric": v["metric"],
                    "effect": v["effect"],
                    "low": v["low"],
                    "high": v["high"],
                    "n_seeds": v["n_seeds"],
                    "paired": v["paired"],
                    "excluded": v["excluded"],
                    "verdict": v["verdict"],
                    "reason": v["reason"],
                    "runtime": _duration(o.seconds),
                }
            )
    return rows


def verdicts_markdown(outcomes: dict[str, Outcome]) -> str:
    """The reproduction's verdict table, then the figures that did not run and why."""
    rows = verdict_rows(outcomes)
    lines = ["| figure | claim | effect [95% interval] | seeds | verdict | runtime |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['figure']} | {r['claim'].replace('|', '/')} | {effect_text(r, 3)} | {seeds_text(r)} | "
            f"**{r['verdict']}** | {r['runtime']} |"
        )
    others = [o for o in outcomes.values() if o.status != "done"]
    if others:
        lines += ["", "Not run:", ""]
        lines += [f"- {o.figure}: {o.status}" + (f" ({o.reason})" if o.reason else "") for o in others]
    done = [o for o in outcomes.values() if o.status == "done"]
    counts = count_verdicts(rows)
    lines += [
        "",
        f"{len(done)} figure(s) run in {_duration(sum(o.seconds for o in done))}; "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + ".",
    ]
    return "\n".join(lines)


def write_outputs(out: Path, budget: Budget, outcomes: dict[str, Outcome], environment: dict[str, Any]) -> Path:
    """``verdicts.md``, ``verdicts.csv`` and ``reproduction.html`` in ``out``; returns the HTML page's path."""
    import pandas as pd

    from spuriouslab.html import write_reproduction_html
    from spuriouslab.store import atomic_write

    table = verdicts_markdown(outcomes)
    atomic_write(out / "verdicts.md", lambda tmp: tmp.write_text(table + "\n", encoding="utf-8"))
    atomic_write(out / "verdicts.csv", lambda tmp: pd.DataFrame(verdict_rows(outcomes)).to_csv(tmp, index=False))
    sections = []
    for name, o in outcomes.items():
        run_dir = out / name
        summary = (run_dir / "summary.md").read_text(encoding="utf-8") if (run_dir / "summary.md").exists() else ""
        figures = sorted((run_dir / "figures").glob("*.png")) if o.status == "done" else []
        sections.append((name, FIGURES[name], o, summary, figures))
    return write_reproduction_html(out / "reproduction.html", budget, verdict_rows(outcomes), sections, environment)
