"""Bayesian CNN for image classification: the BBB3Conv3FC of PyTorch-BayesianCNN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import BayesConv2d, BayesLinear, Posterior
from models.standardize import Standardize
from models.task import IMAGE_CLASSIFICATION


def _output_side(conv: BayesConv2d, side: int) -> int:
    """Side of the square map after ``conv`` (stride 1) and a 3/2 max-pool."""
    side = side + 2 * conv.padding - conv.kernel_size + 1
    if side < 3:
        raise ValueError("the images are too small for the network's three convolutions")
    return (side - 3) // 2 + 1


class BayesianCNN(nn.Module):
    """Three 5×5 Bayesian convolutions and three Bayesian fully connected layers.

    Softplus activations and 3/2 max-pooling after each convolution, as in
    PyTorch-BayesianCNN's BBB3Conv3FC, so its checkpoints import one to one. Takes RGB
    images as floats in [0, 1], ``N × 3 × image_size × image_size``; the per-channel
    normalisation is part of the model, and so are the class names. Returns logits,
    ``N × C`` or, with a posterior of S draws, ``S × N × C``.
    """

    kind: ClassVar[str] = "bayesian-cnn"
    task: ClassVar[str] = IMAGE_CLASSIFICATION

    def __init__(
        self,
        *,
        classes: Sequence[str],
        image_size: int = 32,
        prior_sigma: float = 0.1,
        rho_init: float = -5.0,
        local_reparam: bool = True,
    ) -> None:
        super().__init__()
        classes = tuple(classes)
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {list(classes)}")
        self.classes: tuple[str, ...] = classes
        self.image_size: int = image_size
        self.config: dict[str, Any] = {
            "classes": list(classes),
            "image_size": image_size,
            "prior_sigma": prior_sigma,
            "rho_init": rho_init,
            "local_reparam": local_reparam,
        }
        bayes = {"prior_sigma": prior_sigma, "rho_init": rho_init, "local_reparam": local_reparam}
        self.normalize = Standardize((3, 1, 1))
        self.conv1 = BayesConv2d(3, 32, 5, padding=2, **bayes)
        self.conv2 = BayesConv2d(32, 64, 5, padding=2, **bayes)
        self.conv3 = BayesConv2d(64, 128, 5, padding=1, **bayes)
        side = image_size
        for conv in self._convs:
            side = _output_side(conv, side)
        self.fc1 = BayesLinear(side * side * self.conv3.out_channels, 1000, **bayes)
        self.fc2 = BayesLinear(1000, 1000, **bayes)
        self.fc3 = BayesLinear(1000, len(classes), **bayes)

    def forward(self, images: Tensor, posterior: Posterior | None = None) -> Tensor:
        x = self.normalize(images)
        for conv in self._convs:
            x = _max_pool(F.softplus(conv(x, posterior)))
        x = x.flatten(-3)
        x = F.softplus(self.fc1(x, posterior))
        x = F.softplus(self.fc2(x, posterior))
        return self.fc3(x, posterior)

    @property
    def _convs(self) -> tuple[BayesConv2d, ...]:
        return (self.conv1, self.conv2, self.conv3)


def _max_pool(x: Tensor) -> Tensor:
    # Pools over the last two dims whatever leads them (N or S × N).
    lead = x.shape[:-3]
    pooled = F.max_pool2d(x.reshape(-1, *x.shape[-3:]), kernel_size=3, stride=2)
    return pooled.view(*lead, *pooled.shape[1:])
