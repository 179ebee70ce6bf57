"""What every experiment provides, the shared config base, and the in-memory runner.

An experiment is a package ``experiments/<name>/`` split by job:

* ``config.py`` - a typed pydantic config (values only, never I/O), built on :class:`ExperimentConfig`;
* ``run.py`` - data -> numerics -> records: ``points(cfg)`` (the grid, one record each), ``group_key`` (points
  computed together share work) and ``run_group(cfg, points, ctx)`` (yields one record per point);
* ``report.py`` - ``report(cfg, df) -> Report``: the summary table and figures, from the records alone;
* ``__init__.py`` - ``EXPERIMENT = Experiment(name, summary, Config, run, report, headline)``: the declaration
  that ties them together (:class:`RunModule` and :class:`ReportModule` say what the modules provide),
  registered in :data:`spuriouslab.experiments.EXPERIMENTS`.

:func:`run_points` runs a config in memory (no run directory): tests, benchmarks and notebooks use it; the sweep
runs the very same groups with a store, executors and resume.
"""

from __future__ import annotations

import itertools
import types
import typing
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from spuriouslab.bounded import shown
from spuriouslab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from spuriouslab.claims import Claim, Verdict
    from spuriouslab.nets.train import CheckpointStore

MAX_SEEDS = 10_000
# What torch itself takes on the first training steps of any model (allocator pools, autograd and vmap
# workspaces, kernels' scratch), measured at 20-100 MB on tiny runs: part of every trained experiment's estimate.
FRAMEWORK_BYTES = 100e6
MAX_POINTS = 1_000_000  # grid points (axes x seeds) in one run
# Fields renamed since runs were first written: old name -> new name.  A config (a file, ``--set``, a stored
# ``config.yaml``) and a stored record that use the old name are read under the new one.
RENAMED_FIELDS: dict[str, str] = {"mitigation": "remedy"}


def renamed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every old field name of :data:`RENAMED_FIELDS` replaced by its new name (ValueError when
    both are given)."""
    out = dict(values)
    for old, new in RENAMED_FIELDS.items():
        if old in out:
            if new in out:
                raise ValueError(f"{old} and {new} name one field ({old} is its old name); give {new} only")
            out[new] = out.pop(old)
    return out


Point = dict[str, Any]
"""One grid point: axis values and the seed, field -> value (JSON values: numbers, strings, booleans, lists)."""
Record = dict[str, Any]
"""One record (a row of ``results.parquet``): column -> value (numbers, strings, lists of per-step values)."""


def numeric_field(annotation: object) -> bool:
    """Whether a field's type takes numbers (int or float, alone or in lists / unions), not booleans."""
    leaves: set[object] = set()

    def walk(tp: object) -> None:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            walk(typing.get_args(tp)[0])
        elif origin is Literal:
            leaves.update(type(a) for a in typing.get_args(tp))
        elif origin in (list, tuple, typing.Union, types.UnionType):
            for a in typing.get_args(tp):
                walk(a)
        else:
            leaves.add(tp)

    walk(annotation)
    return bool(leaves & {int, float}) and bool not in leaves


def bool_field(annotation: object) -> bool:
    """Whether a field's type is a boolean (alone, optional, or in a list)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return bool_field(typing.get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(bool_field(a) for a in args)
    return annotation is bool


def _check_literal(key: str, val: object, annotation: object) -> None:
    """Booleans are true / false only (not yes, on, 1, t); numbers are numbers (no booleans, no 1_000 strings)."""
    items = val if isinstance(val, list | tuple) else [val]
    if bool_field(annotation):
        for item in items:
            if not (
                isinstance(item, bool) or item is None or isinstance(item, str) and item.lower() in ("true", "false")
            ):
                raise ValueError(f"{key}: got {item!r}; a boolean is true or false")
    elif numeric_field(annotation):
        for item in items:
            if isinstance(item, bool):
                raise ValueError(f"{key}: got {val!r}; a boolean is not a number")
            if isinstance(item, str) and "_" in item:
                raise ValueError(f"{key}: got {val!r}; write numbers without underscores")


class ExperimentConfig(BaseModel):
    """Base for experiment configs: unknown keys are errors; ``AXES`` fields are lists (grid axes).

    ``DEFAULTS`` is the one mechanism for presets, sweep shortcuts and data-set defaults: a tuple of layers
    ``(selector field, {selector value: {field: default}})``.  Values given explicitly win; then each layer in
    order (an earlier layer wins over a later one); then the field's own default.
    """

    # numbers are finite unless a field says otherwise (Width: ``inf`` is the infinite-width kernel)
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)
    AXES: ClassVar[tuple[str, ...]] = ()
    # fields added after runs existed: at their default they are left out of a point's identity (its point_id),
    # so that the records of a config that does not use them stay what they were
    LATER: ClassVar[tuple[str, ...]] = ()
    DEFAULTS: ClassVar[tuple[tuple[str, Mapping[str, Mapping[str, Any]]], ...]] = ()

    seeds: int = Field(3, ge=1, le=MAX_SEEDS, description="number of seeds per grid point")
    seed: int = Field(0, ge=0, le=2**31, description="base seed; seed i of a run is seed + i")

    @model_validator(mode="before")
    @classmethod
    def _layered_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = renamed(values)
        for key, val in values.items():
            info = cls.model_fields.get(key)
            if info is not None:
                _check_literal(key, val, info.annotation)
        for selector, table in cls.DEFAULTS:
            choice = values.get(selector, cls.model_fields[selector].default)
            try:
                layer = table.get(choice, {})
            except TypeError:  # an unhashable value: validation names it
                layer = {}
            for key, val in layer.items():
                values.setdefault(key, val)
        return values

    @model_validator(mode="after")
    def _grid_axes(self) -> ExperimentConfig:
        size = self.seeds
        for axis in self.AXES:
            values = getattr(self, axis)
            if values is None:
                continue
            if len(values) == 0:
                raise ValueError(f"{axis}: got an empty list; give at least one value")
            seen = [v for i, v in enumerate(values) if v in values[:i]]
            if seen:
                raise ValueError(f"{axis}: got {values}; {seen[0]!r} appears twice (each grid value once)")
            size *= len(values)
        if size > MAX_POINTS:
            raise ValueError(f"grid: {size} points (axes x seeds) is more than {MAX_POINTS}; split the sweep")
        return self

    def fixed_fields(self) -> list[str]:
        """Fields that must match when a run directory is resumed (everything but grid axes and seeds)."""
        return [f for f in type(self).model_fields if f not in self.AXES and f != "seeds"]

    def seed_values(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


S = TypeVar("S")  # a registry's entry type (DatasetSpec, ModelSpec, ...)


class FromRegistry(Mapping[str, dict[str, Any]], Generic[S]):
    """A ``DEFAULTS`` table read from a registry when it is looked up: ``defaults(spec)`` gives the layer of each
    entry, so an entry added to the registry (one line) has its defaults everywhere at once."""

    def __init__(self, registry: Mapping[str, S], defaults: Callable[[S], dict[str, Any]]):
        self.registry, self.defaults = registry, defaults

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.defaults(self.registry[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry)

    def __len__(self) -> int:
        return len(self.registry)


@dataclass
class RunContext:
    """How a group runs: device, progress bars, and where long groups checkpoint.

    ``checkpoints`` is the run directory's checkpoint area (:class:`spuriouslab.store.Checkpoints`: ``load``,
    ``save``, ``discard`` by key; any :class:`~spuriouslab.nets.train.CheckpointStore`), or None in memory.
    ``finished`` lists the checkpoints a group is done with (:meth:`discard`), to drop once its records are
    durable."""

    device: str = "cpu"
    progress: bool = True
    checkpoints: CheckpointStore | None = None
    finished: list[str] = field(default_factory=list)

    def discard(self, *keys: str) -> None:
        """Mark checkpoints that their group no longer needs.  They are dropped only once the group's records are
        durable (:meth:`drop_finished`, called by the sweep right after the store's append, in the process that
        holds the run directory), so that a kill between the end of a group and its records on disk (with
        ``--jobs``, Ray or SLURM: the transfer to that process included) loses no training."""
        self.finished.extend(keys)

    def drop_finished(self, keys: list[str] | None = None) -> None:
        """Drop ``keys`` (else every checkpoint marked by :meth:`discard` here) from the checkpoint area."""
        keys = list(self.finished) if keys is None else keys
        if self.checkpoints is not None:
            for key in keys:
                self.checkpoints.discard(key)
        self.finished = [k for k in self.finished if k not in keys]


def checkpoint_key(experiment: str, cfg: ExperimentConfig, points: list[Point], role: str = "") -> str:
    """The one name of a training checkpoint: the experiment, the role (teacher, student, ...; empty for an
    experiment that trains one model per group), and a hash of the config's fixed fields and the points it
    trains, so that a resumed run finds exactly its own and two groups never share one."""
    import hashlib
    import json

    values = cfg.model_dump(mode="json")
    fixed = {k: values[k] for k in cfg.fixed_fields()}
    text = json.dumps({"role": role, "points": points, "cfg": fixed}, sort_keys=True, default=str)
    return "-".join(filter(None, [experiment, role, hashlib.sha1(text.encode()).hexdigest()[:16]]))


@dataclass
class Estimate:
    """What a run's groups need at most: peak memory (bytes, of the largest group) and work (floating-point
    operations, of the longest group)."""

    peak_bytes: float
    flops: float
    group: str = ""  # which group, in words

    def describe(self) -> str:
        return (
            f"largest group ({self.group}): about {_size(self.peak_bytes)} peak memory; longest group: about "
            f"{self.flops / 1e9:.3g} GFLOP"
        )


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


@dataclass
class Report:
    """What a report makes from records: the summary (Markdown) and figures by name (the store saves them)."""

    summary: str
    figures: dict[str, Figure] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # judged claims, one row each (Verdict.row())


C = TypeVar("C", bound=ExperimentConfig)  # an experiment's config class
C_contra = TypeVar("C_contra", bound=ExperimentConfig, contravariant=True)


class RunModule(Protocol[C_contra]):
    """What an experiment's ``run.py`` provides.  ``run_group(cfg, points, ctx)`` is required: it computes a group
    of grid points (data -> model -> fit -> measure) and yields one record per point.  Optional, used when
    defined: ``points(cfg)`` (the grid; default: every combination of the axes and seeds), ``group_key(cfg,
    point)`` (points computed together; default: each alone), ``check(cfg)`` (raise ConfigError before a run
    touches its directory), ``estimate(cfg) -> Estimate`` (peak memory and work of the largest group) and
    ``resolve(cfg) -> dict`` (what the machine resolved: the data set found and its checksum, fixed at a run's
    first point).  A module is checked against this protocol where its ``Experiment`` is declared, with the
    experiment's config class as ``C_contra``."""

    def run_group(self, cfg: C_contra, points: list[Point], ctx: RunContext) -> Iterator[Record]: ...


class ReportModule(Protocol[C_contra]):
    """What an experiment's ``report.py`` provides: ``report(cfg, df) -> Report`` from the records alone."""

    def report(self, cfg: C_contra, df: pd.DataFrame) -> Report: ...


@dataclass(frozen=True)
class Experiment(Generic[C]):
    """One experiment, declared (see the module docstring): its name and one-line summary, its config class, its
    run and report modules, and the headline record columns a sweep or a cross-run report shows first.
    ``Experiment[C]`` is generic in its config class ``C``: its run and report modules take that config.

    >>> from spuriouslab.experiments import get_experiment
    >>> exp = get_experiment("contamination")
    >>> exp.Config.__name__, exp.headline[0]
    ('ContaminationConfig', 'bg_norm_growth')
    """

    name: str
    summary: str
    Config: type[C]
    run: RunModule[C]
    reporting: ReportModule[C]
    headline: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()  # what the paper says, judged on every report

    def __post_init__(self) -> None:
        if not callable(getattr(self.run, "run_group", None)) or not callable(getattr(self.reporting, "report", None)):
            raise TypeError(f"experiment {self.name!r}: its run module needs run_group and its report module report")

    def _hook(self, name: str) -> Any:
        """The run module's optional ``name`` (None when it has none); each caller annotates its contract."""
        return getattr(self.run, name, None)

    # ------------------------------------------------------------------ grid
    def point_fields(self) -> list[str]:
        return [*self.Config.AXES, "seed"]

    def points(self, cfg: C) -> list[Point]:
        fn: Callable[[C], list[Point]] | None = self._hook("points")
        if fn is not None:
            return fn(cfg)
        axes = [getattr(cfg, a) for a in cfg.AXES]
        return [
            dict(zip([*cfg.AXES, "seed"], (*combo, s), strict=True))
            for combo in itertools.product(*axes)
            for s in cfg.seed_values()
        ]

    def group_key(self, cfg: C, point: Point) -> Hashable:
        fn: Callable[[C, Point], Hashable] | None = self._hook("group_key")
        if fn is not None:
            return fn(cfg, point)
        return tuple(sorted(point.items()))

    def groups(self, cfg: C, points: list[Point]) -> list[list[Point]]:
        """Points grouped by :meth:`group_key`, in order of first appearance."""
        out: dict[Hashable, list[Point]] = {}
        for p in points:
            out.setdefault(self.group_key(cfg, p), []).append(p)
        return list(out.values())

    def check(self, cfg: C) -> None:
        """Checks that need more than the config (data on disk, sizes, the user's models): raise ConfigError
        before a run touches its directory.  Resolves the grid, then the run module's ``check``."""
        self.points(cfg)
        fn: Callable[[C], None] | None = self._hook("check")
        if fn is not None:
            fn(cfg)

    def resolve(self, cfg: C) -> dict[str, Any]:
        """What the machine resolved for this config (the run module's ``resolve``: the data set ``auto`` found,
        the checksum of its decoded arrays); empty when nothing is resolved.  A run fixes it at its first point
        and checks it on resume."""
        fn: Callable[[C], Mapping[str, Any]] | None = self._hook("resolve")
        return dict(fn(cfg)) if fn is not None else {}

    def estimate(self, cfg: C) -> Estimate | None:
        """Peak memory and work of the largest group (None: no estimate).  Checked before a run touches its
        directory."""
        fn: Callable[[C], Estimate] | None = self._hook("estimate")
        return fn(cfg) if fn is not None else None

    def run_group(self, cfg: C, points: list[Point], ctx: RunContext) -> Iterator[Record]:
        return self.run.run_group(cfg, points, ctx)

    def report(self, cfg: C, df: pd.DataFrame) -> Report:
        """The report module's report, with the verdict on each declared claim (:mod:`spuriouslab.claims`) after
        its summary; ``Report.verdicts`` keeps them as rows."""
        report = self.reporting.report(cfg, df)
        data_lines = _data_lines(df)
        if data_lines:  # what the images were, plainly (a subset says so), under the title
            head, _, rest = report.summary.partition("\n")
            report.summary = head + "\n\n" + "\n".join(data_lines) + "\n" + rest
        verdicts = self.verdicts(df)
        report.verdicts = [v.row() for v in verdicts]
        if verdicts:
            from spuriouslab.claims import claims_digest, verdict_markdown

            report.summary = (
                report.summary.rstrip("\n") + "\n\n## Verdicts on the paper's claims\n\n"
                "Effect with its 95% interval over seeds (paired where seeds pair); the test's one-sided p-value; "
                "holds / contradicted when the one-sided test on that side rejects at 0.025 (the interval lies on "
                "one side; agreement: two one-sided tests), inconclusive otherwise, with the seeds that would decide "
                "it (80% power); adjusted: Holm's correction over this report's claims.  Claim definitions "
                f"{claims_digest(self.claims)} (a hash of every claim's sentence, metric, comparison and smallest "
                "effect).\n\n" + verdict_markdown(verdicts) + "\n"
            )
        return report

    def verdicts(self, df: pd.DataFrame) -> list[Verdict]:
        """The verdicts (:class:`spuriouslab.claims.Verdict`) on the declared claims these records can test."""
        return self.verdicts_of(list(self.claims), df)

    def verdicts_of(self, claims: list[Claim], df: pd.DataFrame) -> list[Verdict]:
        """The applicable verdicts on ``claims``, one family: each carries its raw verdict and the verdict after
        Holm's correction over the family (:func:`spuriouslab.claims.adjust`).  Records written before an axis
        existed (``remedy``, say) lack its column: they are read at the axis's default, which is what they ran."""
        from spuriouslab.claims import adjust, judge_all

        if df is not None and hasattr(df, "columns"):
            for axis in self.Config.AXES:
                default = self.Config.model_fields[axis].default if axis in self.Config.model_fields else None
                if axis not in df.columns and isinstance(default, list) and len(default) == 1:
                    df = df.assign(**{axis: default[0]})
        return adjust([v for v in judge_all(claims, df) if v.applicable], "holm")

    # ---------------------------------------------------------------- config
    def make_config(self, values: Mapping[str, Any]) -> C:
        try:
            return self.Config(**values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, self)) from None

    def default_config(self) -> dict[str, Any]:
        """Every field's default as resolved for an empty config (presets and data-set layers applied); a field
        that must be given keeps its declared default."""
        try:
            return self.Config().model_dump(mode="json")
        except ValidationError:
            return {k: f.default for k, f in self.Config.model_fields.items()}


def _data_lines(df: pd.DataFrame | None) -> list[str]:
    """``Data: name - description`` for each image data set of the registry the records name."""
    from spuriouslab.data.datasets import DATASETS

    if df is None or "data" not in getattr(df, "columns", ()):
        return []
    names = [n for n in dict.fromkeys(df["data"].astype(str)) if n in DATASETS]
    return [f"Data: {n} - {DATASETS[n].description}." for n in names]


def with_preset(config: type[C], preset: str, name: str) -> type[C]:
    """``config`` whose ``preset`` field defaults to ``preset``: an experiment that is another's preset (alignment
    and ridge are memorization presets) declares no field of its own."""
    field = config.model_fields["preset"]
    annotation = field.annotation
    assert annotation is not None  # every config's preset field is a Literal
    return create_model(
        name,
        __base__=config,
        __doc__=f"{config.__name__} with preset={preset}",
        preset=(annotation, Field(preset, description=field.description)),
    )


def run_points(
    exp: Experiment[C], cfg: C, ctx: RunContext | None = None, points: list[Point] | None = None
) -> list[Record]:
    """Every record of ``cfg`` (or of the given ``points``), computed in this process, nothing written."""
    ctx = ctx or RunContext(progress=False)
    records: list[Record] = []
    for group in exp.groups(cfg, exp.points(cfg) if points is None else points):
        records.extend(exp.run_group(cfg, group, ctx))
        ctx.drop_finished()  # nothing is written: the records in memory are all there is
    return records


def format_validation_error(exc: ValidationError, experiment: Experiment[C]) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
    key = loc[0] if loc else "config"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(f for f in experiment.Config.model_fields)
        return f"unknown key {key!r} for experiment '{experiment.name}'; allowed keys: {allowed}"
    value = err.get("input")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if key == "config" or err["type"] == "value_error" and isinstance(value, dict):
        return f"{msg}"
    return f"{key}: got {shown(value)}; {msg[0].lower() + msg[1:]}"
