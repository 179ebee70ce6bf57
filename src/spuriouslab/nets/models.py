"""The model registry, the models, and an ensemble that trains S seeds as one computation.

:data:`MODELS` maps a name to a :class:`ModelSpec` (its builder, whether it has BatchNorm, what it is); every
consumer (config validation, grouping, memory estimates, the experiments that build models) reads it, so adding a
model is one entry.  The built-in ones:

* ``fc``:   d -> 500 -> 200 -> C, ReLU (Bombari & Mondelli's fully connected network);
* ``cnn``:  conv3x3(16) ReLU maxpool2, conv3x3(32) ReLU maxpool2, FC 256 ReLU, FC C (:class:`SmallCNN`);
* ``resnet18``: the CIFAR ResNet-18 (3x3 stem, no max-pool, 4 stages of 2 basic blocks, widths 64..512);
* ``resnet``: He et al.'s CIFAR ResNet of depth 6n+2 (option ``depth``, default 32: 3 stages of 5 basic blocks,
  widths 16/32/64, ~0.46M parameters);
* ``vit``: a small Vision Transformer (:class:`spuriouslab.nets.vit.ViT`, Beyer et al. 2022's Simple ViT; options
  ``patch`` (4), ``dim`` (64), ``depth`` (4), ``heads`` (4); the patch must divide the image height and width);
* encoders for distillation (role ``encoder``, output = the embedding): ``mlp-encoder`` (:class:`MLPEncoder`,
  options ``width`` and ``activation``), ``cnn-encoder`` (the same :class:`SmallCNN` conv stack, its hidden FC
  layer left out) and ``vit-encoder`` (the ViT with its head as the projection to the embedding, the same options);
  :class:`Projected` and :class:`Classifier` wrap any encoder.

Every model has a head, the last linear layer (:func:`head_parameters`: what linear probing trains); the built-in
ones say which it is (a ``head_parameters()`` method), any other module's is its last ``nn.Linear``.

:class:`SeedEnsemble` stacks the parameters of S independently initialised copies
(``torch.func.stack_module_state``) and evaluates them with ``vmap(functional_call)``: one batched
computation, each seed's function, gradients and (with an elementwise optimizer) trajectory its own.
Models with BatchNorm (ResNet) keep running statistics, which vmap cannot update: they train one seed at a time.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class FC(nn.Module):
    def __init__(self, d_in: int, n_out: int, hidden: tuple[int, ...] = (500, 200)):
        super().__init__()
        dims = [d_in, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net[-1].parameters())


class SmallCNN(nn.Module):
    """conv3x3(16) ReLU maxpool2, conv3x3(32) ReLU maxpool2, then fully connected layers of widths ``hidden``
    (ReLU after each) and a linear layer to ``n_out``: the ``cnn`` classifier (``hidden=(256,)``) and the
    ``cnn-encoder`` (``hidden=()``, the last layer the projection to the embedding)."""

    def __init__(self, channels: int, size: tuple[int, int], n_out: int, hidden: tuple[int, ...] = (256,)):
        super().__init__()
        h, w = size[0] // 4, size[1] // 4
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        ]
        dims = [32 * h * w, *hidden]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net[-1].parameters())


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    def __init__(self, channels: int, n_out: int, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(2):
                blocks.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head[-1].parameters())


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """A model's head - what linear probing trains: its own ``head_parameters()`` where it has one (the built-in
    models, :class:`SeedEnsemble`, :class:`~spuriouslab.nets.mlp.StackedMLP`), else the parameters of its last
    ``nn.Linear`` in registration order (a user's module)."""
    own = getattr(model, "head_parameters", None)
    if callable(own):
        params: list[nn.Parameter] = list(own())
        return params
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no linear layer to probe (give it a head_parameters method)")
    return list(linear[-1].parameters())


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``module`` (1-d, 2-d, 3-d), in module order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(module: nn.Module) -> bool:
    return bool(batchnorm_layers(module))


@contextlib.contextmanager
def batchnorm_momentum(module: nn.Module, momentum: float | None) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Inside, every BatchNorm layer of ``module`` has ``momentum`` (0: its running statistics stay; None: they
    become a cumulative average); yields the layers; their momenta are restored after."""
    norms = batchnorm_layers(module)
    before = [m.momentum for m in norms]
    try:
        for m in norms:
            m.momentum = momentum
        yield norms
    finally:
        for m, value in zip(norms, before, strict=True):
            m.momentum = value


class SeedEnsemble(nn.Module):
    """S copies of a model, one per seed, evaluated on inputs of shape (S, B, ...)."""

    base: nn.Module  # the template (stacked ensembles): set outside the module tree, see __init__

    def __init__(self, make: Callable[[int], nn.Module], seeds: list[int]):
        super().__init__()
        models = [make(s) for s in seeds]
        self.stacked = not has_batchnorm(models[0])
        if self.stacked:
            params, buffers = stack_module_state(models)
            self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v) for k, v in params.items()})
            for k, v in buffers.items():  # registered, so they move with .to() and live in the state dict
                self.register_buffer("buf__" + k.replace(".", "__"), v)
            self._buffer_names = list(buffers)
            # the template only supplies the forward code: kept outside the module tree (no .to(), no state)
            object.__setattr__(self, "base", copy.deepcopy(models[0]).to("meta"))
        else:
            if len(models) != 1:
                raise ValueError("models with BatchNorm train one seed at a time")
            self.model = models[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stacked:
            out: torch.Tensor = self.model(x[0])[None]
            return out
        params = {k.replace("__", "."): v for k, v in self.params.items()}
        buffers = self._stacked_buffers()

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = functional_call(self.base, (p, b), (xi,))
            return y

        stacked: torch.Tensor = vmap(one)(params, buffers, x)
        return stacked

    def _stacked_buffers(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, "buf__" + k.replace(".", "__")) for k in self._buffer_names}

    def forward_module(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Evaluate only the submodule ``name`` (e.g. ``"encoder"`` of a classifier) of every seed."""
        if not self.stacked:
            out: torch.Tensor = self.model.get_submodule(name)(x[0])[None]
            return out
        prefix = name + "."
        params = {
            k.replace("__", ".")[len(prefix) :]: v
            for k, v in self.params.items()
            if k.replace("__", ".").startswith(prefix)
        }
        buffers = {k[len(prefix) :]: v for k, v in self._stacked_buffers().items() if k.startswith(prefix)}
        sub = self.base.get_submodule(name)

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = functional_call(sub, (p, b), (xi,))
            return y

        stacked: torch.Tensor = vmap(one)(params, buffers, x)
        return stacked

    def seed_parameter(self, name: str) -> torch.Tensor:
        """A parameter of every seed, stacked (S, ...), by its dotted name in the model."""
        if not self.stacked:
            return self.model.get_parameter(name)[None]
        param: torch.Tensor = self.params[name.replace(".", "__")]
        return param

    def head_parameters(self) -> list[nn.Parameter]:
        """Every seed's head (:func:`head_parameters` of the model), stacked (S, ...) when the seeds are."""
        if not self.stacked:
            return head_parameters(self.model)
        head = {id(p) for p in head_parameters(self.base)}
        names = [name for name, p in self.base.named_parameters() if id(p) in head]
        return [self.params[name.replace(".", "__")] for name in names]

    def train(self, mode: bool = True) -> SeedEnsemble:
        super().train(mode)
        if not self.stacked:
            self.model.train(mode)
        return self


# ------------------------------------------------------------------------------- encoders (distillation)
class MLPEncoder(nn.Module):
    """``x -> phi(W1 x + b1) -> W2 . + b2``: a two-layer encoder to an ``embed``-dimensional representation, any
    activation of the registry."""

    def __init__(self, d_in: int, width: int, embed: int, activation: str = "relu"):
        super().__init__()
        from spuriouslab.activations import get_activation

        self.first = nn.Linear(d_in, width)
        self.second = nn.Linear(width, embed)
        self.activation = activation
        self._fn = get_activation(activation).fn("net")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self._fn.differentiable(self.first(x.flatten(1))))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.second.parameters())


class Projected(nn.Module):
    """``encoder(x P)``: an encoder that sees only a fixed linear projection of its input (``P`` a buffer), e.g.
    the core subspace; its output is then exactly invariant to anything ``P`` removes."""

    projection: torch.Tensor

    def __init__(self, encoder: nn.Module, projection: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("projection", projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1) @ self.projection)

    def head_parameters(self) -> list[nn.Parameter]:
        return head_parameters(self.encoder)


class Classifier(nn.Module):
    """An encoder followed by a linear head (trained end to end with labels)."""

    def __init__(self, encoder: nn.Module, embed: int, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(embed, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())


# ------------------------------------------------------------------------------------- CIFAR ResNet-32
class _ShortcutA(nn.Module):
    """He et al.'s option A: subsample by the stride and zero-pad the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return torch.nn.functional.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x


class BlockA(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = _ShortcutA(c_in, c_out, stride) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNetCIFAR(nn.Module):
    """The CIFAR ResNet of He et al. (2016): a 3x3 stem, three stages of ``(depth - 2) / 6`` basic blocks of
    widths 16 / 32 / 64 (stride 2 between stages, option-A shortcuts), global average pooling, a linear head.
    ``depth=32``: 5 blocks a stage, about 0.46M parameters.  ``last_block`` is the module whose output channels
    are the last convolution's (feature visualization, Grad-CAM); ``features`` gives the penultimate representation."""

    def __init__(self, channels: int = 3, n_out: int = 10, depth: int = 32, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BlockA(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, n_out)

    @property
    def last_block(self) -> nn.Module:
        stage = self.stages[-1]
        assert isinstance(stage, nn.Sequential)
        return stage[-1]

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_maps(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())


# ------------------------------------------------------------------------------------------- the registry
Shape = tuple[int, int, int]  # (C, H, W); synthetic vectors are (1, 1, d)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry: ``build(shape, n_out, **options)`` returns a fresh module (PyTorch's default
    initialisation; seed it with :func:`spuriouslab.nets.train.seeded`); ``batchnorm``: it keeps running
    statistics, so seeds cannot be stacked and train one at a time; ``role``: ``classifier`` (outputs ``n_out``
    logits) or ``encoder`` (outputs an ``n_out``-dimensional embedding)."""

    build: Callable[..., nn.Module]
    description: str
    batchnorm: bool = False
    role: Literal["classifier", "encoder"] = "classifier"

    def size(self, shape: Shape, n_out: int, **options: Any) -> tuple[int, int]:
        """(parameters, activations kept per sample) for a memory estimate, counted on the meta device (nothing
        allocated): the parameters' sizes, and the outputs of every module of a one-sample forward (in eval mode:
        a BatchNorm of a 1x1 map refuses one sample in training mode)."""
        with torch.device("meta"):
            model = self.build(shape, n_out, **options).eval()
            outputs = [0]
            hooks = [
                m.register_forward_hook(lambda m, i, o: outputs.__setitem__(0, outputs[0] + o.numel()))
                for m in model.modules()
                if not list(m.children())
            ]
            try:
                model(torch.zeros(1, *shape))
            except (NotImplementedError, RuntimeError):  # an operation without a meta kernel: no activation count
                outputs = [0]
            finally:
                for h in hooks:
                    h.remove()
        return sum(p.numel() for p in model.parameters()), outputs[0]


def _fc(shape: Shape, n_out: int) -> nn.Module:
    return FC(math.prod(shape), n_out)


def _lite(name: str, n_out: int) -> nn.Module:
    from spuriouslab.nets.efficientnet import lite_encoder

    return lite_encoder(name, n_out)


def _vit(name: str) -> Callable[..., nn.Module]:
    """The registry's builder of :class:`~spuriouslab.nets.vit.ViT` as ``name``: a bad option (a patch that does not
    divide the image, heads that do not divide dim) is a one-line ConfigError naming the model."""

    def build(shape: Shape, n_out: int, patch: int = 4, dim: int = 64, depth: int = 4, heads: int = 4) -> nn.Module:
        from spuriouslab.errors import ConfigError
        from spuriouslab.nets.vit import ViT

        try:
            return ViT(shape[0], shape[1:], n_out, patch=patch, dim=dim, depth=depth, heads=heads)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    return build


MODELS: dict[str, ModelSpec] = {
    "fc": ModelSpec(_fc, "fully connected d -> 500 -> 200 -> C, ReLU"),
    "cnn": ModelSpec(lambda shape, n_out: SmallCNN(shape[0], shape[1:], n_out), "small CNN: 2 conv + 2 FC, ReLU"),
    "resnet18": ModelSpec(
        lambda shape, n_out: ResNet18(shape[0], n_out), "CIFAR ResNet-18 (11M parameters)", batchnorm=True
    ),
    "resnet": ModelSpec(
        lambda shape, n_out, depth=32: ResNetCIFAR(shape[0], n_out, depth),
        "He et al.'s CIFAR ResNet, depth 6n+2 (option depth, default 32)",
        batchnorm=True,
    ),
    "vit": ModelSpec(
        _vit("vit"),
        "small Vision Transformer: patch embedding, pre-norm blocks, 2-d sin-cos positions, mean pooling "
        "(options patch 4, dim 64, depth 4, heads 4)",
    ),
    "mlp-encoder": ModelSpec(
        lambda shape, n_out, width=256, activation="relu": MLPEncoder(math.prod(shape), width, n_out, activation),
        "two-layer MLP encoder, any activation",
        role="encoder",
    ),
    "cnn-encoder": ModelSpec(
        lambda shape, n_out: SmallCNN(shape[0], shape[1:], n_out, hidden=()),
        "small CNN encoder (the cnn's conv stack)",
        role="encoder",
    ),
    "vit-encoder": ModelSpec(
        _vit("vit-encoder"), "small Vision Transformer encoder (the vit's options)", role="encoder"
    ),
    **{
        name: ModelSpec(
            lambda shape, n_out, name=name: _lite(name, n_out),
            f"EfficientNet-Lite{name[-1]} encoder, random initialisation (the pooled 1280-d embedding; "
            f"teacher={name} loads the ImageNet weights of the pretrained extra)",
            batchnorm=True,
            role="encoder",
        )
        for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
    },
}


def get_model(name: str) -> ModelSpec:
    if name not in MODELS:
        from spuriouslab.errors import ConfigError

        raise ConfigError(f"model: got {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, shape: Shape, n_out: int, **options: Any) -> nn.Module:
    """A fresh model of the registry; ``shape`` is (C, H, W)."""
    return get_model(name).build(shape, n_out, **options)


def _classifier(name: str) -> str:
    spec = MODELS.get(name)
    if spec is None or spec.role != "classifier":
        allowed = ", ".join(k for k, v in MODELS.items() if v.role == "classifier")
        raise ValueError(f"allowed: {allowed}")
    return name


ClassifierName = Annotated[str, AfterValidator(_classifier)]
"""A config field type: a classifier of :data:`MODELS`."""


def _encoder(name: str) -> str:
    spec = MODELS.get(name)
    if spec is None or spec.role != "encoder":
        allowed = ", ".join(k for k, v in MODELS.items() if v.role == "encoder")
        raise ValueError(f"allowed: {allowed}")
    return name


EncoderName = Annotated[str, AfterValidator(_encoder)]
"""A config field type: an encoder of :data:`MODELS`."""
