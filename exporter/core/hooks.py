"""Push events from registries and forges -> which repositories to look at now. Pure.

An event is a nudge, never the truth: what comes out of here only says which
repositories may have something new (and, for a GitLab tag push, that a build is on its
way). The registry listing, with each object's own credentials, still decides. So the
parsers are strict about shape and lenient about meaning: anything that is not a push
of a tagged manifest is ``ignored``; anything that is not the documented JSON shape is
``invalid``.

Sources:
- CNCF distribution notifications (distribution 2.x and v3, GitLab's self-managed
  registry): envelope ``{"events": [...]}``, manifest ``push`` events with a tag;
- GitLab project or group webhooks: ``Job Hook`` (``build_status: success``),
  ``Pipeline Hook`` (``object_attributes.status: success``) and ``Tag Push Hook``; the
  project path names every repository at or below it on the GitLab registry;
- GitHub ``package`` and ``registry_package`` events of container packages (ghcr.io);
- Harbor ``PUSH_ARTIFACT`` webhooks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from exporter.flux.targets import TargetId
from exporter.model import RepositoryRef

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)


class HookSource(StrEnum):
    DISTRIBUTION = "distribution"
    GITLAB = "gitlab"
    GITHUB = "github"
    HARBOR = "harbor"
    KUBERNETES = "kubernetes"  # ``notify``: an Event through the API server, not a hook


HTTP_SOURCES = (HookSource.DISTRIBUTION, HookSource.GITLAB, HookSource.GITHUB, HookSource.HARBOR)


class InvalidEvent(ValueError):
    """The body is not the documented shape (the message is safe to log)."""


@dataclass(frozen=True, slots=True)
class Nudge:
    """Look at ``path`` now: on ``host`` (None: on any registry host), and every
    repository below it too when ``subtree``; ``expedite``: a build is coming, look
    again every few seconds for a while; ``namespaces``: only targets there (a
    notification through the Kubernetes API speaks for its own namespace)."""

    path: str
    host: str | None = None
    subtree: bool = False
    expedite: bool = False
    namespaces: frozenset[str] | None = None  # only targets in these; None: any


def merged(first: Nudge, later: Nudge) -> Nudge:
    """Two nudges for the same repository within one gap, as one (none is lost: the
    namespaces of both, expedited if either was)."""
    if first.namespaces is None or later.namespaces is None:
        namespaces = None
    else:
        namespaces = first.namespaces | later.namespaces
    return Nudge(later.path, later.host, later.subtree or first.subtree,
                 later.expedite or first.expedite, namespaces)  # fmt: skip


def parse(source: HookSource, body: bytes, event_header: str, gitlab_host: str) -> list[Nudge]:
    """The nudges in one delivery; ``[]`` when it carries nothing of interest."""
    doc = _json(body)
    if source is HookSource.DISTRIBUTION:
        return _distribution(doc)
    if source is HookSource.GITLAB:
        return _gitlab(doc, event_header, gitlab_host)
    if source is HookSource.GITHUB:
        return _github(doc, event_header)
    if source is HookSource.HARBOR:
        return _harbor(doc)
    raise InvalidEvent(f"{source} events do not come over HTTP")


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested beyond reason
        raise InvalidEvent("body is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("body is not a JSON object")
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _distribution(doc: dict[str, Any]) -> list[Nudge]:
    events = doc.get("events")
    if not isinstance(events, list):
        raise InvalidEvent("no events list in the envelope")
    found: list[Nudge] = []
    for event in events:
        event = _dict(event)
        target = _dict(event.get("target"))
        repository = _text(target.get("repository"))
        if event.get("action") != "push" or repository is None or not _text(target.get("tag")):
            continue
        media = _text(target.get("mediaType"))
        if media is not None and media not in MANIFEST_TYPES:
            continue  # a blob
        host = _text(_dict(event.get("request")).get("host"))
        found.append(Nudge(repository.lower(), host.lower() if host else None))
    return found


def _gitlab(doc: dict[str, Any], event: str, gitlab_host: str) -> list[Nudge]:
    project = _dict(doc.get("project"))
    path = _text(project.get("path_with_namespace"))
    if event == "Job Hook":
        if doc.get("build_status") != "success":
            return []
    elif event == "Pipeline Hook":
        if _dict(doc.get("object_attributes")).get("status") != "success":
            return []
    elif event == "Tag Push Hook":
        if doc.get("after") == "0" * 40:
            return []  # a deleted tag announces no build
    else:
        return []
    if path is None:
        raise InvalidEvent(f"{event} without project.path_with_namespace")
    expedite = event == "Tag Push Hook"
    return [Nudge(path.lower(), gitlab_host, subtree=True, expedite=expedite)]


def _github(doc: dict[str, Any], event: str) -> list[Nudge]:
    if event not in ("package", "registry_package"):
        return []
    package = _dict(doc.get(event))
    kind = (_text(package.get("package_type")) or "").lower()
    if kind != "container" or doc.get("action") not in ("published", "updated"):
        return []
    owner = _text(package.get("namespace")) or _text(_dict(package.get("owner")).get("login"))
    name = _text(package.get("name"))
    if owner is None or name is None:
        raise InvalidEvent("package event without its owner and name")
    return [Nudge(f"{owner}/{name}".lower(), "ghcr.io")]


def _harbor(doc: dict[str, Any]) -> list[Nudge]:
    if doc.get("type") != "PUSH_ARTIFACT":
        return []
    data = _dict(doc.get("event_data"))
    name = _text(_dict(data.get("repository")).get("repo_full_name"))
    if name is None:
        raise InvalidEvent("PUSH_ARTIFACT without event_data.repository.repo_full_name")
    hosts = set()
    for resource in _list(data.get("resources")):
        url = _text(_dict(resource).get("resource_url"))
        if url and "/" in url:
            hosts.add(url.split("/", 1)[0].lower())
    if len(hosts) == 1:
        return [Nudge(name.lower(), hosts.pop())]
    return [Nudge(name.lower())]


def matching(
    nudge: Nudge, repositories: Mapping[TargetId, RepositoryRef]
) -> dict[RepositoryRef, list[TargetId]]:
    """The targets a nudge names, by repository (``repositories``: each target's). A nudge
    with a host matches on it; when nothing does, a registry known to its clients by
    another name than it knows itself still matches on the path (not for a subtree)."""

    def under(path: str) -> bool:
        return path == nudge.path or (nudge.subtree and path.startswith(nudge.path + "/"))

    found: dict[RepositoryRef, list[TargetId]] = {}
    anywhere: dict[RepositoryRef, list[TargetId]] = {}
    for target_id, repo in repositories.items():
        if nudge.namespaces is not None and target_id.namespace not in nudge.namespaces:
            continue
        if not under(repo.path.lower()):
            continue
        anywhere.setdefault(repo, []).append(target_id)
        if nudge.host is None or repo.registry == nudge.host:
            found.setdefault(repo, []).append(target_id)
    return found or (anywhere if nudge.host is not None and not nudge.subtree else {})
