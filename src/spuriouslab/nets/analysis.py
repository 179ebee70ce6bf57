"""What a trained image classifier reads: border sensitivity, accuracy under other border colours, Grad-CAM mass on
the border, activation maximization of a layer's channels and the colours of what it finds.

Every function takes a model (in eval mode inside), image batches float ``(N, C, H, W)`` in [0, 1], and a border
``region`` mask ``(H, W)`` (the outer frame).  They serve ``background-features`` (our ResNets and ViT) and
``probe`` (any torch classifier) alike.

Grad-CAM for a Vision Transformer (:class:`spuriouslab.nets.vit.ViT`, also inside a wrapper): :func:`cam_layer`
dispatches on the model.  A ViT's map is Captum's ``LayerGradCam`` on the patch embedding, the one layer whose
output is exactly the patch grid (N, D, H / p, W / p): token (r, c) there is the embedding of patch (r, c) and of
nothing else, whereas after the first attention every token mixes all patches, so a map read from later tokens
has no spatial meaning by construction.  Each patch's value covers its p x p pixels (nearest upsampling: the map's
resolution is the patch).  The number it feeds is the one the ResNet path records: the fraction of the positive,
predicted-class Grad-CAM mass on the border region.  Attention rollout (Abnar & Zuidema, 2020) was not chosen: it
is class-agnostic, ignores the MLPs and the values, and with mean pooling over tokens it measures where attention
flows rather than what the predicted class depends on, so it would not be the same quantity as the ResNet's
Grad-CAM fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from spuriouslab.nets.train import evaluating
from spuriouslab.nets.vit import ViT


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier's last ``nn.Linear`` (its input is the penultimate representation)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer to read the penultimate representation from")
    return linears[-1]


def last_conv(model: nn.Module) -> nn.Module:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no nn.Conv2d layer for Grad-CAM and feature visualization")
    return convs[-1]


def find_vit(model: nn.Module) -> ViT | None:
    """The :class:`~spuriouslab.nets.vit.ViT` that is ``model`` or that it wraps (a classifier on a ViT encoder), or
    None."""
    return next((m for m in model.modules() if isinstance(m, ViT)), None)


def cam_layer(model: nn.Module) -> tuple[nn.Module, str]:
    """The layer Grad-CAM reads for ``model`` and how its map is brought to the image size: a ViT's patch
    embedding with nearest upsampling (each patch's value on its pixels); a CIFAR ResNet's last block, bilinear;
    else the last ``nn.Conv2d``, bilinear."""
    from spuriouslab.nets.models import ResNetCIFAR

    vit = find_vit(model)
    if vit is not None:
        return vit.patch_embed, "nearest"
    if isinstance(model, ResNetCIFAR):
        return model.last_block, "bilinear"
    return last_conv(model), "bilinear"


def _upsampling(model: nn.Module, layer: nn.Module) -> str:
    """``nearest`` when ``layer`` is a ViT's patch embedding (its grid is the patches), else ``bilinear``."""
    return "nearest" if any(isinstance(m, ViT) and m.patch_embed is layer for m in model.modules()) else "bilinear"


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate representation, logits) of every image, read with a hook on the last linear layer."""
    head = last_linear(model)
    feats: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().flatten(1)))
    logits = []
    try:
        with evaluating(model):
            for i in range(0, len(x), chunk):
                logits.append(model(x[i : i + chunk]).detach())
    finally:
        handle.remove()
    return torch.cat(feats).float(), torch.cat(logits).float()


def sensitivity(model: nn.Module, plain: torch.Tensor, changed: torch.Tensor) -> dict[str, float]:
    """Relative change of the representation and of the logits when ``plain`` images become ``changed``:
    ``mean_i |h(changed_i) - h(plain_i)| / mean_i |h(plain_i)|`` (0 for a model that ignores the change)."""
    h0, z0 = outputs(model, plain)
    h1, z1 = outputs(model, changed)
    rel = lambda a, b: float((a - b).norm(dim=1).mean() / b.norm(dim=1).mean().clamp(min=1e-12))  # noqa: E731
    return {"repr_change": rel(h1, h0), "logit_change": rel(z1, z0)}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((outputs(model, x)[1].argmax(1).cpu() == y.cpu()).float().mean())


def gradcam_border_fraction(
    model: nn.Module, x: torch.Tensor, region: torch.Tensor, layer: nn.Module | None = None, chunk: int = 128
) -> tuple[float, torch.Tensor]:
    """Fraction of the (positive) Grad-CAM mass for the predicted class that lies on ``region``, averaged over
    images (Captum's ``LayerGradCam``, upsampled to the input); also returns the maps (N, H, W).

    Parameters
    ----------
    model : nn.Module
        The classifier.
    x : torch.Tensor
        Images (N, C, H, W).
    region : torch.Tensor
        Boolean (H, W) mask of the border.
    layer : nn.Module, optional
        The layer to read; None: :func:`cam_layer`'s for the model (a ViT's patch embedding).  A ViT's patch
        embedding is upsampled by nearest (each patch's value on its pixels), any other layer bilinearly.
    chunk : int
        Images per attribution batch.

    Returns
    -------
    tuple of float and torch.Tensor
        The mean fraction over images whose map has positive mass (NaN when none has), and the maps (N, H, W).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    if layer is None:
        layer, mode = cam_layer(model)
    else:
        mode = _upsampling(model, layer)
    cams = []
    with evaluating(model):
        cam = LayerGradCam(model, layer)
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk]
            target = model(xb).argmax(1)
            a = cam.attribute(xb, target=target, relu_attributions=True)
            cams.append(LayerAttribution.interpolate(a, tuple(x.shape[-2:]), mode)[:, 0].detach().clamp(min=0))
    maps = torch.cat(cams)
    total = maps.flatten(1).sum(1)
    on_border = (maps * region.to(maps)).flatten(1).sum(1)
    frac = torch.where(total > 0, on_border / total.clamp(min=1e-12), torch.full_like(total, float("nan")))
    return float(np.nanmean(frac.cpu().numpy())) if torch.isfinite(frac).any() else math.nan, maps.cpu()


def blur(images: torch.Tensor, size: int = 5) -> torch.Tensor:
    """A ``size`` x ``size`` box blur per channel (edges replicated)."""
    c = images.shape[1]
    kernel = torch.full((c, 1, size, size), 1.0 / size**2, dtype=images.dtype, device=images.device)
    padded = torch.nn.functional.pad(images, (size // 2,) * 4, mode="replicate")
    return torch.nn.functional.conv2d(padded, kernel, groups=c)


def visualize_channels(
    model: nn.Module,
    layer: nn.Module,
    shape: tuple[int, int, int],
    channels: list[int],
    rounds: int = 10,
    steps: int = 200,
    lr: float = 0.05,
    reg: float = 1e-2,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    tokens: bool = False,
) -> torch.Tensor:
    """Activation maximization: for each channel ``k`` of ``layer``'s output, an image in [0, 1] maximizing its
    mean activation, with Adam (lr 0.05) on ``-mean activation + reg * |image - 0.5|``, ``rounds`` rounds of
    ``steps`` steps with a 5x5 blur between rounds (the paper's recipe).  Returns (len(channels), C, H, W).
    ``tokens``: the layer's output is (N, T, channels), a transformer's, and a channel's activation is its mean
    over the tokens (the counterpart of a feature map's mean over positions)."""
    grabbed: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, inp, out: grabbed.append(out))
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    img = (0.5 + 0.01 * torch.randn(len(channels), *shape, generator=gen)).to(device).requires_grad_(True)
    idx = torch.arange(len(channels), device=device)
    chans = torch.as_tensor(channels, device=device)
    try:
        with evaluating(model):
            for r in range(rounds):
                opt = torch.optim.Adam([img], lr=lr)
                for _ in range(steps):
                    grabbed.clear()
                    opt.zero_grad()
                    model(img)
                    act = _channel_means(grabbed[-1], idx, chans, tokens)
                    loss = (-act + reg * (img - 0.5).flatten(1).norm(dim=1)).sum()
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        img.clamp_(0, 1)
                if r < rounds - 1:
                    with torch.no_grad():
                        img.copy_(blur(img))
                if progress is not None:
                    progress(r)
    finally:
        handle.remove()
    return img.detach().cpu()


def _channel_means(out: torch.Tensor, idx: torch.Tensor, chans: torch.Tensor, tokens: bool) -> torch.Tensor:
    """Mean activation of channel ``chans[k]`` of sample ``idx[k]``: over positions of (N, C, ...) maps, or over
    the tokens of (N, T, C) ones (``tokens``)."""
    if tokens:
        return out[idx, :, chans].mean(1)
    return out[idx, chans].flatten(1).mean(1)


@torch.no_grad()
def channel_activation(
    model: nn.Module, layer: nn.Module, images: torch.Tensor, channels: list[int], tokens: bool = False
) -> torch.Tensor:
    """Mean activation of channel ``channels[k]`` on image ``k`` (``tokens``: over the tokens of a (N, T, C)
    output)."""
    grabbed: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, inp, out: grabbed.append(out))
    try:
        with evaluating(model):
            model(images.to(next(model.parameters()).device))
    finally:
        handle.remove()
    out = grabbed[-1]
    idx = torch.arange(len(channels), device=out.device)
    return _channel_means(out, idx, torch.as_tensor(channels, device=out.device), tokens).cpu()


def colour_stats(images: torch.Tensor, colour: tuple[int, int, int], tol: float = 0.2) -> dict[str, float]:
    """Colour of visualizations (N, 3, H, W) in [0, 1]: circular mean hue (degrees, weighted by saturation),
    redness ``mean(R - (G + B) / 2)``, the fraction of pixels within ``tol`` (RGB distance in [0, 1] units) of
    ``colour``, and ``border_axis``: the mean chroma of the pixels (each pixel's RGB less its grey level) projected
    on the unit chroma direction of ``colour`` - positive toward the border's colour, negative toward its
    complement (brick red -> cyan), zero for a colourless image.

    >>> img = torch.full((1, 3, 4, 4), 0.5); img[:, 0] = 0.9  # a red image
    >>> s = colour_stats(img, (150, 50, 50)); round(s["border_axis"], 3) > 0, s["redness"] > 0
    (True, True)
    """
    from matplotlib.colors import rgb_to_hsv

    rgb = images.permute(0, 2, 3, 1).reshape(-1, 3).numpy().clip(0, 1)
    hsv = rgb_to_hsv(rgb)
    angle = hsv[:, 0] * 2 * math.pi
    w = hsv[:, 1]
    hue = math.degrees(math.atan2(float((w * np.sin(angle)).sum()), float((w * np.cos(angle)).sum()))) % 360
    target = np.asarray(colour, dtype=float) / 255.0
    axis = target - target.mean()
    norm = float(np.linalg.norm(axis))
    chroma = rgb - rgb.mean(axis=1, keepdims=True)
    return {
        "hue": hue,
        "redness": float((rgb[:, 0] - (rgb[:, 1] + rgb[:, 2]) / 2).mean()),
        "near_border_colour": float((np.linalg.norm(rgb - target, axis=1) < tol).mean()),
        "border_axis": float((chroma @ axis).mean() / norm) if norm > 0 else math.nan,
    }


def border_reliance(
    model: nn.Module,
    plain: torch.Tensor,
    labels: torch.Tensor,
    framed: dict[str, torch.Tensor],
    region: torch.Tensor,
    layer: nn.Module | None = None,
    cam_images: int = 200,
) -> dict[str, float]:
    """Every border number for one model: accuracy on plain and on each framed version; the relative change of
    representation and logits from plain to each framed version; the Grad-CAM border fraction on plain and on
    each framed version (first ``cam_images`` images; ``layer`` None: :func:`cam_layer`'s)."""
    out = {"acc_plain": accuracy(model, plain, labels)}
    out["gradcam_border_plain"], _ = gradcam_border_fraction(model, plain[:cam_images], region, layer)
    for name, x in framed.items():
        out[f"acc_{name}"] = accuracy(model, x, labels)
        s = sensitivity(model, plain, x)
        out[f"repr_change_{name}"], out[f"logit_change_{name}"] = s["repr_change"], s["logit_change"]
        out[f"gradcam_border_{name}"], _ = gradcam_border_fraction(model, x[:cam_images], region, layer)
    return out
