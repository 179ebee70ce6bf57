"""Alignment config: the memorization config with defaults for a theory check (infinite width, nested N)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from spuriouslab.experiments.fields import (MAX_DIM, MAX_SAMPLES, MAX_SEEDS, ActivationName, Fraction, KernelModel,
                                            Listed, Size, Width)
from spuriouslab.experiments.memorization.config import MemorizationConfig


class AlignmentConfig(MemorizationConfig):
    d: int = Field(500, ge=2, le=MAX_DIM, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.1, 0.25, 0.5, 0.75, 0.9], description="spurious fraction d_y/d")
    n_train: Annotated[list[Size], Listed] = Field([10, 25, 50, 100, 250, 500, 1000, 2000],
                                                  description="training-set sizes N (10 to 4d)")
    n_test: int = Field(200, ge=1, le=MAX_SAMPLES, description="fresh test samples")
    model: Annotated[list[KernelModel], Listed] = Field(["rf", "ntk"], description="rf or ntk")
    activation: Annotated[list[ActivationName], Listed] = Field(["phi2", "phi4", "relu", "tanh"],
                                                                description="registered name or hermite:c0,c1,...")
    width: Annotated[list[Width], Listed] | None = Field(["inf"], description="features k (int or inf)")
    nested: bool = Field(True, description="share one draw of data and features across nested N")
    seeds: int = Field(2, ge=1, le=MAX_SEEDS, description="number of seeds per grid point")
