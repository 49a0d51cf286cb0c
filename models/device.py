"""Pick the torch device from a setting: ``auto`` (CUDA when there is one), ``cuda`` or ``cpu``."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but torch sees no CUDA device")
    return device


def use_exact_float32() -> None:
    """Full float32 in CUDA matrix products and convolutions, instead of TF32.

    With TF32 (10-bit mantissas) a CIFAR probability moved by 2e-4 on an H100 with the
    algorithm cuDNN picked for the batch's shape: one request's answer would depend on what
    shares its batch.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
