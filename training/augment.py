"""Random crop (4-pixel zero padding) and horizontal flip, on a whole batch at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def crop_and_flip(images: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Each image of ``N × C × H × W`` shifted by up to ``pad`` pixels and flipped half the time."""
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(device)
    rows = (dy + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=device))[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)[:, None, None, None]
    return torch.where(flip, cropped.flip(-1), cropped)
