"""Tabular regression: a row of named features in, a Gaussian predictive over the target out.

Body: ``{"instances": [INSTANCE, ...]}`` or one bare INSTANCE, where an INSTANCE is an object
with exactly the model's features or an array of them in the model's order. Answer per row:
mean, std, the exact central interval of the predictive mixture, and the epistemic/aleatoric
split (``epistemic_std`` null for a model without a distribution over networks). Opt-in
(``density=G``, a :class:`DensityJob`): the mixture's density on a grid of about G points, for
drawing it; computed beside the summaries, where the batch runs.

As tensors (``/v2``): input ``input``, FP32 [N, F], the features in the model's order; outputs
``mean``, ``std``, ``lower``, ``upper``, ``epistemic_std`` (absent without a distribution over
networks) and ``aleatoric_std``, each FP32 [N].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import torch
from starlette.requests import Request
from torch import Tensor

from models.layers import Posterior
from models.predictive import network_count, regression_samples
from models.tabular import TabularRegressor
from models.task import TABULAR_REGRESSION
from service.errors import InputError, error_entry
from service.graphs import CUDA_GRAPHS, RegressionGraphs, capture_regression_graphs
from service.inputs import check_content_type, parse_json, table_rows
from service.predictor import EAGER, BatchResult, Job, Predictor, row_bounds
from service.protocol import ProtocolError
from service.protocol.tensors import RequestTensor, TensorSpec, match_input
from service.schemas import RegressionResponse, tabular_body_adapter
from service.tasks.base import Decoded, Limits, Task
from uncertainty.density import mixture_density_grid
from uncertainty.regression import summarize_regression

__all__ = ["DensityJob", "RegressionPredictor", "RegressionResult", "TabularRegression"]

JSON = "application/json"
# The v2 tensors: the input's name, and the outputs in order (each FP32, one value per row).
INPUT_TENSOR: Final = "input"
EPISTEMIC_TENSOR: Final = "epistemic_std"
OUTPUT_TENSORS: Final = ("mean", "std", "lower", "upper", EPISTEMIC_TENSOR, "aleatoric_std")
FP32: Final = "FP32"
# ``density=G``: at most this many grid points, for at most this many rows of one request
# (S × rows × G evaluations of a Gaussian: it is meant for the few rows a person looks at).
MAX_DENSITY_POINTS: Final = 1000
MAX_DENSITY_ROWS: Final = 64

# The body's shape for any model; each model's feature names are in GET /models.
_ROW_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "Exactly the model's features, by name (see GET /models).",
        },
        {
            "type": "array",
            "items": {"type": "number"},
            "description": "The model's features as numbers, in its order.",
        },
    ]
}
_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"instances": {"type": "array", "items": _ROW_SCHEMA, "minItems": 1}},
            "required": ["instances"],
            "additionalProperties": False,
        },
        *_ROW_SCHEMA["oneOf"],
    ]
}


@dataclass(frozen=True)
class RegressionResult(BatchResult):
    """Per-row summaries of the predictive mixture, float32."""

    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    aleatoric_std: np.ndarray
    epistemic_std: np.ndarray | None  # None: the model has no distribution over networks
    finite: np.ndarray  # per row: every number above is finite
    # Only for a DensityJob: each row's grid and the mixture's density there, N × G.
    density_x: np.ndarray | None = None
    density_pdf: np.ndarray | None = None


@dataclass(frozen=True)
class DensityJob(Job):
    """A job whose answer also holds each row's predictive density on ``density_points``
    evenly spaced points (plus the interval's ends and the mean)."""

    density_points: int = 200


class RegressionPredictor(Predictor[RegressionResult]):
    graphs: RegressionGraphs | None = None  # on CUDA, once :meth:`accelerate` captured them

    def accelerate(self, example: np.ndarray, *, samples: int, level: float, max_rows: int) -> str:
        """On CUDA, graphs of the whole pass at (``samples``, ``level``): :mod:`service.graphs`."""
        if self.device.type == "cuda":
            self.graphs = capture_regression_graphs(
                self, example, samples=samples, level=level, max_rows=max_rows
            )
            self.execution = CUDA_GRAPHS if self.graphs is not None else EAGER
        return self.execution

    def __call__(self, jobs: Sequence[Job]) -> list[RegressionResult]:
        if self.graphs is not None and self.graphs.serves(jobs):
            inputs = np.concatenate([job.inputs for job in jobs])
            return self.result(self.graphs.run(inputs)).split(jobs)
        return super().__call__(jobs)

    def forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        return regression_samples(self.model, inputs, posterior)

    def summarise(self, outputs: tuple[Tensor, ...], level: float) -> RegressionResult:
        summary = summarize_regression(outputs[0], outputs[1], level)
        return self.result(summary.stacked().cpu().numpy())

    def result(self, arrays: np.ndarray) -> RegressionResult:
        """The result from :meth:`RegressionSummary.stacked`'s rows, on the host."""
        mean, epistemic, aleatoric, std, lower, upper = arrays
        return RegressionResult(
            mean=mean,
            std=std,
            lower=lower,
            upper=upper,
            aleatoric_std=aleatoric,
            epistemic_std=epistemic if self.has_posterior else None,
            finite=np.isfinite(arrays).all(axis=0),
        )

    def per_job(
        self, jobs: Sequence[Job], outputs: tuple[Tensor, ...], results: list[RegressionResult]
    ) -> list[RegressionResult]:
        """For each :class:`DensityJob`, its rows' curves from its own S components, while the
        draws are still at hand (only the curves leave the device)."""
        if not any(isinstance(job, DensityJob) for job in jobs):
            return results
        bounds = row_bounds(jobs)
        for index, job in enumerate(jobs):
            if isinstance(job, DensityJob):
                rows = slice(bounds[index], bounds[index + 1])
                mu, sigma = (out[: job.samples, rows] for out in outputs)
                results[index] = _with_density(results[index], mu, sigma, job.density_points)
        return results


def _with_density(
    result: RegressionResult, mu: Tensor, sigma: Tensor, points: int
) -> RegressionResult:
    """``result`` with its rows' mixture densities (:func:`mixture_density_grid`)."""
    include = np.stack([result.lower, result.mean, result.upper], axis=1)
    grid = mixture_density_grid(mu, sigma, points, include=torch.from_numpy(include).to(mu.device))
    # Float32, as every other number of the answer: the interval's ends and the mean then
    # read the same in the curve as in their own fields.
    x, pdf = (t.to(torch.float32).cpu().numpy() for t in (grid.x, grid.pdf))
    return dataclasses.replace(result, density_x=x, density_pdf=pdf)


class TabularRegression(Task[RegressionResult, bool]):
    """The decode context is whether the body was a batch, for the locations of errors."""

    name: ClassVar[str] = TABULAR_REGRESSION
    defaults: ClassVar[dict[str, Any]] = {
        "default_samples": 100,
        "max_samples": 1000,
        "max_instances": 1024,
        "max_batch_size": 1024,
    }
    response_model = RegressionResponse
    request_body: ClassVar[dict[str, Any]] = {JSON: {"schema": _BODY_SCHEMA}}

    model: TabularRegressor

    def __init__(self, model: TabularRegressor) -> None:
        super().__init__(model)
        self.features = model.features
        # The training means: a typical row, shown in the examples and used for warm-up.
        self.typical_row = model.standardize.mean.detach().cpu().numpy().astype(np.float32)
        self.body = tabular_body_adapter(self.features, self.typical_row.tolist())
        self._input = TensorSpec(
            INPUT_TENSOR,
            FP32,
            (-1, len(self.features)),
            (
                "instances",
                f"the {len(self.features)} features in order: {', '.join(self.features)}",
            ),
        )
        # Without a distribution over networks there is no epistemic part to answer.
        has_posterior = network_count(model) != 1
        self._outputs = tuple(
            TensorSpec(name, FP32, (-1,), ("instances",))
            for name in OUTPUT_TENSORS
            if has_posterior or name != EPISTEMIC_TENSOR
        )

    def describe(self) -> dict[str, Any]:
        return {
            "input": {
                "type": "features",
                "features": list(self.features),
                "target": self.model.target_name,
                "example": dict(zip(self.features, self.typical_row.tolist(), strict=True)),
            }
        }

    def warm_up_inputs(self) -> np.ndarray:
        return self.typical_row[None]

    def predictor(self, max_samples: int) -> RegressionPredictor:
        return RegressionPredictor(self.model, max_samples=max_samples)

    async def read(self, request: Request, limits: Limits) -> object:
        check_content_type(request.headers.get("content-type"), (JSON,))
        return parse_json(await request.body())

    async def decode(self, payload: object, limits: Limits) -> Decoded[bool]:
        rows = table_rows(payload, self.body, self.features, max_instances=limits.max_instances)
        return Decoded(rows, isinstance(payload, dict) and "instances" in payload)

    def encode(self, job: Job, result: RegressionResult, batched: bool) -> list[dict[str, Any]]:
        _check_finite(result, batched=batched)
        epistemic = result.epistemic_std if result.epistemic_std is not None else [None] * job.rows
        predictions = [
            {
                "mean": mean,
                "std": std,
                "interval": {"lower": lower, "upper": upper},
                "epistemic_std": epistemic_std,
                "aleatoric_std": aleatoric_std,
            }
            for mean, std, lower, upper, epistemic_std, aleatoric_std in zip(
                result.mean,
                result.std,
                result.lower,
                result.upper,
                epistemic,
                result.aleatoric_std,
                strict=True,
            )
        ]
        if result.density_x is not None and result.density_pdf is not None:
            for prediction, x, pdf in zip(
                predictions, result.density_x, result.density_pdf, strict=True
            ):
                prediction["density"] = {"x": x, "pdf": pdf}
        return predictions

    def tensor_inputs(self) -> tuple[TensorSpec, ...]:
        return (self._input,)

    def tensor_outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def tensor_metadata(self) -> dict[str, Any]:
        return {"features": list(self.features), "target": self.model.target_name}

    async def decode_tensors(
        self, inputs: Sequence[RequestTensor], limits: Limits
    ) -> Decoded[bool]:
        tensor, _ = match_input(inputs, (self._input,), max_batch=limits.max_instances)
        # float32 N × F, as /predict's decoder makes it, so both build the same Job.
        rows = np.require(tensor.array(), np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        bad = ~np.isfinite(rows)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise tensor.refuse(
                f"element [{row}, {column}] ({self.features[column]}) is {rows[row, column]}; "
                "features must be finite numbers within FP32's range"
            )
        return Decoded(rows, True)

    def encode_tensors(self, job: Job, result: RegressionResult, batched: bool) -> list[np.ndarray]:
        if not result.finite.all():
            overflown = ", ".join(str(int(i)) for i in np.flatnonzero(~result.finite))
            raise ProtocolError(
                f"input {INPUT_TENSOR!r}: the model's prediction overflows for row(s) "
                f"{overflown}: their values lie far outside the range of the training data"
            )
        # In OUTPUT_TENSORS' order; epistemic_std is None without a distribution over networks.
        summaries = (
            result.mean,
            result.std,
            result.lower,
            result.upper,
            result.epistemic_std,
            result.aleatoric_std,
        )
        arrays = dict(zip(OUTPUT_TENSORS, summaries, strict=True))
        return [arrays[spec.name] for spec in self._outputs]


def _check_finite(result: RegressionResult, *, batched: bool) -> None:
    """Inputs far outside the training data can overflow the network: say so, per instance."""
    if result.finite.all():
        return
    raise InputError.from_entries(
        [
            error_entry(
                loc=("body", "instances", int(i)) if batched else ("body",),
                msg="The model's prediction overflows for this input: its values lie far "
                "outside the range of the training data",
            )
            for i in np.flatnonzero(~result.finite)
        ]
    )
