"""Posterior predictive samples: the S × N outputs every summary is computed from.

Training-time evaluation and the service both call these, so offline metrics
and served answers come from the same draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.ensemble import Ensemble
from models.layers import (
    Posterior,
    bayesian_layers,
    draw_mixture_posterior,
    posterior_room,
    sample_mixture_posterior,
)

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
    return None if is_bayesian(model) else member_count(model)


def draws_available(model: nn.Module, wanted: int) -> int:
    """How many of ``wanted`` draws differ: all of them, or the model's networks if fewer."""
    networks = network_count(model)
    return wanted if networks is None else min(wanted, networks)


def member_count(model: nn.Module) -> int:
    """1, or K for an ensemble of K networks."""
    return len(members_of(model))


def members_of(model: nn.Module) -> list[nn.Module]:
    """The model's networks: its members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def fixed_posterior(model: nn.Module, num_samples: int, seed: int = POSTERIOR_SEED) -> Posterior:
    """``num_samples`` seeded draws: the first S are the same for any ``num_samples`` ≥ S."""
    return sample_mixture_posterior(members_of(model), num_samples, seed)


class DrawnOnDemand:
    """A model's seeded posterior draws, up to ``capacity`` of them, each made when first asked
    for.

    Draw s is the same whenever it is made (its own generator, see
    :func:`~models.layers.sample_mixture_posterior`), so when a draw is made changes no answer.
    Room for all ``capacity`` draws is taken at once, so the views :meth:`head` returns stay
    valid as more are drawn (CUDA graphs replay such views). On the CPU the kernel maps a page
    of that room only when a draw is first written there: a model served at S=32 of at most 64
    holds 32 draws in memory, 228 MB less for each CIFAR network. Not thread-safe: the
    service's batches run one at a time.
    """

    def __init__(self, model: nn.Module, capacity: int, seed: int = POSTERIOR_SEED) -> None:
        self._members = members_of(model)
        self._seed = seed
        self._room = posterior_room(self._members[0], capacity)
        self.drawn = 0  # draws 0 to drawn - 1 are made
        # Each S's views, made once: a batch at the default S then costs a lookup, not a
        # dict of slices (15 µs a batch here).
        self._heads: dict[int, Posterior] = {}

    @property
    def capacity(self) -> int:
        return self._room.num_samples

    def head(self, num_samples: int) -> Posterior:
        """The first ``num_samples`` draws (views), making those not made yet."""
        head = self._heads.get(num_samples)
        if head is not None:
            return head
        if not 1 <= num_samples <= self.capacity:
            raise ValueError(f"num_samples must be in [1, {self.capacity}], got {num_samples}")
        if num_samples > self.drawn:
            draw_mixture_posterior(self._room, self._members, self._seed, self.drawn, num_samples)
            self.drawn = num_samples
        head = self._heads[num_samples] = self._room.head(num_samples)
        return head


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
