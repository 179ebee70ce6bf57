"""Memorization-NN config: values only; the preset and the data set's border width are layers of ``DEFAULTS``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from spuriouslab.data.datasets import DATASETS
from spuriouslab.data.memorization import SplitSpec
from spuriouslab.experiments.base import ExperimentConfig, FromRegistry
from spuriouslab.experiments.fields import (
    MAX_BORDER,
    MAX_DIM,
    MAX_SAMPLES,
    MAX_SEEDS,
    AndMaskTau,
    ClassifierName,
    Colours,
    DataSource,
    Listed,
    Rho,
    Scaling,
    Size,
    check_coloured,
    check_novel_colours,
    refuse_unused,
    refuse_unused_remedy_settings,
)
from spuriouslab.nets.remedies import REMEDIES, RemedyName

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 1000, "step_size": 100, "log_every": 50},
    # CPU-friendly: the FC and CNN curves on digits / Fashion-MNIST in minutes
    "quick": {"epochs": 150, "step_size": 50, "log_every": 15, "n_train": [100, 300, 1000], "seeds": 2, "n_test": 2000},
}
DATA_DEFAULTS = FromRegistry(DATASETS, lambda spec: {"border": spec.border})


class MemorizationNNConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("n_train", "model", "remedy")
    DEFAULTS: ClassVar = (("preset", PRESETS), ("data", DATA_DEFAULTS))

    preset: Literal["paper", "quick"] = Field("paper", description="paper recipe, or quick (CPU minutes)")
    data: DataSource = Field("digits", description="image data (all classes) or synthetic z=[x,y]")
    data_root: str | None = Field(None, description="where image data lives")
    border: int | None = Field(None, ge=1, le=MAX_BORDER, description="border width; unset = data set default")
    border_content: str = Field(
        "uniform",
        description="uniform, gaussian, constant:V, constant:R,G,B, or coloured "
        "(two classes: the class halves; red / green agreeing with the label w.p. rho)",
    )
    rho: Rho = 0.5
    colours: Colours = ["red", "green"]
    scaling: Scaling = Field("unit", description="pixel scaling")
    d: int = Field(1000, ge=2, le=MAX_DIM, description="synthetic: input dimension")
    alpha: float = Field(0.5, gt=0, lt=1, description="synthetic: spurious fraction")
    model: Annotated[list[ClassifierName], Listed] = Field(
        ["fc", "cnn"], description="networks of the model registry (fc, cnn, resnet18, resnet, vit)"
    )
    resnet_depth: int = Field(32, ge=8, le=1202, description="model=resnet: CIFAR ResNet depth 6n+2 (8, 20, 32, ...)")
    vit_patch: int = Field(
        4, ge=1, le=4096, description="model=vit: patch side; must divide the image size including the border"
    )
    vit_dim: int = Field(64, ge=4, le=4096, description="model=vit: token width (a multiple of 4 and of vit_heads)")
    vit_depth: int = Field(4, ge=1, le=64, description="model=vit: transformer blocks")
    vit_heads: int = Field(4, ge=1, le=64, description="model=vit: attention heads")
    n_train: Annotated[list[Size], Listed] = Field([100, 500, 1000], description="training-set sizes N")
    n_test: int = Field(10000, ge=1, le=MAX_SAMPLES, description="test samples (capped at what the data has)")
    epochs: int = Field(1000, ge=1, le=10**6, description="training epochs (preset)")
    batch_size: int = Field(1024, ge=1, le=MAX_SAMPLES, description="minibatch size")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay (paper's ResNet: 5e-4)")
    step_size: int = Field(100, ge=1, description="StepLR period in epochs (preset)")
    gamma: float = Field(0.8, gt=0, le=1, description="StepLR factor")
    log_every: int = Field(50, ge=1, description="epochs between evaluations and checkpoints (preset)")
    seeds: int = Field(3, ge=1, le=MAX_SEEDS, description="number of seeds")
    remedy: Annotated[list[RemedyName], Listed] = Field(
        ["none"],
        description="remedies (border_content=coloured): "
        + ", ".join(m for m, spec in REMEDIES.items() if not spec.oracle)
        + " (spuriouslab.nets.remedies)",
    )
    pretrain_epochs: int | None = Field(
        None,
        ge=1,
        le=10**6,
        description="pretrain / lp-ft: epochs on the training images with random-colour borders (default: epochs)",
    )
    lp_epochs: int | None = Field(
        None, ge=1, le=10**6, description="lp-ft: epochs of the last linear layer alone (default: epochs // 4)"
    )
    and_mask_tau: AndMaskTau = 1.0
    novel_colours: Annotated[list[str], Listed] = Field(
        ["blue"], description="border_content=coloured: held-out colours of the novel test set (names or R,G,B)"
    )
    n_val: int = Field(
        0,
        ge=0,
        le=MAX_SAMPLES,
        description="border_content=coloured: validation images (more training images, training's rho): model "
        "selection by worst-group / worst-class validation accuracy; dfr re-fits the last layer on its first half",
    )
    groupdro_eta: float = Field(0.01, gt=0, le=10, description="groupdro: step size of the group weights")
    jtt_epochs: int | None = Field(
        None, ge=1, le=10**6, description="jtt: epochs of the identification model (default: epochs // 4)"
    )
    jtt_up: float = Field(20.0, ge=1, le=10**4, description="jtt: weight of the identification model's errors")
    dfr_steps: int = Field(
        500, ge=1, le=10**6, description="dfr: full-batch Adam steps (lr 0.01) of the re-fitted last layer"
    )

    @model_validator(mode="after")
    def _check(self) -> MemorizationNNConfig:
        if self.data == "synthetic" and any(m != "fc" for m in self.model):
            raise ValueError(f"model: got {self.model}; synthetic data takes the fc model only")
        if (self.resnet_depth - 2) % 6:
            raise ValueError(f"resnet_depth: got {self.resnet_depth}; a CIFAR ResNet has depth 6n + 2 (8, 20, 32, ...)")
        if "vit" in self.model:
            if self.vit_dim % self.vit_heads:
                raise ValueError(f"vit_heads: got {self.vit_heads}; it must divide vit_dim ({self.vit_dim})")
            if self.vit_dim % 4:
                raise ValueError(
                    f"vit_dim: got {self.vit_dim}; the ViT's 2-d sin-cos position embedding needs a multiple of 4"
                )
        if self.data == "synthetic":
            refuse_unused(
                self,
                ["border", "border_content", "rho", "colours"],
                "it sets the image border; data=synthetic has none",
            )
        check_coloured(self)
        refuse_unused_remedy_settings(
            self,
            {
                "pretrain_epochs": "pretrain",
                "lp_epochs": "lp",
                "and_mask_tau": "and-mask",
                "groupdro_eta": "groupdro",
                "jtt_epochs": "jtt",
                "jtt_up": "jtt",
                "dfr_steps": "dfr",
            },
        )
        if self.border_content != "coloured":
            refuse_unused(self, ["novel_colours", "n_val"], "it sets the coloured task (border_content=coloured)")
        else:
            check_novel_colours(self.colours, self.novel_colours)
        if "dfr" in self.remedy and self.n_val < 8:
            raise ValueError(
                f"n_val: got {self.n_val}; remedy=dfr re-fits the last layer on the first half of a held-out "
                "split: n_val >= 8"
            )
        if self.remedy != ["none"]:
            if self.border_content != "coloured":
                raise ValueError(
                    f"remedy: got {self.remedy}; remedies apply to the coloured task (border_content=coloured)"
                )
            oracle = [m for m in self.remedy if REMEDIES[m].oracle]
            if oracle:
                raise ValueError(
                    f"remedy: {oracle[0]} needs the known core subspace of a synthetic task "
                    "(contamination, distillation task=synthetic); images have none"
                )
        return self

    def jtt_identification_epochs(self) -> int:
        """jtt: the identification model's epochs (``jtt_epochs``, default a quarter of ``epochs``, at least 1)."""
        return self.jtt_epochs or max(1, self.epochs // 4)

    def phase_epochs(self, remedy: str) -> dict[str, int]:
        """The training phases of ``remedy`` and their epochs: pre-training, linear probing, the task."""
        return REMEDIES[remedy].phases(self.epochs, self.pretrain_epochs, self.lp_epochs)

    def split_spec(self, pretrain_borders: bool = False) -> SplitSpec:
        """Every class of the image data set (cross-entropy), queries with the core zeroed; ``pretrain_borders``
        (the coloured task under ``pretrain`` / ``lp-ft``) adds the training images with random-colour borders."""
        return SplitSpec(
            source=self.data,
            n_test=self.n_test,
            d=self.d,
            alpha=self.alpha,
            data_root=self.data_root,
            classes=None,
            border=self.border,
            border_content=self.border_content,
            rho=self.rho,
            colours=tuple(self.colours),
            query="zero",
            scaling=self.scaling,
            streams="images.nets",
            test_queries=self.border_content == "coloured",
            pretrain_borders=pretrain_borders,
            novel_colours=tuple(self.novel_colours),
            n_val=self.n_val,
        )
