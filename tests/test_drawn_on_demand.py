"""Posterior draws made when first asked for: the same draws as made at once, in less memory."""

from __future__ import annotations

import ctypes
import os
import platform
from itertools import pairwise

import numpy as np
import pytest
import torch

from models.cnn import BayesianCNN
from models.ensemble import Ensemble
from models.layers import (
    BayesLinear,
    Posterior,
    draw_mixture_posterior,
    posterior_room,
    sample_mixture_posterior,
    sample_posterior,
)
from models.predictive import DrawnOnDemand, fixed_posterior
from models.tabular import TabularBNN
from service.predictor import Job
from service.tasks.tabular_regression import RegressionPredictor

FEATURES = ("a", "b", "c")


def _assert_same_draws(got: Posterior, expected: Posterior) -> None:
    assert got.num_samples == expected.num_samples
    for layer, want in expected._draws.items():
        # Bit for bit, and laid out alike (the batched product reads them as they lie).
        assert torch.equal(got[layer].weight, want.weight)
        assert torch.equal(got[layer].bias, want.bias)
        assert got[layer].weight.stride() == want.weight.stride()


def _bnn(seed: int) -> TabularBNN:
    torch.manual_seed(seed)
    return TabularBNN(features=FEATURES, target="y", hidden=(8, 8), rho_init=-2.0)


@pytest.mark.parametrize("cuts", [(0, 7), (0, 1, 7), (0, 2, 3, 5, 7)])
def test_draws_written_in_pieces_are_the_draws_made_at_once(cuts: tuple[int, ...]) -> None:
    # Three members: pieces that start at every residue mod 3 give each draw its member.
    members = [_bnn(seed) for seed in range(3)]
    room = posterior_room(members[0], 7)
    for start, stop in pairwise(cuts):
        draw_mixture_posterior(room, members, 11, start, stop)
    _assert_same_draws(room, sample_mixture_posterior(members, 7, 11))
    # Draw s is member (s mod 3)'s, with the noise draw s has for any model.
    for s in range(7):
        alone = sample_posterior(members[s % 3], 7, seed=11).draws(s, s + 1)
        for layer, theirs in zip(room._draws, alone._draws.values(), strict=True):
            assert torch.equal(room[layer].weight[s], theirs.weight[0])


def test_a_drawn_on_demand_posterior_grows_into_the_fixed_one() -> None:
    model = BayesianCNN(classes=("x", "y"), image_size=24, rho_init=-3.0)
    ensemble = Ensemble.of([model, BayesianCNN(classes=("x", "y"), image_size=24, rho_init=-3.0)])
    for network in (model, ensemble):
        posterior = DrawnOnDemand(network, 9)
        assert (posterior.drawn, posterior.capacity) == (0, 9)
        first = posterior.head(2)
        assert posterior.drawn == 2
        posterior.head(1)  # fewer than made: nothing is drawn
        assert posterior.drawn == 2
        _assert_same_draws(posterior.head(9), fixed_posterior(network, 9))
        # Views handed out before stay valid as more are drawn (CUDA graphs hold them).
        _assert_same_draws(first, fixed_posterior(network, 2))
        with pytest.raises(ValueError, match=r"num_samples must be in \[1, 9\], got 10"):
            posterior.head(10)


def test_a_predictor_answers_alike_whenever_its_draws_are_made() -> None:
    model = _bnn(0)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    growing = RegressionPredictor(model, max_samples=50)
    answers = [growing([Job(x, samples, 0.9)])[0] for samples in (5, 50, 20)]
    assert growing.posterior is not None and growing.posterior.drawn == 50
    at_once = RegressionPredictor(model, max_samples=50)
    at_once.posterior.head(50)  # type: ignore[union-attr]
    for samples, answer in zip((5, 50, 20), answers, strict=True):
        (expected,) = at_once([Job(x, samples, 0.9)])
        np.testing.assert_array_equal(answer.lower, expected.lower)
        np.testing.assert_array_equal(answer.upper, expected.upper)
        np.testing.assert_array_equal(answer.epistemic_std, expected.epistemic_std)


def _resident_share(tensor: torch.Tensor) -> float:
    """The share of the pages under ``tensor``'s storage that are in memory (``mincore``): a
    measure of that storage alone, whatever the rest of the process frees or takes meanwhile."""
    page = os.sysconf("SC_PAGE_SIZE")
    storage = tensor.untyped_storage()
    start = storage.data_ptr() - storage.data_ptr() % page
    length = storage.data_ptr() + storage.nbytes() - start
    pages = (length + page - 1) // page
    flags = (ctypes.c_ubyte * pages)()
    mincore = ctypes.CDLL(None, use_errno=True).mincore
    assert mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), flags) == 0, ctypes.get_errno()
    return sum(flag & 1 for flag in flags) / pages


@pytest.mark.skipif(platform.system() != "Linux", reason="asks Linux's mincore")
def test_room_for_draws_not_made_takes_no_memory() -> None:
    layer = BayesLinear(1000, 1000)  # 4 MB a draw: room for 64 is 256 MB of address space
    posterior = DrawnOnDemand(layer, 64)
    weights = posterior.head(4)[layer].weight
    assert (
        _resident_share(weights) < 0.25
    )  # 4 of 64 draws made: the other 60's room is not in memory
    posterior.head(64)
    assert _resident_share(weights) > 0.99  # and drawing them is what puts it there
