"""Encoders given to `spuriouslab run distillation` as import strings in the tests."""

import torch
from torch import nn


def linear_teacher(input_shape, n_classes):
    """A frozen random linear map of the image's centre (so it ignores the border region)."""
    torch.manual_seed(123)
    c, h, w = input_shape
    mask = torch.zeros(1, c, h, w)
    mask[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return nn.Sequential(Mask(mask), nn.Flatten(), nn.Linear(c * h * w, 16))


class Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


def small_student(input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(), nn.Linear(32, 16))


def wrong_size_student(input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 7))


def not_a_module():
    return 42
