"""The hostile-load suite's results: phases of load, the checks on each, one Markdown table.

A scenario runs one or more phases (one kind of load against one server); each phase's row
says what was sent and what came back, and its checks say what was measured against which
target. A check marked ``timing`` is a wall-clock claim: it belongs to the table, never to a
unit test's assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from bench.chaos_load import Tally, ms

__all__ = ["Check", "Phase", "no_failures", "table"]

MiB: Final = 2**20
HEADER: Final = (
    "| scenario | load | sent | answered by status | dropped | peak RSS | first 503 | latency "
    "| check | measured | target | verdict |"
)


@dataclass(frozen=True)
class Check:
    what: str
    measured: str
    target: str = ""
    ok: bool | None = None  # None: reported, no target
    timing: bool = False  # a wall-clock claim

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


@dataclass
class Phase:
    scenario: str
    load: str
    tally: Tally
    peak_rss: int | None = None  # the server's VmHWM at the end of the phase, bytes
    latency: str = ""
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # numbers a test may read


def no_failures(tally: Tally, *, allow_refused: bool = False) -> Check:
    """No 500 and no request left without an HTTP answer (refused connections allowed when
    the server is meant to have stopped listening)."""
    errors = sum(n for code, n in tally.statuses.items() if code >= 500 and code not in (503, 504))
    missing = tally.unanswered - (tally.failures("refused") if allow_refused else 0)
    return Check(
        "no 500, every request answered",
        f"5xx other than 503/504: {errors}; without an answer: {missing} "
        f"(dropped {tally.dropped}, timed out {tally.failures('timeout')}"
        + ("" if allow_refused else f", refused {tally.failures('refused')}")
        + ")",
        "0; 0",
        errors == 0 and missing == 0,
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(phases: list[Phase]) -> str:
    """One row per check; a phase's own figures on its first row only."""
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for phase in phases:
        tally = phase.tally
        first = [
            phase.scenario,
            phase.load,
            str(tally.sent),
            tally.describe_statuses(),
            str(tally.dropped),
            f"{phase.peak_rss / MiB:,.0f} MiB" if phase.peak_rss is not None else "",
            ms(tally.first(503)) if tally.statuses.get(503) else "none",
            phase.latency,
        ]
        checks = phase.checks or [Check("", "")]
        for i, check in enumerate(checks):
            cells = first if i == 0 else [""] * len(first)
            cells = [*cells, check.what, check.measured, check.target, check.verdict]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
