"""Decode stage: images/s of the service's image decoder with 1 worker and with 2.

The service decodes uploads on a pool of threads (``DECODE_WORKERS``, by default one per core):
Pillow releases the GIL while it decodes and resizes, so threads run on every core without
the cost of copying bytes to other processes. This measures what the pool buys: the
service's :class:`~service.image_decoding.ImageDecoder`, in one event loop as in the service,
decoding whole requests of images to the CIFAR network's 32×32 input, for a fixed time with
each pool size in alternating slices. Two inputs: CIFAR-10 test JPEGs (32×32, where there is
little to decode) and the same images as 512×512 JPEGs (a phone photo's order of work).

It runs under the service's malloc settings (:mod:`service.allocator`). With glibc's
defaults, whether a decoding thread's arena kept its freed pages depended on what had run
before: in some runs the one-thread pool was given fresh pages for every 512×512 image (512
page faults an image, 380 images/s instead of 570) and in others not, and the ratio swung
between 1.5 and 3.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.bodies import cifar_files
from bench.report import Row, verdict
from service.allocator import retain_freed_memory
from service.image_decoding import ImageDecoder

INPUT_SIZE = 32
LARGE_SIDE = 512
IMAGES_PER_REQUEST = 64  # the CIFAR task kind's max_instances
CONCURRENT_REQUESTS = 4
ROUNDS = 5  # alternating slices per pool size, the median kept
TARGET_SPEEDUP = 1.8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per pool size")
    parser.add_argument("--workers", type=int, nargs=2, default=[1, 2])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def image_sets(data_dir: Path | None) -> dict[str, list[tuple[str, bytes]]]:
    """CIFAR test JPEGs as they are, and re-encoded at 512×512."""
    small = [(f.name, f.read_bytes()) for f in cifar_files(IMAGES_PER_REQUEST, data_dir)]
    large = []
    for name, data in small:
        image = Image.open(io.BytesIO(data)).convert("RGB").resize((LARGE_SIDE, LARGE_SIDE))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        large.append((name, out.getvalue()))
    return {"32×32 JPEG": small, f"{LARGE_SIDE}×{LARGE_SIDE} JPEG": large}


async def images_per_second(
    decoder: ImageDecoder, files: list[tuple[str, bytes]], seconds: float
) -> float:
    """Requests of ``files`` decoded ``CONCURRENT_REQUESTS`` at a time for ``seconds``."""
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batches = await asyncio.gather(
            *(decoder.decode(files, INPUT_SIZE) for _ in range(CONCURRENT_REQUESTS))
        )
        assert all(b.shape == (len(files), INPUT_SIZE, INPUT_SIZE, 3) for b in batches)
        done += len(files) * CONCURRENT_REQUESTS
    return done / (time.perf_counter() - started)


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    for name, files in image_sets(args.data_dir).items():
        rates: dict[int, list[float]] = {w: [] for w in args.workers}
        decoders = {
            w: ImageDecoder(
                workers=w,
                max_image_pixels=LARGE_SIDE * LARGE_SIDE,
                max_request_pixels=LARGE_SIDE * LARGE_SIDE * IMAGES_PER_REQUEST,
                max_inflight_pixels=LARGE_SIDE * LARGE_SIDE * IMAGES_PER_REQUEST * 8,
            )
            for w in args.workers
        }
        try:
            for w in args.workers:  # warm: the pools' threads, Pillow's codecs
                await images_per_second(decoders[w], files, 0.2)
            for _ in range(ROUNDS):
                for w in args.workers:
                    rate = await images_per_second(decoders[w], files, args.duration / ROUNDS)
                    rates[w].append(rate)
        finally:
            for decoder in decoders.values():
                decoder.close()
        for w in args.workers:
            rate = float(np.median(rates[w]))
            print(f"  decode {name}, {w} worker(s): {rate:10,.0f} images/s", flush=True)
            points.append({"images": name, "workers": w, "images_per_s": rate})
    return points


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = {"points": asyncio.run(measure(args))}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def rows(figures: dict[str, Any], source: str) -> list[Row]:
    """Per input: images/s with each pool size and their ratio; the large images' ratio has
    the target (the small ones show what thread hand-offs cost when there is little work)."""
    out = []
    by_images: dict[str, dict[int, float]] = {}
    for point in figures["points"]:
        by_images.setdefault(point["images"], {})[point["workers"]] = point["images_per_s"]
    for images, rates in by_images.items():
        (one, few), (r_one, r_few) = sorted(rates), (rates[w] for w in sorted(rates))
        ratio = r_few / r_one if r_one else float("nan")
        large = not images.startswith(f"{INPUT_SIZE}×")
        out.append(
            Row(
                f"decode stage, {images} to {INPUT_SIZE}×{INPUT_SIZE}, images/s: "
                f"{few} workers vs {one}",
                f"{r_few:,.0f} vs {r_one:,.0f} = {ratio:.2f}×",
                f"≥ {TARGET_SPEEDUP}×" if large else "",
                verdict(ratio >= TARGET_SPEEDUP) if large else "",
                source,
            )
        )
    return out


if __name__ == "__main__":
    # As the serving process does before it decodes anything; here, not in main(), so that a
    # test calling main() leaves its own process's malloc as it was.
    retain_freed_memory()
    main()
