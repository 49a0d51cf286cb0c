"""Bayesian CNN for CIFAR-10: the BBB3Conv3FC of PyTorch-BayesianCNN."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import BayesConv2d, BayesLinear, Posterior
from models.standardize import Standardize

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SIZE = 32


class BayesianCNN(nn.Module):
    """Three 5×5 Bayesian convolutions and three Bayesian fully connected layers.

    Softplus activations and 3/2 max-pooling after each convolution, as in
    PyTorch-BayesianCNN's BBB3Conv3FC, so its checkpoints import one to one.
    Takes RGB images as floats in [0, 1], ``N × 3 × 32 × 32``; the per-channel
    normalisation is part of the model. Returns logits, ``N × C`` or, with a
    posterior of S draws, ``S × N × C``.
    """

    kind: ClassVar[str] = "cifar-bcnn"

    def __init__(
        self,
        *,
        classes: tuple[str, ...] | list[str] = CIFAR10_CLASSES,
        prior_sigma: float = 0.1,
        rho_init: float = -5.0,
        local_reparam: bool = True,
    ) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.config: dict[str, Any] = {
            "classes": list(self.classes),
            "prior_sigma": prior_sigma,
            "rho_init": rho_init,
            "local_reparam": local_reparam,
        }
        bayes = {"prior_sigma": prior_sigma, "rho_init": rho_init, "local_reparam": local_reparam}
        self.normalize = Standardize((3, 1, 1))
        self.conv1 = BayesConv2d(3, 32, 5, padding=2, **bayes)
        self.conv2 = BayesConv2d(32, 64, 5, padding=2, **bayes)
        self.conv3 = BayesConv2d(64, 128, 5, padding=1, **bayes)
        self.fc1 = BayesLinear(2 * 2 * 128, 1000, **bayes)
        self.fc2 = BayesLinear(1000, 1000, **bayes)
        self.fc3 = BayesLinear(1000, len(self.classes), **bayes)

    def forward(self, images: Tensor, posterior: Posterior | None = None) -> Tensor:
        x = self.normalize(images)
        for conv in (self.conv1, self.conv2, self.conv3):
            x = _max_pool(F.softplus(conv(x, posterior)))
        x = x.flatten(-3)
        x = F.softplus(self.fc1(x, posterior))
        x = F.softplus(self.fc2(x, posterior))
        return self.fc3(x, posterior)


def _max_pool(x: Tensor) -> Tensor:
    # Pools over the last two dims whatever leads them (N or S × N).
    lead = x.shape[:-3]
    pooled = F.max_pool2d(x.reshape(-1, *x.shape[-3:]), kernel_size=3, stride=2)
    return pooled.view(*lead, *pooled.shape[1:])
