"""The model repository a benchmark serves, checked before any timing starts.

The HTTP level times ``/predict/wine`` and ``/predict/cifar`` as a client calls them, so it
needs the models those routes serve by default; the model level times whatever the
repository holds. Either way a missing file is found before the first measurement, not
minutes into a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from models.checkpoint import manifest_path
from service.repository import find_models
from service.schemas import CIFAR_DEFAULT, CIFAR_FAMILY, WINE_DEFAULT, WINE_FAMILY, family_model

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
# What /predict/wine and /predict/cifar serve without ?model=: /predict/FAMILY?model=X is FAMILY-X.
WINE_MODEL = family_model(WINE_FAMILY, WINE_DEFAULT)
CIFAR_MODEL = family_model(CIFAR_FAMILY, CIFAR_DEFAULT)
ROUTE_MODELS = (WINE_MODEL, CIFAR_MODEL)


def repository(folder: Path = DEFAULT_DIR, required: Iterable[str] = ()) -> dict[str, Path]:
    """Model name → checkpoint of every model in ``folder``, once each has its manifest and
    the ``required`` models are among them."""
    found = find_models(folder)
    missing = [f"{folder / name}.safetensors" for name in required if name not in found]
    manifests = (manifest_path(path) for path in found.values())
    missing += [str(manifest) for manifest in manifests if not manifest.is_file()]
    if missing:
        raise FileNotFoundError(
            f"checkpoints missing: {', '.join(missing)}; `make checkpoints` trains them"
        )
    return found
