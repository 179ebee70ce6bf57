"""Classifiers for `spuriouslab probe` and the background-features tests."""

import torch
from torch import nn


class CentreOnly(nn.Module):
    """Reads only the centre of the image (the outer 4 pixels are multiplied by 0): it ignores any frame of
    width <= 4 by construction."""

    def __init__(self, size=28, channels=3, n_out=10, frame=4):
        super().__init__()
        torch.manual_seed(0)
        mask = torch.zeros(1, 1, size, size)
        mask[..., frame : size - frame, frame : size - frame] = 1
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.pool = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(8 * 16, n_out)

    def forward(self, x):
        return self.head(self.pool(self.conv(x * self.mask) * self.mask))


class ReadsBorder(CentreOnly):
    """The same network fed the whole image: it sees the frame."""

    def forward(self, x):
        return self.head(self.pool(self.conv(x)))


def centre_only():
    return CentreOnly()


def reads_border():
    return ReadsBorder()


def not_a_model():
    return "model"


class NaNLogits(CentreOnly):
    """A classifier whose logits are NaN (a diverged or broken model)."""

    def forward(self, x):
        return super().forward(x) * float("nan")


def nan_logits():
    return NaNLogits(size=8, frame=1)  # digits-sized


class Silent(CentreOnly):
    """A forward that raises an exception with no message."""

    def forward(self, x):
        raise RuntimeError()


def silent():
    return Silent(size=8, frame=1)
