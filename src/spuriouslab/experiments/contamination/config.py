"""Contamination config: values only; presets and sweep shortcuts are layers of ``DEFAULTS``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from spuriouslab.experiments.base import ExperimentConfig
from spuriouslab.experiments.fields import (
    MAX_DIM,
    MAX_SAMPLES,
    MAX_SEEDS,
    MAX_WIDTH,
    ActivationName,
    AndMaskTau,
    Listed,
    refuse_group_remedies,
    refuse_unused_remedy_settings,
)
from spuriouslab.nets.remedies import REMEDIES, RemedyName

NET_ACTIVATIONS = ["relu", "gelu", "leaky_relu", "sigmoid", "tanh", "identity"]
PRESETS: dict[str, dict[str, Any]] = {
    # the setting of the paper's theory: hinge, SGD with momentum, linear core, frozen +-1/m output layer
    "theory": {"loss": ["hinge"], "optimizer": ["sgd"], "core": "linear", "freeze_output": True},
    # the official script's defaults: logistic, AdamW, norm (nonlinear) core, trainable output
    "toy": {"loss": ["logistic"], "optimizer": ["adamw"], "core": "norm", "freeze_output": False},
}
SWEEPS: dict[str, dict[str, Any]] = {
    "none": {},
    "activations": {"activation": NET_ACTIVATIONS},
    "losses": {"loss": ["hinge", "logistic", "mse"], "optimizer": ["sgd", "adam", "adamw"]},
    "remedies": {"remedy": [m for m, spec in REMEDIES.items() if not spec.needs_groups]},
}


class ContaminationConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("activation", "loss", "optimizer", "remedy")
    # explicit values win over the sweep shortcut, which wins over the preset
    DEFAULTS: ClassVar = (("sweep", SWEEPS), ("preset", PRESETS))

    preset: Literal["theory", "toy"] = Field("theory", description="theory (hinge/SGD/linear/frozen) or toy (script)")
    sweep: Literal["none", "activations", "losses", "remedies"] = Field(
        "none", description="shortcut grids over activations, losses x optimizers, or every remedy"
    )
    d: int = Field(256, ge=2, le=MAX_DIM, description="ambient input dimension")
    d_core: int = Field(32, ge=1, le=MAX_DIM, description="core latent dimension")
    d_bg: int = Field(32, ge=1, le=MAX_DIM, description="background latent dimension")
    n: int = Field(1000, ge=2, le=MAX_SAMPLES, description="training samples (balanced)")
    n_test: int = Field(1000, ge=2, le=MAX_SAMPLES, description="ID and OOD test samples")
    core: Literal["linear", "norm"] = Field("linear", description="core-label relation (preset)")
    ood: Literal["flip", "shift", "scale"] = Field("flip", description="OOD background: -U, U+shift, scale*U")
    ood_shift: float = Field(-1.0, description="delta for ood=shift")
    ood_scale: float = Field(-1.0, description="factor for ood=scale")
    sampling: Literal["full", "minibatch", "online"] = Field(
        "full", description="full batch, minibatches of the fixed set, or fresh samples every step"
    )
    batch_size: int = Field(100, ge=1, le=MAX_SAMPLES, description="minibatch size (sampling=minibatch)")
    depth: int = Field(2, ge=2, le=100, description="number of linear layers")
    width: int = Field(256, ge=2, le=MAX_WIDTH, description="hidden width m")
    activation: Annotated[list[ActivationName], Listed] = Field(
        ["relu"], description=", ".join(NET_ACTIVATIONS) + ", ..."
    )
    bias: bool = Field(True, description="biases in every layer")
    freeze_output: bool = Field(True, description="output fixed at +1/m (first half), -1/m (second half) (preset)")
    loss: Annotated[list[Literal["hinge", "logistic", "mse"]], Listed] = Field(["hinge"], description="(preset)")
    optimizer: Annotated[list[Literal["sgd", "adam", "adamw"]], Listed] = Field(["sgd"], description="(preset)")
    remedy: Annotated[list[RemedyName], Listed] = Field(
        ["none"],
        description="remedies: "
        + ", ".join(m for m, r in REMEDIES.items() if not r.needs_groups)
        + " (spuriouslab.nets.remedies)",
    )
    pretrain_iterations: int | None = Field(
        None,
        ge=1,
        le=10**9,
        description="pretrain / lp-ft: pre-training steps on wide backgrounds (default: iterations)",
    )
    pretrain_background: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="pretrain / lp-ft: pre-training backgrounds U[-b, b] (zero mean)"
    )
    lp_iterations: int | None = Field(
        None, ge=1, le=10**9, description="lp-ft: linear-probing steps before fine-tuning (default: iterations // 4)"
    )
    and_mask_tau: AndMaskTau = 1.0
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    iterations: int = Field(20000, ge=1, le=10**9, description="training steps")
    log_every: int = Field(500, ge=1, description="logging (evaluation) interval")
    subspace: bool = Field(True, description="compute the first layer in the 64-dim latent basis (exact)")
    batch_seeds: bool = Field(True, description="train all seeds as one stacked computation")
    dtype: Literal["float32", "float64"] = Field("float32", description="training precision")
    seeds: int = Field(5, ge=1, le=MAX_SEEDS, description="number of seeds")

    @model_validator(mode="after")
    def _combination(self) -> ContaminationConfig:
        if self.d_core + self.d_bg > self.d:
            raise ValueError(
                f"d_core + d_bg: got {self.d_core} + {self.d_bg} > d={self.d}; the latent subspaces "
                "must fit in the input space"
            )
        if self.freeze_output and self.width % 2:
            raise ValueError(f"width: got {self.width} with freeze_output=true; the +-1/m output needs an even width")
        refuse_group_remedies(self, "the synthetic contamination task")
        refuse_unused_remedy_settings(
            self,
            {
                "pretrain_iterations": "pretrain",
                "pretrain_background": "pretrain",
                "lp_iterations": "lp",
                "and_mask_tau": "and-mask",
            },
        )
        return self

    def phase_steps(self, remedy: str) -> dict[str, int]:
        """The optimizer steps of each training phase of ``remedy``: pre-training, linear probing, the task."""
        return REMEDIES[remedy].phases(self.iterations, self.pretrain_iterations, self.lp_iterations)
