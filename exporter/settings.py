"""The process-wide settings: one frozen value built once at start-up.

Each setting is declared once, as a field of :class:`Settings`: its type, its default,
its :class:`Kind` (how text becomes the value and how ``--help`` writes it), the line
``--help`` shows and, in the field's docstring, what it means. The rest follows from the
declaration: the variable ``FLUX_OCI_TRIGGER_<NAME>``, the flag ``--<name>`` (or the one
declared), :data:`SETTINGS` (which ``exporter.cli.options`` turns into click options) and
:func:`from_sources`; so a flag, its variable, its help and its default cannot disagree.

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
from dataclasses import Field, dataclass, field, fields
from typing import Any, Generic, NamedTuple, TypeVar

from exporter.flux.annotations import DEFAULT_PREFIX, parse_duration
from exporter.flux.policy import TagParsing

T = TypeVar("T")

ENV_PREFIX = "FLUX_OCI_TRIGGER_"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/")
_ADDRESS = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]*)):(?P<port>[0-9]{1,5})"
)
_EVERY_ADDRESS = "0.0.0.0"
_URL = re.compile(r"https?://[^\s/?#@]*@?[^\s/?#@]+(?:[/?#]\S*)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Address:
    """Where to listen. ``host`` never has brackets (``::``); ``str()`` adds them back."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """``HOST:PORT``, ``[IPV6]:PORT``, or ``:PORT`` (every IPv4 address); port 1-65535."""
        match = _ADDRESS.fullmatch(text)
        if match is None or not 1 <= int(match.group("port")) <= 65535:
            raise ValueError(f"{_shown(text)} is not HOST:PORT to listen on (port 1-65535)")
        host = match.group("ipv6") or match.group("host") or _EVERY_ADDRESS
        return cls(host, int(match.group("port")))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def default_text(value: object) -> str:
    """A value as a flag takes it: ``true``, ``flux-2.7``; ``""`` for the empty string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) or '""'


def duration_text(seconds: float) -> str:
    """Go-style: 90.0 -> ``1m30s``, 0.5 -> ``500ms``, 3600.0 -> ``1h``."""
    if not math.isfinite(seconds) or seconds <= 0:
        return f"{seconds:g}s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole, rest = divmod(seconds, 1)
    hours, left = divmod(int(whole), 3600)
    minutes, secs = divmod(left, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    tail = secs + rest
    parts.append(f"{tail:g}s" if tail else "")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How a flag's or a variable's value becomes a setting, and how ``--help`` writes it.

    ``parse`` takes the text (or, from a flag, the value click made of it) and raises
    ValueError with a message about the value; the caller names where it came from.
    """

    parse: Callable[[object], T]
    metavar: str = "TEXT"
    show: Callable[[T], str] = default_text
    choices: tuple[str, ...] = ()
    """The only values allowed (checked after parsing, listed by ``--help``)."""
    switch: bool = False
    """A boolean: the flag takes no value."""
    many: bool = False
    """A list: the flag repeats, the variable is comma-separated."""


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


def _address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    return Address.parse(_text(value))


def _address_or_off(value: object) -> Address | None:
    return None if value == "" else _address(value)


def _url_or_off(value: object) -> str:
    """An ``http://`` or ``https://`` URL with a host, or ``""``; the value is not echoed
    (a URL may carry a token)."""
    text = _text(value).strip()
    if text and not _URL.fullmatch(text):
        raise ValueError("the value is not an http:// or https:// URL with a host")
    return text


def _log_format(value: object) -> str:
    """``text`` or ``json``; ``console`` is Flux's ``--log-encoding`` name for text."""
    text = _text(value).strip()
    return "text" if text == "console" else text


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


TEXT: Kind[str] = Kind(_text)
PATH: Kind[str | None] = Kind(_text)
SWITCH: Kind[bool] = Kind(_bool, metavar="", switch=True)
DURATION: Kind[float] = Kind(_duration, metavar="DURATION", show=duration_text)
RATE: Kind[float] = Kind(_positive_float, metavar="NUMBER", show=lambda n: f"{n:g}")
COUNT: Kind[int] = Kind(_positive_int, metavar="N")
ADDRESS: Kind[Address] = Kind(_address)
ADDRESS_OR_OFF: Kind[Address | None] = Kind(_address_or_off)
URL_OR_OFF: Kind[str] = Kind(_url_or_off, metavar="URL")
NAMESPACES: Kind[tuple[str, ...]] = Kind(_namespaces, many=True)
LOG_FORMAT: Kind[str] = Kind(_log_format, choices=(*LOG_FORMATS, "console"))
LOG_LEVEL: Kind[str] = Kind(_text, choices=LOG_LEVELS)
TAG_PARSING: Kind[TagParsing] = Kind(_tag_parsing, choices=tuple(t.value for t in TagParsing))


_DECLARED = "setting"  # the key of a Settings field's metadata


class _Declared(NamedTuple):
    kind: Kind[Any]
    help: str
    flag: str
    aliases: tuple[str, ...]
    shown: str


def setting(
    default: T,
    kind: Kind[T],
    help: str,
    *,
    flag: str = "",
    aliases: tuple[str, ...] = (),
    shown: str = "",
) -> T:
    """A :class:`Settings` field with what its flag and variable need.

    ``help``: the line ``--help`` shows. ``flag``: when not ``--<name>``, e.g.
    ``--leader-elect/--no-leader-elect``. ``aliases``: more spellings of the flag (another
    tool's, for a drop-in). ``shown``: the default in ``--help``, when not the value itself.
    """
    return field(default=default, metadata={_DECLARED: _Declared(kind, help, flag, aliases, shown)})


@dataclass(frozen=True)
class Settings:
    """Every setting, each field its whole declaration (:func:`setting`), in the order
    ``--help`` lists them."""

    kubeconfig: str | None = setting(
        None, PATH, "Kubeconfig file.", shown="in-cluster, then $KUBECONFIG or ~/.kube/config"
    )
    """Path to a kubeconfig; None: in-cluster config, else the default kubeconfig."""
    namespaces: tuple[str, ...] = setting(
        (),
        NAMESPACES,
        "Watch only these namespaces (repeatable; the variable: comma-separated).",
        flag="--namespace",
        shown="all",
    )
    """Namespaces to watch; empty: all (a cluster-wide watch)."""
    interval: float = setting(
        60.0, DURATION, "Re-check interval of an object without an interval annotation."
    )
    """Seconds between registry checks of an object without an ``interval`` annotation."""
    min_interval: float = setting(
        10.0, DURATION, "Lowest interval an annotation may ask for (lower is raised to it)."
    )
    """Seconds: the lowest ``interval`` an annotation may ask for (lower is raised to it)."""
    tag_ttl: float = setting(
        60.0, DURATION, "How long a repository's tag listing is reused by every object on it."
    )
    """Seconds a repository's tag list is reused by every object on that repository."""
    dry_run: bool = setting(False, SWITCH, "Decide and report, patch nothing.")
    """Decide and report, but patch nothing and emit no Event."""
    once: bool = setting(False, SWITCH, "One full pass, then exit (0: it completed).")
    """One pass over every object, then exit (for CI and debugging)."""
    annotation_prefix: str = setting(
        DEFAULT_PREFIX, TEXT, "Opt-in annotation prefix (a DNS subdomain and '/')."
    )
    """Prefix of the per-object annotations, ending in ``/``."""
    log_format: str = setting(
        "text",
        LOG_FORMAT,
        "Log lines for people (text, or Flux's console) or pipelines (json).",
        aliases=("--log-encoding",),
    )
    """``text`` for people, ``json`` (one object per line) for log pipelines. Text is the
    default for a terminal (``check``, ``tags``); the manifests and the chart set json, as
    Flux's controllers log. ``--log-encoding`` (``json`` or ``console``) is Flux's flag."""
    log_level: str = setting("info", LOG_LEVEL, "Least severe log lines shown.")
    """``debug``, ``info``, ``warn`` or ``error``."""
    listen: Address = setting(
        Address(_EVERY_ADDRESS, 9798),
        ADDRESS,
        "HOST:PORT of /metrics, /healthz and /readyz.",
        aliases=("--metrics-addr",),
    )
    """Where /metrics, /healthz and /readyz are served. The Prometheus exporter range
    9100-9999 is fully allocated, so no default avoids every exporter; 9798 keeps clear
    of Prometheus (9090), Pushgateway (9091), Alertmanager (9093/9094), node_exporter
    (9100) and Flux's own controllers (8080 metrics, 9440 probes)."""
    events_listen: Address | None = setting(
        None,
        ADDRESS_OR_OFF,
        "HOST:PORT of the push events listener (/hooks/...).",
        shown="off",
    )
    """Where the push events listener (/hooks/...) is served; None (empty text): off.
    Never the metrics port: it is meant to be reachable from registries and GitLab."""
    gitlab_registry: str = setting(
        "registry.gitlab.com", TEXT, "GitLab registry host the projects of GitLab hooks live on."
    )
    """The GitLab container registry host a GitLab webhook's project paths live on."""
    events_addr: str = setting(
        "",
        URL_OR_OFF,
        "Also POST every Event, in Flux's format, to this notification-controller URL.",
        shown="off",
    )
    """Flux's flag of the same name: every Event recorded is also POSTed, as Flux's
    controllers post theirs, to notification-controller's event endpoint (in a cluster,
    ``http://notification-controller.flux-system.svc.cluster.local./``), so that a Flux
    ``Alert`` routes it; empty: off. Never in a dry run."""
    watch_label_selector: str = setting(
        "",
        TEXT,
        "Only objects matching this selector (sharding), e.g. sharding.fluxcd.io/key=s1.",
        shown="every object",
    )
    """Only objects matching this label selector are watched (Flux's sharding flag),
    e.g. ``sharding.fluxcd.io/key=shard1``; ``!sharding.fluxcd.io/key`` for the rest."""
    leader_elect: bool = setting(
        False,
        SWITCH,
        "Elect one leader on a Lease among replicas (only it requests).",
        flag="--leader-elect/--no-leader-elect",
        aliases=("--enable-leader-election",),
    )
    """Elect one leader among the replicas on a Lease: only it patches and writes
    Events; the others keep their caches warm and take over within the lease."""
    leader_election_namespace: str = setting(
        "", TEXT, "Namespace of the Lease.", shown="the pod's namespace"
    )
    """Namespace of the Lease; empty: the pod's own namespace (or ``flux-oci-trigger``)."""
    leader_election_id: str = setting(
        "",
        TEXT,
        "Name of the Lease.",
        shown="flux-oci-trigger, plus the shard with a label selector",
    )
    """Name of the Lease; empty: ``flux-oci-trigger``, with the shard appended when a
    ``watch_label_selector`` is set, so each shard elects its own leader."""
    leader_election_lease_duration: float = setting(
        15.0, DURATION, "How long a Lease is held without renewal (whole seconds)."
    )
    """Seconds a standby waits for an unrenewed Lease before it takes over (Flux's flag of
    the same name; whole seconds, as the Lease stores them)."""
    leader_election_renew_deadline: float = setting(
        10.0, DURATION, "How long the leader tries to renew before it stops acting."
    )
    """Seconds after its last renewal the leader stops acting; shorter than the lease, so
    a frozen leader stops before another can take over."""
    leader_election_retry_period: float = setting(
        2.0, DURATION, "How often the Lease is tried or renewed."
    )
    """Seconds between attempts to acquire or renew the Lease."""
    tag_parsing: TagParsing = setting(
        TagParsing.FLUX_2_7,
        TAG_PARSING,
        "Which Flux's tag rule to follow: flux-2.7 (2.7 and later) or flux-2.6.",
    )
    """Which tags the watched Flux reads as versions: ``flux-2.7`` for Flux 2.7 and later
    (``2025.02.03``, ``v1.2.3``: two dots, leading zeros allowed), ``flux-2.6`` for Flux
    2.6 and earlier (strict semver after one optional ``v``)."""
    event_gap: float = setting(
        2.0, DURATION, "At most one refresh of a repository per this, however many events."
    )
    """Seconds: at most one refresh of a repository's tags per this long, however many
    events name it (later ones wait for the gap, none is lost)."""
    expedite_window: float = setting(
        900.0, DURATION, "After a GitLab tag push, check its repositories every few seconds."
    )
    """Seconds after a GitLab tag push during which its repositories are checked every
    few seconds (until a new artifact appears)."""
    patch_rate: float = setting(
        5.0, RATE, "Reconcile requests per second, at most, over all objects."
    )
    """Reconcile requests (merge-patches) per second, at most, across all objects."""
    registry_concurrency: int = setting(
        8, COUNT, "Checks and requests in flight per registry host, at most."
    )
    """Checks (and HTTP requests) in flight to one registry host, at most: each host has
    its own workers and queue, so a slow host never delays another host's objects."""
    stuck_backoff_min: float = setting(
        60.0, DURATION, "First repeat of a request Flux handled without applying it."
    )
    """Seconds before the first repeat of a request Flux handled without applying it."""
    stuck_backoff_max: float = setting(
        3600.0, DURATION, "The doubling repeat delay stops growing here."
    )
    """Seconds: the doubling repeat delay stops growing here."""
    notify_watch: bool = setting(
        True,
        SWITCH,
        "Watch the notifications of `notify` (OCIArtifactPushed Events).",
        flag="--notify-watch/--no-notify-watch",
    )
    """Watch the ``OCIArtifactPushed`` Events CI jobs create with ``flux-oci-trigger
    notify``: instant updates with nothing inbound (one watch)."""
    notify_everywhere: tuple[str, ...] = setting(
        (),
        NAMESPACES,
        "Namespaces whose notifications reach every namespace (repeatable; "
        "the variable: comma-separated).",
        shown="none",
    )
    """Namespaces whose notifications reach the objects of every namespace (platform
    teams); a notification from any other namespace reaches its own namespace only."""
    object_level_workload_identity: bool = setting(
        False,
        SWITCH,
        "spec.provider with spec.serviceAccountName: that account's cloud identity "
        "(Flux's ObjectLevelWorkloadIdentity gate).",
        flag="--object-level-workload-identity/--no-object-level-workload-identity",
    )
    """An OCIRepository with ``spec.provider`` and ``spec.serviceAccountName`` pulls with
    that ServiceAccount's cloud identity (a token from the TokenRequest API), as Flux does
    when its ``ObjectLevelWorkloadIdentity`` feature gate is on; off, such an object is a
    ``config_error``, as Flux refuses it. Needs ``create`` on ``serviceaccounts/token``."""
    default_service_account: str = setting(
        "",
        TEXT,
        "With spec.provider and no spec.serviceAccountName: this ServiceAccount of the "
        "object's namespace (Flux's lockdown flag).",
        shown="none",
    )
    """Flux's ``--default-service-account`` (multi-tenant workload identity lockdown): an
    OCIRepository with ``spec.provider`` and no ``spec.serviceAccountName`` uses this
    ServiceAccount of its own namespace instead of the exporter's identity; set it as the
    watched source-controller has it. Needs ``object_level_workload_identity``, as Flux's
    needs its feature gate."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as its flag, its variable and ``--help`` see it (see :func:`setting`)."""

    name: str
    default: Any
    kind: Kind[Any]
    help: str
    flag: str
    aliases: tuple[str, ...]
    shown: str

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def origin(self) -> str:
        """The flag a message names: its first spelling (``--leader-elect``)."""
        return self.flag.partition("/")[0]


def _setting(declared: Field[Any]) -> Setting:
    given: _Declared = declared.metadata[_DECLARED]
    return Setting(
        name=declared.name,
        default=declared.default,
        kind=given.kind,
        help=given.help,
        flag=given.flag or "--" + declared.name.replace("_", "-"),
        aliases=given.aliases,
        shown=given.shown or given.kind.show(declared.default),
    )


SETTINGS: tuple[Setting, ...] = tuple(_setting(f) for f in fields(Settings))
"""Every setting, in the order ``--help`` lists them."""


class SettingsError(ValueError):
    """Every invalid setting, one message per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


_LEASE = (
    "leader_election_lease_duration",
    "leader_election_renew_deadline",
    "leader_election_retry_period",
)


def _lease_ok(lease: float, renew: float, retry: float) -> bool:
    """As the Lease stores it (whole seconds) and as the election needs it to be safe."""
    return lease > renew > 1.2 * retry >= 1.2 and lease == int(lease)


def _check(s: dict[str, Any], failed: set[str]) -> list[str]:
    """Value and cross-field checks, skipping those about values that did not convert."""
    checks: list[tuple[tuple[str, ...], bool, str]] = [
        (
            (one.name,),
            str(s[one.name]) not in one.kind.choices,
            f"{one.name} {_shown(s[one.name])} is not one of {', '.join(one.kind.choices)}",
        )
        for one in SETTINGS
        if one.kind.choices
    ]
    checks += [
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
            ("events_listen", "listen"),
            s["events_listen"] == s["listen"],
            "events_listen must differ from listen (events may be exposed, metrics not)",
        ),
        (
            ("default_service_account", "object_level_workload_identity"),
            bool(s["default_service_account"]) and not s["object_level_workload_identity"],
            "default_service_account needs object_level_workload_identity (Flux: cannot set "
            "default service accounts when the feature gate ObjectLevelWorkloadIdentity is "
            "not enabled)",
        ),
        (
            ("default_service_account",),
            bool(s["default_service_account"])
            and not _DNS_SUBDOMAIN.fullmatch(s["default_service_account"]),
            f"default_service_account {_shown(s['default_service_account'])} is not a "
            "ServiceAccount name",
        ),
        (
            _LEASE,
            not _lease_ok(*(s[n] for n in _LEASE)),
            "leader election needs a whole-second lease duration > renew deadline > "
            "1.2 x retry period >= 1.2s",
        ),
    ]
    return [message for names, bad, message in checks if bad and not failed.intersection(names)]


def from_sources(flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Flags (None: not given) over ``FLUX_OCI_TRIGGER_*`` variables (empty: not set)
    over defaults. Raises :class:`SettingsError` listing every problem."""
    known = {one.name for one in SETTINGS}
    problems = [f"unknown setting {_shown(k)}" for k in flags if k not in known]
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for one in SETTINGS:
        raw, origin = flags.get(one.name), one.origin
        if raw is None:
            raw, origin = env.get(one.variable) or None, one.variable
        values[one.name] = one.default
        if raw is None:
            continue
        try:
            values[one.name] = one.kind.parse(raw)
        except ValueError as exc:
            problems.append(f"{origin}: {exc}")
            failed.add(one.name)
    problems.extend(_check(values, failed))
    if problems:
        raise SettingsError(problems)
    return Settings(**values)
