"""Train the Bayesian CNN on an image set: the loop behind ``train_images`` and ``train_cifar``.

Bayes by Backprop with the local reparameterisation trick, random crop and flip, Adam with a
cosine learning-rate decay, the KL term ramped up over the first epochs; then the test images
are scored with S posterior samples (the metrics, and the epistemic threshold the web page
flags answers above) and the checkpoint and its manifest are written. With
``members`` K > 1 the K networks are trained one after the other, member k from seed + k (its
initial weights, its order of the images and their augmentation), and written as one
ensemble. Every epoch's state is saved (:mod:`training.resume`): rerunning the command
continues it, which is what makes an ensemble of hours on a CPU practical.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.cnn import BayesianCNN
from models.ensemble import single_or_ensemble
from models.images import to_model_input
from models.layers import kl_divergence
from training.augment import crop_and_flip
from training.cli import seed_everything
from training.datasets.images import ImageSet
from training.datasets.location import portable_source
from training.evaluate import THRESHOLDS_KEY, score_classification
from training.manifest import write_manifest, written
from training.objective import kl_warmup, negative_elbo
from training.resume import TrainingState, TrainingStates

# How many times the chance-level NLL the initial KL term may be before training warns.
PRIOR_DOMINANCE = 10.0
# The KL weight the CIFAR-10 checkpoint was trained with (README: a tempered posterior).
CIFAR_KL_WEIGHT = 0.03


@dataclass(frozen=True)
class ImageSettings:
    """Everything that decides how the CNN is trained (and the manifest records)."""

    epochs: int
    batch_size: int
    lr: float
    prior_sigma: float
    rho_init: float
    kl_weight: float | None  # None: balanced_kl_weight for the data at hand
    kl_warmup_epochs: float
    samples: int  # posterior samples for the test metrics
    seed: int
    members: int = 1


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """The options of the CNN training loop (the CIFAR-10 checkpoint's values as defaults)."""
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=None,
        help="multiplier on KL/N_train; 1 is the plain ELBO (see README for why not here). "
        f"Default: {CIFAR_KL_WEIGHT} (CIFAR-10's), or less where the prior's pull on a small "
        "data set would outweigh what the images can say: at most ln(classes) nats per image",
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
        "--members",
        type=int,
        default=1,
        help="train K networks (seeds seed..seed+K-1) and write them as one ensemble",
    )
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


def settings_from_args(args: argparse.Namespace) -> ImageSettings:
    return ImageSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        prior_sigma=args.prior_sigma,
        rho_init=args.rho_init,
        kl_weight=args.kl_weight,
        kl_warmup_epochs=args.kl_warmup_epochs,
        samples=args.samples,
        seed=args.seed,
        members=args.members,
    )


def check_image_size(size: int) -> None:
    """Raise ValueError if the network cannot take ``size × size`` images (before any is read).

    The network itself decides, so the bound lives in one place: :class:`BayesianCNN`.
    """
    BayesianCNN(classes=("a", "b"), image_size=size)


def fit_classifier(
    train: ImageSet,
    settings: ImageSettings,
    *,
    image_size: int,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = True,
    states: TrainingStates | None = None,
    member: int = 0,
) -> tuple[BayesianCNN, float]:
    """Train on ``train`` for ``settings.epochs``; the network in eval mode, and the KL weight
    it was trained with.

    The caller seeds torch first (:func:`training.cli.seed_everything`): initial weights and
    the local reparameterisation noise come from torch's global RNG, the minibatch order
    and the augmentation from ``generator``. With ``states``, each epoch's state is saved as
    ``member``'s, and a saved one continues.
    """
    model = BayesianCNN(
        classes=train.classes,
        image_size=image_size,
        prior_sigma=settings.prior_sigma,
        rho_init=settings.rho_init,
    ).to(device)
    pixels = torch.as_tensor(train.images).float().div_(255.0)
    model.normalize.fit(
        pixels.mean(dim=(0, 1, 2)).view(3, 1, 1).to(device),
        pixels.std(dim=(0, 1, 2)).view(3, 1, 1).to(device),
    )
    del pixels

    images = torch.as_tensor(train.images)
    labels = torch.as_tensor(train.labels)
    num_train = len(labels)
    if settings.kl_weight is None:
        kl_weight = balanced_kl_weight(model, num_train)
        print(f"KL weight {kl_weight:.3g} for {num_train} training images", flush=True)
    else:
        kl_weight = settings.kl_weight
        if note := prior_outweighs_data(model, num_train, kl_weight):
            print(note, flush=True)
    steps_per_epoch = math.ceil(num_train / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = round(settings.kl_warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))

    step = start = 0
    saved = states.load(member) if states is not None else None
    if saved is not None:
        saved.restore(model, optimizer, generator, schedule)
        start, step = saved.epoch, saved.values["step"]
    for epoch in range(start, settings.epochs):
        model.train()
        order = torch.randperm(num_train, generator=generator)
        correct = seen = 0
        bar = tqdm(
            order.split(settings.batch_size),
            desc=f"epoch {epoch + 1}/{settings.epochs}",
            disable=not progress,
        )
        for index in bar:
            x = crop_and_flip(to_model_input(images[index]), generator).to(device)
            y = labels[index].to(device)
            logits = model(x)
            nll = F.cross_entropy(logits, y)
            kl = kl_divergence(model)
            weight = kl_weight * kl_warmup(step, warmup_steps)
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
        if states is not None:
            states.save(
                member,
                TrainingState.capture(epoch + 1, model, optimizer, generator, schedule, step=step),
            )
    return model.eval(), kl_weight


def balanced_kl_weight(model: BayesianCNN, num_train: int) -> float:
    """CIFAR-10's weight, or the one at which the initial KL term is ln(classes) per image.

    At CIFAR-10's 50,000 images the two agree (0.03 × 79 nats ≈ ln 10); a few dozen images
    make the per-image KL thousands of times larger, and the prior would hold the network at
    chance. Scaling the weight down keeps the prior's pull on each image where CIFAR-10's is.
    """
    with torch.no_grad():
        kl_per_image = float(kl_divergence(model)) / num_train
    return min(CIFAR_KL_WEIGHT, math.log(len(model.classes)) / kl_per_image)


def prior_outweighs_data(model: BayesianCNN, num_train: int, kl_weight: float) -> str | None:
    """A warning when the KL term swamps the data, or None.

    The per-image KL is the network's KL over the number of training images: about 79 nats
    at CIFAR-10's 50,000 images (so 2.4 at the default weight 0.03, beside an NLL of 2.3 at
    chance), but some 65,000 at 60 images, where the posterior cannot leave the prior and
    the model never beats chance. Said before training, with the weight that would
    balance the two, rather than left to be found out after it.
    """
    with torch.no_grad():
        kl_term = kl_weight * float(kl_divergence(model)) / num_train
    chance_nll = math.log(len(model.classes))
    if kl_term <= PRIOR_DOMINANCE * chance_nll:
        return None
    balance = kl_weight * chance_nll / kl_term
    return (
        f"note: with {num_train} training images the prior's KL term ({kl_term:.3g} nats per "
        f"image at --kl-weight {kl_weight:g}) outweighs the data's NLL (about "
        f"{chance_nll:.2f} at chance) so far that the network will stay near its prior; "
        f"more images, or a --kl-weight near {balance:.1g} (which balances the two), let it learn"
    )


def train_image_model(
    train: ImageSet,
    test: ImageSet,
    settings: ImageSettings,
    *,
    image_size: int,
    output: Path,
    command: str,
    device: torch.device,
    data_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Fit (``settings.members`` networks), write the checkpoint, score the test images, write
    the manifest; the metrics."""
    if test.classes != train.classes:
        raise ValueError(f"test classes {list(test.classes)} differ from {list(train.classes)}")
    data = {"train": _describe(train, data_dir), "test": _describe(test, data_dir)}
    states = TrainingStates(
        output,
        {"settings": asdict(settings), "data": data, "size": image_size, "device": str(device)},
    )
    members, weights = [], []
    for member in range(settings.members):
        if settings.members > 1:
            print(f"member {member + 1} of {settings.members}", flush=True)
        network, kl_weight = fit_classifier(
            train,
            settings,
            image_size=image_size,
            generator=seed_everything(settings.seed + member),
            device=device,
            progress=progress,
            states=states,
            member=member,
        )
        members.append(network)
        weights.append(kl_weight)
    model = single_or_ensemble(members)
    sha256 = save_checkpoint(model, output)
    # One pass over the test images gives the metrics and the epistemic threshold.
    scores = score_classification(
        model, test.images, test.labels, samples=settings.samples, progress=progress
    )
    metrics = scores.metrics
    write_manifest(
        output,
        model=model,
        command=command,
        data=data,
        metrics=metrics,
        training={
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "kl_weight": weights[0],
            "kl_warmup_epochs": settings.kl_warmup_epochs,
            "seed": settings.seed,
            **({"members": settings.members} if settings.members > 1 else {}),
            "device": str(device),
            "config": model.config,
        },
        **{THRESHOLDS_KEY: scores.thresholds},
    )
    states.clear()
    print(written(output, sha256, metrics))
    return metrics


def _describe(images: ImageSet, data_dir: Path | None) -> dict[str, object]:
    return {
        "source": portable_source(images.source, data_dir),
        "rows": len(images.labels),
        "sha256": images.fingerprint,
    }
