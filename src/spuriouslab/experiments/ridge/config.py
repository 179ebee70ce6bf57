"""Ridge config: the memorization config with its ``ridge`` preset (a lambda x correlation grid and the
spurious-correlation metric); the preset's values live in the memorization config."""

from __future__ import annotations

from spuriouslab.experiments.base import with_preset
from spuriouslab.experiments.memorization.config import MemorizationConfig

RidgeConfig = with_preset(MemorizationConfig, "ridge", "RidgeConfig")
