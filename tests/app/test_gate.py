"""The repository gate: the first check of a repository goes, the others wait for it."""

from __future__ import annotations

from exporter.app.gate import RepositoryGate
from exporter.flux.annotations import Options
from exporter.flux.targets import Access, Target, TargetId, TargetKind, WatchRule
from exporter.model import RepositoryRef, TagRule

APP = RepositoryRef("registry.example", "team/app")
OTHER = RepositoryRef("registry.example", "team/other")


def target(name: str, repository: RepositoryRef = APP) -> Target:
    return Target(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", name),
        api_version="source.toolkit.fluxcd.io/v1",
        plural="ocirepositories",
        repository=repository,
        rule=WatchRule.semver(TagRule(">=1.0.0")),
        options=Options(interval=60.0),
        access=Access(),
    )


def test_the_first_goes_and_the_later_ones_wait() -> None:
    gate = RepositoryGate()
    assert gate.admit(target("a"))
    assert not gate.admit(target("b"))
    assert not gate.admit(target("c"))


def test_the_first_ones_release_hands_back_the_waiting_in_order_and_reopens() -> None:
    gate = RepositoryGate()
    first, b, c = target("a"), target("b"), target("c")
    gate.admit(first)
    gate.admit(b)
    gate.admit(c)
    assert gate.release(first) == [b, c]
    assert gate.release(first) == []  # once
    d = target("d")
    assert gate.admit(d)  # open again: the next one goes first
    assert gate.release(d) == []


def test_a_release_by_one_that_waited_hands_back_nothing() -> None:
    gate = RepositoryGate()
    first, waiting = target("a"), target("b")
    gate.admit(first)
    gate.admit(waiting)
    assert gate.release(waiting) == []
    assert not gate.admit(target("c"))  # still closed behind the first
    assert gate.release(first) == [waiting, target("c")]


def test_the_first_is_told_by_identity_not_by_equal_value() -> None:
    gate = RepositoryGate()
    first = target("a")
    gate.admit(first)
    assert gate.release(target("a")) == []  # another version of the object, parsed again
    assert not gate.admit(target("b"))


def test_a_release_of_an_unknown_repository_hands_back_nothing() -> None:
    assert RepositoryGate().release(target("a")) == []


def test_repositories_are_gated_independently() -> None:
    gate = RepositoryGate()
    a, b = target("a"), target("b", OTHER)
    assert gate.admit(a)
    assert gate.admit(b)
    waiting_a, waiting_b = target("c"), target("d", OTHER)
    assert not gate.admit(waiting_a)
    assert not gate.admit(waiting_b)
    assert gate.release(b) == [waiting_b]
    assert not gate.admit(target("e"))  # APP is still closed
    assert gate.release(a) == [waiting_a, target("e")]
