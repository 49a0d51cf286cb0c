"""The task kinds a model can declare: what its input is and what its answer means.

Plain strings, free of torch, so the client and the service share them with the models.
"""

from typing import Final

TABULAR_REGRESSION: Final = "tabular-regression"
"""Named numeric features in; a Gaussian predictive over one numeric target out."""

IMAGE_CLASSIFICATION: Final = "image-classification"
"""An image in; probabilities over named classes out."""
