"""Bayesian layers: KL against torch.distributions, sampling, the vectorised S-draw pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from models.cnn import BayesianCNN
from models.layers import (
    _SEED_STRIDE,
    BayesConv2d,
    BayesLinear,
    Posterior,
    WeightDraws,
    bayesian_layers,
    posterior_mean,
    sample_posterior,
)
from models.layers import (
    kl_divergence as model_kl,
)
from models.predictive import class_probability_samples
from training.datasets.cifar import CIFAR10_CLASSES


def _randomise(layer: BayesLinear | BayesConv2d, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.weight_mu, layer.bias_mu):
            p.copy_(torch.randn(p.shape, generator=g))
        for p in (layer.weight_rho, layer.bias_rho):
            p.copy_(torch.randn(p.shape, generator=g) - 1.0)


@pytest.mark.parametrize(
    "layer",
    [BayesLinear(7, 5, prior_sigma=0.3), BayesConv2d(3, 4, 3, prior_sigma=2.0)],
    ids=["linear", "conv"],
)
def test_kl_matches_torch_distributions(layer: BayesLinear | BayesConv2d) -> None:
    _randomise(layer)
    prior = float(layer.prior_sigma)
    expected = sum(
        kl_divergence(Normal(mu, F.softplus(rho)), Normal(0.0, prior)).sum()
        for mu, rho in [(layer.weight_mu, layer.weight_rho), (layer.bias_mu, layer.bias_rho)]
    )
    torch.testing.assert_close(layer.kl(), expected)
    # KL(q‖p), not KL(p‖q): the two differ for these parameters.
    reverse = kl_divergence(Normal(0.0, prior), Normal(layer.weight_mu, layer.weight_sigma)).sum()
    assert not torch.isclose(layer.kl(), reverse)


def test_kl_is_zero_when_posterior_equals_prior() -> None:
    layer = BayesLinear(4, 3, prior_sigma=0.5)
    with torch.no_grad():
        layer.weight_mu.zero_()
        layer.bias_mu.zero_()
        rho = torch.log(torch.expm1(torch.tensor(0.5)))
        layer.weight_rho.fill_(rho)
        layer.bias_rho.fill_(rho)
    assert abs(layer.kl().item()) < 1e-5


def test_model_kl_is_sum_over_layers() -> None:
    model = BayesianCNN(classes=CIFAR10_CLASSES)
    expected = sum(layer.kl().item() for layer in bayesian_layers(model))
    assert model_kl(model).item() == pytest.approx(expected, rel=1e-5)


def test_eval_mode_forward_passes_draw_different_weights() -> None:
    layer = BayesLinear(6, 3, rho_init=-2.0).eval()
    x = torch.randn(4, 6)
    assert not torch.allclose(layer(x), layer(x))
    model = BayesianCNN(classes=CIFAR10_CLASSES, rho_init=-3.0).eval()
    images = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(model(images), model(images))


def test_posterior_draws_differ_and_follow_q() -> None:
    layer = BayesLinear(3, 2)
    _randomise(layer)
    draws = layer.sample(20_000, torch.Generator().manual_seed(1))
    assert draws.weight.shape == (20_000, 2, 3)
    assert not torch.equal(draws.weight[0], draws.weight[1])
    torch.testing.assert_close(draws.weight.mean(0), layer.weight_mu.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(draws.weight.std(0), layer.weight_sigma.detach(), atol=0, rtol=0.05)


def test_seeded_posterior_repeats_and_is_prefix_stable() -> None:
    model = BayesianCNN(classes=CIFAR10_CLASSES)
    a = sample_posterior(model, 3, seed=7)
    b = sample_posterior(model, 3, seed=7)
    more = sample_posterior(model, 5, seed=7)
    other = sample_posterior(model, 3, seed=8)
    for layer in bayesian_layers(model):
        assert torch.equal(a[layer].weight, b[layer].weight)
        assert torch.equal(a[layer].bias, more[layer].bias[:3])
        assert torch.equal(a[layer].weight, more.head(3)[layer].weight)
        assert not torch.equal(a[layer].weight, other[layer].weight)


def test_seeded_linear_draws_are_each_draws_own_noise_laid_out_in_major() -> None:
    # Draw s is mu + sigma × the noise of generator (seed, s), weight before bias; stored so
    # that the S × in × out matrices the batched product reads are contiguous.
    layer = BayesLinear(5, 4)
    _randomise(layer)
    draws = sample_posterior(layer, 3, seed=7)[layer]
    assert draws.weight.shape == (3, 4, 5)
    assert draws.weight.transpose(1, 2).is_contiguous()
    for s in range(3):
        generator = torch.Generator().manual_seed(7 * _SEED_STRIDE + s)
        weight_noise = torch.randn((4, 5), generator=generator)
        bias_noise = torch.randn(4, generator=generator)
        assert torch.equal(draws.weight[s], layer.weight_mu + layer.weight_sigma * weight_noise)
        assert torch.equal(draws.bias[s], layer.bias_mu + layer.bias_sigma * bias_noise)


@pytest.mark.parametrize("shared_input", [True, False])
def test_vectorised_linear_equals_one_pass_per_draw(shared_input: bool) -> None:
    layer = BayesLinear(5, 4, rho_init=-1.0).eval()
    posterior = sample_posterior(layer, 6, seed=0)
    x = torch.randn(3, 5) if shared_input else torch.randn(6, 3, 5)
    out = layer(x, posterior)
    assert out.shape == (6, 3, 4)
    d = posterior[layer]
    for s in range(6):
        xs = x if shared_input else x[s]
        torch.testing.assert_close(out[s], xs @ d.weight[s].T + d.bias[s])


@pytest.mark.parametrize("shared_input", [True, False])
def test_vectorised_conv_equals_one_pass_per_draw(shared_input: bool) -> None:
    layer = BayesConv2d(3, 4, 3, padding=1, stride=2, rho_init=-1.0).eval()
    posterior = sample_posterior(layer, 5, seed=0)
    x = torch.randn(2, 3, 9, 9) if shared_input else torch.randn(5, 2, 3, 9, 9)
    out = layer(x, posterior)
    assert out.shape == (5, 2, 4, 5, 5)
    d = posterior[layer]
    for s in range(5):
        xs = x if shared_input else x[s]
        expected = F.conv2d(xs, d.weight[s], d.bias[s], stride=2, padding=1)
        torch.testing.assert_close(out[s], expected, rtol=1e-5, atol=1e-5)


def test_vectorised_cnn_equals_one_network_per_draw() -> None:
    model = BayesianCNN(classes=CIFAR10_CLASSES, rho_init=-3.0).eval()
    posterior = sample_posterior(model, 4, seed=0)
    images = torch.rand(3, 3, 32, 32)
    logits = model(images, posterior)
    assert logits.shape == (4, 3, 10)
    for s in range(4):
        single = Posterior(
            {
                layer: WeightDraws(
                    posterior[layer].weight[s : s + 1], posterior[layer].bias[s : s + 1]
                )
                for layer in bayesian_layers(model)
            }
        )
        torch.testing.assert_close(logits[s], model(images, single)[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])


def test_local_reparameterisation_matches_weight_sampling_moments() -> None:
    # Sampling pre-activations must give the same output distribution as sampling weights.
    layer = BayesLinear(4, 2, local_reparam=True)
    _randomise(layer)
    x = torch.randn(1, 4).expand(40_000, 4)
    layer.train()
    torch.manual_seed(0)
    lrt = layer(x).detach()
    layer.local_reparam = False
    per_weight = torch.stack([layer(x[:1]).detach()[0] for _ in range(4_000)])
    mean = x[0] @ layer.weight_mu.detach().T + layer.bias_mu.detach()
    var = x[0] ** 2 @ (layer.weight_sigma.detach() ** 2).T + layer.bias_sigma.detach() ** 2
    torch.testing.assert_close(lrt.mean(0), mean, atol=4 * float(var.max().sqrt()) / 200, rtol=0)
    torch.testing.assert_close(lrt.var(0), var, rtol=0.05, atol=0)
    torch.testing.assert_close(per_weight.var(0), var, rtol=0.15, atol=0)


def test_gradients_reach_mu_and_rho() -> None:
    for local_reparam in (True, False):
        layer = BayesLinear(3, 2, local_reparam=local_reparam).train()
        (layer(torch.randn(8, 3)).pow(2).sum() + layer.kl()).backward()
        for p in (layer.weight_mu, layer.weight_rho, layer.bias_mu, layer.bias_rho):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_posterior_head_and_mean() -> None:
    layer = BayesLinear(3, 2)
    posterior = sample_posterior(layer, 5)
    head = posterior.head(2)
    assert head.num_samples == 2
    assert torch.equal(head[layer].weight, posterior[layer].weight[:2])
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        posterior.head(6)
    mean = posterior_mean(layer)
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x, mean)[0], F.linear(x, layer.weight_mu, layer.bias_mu))


def test_posterior_draws_are_views_of_a_range() -> None:
    layer = BayesLinear(3, 2)
    posterior = sample_posterior(layer, 5)
    middle = posterior.draws(1, 4)
    assert middle.num_samples == 3
    assert torch.equal(middle[layer].bias, posterior[layer].bias[1:4])
    assert middle[layer].weight.data_ptr() == posterior[layer].weight[1].data_ptr()
    for start, stop in ((2, 2), (-1, 3), (0, 6)):
        with pytest.raises(ValueError, match="start < stop"):
            posterior.draws(start, stop)


@pytest.mark.parametrize("per_pass", [1, 3, 8, 1000])
def test_class_probabilities_in_chunks_of_draws_equal_one_pass(per_pass: int) -> None:
    model = BayesianCNN(classes=CIFAR10_CLASSES, rho_init=-3.0).eval()
    posterior = sample_posterior(model, 5, seed=0)
    images = torch.rand(2, 3, 32, 32)
    one_pass = torch.softmax(model(images, posterior), dim=-1)
    chunked = class_probability_samples(model, images, posterior, image_draws_per_pass=per_pass)
    assert chunked.shape == (5, 2, 10)
    torch.testing.assert_close(chunked, one_pass, rtol=1e-4, atol=1e-6)
    # The default on the CPU chunks too, with the same answer.
    torch.testing.assert_close(
        class_probability_samples(model, images, posterior), one_pass, rtol=1e-4, atol=1e-6
    )


def test_posterior_of_another_model_is_rejected() -> None:
    a, b = BayesLinear(3, 2), BayesLinear(3, 2)
    with pytest.raises(KeyError, match="no posterior draws"):
        b(torch.randn(1, 3), sample_posterior(a, 2))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="prior_sigma"):
        BayesLinear(2, 2, prior_sigma=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        sample_posterior(BayesLinear(2, 2), 0)
    with pytest.raises(ValueError, match="no Bayesian layers"):
        sample_posterior(torch.nn.Linear(2, 2), 2)
