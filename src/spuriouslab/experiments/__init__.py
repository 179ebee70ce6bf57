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


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: got {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).EXPERIMENT


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
