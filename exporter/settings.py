"""The process-wide settings: one frozen value built once at start-up.

Sources, highest first: command-line flags, ``FLUX_OCI_TRIGGER_<FIELD>`` environment
variables (e.g. ``FLUX_OCI_TRIGGER_TAG_TTL=2m``), defaults. Every invalid value is
reported at once in a :class:`SettingsError`. Durations accept Go style (``90s``,
``1h30m``) or plain seconds. Unknown ``FLUX_OCI_TRIGGER_*`` variables are ignored, not
refused: Kubernetes injects ``FLUX_OCI_TRIGGER_PORT``, ``…_SERVICE_HOST`` and the like
into pods when a Service has this name. Pure: the environment is passed in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from exporter.flux.annotations import DEFAULT_PREFIX, parse_duration
from exporter.flux.policy import TagParsing

ENV_PREFIX = "FLUX_OCI_TRIGGER_"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "error")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/")
_LISTEN = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None = None
    """Path to a kubeconfig; None: in-cluster config, else the default kubeconfig."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: all (a cluster-wide watch)."""
    interval: float = 60.0
    """Seconds between registry checks of an object without an ``interval`` annotation."""
    min_interval: float = 10.0
    """Seconds: the lowest ``interval`` an annotation may ask for (lower is raised to it)."""
    tag_ttl: float = 60.0
    """Seconds a repository's tag list is reused by every object on that repository."""
    dry_run: bool = False
    """Decide and report, but patch nothing and emit no Event."""
    once: bool = False
    """One pass over every object, then exit (for CI and debugging)."""
    annotation_prefix: str = DEFAULT_PREFIX
    """Prefix of the per-object annotations, ending in ``/``."""
    log_format: str = "text"
    """``text`` for people, ``json`` (one object per line) for log pipelines."""
    log_level: str = "info"
    """``debug``, ``info`` or ``error`` (warnings show at info and debug)."""
    listen: str = "0.0.0.0:9798"
    """``host:port`` of /metrics, /healthz and /readyz. The Prometheus exporter range
    9100-9999 is fully allocated, so no default avoids every exporter; 9798 keeps clear
    of Prometheus (9090), Pushgateway (9091), Alertmanager (9093/9094), node_exporter
    (9100) and Flux's own controllers (8080 metrics, 9440 probes)."""
    patch_rate: float = 5.0
    """Reconcile requests (merge-patches) per second, at most, across all objects."""
    registry_concurrency: int = 8
    """Checks (and HTTP requests) in flight to one registry host, at most: each host has
    its own workers and queue, so a slow host never delays another host's objects."""
    events_listen: str = ""
    """``host:port`` of the push events listener (/hooks/...); empty: off. Never the
    metrics port: it is meant to be reachable from registries and GitLab."""
    gitlab_registry: str = "registry.gitlab.com"
    """The GitLab container registry host a GitLab webhook's project paths live on."""
    event_gap: float = 2.0
    """Seconds: at most one refresh of a repository's tags per this long, however many
    events name it (later ones wait for the gap, none is lost)."""
    expedite_window: float = 900.0
    """Seconds after a GitLab tag push during which its repositories are checked every
    few seconds (until a new artifact appears)."""
    watch_label_selector: str = ""
    """Only objects matching this label selector are watched (Flux's sharding flag),
    e.g. ``sharding.fluxcd.io/key=shard1``; ``!sharding.fluxcd.io/key`` for the rest."""
    leader_elect: bool = False
    """Elect one leader among the replicas on a Lease: only it patches and writes
    Events; the others keep their caches warm and take over within the lease."""
    leader_election_namespace: str = ""
    """Namespace of the Lease; empty: the pod's own namespace (or ``flux-oci-trigger``)."""
    leader_election_id: str = ""
    """Name of the Lease; empty: ``flux-oci-trigger``, with the shard appended when a
    ``watch_label_selector`` is set, so each shard elects its own leader."""
    stuck_backoff_min: float = 60.0
    """Seconds before the first repeat of a request Flux handled without applying it."""
    stuck_backoff_max: float = 3600.0
    """Seconds: the doubling repeat delay stops growing here."""
    notify_watch: bool = True
    """Watch the ``OCIArtifactPushed`` Events CI jobs create with ``flux-oci-trigger
    notify``: instant updates with nothing inbound (one watch)."""
    notify_everywhere: tuple[str, ...] = ()
    """Namespaces whose notifications reach the objects of every namespace (platform
    teams); a notification from any other namespace reaches its own namespace only."""
    tag_parsing: TagParsing = TagParsing.FLUX_2_7
    """Which tags the watched Flux reads as versions: ``flux-2.7`` for Flux 2.7 and later
    (``2025.02.03``, ``v1.2.3``: two dots, leading zeros allowed), ``flux-2.6`` for Flux
    2.6 and earlier (strict semver after one optional ``v``)."""


class SettingsError(ValueError):
    """Every invalid setting, one message per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _duration(value: object) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        return float(value)
    raise ValueError(f"invalid duration {_shown(value)}")


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
    raise ValueError(f"{_shown(value)} is not a boolean (true/false)")


def _positive_float(value: object) -> float:
    try:
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{_shown(value)} is not a positive number")
    return number


def _positive_int(value: object) -> int:
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"{_shown(value)} is not a positive integer")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"{_shown(value)} is not a string")


def _tag_parsing(value: object) -> TagParsing:
    choices = {t.value: t for t in TagParsing}
    found = choices.get(value.strip()) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"{_shown(value)} is not one of {', '.join(choices)}")
    return found


def _namespaces(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError(f"{_shown(value)} is not a list of namespaces")
    names = tuple(dict.fromkeys(i for i in items if i))
    bad = [n for n in names if not _DNS_LABEL.fullmatch(n)]
    if bad:
        raise ValueError(f"invalid namespace name(s): {', '.join(_shown(b) for b in bad)}")
    return names


_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "kubeconfig": _text,
    "namespaces": _namespaces,
    "interval": _duration,
    "min_interval": _duration,
    "tag_ttl": _duration,
    "dry_run": _bool,
    "once": _bool,
    "annotation_prefix": _text,
    "log_format": _text,
    "log_level": _text,
    "listen": _text,
    "patch_rate": _positive_float,
    "registry_concurrency": _positive_int,
    "events_listen": _text,
    "gitlab_registry": _text,
    "event_gap": _duration,
    "expedite_window": _duration,
    "watch_label_selector": _text,
    "leader_elect": _bool,
    "leader_election_namespace": _text,
    "leader_election_id": _text,
    "stuck_backoff_min": _duration,
    "stuck_backoff_max": _duration,
    "tag_parsing": _tag_parsing,
    "notify_watch": _bool,
    "notify_everywhere": _namespaces,
}


def _check(s: dict[str, Any], failed: set[str]) -> list[str]:
    """Cross-field and value checks, skipping those about values that did not convert."""
    checks: list[tuple[tuple[str, ...], bool, str]] = [
        (("min_interval",), s["min_interval"] <= 0, "min_interval must be more than 0s"),
        (
            ("interval", "min_interval"),
            s["interval"] < s["min_interval"],
            f"interval {s['interval']:g}s is below min_interval {s['min_interval']:g}s",
        ),
        (
            ("stuck_backoff_min",),
            s["stuck_backoff_min"] <= 0,
            "stuck_backoff_min must be more than 0s",
        ),
        (
            ("stuck_backoff_min", "stuck_backoff_max"),
            s["stuck_backoff_max"] < s["stuck_backoff_min"],
            "stuck_backoff_max is below stuck_backoff_min",
        ),
        (
            ("annotation_prefix",),
            not _PREFIX.fullmatch(s["annotation_prefix"]),
            f"annotation_prefix {_shown(s['annotation_prefix'])} must be a DNS subdomain "
            "followed by '/', e.g. oci-trigger.gitlab.com/",
        ),
        (
            ("log_format",),
            s["log_format"] not in LOG_FORMATS,
            f"log_format {_shown(s['log_format'])} is not one of text, json",
        ),
        (
            ("events_listen",),
            s["events_listen"] != "" and not _valid_listen(s["events_listen"]),
            f"events_listen {_shown(s['events_listen'])} is not HOST:PORT (port 1-65535)",
        ),
        (
            ("events_listen", "listen"),
            s["events_listen"] != "" and s["events_listen"] == s["listen"],
            "events_listen must differ from listen (events may be exposed, metrics not)",
        ),
        (
            ("log_level",),
            s["log_level"] not in LOG_LEVELS,
            f"log_level {_shown(s['log_level'])} is not one of debug, info, error",
        ),
        (
            ("listen",),
            not _valid_listen(s["listen"]),
            f"listen {_shown(s['listen'])} is not HOST:PORT (port 1-65535)",
        ),
    ]
    return [message for names, bad, message in checks if bad and not failed.intersection(names)]


def _valid_listen(value: str) -> bool:
    match = _LISTEN.fullmatch(value)
    return match is not None and 1 <= int(match.group("port")) <= 65535


def from_sources(flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Flags (None: not given) over ``FLUX_OCI_TRIGGER_*`` variables (empty: not set)
    over defaults. Raises :class:`SettingsError` listing every problem."""
    problems = [f"unknown setting {_shown(k)}" for k in flags if k not in _CONVERTERS]
    values: dict[str, Any] = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
    failed: set[str] = set()
    for name, convert in _CONVERTERS.items():
        variable = ENV_PREFIX + name.upper()
        raw: object = flags.get(name)
        origin = f"--{name.replace('_', '-')}"
        if raw is None:
            raw = env.get(variable) or None
            origin = variable
        if raw is None:
            continue
        try:
            values[name] = convert(raw)
        except ValueError as exc:
            problems.append(f"{origin}: {exc}")
            failed.add(name)
    problems.extend(_check(values, failed))
    if problems:
        raise SettingsError(problems)
    return Settings(**values)
