"""Train the Bayesian CNN on CIFAR-10: ``python -m training.train_cifar``.

Bayes by Backprop with the local reparameterisation trick, random crop and
flip, Adam with a cosine learning-rate decay; then the test split is scored
with S posterior samples and the checkpoint and its manifest are written.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.cifar import BayesianCNN
from models.device import resolve_device
from models.images import to_model_input
from models.layers import kl_divergence
from training.augment import crop_and_flip
from training.cli import seed_everything, training_parser
from training.datasets.cifar import load_cifar10
from training.evaluate import evaluate_cifar
from training.manifest import training_command, write_manifest, written
from training.objective import kl_warmup, negative_elbo

DEFAULT_OUTPUT = Path("checkpoints/cifar-bcnn.safetensors")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = training_parser(
        __doc__.splitlines()[0],
        epochs=30,
        batch_size=256,
        lr=1e-3,
        prior_sigma=0.1,
        output=DEFAULT_OUTPUT,
    )
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=0.03,
        help="multiplier on KL/N_train; 1 is the plain ELBO (see README for why not here)",
    )
    parser.add_argument(
        "--kl-warmup-epochs",
        type=float,
        default=3.0,
        help="ramp the KL weight up from 0 over this many epochs",
    )
    parser.add_argument(
        "--rho-init",
        type=float,
        default=-5.0,
        help="initial rho; posterior sigma starts at softplus(rho)",
    )
    parser.add_argument("--samples", type=int, default=32, help="posterior samples at test time")
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help="use only the first k training images of each class",
    )
    parser.add_argument(
        "--test-per-class",
        type=int,
        default=None,
        help="score only the first k test images of each class",
    )
    args = parser.parse_args(argv)
    show = not args.no_progress

    generator = seed_everything(args.seed)
    device = resolve_device(args.device)
    train = load_cifar10("train", args.data_dir, per_class=args.train_per_class)
    test = load_cifar10("test", args.data_dir, per_class=args.test_per_class)

    model = BayesianCNN(prior_sigma=args.prior_sigma, rho_init=args.rho_init).to(device)
    pixels = torch.as_tensor(train.images).float().div_(255.0)
    model.normalize.fit(
        pixels.mean(dim=(0, 1, 2)).view(3, 1, 1).to(device),
        pixels.std(dim=(0, 1, 2)).view(3, 1, 1).to(device),
    )
    del pixels

    images = torch.as_tensor(train.images)
    labels = torch.as_tensor(train.labels)
    num_train = len(labels)
    steps_per_epoch = math.ceil(num_train / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = round(args.kl_warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))

    step = 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(num_train, generator=generator)
        correct = seen = 0
        bar = tqdm(
            order.split(args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}", disable=not show
        )
        for index in bar:
            x = crop_and_flip(to_model_input(images[index]), generator).to(device)
            y = labels[index].to(device)
            logits = model(x)
            nll = F.cross_entropy(logits, y)
            kl = kl_divergence(model)
            weight = args.kl_weight * kl_warmup(step, warmup_steps)
            loss = negative_elbo(nll, kl, num_train, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(y)
            bar.set_postfix(
                nll=f"{nll.item():.3f}",
                kl_n=f"{kl.item() / num_train:.3f}",
                acc=f"{correct / seen:.3f}",
            )
        print(
            f"epoch {epoch + 1}: train accuracy {correct / seen:.4f}, nll {nll.item():.4f}, "
            f"KL/N {kl.item() / num_train:.4f}",
            flush=True,
        )

    model.eval()
    sha256 = save_checkpoint(model, args.output)
    metrics = evaluate_cifar(model, test.images, test.labels, samples=args.samples, progress=show)
    write_manifest(
        args.output,
        kind=model.kind,
        command=training_command("training.train_cifar", argv),
        data={
            "train": {"source": str(train.source), "rows": num_train, "sha256": train.fingerprint},
            "test": {
                "source": str(test.source),
                "rows": len(test.labels),
                "sha256": test.fingerprint,
            },
        },
        metrics=metrics,
        training={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "kl_weight": args.kl_weight,
            "kl_warmup_epochs": args.kl_warmup_epochs,
            "seed": args.seed,
            "device": str(device),
            "config": model.config,
        },
    )
    print(written(args.output, sha256, metrics))
    return metrics


if __name__ == "__main__":
    main()
