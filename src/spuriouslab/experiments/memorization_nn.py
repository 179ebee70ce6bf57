"""Spurious-feature memorization by trained networks (Bombari & Mondelli, ICML 2024, Section 5).

Images with a random border (all classes, cross-entropy; spurious accuracy = argmax of the query - the training
image's border with its core zeroed - equals the training label) or synthetic ``z = [x, y]`` data (one output,
MSE, sign accuracy).  Models FC / small CNN / CIFAR ResNet-18; the paper's recipe by default (Adam lr 1e-3,
batch 1024, StepLR every 100 epochs x 0.8).  Seeds of one (model, N) train as one stacked computation
(:class:`~spuriouslab.nets.models.SeedEnsemble`; ResNet one seed at a time), with train / test / spurious accuracy
logged every ``log_every`` epochs and a checkpoint there, so a killed run resumes mid-training.  A seed whose
loss becomes NaN stops with a recorded error (status ``diverged``) and the others go on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from spuriouslab import report as R
from spuriouslab.data.contamination import seed_generator
from spuriouslab.experiments.base import Experiment, ExperimentConfig, RunContext
from spuriouslab.experiments.memorization import IMAGE_DEFAULTS, Listed, Size
from spuriouslab.nets.models import SeedEnsemble, build_model
from spuriouslab.nets.train import DivergenceError, make_optimizer, train_loop

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 1000, "step_size": 100, "log_every": 50},
    # CPU-friendly: the FC and CNN curves on digits / Fashion-MNIST in minutes
    "quick": {"epochs": 150, "step_size": 50, "log_every": 15, "n_train": [100, 300, 1000], "seeds": 2,
              "n_test": 2000},
}


class MemorizationNNConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("n_train", "model")

    preset: Literal["paper", "quick"] = Field("paper", description="paper recipe, or quick (CPU minutes)")
    data: Literal["synthetic", "digits", "mnist", "fashion-mnist", "cifar10", "folder"] = Field(
        "digits", description="image data (all classes) or synthetic z=[x,y]")
    data_root: str | None = Field(None, description="where image data lives")
    border: int | None = Field(None, ge=1, description="border width; unset = data set default")
    border_content: str = Field("uniform", description="uniform, gaussian, constant:V or constant:R,G,B")
    scaling: Literal["raw", "unit", "standard"] = Field("unit", description="pixel scaling")
    d: int = Field(1000, ge=2, description="synthetic: input dimension")
    alpha: float = Field(0.5, gt=0, lt=1, description="synthetic: spurious fraction")
    model: Annotated[list[Literal["fc", "cnn", "resnet18"]], Listed] = Field(["fc", "cnn"], description="networks")
    n_train: Annotated[list[Size], Listed] = Field([100, 500, 1000], description="training-set sizes N")
    n_test: int = Field(10000, ge=1, description="test samples (capped at what the data has)")
    epochs: int = Field(1000, ge=1, description="training epochs (preset)")
    batch_size: int = Field(1024, ge=1, description="minibatch size")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay (paper's ResNet: 5e-4)")
    step_size: int = Field(100, ge=1, description="StepLR period in epochs (preset)")
    gamma: float = Field(0.8, gt=0, le=1, description="StepLR factor")
    log_every: int = Field(50, ge=1, description="epochs between evaluations and checkpoints (preset)")
    seeds: int = Field(3, ge=1, description="number of seeds")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = dict(values)
            for key, val in PRESETS.get(values.get("preset", "paper"), {}).items():
                values.setdefault(key, val)
        return values

    @model_validator(mode="after")
    def _check(self) -> MemorizationNNConfig:
        if self.data == "synthetic" and any(m != "fc" for m in self.model):
            raise ValueError(f"model: got {self.model}; synthetic data takes the fc model only")
        if self.data != "synthetic" and self.border is None:
            self.border = IMAGE_DEFAULTS[self.data]["border"]
        return self


class NNData:
    """Tensors for one seed: train, test and query inputs (N, C, H, W) or (N, d), and targets."""

    def __init__(self, cfg: MemorizationNNConfig, seed: int, n: int):
        if cfg.data == "synthetic":
            from spuriouslab.data.synthetic import synthetic_memorization

            s = synthetic_memorization(seed, cfg.d, cfg.alpha, n, cfg.n_test)
            f = lambda a: torch.from_numpy(a).float()  # noqa: E731
            self.x, self.xt, self.xq = f(s.Z), f(s.Z_test), f(s.Z_query)
            self.y, self.yt = f(s.g), f(s.g_test)
            self.shape, self.n_out, self.classes = (1, 1, cfg.d), 1, 0
            return
        from spuriouslab.data.borders import add_border, scale_pixels, spurious_queries
        from spuriouslab.data.images import load_images

        data = load_images(cfg.data, cfg.data_root)
        if n > len(data.x_train):
            from spuriouslab.errors import ConfigError

            raise ConfigError(f"n_train: got {n}; {data.name} has {len(data.x_train)} training images")
        tr = np.random.default_rng([seed, 200]).permutation(len(data.x_train))[:n]
        te = np.random.default_rng([seed, 201]).permutation(len(data.x_test))[: min(cfg.n_test, len(data.x_test))]
        h, w, c = data.shape
        b = cfg.border
        x = add_border(data.x_train[tr], b, cfg.border_content, np.random.default_rng([seed, 202]))
        xt = add_border(data.x_test[te], b, cfg.border_content, np.random.default_rng([seed, 203]))
        xq = spurious_queries(x, h, w, b, "zero")

        def t(a):
            return torch.from_numpy(scale_pixels(a, cfg.scaling, x)).float().permute(0, 3, 1, 2).contiguous()

        self.x, self.xt, self.xq = t(x), t(xt), t(xq)
        self.y = torch.from_numpy(data.y_train[tr].copy())
        self.yt = torch.from_numpy(data.y_test[te].copy())
        self.shape, self.n_out, self.classes = (c, h + 2 * b, w + 2 * b), len(data.classes), len(data.classes)


def _loss(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-seed loss (S,) of outputs (S, B, C) against targets (S, B)."""
    if classes:
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(y.shape).mean(dim=1)
    return ((out[..., 0] - y) ** 2).mean(dim=1)


def _correct(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    if classes:
        return (out.argmax(-1) == y).float()
    return (out[..., 0] * y > 0).float()


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class MemorizationNN(Experiment):
    name = "memorization-nn"
    summary = "Trained FC / CNN / ResNet-18: spurious-feature memorization on images with a random border"
    Config = MemorizationNNConfig

    def check(self, cfg: MemorizationNNConfig) -> None:
        NNData(cfg, cfg.seed, max(cfg.n_train))  # data present, sizes possible
        self.points(cfg)

    def group_key(self, cfg: MemorizationNNConfig, p: dict[str, Any]) -> Any:
        key = (p["model"], p["n_train"])
        return (*key, p["seed"]) if p["model"] == "resnet18" else key  # BatchNorm: one seed at a time

    def run_group(self, cfg: MemorizationNNConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
        t0 = time.perf_counter()
        seeds = [p["seed"] for p in points]
        model_name, n = points[0]["model"], points[0]["n_train"]
        dev = ctx.device
        datas = [NNData(cfg, s, n) for s in seeds]
        stack = lambda attr: torch.stack([getattr(d, attr) for d in datas]).to(dev)  # noqa: E731
        x, y, xt, yt, xq = (stack(a) for a in ("x", "y", "xt", "yt", "xq"))
        classes, shape, n_out = datas[0].classes, datas[0].shape, datas[0].n_out

        def make(seed: int) -> torch.nn.Module:
            torch.manual_seed(int(seed_generator(seed, 300).initial_seed() % (2**63)))
            return build_model(model_name, shape, n_out)

        net = SeedEnsemble(make, seeds).to(dev)
        opt = make_optimizer("adam", net.parameters(), cfg.lr, cfg.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        gens = [seed_generator(s, 301) for s in seeds]
        spe = math.ceil(n / cfg.batch_size)  # steps per epoch
        iterations = cfg.epochs * spe
        S = len(seeds)
        state = {"perm": None}
        history: dict[str, list] = {"epoch": []}
        diverged: dict[int, int] = {}

        ckpt = None
        if ctx.checkpoint_dir is not None:
            key = json.dumps({"points": points, "cfg": cfg.model_dump(mode="json")}, sort_keys=True)
            ckpt = Path(ctx.checkpoint_dir) / f"{self.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
        start = 0
        if ckpt is not None and ckpt.exists():
            saved = torch.load(ckpt, weights_only=False)
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            for g, st in zip(gens, saved["gens"], strict=True):
                g.set_state(st)
            history, diverged, start = saved["history"], saved["diverged"], saved["step"]

        def step_loss(t: int) -> torch.Tensor:
            i = (t - 1) % spe
            if i == 0:
                if t > 1:
                    sched.step()  # once per epoch
                state["perm"] = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
            idx = state["perm"][:, i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb = torch.gather(x, 1, idx.view(S, -1, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))
            yb = torch.gather(y, 1, idx)
            return _loss(net(xb), yb, classes).sum()

        @torch.no_grad()
        def evaluate(inputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
            net.eval()
            outs = torch.cat([net(inputs[:, j:j + 2048]) for j in range(0, inputs.shape[1], 2048)], dim=1)
            net.train()
            return _loss(outs, targets, classes), _correct(outs, targets, classes).mean(dim=1)

        def on_log(t: int) -> dict:
            train_loss, train_acc = evaluate(x, y)
            _, test_acc = evaluate(xt, yt)
            _, spur_acc = evaluate(xq, y)
            epoch = t // spe
            for i, s in enumerate(seeds):
                if not math.isfinite(float(train_loss[i])) and s not in diverged:
                    diverged[s] = epoch
            history["epoch"].append(epoch)
            for k, v in [("train_loss", train_loss), ("train_acc", train_acc), ("test_acc", test_acc),
                         ("spurious_acc", spur_acc)]:
                history.setdefault(k, []).append([float(a) for a in v.cpu()])
            if ckpt is not None and t > 0:
                _atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                              "gens": [g.get_state() for g in gens], "history": history, "diverged": diverged,
                              "step": t}, ckpt)
            alive = [float(train_loss[i]) for i, s in enumerate(seeds) if s not in diverged]
            return {"loss": torch.tensor(alive if alive else [math.nan])}

        net.train()
        try:
            train_loop(step_loss, opt, iterations, cfg.log_every * spe, on_log,
                       desc=f"{model_name} N={n} x{S}", progress=ctx.progress, start=start)
        except DivergenceError:
            pass  # every seed diverged: their records say so (below); nothing to retry

        seconds = (time.perf_counter() - t0) / S
        for i, p in enumerate(points):
            rec = dict(p)
            for k in ["train_loss", "train_acc", "test_acc", "spurious_acc"]:
                rec[k] = history[k][-1][i]
                rec[f"curve_{k}"] = [h[i] for h in history[k]]
            rec["curve_epoch"] = list(history["epoch"])
            rec.update(data=cfg.data, epochs=cfg.epochs, status="ok", error="", seconds=seconds,
                       n_classes=classes or 2, chance=1 / (classes or 2))
            if p["seed"] in diverged:
                rec.update(status="diverged", error=f"training loss not finite at epoch {diverged[p['seed']]}")
                for k in ["train_loss", "train_acc", "test_acc", "spurious_acc"]:
                    rec[k] = math.nan
            yield rec
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()

    def report(self, cfg: MemorizationNNConfig, df: pd.DataFrame, store) -> str:
        ok = df[df.status == "ok"]
        metrics = ["train_acc", "test_acc", "spurious_acc", "seconds"]
        agg = R.aggregate(ok, ["model", "n_train"], metrics)
        models = list(dict.fromkeys(ok.model))
        fig, axes = R.panel_grid(1, len(models) or 1)
        for j, m in enumerate(models):
            ax = axes[0][j]
            sub = agg[agg.model == m].sort_values("n_train")
            R.band(ax, sub.n_train, sub.test_acc, sub.test_acc_ci, label="test", marker="o", ms=3)
            R.band(ax, sub.n_train, sub.spurious_acc, sub.spurious_acc_ci, label="spurious", marker="s", ms=3,
                   linestyle="--")
            ax.axhline(float(ok.chance.iloc[0]), color="k", linewidth=0.6, linestyle=":", label="chance")
            ax.set_xscale("log")
            ax.set_xlabel("N (training samples)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{m} on {cfg.data}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        R.save_figure(fig, store.figures, "nn_accuracy_vs_n")
        groups = list(ok.groupby(["model", "n_train"], sort=True))
        fig, axes = R.panel_grid(1, len(models) or 1)
        import matplotlib.pyplot as plt

        colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, ok.n_train.nunique())))
        ns = sorted(ok.n_train.unique())
        for (m, n), sub in groups:
            ax = axes[0][models.index(m)]
            epochs = np.asarray(sub.curve_epoch.iloc[0])
            for k, style in [("test_acc", "-"), ("spurious_acc", "--")]:
                vals = np.stack([np.asarray(v) for v in sub[f"curve_{k}"]])
                ax.plot(epochs, vals.mean(0), style, color=colors[ns.index(n)],
                        label=f"N={n} {k.split('_')[0]}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy")
            ax.set_title(m, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        R.save_figure(fig, store.figures, "nn_curves")
        lines = ["# Trained networks: spurious-feature memorization", "",
                 f"data={cfg.data}, epochs={cfg.epochs}, batch={cfg.batch_size}, Adam lr={cfg.lr:g}, "
                 f"wd={cfg.weight_decay:g}, StepLR({cfg.step_size}, {cfg.gamma:g}).  Spurious accuracy: the "
                 "training image's border alone (core zeroed) recalls its label.  Figures: figures/nn_accuracy_vs_n,"
                 " figures/nn_curves.", "", R.markdown_table(agg, ["model", "n_train", "n", *metrics])]
        bad = df[df.status != "ok"]
        if len(bad):
            lines += ["", f"{len(bad)} point(s) diverged:", "",
                      R.markdown_table(bad, ["model", "n_train", "seed", "status", "error"])]
        return "\n".join(lines) + "\n"


EXPERIMENT = MemorizationNN()
