"""Ridge config: the memorization config with a lambda x correlation grid and the spurious-correlation metric."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from spuriouslab.experiments.fields import (MAX_DIM, ActivationName, Correlation, Fraction, KernelModel, Listed,
                                            RidgeValue, Size, Width)
from spuriouslab.experiments.memorization.config import MemorizationConfig


class RidgeConfig(MemorizationConfig):
    d: int = Field(500, ge=2, le=MAX_DIM, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.5], description="spurious fraction d_y/d")
    n_train: Annotated[list[Size], Listed] = Field([500], description="training-set sizes N")
    model: Annotated[list[KernelModel], Listed] = Field(["rf", "ntk"], description="rf or ntk")
    activation: Annotated[list[ActivationName], Listed] = Field(["relu"], description="registered name or "
                                                                                      "hermite:c0,c1,...")
    width: Annotated[list[Width], Listed] | None = Field(["inf"], description="features k (int or inf)")
    ridge: Annotated[list[RidgeValue], Listed] = Field([0.0, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0],
                                                      description="ridge lambda >= 0")
    correlation: Annotated[list[Correlation], Listed] = Field([0.0, 0.3, 0.6, 0.9], description="c in [0, 1)")
    spurious_corr: bool = Field(True, description="also measure C = Cov(f([x~, y]), g) on the test set")
