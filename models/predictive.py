"""Posterior predictive samples: the S × N outputs every summary is computed from.

Training-time evaluation and the service both call these, so offline metrics
and served answers come from the same draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.ensemble import Ensemble
from models.layers import Posterior, bayesian_layers, sample_posterior

# Posterior draws are made once from this seed: the same checkpoint and S give
# the same S networks, hence reproducible answers.
POSTERIOR_SEED = 0

# On the CPU a CNN runs its draws in chunks of at most this many image-draws per pass. There,
# one grouped convolution over all S draws is 2-3× slower per image than one ordinary
# convolution per draw (64 images at S=32, one thread: 26.6 against 8.7 ms per image), and it
# holds every draw's activations at once (480 MB for that batch). A lone image still gets
# several draws per pass, which is the faster way for it (30 against 36 ms).
CPU_IMAGE_DRAWS_PER_PASS = 8


def is_bayesian(model: nn.Module) -> bool:
    """Has Bayesian layers (its training has a KL term); an ensemble of such networks does."""
    return next(bayesian_layers(model), None) is not None


def network_count(model: nn.Module) -> int | None:
    """How many distinct networks the model's posterior holds: None for a continuous one (any
    number of draws differ), K for a deterministic ensemble, 1 for one deterministic network.

    Draws past that count repeat networks, so they are what ``samples`` is capped at; a model
    of one network has no epistemic term at all.
    """
    if is_bayesian(model):
        return None
    return len(model.members) if isinstance(model, Ensemble) else 1


def draws_available(model: nn.Module, wanted: int) -> int:
    """How many of ``wanted`` draws differ: all of them, or the model's networks if fewer."""
    networks = network_count(model)
    return wanted if networks is None else min(wanted, networks)


def member_count(model: nn.Module) -> int:
    """1, or K for an ensemble of K networks."""
    return len(model.members) if isinstance(model, Ensemble) else 1


def fixed_posterior(model: nn.Module, num_samples: int, seed: int = POSTERIOR_SEED) -> Posterior:
    """``num_samples`` seeded draws: the first S are the same for any ``num_samples`` ≥ S."""
    if isinstance(model, Ensemble):
        return model.sample_posterior(num_samples, seed)
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
def class_probability_samples(
    model: nn.Module,
    images: Tensor,
    posterior: Posterior,
    *,
    image_draws_per_pass: int | None = None,
) -> Tensor:
    """Softmax probabilities, ``S × N × C``.

    The draws run in chunks of about ``image_draws_per_pass`` image-draws; by default
    :data:`CPU_IMAGE_DRAWS_PER_PASS` on the CPU, and all draws in one pass elsewhere.
    """
    if image_draws_per_pass is None and images.device.type == "cpu":
        image_draws_per_pass = CPU_IMAGE_DRAWS_PER_PASS
    total = posterior.num_samples
    chunk = total if image_draws_per_pass is None else max(1, image_draws_per_pass // len(images))
    if chunk >= total:
        return torch.softmax(model(images, posterior), dim=-1)
    return torch.cat(
        [
            torch.softmax(model(images, posterior.draws(start, min(start + chunk, total))), dim=-1)
            for start in range(0, total, chunk)
        ]
    )
