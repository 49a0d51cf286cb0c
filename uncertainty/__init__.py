"""Posterior predictive summaries and test-set metrics for sampled Bayesian models.

Import the module you need (``uncertainty.regression``, ``uncertainty.metrics``, ...): the
service needs the summaries only, not the metrics, whose torchmetrics pulls in SciPy and
matplotlib (a second and 100 MB of a serving process).
"""
