"""The full-scale path of distillation: image folders read batch by batch by DataLoader workers (nothing held in
memory but features), the user's frozen teacher, a student and a baseline trained one seed at a time by the one
training loop (AdamW, warm-up + cosine, gradient-norm clipping, bfloat16 autocast on CUDA), checkpoints at every
logged epoch (resumed there, with the same data order), and probes on the streamed features.

Layout: ``data_root/{train,test}/<class>/*`` and ``data_root/ood/<name>/<class>/*``; all images of one size (resize
them beforehand, or give a factory whose first module resizes)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spuriouslab.data.images import DataError, folder_classes
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import RunContext
from spuriouslab.experiments.distillation.config import DistillationConfig
from spuriouslab.experiments.distillation.config import checkpoint_key as _key
from spuriouslab.nets.models import Classifier
from spuriouslab.nets.probes import probe_accuracies
from spuriouslab.nets.train import make_optimizer, train_loop, warmup_cosine
from spuriouslab.seeding import stream, torch_seed

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FolderImages(torch.utils.data.Dataset):
    """``directory/<class>/*`` decoded on demand into float (C, H, W) in [0, 1], with the class index."""

    def __init__(self, directory: Path, classes: list[str]):
        self.files: list[tuple[Path, int]] = []
        for ci, cname in enumerate(classes):
            if not (directory / cname).is_dir():
                raise DataError(f"{directory}: class {cname!r} (present in train/) is missing; every class needs "
                                f"{directory.name}/{cname}/")
            self.files += [(f, ci) for f in sorted((directory / cname).iterdir()) if f.suffix.lower() in SUFFIXES]
        if not self.files:
            raise DataError(f"{directory}: no images found")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.files[i]
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's
            raise DataError(f"{path}: unreadable image ({type(exc).__name__})") from None
        return torch.from_numpy(a).permute(2, 0, 1), label


def datasets(cfg: DistillationConfig) -> dict[str, FolderImages]:
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
    out["classes"] = classes  # type: ignore[assignment]
    return out


def loader(ds, cfg: DistillationConfig, shuffle_seed: int | None = None, limit: int | None = None):
    if limit is not None and limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(limit))
    gen = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size or 256, shuffle=shuffle_seed is not None,
                                       generator=gen, num_workers=cfg.workers, persistent_workers=False)


@torch.no_grad()
def features(model: torch.nn.Module, ds, cfg: DistillationConfig, device: str, limit: int | None = None):
    model.eval()
    feats, labels = [], []
    for x, y in loader(ds, cfg, limit=limit):
        feats.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def run_group(cfg: DistillationConfig, points: list[dict], ctx: RunContext,
              make_encoder, load_teacher_checkpoint) -> Iterator[dict]:
    """One seed (``points`` holds one point): teacher frozen, student distilled, baseline trained, probes."""
    t0 = time.perf_counter()
    (p,) = points
    seed, act, dev = p["seed"], p["activation"], ctx.device
    sets = datasets(cfg)
    classes = sets.pop("classes")
    shape = tuple(sets["train"][0][0].shape)

    class _Shape:  # what make_encoder reads of a task
        input_shape, n_classes = shape, len(classes)

    teacher = make_encoder(cfg, _Shape, "teacher", act, seed, "distillation.teacher")
    if cfg.teacher_checkpoint:
        load_teacher_checkpoint(teacher, cfg.teacher_checkpoint)
    teacher = teacher.to(dev).eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    student = make_encoder(cfg, _Shape, "student", act, seed, "distillation.student").to(dev)
    with torch.no_grad():
        embed_size = teacher(sets["train"][0][0][None].to(dev)).shape[-1]
    baseline = Classifier(make_encoder(cfg, _Shape, "student", act, seed, "distillation.baseline"), embed_size,
                          len(classes)).to(dev)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and dev.startswith("cuda")
                else contextlib.nullcontext())
    fit_sets = {"id": sets["test"], **{k[4:]: v for k, v in sets.items() if k.startswith("ood:")}}
    history: dict[str, list] = {"step": []}

    def train(model: torch.nn.Module, role: str, loss_of) -> None:
        opt = make_optimizer("adamw", model.parameters(), cfg.lr, cfg.weight_decay)
        spe = -(-len(sets["train"]) // (cfg.batch_size or 256))
        steps = cfg.epochs * spe
        sched = warmup_cosine(opt, cfg.warmup, steps) if (cfg.warmup or cfg.clip) else None
        key = _key(cfg, f"stream-{role}", [seed], act)
        state: dict[str, Any] = {"it": None}
        start = 0
        saved = ctx.checkpoints.load(key) if ctx.checkpoints is not None else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            if sched is not None:
                sched.load_state_dict(saved["sched"])
            start = saved["step"]
            if role == "student":
                history.update(saved["history"])

        def step_loss(t: int) -> torch.Tensor:
            if (t - 1) % spe == 0 or state["it"] is None:  # a new epoch: its own seeded order
                epoch = (t - 1) // spe
                state["it"] = iter(loader(sets["train"], cfg, torch_seed(seed, stream("distillation.order"), epoch)
                                          % 2**63))
            x, y = next(state["it"])
            with autocast:
                loss = loss_of(x.to(dev), y.to(dev))
            state.setdefault("losses", []).append(float(loss.detach()))
            return loss

        def on_log(t: int) -> dict:
            if role == "student":
                history["step"].append(t // spe)
                recent = state.pop("losses", [])
                history.setdefault("distill_loss", []).append(float(np.mean(recent)) if recent else float("nan"))
                for name, ds in fit_sets.items():
                    s_f, _ = features(student, ds, cfg, dev, limit=1000)
                    t_f, _ = features(teacher, ds, cfg, dev, limit=1000)
                    history.setdefault(f"fit_mse_{name}", []).append(float(((s_f - t_f) ** 2).mean()))
                    history.setdefault(f"fit_cos_{name}", []).append(
                        float(torch.nn.functional.cosine_similarity(s_f, t_f, dim=1).mean()))
                model.train()
            if ctx.checkpoints is not None and 0 < t < steps:
                saved_state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": t, "history": history}
                if sched is not None:
                    saved_state["sched"] = sched.state_dict()
                ctx.checkpoints.save(key, saved_state)
            return {}

        clip = (lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)) if cfg.clip else None
        model.train()
        train_loop(step_loss, opt, steps, cfg.log_every * spe, on_log, desc=f"{role} seed {seed}",
                   progress=ctx.progress, start=start, before_step=clip, scheduler=sched)
        if ctx.checkpoints is not None:
            ctx.checkpoints.discard(key)

    def distill_loss(x, y):
        with torch.no_grad():
            target = teacher(x).float()
        return ((student(x).float() - target) ** 2).mean()

    train(student, "student", distill_loss)
    train(baseline, "baseline", lambda x, y: torch.nn.functional.cross_entropy(baseline(x).float(), y))

    rec: dict[str, Any] = dict(p)
    for model_name, model in [("teacher", teacher), ("student", student), ("baseline", baseline.encoder)]:
        tests = {name: features(model, ds, cfg, dev) for name, ds in fit_sets.items()}
        accs = probe_accuracies(features(model, sets["train"], cfg, dev), tests, **cfg.probe_kwargs(model_name, seed))
        rec.update({f"acc_{model_name}_{name}": acc for name, acc in accs.items()})
    ood = [k for k in fit_sets if k != "id"]
    for model_name in ("teacher", "student", "baseline"):
        rec[f"acc_{model_name}_ood_mean"] = float(np.mean([rec[f"acc_{model_name}_{k}"] for k in ood]))
    for k, v in history.items():
        if k != "step":
            rec[k], rec[f"curve_{k}"] = v[-1], list(v)
    rec["curve_step"] = list(history["step"])
    rec["fit_mse_ood_mean"] = float(np.mean([rec[f"fit_mse_{k}"] for k in ood]))
    rec["fit_cos_ood_mean"] = float(np.mean([rec[f"fit_cos_{k}"] for k in ood]))
    rec.update(task=cfg.task, ood_sets=ood, n_train=len(sets["train"]), status="ok", error="",
               seconds=time.perf_counter() - t0)
    yield rec


def check(cfg: DistillationConfig) -> None:
    if cfg.task != "folder" or not cfg.teacher:
        raise ConfigError("stream: streaming reads task=folder data for a given teacher (teacher=package.module:f)")
    datasets(cfg)
