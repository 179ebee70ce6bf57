"""What every experiment provides, the shared config base, and the registry of experiments.

An experiment is a typed pydantic config plus three functions:

* ``points(cfg)``: the grid, a list of dicts over ``cfg.AXES`` plus ``seed`` (one record each);
* ``group_key(cfg, point)``: points with the same key are computed together (shared Gram matrices, ...);
* ``run_group(cfg, points, ctx)``: yields one record (the point plus its metrics) per point;
* ``report(cfg, df, store)``: figures and the summary table, from the records alone.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from spuriouslab.errors import ConfigError


def split_list(value: Any) -> Any:
    """Turn ``"10,100"`` into ``["10", "100"]`` and a scalar into ``[scalar]``; keep
    ``hermite:c0,c1,...`` items whole (their numbers follow them)."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and "," in value:
        items: list[str] = []
        for tok in (t.strip() for t in value.split(",")):
            if items and items[-1].startswith("hermite:") and _is_number(tok):
                items[-1] += "," + tok
            else:
                items.append(tok)
        return items
    return [value]


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _registered_activation(name: str) -> str:
    from spuriouslab.kernels.activations import get_activation

    try:
        get_activation(name)
    except ValueError as exc:  # ConfigError is a ValueError; keep its "allowed: ..." part
        raise ValueError(str(exc).split("; ", 1)[-1]) from None
    return name


ActivationName = Annotated[str, AfterValidator(_registered_activation)]
"""A name in the activation registry, or ``hermite:c0,c1,...``."""


class ExperimentConfig(BaseModel):
    """Base for experiment configs: unknown keys are errors; ``AXES`` fields are lists (grid axes)."""

    model_config = ConfigDict(extra="forbid")
    AXES: ClassVar[tuple[str, ...]] = ()

    seeds: int = Field(3, ge=1, description="number of seeds per grid point")
    seed: int = Field(0, ge=0, description="base seed; seed i of a run is seed + i")

    def fixed_fields(self) -> list[str]:
        """Fields that must match when a run directory is resumed (everything but grid axes and seeds)."""
        return [f for f in type(self).model_fields if f not in self.AXES and f != "seeds"]

    def seed_values(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


@dataclass
class RunContext:
    device: str = "cpu"
    progress: bool = True
    checkpoint_dir: str | None = None  # where long groups may checkpoint (the run directory's checkpoints/)


class Experiment:
    name: str = ""
    summary: str = ""
    Config: type[ExperimentConfig] = ExperimentConfig

    # ------------------------------------------------------------------ grid
    def point_fields(self) -> list[str]:
        return [*self.Config.AXES, "seed"]

    def points(self, cfg: ExperimentConfig) -> list[dict[str, Any]]:
        axes = [getattr(cfg, a) for a in cfg.AXES]
        return [dict(zip([*cfg.AXES, "seed"], (*combo, s), strict=True))
                for combo in itertools.product(*axes) for s in cfg.seed_values()]

    def group_key(self, cfg: ExperimentConfig, point: dict[str, Any]) -> Any:
        return tuple(sorted(point.items()))

    def check(self, cfg: ExperimentConfig) -> None:
        """Checks that need more than the config (data on disk, sizes): raise ConfigError before a run
        touches its directory.  The default resolves the grid."""
        self.points(cfg)

    def run_group(self, cfg: ExperimentConfig, points: list[dict[str, Any]], ctx: RunContext) -> Iterator[dict]:
        raise NotImplementedError

    def report(self, cfg: ExperimentConfig, df, store) -> str:
        raise NotImplementedError

    # ---------------------------------------------------------------- config
    def make_config(self, values: dict[str, Any]) -> ExperimentConfig:
        try:
            return self.Config(**values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, self)) from None


def format_validation_error(exc: ValidationError, experiment: Experiment) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
    key = loc[0] if loc else "config"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(f for f in experiment.Config.model_fields)
        return f"unknown key {key!r} for experiment '{experiment.name}'; allowed keys: {allowed}"
    value = err.get("input")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if key == "config" or err["type"] == "value_error" and isinstance(value, dict):
        return f"{msg}"
    return f"{key}: got {value!r}; {msg[0].lower() + msg[1:]}"


EXPERIMENTS: dict[str, str] = {
    "memorization": "spuriouslab.experiments.memorization",
    "alignment": "spuriouslab.experiments.alignment",
    "ridge": "spuriouslab.experiments.ridge",
    "contamination": "spuriouslab.experiments.contamination",
    "memorization-nn": "spuriouslab.experiments.memorization_nn",
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: got {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(EXPERIMENTS[name])
    return module.EXPERIMENT
