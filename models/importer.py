"""Import PyTorch-BayesianCNN's BBB3Conv3FC checkpoints (the reference notebook's model).

Their state dicts name each layer's posterior ``<layer>.W_mu``, ``<layer>.W_rho``,
``<layer>.bias_mu`` and ``<layer>.bias_rho`` for conv1-3 and fc1-3, with
sigma = log1p(exp(rho)), the same softplus as ours, so the tensors copy over as
they are. Their CIFAR-10 pipeline feeds raw [0, 1] pixels, so the imported
model's normalisation is the identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from models.checkpoint import CheckpointError
from models.cnn import BayesianCNN

LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2", "fc3")
# Their parameter suffix → ours.
_RENAMES = {
    "W_mu": "weight_mu",
    "W_rho": "weight_rho",
    "bias_mu": "bias_mu",
    "bias_rho": "bias_rho",
}


def load_bayesiancnn_file(
    path: str | Path, *, classes: Sequence[str], prior_sigma: float = 0.1
) -> BayesianCNN:
    """Read a ``.pt`` state dict with ``torch.load(weights_only=True)`` and convert it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of errors for bad or unsafe files
        raise CheckpointError(f"cannot read {path} as a tensors-only state dict: {exc}") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return convert_bayesiancnn_state(state, classes=classes, prior_sigma=prior_sigma)


def convert_bayesiancnn_state(
    state: Mapping[str, Tensor], *, classes: Sequence[str], prior_sigma: float = 0.1
) -> BayesianCNN:
    """A :class:`BayesianCNN` for ``classes`` holding the posterior of a BBB3Conv3FC state dict."""
    ours: dict[str, Tensor] = {}
    for layer in LAYERS:
        for theirs, name in _RENAMES.items():
            key = f"{layer}.{theirs}"
            if key not in state:
                raise CheckpointError(f"not a BBB3Conv3FC state dict: missing {key!r}")
            ours[f"{layer}.{name}"] = state[key]
    unknown = sorted(set(state) - {f"{layer}.{theirs}" for layer in LAYERS for theirs in _RENAMES})
    if unknown:
        raise CheckpointError(f"unexpected keys in BBB3Conv3FC state dict: {unknown}")

    num_classes = state["fc3.W_mu"].shape[0]
    if num_classes != len(classes):
        raise CheckpointError(
            f"the state dict has {num_classes} classes, but {len(classes)} class names were given"
        )
    model = BayesianCNN(classes=classes, prior_sigma=prior_sigma)
    target = model.state_dict()
    for key, tensor in ours.items():
        if tensor.shape != target[key].shape:
            raise CheckpointError(
                f"{key}: shape {tuple(tensor.shape)} does not match BBB3Conv3FC's "
                f"{tuple(target[key].shape)}"
            )
        target[key] = tensor.detach().float()
    model.load_state_dict(target)
    return model.eval()
