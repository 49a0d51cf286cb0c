"""Training that survives being stopped: a checkpoint of its whole state after every epoch.

A CIFAR-10 ensemble trains for hours on a small machine; a stopped session, a reboot or a
Ctrl-C must not throw that away. After each epoch a run writes everything its next epoch
depends on (weights, optimiser and schedule, both random generators, the epoch, the best
state so far) to ``NAME.training/member-K.safetensors`` beside the checkpoint it will write,
and rerunning the same command continues from there: to the same numbers as a run never
stopped. The folder goes once the checkpoint is written. Like the checkpoints, the state is
tensors in safetensors with JSON beside them: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["ResumeError", "TrainingState", "TrainingStates"]

_SUFFIX = ".training"


class ResumeError(RuntimeError):
    """The saved state is of another run (other settings or data) or unreadable."""


@dataclass
class TrainingState:
    """What one member's training needs to continue after ``epoch`` epochs."""

    epoch: int  # epochs done
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor  # the data-order generator's state
    torch_rng: torch.Tensor  # torch's global generator (initial weights, LRT noise)
    scheduler: dict[str, Any] | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. the best weights
    values: dict[str, Any] = field(default_factory=dict)  # e.g. the best epoch and its score

    @classmethod
    def capture(
        cls,
        epoch: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        scheduler: Any = None,
        **extra: Any,
    ) -> TrainingState:
        """The state after ``epoch`` epochs; ``extra``: tensors (dicts of them) and values."""
        tensors = {
            f"{k}/{n}": t
            for k, v in extra.items()
            if isinstance(v, dict)
            for n, t in v.items()
            if isinstance(t, torch.Tensor)
        }
        values = {k: v for k, v in extra.items() if not isinstance(v, dict)}
        return cls(
            epoch=epoch,
            model={k: v.detach().clone() for k, v in model.state_dict().items()},
            optimizer=optimizer.state_dict(),
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            tensors=tensors,
            values=values,
        )

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        scheduler: Any = None,
    ) -> None:
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in self.model.items()})
        optimizer.load_state_dict(self.optimizer)
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(self.scheduler)

    def extra_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors saved under ``name`` (e.g. the best state so far)."""
        prefix = f"{name}/"
        return {k.removeprefix(prefix): v for k, v in self.tensors.items() if k.startswith(prefix)}


class TrainingStates:
    """The saved states of one run, one file per member, beside the checkpoint to be written.

    ``identity`` (settings, data fingerprint: whatever decides the numbers) is stored with each
    state; a state of another identity is refused rather than silently continued.
    """

    def __init__(self, checkpoint: Path, identity: dict[str, Any]) -> None:
        self.folder = checkpoint.with_name(checkpoint.stem + _SUFFIX)
        self.identity = hashlib.sha256(
            json.dumps(identity, sort_keys=True, default=str).encode()
        ).hexdigest()

    def path(self, member: int) -> Path:
        return self.folder / f"member-{member}.safetensors"

    def load(self, member: int) -> TrainingState | None:
        path = self.path(member)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            with open(path, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))["__metadata__"]
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise ResumeError(f"cannot read the saved training state {path}: {exc}") from exc
        if header.get("identity") != self.identity:
            raise ResumeError(
                f"{self.folder} holds the state of a run with other settings or data; rerun "
                "that command to continue it, or delete the folder to start afresh"
            )
        values = json.loads(header["values"])
        optimizer = values.pop("optimizer")
        for key, tensor in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/")
                optimizer["state"].setdefault(int(index), {})[name] = tensor
        optimizer["state"] = {int(k): v for k, v in optimizer["state"].items()}
        return TrainingState(
            epoch=values.pop("epoch"),
            model=_prefixed(tensors, "model/"),
            optimizer=optimizer,
            generator=tensors["rng/generator"],
            torch_rng=tensors["rng/torch"],
            scheduler=values.pop("scheduler"),
            tensors=_prefixed(tensors, "extra/"),
            values=values.pop("values"),
        )

    def save(self, member: int, state: TrainingState) -> None:
        """Write atomically: a run stopped mid-write keeps the previous epoch's state."""
        self.folder.mkdir(parents=True, exist_ok=True)
        optimizer = {"param_groups": state.optimizer["param_groups"], "state": {}}
        tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in state.model.items()}
        for index, values in state.optimizer["state"].items():
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().contiguous()
                else:
                    optimizer["state"].setdefault(str(index), {})[name] = value
        tensors["rng/generator"] = state.generator
        tensors["rng/torch"] = state.torch_rng
        tensors |= {f"extra/{k}": v.detach().cpu().contiguous() for k, v in state.tensors.items()}
        header = {
            "identity": self.identity,
            "values": json.dumps(
                {
                    "epoch": state.epoch,
                    "optimizer": optimizer,
                    "scheduler": state.scheduler,
                    "values": state.values,
                }
            ),
        }
        path = self.path(member)
        partial = path.with_suffix(".partial")
        save_file(tensors, str(partial), metadata=header)
        os.replace(partial, path)

    def clear(self) -> None:
        """The run is done: its checkpoint holds all it made."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                path.unlink()
            self.folder.rmdir()


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
