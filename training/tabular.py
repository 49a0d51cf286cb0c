"""Train a regressor on a numeric table: the loop behind ``train_tabular`` and ``train_wine``.

``bnn`` is the full Bayes-by-Backprop network (every weight and bias stochastic, plus a noise
model); ``gaussian`` is a deterministic network with a Gaussian head. Part of the training
rows is held out for early stopping on the NLL of the predictive mixture; the best epoch is
kept, scored on the test rows, and written with its manifest. With ``members`` K > 1 the K
networks are trained one after the other, member k from seed + k (its initial weights and its
order of the rows, and the rows it holds out for early stopping), and written as one ensemble.
Every epoch's state is saved (:mod:`training.resume`): rerunning the command continues it.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.ensemble import single_or_ensemble
from models.layers import kl_divergence
from models.predictive import fixed_posterior, is_bayesian, regression_samples
from models.tabular import NoiseModel, TabularBNN, TabularGaussian, TabularRegressor
from training.cli import seed_everything
from training.datasets.table import check_not_constant
from training.evaluate import evaluate_regression
from training.manifest import write_manifest, written
from training.objective import negative_elbo
from training.resume import TrainingState, TrainingStates
from uncertainty.metrics import mixture_nll

ModelChoice = Literal["bnn", "gaussian"]
MODEL_CHOICES: tuple[ModelChoice, ...] = ("bnn", "gaussian")
# Posterior samples for the early-stopping score and for the test metrics.
VALIDATION_SAMPLES = 20
TEST_SAMPLES = 100


@dataclass(frozen=True)
class TabularSettings:
    """Everything that decides how a tabular model is trained (and the manifest records)."""

    model: ModelChoice
    hidden: tuple[int, ...]
    noise: NoiseModel
    prior_sigma: float
    epochs: int
    batch_size: int
    lr: float
    patience: int
    val_fraction: float
    seed: int
    train_rows: int | None = None
    members: int = 1


@dataclass(frozen=True)
class TabularData:
    """Train and test rows in ``features`` order, and how the manifest names the data."""

    x_train: np.ndarray  # float32, N × F
    y_train: np.ndarray  # float32, N
    x_test: np.ndarray
    y_test: np.ndarray
    features: tuple[str, ...]
    target: str
    description: dict[str, Any]  # source, split, fingerprint: written to the manifest


@dataclass(frozen=True)
class FittedRegressor:
    model: TabularRegressor
    fit_rows: int
    validation_rows: int
    epochs_run: int
    best_epoch: int  # 1-based
    validation_nll: float


def add_tabular_options(
    parser: argparse.ArgumentParser,
    *,
    hidden: dict[str, list[int]],
    patience: int,
    val_fraction: float = 0.15,
    ensemble_hidden: dict[str, list[int]] | None = None,
) -> None:
    """The options of the tabular training loop, with a script's defaults (``hidden``, and
    ``ensemble_hidden`` with ``--members`` if the script has its own for ensembles)."""
    widths = ", ".join(f"{w} for {model}" for model, w in hidden.items())
    if ensemble_hidden is not None:
        widths += "; with --members, " + ", ".join(
            f"{w} for {model}" for model, w in ensemble_hidden.items()
        )
    parser.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="bnn",
        help="bnn: Bayes by Backprop; gaussian: one deterministic network with a Gaussian head",
    )
    parser.add_argument(
        "--noise",
        choices=["heteroscedastic", "homoscedastic"],
        default="heteroscedastic",
        help="bnn only: the aleatoric noise model",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help=f"hidden layer widths; without it, {widths}",
    )
    parser.add_argument(
        "--val-fraction",
        type=_fraction,
        default=val_fraction,
        help="share of the training rows held out for early stopping",
    )
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=patience,
        help="stop after this many epochs without a better validation NLL",
    )
    parser.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help="use only the first k training rows (for quick checks)",
    )
    parser.add_argument(
        "--members",
        type=_positive_int,
        default=1,
        help="train K networks (seeds seed..seed+K-1) and write them as one ensemble",
    )


def _fraction(value: str) -> float:
    """argparse type of ``--val-fraction``: strictly between 0 and 1."""
    fraction = float(value)
    if not 0.0 < fraction < 1.0:
        raise argparse.ArgumentTypeError(f"{value}: expected a fraction between 0 and 1")
    return fraction


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer")
    return number


def settings_from_args(args: argparse.Namespace, hidden: dict[str, list[int]]) -> TabularSettings:
    """The settings of a parsed command line; ``hidden`` holds the widths per model choice."""
    return TabularSettings(
        model=args.model,
        hidden=tuple(args.hidden or hidden[args.model]),
        noise=args.noise,
        prior_sigma=args.prior_sigma,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        val_fraction=args.val_fraction,
        seed=args.seed,
        train_rows=args.train_rows,
        members=args.members,
    )


def build_regressor(
    features: Sequence[str], target: str, settings: TabularSettings
) -> TabularRegressor:
    if settings.model == "bnn":
        return TabularBNN(
            features=features,
            target=target,
            hidden=settings.hidden,
            prior_sigma=settings.prior_sigma,
            noise=settings.noise,
        )
    return TabularGaussian(features=features, target=target, hidden=settings.hidden)


def fit_regressor(
    data: TabularData,
    settings: TabularSettings,
    *,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = True,
    desc: str = "training",
    states: TrainingStates | None = None,
    member: int = 0,
) -> FittedRegressor:
    """Minibatch training with early stopping on the validation NLL; the best epoch's weights.

    The caller seeds torch first (:func:`training.cli.seed_everything`): the network's
    initial weights come from torch's global RNG, the minibatch order from ``generator``.
    With ``states``, each epoch's state is saved as ``member``'s, and a saved one continues.
    """
    if settings.epochs < 1:
        raise ValueError(f"training needs at least one epoch, got {settings.epochs}")
    x_train, y_train = data.x_train[: settings.train_rows], data.y_train[: settings.train_rows]
    # An ensemble's members hold out rows of their own (member k: split seed + k), for members
    # that differ by more than their start; their standardisation must agree, so it is fitted
    # on all the training rows. One network keeps the held-out rows and fit of seed alone.
    ensemble = settings.members > 1
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train,
        y_train,
        test_size=settings.val_fraction,
        random_state=settings.seed + member if ensemble else settings.seed,
    )
    check_not_constant(x_fit, data.features, "over the training rows, feature")
    model = build_regressor(data.features, data.target, settings)
    _fit_standardization(model, x_train if ensemble else x_fit, y_train if ensemble else y_fit)
    model.to(device)

    x = torch.as_tensor(x_fit, device=device)
    y = torch.as_tensor(y_fit, device=device)
    x_val_t = torch.as_tensor(x_val, device=device)
    y_val_t = torch.as_tensor(y_val, device=device)
    bayesian = is_bayesian(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
    start, done, epoch = 0, False, -1
    saved = states.load(member) if states is not None else None
    if saved is not None:
        saved.restore(model, optimizer, generator)
        start, epoch, done = saved.epoch, saved.epoch - 1, saved.values["done"]
        best = (saved.values["best_nll"], saved.values["best_epoch"], saved.extra_tensors("best"))
    bar = tqdm(range(settings.epochs), desc=desc, disable=not progress, initial=start)
    for epoch in range(start, settings.epochs) if not done else ():
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            mu, sigma = model(x[index])
            nll = -torch.distributions.Normal(mu, sigma).log_prob(y[index]).mean()
            loss = negative_elbo(nll, kl_divergence(model), len(x)) if bayesian else nll
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_nll = validation_nll(model, x_val_t, y_val_t)
        if val_nll < best[0]:
            best = (val_nll, epoch, copy.deepcopy(model.state_dict()))
        bar.update()
        bar.set_postfix(val_nll=f"{val_nll:.4f}", best=f"{best[0]:.4f}@{best[1] + 1}")
        done = epoch - best[1] >= settings.patience or epoch + 1 == settings.epochs
        if states is not None:
            states.save(
                member,
                TrainingState.capture(
                    epoch + 1,
                    model,
                    optimizer,
                    generator,
                    best=best[2],
                    best_nll=best[0],
                    best_epoch=best[1],
                    done=done,
                ),
            )
        if done:
            break
    bar.close()
    if best[1] < 0:
        raise FloatingPointError(
            "the validation NLL was never finite: training diverged; "
            "a smaller --lr or --prior-sigma may help"
        )
    model.load_state_dict(best[2])
    model.eval()
    return FittedRegressor(
        model=model,
        fit_rows=len(x_fit),
        validation_rows=len(x_val),
        epochs_run=epoch + 1,
        best_epoch=best[1] + 1,
        validation_nll=best[0],
    )


def _fit_standardization(model: TabularRegressor, x: np.ndarray, y: np.ndarray) -> None:
    """Population mean and std of the fit rows, computed by numpy in float32.

    Not :meth:`TabularRegressor.fit_standardization`: torch's float32 reductions differ from
    numpy's in the last bits, and the committed wine checkpoints were trained with numpy's;
    this keeps ``train_wine`` reproducing them exactly.
    """
    model.standardize.fit(torch.as_tensor(x.mean(0)), torch.as_tensor(x.std(0)))
    model.target.fit(torch.tensor(y.mean()), torch.tensor(y.std()))


def validation_nll(model: TabularRegressor, x: torch.Tensor, y: torch.Tensor) -> float:
    """NLL of the predictive mixture (fixed posterior draws, so epochs compare fairly)."""
    model.eval()
    posterior = fixed_posterior(model, VALIDATION_SAMPLES) if is_bayesian(model) else None
    mu, sigma = regression_samples(model, x, posterior)
    return mixture_nll(y, mu, sigma)


def fit_members(
    data: TabularData,
    settings: TabularSettings,
    *,
    device: torch.device,
    progress: bool = True,
    desc: str = "training",
    states: TrainingStates | None = None,
) -> list[FittedRegressor]:
    """``settings.members`` networks, member k seeded with ``settings.seed + k``."""
    fitted = []
    for member in range(settings.members):
        generator = seed_everything(settings.seed + member)
        label = desc if settings.members == 1 else f"{desc} member {member + 1}/{settings.members}"
        fitted.append(
            fit_regressor(
                data,
                settings,
                generator=generator,
                device=device,
                progress=progress,
                desc=label,
                states=states,
                member=member,
            )
        )
    return fitted


def train_tabular_model(
    data: TabularData,
    settings: TabularSettings,
    *,
    output: Path,
    command: str,
    device: torch.device,
    progress: bool = True,
    desc: str = "training",
) -> dict[str, float | None]:
    """Fit (``settings.members`` networks), write the checkpoint, score the test rows, write
    the manifest; the test metrics."""
    states = TrainingStates(
        output, {"settings": asdict(settings), "data": data.description, "device": str(device)}
    )
    fitted = fit_members(data, settings, device=device, progress=progress, desc=desc, states=states)
    model = single_or_ensemble([f.model for f in fitted])
    sha256 = save_checkpoint(model, output)
    metrics = evaluate_regression(model, data.x_test, data.y_test, samples=TEST_SAMPLES)
    runs = [
        {
            "seed": settings.seed + member,
            "epochs_run": f.epochs_run,
            "best_epoch": f.best_epoch,
            "validation_nll": f.validation_nll,
        }
        for member, f in enumerate(fitted)
    ]
    write_manifest(
        output,
        model=model,
        command=command,
        data={
            **data.description,
            "train_rows": fitted[0].fit_rows,
            "validation_rows": fitted[0].validation_rows,
            "test_rows": len(data.y_test),
        },
        metrics=metrics,
        training={
            **(runs[0] if settings.members == 1 else {"members": runs}),
            "max_epochs": settings.epochs,
            "patience": settings.patience,
            "val_fraction": settings.val_fraction,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "device": str(device),
            "config": model.config,
        },
    )
    states.clear()
    best = ", ".join(str(f.best_epoch) for f in fitted)
    print(f"best epoch {best}; " + written(output, sha256, metrics))
    return metrics
