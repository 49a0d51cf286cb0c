"""The networks: shapes, positivity, standardisation, names and classes inside the model."""

from __future__ import annotations

import pytest
import torch

from models.cnn import BayesianCNN
from models.layers import sample_posterior
from models.tabular import TabularBNN, TabularGaussian
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from training.datasets.cifar import CIFAR10_CLASSES
from training.datasets.wine import WINE_FEATURES, WINE_TARGET

FEATURES = ("depth", "flow rate", "temperature")


@pytest.mark.parametrize("noise", ["heteroscedastic", "homoscedastic"])
def test_tabular_bnn_outputs(noise: str) -> None:
    model = TabularBNN(features=FEATURES, target="yield", hidden=[8, 8], noise=noise).eval()
    x = torch.randn(5, len(FEATURES))
    mu, sigma = model(x)
    assert mu.shape == sigma.shape == (5,)
    mu_s, sigma_s = model(x, sample_posterior(model, 7))
    assert mu_s.shape == sigma_s.shape == (7, 5)
    assert (sigma_s > 0).all()
    if noise == "homoscedastic":
        assert torch.allclose(sigma_s, sigma_s[0, 0])


def test_names_live_in_the_model_and_its_config() -> None:
    model = TabularGaussian(features=FEATURES, target="yield", hidden=[4])
    assert model.features == FEATURES and model.target_name == "yield"
    assert model.config == {"features": list(FEATURES), "target": "yield", "hidden": [4]}
    assert model.task == TABULAR_REGRESSION and model.kind == "tabular-gaussian"
    assert TabularBNN(features=FEATURES, target="yield").kind == "tabular-bnn"
    with pytest.raises(ValueError, match="distinct"):
        TabularGaussian(features=("a", "a"), target="y")
    with pytest.raises(ValueError, match="at least one feature"):
        TabularBNN(features=(), target="y")


def test_tabular_outputs_are_in_target_units() -> None:
    # With the network's output zeroed, mu is the target mean and sigma scales with its std.
    model = TabularGaussian(features=WINE_FEATURES, target=WINE_TARGET, hidden=[4])
    model.target.fit(torch.tensor(6.0), torch.tensor(2.0))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    mu, sigma = model(torch.randn(3, len(WINE_FEATURES)))
    torch.testing.assert_close(mu, torch.full((3,), 6.0))
    expected_sigma = 2.0 * (torch.nn.functional.softplus(torch.tensor(0.0)) + 1e-3)
    torch.testing.assert_close(sigma, expected_sigma.expand(3))


def test_standardisation_is_applied_inside_the_model() -> None:
    model = TabularGaussian(features=WINE_FEATURES, target=WINE_TARGET, hidden=[4])
    x = torch.randn(6, len(WINE_FEATURES)) * 10 + 3
    before = model(x)[0]
    model.standardize.fit(torch.full((11,), 3.0), torch.full((11,), 10.0))
    after = model(x)[0]
    assert not torch.allclose(before, after)
    model.standardize.fit(torch.zeros(11), torch.ones(11))
    torch.testing.assert_close(model(x)[0], before)
    with pytest.raises(ValueError, match="positive"):
        model.standardize.fit(torch.zeros(11), torch.zeros(11))


def test_fit_standardization_uses_the_population_std() -> None:
    model = TabularBNN(features=("a", "b"), target="y", hidden=[3])
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    model.fit_standardization(x, torch.tensor([2.0, 6.0]))
    torch.testing.assert_close(model.standardize.mean, torch.tensor([2.0, 20.0]))
    torch.testing.assert_close(model.standardize.scale, torch.tensor([1.0, 10.0]))
    torch.testing.assert_close(model.target.mean, torch.tensor(4.0))
    torch.testing.assert_close(model.target.scale, torch.tensor(2.0))


def test_cifar_cnn_shapes_and_parameter_count() -> None:
    model = BayesianCNN(classes=CIFAR10_CLASSES).eval()
    assert model.classes == CIFAR10_CLASSES and model.task == IMAGE_CLASSIFICATION
    images = torch.rand(2, 3, 32, 32)
    assert model(images).shape == (2, 10)
    assert model(images, sample_posterior(model, 3)).shape == (3, 2, 10)
    # BBB3Conv3FC: 3→32→64→128 convolutions (5×5) and 512→1000→1000→10, mu and rho each.
    weights = (32 * 3 + 64 * 32 + 128 * 64) * 25 + 512 * 1000 + 1000 * 1000 + 1000 * 10
    biases = 32 + 64 + 128 + 1000 + 1000 + 10
    assert sum(p.numel() for p in model.parameters()) == 2 * (weights + biases)


def test_cnn_for_other_classes_and_sizes() -> None:
    model = BayesianCNN(classes=("circle", "square"), image_size=48).eval()
    assert model(torch.rand(3, 3, 48, 48)).shape == (3, 2)
    # 48 → 23 → 11 → 4 after the three conv + pool stages: fc1 takes 4·4·128 inputs.
    assert model.fc1.weight_mu.shape == (1000, 4 * 4 * 128)
    with pytest.raises(ValueError, match="too small"):
        BayesianCNN(classes=("a", "b"), image_size=16)
    with pytest.raises(ValueError, match="at least two classes"):
        BayesianCNN(classes=("only",))
    with pytest.raises(ValueError, match="distinct"):
        BayesianCNN(classes=("a", "a"))


def test_invalid_noise_model() -> None:
    with pytest.raises(ValueError, match="noise"):
        TabularBNN(features=FEATURES, target="y", noise="gaussian")  # type: ignore[arg-type]
