"""Shards and Lease names from a label selector; the replica's identity."""

from __future__ import annotations

import pytest

from exporter.kube.identity import identity, lease_name, shard_of


@pytest.mark.parametrize(
    ("selector", "shard", "lease"),
    [
        ("", "", "flux-oci-trigger"),
        ("sharding.fluxcd.io/key=shard1", "shard1", "flux-oci-trigger-shard1"),
        ("sharding.fluxcd.io/key == s-2", "s-2", "flux-oci-trigger-s-2"),
        ("!sharding.fluxcd.io/key", "default", "flux-oci-trigger-default"),
    ],
)
def test_a_shard_elects_its_own_leader(selector: str, shard: str, lease: str) -> None:
    assert shard_of(selector) == shard
    assert lease_name("", selector) == lease
    assert lease_name("mine", selector) == "mine"


def test_any_other_selector_gets_a_short_stable_digest() -> None:
    shard = shard_of("team=a,tier in (web)")
    assert len(shard) == 8 and shard.isalnum() and shard == shard_of("team=a,tier in (web)")
    assert lease_name("", "team=a,tier in (web)") == f"flux-oci-trigger-{shard}"


def test_identity_is_the_pod_name_when_given() -> None:
    assert identity({"POD_NAME": "flux-oci-trigger-7d9f-abcde"}) == "flux-oci-trigger-7d9f-abcde"
    assert identity({}) != identity({})  # never two replicas with one identity
