"""Alignment config: the memorization config with its ``alignment`` preset (a theory check: infinite width, nested
N, many alpha, four activations, N from 10 to 4d); the preset's values live in the memorization config."""

from __future__ import annotations

from spuriouslab.experiments.base import with_preset
from spuriouslab.experiments.memorization.config import MemorizationConfig

AlignmentConfig = with_preset(MemorizationConfig, "alignment", "AlignmentConfig")
