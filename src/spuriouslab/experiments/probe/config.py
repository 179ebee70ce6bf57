"""Probe config: which model (an import string and an optional checkpoint), which data, which borders."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from spuriouslab.experiments.base import ExperimentConfig
from spuriouslab.experiments.fields import MAX_SAMPLES, DatasetName, FilePath, Listed


class ProbeConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ()

    model: str = Field("", description="import string package.module:factory returning the classifier (nn.Module)")
    checkpoint: FilePath = Field(None, description="state dict (torch.save) loaded into the model")
    layer: str | None = Field(None, description="module name for Grad-CAM (default: the last nn.Conv2d)")
    data: DatasetName = Field("cifar10", description="any image data set of the registry")
    data_root: str | None = Field(None, description="where image data lives")
    rgb: bool = Field(True, description="feed grey images as 3 channels")
    scaling: Literal["unit", "raw", "standard"] = Field("unit", description="pixels as the model expects them")
    n: int = Field(1000, ge=10, le=MAX_SAMPLES, description="test images (and training images for memorization)")
    colour: str = Field("brick", description="the border colour the model may have learned (name or R,G,B)")
    other_colours: Annotated[list[str], Listed] = Field(["green", "blue", "grey"], description="other colours")
    eval_border: int = Field(4, ge=1, le=4096, description="frame width in pixels")
    cam_images: int = Field(200, ge=1, le=MAX_SAMPLES, description="images for Grad-CAM")
    seeds: int = Field(1, ge=1, le=1, description="one measurement (a model is given)")

    @model_validator(mode="after")
    def _combination(self) -> ProbeConfig:
        from spuriouslab.data.borders import parse_colour

        if not self.model:
            raise ValueError("model: give the classifier as an import string, model=package.module:factory")
        parse_colour(self.colour, "colour")
        for c in self.other_colours:
            parse_colour(c, "other_colours")
        return self
