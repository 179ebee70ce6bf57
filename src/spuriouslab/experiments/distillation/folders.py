"""The full-scale path of distillation: image folders read batch by batch by DataLoader workers (nothing held in
memory but features), the user's frozen teacher, a student and a baseline trained one seed at a time by the one
trainer (AdamW, warm-up + cosine, gradient-norm clipping, bfloat16 autocast on CUDA), checkpoints at every
logged epoch (resumed there, with the same data order), and probes on the streamed features.

Layout: ``data_root/{train,test}/<class>/*`` and ``data_root/ood/<name>/<class>/*``; all images of one size (resize
them beforehand, or give a factory whose first module resizes)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spuriouslab.data.images import DataError, folder_classes
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import RunContext, checkpoint_key
from spuriouslab.experiments.distillation.config import DistillationConfig
from spuriouslab.experiments.distillation.models import divergence, load_teacher_checkpoint, make_encoder
from spuriouslab.nets.phases import Phase, Phases, run_phases
from spuriouslab.nets.probes import probe_accuracies
from spuriouslab.nets.train import TrainState, make_optimizer, warmup_cosine
from spuriouslab.runtime import die_with_parent
from spuriouslab.seeding import stream_id, torch_seed

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FolderImages(torch.utils.data.Dataset):
    """``directory/<class>/*`` decoded on demand into float (C, H, W) in [0, 1], with the class index."""

    def __init__(self, directory: Path, classes: list[str]):
        self.files: list[tuple[Path, int]] = []
        for ci, cname in enumerate(classes):
            if not (directory / cname).is_dir():
                raise DataError(
                    f"{directory}: class {cname!r} (present in train/) is missing; every class needs "
                    f"{directory.name}/{cname}/"
                )
            self.files += [(f, ci) for f in sorted((directory / cname).iterdir()) if f.suffix.lower() in SUFFIXES]
        if not self.files:
            raise DataError(f"{directory}: no images found")
        grey: dict[bool, Path] = {}
        for f, _ in self.files:  # headers only: greyscale and colour images are not mixed (as in memory)
            try:
                with Image.open(f) as im:
                    grey.setdefault(im.mode in ("1", "L", "I", "I;16", "F"), f)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's
                raise DataError(f"{f}: unreadable image ({type(exc).__name__})") from None
            if len(grey) > 1:
                raise DataError(
                    f"{directory}: mixes greyscale ({grey[True]}) and colour ({grey[False]}) images; "
                    "convert them to one mode first"
                )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's
            raise DataError(f"{path}: unreadable image ({type(exc).__name__})") from None
        return torch.from_numpy(a).permute(2, 0, 1), label


def datasets(cfg: DistillationConfig) -> tuple[dict[str, FolderImages], list[str]]:
    """The folder's sets (``train``, ``test``, ``ood:<name>``) and its class names."""
    assert cfg.data_root is not None, "streaming reads task=folder data, which has its data_root"
    root = Path(cfg.data_root)
    classes = folder_classes(root)
    out = {"train": FolderImages(root / "train", classes), "test": FolderImages(root / "test", classes)}
    for d in sorted(p for p in (root / "ood").iterdir() if p.is_dir()) if (root / "ood").is_dir() else []:
        out[f"ood:{d.name}"] = FolderImages(d, classes)
    if len(out) == 2:
        raise DataError(f"{root / 'ood'}: no OOD sets; put each as {root / 'ood'}/<name>/<class>/*.png")
    shapes = {k: tuple(ds[0][0].shape) for k, ds in out.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{root}: images differ in size across sets ({shapes}); resize them first")
    return out, classes


def loader(ds, cfg: DistillationConfig, shuffle_seed: int | None = None, limit: int | None = None):
    if limit is not None and limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(limit))
    gen = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    # workers end with the process that reads through them, even when it is killed
    return torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.batch_size or 256,
        shuffle=shuffle_seed is not None,
        generator=gen,
        num_workers=cfg.workers,
        persistent_workers=False,
        worker_init_fn=functools.partial(die_with_parent, os.getpid()),
    )


@torch.no_grad()
def features(model: torch.nn.Module, ds, cfg: DistillationConfig, device: str, limit: int | None = None):
    model.eval()
    feats, labels = [], []
    for x, y in loader(ds, cfg, limit=limit):
        feats.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def run_group(cfg: DistillationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    """One seed (``points`` holds one point): teacher frozen, student distilled, baseline trained, probes."""
    t0 = time.perf_counter()
    (p,) = points
    seed, act, dev = p["seed"], p["activation"], ctx.device
    sets, classes = datasets(cfg)
    shape = tuple(sets["train"][0][0].shape)
    teacher = make_encoder(cfg, shape, len(classes), "teacher", act, seed, "distillation.teacher")
    if cfg.teacher_checkpoint:
        load_teacher_checkpoint(teacher, cfg.teacher_checkpoint)
    teacher = teacher.to(dev).eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    student = make_encoder(cfg, shape, len(classes), "student", act, seed, "distillation.student").to(dev)
    with torch.no_grad():
        embed_size = teacher(sets["train"][0][0][None].to(dev)).shape[-1]
    baseline = make_encoder(
        cfg, shape, len(classes), "student", act, seed, "distillation.baseline", head=embed_size
    ).to(dev)
    fit_sets = {"id": sets["test"], **{k[4:]: v for k, v in sets.items() if k.startswith("ood:")}}

    def distill_loss(x, y):
        with torch.no_grad():
            target = teacher(x).float()
        return ((student(x).float() - target) ** 2).mean()

    def measure(t: int) -> dict[str, list[float]]:
        out = {}
        for name, ds in fit_sets.items():
            s_f, _ = features(student, ds, cfg, dev, limit=1000)
            t_f, _ = features(teacher, ds, cfg, dev, limit=1000)
            out[f"fit_mse_{name}"] = [float(((s_f - t_f) ** 2).mean())]
            out[f"fit_cos_{name}"] = [float(torch.nn.functional.cosine_similarity(s_f, t_f, dim=1).mean())]
        return out

    keys = {role: checkpoint_key("distillation", cfg, points, f"folder-{role}") for role in ("student", "baseline")}
    states = {
        "student": train(
            cfg, student, "student", seed, sets["train"], distill_loss, ctx, keys["student"], measure, "distill_loss"
        ),
        "baseline": train(
            cfg,
            baseline,
            "baseline",
            seed,
            sets["train"],
            lambda x, y: torch.nn.functional.cross_entropy(baseline(x).float(), y),
            ctx,
            keys["baseline"],
        ),
    }

    rec: dict[str, Any] = dict(p)
    alive = not states["student"].diverged(0) and not states["baseline"].diverged(0)
    ood = [k for k in fit_sets if k != "id"]
    for model_name, model in [
        ("teacher", teacher),
        ("student", student),
        ("baseline", baseline.get_submodule("encoder")),
    ]:
        if alive:
            tests = {name: features(model, ds, cfg, dev) for name, ds in fit_sets.items()}
            accs = probe_accuracies(
                features(model, sets["train"], cfg, dev), tests, **cfg.probe_kwargs(model_name, seed)
            )
        else:
            accs = {name: math.nan for name in fit_sets}
        rec.update({f"acc_{model_name}_{name}": acc for name, acc in accs.items()})
    for model_name in ("teacher", "student", "baseline"):
        rec[f"acc_{model_name}_ood_mean"] = float(np.mean([rec[f"acc_{model_name}_{k}"] for k in ood]))
    history = states["student"].task.history
    for k in history:
        if k != "step":
            rec[f"curve_{k}"] = states["student"].task.curve(k, 0)
            rec[k] = rec[f"curve_{k}"][-1]
    rec["curve_step"] = [t // steps_per_epoch(cfg, len(sets["train"])) for t in history["step"]]  # epochs
    rec["fit_mse_ood_mean"] = float(np.mean([rec[f"fit_mse_{k}"] for k in ood]))
    rec["fit_cos_ood_mean"] = float(np.mean([rec[f"fit_cos_{k}"] for k in ood]))
    rec.update(
        task=cfg.task,
        ood_sets=ood,
        n_train=len(sets["train"]),
        seconds=time.perf_counter() - t0,
        **divergence(cfg, {"teacher": None, **states}, 0),
    )
    yield rec
    ctx.discard(*keys.values())


def steps_per_epoch(cfg: DistillationConfig, n: int) -> int:
    return -(-n // (cfg.batch_size or 256))


def train(
    cfg: DistillationConfig,
    model: torch.nn.Module,
    role: str,
    seed: int,
    data: FolderImages,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ctx: RunContext,
    key: str,
    measure: Callable[[int], dict[str, list[float]]] | None = None,
    loss_name: str | None = None,
) -> Phases:
    """One model trained through the phased trainer (:func:`~spuriouslab.nets.phases.run_phases`, no remedy: the
    task phase alone) on batches read by DataLoader workers (each epoch its own seeded order, so a resumed run reads
    what it would have); ``loss_name``: also log the mean step loss since the last log under that name (the step
    losses stay on the device until then: no synchronisation per step)."""
    dev = ctx.device
    spe = steps_per_epoch(cfg, len(data))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and dev.startswith("cuda") else contextlib.nullcontext()
    )
    batches: dict[str, Any] = {"it": None}
    losses: list[torch.Tensor] = []

    def step(t: int) -> torch.Tensor:
        if (t - 1) % spe == 0 or batches["it"] is None:  # a new epoch: its own seeded order
            epoch = (t - 1) // spe
            batches["it"] = iter(loader(data, cfg, torch_seed(seed, stream_id("distillation.order"), epoch) % 2**63))
        x, y = next(batches["it"])
        with autocast:
            loss = loss_of(x.to(dev), y.to(dev))
        if loss_name:
            losses.append(loss.detach())
        return loss[None]

    def logged(t: int) -> dict[str, list[float]]:
        out = {}
        if loss_name:  # the mean of the step losses as float64, as a mean of their Python floats would be
            out[loss_name] = [float(np.mean(torch.stack(losses).double().cpu().numpy())) if losses else math.nan]
        losses.clear()
        if measure is not None:
            out.update(measure(t))
        return out

    def recipe(phase: str, params: list[torch.nn.Parameter], epochs: int, groups: str | None) -> Phase:
        """AdamW, warm-up + cosine when ``warmup`` or ``clip`` is set, gradient-norm clipping."""
        opt = make_optimizer("adamw", params, cfg.lr, cfg.weight_decay)
        steps = epochs * spe
        sched = warmup_cosine(opt, cfg.warmup, steps) if (cfg.warmup or cfg.clip) else None
        clip = (lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)) if cfg.clip else None
        return Phase(TrainState(model, opt, sched), step, steps, cfg.log_every * spe, measure=logged, before_step=clip)

    return run_phases(
        model,
        "none",
        {"task": cfg.epochs},
        recipe,
        checkpoints=ctx.checkpoints,
        key=key,
        desc=f"{role} seed {seed}",
        progress=ctx.progress,
    )


def check(cfg: DistillationConfig) -> None:
    if cfg.task != "folder" or not cfg.teacher:
        raise ConfigError("streaming: reads task=folder data for a given teacher (teacher=package.module:f)")
    datasets(cfg)
