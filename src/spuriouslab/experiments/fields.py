"""Config field types shared by the experiments (one definition each).

``Listed`` turns ``"a,b,c"`` (from ``--set``) and scalars into lists for grid axes; ``Width`` is a positive integer
or infinity (``inf``; stored as ``math.inf`` and written ``inf`` in config files); ``ActivationName``,
``DatasetName`` / ``DataSource`` and ``ClassifierName`` check the activation, data-set and model registries.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from spuriouslab.activations import HERMITE_PREFIX, ActivationName
from spuriouslab.data.datasets import DatasetName, DataSource
from spuriouslab.experiments import base
from spuriouslab.kernels.matrices import MAX_FEATURES as MAX_KERNEL_FEATURES
from spuriouslab.kernels.matrices import parse_width
from spuriouslab.nets.models import ClassifierName


def split_list(value: Any) -> list[Any]:
    """Turn ``"10,100"`` into ``["10", "100"]`` and a scalar into ``[scalar]``; keep
    ``hermite:c0,c1,...`` items whole (their numbers follow them)."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and "," in value:
        items: list[str] = []
        for tok in (t.strip() for t in value.split(",")):
            if items and items[-1].startswith(HERMITE_PREFIX) and _is_number(tok):
                items[-1] += "," + tok
            else:
                items.append(tok)
        return items
    return [value]


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _width(value: Any) -> int | float:
    try:
        return parse_width(value)
    except ValueError as exc:
        raise ValueError(str(exc).split("; ", 1)[-1]) from None


def _file(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("an empty path; give a file, or leave the key out")
    return value


def check_coloured(cfg: Any) -> None:
    """The coloured task's settings of ``cfg``, checked alike by every config that has them: two colours that
    parse and differ as RGB values (``red`` and ``200,40,40`` are one colour), and ``rho`` and the colours only
    with ``border_content=coloured`` (:func:`refuse_unused`; ``rho`` in [0.5, 1]: :data:`Rho`)."""
    from spuriouslab.data.borders import parse_colour, parse_content

    colours = cfg.colours
    parse_content(cfg.border_content)
    if len(colours) != 2:
        raise ValueError(f"colours: got {colours}; two colours (names or R,G,B)")
    rgb = [parse_colour(c, "colours") for c in colours]
    if rgb[0] == rgb[1]:
        raise ValueError(
            f"colours: got {colours}; both are RGB {','.join(map(str, rgb[0]))}: two different colours (names or R,G,B)"
        )
    if cfg.border_content != "coloured":
        refuse_unused(cfg, ["rho", "colours"], "it sets the coloured border (border_content=coloured)")


def check_novel_colours(colours: list[str], novel: list[str]) -> None:
    """The coloured task's held-out colours (the ``novel`` test set): each parses, and none is a training colour
    as RGB (:func:`spuriouslab.data.coloured.check_novel`)."""
    from spuriouslab.data.borders import parse_colour
    from spuriouslab.data.coloured import check_novel

    check_novel([parse_colour(c, "colours") for c in colours], [parse_colour(c, "novel_colours") for c in novel])


def refuse_unused(cfg: Any, names: list[str], why: str) -> None:
    """Settings of ``cfg`` that do not apply to its data or remedy are refused in one line when given (when they
    differ from their default), instead of being stored and silently ignored: ``why`` says what they go with."""
    for name in names:
        value = getattr(cfg, name)
        if value != type(cfg).model_fields[name].default:
            raise ValueError(f"{name}: got {value!r}; {why}")


def refuse_unused_remedy_settings(cfg: Any, names: dict[str, str]) -> None:
    """Remedy settings (``names``: field -> ``pretrain``, ``lp`` or a remedy's name) refused when no remedy of
    ``cfg.remedy`` uses them (:func:`refuse_unused`)."""
    from spuriouslab.nets.remedies import REMEDIES

    def uses(remedy: str, use: str) -> bool:
        return bool(getattr(REMEDIES[remedy], use)) if use in ("pretrain", "lp") else remedy == use

    for name, use in names.items():
        if not any(uses(m, use) for m in cfg.remedy):
            users = " or ".join(m for m in REMEDIES if uses(m, use))
            refuse_unused(cfg, [name], f"it goes with remedy={users} (remedy is {','.join(cfg.remedy)})")


def refuse_group_remedies(cfg: Any, task: str) -> None:
    """The spurious-correlation remedies (reweight, groupdro, jtt, dfr) need the coloured task's (label, colour)
    groups or its held-out split; ``task`` (one without spurious groups) refuses them in one line saying what
    each would reduce to there."""
    from spuriouslab.nets.remedies import REMEDIES

    bad = [m for m in cfg.remedy if REMEDIES[m].needs_groups]
    if bad:
        raise ValueError(
            f"remedy: got {bad[0]}; it needs the (label, colour) groups of the coloured task (memorization-nn, "
            f"border_content=coloured). {task} has no spurious group: its background is independent of the label, "
            "so reweighting and GroupDRO reduce to class balancing and JTT and DFR to plain training"
        )


# Sizes no machine can hold are refused by validation; the rest by the run's memory estimate.
MAX_SAMPLES = 10**8
MAX_DIM = 10**7
MAX_WIDTH = 10**7  # trained networks' hidden width
MAX_FEATURES = MAX_KERNEL_FEATURES  # random features / NTK neurons (beyond that, use width=inf)
MAX_BORDER = 4096
MAX_SEEDS = base.MAX_SEEDS

Listed = BeforeValidator(split_list)
FilePath = Annotated[str | None, BeforeValidator(_file)]  # an optional file (a checkpoint): never the empty path


# the coloured task (border_content=coloured, spuriouslab.data.coloured)
def _rho(value: float) -> float:
    from spuriouslab.data.coloured import check_rho

    try:
        return check_rho(value)
    except ValueError as exc:
        raise ValueError(str(exc).split("; ", 1)[-1]) from None


Rho = Annotated[
    float,
    AfterValidator(_rho),
    Field(
        description="border_content=coloured: P(colour agrees with the label) in "
        "training, in [0.5, 1] (0.5 independent, 1 fully spurious)",
    ),
]
Colours = Annotated[
    list[str], Listed, Field(description="border_content=coloured: colour 0 and colour 1 (names or R,G,B)")
]
# remedies (remedy=and-mask, spuriouslab.nets.remedies)
AndMaskTau = Annotated[
    float, Field(gt=0, le=1, description="and-mask: fraction of the classes whose gradient signs must agree")
]
Size = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
RidgeValue = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Correlation = Annotated[float, Field(ge=0, lt=1)]
Width = Annotated[
    int | Annotated[float, Field(allow_inf_nan=True)],
    BeforeValidator(_width),
    PlainSerializer(lambda v: "inf" if math.isinf(v) else int(v), when_used="json"),
]
KernelModel = Literal["rf", "ntk", "linear"]
ImageSource = DatasetName  # an image data set of the registry
Scaling = Literal["raw", "unit", "standard"]

__all__ = [
    "ActivationName",
    "AndMaskTau",
    "ClassifierName",
    "Colours",
    "Correlation",
    "DataSource",
    "DatasetName",
    "FilePath",
    "Fraction",
    "ImageSource",
    "KernelModel",
    "Listed",
    "Rho",
    "RidgeValue",
    "Scaling",
    "Size",
    "Width",
    "check_coloured",
    "refuse_unused",
    "refuse_unused_remedy_settings",
    "split_list",
]
