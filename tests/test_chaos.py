"""The short hostile-load suite (``python -m bench.chaos --quick``), against real servers.

Each test runs one scenario at its quick scale and asserts what the issue asks of the service
that does not depend on this machine's speed: no normal request fails beside a poisoned one,
bombs are refused with the status that names them, memory stays under its bound, nothing is
answered 500 or left without an answer, and every 503 says when to retry. Refusal times,
throughput and p99 are wall-clock claims: ``make chaos`` measures them into bench/CHAOS.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bench.chaos_load import Answer, Tally
from bench.chaos_report import Check, Phase, table
from bench.chaos_scenarios import (
    CRASH_CHECK,
    POISONS,
    QUICK,
    ROUND_SIZE,
    cifar_overload,
    image_bombs,
    poisoned_batches,
    sigterm,
    wine_overload,
)

GiB = 2**30
RSS_BOUND = 2 * GiB  # the bound, with the default settings


def assert_every_request_answered(tally: Tally) -> None:
    """No 500 and no request without an HTTP answer (dropped, timed out or refused)."""
    assert 500 not in tally.statuses, tally.describe_statuses()
    assert tally.unanswered == 0, tally.describe_statuses()


def assert_no_crash(phases: Iterable[Phase]) -> None:
    for phase in phases:
        for check in phase.checks:
            if check.what == CRASH_CHECK:
                assert check.measured == "0", f"{phase.load}: {check.measured} unhandled"


@pytest.fixture(scope="module")
def poisoned() -> list[Phase]:
    return poisoned_batches(QUICK)


def test_a_poisoned_request_fails_alone(poisoned: list[Phase]) -> None:
    assert len(poisoned) == 2  # the Bayesian and the Gaussian wine model
    for phase in poisoned:
        for poison in POISONS:
            normal = phase.tally.of(f"normal {poison}")
            assert normal.sent == QUICK.poison_rounds * ROUND_SIZE
            assert normal.statuses == {200: normal.sent}, (phase.scenario, poison)


def test_poisoned_requests_are_the_clients_errors(poisoned: list[Phase]) -> None:
    for phase in poisoned:
        for poison in POISONS:
            answered = phase.tally.of(f"poisoned {poison}")
            assert answered.sent == QUICK.poison_rounds
            assert set(answered.statuses) == {422}, (phase.scenario, poison)
        assert_every_request_answered(phase.tally)
    assert_no_crash(poisoned)


def test_poisoned_requests_shared_model_passes_with_normal_ones(poisoned: list[Phase]) -> None:
    """Otherwise the first test would prove nothing about batches."""
    for phase in poisoned:
        assert phase.figures["requests_per_pass"] > 1


@pytest.fixture(scope="module")
def bombs() -> list[Phase]:
    return image_bombs(QUICK)


def test_image_bombs_are_refused_by_what_they_are(bombs: list[Phase]) -> None:
    over_image, over_image_concurrent, over_request = bombs[:3]
    for phase in (over_image, over_image_concurrent):  # 7000 × 7000 each: MAX_IMAGE_PIXELS
        assert phase.tally.statuses == {415: phase.tally.sent}
    # Every image allowed, but 64 of them over MAX_REQUEST_PIXELS together.
    assert over_request.tally.statuses == {413: over_request.tally.sent}


def test_the_largest_allowed_images_are_served(bombs: list[Phase]) -> None:
    largest = bombs[3]
    assert set(largest.tally.statuses) <= {200, 503, 504}
    assert_every_request_answered(largest.tally)


def test_memory_stays_bounded_whatever_is_sent(bombs: list[Phase]) -> None:
    for phase in bombs:
        assert phase.peak_rss is not None
        assert phase.peak_rss <= RSS_BOUND, f"{phase.load}: {phase.peak_rss / 2**20:.0f} MiB"
    flood = bombs[-1]
    assert_every_request_answered(flood.tally)
    assert_no_crash(phase for phase in bombs if phase is not bombs[4])


def test_clients_that_leave_cause_no_500(bombs: list[Phase]) -> None:
    leave = bombs[4]
    assert leave.load.startswith("clients that leave")
    assert_no_crash([leave])


def test_cifar_overload_is_shed_with_503s_that_say_when_to_retry() -> None:
    (phase,) = cifar_overload(QUICK)
    tally = phase.tally
    assert tally.sent == QUICK.cifar_requests
    assert set(tally.statuses) <= {200, 503, 504}, tally.describe_statuses()
    assert tally.missing_retry_after == 0
    assert_every_request_answered(tally)
    assert_no_crash([phase])


def test_wine_overload_drops_nothing_and_every_503_says_when_to_retry() -> None:
    (phase,) = wine_overload(QUICK)
    tally = phase.tally
    assert tally.sent == QUICK.wine_requests
    assert set(tally.statuses) <= {200, 503, 504}, tally.describe_statuses()
    assert tally.missing_retry_after == 0
    assert_every_request_answered(tally)
    assert_no_crash([phase])


def test_sigterm_mid_load_loses_nothing_the_server_took() -> None:
    """Every request written at once; SIGTERM once the server has read them all: each is
    answered (200, or a 503 refusal with its Retry-After), none dropped."""
    (phase,) = sigterm(QUICK)
    tally = phase.tally
    assert tally.sent == QUICK.sigterm_requests
    # Otherwise the signal came after the work, and nothing here is about shutting down.
    assert phase.figures["in_flight_at_sigterm"] > 0
    if phase.figures["unread_at_sigterm"] is not None:  # None: no /proc/net/tcp to ask
        assert phase.figures["unread_at_sigterm"] == 0, "requests still unread at SIGTERM"
    assert tally.dropped == 0, tally.describe_statuses()
    assert set(tally.statuses) <= {200, 503}, tally.describe_statuses()
    assert 200 in tally.statuses, tally.describe_statuses()
    assert tally.missing_retry_after == 0
    assert_every_request_answered(tally)
    assert_no_crash([phase])


def cells(line: str) -> list[str]:
    """A Markdown table row's cells, an escaped ``|`` kept as ``¦``."""
    return [cell.strip() for cell in line.replace("\\|", "¦")[1:-1].split("|")]


def test_the_table_has_a_row_per_check_and_a_cell_per_column() -> None:
    answers = [
        Answer(200, 0.01, 0.01),
        Answer(503, 0.002, 0.5, retry_after="1"),
        Answer(None, 1, 1, "dropped"),
    ]
    checks = [Check("one", "1", "1", True), Check("two", "2", "1", False), Check("three", "3")]
    lines = table([Phase("s", "a | load", Tally(answers), checks=checks)]).splitlines()
    header, _, *rows = (cells(line) for line in lines)
    assert len(rows) == len(checks)
    assert all(len(row) == len(header) for row in rows)
    assert rows[0][:7] == ["s", "a ¦ load", "3", "200×1, 503×1, dropped×1", "1", "", "500 ms"]
    assert all(cell == "" for cell in rows[1][:8])  # the phase's figures on its first row only
    assert [row[-1] for row in rows] == ["PASS", "MISS", ""]
