"""Figures against their targets: the one table ``bench.run`` prints and puts in RESULTS.md.

Every claim is a ratio of two numbers measured in the same run; absolute numbers are shown
beside it for scale only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.checkpoints import CIFAR_MODEL, WINE_MODEL
from bench.http_level import BARE_DIRECT
from bench.memory import TARGET_BYTES
from models.ensemble import ENSEMBLE_SUFFIX
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION

MODEL_RATIO_TARGET = 100.0  # vectorised over notebook rows/s, the wine model at S=20
MODEL_TARGET_SAMPLES = 20
HTTP_RATIO_TARGET = 0.75  # service over bare req/s, wine c=32
# Service p50 at c=1 <= bare p50 + this, by the device the models ran on (wine c=1).
P50_OVER_BARE_MS = {"cpu": 1.5, "cuda": 2.0}
# HTTP over in-process images/s, S=32, by the device the models ran on: on the CPU the model
# is the bottleneck (issue 4); a GPU predicts many times faster than one host decodes, which
# issue 15 asks the HTTP side to keep up with at 0.6.
CIFAR_RATIO_TARGET = {"cpu": 0.8, "cuda": 0.6}
V2_RATIO_TARGET = 0.9  # v2 infer over /predict/wine req/s, the same row, c=32
ENSEMBLE_RATIO_TARGET = 0.9  # an ensemble's vectorised rows/s over its single network's, equal S
MiB = 2**20


@dataclass(frozen=True)
class EnsemblePair:
    """An ensemble and the single network it is compared with, at ``samples`` draws each: the
    ensemble's draws run in one vectorised pass too, so at equal S it should be about as fast."""

    task: str
    single: str
    samples: int

    @property
    def ensemble(self) -> str:
        return self.single + ENSEMBLE_SUFFIX


ENSEMBLE_PAIRS = (
    EnsemblePair(TABULAR_REGRESSION, WINE_MODEL, 100),
    EnsemblePair(IMAGE_CLASSIFICATION, CIFAR_MODEL, 32),
)


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    target: str = ""
    verdict: str = ""  # "pass", "MISS" or "" (no target)
    source: str = ""  # key of the command that produced it


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


def _unit(task: str) -> str:
    return "images" if task == IMAGE_CLASSIFICATION else "rows"


def _target_device(http: dict[str, Any]) -> str:
    """Which device's targets a run is held to: ``cpu``, or ``cuda`` for any accelerator."""
    return "cpu" if http.get("device", "cpu") == "cpu" else "cuda"


def model_rows(model: dict[str, Any], source: str) -> list[Row]:
    rows = []
    for f in model["figures"]:
        unit = _unit(f["task"])
        ratio = f["ratio"]
        targeted = f["model"] == WINE_MODEL and f["samples"] == MODEL_TARGET_SAMPLES
        rows.append(
            Row(
                f"model: {f['model']} S={f['samples']}, {unit}/s, vectorised "
                f"(batch {f['batch']}) vs notebook loop",
                f"{f['vectorised_per_s']:,.0f} vs {f['notebook_per_s']:,.1f} = {ratio:,.1f}×",
                f"≥ {MODEL_RATIO_TARGET:g}×" if targeted else "",
                verdict(ratio >= MODEL_RATIO_TARGET) if targeted else "",
                source,
            )
        )
    rows += [_ensemble_row(model, pair, source) for pair in ENSEMBLE_PAIRS]
    return rows + [
        Row(
            f"model: {g['model']} S={g['samples']}, batch {g['batch']}, rows/s on "
            f"{g['device']}: CUDA graphs / eager ({g['rounds']} alternating slices)",
            f"{g['graphs_per_s']:,.0f} / {g['eager_per_s']:,.0f} = {g['ratio']:.2f}×"
            + ("" if g["execution"] == "cuda-graphs" else f" (capture gave {g['execution']})"),
            source=source,
        )
        for g in model.get("graphs", [])
    ]


def _ensemble_row(model: dict[str, Any], pair: EnsemblePair, source: str) -> Row:
    """The ensemble's vectorised throughput over its single network's; skipped, and said why,
    when the pair was not timed (an ensemble still training is not in the repository yet)."""
    s = pair.samples
    figure = f"model: {pair.ensemble} / {pair.single} S={s}, vectorised {_unit(pair.task)}/s"
    target = f"≥ {ENSEMBLE_RATIO_TARGET:g}"
    timed = next(
        (
            p
            for p in model.get("pairs", [])
            if (p["single"], p["ensemble"], p["samples"]) == (pair.single, pair.ensemble, s)
        ),
        None,
    )
    if timed is None:
        held = model.get("repository", [])
        missing = [name for name in (pair.single, pair.ensemble) if name not in held]
        why = (
            f"{' and '.join(missing)} not in the repository"
            if missing
            else "not timed (left out by --models)"
        )
        return Row(figure, f"skipped: {why}", target, "", source)
    ratio = timed["ratio"]
    return Row(
        figure + f" (batch {timed['batch']}, {timed['rounds']} alternating slices)",
        f"{timed['ensemble_per_s']:,.0f} / {timed['single_per_s']:,.0f} = {ratio:.2f}",
        target,
        verdict(ratio >= ENSEMBLE_RATIO_TARGET),
        source,
    )


def _point(
    http: dict[str, Any], server: str, route: str, c: int | None, rate: bool = False
) -> dict[str, Any] | None:
    """The point of ``server`` on ``route`` at concurrency ``c``, or its fixed-rate point."""
    for p in http["points"]:
        same = p["server"] == server and p["route"] == route
        if same and (p["rate"] is not None) == rate and (rate or p["connections"] == c):
            return p
    return None


def _latency(p: dict[str, Any]) -> str:
    if p["requests"] == 0:
        return f"no request completed in {p['duration_s']:.1f} s"
    text = (
        f"{p['throughput']:,.0f} req/s; p50/p95/p99 {p['p50_ms']:.1f}/{p['p95_ms']:.1f}/"
        f"{p['p99_ms']:.1f} ms; CPU {p['cpu_ms_per_request']:.2f} ms/req "
        f"({p['loop_ms_per_request']:.2f} on the event loop)"
    )
    if p["errors"]:
        text += f"; {p['errors']} errors"
    if p["late"]:
        text += f"; {p['late']} sent late (up to {p['late_max_ms']:.0f} ms)"
    return text


@dataclass(frozen=True)
class Compared:
    """The service against the bare endpoint at one concurrency: the mean req/s and the median
    p50 of their alternating slices (route ``wine-vs-bare``), or of their one point each in a
    run without such slices."""

    service_per_s: float
    bare_per_s: float
    service_p50_ms: float
    bare_p50_ms: float
    slices: int  # per server; 1 when not alternating

    @property
    def how(self) -> str:
        return f" ({self.slices} alternating slices each)" if self.slices > 1 else ""


def _compared(
    http: dict[str, Any], c: int, bare: str = "bare", route: str = "wine-vs-bare"
) -> Compared | None:
    paired = [p for p in http["points"] if p["route"] == route and p["connections"] == c]
    by_server = [[p for p in paired if p["server"] == name] for name in ("service", bare)]
    if not all(by_server):
        by_server = [[p] for name in ("service", bare) if (p := _point(http, name, "wine", c))]
        if len(by_server) < 2:
            return None
    service, bare = by_server
    return Compared(
        service_per_s=statistics.fmean(p["throughput"] for p in service),
        bare_per_s=statistics.fmean(p["throughput"] for p in bare),
        service_p50_ms=statistics.median(p["p50_ms"] for p in service),
        bare_p50_ms=statistics.median(p["p50_ms"] for p in bare),
        slices=len(service),
    )


def http_rows(http: dict[str, Any], model: dict[str, Any], source: str) -> list[Row]:
    rows: list[Row] = []
    s = http["samples"]
    concurrency = sorted(
        {
            p["connections"]
            for p in http["points"]
            if p["route"] in ("wine", "wine-vs-bare") and p["rate"] is None
        }
    )
    for c in concurrency:
        service, bare, off = (_point(http, n, "wine", c) for n in ("service", "bare", "unbatched"))
        for name, p in (("service", service), ("bare", bare), ("batching off", off)):
            if p is not None:
                rows.append(Row(f"HTTP wine S={s} c={c}: {name}", _latency(p), source=source))
        compared = _compared(http, c)
        if compared is not None:
            ratio = compared.service_per_s / compared.bare_per_s
            targeted = c == 32
            rows.append(
                Row(
                    f"HTTP wine S={s} c={c}: service / bare req/s{compared.how}",
                    f"{compared.service_per_s:,.0f} / {compared.bare_per_s:,.0f} = {ratio:.2f}",
                    f"≥ {HTTP_RATIO_TARGET:g}" if targeted else "",
                    verdict(ratio >= HTTP_RATIO_TARGET) if targeted else "",
                    source,
                )
            )
        direct = _compared(http, c, BARE_DIRECT, "wine-vs-bare-direct")
        if direct is not None:
            rows.append(
                Row(
                    f"HTTP wine S={s} c={c}: service / bare behind the direct route "
                    f"req/s{direct.how}",
                    f"{direct.service_per_s:,.0f} / {direct.bare_per_s:,.0f} = "
                    f"{direct.service_per_s / direct.bare_per_s:.2f}",
                    source=source,
                )
            )
        if service and off:
            rows.append(
                Row(
                    f"HTTP wine S={s} c={c}: batching on / off req/s",
                    f"{service['throughput'] / off['throughput']:.1f}×",
                    source=source,
                )
            )
        if c == 1 and compared is not None:
            over = P50_OVER_BARE_MS[_target_device(http)]
            limit = compared.bare_p50_ms + over
            rows.append(
                Row(
                    f"HTTP wine S={s} c=1: service p50 vs bare p50 + {over:g} ms{compared.how}",
                    f"{compared.service_p50_ms:.2f} ms (bare {compared.bare_p50_ms:.2f} ms)",
                    f"≤ {limit:.2f} ms",
                    verdict(compared.service_p50_ms <= limit),
                    source,
                )
            )
        rows.extend(_device_rows(http, service, c, source))
    for name in ("service", "bare", "unbatched"):
        p = _point(http, name, "wine", None, rate=True)
        if p is not None:
            label = "batching off" if name == "unbatched" else name
            rows.append(
                Row(
                    f"HTTP wine S={s} at a fixed {p['rate']:g} req/s "
                    f"({p['connections']} connections): {label}",
                    _latency(p),
                    source=source,
                )
            )
    rows.extend(_v2_rows(http, source))
    rows.extend(_cifar_rows(http, model, source))
    rows.extend(_memory_rows(http, source))
    return rows


def _device_rows(
    http: dict[str, Any], service: dict[str, Any] | None, c: int, source: str
) -> list[Row]:
    """Off the CPU: the wine model with CUDA graphs against without, and against the host's
    CPU (at c=32, where the GPU must not be slower)."""
    rows: list[Row] = []
    s = http["samples"]
    eager, host = _point(http, "graphs off", "wine", c), _point(http, "host CPU", "wine", c)
    for name, p in (("CUDA graphs off", eager), ("wine on the host CPU", host)):
        if p is not None:
            rows.append(Row(f"HTTP wine S={s} c={c}: {name}", _latency(p), source=source))
    if service and eager:
        ratio = service["throughput"] / eager["throughput"]
        rows.append(
            Row(
                f"HTTP wine S={s} c={c}: CUDA graphs on / off req/s", f"{ratio:.2f}×", source=source
            )
        )
    if service and host and c == 32:
        ratio = service["throughput"] / host["throughput"]
        rows.append(
            Row(
                f"HTTP wine S={s} c=32: on {http['device']} / on the host CPU req/s",
                f"{ratio:.2f}",
                "≥ 1",
                verdict(ratio >= 1),
                source,
            )
        )
    return rows


def _v2_rows(http: dict[str, Any], source: str) -> list[Row]:
    """The wine row as an Open Inference Protocol request against ``/predict/wine``: each the
    mean of its alternating slices (routes ``v2`` and ``wine-vs-v2``)."""
    v2 = [p for p in http["points"] if p["route"] == "v2"]
    if not v2:
        return []
    c, s = v2[0]["connections"], http["samples"]
    rows = [Row(f"HTTP v2 infer wine S={s} c={c}: service", _latency(v2[0]), source=source)]
    wine = [p for p in http["points"] if p["route"] == "wine-vs-v2"]
    if wine:
        ours, theirs = (sum(p["throughput"] for p in ps) / len(ps) for ps in (v2, wine))
        ratio = ours / theirs
        rows.append(
            Row(
                f"HTTP wine S={s} c={c}: v2 infer / /predict/wine req/s "
                f"({len(v2)} alternating slices each)",
                f"{ours:,.0f} / {theirs:,.0f} = {ratio:.2f}",
                f"≥ {V2_RATIO_TARGET:g}",
                verdict(ratio >= V2_RATIO_TARGET),
                source,
            )
        )
    return rows


def _cifar_rows(http: dict[str, Any], model: dict[str, Any], source: str) -> list[Row]:
    """Each CIFAR point (the service; its ``N workers`` variant, if timed) and its images/s
    against the in-process predictor's, the same target for both (the device's): either is
    how it is run."""
    points = [p for p in http["points"] if p["route"] == "cifar"]
    if not points:
        return []
    inproc = next(
        (
            f
            for f in model["figures"]
            if f["model"] == http["cifar_model"] and f["samples"] == http["cifar_samples"]
        ),
        None,
    )
    per_request = http["cifar_images_per_request"]
    target = CIFAR_RATIO_TARGET[_target_device(http)]
    rows = []
    for p in points:
        steady = p.get("steady_throughput")
        images = (steady if steady is not None else p["throughput"]) * per_request
        shown = f"req/s; {images:,.1f} images/s" + (" once answers flow" if steady else "")
        server = "" if p["server"] == "service" else p["server"]  # "4 workers", say
        variant, with_variant = (f", {server}", f" with {server}") if server else ("", "")
        rows.append(
            Row(
                f"HTTP cifar S={http['cifar_samples']}, {per_request} JPEGs/request, "
                f"c={p['connections']}{variant}",
                _latency(p).replace("req/s", shown, 1),
                source=source,
            )
        )
        if inproc is not None:
            ratio = images / inproc["vectorised_per_s"]
            rows.append(
                Row(
                    f"HTTP cifar images/s{with_variant} / in-process batched predictor's",
                    f"{images:,.1f} / {inproc['vectorised_per_s']:,.1f} = {ratio:.2f}",
                    f"≥ {target:g}",
                    verdict(ratio >= target),
                    source,
                )
            )
    return rows


def _memory_rows(http: dict[str, Any], source: str) -> list[Row]:
    """The target is for the service on the CPU, loaded and then after serving the load."""
    ready, after = http["memory"]["ready"], http["memory"]["after_load"]
    device = http.get("device", "cpu")
    on_cpu = device == "cpu"
    where = "" if on_cpu else f" (models on {device}: the target is for the CPU)"
    loaded = f"all {len(http['models'])} models loaded"
    rows = [
        Row(
            f"memory: service peak RSS (VmHWM), {loaded}, ready{where}",
            f"{ready['peak_bytes'] / MiB:,.0f} MiB (current {ready['current_bytes'] / MiB:,.0f})",
            f"≤ {TARGET_BYTES / MiB:,.0f} MiB" if on_cpu else "",
            verdict(ready["peak_bytes"] <= TARGET_BYTES) if on_cpu else "",
            source,
        ),
        Row(
            "memory: service peak RSS after all the load above",
            f"{after['peak_bytes'] / MiB:,.0f} MiB (current {after['current_bytes'] / MiB:,.0f})",
            f"≤ {TARGET_BYTES / MiB:,.0f} MiB" if on_cpu else "",
            verdict(after["peak_bytes"] <= TARGET_BYTES) if on_cpu else "",
            source,
        ),
    ]
    every = http["memory"].get("every_draw")
    if every is not None:
        rows.append(
            Row(
                "memory: service peak RSS once each model was asked for its largest samples "
                "(every draw made; the most settings allow)",
                f"{every['peak_bytes'] / MiB:,.0f} MiB "
                f"(current {every['current_bytes'] / MiB:,.0f})",
                "",
                "",
                source,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| figure | measured | target | verdict | cmd |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.figure} | {r.measured} | {r.target} | {r.verdict} | {r.source} |" for r in rows
    ]
    return "\n".join(lines)
