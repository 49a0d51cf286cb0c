"""Regression networks for any numeric table: named features in, a Gaussian over the target out.

Both predict N(mu, sigma²) over the target. :class:`TabularBNN` puts a posterior on every weight
and bias (epistemic uncertainty) and models the noise (aleatoric); :class:`TabularGaussian` is
one deterministic network with a Gaussian head, aleatoric only. The feature names, the target's
name and the standardisation of both live in the model (config and buffers), so a checkpoint
is all the service needs to accept a row and answer in the target's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import BayesLinear, Posterior, linear_draws
from models.standardize import Standardize
from models.task import TABULAR_REGRESSION

NoiseModel = Literal["heteroscedastic", "homoscedastic"]

# Lower bound on the predicted sigma, in standardised target units: keeps the
# Gaussian likelihood finite when the network grows over-confident.
_MIN_SIGMA = 1e-3


class TabularRegressor(nn.Module):
    """What both tabular networks share: features, target, standardisation, output units.

    ``forward`` returns ``(mu, sigma)`` in target units, each ``N`` or, with a posterior of S
    draws, ``S × N``.
    """

    kind: ClassVar[str]
    task: ClassVar[str] = TABULAR_REGRESSION

    def __init__(self, features: Sequence[str], target: str) -> None:
        super().__init__()
        features = tuple(features)
        if not features:
            raise ValueError("a tabular model needs at least one feature")
        if len(set(features)) != len(features):
            raise ValueError(f"feature names must be distinct, got {list(features)}")
        self.features: tuple[str, ...] = features
        self.target_name: str = target
        self.config: dict[str, Any] = {"features": list(features), "target": target}
        self.standardize = Standardize((len(features),))
        self.target = Standardize(())

    def fit_standardization(self, x: Tensor, y: Tensor) -> None:
        """Fit the input and target standardisation on the training rows."""
        self.standardize.fit(x.mean(0), x.std(0, correction=0))
        self.target.fit(y.mean(), y.std(correction=0))

    def _to_target_units(self, mu: Tensor, raw_sigma: Tensor) -> tuple[Tensor, Tensor]:
        sigma = F.softplus(raw_sigma) + _MIN_SIGMA
        return self.target.inverse(mu), sigma * self.target.scale


class TabularBNN(TabularRegressor):
    """Fully Bayesian MLP: every weight and bias has a Gaussian posterior.

    ``noise="heteroscedastic"`` adds a second output for a per-input sigma;
    ``"homoscedastic"`` learns one noise level (a point estimate).
    """

    kind: ClassVar[str] = "tabular-bnn"

    def __init__(
        self,
        *,
        features: Sequence[str],
        target: str,
        hidden: Sequence[int] = (50,),
        prior_sigma: float = 1.0,
        rho_init: float = -5.0,
        noise: NoiseModel = "heteroscedastic",
        local_reparam: bool = True,
    ) -> None:
        super().__init__(features, target)
        if noise not in ("heteroscedastic", "homoscedastic"):
            raise ValueError(f"noise must be 'heteroscedastic' or 'homoscedastic', got {noise!r}")
        self.noise = noise
        self.config |= {
            "hidden": list(hidden),
            "prior_sigma": prior_sigma,
            "rho_init": rho_init,
            "noise": noise,
            "local_reparam": local_reparam,
        }
        bayes = {"prior_sigma": prior_sigma, "rho_init": rho_init, "local_reparam": local_reparam}
        widths = [len(self.features), *hidden]
        self.hidden = nn.ModuleList(BayesLinear(a, b, **bayes) for a, b in pairwise(widths))
        self.head = BayesLinear(widths[-1], 2 if noise == "heteroscedastic" else 1, **bayes)
        if noise == "homoscedastic":
            self.noise_rho = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor, posterior: Posterior | None = None) -> tuple[Tensor, Tensor]:
        h = self.standardize(x)
        for layer in self.hidden:
            h = F.relu(layer(h, posterior))
        out = self.head(h, posterior)
        if self.noise == "heteroscedastic":
            raw_sigma = out[..., 1]
        else:
            raw_sigma = self.noise_rho.expand(out.shape[:-1])
        return self._to_target_units(out[..., 0], raw_sigma)


class TabularGaussian(TabularRegressor):
    """Deterministic MLP with a Gaussian head: ``(mu, sigma)``, each of shape ``N``."""

    kind: ClassVar[str] = "tabular-gaussian"

    def __init__(
        self, *, features: Sequence[str], target: str, hidden: Sequence[int] = (50,)
    ) -> None:
        super().__init__(features, target)
        self.config |= {"hidden": list(hidden)}
        widths = [len(self.features), *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.head = nn.Linear(widths[-1], 2)

    def forward(self, x: Tensor, posterior: Posterior | None = None) -> tuple[Tensor, Tensor]:
        """One network, or (``posterior``: S sets of weights for its layers, as an ensemble of
        such networks draws them) S at once, ``S × N``."""

        def linear(layer: nn.Linear, h: Tensor) -> Tensor:
            return layer(h) if posterior is None else linear_draws(h, posterior[layer])

        h = self.standardize(x)
        for layer in self.hidden:
            h = F.relu(linear(layer, h))
        out = linear(self.head, h)
        return self._to_target_units(out[..., 0], out[..., 1])
