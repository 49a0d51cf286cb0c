import math

import numpy as np
import pytest
import torch

from uncertainty.classification import ClassificationSummary, entropy, summarize_classification


def _random_probs(num_samples: int, n: int, c: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_samples, n, c, generator=gen, dtype=torch.float64).mul(2).softmax(-1)


def test_entropy_matches_categorical_including_one_hot() -> None:
    p = torch.tensor(
        [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.25, 0.75]],
        dtype=torch.float64,
    )
    expected = torch.distributions.Categorical(probs=p).entropy()
    got = entropy(p)
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, expected)
    assert got[1].item() == 0.0
    assert got[2].item() == pytest.approx(math.log(3))


def test_entropy_along_other_dim() -> None:
    p = _random_probs(1, 4, 5, seed=0)[0]
    torch.testing.assert_close(entropy(p.T, dim=0), entropy(p))


@pytest.mark.parametrize(("num_samples", "level"), [(1, 0.9), (2, 0.5), (10, 0.9), (33, 0.95)])
def test_intervals_match_numpy_quantile(num_samples: int, level: float) -> None:
    probs = _random_probs(num_samples, 6, 4, seed=num_samples)
    summary = summarize_classification(probs, level)
    lower, upper = np.quantile(probs.numpy(), [(1 - level) / 2, (1 + level) / 2], axis=0)
    np.testing.assert_allclose(summary.lower.numpy(), lower, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(summary.upper.numpy(), upper, rtol=1e-12, atol=1e-15)


def test_mean_probabilities_sum_to_one() -> None:
    probs = _random_probs(9, 5, 7, seed=1)
    summary = summarize_classification(probs, 0.9)
    assert isinstance(summary, ClassificationSummary)
    np.testing.assert_allclose(summary.probabilities.numpy(), probs.numpy().mean(axis=0))
    torch.testing.assert_close(summary.probabilities.sum(-1), torch.ones(5, dtype=torch.float64))
    assert summary.total.shape == summary.aleatoric.shape == summary.epistemic.shape == (5,)
    assert torch.all(summary.epistemic >= 0)


def test_identical_samples_have_no_epistemic_uncertainty() -> None:
    row = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    summary = summarize_classification(row.expand(5, 2, 3), 0.9)
    torch.testing.assert_close(summary.epistemic, torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(summary.aleatoric, summary.total)
    torch.testing.assert_close(summary.total, torch.distributions.Categorical(probs=row).entropy())


def test_confident_disagreement_is_all_epistemic() -> None:
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    summary = summarize_classification(probs, 0.9)
    assert summary.total.item() == pytest.approx(math.log(2))
    assert summary.aleatoric.item() == 0.0
    assert summary.epistemic.item() == pytest.approx(math.log(2))
    torch.testing.assert_close(summary.probabilities, torch.tensor([[0.5, 0.5]]))


@pytest.mark.parametrize("level", [0.0, 1.0, 1.1, math.nan])
def test_rejects_bad_level(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        summarize_classification(_random_probs(2, 2, 2, seed=0), level)


def test_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"\(S, N, C\)"):
        summarize_classification(torch.full((4, 3), 1 / 3), 0.9)
