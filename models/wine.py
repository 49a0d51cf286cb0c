"""Regression networks for the Wine Quality (white) task.

Both predict a Gaussian N(mu, sigma²) over the quality score. :class:`WineBNN`
puts a posterior on every weight and bias (epistemic uncertainty) and models the
noise (aleatoric); :class:`WineGaussian` is one deterministic network with a
Gaussian head, aleatoric only.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import BayesLinear, Posterior
from models.standardize import Standardize

# The eleven inputs in UCI column order; these names are the HTTP API's too.
WINE_FEATURES: tuple[str, ...] = (
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)

NoiseModel = Literal["heteroscedastic", "homoscedastic"]

# Lower bound on the predicted sigma, in standardised target units: keeps the
# Gaussian likelihood finite when the network grows over-confident.
_MIN_SIGMA = 1e-3


class WineBNN(nn.Module):
    """Fully Bayesian MLP: every weight and bias has a Gaussian posterior.

    ``noise="heteroscedastic"`` adds a second output for a per-input sigma;
    ``"homoscedastic"`` learns one noise level (a point estimate). Returns
    ``(mu, sigma)`` in quality-score units, each ``N`` or, with a posterior of
    S draws, ``S × N``.
    """

    kind: ClassVar[str] = "wine-bnn"

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] = (50,),
        prior_sigma: float = 1.0,
        rho_init: float = -5.0,
        noise: NoiseModel = "heteroscedastic",
        local_reparam: bool = True,
    ) -> None:
        super().__init__()
        if noise not in ("heteroscedastic", "homoscedastic"):
            raise ValueError(f"noise must be 'heteroscedastic' or 'homoscedastic', got {noise!r}")
        self.noise = noise
        self.config: dict[str, Any] = {
            "hidden": list(hidden),
            "prior_sigma": prior_sigma,
            "rho_init": rho_init,
            "noise": noise,
            "local_reparam": local_reparam,
        }
        bayes = {"prior_sigma": prior_sigma, "rho_init": rho_init, "local_reparam": local_reparam}
        widths = [len(WINE_FEATURES), *hidden]
        self.standardize = Standardize((len(WINE_FEATURES),))
        self.target = Standardize(())
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
        return _to_target_units(self.target, out[..., 0], raw_sigma)


class WineGaussian(nn.Module):
    """Deterministic MLP with a Gaussian head: ``(mu, sigma)``, each of shape ``N``."""

    kind: ClassVar[str] = "wine-gaussian"

    def __init__(self, *, hidden: tuple[int, ...] | list[int] = (50,)) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"hidden": list(hidden)}
        widths = [len(WINE_FEATURES), *hidden]
        self.standardize = Standardize((len(WINE_FEATURES),))
        self.target = Standardize(())
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.head = nn.Linear(widths[-1], 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.standardize(x)
        for layer in self.hidden:
            h = F.relu(layer(h))
        out = self.head(h)
        return _to_target_units(self.target, out[..., 0], out[..., 1])


def _to_target_units(target: Standardize, mu: Tensor, raw_sigma: Tensor) -> tuple[Tensor, Tensor]:
    sigma = F.softplus(raw_sigma) + _MIN_SIGMA
    return target.inverse(mu), sigma * target.scale
