"""Experiments: each module defines a typed config and an :class:`~spuriouslab.experiments.base.Experiment`."""

from spuriouslab.experiments.base import EXPERIMENTS, Experiment, get_experiment

__all__ = ["EXPERIMENTS", "Experiment", "get_experiment"]
