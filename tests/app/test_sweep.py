"""The sweep: a full pass ends when every target known at its start was checked once."""

from __future__ import annotations

import logging

import pytest

from exporter.app.sweep import Sweep
from exporter.flux.targets import TargetId, TargetKind

A, B, C = (TargetId(TargetKind.OCI_REPOSITORY, "apps", name) for name in "abc")


class Passes:
    """The store's side of the sweep: the passes done, and when each ended."""

    def __init__(self) -> None:
        self.ended: list[float] = []

    def done(self, now: float) -> None:
        self.ended.append(now)

    def count(self) -> int:
        return len(self.ended)


def sweep() -> tuple[Sweep, Passes]:
    passes = Passes()
    return Sweep(passes.done, passes.count), passes


def test_a_pass_over_no_targets_is_done_at_once() -> None:
    s, passes = sweep()
    assert not s.running
    s.begin([], 5.0)
    assert passes.ended == [5.0]
    assert not s.running
    s.begin([], 6.0)  # and again at the next begin
    assert passes.ended == [5.0, 6.0]


def test_a_pass_ends_when_every_target_was_checked() -> None:
    s, passes = sweep()
    s.begin([A, B], 0.0)
    assert s.running
    s.checked(A, 1.0, [A, B])
    s.checked(A, 1.5, [A, B])  # twice: still one of two
    assert passes.ended == []
    s.checked(B, 2.0, [A, B, C])
    assert passes.ended == [2.0]
    assert s.running  # the next pass began, over the targets known then
    s.checked(A, 3.0, [A, B, C])
    s.checked(B, 3.0, [A, B, C])
    assert passes.ended == [2.0]
    s.checked(C, 4.0, [A, B, C])
    assert passes.ended == [2.0, 4.0]


def test_a_target_not_in_the_pass_does_not_end_it() -> None:
    s, passes = sweep()
    s.begin([A], 0.0)
    s.checked(B, 1.0, [A, B])
    assert passes.ended == []


def test_a_check_before_any_pass_counts_nothing() -> None:
    s, passes = sweep()
    s.checked(A, 1.0, [A])
    assert passes.ended == [] and not s.running


def test_a_forgotten_target_no_longer_holds_the_pass_open() -> None:
    s, passes = sweep()
    s.begin([A, B], 0.0)
    s.forget(B)
    s.checked(A, 1.0, [A])
    assert passes.ended == [1.0]


def test_forget_outside_a_pass_is_harmless() -> None:
    s, passes = sweep()
    s.forget(A)
    s.begin([A], 0.0)
    s.checked(A, 1.0, [A])
    assert passes.ended == [1.0]


def test_forgetting_the_last_unchecked_target_ends_the_pass() -> None:
    s, passes = sweep()
    s.begin([A, B], 0.0)
    s.checked(A, 1.0, [A, B])
    s.forget(B)  # deleted before its check: nothing holds the pass open now
    s.begin([A], 2.0)  # what the book does after the objects were synced
    assert passes.ended != []


def test_the_first_pass_is_logged_at_info_and_the_later_ones_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s, _ = sweep()
    with caplog.at_level(logging.DEBUG, logger="exporter.app.sweep"):
        s.begin([A, B], 10.0)
        s.checked(A, 11.0, [A, B])
        s.checked(B, 12.5, [A, B])
        s.checked(A, 13.0, [A, B])
        s.checked(B, 14.0, [A, B])
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.INFO, "first full check of 2 targets in 2.5s"),
        (logging.DEBUG, "a full check of 2 targets in 1.5s"),
    ]
