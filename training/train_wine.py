"""Train a Wine Quality regressor: ``python -m training.train_wine --model bnn|gaussian``.

``bnn`` is the full Bayes-by-Backprop network (every weight and bias
stochastic, plus a noise model); ``gaussian`` is a deterministic network with a
Gaussian head. Part of the training split is held out for early stopping on
the predictive NLL; the best epoch is kept, scored on the test split, and
written with its manifest.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.device import resolve_device
from models.layers import kl_divergence
from models.predictive import fixed_posterior, is_bayesian, regression_samples
from models.wine import WineBNN, WineGaussian
from training.cli import seed_everything, training_parser
from training.datasets.wine import load_wine
from training.evaluate import evaluate_wine
from training.manifest import training_command, write_manifest, written
from training.objective import negative_elbo
from uncertainty.metrics import mixture_nll

DEFAULT_OUTPUT = {
    "bnn": Path("checkpoints/wine-bnn.safetensors"),
    "gaussian": Path("checkpoints/wine-gaussian.safetensors"),
}
# Chosen on the validation NLL (see README): depth helps the BNN, not the Gaussian head.
DEFAULT_HIDDEN = {"bnn": [64, 64, 64], "gaussian": [50]}
# Posterior samples for the early-stopping score and for the test metrics.
VALIDATION_SAMPLES = 20
TEST_SAMPLES = 100


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = training_parser(
        __doc__.splitlines()[0],
        epochs=1000,
        batch_size=64,
        lr=1e-3,
        prior_sigma=1.0,
        output=None,  # type: ignore[arg-type]
    )
    parser.add_argument("--model", choices=sorted(DEFAULT_OUTPUT), default="bnn")
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
        help=f"hidden layer widths (default: {DEFAULT_HIDDEN})",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="share of the training split held out for early stopping",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=100,
        help="stop after this many epochs without a better validation NLL",
    )
    parser.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help="use only the first k training rows (for quick checks)",
    )
    args = parser.parse_args(argv)
    output = args.output or DEFAULT_OUTPUT[args.model]
    hidden = args.hidden or DEFAULT_HIDDEN[args.model]

    generator = seed_everything(args.seed)
    device = resolve_device(args.device)
    data = load_wine(args.data_dir)
    x_fit, x_val, y_fit, y_val = train_test_split(
        data.x_train[: args.train_rows],
        data.y_train[: args.train_rows],
        test_size=args.val_fraction,
        random_state=args.seed,
    )
    model: nn.Module
    if args.model == "bnn":
        model = WineBNN(hidden=hidden, prior_sigma=args.prior_sigma, noise=args.noise)
    else:
        model = WineGaussian(hidden=hidden)
    model.standardize.fit(torch.as_tensor(x_fit.mean(0)), torch.as_tensor(x_fit.std(0)))
    model.target.fit(torch.tensor(y_fit.mean()), torch.tensor(y_fit.std()))
    model.to(device)

    x = torch.as_tensor(x_fit, device=device)
    y = torch.as_tensor(y_fit, device=device)
    x_val_t = torch.as_tensor(x_val, device=device)
    y_val_t = torch.as_tensor(y_val, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
    bar = tqdm(range(args.epochs), desc=f"wine {args.model}", disable=args.no_progress)
    for epoch in bar:
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(args.batch_size):
            mu, sigma = model(x[index])
            nll = -torch.distributions.Normal(mu, sigma).log_prob(y[index]).mean()
            loss = negative_elbo(nll, kl_divergence(model), len(x)) if is_bayesian(model) else nll
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_nll = validation_nll(model, x_val_t, y_val_t)
        if val_nll < best[0]:
            best = (val_nll, epoch, copy.deepcopy(model.state_dict()))
        bar.set_postfix(val_nll=f"{val_nll:.4f}", best=f"{best[0]:.4f}@{best[1] + 1}")
        if epoch - best[1] >= args.patience:
            break
    model.load_state_dict(best[2])
    model.eval()

    sha256 = save_checkpoint(model, output)
    metrics = evaluate_wine(model, data.x_test, data.y_test, samples=TEST_SAMPLES)
    write_manifest(
        output,
        kind=model.kind,
        command=training_command("training.train_wine", argv),
        data={
            "source": str(data.source),
            "split": "train_test_split(X, y, test_size=0.15, random_state=42)",
            "train_rows": len(x_fit),
            "validation_rows": len(x_val),
            "test_rows": len(data.y_test),
            "sha256": data.fingerprint,
        },
        metrics=metrics,
        training={
            "epochs_run": epoch + 1,
            "best_epoch": best[1] + 1,
            "validation_nll": best[0],
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "device": str(device),
            "config": model.config,
        },
    )
    print(f"best epoch {best[1] + 1}; " + written(output, sha256, metrics))
    return metrics


def validation_nll(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """NLL of the predictive mixture (fixed posterior draws, so epochs compare fairly)."""
    model.eval()
    posterior = fixed_posterior(model, VALIDATION_SAMPLES) if is_bayesian(model) else None
    mu, sigma = regression_samples(model, x, posterior)
    return mixture_nll(y, mu, sigma)


if __name__ == "__main__":
    main()
