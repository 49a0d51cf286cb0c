"""Choose a wine ensemble's settings without the test rows: ``python -m training.sweep_wine``.

The test split only reports; settings are chosen here, on a *selection* split: 15% of the
training rows, held out from every member (each member still holds out rows of its own for
early stopping, as ``train_wine --members`` does). Each configuration is trained as a K-member
ensemble on the rest and scored on the selection rows as the service answers: RMSE of the
mean, NLL of the predictive mixture, coverage of the 95% interval. One line per
configuration; ``--json`` keeps them. The committed ensembles' settings, and what this found,
are in ``reports/NOTES.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

from models.ensemble import single_or_ensemble
from training.cli import run_script
from training.datasets.location import DataNotFoundError
from training.datasets.wine import WINE_FEATURES, WINE_TARGET, load_wine
from training.evaluate import evaluate_regression
from training.tabular import TEST_SAMPLES, TabularData, TabularSettings, fit_members

SELECTION_FRACTION = 0.15
SELECTION_SEED = 2026  # not a member's seed: the selection rows are nobody's early-stopping rows
# Per model: (hidden widths, prior sigma (bnn only), lr), the committed settings first.
GRID: dict[str, list[tuple[tuple[int, ...], float, float]]] = {
    "gaussian": [
        ((50,), 1.0, 1e-3),
        ((64, 64), 1.0, 1e-3),
        ((128, 128), 1.0, 1e-3),
        ((256, 256), 1.0, 1e-3),
        ((128, 128, 128), 1.0, 1e-3),
        ((512, 512), 1.0, 1e-3),
        ((256, 256, 256), 1.0, 1e-3),
        ((256, 256), 1.0, 3e-4),
    ],
    "bnn": [((64, 64, 64), 1.0, 1e-3), ((128, 128), 1.0, 1e-3), ((64, 64, 64), 0.5, 1e-3)],
}


def selection_data(data_dir: Path | None) -> TabularData:
    """The wine training rows split into fit rows and selection rows (as ``x_test``)."""
    split = load_wine(data_dir)
    x_fit, x_sel, y_fit, y_sel = train_test_split(
        split.x_train, split.y_train, test_size=SELECTION_FRACTION, random_state=SELECTION_SEED
    )
    return TabularData(
        x_train=x_fit,
        y_train=y_fit,
        x_test=x_sel,
        y_test=y_sel,
        features=WINE_FEATURES,
        target=WINE_TARGET,
        description={},
    )


def score(data: TabularData, settings: TabularSettings) -> dict[str, float | None]:
    """Train ``settings.members`` networks as ``train_wine`` does; score them on selection."""
    fitted = fit_members(data, settings, device=torch.device("cpu"), progress=False)
    model = single_or_ensemble([f.model for f in fitted])
    return evaluate_regression(model, data.x_test, data.y_test, samples=TEST_SAMPLES)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(GRID), default=sorted(GRID))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000, help="at most (early stopping)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    args = parser.parse_args(argv)

    data = selection_data(args.data_dir)
    base = TabularSettings(
        model="bnn",
        hidden=(),
        noise="heteroscedastic",
        prior_sigma=1.0,
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        patience=100,
        val_fraction=0.15,
        seed=0,
        members=args.members,
    )
    rows: list[dict[str, object]] = []
    for model in args.models:
        for hidden, prior_sigma, lr in GRID[model]:
            settings = replace(base, model=model, hidden=hidden, prior_sigma=prior_sigma, lr=lr)
            start = time.perf_counter()
            metrics = score(data, settings)
            row = {"model": model, "hidden": list(hidden), "prior_sigma": prior_sigma, "lr": lr}
            row |= {"members": args.members, "seconds": round(time.perf_counter() - start)}
            rows.append(row | {"selection": metrics})
            print(
                f"{model:8} hidden={hidden} prior={prior_sigma} lr={lr} K={args.members}: "
                f"RMSE {metrics['rmse']:.4f}  NLL {metrics['nll']:.4f}  "
                f"PICP95 {metrics['picp_95']:.3f}  ({row['seconds']} s)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    run_script(main, (DataNotFoundError,))
