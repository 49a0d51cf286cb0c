"""Benchmarks that put the service's batching next to its baselines, side by side in one run.

Each module is a script (``python -m bench.<name> --help``); ``python -m bench.run`` runs them
all and writes ``bench/RESULTS.md``. Only ratios measured in the same run are claims: the
machines are shared and absolute numbers drift.
"""
