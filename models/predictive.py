"""Posterior predictive samples: the S × N outputs every summary is computed from.

Training-time evaluation and the service both call these, so offline metrics
and served answers come from the same draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.layers import Posterior, bayesian_layers, sample_posterior

# Posterior draws are made once from this seed: the same checkpoint and S give
# the same S networks, hence reproducible answers.
POSTERIOR_SEED = 0


def is_bayesian(model: nn.Module) -> bool:
    return next(bayesian_layers(model), None) is not None


def fixed_posterior(model: nn.Module, num_samples: int, seed: int = POSTERIOR_SEED) -> Posterior:
    """``num_samples`` seeded draws: the first S are the same for any ``num_samples`` ≥ S."""
    return sample_posterior(model, num_samples, seed)


@torch.no_grad()
def regression_samples(
    model: nn.Module, x: Tensor, posterior: Posterior | None
) -> tuple[Tensor, Tensor]:
    """``(mu, sigma)``, each ``S × N``; a deterministic model gives S = 1."""
    if posterior is None:
        mu, sigma = model(x)
        return mu.unsqueeze(0), sigma.unsqueeze(0)
    return model(x, posterior)


@torch.no_grad()
def class_probability_samples(model: nn.Module, images: Tensor, posterior: Posterior) -> Tensor:
    """Softmax probabilities, ``S × N × C``."""
    return torch.softmax(model(images, posterior), dim=-1)
