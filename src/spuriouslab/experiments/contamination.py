"""Feature contamination: two-layer networks grow weight along label-independent background features.

Zhang et al. (ICML 2024).  Trains stacked-over-seeds MLPs on :mod:`spuriouslab.data.contamination` tasks and
logs, at every logging step: train / ID / OOD loss and accuracy; per-neuron norms of the first-layer
weights projected on the core and background subspaces (the paper's metric, ~sqrt(d_sub/(3d)) at init);
the signed projection on the background-mean direction, split by the sign of the neuron's output weight;
and the activation asymmetry P(active | y=+1) - P(active | y=-1) of each neuron, with its correlation with
the sign of the output weight (the theory's mechanism).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from spuriouslab import report as R
from spuriouslab.data.contamination import (ContaminationTask, LatentSet, make_task, minibatch, online_batch,
                                            seed_generator)
from spuriouslab.experiments.base import ActivationName, Experiment, ExperimentConfig, RunContext
from spuriouslab.experiments.memorization import Listed
from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.train import LOSSES, make_optimizer, train_loop

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
}


class ContaminationConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("activation", "loss", "optimizer")

    preset: Literal["theory", "toy"] = Field("theory", description="theory (hinge/SGD/linear/frozen) or toy (script)")
    sweep: Literal["none", "activations", "losses"] = Field("none", description="shortcut grids over activations "
                                                            "or losses x optimizers")
    d: int = Field(256, ge=2, description="ambient input dimension")
    d_core: int = Field(32, ge=1, description="core latent dimension")
    d_bg: int = Field(32, ge=1, description="background latent dimension")
    n: int = Field(1000, ge=2, description="training samples (balanced)")
    n_test: int = Field(1000, ge=2, description="ID and OOD test samples")
    core: Literal["linear", "norm"] = Field("linear", description="core-label relation (preset)")
    ood: Literal["flip", "shift", "scale"] = Field("flip", description="OOD background: -U, U+shift, scale*U")
    ood_shift: float = Field(-1.0, description="delta for ood=shift")
    ood_scale: float = Field(-1.0, description="factor for ood=scale")
    sampling: Literal["full", "minibatch", "online"] = Field("full", description="full batch, minibatches of the "
                                                             "fixed set, or fresh samples every step")
    batch_size: int = Field(100, ge=1, description="minibatch size (sampling=minibatch)")
    depth: int = Field(2, ge=2, description="number of linear layers")
    width: int = Field(256, ge=2, description="hidden width m")
    activation: Annotated[list[ActivationName], Listed] = Field(["relu"],
                                                                description=", ".join(NET_ACTIVATIONS) + ", ...")
    bias: bool = Field(True, description="biases in every layer")
    freeze_output: bool = Field(True, description="output fixed at +1/m (first half), -1/m (second half) (preset)")
    loss: Annotated[list[Literal["hinge", "logistic", "mse"]], Listed] = Field(["hinge"], description="(preset)")
    optimizer: Annotated[list[Literal["sgd", "adam", "adamw"]], Listed] = Field(["sgd"], description="(preset)")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    iterations: int = Field(20000, ge=1, description="training steps")
    log_every: int = Field(500, ge=1, description="logging (evaluation) interval")
    subspace: bool = Field(True, description="compute the first layer in the 64-dim latent basis (exact)")
    batch_seeds: bool = Field(True, description="train all seeds as one stacked computation")
    dtype: Literal["float32", "float64"] = Field("float32", description="training precision")
    seeds: int = Field(5, ge=1, description="number of seeds")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset_and_sweep(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)  # explicit values win over the sweep shortcut, which wins over the preset
        for key, val in SWEEPS.get(values.get("sweep", "none"), {}).items():
            values.setdefault(key, val)
        for key, val in PRESETS.get(values.get("preset", "theory"), {}).items():
            values.setdefault(key, val)
        return values

    @model_validator(mode="after")
    def _combination(self) -> ContaminationConfig:
        if self.d_core + self.d_bg > self.d:
            raise ValueError(f"d_core + d_bg: got {self.d_core} + {self.d_bg} > d={self.d}; the latent subspaces "
                             "must fit in the input space")
        if self.freeze_output and self.width % 2:
            raise ValueError(f"width: got {self.width} with freeze_output=true; the +-1/m output needs an even width")
        return self


class Contamination(Experiment):
    name = "contamination"
    summary = "Feature contamination: MLPs learn label-independent background features (Zhang et al.)"
    Config = ContaminationConfig

    def group_key(self, cfg: ContaminationConfig, p: dict[str, Any]) -> Any:
        key = (p["activation"], p["loss"], p["optimizer"])
        return key if cfg.batch_seeds else (*key, p["seed"])

    def run_group(self, cfg: ContaminationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
        t0 = time.perf_counter()
        seeds = [p["seed"] for p in points]
        p0 = points[0]
        records = train_contamination(cfg, seeds, p0["activation"], p0["loss"], p0["optimizer"], ctx)
        seconds = (time.perf_counter() - t0) / len(points)
        for p, rec in zip(points, records, strict=True):
            yield {**p, **rec, "seconds": seconds}

    def report(self, cfg: ContaminationConfig, df: pd.DataFrame, store) -> str:
        return report_contamination(cfg, df, store.figures)


def _device_task(task: ContaminationTask, device: str, dtype: torch.dtype) -> ContaminationTask:
    move = lambda s: LatentSet(s.z.to(device, dtype), s.y.to(device, dtype))  # noqa: E731
    return ContaminationTask(task.T.to(device, dtype), task.d_core, task.d_bg, move(task.train),
                             move(task.id_test), move(task.ood_test), task.generators)


@torch.no_grad()
def measure(model: StackedMLP, task: ContaminationTask, loss_fn, subspace: bool) -> dict[str, torch.Tensor]:
    """Every logged metric, per seed (tensors of shape (S,) unless noted)."""
    out: dict[str, torch.Tensor] = {}
    for name, s in [("train", task.train), ("id", task.id_test), ("ood", task.ood_test)]:
        f = model(s.z, task.T) if subspace else model(task.inputs(s))
        out[f"{name}_loss"] = loss_fn(f, s.y)
        out[f"{name}_acc"] = (f * s.y > 0).float().mean(dim=1)
    C = torch.bmm(model.weights[0], task.T.transpose(1, 2))  # (S, m, k): first-layer weights in latent coords
    dc = task.d_core
    out["core_norm"] = C[..., :dc].norm(dim=2).mean(dim=1)
    out["bg_norm"] = C[..., dc:].norm(dim=2).mean(dim=1)
    signed = C[..., dc:].sum(dim=2) / task.d_bg**0.5  # projection on the unit background-mean direction
    out["bg_signed"] = signed.mean(dim=1)
    a = model.output_weights()
    if len(model.weights) == 2:
        pos, neg = (a > 0).float(), (a < 0).float()
        out["bg_signed_pos"] = (signed * pos).sum(1) / pos.sum(1).clamp(min=1)
        out["bg_signed_neg"] = (signed * neg).sum(1) / neg.sum(1).clamp(min=1)
    pre = model.first_preactivation(task.train.z, task.T) if subspace else model.first_preactivation(
        task.inputs(task.train))
    active = (pre > 0).float()
    ypos = (task.train.y > 0).float()[..., None]
    asym = (active * ypos).sum(1) / ypos.sum(1) - (active * (1 - ypos)).sum(1) / (1 - ypos).sum(1)  # (S, m)
    out["asymmetry"] = asym
    if len(model.weights) == 2:
        sa = torch.sign(a)
        ac, sc = asym - asym.mean(1, keepdim=True), sa - sa.mean(1, keepdim=True)
        out["asym_corr"] = (ac * sc).sum(1) / (ac.norm(dim=1) * sc.norm(dim=1)).clamp(min=1e-12)
        out["out_sign"] = sa
    return out


CURVES = ["train_loss", "train_acc", "id_loss", "id_acc", "ood_loss", "ood_acc", "core_norm", "bg_norm",
          "bg_signed", "bg_signed_pos", "bg_signed_neg", "asym_corr"]


def train_contamination(cfg: ContaminationConfig, seeds: list[int], activation: str, loss: str, optimizer: str,
                        ctx: RunContext) -> list[dict]:
    """Train one model per seed (stacked) and return one record per seed."""
    dtype = getattr(torch, cfg.dtype)
    task = _device_task(make_task(seeds, cfg.d, cfg.d_core, cfg.d_bg, cfg.n, cfg.n_test, cfg.core, cfg.ood,
                                  cfg.ood_shift, cfg.ood_scale), ctx.device, dtype)
    model = StackedMLP([seed_generator(s, 3) for s in seeds], cfg.d, cfg.width, cfg.depth, activation, cfg.bias,
                       cfg.freeze_output).to(ctx.device, dtype)
    opt = make_optimizer(optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    loss_fn = LOSSES[loss]
    T = task.T if cfg.subspace else None

    def batch(t: int) -> LatentSet:
        if cfg.sampling == "full":
            return task.train
        if cfg.sampling == "minibatch":
            return minibatch(task, cfg.batch_size)
        return _device_set(online_batch(task, cfg.n, cfg.core), ctx.device, dtype)

    x_train = None if cfg.subspace else task.inputs(task.train)

    def step_loss(t: int) -> torch.Tensor:
        b = batch(t)
        if cfg.subspace:
            f = model(b.z, T)
        else:
            f = model(x_train if cfg.sampling == "full" else task.inputs(b))
        return loss_fn(f, b.y).sum()

    history: dict[str, list] = {"step": []}
    last: dict[str, torch.Tensor] = {}  # metrics at the latest logged step
    last_init: dict[str, torch.Tensor] = {}  # metrics at step 0

    def on_log(t: int) -> dict:
        m = measure(model, task, loss_fn, cfg.subspace)
        history["step"].append(t)
        for key in CURVES:
            if key in m:
                history.setdefault(key, []).append(m[key].cpu())
        last.clear()
        last.update(m)
        if t == 0:
            last_init.update({k: v.clone() for k, v in m.items()})
        return {"loss": m["train_loss"]}

    train_loop(step_loss, opt, cfg.iterations, cfg.log_every, on_log,
               desc=f"{activation}/{loss}/{optimizer} x{len(seeds)}", progress=ctx.progress)
    records = []
    for i in range(len(seeds)):
        rec: dict[str, Any] = {}
        for key in CURVES:
            if key in history:
                rec[key] = float(history[key][-1][i])
                rec[f"curve_{key}"] = [float(v[i]) for v in history[key]]
        rec["curve_step"] = list(history["step"])
        rec["ood_id_gap"] = rec["ood_loss"] - rec["id_loss"]
        rec["bg_norm_init"] = float(last_init["bg_norm"][i])
        rec["core_norm_init"] = float(last_init["core_norm"][i])
        rec["bg_norm_growth"] = rec["bg_norm"] / rec["bg_norm_init"]
        rec["bg_signed_change"] = rec["bg_signed"] - float(last_init["bg_signed"][i])
        rec["asymmetry"] = [float(v) for v in last["asymmetry"][i].cpu()]
        if "out_sign" in last:
            rec["out_sign"] = [float(v) for v in last["out_sign"][i].cpu()]
        records.append(rec)
    return records


def _device_set(s: LatentSet, device: str, dtype: torch.dtype) -> LatentSet:
    return LatentSet(s.z.to(device, dtype), s.y.to(device, dtype))


# --------------------------------------------------------------------------------------------- report
def _label(row, keys) -> str:
    return "/".join(str(row[k]) for k in keys) or "model"


def _curve_stats(sub: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logged steps, and the mean and 95% interval over seeds of curve ``key``."""
    vals = np.stack([np.asarray(v, dtype=float) for v in sub[f"curve_{key}"]])
    return (np.asarray(sub.iloc[0]["curve_step"]), *R.mean_ci(vals))


def _style_iteration_axes(axes) -> None:
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)


def report_contamination(cfg: ContaminationConfig, df: pd.DataFrame, fig_dir) -> str:
    import matplotlib.pyplot as plt

    combo = ["activation", "loss", "optimizer"]
    keys = [k for k in combo if df[k].nunique() > 1]
    groups = list(df.groupby(combo, sort=False))
    colors = plt.cm.tab10(np.arange(len(groups)) % 10)

    # 1. losses and accuracies, ID (solid) vs OOD (dashed)
    fig, axes = R.panel_grid(1, 2, size=(5.0, 3.6))
    for (key, sub), color in zip(groups, colors, strict=True):
        lab = _label(dict(zip(combo, key, strict=True)), keys)
        for j, metric in enumerate(["loss", "acc"]):
            for split, style in [("id", "-"), ("ood", "--")]:
                steps, mean, ci = _curve_stats(sub, f"{split}_{metric}")
                R.band(axes[0][j], steps, mean, ci, label=f"{lab} {split.upper()}".strip(), color=color,
                       linestyle=style)
    axes[0][0].set_ylabel("loss")
    axes[0][1].set_ylabel("accuracy")
    _style_iteration_axes(axes[0])
    fig.suptitle("ID (solid) vs OOD (dashed): mean and 95% band over seeds", fontsize=9)
    R.save_figure(fig, fig_dir, "losses")

    # 2. projections: core vs background norm; signed background projection by output-weight sign
    fig, axes = R.panel_grid(1, 2, size=(5.0, 3.6))
    for (key, sub), color in zip(groups, colors, strict=True):
        lab = _label(dict(zip(combo, key, strict=True)), keys)
        for metric, style in [("core_norm", "-"), ("bg_norm", "--")]:
            steps, mean, ci = _curve_stats(sub, metric)
            R.band(axes[0][0], steps, mean, ci, label=f"{lab} {metric.split('_')[0]}".strip(), color=color,
                   linestyle=style)
        if "curve_bg_signed_pos" in sub and sub["curve_bg_signed_pos"].notna().all():
            for metric, style, name in [("bg_signed_pos", "-", "a>0"), ("bg_signed_neg", "--", "a<0")]:
                steps, mean, ci = _curve_stats(sub, metric)
                R.band(axes[0][1], steps, mean, ci, label=f"{lab} {name}".strip(), color=color, linestyle=style)
        else:
            steps, mean, ci = _curve_stats(sub, "bg_signed")
            R.band(axes[0][1], steps, mean, ci, label=lab, color=color)
    axes[0][0].set_ylabel("mean per-neuron projection norm")
    axes[0][0].set_title("core (solid) vs background (dashed)", fontsize=9)
    axes[0][1].set_ylabel("signed projection on background mean")
    axes[0][1].set_title("split by sign of output weight a", fontsize=9)
    _style_iteration_axes(axes[0])
    R.save_figure(fig, fig_dir, "projections")

    # 3. activation asymmetry at the end of training, split by sign of the output weight
    n = len(groups)
    cols = min(n, 3)
    fig, axes = R.panel_grid((n + cols - 1) // cols, cols, size=(3.6, 2.8))
    for i, (key, sub) in enumerate(groups):
        ax = axes[i // cols][i % cols]
        asym = np.concatenate([np.asarray(v) for v in sub.asymmetry])
        if "out_sign" in sub and sub.out_sign.notna().all():
            sign = np.concatenate([np.asarray(v) for v in sub.out_sign])
            bins = np.linspace(-1, 1, 41)
            ax.hist(asym[sign > 0], bins=bins, alpha=0.6, label="a > 0")
            ax.hist(asym[sign < 0], bins=bins, alpha=0.6, label="a < 0")
            ax.legend(fontsize=6)
            corr = sub.asym_corr.mean()
            ax.set_title(f"{_label(dict(zip(combo, key, strict=True)), combo)}  corr={corr:.2f}", fontsize=8)
        else:
            ax.hist(asym, bins=40)
            ax.set_title(_label(dict(zip(combo, key, strict=True)), combo), fontsize=8)
        ax.set_xlabel("P(active|y=+1) - P(active|y=-1)")
    for j in range(n, axes.size):
        axes[j // cols][j % cols].axis("off")
    R.save_figure(fig, fig_dir, "asymmetry")

    # 4. background projection per combination (the activation / loss comparison)
    if len(groups) > 1:
        fig, axes = R.panel_grid(1, 2, size=(5.0, 3.6))
        for (key, sub), color in zip(groups, colors, strict=True):
            lab = _label(dict(zip(combo, key, strict=True)), keys)
            for j, metric in enumerate(["bg_norm", "bg_signed"]):
                steps, mean, ci = _curve_stats(sub, metric)
                R.band(axes[0][j], steps, mean, ci, label=lab, color=color)
        axes[0][0].set_ylabel("background projection norm")
        axes[0][1].set_ylabel("signed background-mean projection")
        _style_iteration_axes(axes[0])
        R.save_figure(fig, fig_dir, "background_by_" + ("_".join(keys) or "model"))

    metrics = ["id_loss", "ood_loss", "ood_id_gap", "id_acc", "ood_acc", "core_norm", "bg_norm_init", "bg_norm",
               "bg_norm_growth", "bg_signed_change", "asym_corr", "seconds"]
    agg = R.aggregate(df, combo, metrics)
    cols_ = [*combo, "n", *[m for m in metrics if m in agg]]
    return "\n".join([
        "# Feature contamination", "",
        f"preset={cfg.preset}, core={cfg.core}, ood={cfg.ood}, sampling={cfg.sampling}, depth={cfg.depth}, "
        f"width={cfg.width}, lr={cfg.lr:g}, wd={cfg.weight_decay:g}, iterations={cfg.iterations}.  End of training, "
        "means over seeds (n).  bg_norm_growth = final / initial background projection norm; bg_signed_change = "
        "change of the signed background-mean projection; ood_id_gap = OOD loss - ID loss.", "",
        R.markdown_table(agg, cols_), "",
        "Figures: figures/losses, figures/projections, figures/asymmetry"
        + (", figures/background_by_" + ("_".join(keys) or "model") if len(groups) > 1 else "") + " (PNG, PDF).",
    ]) + "\n"


EXPERIMENT = Contamination()
