"""Spurious-feature memorization by min-norm / ridge random-features and NTK regression.

Bombari & Mondelli (ICML 2024): train on ``z = [x, y]`` (core x, spurious y, alpha = d_y/d), then query the
model with only a training sample's spurious part ``[x~_i, y_i]`` and check whether it recalls ``g_i``.
Memorization ``Cov(f(z^s), g)`` ~ mean_i F_i S_i g_i (feature alignment x leave-one-out stability), all
read off one factorisation of the Gram matrix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BeforeValidator, Field, field_validator, model_validator
from typing_extensions import Annotated

from spuriouslab import report as R
from spuriouslab.data.synthetic import split_dims, synthetic_memorization
from spuriouslab.experiments.base import ActivationName, Experiment, ExperimentConfig, RunContext, split_list
from spuriouslab.kernels.matrices import KernelSpec, grams
from spuriouslab.kernels.solve import fit_kernel
from spuriouslab.theory.alignment import predict_alignment

DEFAULT_WIDTH = {"rf": 100_000, "ntk": 100}
MODEL_CODE = {"rf": 1, "ntk": 2}

Listed = BeforeValidator(split_list)
Size = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
RidgeValue = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Correlation = Annotated[float, Field(ge=0, lt=1)]


def _width_item(v: Any) -> int | str:
    if isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
        return "inf"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, str):
        try:
            v = int(v)
        except ValueError:
            raise ValueError("expected a positive integer or 'inf'") from None
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v) or v < 1:
        raise ValueError("expected a positive integer or 'inf'")
    return int(v)


class MemorizationConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("n_train", "model", "activation", "alpha", "width", "ridge", "correlation")

    data: Literal["synthetic", "digits", "mnist", "fashion-mnist", "cifar10", "folder"] = Field(
        "synthetic", description="synthetic Gaussian data or an image data set (with a random border)")
    data_root: str | None = Field(None, description="where image data lives (else $SPURIOUSLAB_DATA, cache, Debian)")
    classes: Annotated[list[int], Listed] | None = Field(None, description="image class pair (a -> -1, b -> +1); "
                                                         "unset = 1,7 (MNIST-like) or 3,8 (CIFAR-10)")
    border: int | None = Field(None, ge=1, description="border width; unset = 10 MNIST-like, 8 CIFAR-10, 4 digits")
    border_content: str = Field("uniform", description="uniform (0..255), gaussian, constant:V or constant:R,G,B")
    query: Literal["zero", "swap"] = Field("zero", description="image query: border with core zeroed, or swapped")
    scaling: Literal["raw", "unit", "standard"] = Field("raw", description="pixel scaling (raw = 0..255)")
    d: int = Field(1000, ge=2, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.5, 0.25], description="spurious fraction d_y/d, in (0, 1)")
    n_train: Annotated[list[Size], Listed] = Field([10, 20, 50, 100, 200, 500, 1000], description="training-set sizes N")
    n_test: int = Field(1000, ge=1, description="fresh test samples")
    model: Annotated[list[Literal["rf", "ntk"]], Listed] = Field(["rf", "ntk"], description="rf or ntk")
    activation: Annotated[list[ActivationName], Listed] = Field(["phi2", "phi4"],
                                                                description="registered name or hermite:c0,c1,...")
    width: Annotated[list[int | Literal["inf"]], Listed] | None = Field(
        None, description="features k (int or inf); unset = rf 100000, ntk 100")
    ridge: Annotated[list[RidgeValue], Listed] = Field([0.0], description="ridge lambda >= 0 (0 = min-norm interpolator)")
    correlation: Annotated[list[Correlation], Listed] = Field(
        [0.0], description="c in [0, 1): spurious part y = c P x + sqrt(1-c^2) noise")
    spurious_corr: bool = Field(False, description="also measure C = Cov(f([x~, y]), g) on the test set")
    nested: bool = Field(False, description="share one draw of features and test set across nested N (faster)")
    feature_dtype: Literal["float32", "float64"] = Field("float32", description="dtype of feature chunks")
    seeds: int = Field(3, ge=1, description="number of seeds per grid point")

    @field_validator("width", mode="before")
    @classmethod
    def _widths(cls, v: Any) -> Any:
        if v is None:
            return None
        return [_width_item(x) for x in split_list(v)]

    @model_validator(mode="before")
    @classmethod
    def _image_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("data", "synthetic") != "synthetic":
            values = dict(values)
            for key, val in IMAGE_DEFAULTS.get(values["data"], IMAGE_DEFAULTS["folder"]).items():
                values.setdefault(key, val)
        return values

    @model_validator(mode="after")
    def _combination(self) -> MemorizationConfig:
        if self.data == "synthetic":
            for a in self.alpha:
                split_dims(self.d, a)  # raises ConfigError naming alpha and d
            return self
        from spuriouslab.data.borders import parse_content

        parse_content(self.border_content)
        if self.classes is None or len(self.classes) != 2 or self.classes[0] == self.classes[1]:
            raise ValueError(f"classes: got {self.classes}; kernel memorization needs a pair of distinct classes")
        if self.correlation != [0.0]:
            raise ValueError(f"correlation: got {self.correlation}; correlated spurious parts exist only for "
                             "data=synthetic")
        if self.query == "swap" and min(self.n_train) < 2:
            raise ValueError("n_train: query=swap needs at least 2 training samples")
        return self

    def image_split(self, seed: int, n_max: int):
        from spuriouslab.data.borders import binary_image_split
        from spuriouslab.data.images import load_images

        data = load_images(self.data, self.data_root)
        return binary_image_split(data, tuple(self.classes), seed, n_max, self.n_test, self.border,
                                  self.border_content, self.query, self.scaling)

    def nominal_alpha(self) -> float:
        from spuriouslab.data.borders import nominal_alpha
        from spuriouslab.data.images import load_images

        h, w, _ = load_images(self.data, self.data_root).shape
        return nominal_alpha(h, w, self.border)


IMAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"classes": [1, 7], "border": 4, "n_train": [10, 20, 50, 100, 200], "activation": ["relu"]},
    "mnist": {"classes": [1, 7], "border": 10, "n_train": [100, 200, 500, 1000, 2000, 5000], "activation": ["relu"]},
    "fashion-mnist": {"classes": [1, 7], "border": 10, "n_train": [100, 200, 500, 1000, 2000, 5000],
                      "activation": ["relu"]},
    "cifar10": {"classes": [3, 8], "border": 8, "n_train": [100, 200, 500, 1000], "activation": ["relu"]},
    "folder": {"classes": [0, 1], "border": 4, "n_train": [10, 20, 50, 100], "activation": ["relu"]},
}


def _width_value(w: int | str) -> float | int:
    return math.inf if w == "inf" else int(w)


class Memorization(Experiment):
    name = "memorization"
    summary = "RF / NTK regression: do spurious features alone recall training labels? (Bombari & Mondelli)"
    Config = MemorizationConfig

    def points(self, cfg: MemorizationConfig) -> list[dict[str, Any]]:
        out = []
        alphas = cfg.alpha if cfg.data == "synthetic" else [round(cfg.nominal_alpha(), 6)]
        for model in cfg.model:
            widths = cfg.width if cfg.width is not None else [DEFAULT_WIDTH[model]]
            for act in cfg.activation:
                for alpha in alphas:
                    for w in widths:
                        for c in cfg.correlation:
                            for ridge in cfg.ridge:
                                for n in cfg.n_train:
                                    for s in cfg.seed_values():
                                        out.append({"n_train": n, "model": model, "activation": act, "alpha": alpha,
                                                    "width": _width_value(w), "ridge": ridge, "correlation": c,
                                                    "seed": s})
        return out

    def check(self, cfg: MemorizationConfig) -> None:
        if cfg.data != "synthetic":  # loads (once) and validates classes and sizes against the data
            cfg.image_split(cfg.seed, max(cfg.n_train))
        self.points(cfg)

    def group_key(self, cfg: MemorizationConfig, p: dict[str, Any]) -> Any:
        """Points computed together: every activation and ridge (one draw of V, one pre-activation
        pass) and, with ``nested``, every N (one Gram at the largest N, sliced)."""
        key = (p["seed"], p["model"], p["alpha"], p["width"], p["correlation"])
        return key if cfg.nested else (*key, p["n_train"])

    def run_group(self, cfg: MemorizationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
        t0 = time.perf_counter()
        p0 = points[0]
        n_max = max(p["n_train"] for p in points)
        if cfg.data == "synthetic":
            data = synthetic_memorization(p0["seed"], cfg.d, p0["alpha"], n_max, cfg.n_test, p0["correlation"])
        else:
            data = cfg.image_split(p0["seed"], n_max)
        width = None if math.isinf(p0["width"]) else int(p0["width"])
        acts = list(dict.fromkeys(p["activation"] for p in points))
        specs = [KernelSpec.make(p0["model"], a, width,
                                 key=(p0["seed"], MODEL_CODE[p0["model"]], 0 if cfg.nested else n_max),
                                 device=ctx.device, dtype=cfg.feature_dtype, progress=ctx.progress) for a in acts]
        blocks = [data.Z_test, data.Z_query] + ([data.Z_test_query] if cfg.spurious_corr else [])
        Ks = grams(specs, torch.from_numpy(data.Z), torch.from_numpy(np.vstack(blocks)))
        Ks = {a: K.cpu() for a, K in zip(acts, Ks, strict=True)}
        gram_seconds = time.perf_counter() - t0
        nt = len(data.g_test)
        test_rows = slice(n_max, n_max + nt)
        query_start = n_max + nt
        g_all = torch.from_numpy(data.g)
        g_test = torch.from_numpy(data.g_test)
        for p in sorted(points, key=lambda q: (acts.index(q["activation"]), q["n_train"], q["ridge"])):
            t1 = time.perf_counter()
            K = Ks[p["activation"]]
            n = p["n_train"]
            g = g_all[:n]
            fit = fit_kernel(K[:n, :n], g, p["ridge"])
            f_train = fit.predict(K[:n, :n])
            f_test = fit.predict(K[test_rows, :n])
            K_query = K[query_start: query_start + n, :n]
            f_query = fit.predict(K_query)
            S = fit.stability()
            F = fit.alignment(K_query)
            rec = dict(p)
            rec.update(
                d=data.d_x + data.d_y, d_x=data.d_x, d_y=data.d_y, n_test=nt, nested=cfg.nested, data=cfg.data,
                train_acc=_acc(f_train, g), test_acc=_acc(f_test, g_test), spurious_acc=_acc(f_query, g),
                test_mse=float(((f_test - g_test) ** 2).mean()),
                memorization_cov=_cov(f_query, g),
                alignment_mean=float(F.mean()), stability_mean=float(S.mean()),
                stability_g_mean=float((S * g).mean()),
                alignment_stability_mean=float((F * S * g).mean()),
                residual_max=fit.residual_max, solver=fit.solver, cond=fit.cond, rank=fit.rank,
            )
            if cfg.spurious_corr:
                tq = slice(query_start + n_max, query_start + n_max + nt)
                rec["spurious_corr"] = _cov(fit.predict(K[tq, :n]), g_test)
            if cfg.data == "synthetic":  # the theory is for isotropic Gaussian data
                pred = predict_alignment(p["activation"], p["model"], data.alpha, n, cfg.d)
                rec.update(gamma_pred=pred.gamma_pred, gamma_many=pred.gamma_many, gamma_few=pred.gamma_few)
            else:
                rec.update(gamma_pred=math.nan, gamma_many=math.nan, gamma_few=math.nan)
            rec["seconds"] = gram_seconds / len(points) + time.perf_counter() - t1
            yield rec

    # ------------------------------------------------------------------ report
    def report(self, cfg: MemorizationConfig, df: pd.DataFrame, store) -> str:
        return report_memorization(df, store.figures)


def _acc(f: torch.Tensor, g: torch.Tensor) -> float:
    return float((f * g > 0).double().mean())


def _cov(f: torch.Tensor, g: torch.Tensor) -> float:
    return float((f * g).mean() - f.mean() * g.mean())


METRICS = ["train_acc", "test_acc", "spurious_acc", "memorization_cov", "alignment_mean", "gamma_pred",
           "stability_g_mean", "alignment_stability_mean", "test_mse", "residual_max", "seconds"]


def _line_label(row, varying: list[str]) -> str:
    return ", ".join(f"{c}={row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in varying) or "all"


def report_memorization(df: pd.DataFrame, fig_dir) -> str:
    """Figures (accuracies vs N, alignment vs N with theory, memorization vs bound slope) and summary."""
    df = df.copy()
    metrics = [*METRICS, "gamma_many", "gamma_few"] + (["spurious_corr"] if "spurious_corr" in df else [])
    keys = ["model", "alpha", "activation", "width", "ridge", "correlation", "n_train"]
    agg = R.aggregate(df, keys, metrics)
    panels = agg[["model", "alpha"]].drop_duplicates().sort_values(["model", "alpha"]).to_records(index=False)
    candidates = ["activation", "width", "ridge", "correlation"]
    varying = agg.groupby(["model", "alpha"])[candidates].nunique().max()
    line_keys = [k for k in candidates if varying[k] > 1] or ["activation"]
    n_models = agg["model"].nunique()
    alphas = sorted(agg["alpha"].unique(), reverse=True)
    models = sorted(agg["model"].unique(), key=lambda m: ["rf", "ntk"].index(m))
    import matplotlib.pyplot as plt

    def panel_lines():
        """(axis, model, alpha, line label, line rows) for every line of every (model, alpha) panel."""
        for (model, alpha) in panels:
            ax = axes[models.index(model)][alphas.index(alpha)]
            sub = agg[(agg.model == model) & (agg.alpha == alpha)]
            for _, grp in sub.groupby(line_keys, sort=True):
                yield ax, model, alpha, _line_label(grp.iloc[0], line_keys), grp.sort_values("n_train")

    def style_panels(ylabel: str) -> None:
        for (model, alpha) in panels:
            ax = axes[models.index(model)][alphas.index(alpha)]
            ax.set_xscale("log")
            ax.set_title(f"{model.upper()}, alpha={alpha:g}")
            ax.set_xlabel("N (training samples)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)

    # 1. test (solid) and spurious (dashed) accuracy vs N
    fig, axes = R.panel_grid(n_models, len(alphas))
    for ax, _, _, label, grp in panel_lines():
        line = R.band(ax, grp.n_train, grp.test_acc, grp.test_acc_ci, label=f"{label} test", marker="o", ms=3)
        R.band(ax, grp.n_train, grp.spurious_acc, grp.spurious_acc_ci, label=f"{label} spurious",
               color=line.get_color(), linestyle="--", marker="s", ms=3)
        ax.set_ylim(0.4, 1.02)
    style_panels("accuracy")
    fig.suptitle("Test (solid) and spurious (dashed) accuracy; mean and 95% interval over seeds", fontsize=10)
    R.save_figure(fig, fig_dir, "accuracy_vs_n")

    # 2. mean feature alignment vs N with the theory
    fig, axes = R.panel_grid(n_models, len(alphas))
    for ax, model, alpha, label, grp in panel_lines():
        line = R.band(ax, grp.n_train, grp.alignment_mean, grp.alignment_mean_ci, label=f"{label} measured",
                      marker="o", ms=3)
        if grp.gamma_pred.notna().any():
            ax.plot(grp.n_train, grp.gamma_pred, color=line.get_color(), linestyle=":", label=f"{label} theory")
            first = grp.iloc[0]
            ax.axhline(first.gamma_many, color=line.get_color(), linewidth=0.7, alpha=0.6)
            ax.axhline(first.gamma_few, color=line.get_color(), linewidth=0.7, alpha=0.6, linestyle="-.")
    style_panels("mean feature alignment F")
    fig.suptitle("Feature alignment: measured (band), finite-N theory (dotted), N<<d (dash-dot) and N>>d (thin) limits",
                 fontsize=9)
    R.save_figure(fig, fig_dir, "alignment_vs_n")

    # 3. memorization covariance against the bound: gamma * E[g S] and mean F S g
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    for (model, act), grp in agg.groupby(["model", "activation"], sort=True):
        slope = grp.gamma_pred * grp.stability_g_mean
        ax.scatter(slope, grp.memorization_cov, s=14, label=f"{model} {act}: gamma E[gS]")
        ax.scatter(grp.alignment_stability_mean, grp.memorization_cov, s=14, marker="x",
                   label=f"{model} {act}: mean F S g")
    lim = [0, max(0.05, float(np.nanmax(agg.memorization_cov.to_numpy())) * 1.05)]
    ax.plot(lim, lim, color="k", linewidth=0.7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("memorization Cov(f(z^s), g)")
    ax.set_title("Memorization vs its bound (one point per N)", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    R.save_figure(fig, fig_dir, "memorization_vs_bound")

    cols = ["model", "alpha", "activation", "width", "ridge", "correlation", "n_train", "n", "train_acc", "test_acc",
            "spurious_acc", "memorization_cov", "alignment_stability_mean", "alignment_mean", "gamma_pred",
            "residual_max", "seconds"]
    if "spurious_corr" in agg:
        cols.insert(-2, "spurious_corr")
    lines = ["# Spurious-feature memorization", "",
             f"{len(df)} records; means over seeds (n = seeds).  Figures: figures/accuracy_vs_n, "
             "figures/alignment_vs_n, figures/memorization_vs_bound (PNG and PDF).", "",
             R.markdown_table(agg, cols)]
    if "solver" in df and (df.solver != "cholesky").any():
        lines += ["", f"{int((df.solver != 'cholesky').sum())} points were solved by the eigen pseudo-inverse "
                      "(Gram matrix singular or ill-conditioned); see the `solver` and `cond` columns."]
    return "\n".join(lines) + "\n"


EXPERIMENT = Memorization()
