"""The three networks: shapes, positivity, standardisation inside the model."""

from __future__ import annotations

import pytest
import torch

from models.cifar import CIFAR10_CLASSES, BayesianCNN
from models.layers import sample_posterior
from models.wine import WINE_FEATURES, WineBNN, WineGaussian


@pytest.mark.parametrize("noise", ["heteroscedastic", "homoscedastic"])
def test_wine_bnn_outputs(noise: str) -> None:
    model = WineBNN(hidden=[8, 8], noise=noise).eval()
    x = torch.randn(5, len(WINE_FEATURES))
    mu, sigma = model(x)
    assert mu.shape == sigma.shape == (5,)
    mu_s, sigma_s = model(x, sample_posterior(model, 7))
    assert mu_s.shape == sigma_s.shape == (7, 5)
    assert (sigma_s > 0).all()
    if noise == "homoscedastic":
        assert torch.allclose(sigma_s, sigma_s[0, 0])


def test_wine_outputs_are_in_target_units() -> None:
    # With the network's output zeroed, mu is the target mean and sigma scales with its std.
    model = WineGaussian(hidden=[4])
    model.target.fit(torch.tensor(6.0), torch.tensor(2.0))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    mu, sigma = model(torch.randn(3, len(WINE_FEATURES)))
    torch.testing.assert_close(mu, torch.full((3,), 6.0))
    expected_sigma = 2.0 * (torch.nn.functional.softplus(torch.tensor(0.0)) + 1e-3)
    torch.testing.assert_close(sigma, expected_sigma.expand(3))


def test_standardisation_is_applied_inside_the_model() -> None:
    model = WineGaussian(hidden=[4])
    x = torch.randn(6, len(WINE_FEATURES)) * 10 + 3
    before = model(x)[0]
    model.standardize.fit(torch.full((11,), 3.0), torch.full((11,), 10.0))
    after = model(x)[0]
    assert not torch.allclose(before, after)
    model.standardize.fit(torch.zeros(11), torch.ones(11))
    torch.testing.assert_close(model(x)[0], before)
    with pytest.raises(ValueError, match="positive"):
        model.standardize.fit(torch.zeros(11), torch.zeros(11))


def test_cifar_cnn_shapes_and_parameter_count() -> None:
    model = BayesianCNN().eval()
    assert model.classes == CIFAR10_CLASSES
    images = torch.rand(2, 3, 32, 32)
    assert model(images).shape == (2, 10)
    assert model(images, sample_posterior(model, 3)).shape == (3, 2, 10)
    # BBB3Conv3FC: 3→32→64→128 convolutions (5×5) and 512→1000→1000→10, mu and rho each.
    weights = (32 * 3 + 64 * 32 + 128 * 64) * 25 + 512 * 1000 + 1000 * 1000 + 1000 * 10
    biases = 32 + 64 + 128 + 1000 + 1000 + 10
    assert sum(p.numel() for p in model.parameters()) == 2 * (weights + biases)


def test_invalid_noise_model() -> None:
    with pytest.raises(ValueError, match="noise"):
        WineBNN(noise="gaussian")  # type: ignore[arg-type]
