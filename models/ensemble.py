"""Ensembles: K networks of one architecture, whose posterior is the mixture of theirs.

A mean-field posterior under-states what a network does not know; K networks trained apart
(by seed and data order) disagree where the data leaves them free to, and that disagreement is
what an ensemble adds to the epistemic term (Lakshminarayanan et al. 2017; Ovadia et al.
2019). The members may be Bayesian (each a posterior of its own) or deterministic (a deep
ensemble of Gaussian heads, whose only epistemic term is the spread between members).

The S posterior draws are spread over the members, draw s from member s mod K
(:func:`~models.layers.sample_mixture_posterior`), and run as one vectorised pass through the
first member's forward: only the draws' weights differ between members; what they share (the
standardisation of inputs and target, fitted on the same training rows) is checked to agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from models.cnn import BayesianCNN
from models.layers import Posterior, sample_mixture_posterior
from models.standardize import Standardize
from models.tabular import TabularBNN, TabularGaussian

__all__ = ["ENSEMBLE_SUFFIX", "MEMBER_CLASSES", "Ensemble"]

MemberClass = type[TabularBNN] | type[TabularGaussian] | type[BayesianCNN]
MEMBER_CLASSES: dict[str, MemberClass] = {
    cls.kind: cls for cls in (TabularBNN, TabularGaussian, BayesianCNN)
}
# An ensemble's kind is its members' kind with this after it: "tabular-bnn-ensemble".
ENSEMBLE_SUFFIX = "-ensemble"


class Ensemble(nn.Module):
    """K networks of kind ``member_kind``, built from ``member`` (their constructor arguments).

    ``forward(x, posterior)`` runs S draws of :meth:`sample_posterior` at once; an ensemble
    has no single network to run without them.
    """

    def __init__(self, *, member_kind: str, members: int, member: dict[str, Any]) -> None:
        super().__init__()
        if member_kind not in MEMBER_CLASSES:
            raise ValueError(
                f"unknown member kind {member_kind!r}; one of {sorted(MEMBER_CLASSES)}"
            )
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        member_class = MEMBER_CLASSES[member_kind]
        if member_class is TabularBNN and member.get("noise") == "homoscedastic":
            # Its noise level is a parameter outside the layers a draw sets: it would be the
            # first member's for every draw.
            raise ValueError("ensemble members must be heteroscedastic, not homoscedastic")
        self.members = nn.ModuleList(member_class(**member) for _ in range(members))
        self.member_kind = member_kind
        self.kind = member_kind + ENSEMBLE_SUFFIX
        self.task: str = member_class.task
        self.config: dict[str, Any] = {"members": members, "member": dict(member)}

    @classmethod
    def of(cls, members: Sequence[nn.Module]) -> Ensemble:
        """An ensemble holding (copies of) trained ``members``, all of one kind and config."""
        first = members[0]
        kinds = {getattr(m, "kind", None) for m in members}
        configs = [getattr(m, "config", None) for m in members]
        if len(kinds) != 1 or any(config != configs[0] for config in configs):
            raise ValueError("ensemble members must share their kind and configuration")
        ensemble = cls(member_kind=first.kind, members=len(members), member=first.config)
        for target, source in zip(ensemble.members, members, strict=True):
            target.load_state_dict(source.state_dict())
        ensemble.check_shared()
        return ensemble.to(next(first.parameters()).device)

    def check_shared(self) -> None:
        """The members' standardisations agree (they were fitted on the same rows): the first
        member's forward applies its own to every draw."""
        first = self.members[0]
        for index, member in enumerate(self.members[1:], start=1):
            for (name, ours), (_, theirs) in zip(
                _standardizations(first), _standardizations(member), strict=True
            ):
                if not (
                    torch.equal(ours.mean, theirs.mean) and torch.equal(ours.scale, theirs.scale)
                ):
                    raise ValueError(
                        f"member {index}'s {name} differs from member 0's: ensemble members "
                        "must be standardised on the same training rows"
                    )

    def sample_posterior(self, num_samples: int, seed: int) -> Posterior:
        """Draw s from member s mod K; draws are the same for every total, as for one network."""
        return sample_mixture_posterior(list(self.members), num_samples, seed)

    def forward(self, x: Tensor, posterior: Posterior | None = None) -> Any:
        if posterior is None:
            raise ValueError("an ensemble runs with posterior draws: see sample_posterior")
        return self.members[0](x, posterior)

    # What the service reads of a model of its task kind: the first member's, shared by all.

    @property
    def features(self) -> tuple[str, ...]:
        return self.members[0].features

    @property
    def target_name(self) -> str:
        return self.members[0].target_name

    @property
    def standardize(self) -> Standardize:
        return self.members[0].standardize

    @property
    def classes(self) -> tuple[str, ...]:
        return self.members[0].classes

    @property
    def image_size(self) -> int:
        return self.members[0].image_size


def _standardizations(model: nn.Module) -> list[tuple[str, Standardize]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Standardize)]


def single_or_ensemble(networks: Sequence[nn.Module]) -> nn.Module:
    """One trained network as it is, or several joined as an :class:`Ensemble`: what
    ``--members K`` saves."""
    return networks[0] if len(networks) == 1 else Ensemble.of(networks)
