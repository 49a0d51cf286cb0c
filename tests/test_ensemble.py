"""Ensembles: the mixture posterior against hand computations and against its members run apart."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.cnn import BayesianCNN
from models.ensemble import Ensemble
from models.layers import sample_posterior
from models.predictive import (
    class_probability_samples,
    fixed_posterior,
    network_count,
    regression_samples,
)
from models.tabular import TabularBNN, TabularGaussian
from service.predictor import Job
from service.tasks.tabular_regression import RegressionPredictor

FEATURES = ("a", "b", "c")


def constant_gaussian(mu: float, sigma: float) -> TabularGaussian:
    """A Gaussian head whose every answer is N(mu, sigma²): zero weights, a set head bias."""
    model = TabularGaussian(features=FEATURES, target="y", hidden=[4])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        # sigma = softplus(raw) + 1e-3 in target units (scale 1): raw = softplus⁻¹(sigma - 1e-3)
        model.head.bias[0] = mu
        model.head.bias[1] = math.log(math.expm1(sigma - 1e-3))
    return model.eval()


def bnn_members(count: int, seed: int = 0) -> list[TabularBNN]:
    x = torch.randn(50, len(FEATURES)) * 3 + 1
    y = torch.randn(50) * 2 + 5
    members = []
    for k in range(count):
        torch.manual_seed(seed + k)
        member = TabularBNN(features=FEATURES, target="y", hidden=[8, 8], rho_init=-2.0)
        member.fit_standardization(x, y)  # the same rows for every member
        members.append(member.eval())
    return members


def mixture_quantile(q: float, components: list[NormalDist]) -> float:
    """Bisection on the equal-weight mixture's CDF, in plain floats."""
    lo, hi = -100.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if sum(c.cdf(mid) for c in components) / len(components) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_a_deep_ensemble_answers_the_mixture_of_its_members_by_hand() -> None:
    members = [constant_gaussian(1.0, 0.5), constant_gaussian(3.0, 1.0)]
    ensemble = Ensemble.of(members)
    assert network_count(ensemble) == 2
    predictor = RegressionPredictor(ensemble, max_samples=100)
    assert predictor.max_samples == 2  # two networks: more draws would repeat them
    (result,) = predictor([Job(np.zeros((3, 3), np.float32), samples=2, level=0.9)])
    components = [NormalDist(1.0, 0.5), NormalDist(3.0, 1.0)]
    np.testing.assert_allclose(result.mean, 2.0, rtol=1e-6)
    assert result.epistemic_std is not None  # the spread between members
    np.testing.assert_allclose(result.epistemic_std, 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.aleatoric_std, math.sqrt((0.25 + 1.0) / 2), rtol=1e-6)
    np.testing.assert_allclose(result.std, math.sqrt(1.0 + (0.25 + 1.0) / 2), rtol=1e-6)
    np.testing.assert_allclose(result.lower, mixture_quantile(0.05, components), rtol=1e-5)
    np.testing.assert_allclose(result.upper, mixture_quantile(0.95, components), rtol=1e-5)


def test_draw_s_comes_from_member_s_mod_k_in_one_vectorised_pass() -> None:
    members = bnn_members(3)
    ensemble = Ensemble.of(members)
    x = torch.randn(5, len(FEATURES))
    posterior = ensemble.sample_posterior(7, seed=11)
    with torch.no_grad():
        mu, sigma = ensemble(x, posterior)
        assert mu.shape == (7, 5)
        for s in range(7):
            member = members[s % 3]
            # Member k alone, with the noise of draw s: what sample_posterior gives it.
            alone = sample_posterior(member, 7, seed=11).draws(s, s + 1)
            mu_s, sigma_s = member(x, alone)
            torch.testing.assert_close(mu[s], mu_s[0], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(sigma[s], sigma_s[0], rtol=1e-6, atol=1e-6)


def test_a_cnn_ensembles_draws_run_as_its_members_would() -> None:
    torch.manual_seed(0)
    members = [BayesianCNN(classes=("x", "y"), image_size=24, rho_init=-3.0) for _ in range(2)]
    ensemble = Ensemble.of(members).eval()
    images = torch.rand(3, 3, 24, 24)
    posterior = fixed_posterior(ensemble, 4)
    probabilities = class_probability_samples(ensemble, images, posterior)
    for s in range(4):
        member = members[s % 2].eval()
        alone = fixed_posterior(member, 4).draws(s, s + 1)
        expected = class_probability_samples(member, images, alone)[0]
        torch.testing.assert_close(probabilities[s], expected, rtol=1e-5, atol=1e-6)


def test_identical_members_have_one_members_epistemic_term() -> None:
    (member,) = bnn_members(1)
    ensemble = Ensemble.of([member, member, member])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    job = Job(x, samples=30, level=0.95)
    (alone,) = RegressionPredictor(member, max_samples=30)([job])
    (together,) = RegressionPredictor(ensemble, max_samples=30)([job])
    assert alone.epistemic_std is not None and together.epistemic_std is not None
    np.testing.assert_array_equal(together.epistemic_std, alone.epistemic_std)
    np.testing.assert_array_equal(together.lower, alone.lower)


def test_members_that_differ_give_the_ensemble_more_epistemic_spread() -> None:
    members = bnn_members(4)
    x = torch.randn(20, len(FEATURES)) * 3
    with torch.no_grad():
        one = regression_samples(members[0], x, fixed_posterior(members[0], 40))[0].std(0)
        ensemble = Ensemble.of(members)
        many = regression_samples(ensemble, x, fixed_posterior(ensemble, 40))[0].std(0)
    assert float(many.mean()) > float(one.mean())


def test_a_checkpoint_holds_the_k_members(tmp_path: Path) -> None:
    ensemble = Ensemble.of(bnn_members(3))
    path = tmp_path / "e.safetensors"
    save_checkpoint(ensemble, path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 3
    assert loaded.kind == "tabular-bnn-ensemble" and loaded.task == "tabular-regression"
    assert loaded.features == FEATURES
    x = torch.randn(4, 3)
    with torch.no_grad():
        before = ensemble(x, ensemble.sample_posterior(6, seed=0))
        after = loaded(x, loaded.sample_posterior(6, seed=0))
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_members_standardised_apart_are_refused(tmp_path: Path) -> None:
    members = bnn_members(2)
    members[1].fit_standardization(torch.randn(10, 3), torch.randn(10))
    with pytest.raises(ValueError, match="member 1's standardize differs"):
        Ensemble.of(members)
    ensemble = Ensemble.of(bnn_members(2))
    with torch.no_grad():
        ensemble.members[1].target.mean.add_(1.0)
    path = tmp_path / "e.safetensors"
    save_checkpoint(ensemble, path)
    with pytest.raises(CheckpointError, match="member 1's target differs"):
        load_checkpoint(path)


def test_homoscedastic_members_are_refused() -> None:
    with pytest.raises(ValueError, match="heteroscedastic"):
        Ensemble(
            member_kind="tabular-bnn",
            members=2,
            member={"features": FEATURES, "target": "y", "noise": "homoscedastic"},
        )
