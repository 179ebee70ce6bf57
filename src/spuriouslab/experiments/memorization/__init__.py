"""Spurious-feature memorization by min-norm / ridge random-features and NTK regression.

Bombari & Mondelli (ICML 2024): train on ``z = [x, y]`` (core x, spurious y, alpha = d_y/d), then query the
model with only a training sample's spurious part ``[x~_i, y_i]`` and check whether it recalls ``g_i``.
Memorization ``Cov(f(z^s), g)`` ~ mean_i F_i S_i g_i (feature alignment x leave-one-out stability), all
read off one factorisation of the Gram matrix.  ``config`` / ``run`` / ``report`` hold the three jobs.
"""

from __future__ import annotations

from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.memorization import report as _report
from spuriouslab.experiments.memorization import run as _run
from spuriouslab.experiments.memorization.config import MemorizationConfig


class Memorization(Experiment):
    name = "memorization"
    summary = "RF / NTK regression: do spurious features alone recall training labels? (Bombari & Mondelli)"
    Config = MemorizationConfig

    def points(self, cfg):
        return _run.points(cfg)

    def check(self, cfg):
        _run.check(cfg)
        self.points(cfg)

    def estimate(self, cfg):
        return _run.estimate(cfg)

    def group_key(self, cfg, point):
        return _run.group_key(cfg, point)

    def run_group(self, cfg, points, ctx):
        return _run.run_group(cfg, points, ctx)

    def report(self, cfg, df):
        return _report.report(cfg, df)


EXPERIMENT = Memorization()

__all__ = ["EXPERIMENT", "Memorization", "MemorizationConfig"]
