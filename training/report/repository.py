"""Which models of the repository each part of the report scores, and that its data fits them.

Part F (``wine``, ``cifar``) scores every ``F-*`` model: the rule by which ``/predict/F?model=X``
serves model ``F-X``, so every model a route family answers for is in its part of the report,
and a new one is scored by adding its checkpoint, not by editing a list here. Other models of
the repository are left out: the report has no test data of theirs.
"""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import ServableModel
from models.cnn import BayesianCNN
from models.ensemble import Ensemble
from models.tabular import TabularRegressor
from service.repository import find_models
from service.schemas import family_model
from training.datasets.cifar import CIFAR10_CLASSES, IMAGE_SIZE
from training.datasets.wine import WINE_FEATURES

__all__ = ["ReportError", "check_cifar_model", "check_wine_model", "family_models"]


class ReportError(Exception):
    """The repository has nothing to score for a part, or a model does not fit its data."""


def family_models(folder: Path, part: str) -> dict[str, Path]:
    """Model name → checkpoint of every ``PART-*`` model in ``folder``, sorted by name."""
    if not folder.is_dir():
        raise ReportError(f"the model repository {folder} is not a folder (see --repository)")
    found = find_models(folder)
    prefix = family_model(part, "")
    # By name, not by file name: "wine-bnn" before "wine-bnn-ensemble" (its file after).
    models = {name: found[name] for name in sorted(found) if name.startswith(prefix)}
    if not models:
        raise ReportError(
            f"model repository {folder} holds no {part}-* model (it holds: "
            f"{', '.join(found) or 'none'}); leave the {part} part out with --tasks"
        )
    return models


def _network(model: ServableModel) -> ServableModel:
    """One network of ``model``: itself, or an ensemble's first member (all share a kind, a
    configuration and their standardisations)."""
    return model.members[0] if isinstance(model, Ensemble) else model


def check_wine_model(name: str, model: ServableModel) -> TabularRegressor | Ensemble:
    """``model`` (one network or an ensemble), if the wine split's test rows are its input;
    else say why not."""
    network = _network(model)
    if not isinstance(network, TabularRegressor) or network.features != WINE_FEATURES:
        raise ReportError(
            f"{name} is scored on the wine split, as every wine-* model is, but it is a "
            f"{model.kind} model that does not take the wine features {list(WINE_FEATURES)}"
        )
    return model


def check_cifar_model(name: str, model: ServableModel) -> BayesianCNN | Ensemble:
    """``model`` (one network or an ensemble), if it classifies 32×32 images into the
    CIFAR-10 classes; else say why not."""
    network = _network(model)
    fits = (
        isinstance(network, BayesianCNN)
        and network.classes == CIFAR10_CLASSES
        and network.image_size == IMAGE_SIZE
    )
    if not fits:
        raise ReportError(
            f"{name} is scored on the CIFAR-10 test images, as every cifar-* model is, but it "
            f"is a {model.kind} model that does not classify {IMAGE_SIZE}×{IMAGE_SIZE} images "
            f"into the classes {list(CIFAR10_CLASSES)}"
        )
    return model
