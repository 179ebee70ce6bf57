"""Users' models: import strings (``package.module:factory``) and state-dict checkpoints, each failure one line."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from spuriouslab.errors import ConfigError, describe


def import_object(spec: str, key: str) -> Any:
    """The object named by ``package.module:attr[.attr]``; a one-line ConfigError naming ``key`` otherwise."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{key}: got {spec!r}; write package.module:factory")
    module, _, name = spec.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of the user's module
        raise ConfigError(f"{key}: cannot import {spec!r} ({describe(exc)})") from None
    return obj


def load_state(model: torch.nn.Module, path: str, key: str, what: str) -> None:
    """Load a state dict (``torch.load(weights_only=True)``: tensors only, never code) into ``model``."""
    try:
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a file that is not a matching state dict
        raise ConfigError(f"{key}: {path} does not match {what} ({describe(exc)})") from None
