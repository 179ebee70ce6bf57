"""A small Vision Transformer in plain torch (no torchvision, no timm), for images of any size its patch divides.

The architecture is the "Simple ViT" of Beyer, Zhai & Kolesnikov (2022), *Better plain ViT baselines for
ImageNet-1k* (arXiv:2205.01580), also the encoder of MAE (He et al., 2022): non-overlapping ``patch`` x ``patch``
patches embedded linearly (a ``Conv2d`` with kernel = stride = ``patch``), a fixed 2-d sin-cos position embedding
(a buffer, not learned), ``depth`` pre-norm blocks (LayerNorm -> multi-head self-attention -> residual, LayerNorm
-> MLP with GELU -> residual), a final LayerNorm, the mean over tokens (no class token) and a linear head.

Every module with parameters is an ``nn.Linear``, ``nn.Conv2d`` or ``nn.LayerNorm``, so
:func:`spuriouslab.nets.train.reset_parameters` initialises it from a generator (PyTorch's default initialisation,
as for every model of the registry), and attention is written with matmuls and a softmax, so that
``vmap(functional_call)`` (:class:`spuriouslab.nets.models.SeedEnsemble`) batches it natively; the softmax is an
``nn.Softmax`` module so that :meth:`spuriouslab.nets.models.ModelSpec.size` counts the attention maps among the
activations.
"""

from __future__ import annotations

import torch
from torch import nn


def sincos_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The fixed 2-d sin-cos position embedding of a ``height`` x ``width`` grid of tokens, (height * width, dim).

    Beyer et al. (2022)'s ``posemb_sincos_2d``: with ``omega_i = temperature ** (-i / (dim / 4 - 1))``, token
    (r, c) (row-major) gets ``[sin(c omega), cos(c omega), sin(r omega), cos(r omega)]``.

    Parameters
    ----------
    height, width : int
        The token grid.
    dim : int
        Embedding width, a multiple of 4.
    temperature : float
        The longest wavelength.

    Returns
    -------
    torch.Tensor
        float32, (height * width, dim).

    >>> sincos_2d(2, 3, 8).shape
    torch.Size([6, 8])
    """
    if dim % 4:
        raise ValueError(f"dim: got {dim}; the 2-d sin-cos position embedding needs a multiple of 4")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1))
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    y = rows.flatten()[:, None] * omega[None, :]
    x = cols.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention on tokens (B, T, D): one ``qkv`` projection, softmax(q k^T / sqrt(D / heads)) v
    per head, an output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.softmax((q @ k.transpose(-2, -1)) * self.scale)  # (B, heads, T, T)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` with the MLP
    ``Linear(D, mlp_ratio D) -> GELU -> Linear(mlp_ratio D, D)`` (``mlp[1]`` is the GELU: its output units are the
    block's neurons)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> (B, T, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer (Beyer et al., 2022's Simple ViT) from (N, ``channels``, H, W) images to
    ``n_out`` outputs: logits (a classifier), or an ``n_out``-dimensional embedding (the registry's
    ``vit-encoder``, the same network with the head as its last projection).

    Parameters
    ----------
    channels : int
        Input channels.
    size : int or tuple of int
        Image height and width (an int: square); ``patch`` must divide both.
    n_out : int
        Outputs of the linear head.
    patch : int
        Side of the square, non-overlapping patches (one token each).
    dim : int
        Token width, a multiple of 4 (the sin-cos embedding) and of ``heads``.
    depth : int
        Transformer blocks.
    heads : int
        Attention heads.
    mlp_ratio : int
        Hidden width of each block's MLP, in multiples of ``dim``.

    Notes
    -----
    Parameters: ``C p^2 D + D`` (patch embedding) + ``depth ((4 + 2 r) D^2 + (9 + r) D)`` (blocks) + ``2 D``
    (final LayerNorm) + ``D n_out + n_out`` (head).  The defaults on 3 x 32 x 32 images with 10 outputs:
    137,802.  ``patch_embed`` is the layer whose output (N, D, H / p, W / p) is the patch grid (Grad-CAM's layer
    for a ViT, :func:`spuriouslab.nets.analysis.cam_layer`); ``feature_layer`` the last block's GELU, whose
    (N, T, mlp_ratio D) units the feature visualization maximizes.

    >>> ViT(3, (15, 9), 10, patch=3)(torch.zeros(2, 3, 15, 9)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        channels: int,
        size: int | tuple[int, int],
        n_out: int,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 2,
    ) -> None:
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        for key, value, low in (("patch", patch, 1), ("dim", dim, 4), ("depth", depth, 1), ("heads", heads, 1)):
            if value < low:
                raise ValueError(f"{key}: got {value}; at least {low}")
        if mlp_ratio < 1:
            raise ValueError(f"mlp_ratio: got {mlp_ratio}; at least 1")
        if h % patch or w % patch:
            raise ValueError(f"patch: got {patch}; it must divide the image height ({h}) and width ({w})")
        if dim % heads:
            raise ValueError(f"heads: got {heads}; it must divide dim ({dim})")
        if dim % 4:
            raise ValueError(f"dim: got {dim}; the 2-d sin-cos position embedding needs a multiple of 4")
        self.size, self.patch, self.grid = (h, w), patch, (h // patch, w // patch)
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(*self.grid, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_out)

    @property
    def feature_layer(self) -> nn.Module:
        """The last block's GELU: its output units (N, T, mlp_ratio D) are the feature visualization's channels."""
        return self.blocks[-1].get_submodule("mlp.1")

    @property
    def feature_width(self) -> int:
        """The number of :attr:`feature_layer` units (the last block's MLP width)."""
        hidden = self.blocks[-1].get_submodule("mlp.0")
        assert isinstance(hidden, nn.Linear)
        return hidden.out_features

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus the position embedding: (N, T, D), T = (H / p)(W / p) in row-major order."""
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(
                f"input: got images of {x.shape[-2]}x{x.shape[-1]}; this ViT takes {self.size[0]}x{self.size[1]}"
            )
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation: the mean over tokens of the final LayerNorm's output, (N, D)."""
        return self.norm(self.blocks(self.tokens(x))).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> outputs (N, n_out)."""
        return self.head(self.features(x))

    def head_parameters(self) -> list[nn.Parameter]:
        """The linear head (what linear probing trains)."""
        return list(self.head.parameters())
