"""Experiments: the registry.  To add one, make a package ``experiments/<name>/`` with ``config.py``, ``run.py``,
``report.py`` and an ``EXPERIMENT`` in its ``__init__.py`` (see :mod:`.base`), and add it to ``EXPERIMENTS``."""

from __future__ import annotations

import importlib

from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import Estimate, Experiment, ExperimentConfig, Report, RunContext, run_points

EXPERIMENTS: dict[str, str] = {
    "memorization": "spuriouslab.experiments.memorization",
    "alignment": "spuriouslab.experiments.alignment",
    "ridge": "spuriouslab.experiments.ridge",
    "contamination": "spuriouslab.experiments.contamination",
    "memorization-nn": "spuriouslab.experiments.memorization_nn",
    "distillation": "spuriouslab.experiments.distillation",
    "background-features": "spuriouslab.experiments.background_features",
    "probe": "spuriouslab.experiments.probe",
}


def get_experiment(name: str) -> Experiment[ExperimentConfig]:
    """The registered experiment ``name``.  Looked up by name, its config class is known at run time only: it is
    typed with the base config, and the configs given to its methods are the ones its ``make_config`` built."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: got {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    experiment: Experiment[ExperimentConfig] = importlib.import_module(EXPERIMENTS[name]).EXPERIMENT
    return experiment


__all__ = [
    "EXPERIMENTS",
    "Estimate",
    "Experiment",
    "ExperimentConfig",
    "Report",
    "RunContext",
    "get_experiment",
    "run_points",
]
