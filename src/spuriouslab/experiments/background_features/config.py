"""Background-features config: values only; the preset (cpu / paper) and the data set's sizes are layers of
``DEFAULTS``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from spuriouslab.data.datasets import DATASETS, AutoDataset
from spuriouslab.experiments.base import ExperimentConfig, FromRegistry
from spuriouslab.experiments.fields import MAX_SAMPLES, MAX_SEEDS, Listed

PRESETS: dict[str, dict[str, Any]] = {
    # CPU minutes, from the search in searches/background_features_{1,2}.yaml (README: "CPU presets"): a ResNet-8
    # on 5000 images for 8 epochs, 5 seeds, a visualization of 4 rounds x 100 steps - the smallest setting tried in
    # which the colour claim's interval clears zero (ResNet-8 on 10000 images, 4 seeds, 3 x 50 steps did not)
    "cpu": {
        "depth": 8,
        "n_train": 5000,
        "n_test": 1000,
        "epochs": 8,
        "lr_step": 6,
        "vis_rounds": 4,
        "vis_steps": 100,
        "cam_images": 200,
        "seeds": 5,
        "log_every": 1,
    },
    # the paper's: ResNet-32 on full CIFAR-10, 250 epochs, lr x0.1 every 50, the full visualization recipe (GPU)
    "paper": {
        "data": "cifar10",
        "depth": 32,
        "n_train": 50000,
        "n_test": 10000,
        "epochs": 250,
        "lr_step": 50,
        "vis_rounds": 10,
        "vis_steps": 200,
        "cam_images": 1000,
        "seeds": 1,
        "log_every": 10,
    },
}
DATA_DEFAULTS = FromRegistry(DATASETS, lambda spec: {"border": spec.padding[0], "eval_border": spec.padding[1]})
# data=auto: the padding follows the data set the run finds (resolved at run time, see BorderData), so an unset
# border or eval_border stays None here


class BackgroundFeaturesConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("pipeline",)
    DEFAULTS: ClassVar = (("preset", PRESETS), ("data", DATA_DEFAULTS))

    preset: Literal["cpu", "paper"] = Field("cpu", description="cpu (minutes) or paper (CIFAR-10, 250 epochs, GPU)")
    data: AutoDataset = Field(
        "auto", description="auto = Fashion-MNIST when found, else digits (both as RGB); or any image data set"
    )
    data_root: str | None = Field(None, description="where image data lives (folder: root/{train,test}/<class>)")
    pipeline: Annotated[list[Literal["padded", "control"]], Listed] = Field(
        ["padded", "control"], description="padded (border of `colour`, random crop, flip) and/or control"
    )
    colour: str = Field("brick", description="the training border colour: a name (brick = 150,50,50) or R,G,B")
    other_colours: Annotated[list[str], Listed] = Field(
        ["green", "blue", "grey"], description="border colours of the OOD test sets"
    )
    border: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="padding width in pixels; unset = the data set's (8 for 28x28 and 32x32 images, 2 for digits)",
    )
    eval_border: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="width of the frame painted on test images; unset = the data set's (4, digits 1)",
    )
    crop: bool = Field(True, description="random crop back to the image size after padding")
    flip: bool = Field(True, description="random horizontal flips")
    n_train: int = Field(5000, ge=10, le=MAX_SAMPLES, description="training images (preset; capped by the data)")
    n_test: int = Field(1000, ge=10, le=MAX_SAMPLES, description="test images (preset; capped by the data)")
    depth: int = Field(
        32, ge=8, le=1202, description="ResNet depth 6n+2 (preset: cpu 8, paper 32 = 3 stages of 5 blocks)"
    )
    epochs: int = Field(8, ge=1, le=10**5, description="training epochs (preset; paper 250)")
    batch_size: int = Field(128, ge=1, le=MAX_SAMPLES, description="minibatch size")
    lr: float = Field(0.1, gt=0, allow_inf_nan=False, description="SGD learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False, description="SGD weight decay")
    lr_step: int = Field(6, ge=1, description="epochs between lr x gamma (preset; paper 50)")
    gamma: float = Field(0.1, gt=0, le=1, description="learning-rate factor")
    adversarial: bool = Field(False, description="adversarial training: Gaussian noise + PGD-L2 (official code)")
    noise: float = Field(0.25, ge=0, allow_inf_nan=False, description="adversarial: Gaussian noise sigma")
    pgd_steps: int = Field(4, ge=1, le=1000, description="adversarial: PGD-L2 steps")
    eps: float = Field(1.0, ge=0, allow_inf_nan=False, description="adversarial: L2 radius")
    eps_ramp: int = Field(10, ge=0, description="adversarial: epochs over which eps ramps up")
    log_every: int = Field(1, ge=1, description="epochs between evaluations and checkpoints (preset)")
    vis_channels: int = Field(64, ge=1, le=4096, description="channels of the last convolution to visualize")
    vis_rounds: int = Field(4, ge=1, le=1000, description="visualization rounds (blur between) (preset; paper 10)")
    vis_steps: int = Field(100, ge=1, le=10**5, description="Adam steps a round (preset; paper ~200)")
    vis_lr: float = Field(0.05, gt=0, description="visualization Adam learning rate")
    vis_reg: float = Field(1e-2, ge=0, description="weight of |image - 0.5|")
    cam_images: int = Field(200, ge=1, le=MAX_SAMPLES, description="test images for Grad-CAM (preset)")
    seeds: int = Field(5, ge=1, le=MAX_SEEDS, description="seeds (preset)")

    @model_validator(mode="after")
    def _combination(self) -> BackgroundFeaturesConfig:
        from spuriouslab.data.borders import parse_colour

        parse_colour(self.colour, "colour")
        for c in self.other_colours:
            parse_colour(c, "other_colours")
        if (self.depth - 2) % 6:
            raise ValueError(f"depth: got {self.depth}; a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, ...)")
        if self.data == "folder" and not self.data_root:
            raise ValueError("data_root: data=folder needs data_root=DIR (DIR/train/<class>, DIR/test/<class>)")
        return self
