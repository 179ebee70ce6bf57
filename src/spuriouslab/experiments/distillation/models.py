"""Distillation's models: the teacher, student and baseline encoders (the user's factories, or the model registry's),
each initialised from its own seeded stream; the teacher's checkpoint; and a seed's divergence fields over the
three fits.  Used by the in-memory run and the streamed folder path alike."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from spuriouslab.errors import ConfigError, describe
from spuriouslab.experiments.distillation.config import DistillationConfig
from spuriouslab.nets.efficientnet import VARIANTS as PRETRAINED
from spuriouslab.nets.loading import import_object, load_state
from spuriouslab.nets.models import Classifier, Projected, Shape, build_model
from spuriouslab.nets.phases import Phases
from spuriouslab.nets.train import seeded
from spuriouslab.seeding import stream_id, torch_generator


def import_factory(spec: str, key: str) -> Callable[..., torch.nn.Module]:
    """``package.module:factory`` -> the callable; a one-line ConfigError naming ``key`` when it does not import."""
    obj = import_object(spec, key)
    if not callable(obj):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    factory: Callable[..., torch.nn.Module] = obj  # what it returns is checked by call_factory
    return factory


def call_factory(
    factory: Callable[..., object], spec: str, key: str, input_shape: tuple[int, ...], n_classes: int
) -> torch.nn.Module:
    """Call a user factory (with ``input_shape`` / ``n_classes`` when it takes them); it must return a Module."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in (("input_shape", input_shape), ("n_classes", n_classes)) if k in params}
    try:
        model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{key}: {spec!r} failed ({describe(exc)})") from None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{key}: {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def user_model(cfg: DistillationConfig, role: str) -> bool:
    """Whether ``role``'s encoder comes from the user's factory (initialised its own way) or the registry."""
    return (cfg.teacher if role == "teacher" else (cfg.student or cfg.teacher)) is not None


def encoder_builder(
    cfg: DistillationConfig,
    input_shape: tuple[int, ...],
    n_classes: int,
    role: str,
    activation: str,
    core_projection: Callable[[], torch.Tensor] | None = None,
) -> Callable[[], torch.nn.Module]:
    """What builds a fresh encoder of ``role`` (teacher / student / baseline): the user's factory, or the model
    registry's ``mlp-encoder`` (synthetic; the built-in teacher sees only the core projection) or
    ``cfg.encoder`` (images: ``cnn-encoder`` by default).  Seed it with :func:`spuriouslab.nets.train.seeded`."""
    spec = cfg.teacher if role == "teacher" else (cfg.student or cfg.teacher)
    if spec is not None and spec in PRETRAINED:  # an ImageNet teacher; its student and baseline: its architecture
        from spuriouslab.nets.efficientnet import EMBED_DIM, pretrained_encoder

        name = spec
        if role == "teacher":
            return lambda: pretrained_encoder(name)
        return lambda: build_model(name, (3, *input_shape[1:]), EMBED_DIM)  # type: ignore[arg-type]
    if spec is not None:
        key = "teacher" if role == "teacher" or cfg.student is None else "student"
        factory = import_factory(spec, key)
        return lambda: call_factory(factory, spec, role, input_shape, n_classes)
    # the registry's (C, H, W), where a synthetic vector (d,) is (1, 1, d) (mlp-encoder reads only its size)
    shape: Shape = (1, 1, input_shape[0]) if len(input_shape) == 1 else (input_shape[0], input_shape[1], input_shape[2])
    if cfg.mlp():
        act = cfg.teacher_activation if role == "teacher" else activation

        def mlp() -> torch.nn.Module:
            enc = build_model("mlp-encoder", shape, cfg.embed, width=cfg.width, activation=act)
            if role != "teacher":
                return enc
            assert core_projection is not None, "the built-in synthetic teacher is given the core projection"
            return Projected(enc, core_projection())

        return mlp
    return lambda: build_model(cfg.encoder, shape, cfg.embed)


def make_encoder(
    cfg: DistillationConfig,
    input_shape: tuple[int, ...],
    n_classes: int,
    role: str,
    activation: str,
    seed: int,
    stream_name: str,
    head: int | None = None,
    core_projection: Callable[[], torch.Tensor] | None = None,
) -> torch.nn.Module:
    """A fresh encoder of ``role`` (with a linear head of ``head`` inputs to ``n_classes`` when given: a
    classifier trained with labels), initialised from the seed's own stream ``stream_name`` alone."""
    build = encoder_builder(cfg, input_shape, n_classes, role, activation, core_projection)
    whole = (lambda: Classifier(build(), head, n_classes)) if head is not None else build
    return seeded(whole, torch_generator(seed, stream_id(stream_name)), reinit=not user_model(cfg, role))


def forward_check(model: torch.nn.Module, x: torch.Tensor, key: str, spec: str | None) -> torch.Tensor:
    try:
        out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - the user's module on our inputs
        raise ConfigError(
            f"{key}: {spec or 'built-in'} fails on inputs of shape {tuple(x.shape)} ({describe(exc)})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConfigError(
            f"{key}: {spec or 'built-in'} must return a (batch, embedding) tensor, got "
            f"{getattr(out, 'shape', type(out).__name__)}"
        )
    return out


def load_teacher_checkpoint(model: torch.nn.Module, path: str) -> None:
    load_state(model, path, "teacher_checkpoint", "the teacher")


ROLE_LOSS = {"teacher": "teacher training loss", "student": "distillation loss", "baseline": "baseline training loss"}


def divergence(cfg: DistillationConfig, fits: Mapping[str, Phases | None], i: int) -> dict[str, Any]:
    """A seed's divergence fields: the first of its teacher, student and baseline fits in which it diverged, in
    any phase (a diverged seed's accuracies are NaN: its features are not probed)."""
    for role, fit in fits.items():
        if fit is not None and fit.diverged(i):
            return fit.divergence(i, ROLE_LOSS[role])
    return {"status": "ok", "diverged_at": None, "error": ""}
