"""Input standardisation stored in the model, so a checkpoint carries its own."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Standardize(nn.Module):
    """``(x - mean) / scale`` with mean and scale fitted on the training data.

    Kept as buffers: they are saved with the weights and can never drift apart
    from them the way a side-car scaler file can.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    def fit(self, mean: Tensor, scale: Tensor) -> None:
        if mean.shape != self.mean.shape or scale.shape != self.scale.shape:
            raise ValueError(
                f"expected mean/scale of shape {tuple(self.mean.shape)}, "
                f"got {tuple(mean.shape)} and {tuple(scale.shape)}"
            )
        if (scale <= 0).any():
            raise ValueError("scale must be positive (a constant feature cannot be standardised)")
        self.mean.copy_(mean)
        self.scale.copy_(scale)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.scale

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.scale + self.mean
