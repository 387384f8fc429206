"""The ``notify`` channel: a pushed artifact's reference, carried by a Kubernetes Event.

A CI job that pushed runs ``flux-oci-trigger notify REF``: it creates an
``events.k8s.io/v1`` Event in its own namespace, reason ``OCIArtifactPushed``, whose
``note`` is the reference; the exporter watches those Events and turns each into a nudge
for the targets on that repository *in that namespace*. Why an Event: creating one is
harmless, commonly granted and namespaced (tenants stay apart by RBAC alone), it expires
on its own (an hour by default), a field selector keeps the watch to ours, and nothing
needs to be installed cluster-wide (no CRD). Pure: parsing and building only.

A reference is ``[oci://]HOST[:PORT]/PATH:TAG[@sha256:HEX]``, as ``$CI_REGISTRY_IMAGE:$TAG``
reads; the host, path and tag follow the OCI grammar, the digest is optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from exporter.core.hooks import Nudge
from exporter.flux.policy import compile_rule
from exporter.flux.targets import RuleKind, Target
from exporter.model import RepositoryRef, quoted

REASON = "OCIArtifactPushed"
ACTION = "Notify"
CONTROLLER = "oci-trigger.gitlab.com/notify"
GENERATE_NAME = "flux-oci-trigger-notify-"
FIELD_SELECTOR = f"reason={REASON}"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_FORM = "[oci://]HOST[:PORT]/PATH:TAG[@sha256:DIGEST]"


class InvalidReference(ValueError):
    """Not a pushed artifact's reference (the message is safe to print)."""


@dataclass(frozen=True, slots=True)
class PushedRef:
    repository: RepositoryRef
    tag: str
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


def parse_ref(text: str) -> PushedRef:
    """``[oci://]HOST[:PORT]/PATH:TAG[@DIGEST]``; raises InvalidReference."""
    rest = text.strip()
    name, at, digest = rest.partition("@")
    if at and not _DIGEST.fullmatch(digest):  # not repeated: it may hold credentials
        raise InvalidReference(
            "a reference has '@' only before its digest, and the digest after '@' is not "
            f"sha256:<64 hex> or sha512:<128 hex>; expected {_FORM}"
        )
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        raise InvalidReference(f"{quoted(text)}: no tag; expected {_FORM}")
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"{quoted(text)}: {quoted(tag)} is not an OCI tag")
    try:
        repo = RepositoryRef.parse(repository)
    except ValueError as exc:
        raise InvalidReference(f"{quoted(text)}: {exc}") from None
    return PushedRef(repo, tag, digest or None)


def event_body(ref: PushedRef, namespace: str, event_time: str, instance: str) -> dict[str, Any]:
    """The Event ``notify`` creates (``event_time``: RFC 3339 with microseconds)."""
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": GENERATE_NAME, "namespace": namespace},
        "eventTime": event_time,
        "type": "Normal",
        "reason": REASON,
        "action": ACTION,
        "note": str(ref),
        "reportingController": CONTROLLER,
        "reportingInstance": instance[:128] or "notify",
        # the API wants an object in the Event's namespace: the namespace itself
        "regarding": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": namespace,
            "namespace": namespace,
        },
    }


def notification(event: Mapping[str, Any]) -> tuple[str, PushedRef] | None:
    """(namespace, reference) of one of our Events; None for any other Event. Raises
    InvalidReference when it is ours but its note is not a reference."""
    if event.get("reason") != REASON or event.get("reportingController") != CONTROLLER:
        return None
    meta = event.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    note = event.get("note")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidReference("an OCIArtifactPushed Event without a namespace")
    if not isinstance(note, str):
        raise InvalidReference("an OCIArtifactPushed Event without a note")
    return namespace, parse_ref(note)


def nudge_for(namespace: str, ref: PushedRef, *, everywhere: bool = False) -> Nudge:
    """The targets on that repository in ``namespace`` (in every namespace when the
    notification comes from a namespace the operator lets speak for all)."""
    scope = None if everywhere else frozenset({namespace})
    return Nudge(ref.repository.path, ref.repository.registry, namespaces=scope)


class Progress(StrEnum):
    """Where one object in scope stands with a pushed artifact (``notify --wait``)."""

    APPLIED = "applied"  # it applied the artifact, or one its rule prefers to it
    WAITING = "waiting"  # its rule selects the artifact; Flux has not applied it yet
    NOT_SELECTED = "not selected"  # its rule excludes the pushed tag: not waited for


def in_scope(target: Target, ref: PushedRef) -> bool:
    return target.repository == ref.repository


def progress(target: Target, ref: PushedRef, before: str | None) -> Progress:
    """``before``: the object's applied revision when ``notify`` started. A mutable tag
    without the pushed digest counts as applied once its revision changed since then."""
    applied = target.applied
    rule = target.rule
    if rule.kind is RuleKind.SEMVER and rule.tag_rule is not None:
        compiled = compile_rule(rule.tag_rule)
        if compiled.select([ref.tag]) is None:
            return Progress.NOT_SELECTED
        tag = _applied_tag(target)
        if tag is None:
            return Progress.WAITING
        if tag == ref.tag:
            same = ref.digest is None or applied is None or applied.digest in (None, ref.digest)
            return Progress.APPLIED if same else Progress.WAITING
        preferred = compiled.select([tag, ref.tag])
        return Progress.APPLIED if preferred == tag else Progress.WAITING
    if rule.kind is RuleKind.TAG:
        if rule.tag != ref.tag:
            return Progress.NOT_SELECTED
        if applied is None:
            return Progress.WAITING
        if ref.digest is not None:
            return Progress.APPLIED if applied.digest == ref.digest else Progress.WAITING
        return Progress.APPLIED if applied.raw != before else Progress.WAITING
    # pinned: a digest (OCIRepository) or an exact chart version
    if rule.digest is not None:
        if ref.digest != rule.digest:
            return Progress.NOT_SELECTED
        return Progress.APPLIED if applied and applied.digest == rule.digest else Progress.WAITING
    if rule.tag != ref.tag:
        return Progress.NOT_SELECTED
    return Progress.APPLIED if _applied_tag(target) == ref.tag else Progress.WAITING


def _applied_tag(target: Target) -> str | None:
    applied = target.applied
    if applied is None:
        return None
    return applied.chart_version or applied.tag
