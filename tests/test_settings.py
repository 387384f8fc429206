from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.settings import SETTINGS, Address, Settings, SettingsError, from_sources


def test_defaults() -> None:
    s = from_sources({}, {})
    assert s == Settings()
    assert (s.interval, s.min_interval, s.tag_ttl) == (60, 10, 60)
    assert (s.stuck_backoff_min, s.stuck_backoff_max) == (60, 3600)
    assert s.listen == Address("0.0.0.0", 9798) and str(s.listen) == "0.0.0.0:9798"
    assert s.annotation_prefix == "oci-trigger.gitlab.com/"


def test_every_field_is_documented_with_a_unit_or_meaning() -> None:
    import ast
    import inspect

    import exporter.settings as module

    tree = ast.parse(inspect.getsource(module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    documented = {
        prev.target.id
        for prev, node in zip(cls.body, cls.body[1:], strict=False)
        if isinstance(prev, ast.AnnAssign)
        and isinstance(prev.target, ast.Name)
        and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
    }
    assert documented == {f.name for f in fields(Settings)}


def test_environment() -> None:
    env = {
        "FLUX_OCI_TRIGGER_INTERVAL": "2m",
        "FLUX_OCI_TRIGGER_TAG_TTL": "90",
        "FLUX_OCI_TRIGGER_NAMESPACES": "apps, flux-system,,apps",
        "FLUX_OCI_TRIGGER_DRY_RUN": "true",
        "FLUX_OCI_TRIGGER_LOG_FORMAT": "json",
        "FLUX_OCI_TRIGGER_PATCH_RATE": "0.5",
        "FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY": "8",
        "FLUX_OCI_TRIGGER_STUCK_BACKOFF_MAX": "30m",
        "FLUX_OCI_TRIGGER_LISTEN": "[::]:8080",
        "FLUX_OCI_TRIGGER_KUBECONFIG": "",  # empty: not set
        # injected by Kubernetes for a Service of the same name: ignored
        "FLUX_OCI_TRIGGER_PORT": "tcp://10.0.0.1:9798",
        "FLUX_OCI_TRIGGER_SERVICE_HOST": "10.0.0.1",
    }
    s = from_sources({}, env)
    assert s.interval == 120 and s.tag_ttl == 90
    assert s.namespaces == ("apps", "flux-system")
    assert s.dry_run and s.log_format == "json" and s.patch_rate == 0.5
    assert s.registry_concurrency == 8 and s.stuck_backoff_max == 1800
    assert s.listen == Address("::", 8080) and str(s.listen) == "[::]:8080"
    assert s.kubeconfig is None


def test_flags_win_over_environment() -> None:
    s = from_sources(
        {"interval": 30.0, "namespaces": ("a",), "once": True, "dry_run": None},
        {"FLUX_OCI_TRIGGER_INTERVAL": "2m", "FLUX_OCI_TRIGGER_DRY_RUN": "yes"},
    )
    assert (s.interval, s.namespaces, s.once, s.dry_run) == (30, ("a",), True, True)


def test_every_problem_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        from_sources(
            {"tag_ttl": "soon", "colour": "blue", "annotation_prefix": "Not A Prefix"},
            {
                "FLUX_OCI_TRIGGER_DRY_RUN": "maybe",
                "FLUX_OCI_TRIGGER_PATCH_RATE": "0",
                "FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY": "1.5",
                "FLUX_OCI_TRIGGER_NAMESPACES": "Apps",
                "FLUX_OCI_TRIGGER_LOG_FORMAT": "xml",
                "FLUX_OCI_TRIGGER_LISTEN": "9798",
                "FLUX_OCI_TRIGGER_STUCK_BACKOFF_MIN": "2h",
            },
        )
    problems = caught.value.problems
    for word in [
        "--tag-ttl",
        "colour",
        "annotation_prefix",
        "FLUX_OCI_TRIGGER_DRY_RUN",
        "FLUX_OCI_TRIGGER_PATCH_RATE",
        "FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY",
        "FLUX_OCI_TRIGGER_NAMESPACES",
        "log_format",
        "listen",
        "stuck_backoff_max",
    ]:
        assert any(word in p for p in problems), word
    assert len(problems) == 10


def test_cross_checks_skip_values_that_did_not_convert() -> None:
    with pytest.raises(SettingsError) as caught:
        from_sources({"interval": "x", "min_interval": "2m"}, {})
    assert len(caught.value.problems) == 1


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        ({"interval": "5s"}, "below min_interval"),
        ({"min_interval": 0}, "min_interval must be"),
        ({"listen": "host:70000"}, "listen"),
        ({"annotation_prefix": "example.com"}, "annotation_prefix"),
        ({"stuck_backoff_min": "0s"}, "stuck_backoff_min must be"),
        ({"interval": float("inf")}, "--interval"),
        ({"dry_run": 1}, "--dry-run"),
        ({"default_service_account": "flux"}, "needs object_level_workload_identity"),
        (
            {"default_service_account": "Flux_SA", "object_level_workload_identity": True},
            "not a ServiceAccount name",
        ),
    ],
)
def test_invalid(flags: dict[str, object], word: str) -> None:
    with pytest.raises(SettingsError, match=word):
        from_sources(flags, {})


@given(st.dictionaries(st.sampled_from([f.name for f in fields(Settings)]), st.text(max_size=12)))
def test_any_strings_give_settings_or_settings_error(flags: dict[str, str]) -> None:
    try:
        s = from_sources(flags, {})
    except SettingsError as exc:
        assert exc.problems
    else:
        assert s.interval >= s.min_interval > 0


def test_each_setting_is_declared_with_its_help_default_flag_and_variable() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)]
    defaults = Settings()
    for s in SETTINGS:
        assert s.help.endswith("."), s.name
        assert s.shown, s.name
        assert s.default == getattr(defaults, s.name), s.name
        assert s.variable == f"FLUX_OCI_TRIGGER_{s.name.upper()}"
        assert s.flag.startswith("--"), s.name
        assert all(a.startswith("--") and a != s.flag for a in s.aliases), s.name
    spellings = [f for s in SETTINGS for f in (*s.flag.split("/"), *s.aliases)]
    assert len(spellings) == len(set(spellings))  # no spelling means two settings


def test_defaults_are_shown_as_their_flags_take_them() -> None:
    shown = {s.name: s.shown for s in SETTINGS}
    assert shown["interval"] == "1m" and shown["event_gap"] == "2s"
    assert shown["expedite_window"] == "15m" and shown["stuck_backoff_max"] == "1h"
    assert shown["listen"] == "0.0.0.0:9798" and shown["events_listen"] == "off"
    assert shown["patch_rate"] == "5" and shown["registry_concurrency"] == "8"
    assert shown["dry_run"] == "false" and shown["notify_watch"] == "true"
    assert shown["tag_parsing"] == "flux-2.7"
    described = {
        "kubeconfig",
        "namespaces",
        "events_listen",
        "events_addr",
        "watch_label_selector",
        "leader_election_namespace",
        "leader_election_id",
        "notify_everywhere",
        "default_service_account",
    }
    for s in SETTINGS:
        if s.name not in described:  # the others' default reads back as itself
            assert from_sources({s.name: s.shown}, {}) == Settings(), s.name


@pytest.mark.parametrize(
    ("text", "address", "back"),
    [
        ("0.0.0.0:9798", Address("0.0.0.0", 9798), "0.0.0.0:9798"),
        ("[::]:8080", Address("::", 8080), "[::]:8080"),
        ("[::1]:1", Address("::1", 1), "[::1]:1"),
        ("[2001:db8::7]:65535", Address("2001:db8::7", 65535), "[2001:db8::7]:65535"),
        ("localhost:9799", Address("localhost", 9799), "localhost:9799"),
        (":9798", Address("0.0.0.0", 9798), "0.0.0.0:9798"),
        ("127.0.0.1:080", Address("127.0.0.1", 80), "127.0.0.1:80"),
    ],
)
def test_addresses_are_parsed_once(text: str, address: Address, back: str) -> None:
    assert Address.parse(text) == address
    assert str(address) == back
    assert Address.parse(back) == address


@pytest.mark.parametrize(
    "text",
    ["9798", "host:0", "host:65536", "host:123456", "host:", "host:80x", "", "::1:80",
     "[::1]", "[::1]80", "[zz::1]:80", "a b:80", "host:-1", "host :80"],
)  # fmt: skip
def test_an_address_that_is_not_host_port_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not HOST:PORT to listen on \(port 1-65535\)"):
        Address.parse(text)


def test_the_events_listener_is_off_unless_given_an_address() -> None:
    assert from_sources({}, {}).events_listen is None
    assert from_sources({}, {"FLUX_OCI_TRIGGER_EVENTS_LISTEN": ""}).events_listen is None
    assert from_sources({"events_listen": ""}, {}).events_listen is None
    on = from_sources({}, {"FLUX_OCI_TRIGGER_EVENTS_LISTEN": "[::]:9799"})
    assert on.events_listen == Address("::", 9799)


def test_flux_events_go_to_an_http_url_given_as_fluxs_flag_or_nowhere() -> None:
    flux_events = next(s for s in SETTINGS if s.name == "events_addr")
    assert (flux_events.flag, flux_events.shown) == ("--events-addr", "off")
    assert flux_events.variable == "FLUX_OCI_TRIGGER_EVENTS_ADDR"
    assert from_sources({}, {}).events_addr == ""
    address = "http://notification-controller.flux-system.svc.cluster.local./"
    assert from_sources({}, {"FLUX_OCI_TRIGGER_EVENTS_ADDR": address}).events_addr == address
    assert from_sources({"events_addr": "https://[::1]:9090"}, {}).events_addr


@pytest.mark.parametrize(
    "text", ["notification-controller:9090", "ftp://host/", "http://", "http:// host", "http://a b"]
)
def test_an_events_address_that_is_not_an_http_url_is_refused_without_echoing_it(
    text: str,
) -> None:
    with pytest.raises(SettingsError) as caught:
        from_sources({"events_addr": text}, {})
    assert caught.value.problems == (
        "--events-addr: the value is not an http:// or https:// URL with a host",
    )


@pytest.mark.parametrize(
    ("listen", "events"), [("0.0.0.0:9798", "0.0.0.0:9798"), (":9798", "0.0.0.0:9798")]
)
def test_the_events_listener_never_shares_the_metrics_address(listen: str, events: str) -> None:
    with pytest.raises(SettingsError, match="events_listen must differ from listen"):
        from_sources({"listen": listen, "events_listen": events}, {})


def test_every_address_problem_at_once_named_by_its_source() -> None:
    with pytest.raises(SettingsError) as caught:
        from_sources(
            {"listen": "metrics", "interval": "soon"},
            {"FLUX_OCI_TRIGGER_EVENTS_LISTEN": "[::1]:0", "FLUX_OCI_TRIGGER_LOG_LEVEL": "trace"},
        )
    assert caught.value.problems == (
        "--interval: invalid duration 'soon': expected e.g. 90s, 5m, 1h30m",
        "--listen: 'metrics' is not HOST:PORT to listen on (port 1-65535)",
        "FLUX_OCI_TRIGGER_EVENTS_LISTEN: '[::1]:0' is not HOST:PORT to listen on (port 1-65535)",
        "log_level 'trace' is not one of debug, info, warn, error",
    )


def test_a_problem_names_the_flag_as_spelled() -> None:
    with pytest.raises(SettingsError, match=r"^--namespace: invalid namespace"):
        from_sources({"namespaces": ("Apps",)}, {})
