"""Posterior predictive summaries and test-set metrics for sampled Bayesian models."""

from uncertainty.classification import ClassificationSummary, entropy, summarize_classification
from uncertainty.metrics import (
    accuracy,
    brier_score,
    classification_nll,
    expected_calibration_error,
    interval_coverage,
    mean_interval_width,
    mixture_nll,
    rmse,
)
from uncertainty.mixture import mixture_cdf, mixture_quantile
from uncertainty.regression import RegressionSummary, summarize_regression

__all__ = [
    "ClassificationSummary",
    "RegressionSummary",
    "accuracy",
    "brier_score",
    "classification_nll",
    "entropy",
    "expected_calibration_error",
    "interval_coverage",
    "mean_interval_width",
    "mixture_cdf",
    "mixture_nll",
    "mixture_quantile",
    "rmse",
    "summarize_classification",
    "summarize_regression",
]
