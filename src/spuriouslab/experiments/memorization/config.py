"""Memorization config: values only (the data set's defaults are a layer of ``DEFAULTS``; nothing is read)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from spuriouslab.data.datasets import DATASETS
from spuriouslab.data.memorization import SplitSpec
from spuriouslab.data.synthetic import split_dims
from spuriouslab.experiments.base import ExperimentConfig, FromRegistry
from spuriouslab.experiments.fields import (
    MAX_BORDER,
    MAX_DIM,
    MAX_SAMPLES,
    MAX_SEEDS,
    ActivationName,
    Colours,
    Correlation,
    DataSource,
    Fraction,
    KernelModel,
    Listed,
    Rho,
    RidgeValue,
    Scaling,
    Size,
    Width,
    check_coloured,
    refuse_unused,
    split_list,
)

# Defaults by data set, from the data-set registry (images: ReLU, which is scale-free on raw pixels, and the papers'
# class pairs, N grids and border widths)
DATA_DEFAULTS = FromRegistry(
    DATASETS,
    lambda spec: {
        "classes": list(spec.classes),
        "n_train": list(spec.n_train),
        "activation": ["relu"],
        "border": spec.border,
    },
)


# Presets: the papers' figure (memorization), the alignment theory check, the follow-up's ridge grid
PRESETS: dict[str, dict[str, Any]] = {
    "memorization": {},
    "alignment": {
        "d": 500,
        "alpha": [0.1, 0.25, 0.5, 0.75, 0.9],
        "n_train": [10, 25, 50, 100, 250, 500, 1000, 2000],
        "n_test": 200,
        "activation": ["phi2", "phi4", "relu", "tanh"],
        "width": ["inf"],
        "nested": True,
        "seeds": 2,
    },
    "ridge": {
        "d": 500,
        "alpha": [0.5],
        "n_train": [500],
        "activation": ["relu"],
        "width": ["inf"],
        "ridge": [0.0, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0],
        "correlation": [0.0, 0.3, 0.6, 0.9],
        "spurious_corr": True,
    },
}


class MemorizationConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("n_train", "model", "activation", "alpha", "width", "ridge", "correlation")
    LATER: ClassVar[tuple[str, ...]] = ("spurious_spectrum",)
    # the data set's defaults win over the preset's, which win over the fields' own
    DEFAULTS: ClassVar = (("data", DATA_DEFAULTS), ("preset", PRESETS))

    preset: Literal["memorization", "alignment", "ridge"] = Field(
        "memorization",
        description="memorization (the papers' figure), alignment (theory check) or ridge (lambda x correlation grid)",
    )
    data: DataSource = Field(
        "synthetic", description="synthetic Gaussian data or an image data set (with a random border)"
    )
    data_root: str | None = Field(None, description="where image data lives (else $SPURIOUSLAB_DATA, cache, Debian)")
    classes: Annotated[list[int], Listed] | None = Field(
        None, description="image class pair (a -> -1, b -> +1); unset = 1,7 (MNIST-like) or 3,8 (CIFAR-10)"
    )
    border: int | None = Field(
        None,
        ge=1,
        le=MAX_BORDER,
        description="border width; unset = the data set's (10 MNIST-like, 8 CIFAR-10, 4 digits)",
    )
    border_content: str = Field(
        "uniform",
        description="uniform (0..255), gaussian, constant:V, constant:R,G,B, or "
        "coloured (red / green agreeing with the label with probability rho)",
    )
    rho: Rho = 0.5
    colours: Colours = ["red", "green"]
    query: Literal["zero", "swap"] = Field("zero", description="image query: border with core zeroed, or swapped")
    scaling: Scaling = Field("raw", description="pixel scaling (raw = 0..255)")
    d: int = Field(1000, ge=2, le=MAX_DIM, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.5, 0.25], description="spurious fraction d_y/d, in (0, 1)")
    n_train: Annotated[list[Size], Listed] = Field(
        [10, 20, 50, 100, 200, 500, 1000], description="training-set sizes N"
    )
    n_test: int = Field(1000, ge=1, le=MAX_SAMPLES, description="fresh test samples")
    model: Annotated[list[KernelModel], Listed] = Field(
        ["rf", "ntk"], description="rf, ntk, or linear (ridge on the raw z; alone, activation identity)"
    )
    activation: Annotated[list[ActivationName], Listed] = Field(
        ["phi2", "phi4"], description="registered name or hermite:c0,c1,..."
    )
    width: Annotated[list[Width], Listed] | None = Field(
        None, description="features k (int or inf); unset = rf 100000, ntk 100"
    )
    ridge: Annotated[list[RidgeValue], Listed] = Field(
        [0.0], description="ridge lambda >= 0 (0 = min-norm interpolator)"
    )
    correlation: Annotated[list[Correlation], Listed] = Field(
        [0.0], description="c in [0, 1): spurious part y = c P x + sqrt(1-c^2) noise"
    )
    spurious_spectrum: float = Field(
        0.0,
        ge=0,
        le=10,
        description="synthetic: power-law exponent of y's covariance given x (0 isotropic; larger: simpler)",
    )
    spurious_corr: bool = Field(False, description="also measure C = Cov(f([x~, y]), g) on the test set")
    nested: bool = Field(False, description="share one draw of features and test set across nested N (faster)")
    feature_dtype: Literal["float32", "float64"] = Field("float32", description="dtype of feature chunks")
    seeds: int = Field(3, ge=1, le=MAX_SEEDS, description="number of seeds per grid point")

    @field_validator("width", mode="before")
    @classmethod
    def _widths(cls, v: Any) -> Any:
        return None if v is None else split_list(v)

    @model_validator(mode="before")
    @classmethod
    def _linear(cls, values: Any) -> Any:
        """``model=linear`` has no activation: its one placeholder value is ``identity`` unless given."""
        if isinstance(values, dict) and split_list(values.get("model", [])) == ["linear"]:
            values = {**values}
            values.setdefault("activation", ["identity"])
        return values

    @model_validator(mode="after")
    def _combination(self) -> MemorizationConfig:
        if "linear" in self.model and (len(self.model) > 1 or len(self.activation) > 1):
            raise ValueError(
                f"model: got {self.model} with activation {self.activation}; model=linear runs alone, with one "
                "activation value (it has none of its own: ridge on the raw z)"
            )
        if self.data == "synthetic":
            for a in self.alpha:
                split_dims(self.d, a)  # raises ConfigError naming alpha and d
            refuse_unused(
                self,
                ["classes", "border", "border_content", "rho", "colours", "query"],
                "it sets the image task's pair of classes or border; data=synthetic has neither",
            )
            return self
        refuse_unused(self, ["spurious_spectrum"], "it shapes the synthetic spurious part (data=synthetic)")
        check_coloured(self)
        if self.classes is None or len(self.classes) != 2 or self.classes[0] == self.classes[1]:
            raise ValueError(f"classes: got {self.classes}; kernel memorization needs a pair of distinct classes")
        if self.correlation != [0.0]:
            raise ValueError(
                f"correlation: got {self.correlation}; correlated spurious parts exist only for data=synthetic"
            )
        if self.query == "swap" and min(self.n_train) < 2:
            raise ValueError("n_train: query=swap needs at least 2 training samples")
        return self

    def split_spec(self, alpha: float = 0.5, correlation: float = 0.0) -> SplitSpec:
        """The data of one grid point (synthetic: its alpha and correlation), as values."""
        return SplitSpec(
            source=self.data,
            n_test=self.n_test,
            d=self.d,
            alpha=alpha,
            correlation=correlation,
            spectrum=self.spurious_spectrum,
            data_root=self.data_root,
            classes=None if self.classes is None else tuple(self.classes),
            border=self.border,
            border_content=self.border_content,
            rho=self.rho,
            colours=tuple(self.colours),
            query=self.query,
            scaling=self.scaling,
            streams="images.kernels",
        )
