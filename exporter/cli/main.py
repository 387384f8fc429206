"""The ``flux-oci-trigger`` command line.

Each command builds what it needs and hands over; no logic lives here. Heavy imports
(the Kubernetes client, prometheus_client) happen inside the commands that need them,
so ``select`` and ``tags`` start fast.

Exit codes (a contract scripts rely on):
    0  a tag was selected (or, without a rule, the listing succeeded)
    1  nothing matches the rule
    2  invalid input: range, regex, URL, tag, docker config, TLS files (click's usage errors
       are 2 too)
    3  the registry failed: auth, not found, rate limited, unavailable, protocol (an answer
       that breaks the distribution spec, e.g. a selected tag that is no OCI tag)
``run`` and ``check``: 2 also for an invalid setting or an address that cannot be
listened on (a port taken), 4 when the Kubernetes API server cannot be used.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from exporter import __version__
from exporter.cli.options import SETTINGS_EPILOG, setting_options
from exporter.settings import Settings, SettingsError, from_sources

EXIT_NO_MATCH = 1
EXIT_INVALID = 2
EXIT_FAILED_STATE = 3  # check --fail-on
EXIT_KUBE = 4


def _fail(code: int, message: str) -> None:
    click.echo(f"flux-oci-trigger: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flux-oci-trigger")
def main() -> None:
    """Request Flux reconciliation when a new OCI artifact lands, and export the lag."""


@main.command("select")
@click.option(
    "--semver", "semver_range", required=True, help="Semver range, as in spec.ref.semver."
)
@click.option("--semver-filter", default=None, help="RE2 regex, as in spec.ref.semverFilter.")
@click.option(
    "--flavor",
    type=click.Choice(["oci", "helm"]),
    default="oci",
    show_default=True,
    help="oci: OCIRepository rules; helm: HelmChart from an OCI HelmRepository.",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("tags", nargs=-1, required=True)
def select_command(
    semver_range: str, semver_filter: str | None, flavor: str, output: str, tags: tuple[str, ...]
) -> None:
    """Print the tag Flux would pick from TAGS (its original text).

    \b
    Exit codes:
      0  a tag was selected
      1  nothing matches the rule
      2  invalid input (range, regex, usage)
    """
    from exporter.flux.policy import InvalidRule, compile_rule
    from exporter.model import Flavor, TagRule, printable

    try:
        rule = compile_rule(TagRule(semver_range, semver_filter, Flavor(flavor)))
    except InvalidRule as exc:
        _fail(EXIT_INVALID, printable(str(exc)))
        return
    candidates = rule.candidates(tags)
    selected = candidates[0].tag if candidates else None
    if output == "json":
        matching = [c.tag for c in candidates]
        click.echo(json.dumps({"selected": selected, "matching": matching}, ensure_ascii=True))
    elif selected is not None:
        click.echo(printable(selected))
    if selected is None:
        if output == "text":
            click.echo("flux-oci-trigger: no tag matches the rule", err=True)
        sys.exit(EXIT_NO_MATCH)


@main.command("tags")
@click.argument("url")
@click.option("--semver", "semver_range", default=None, help="Semver range, as in spec.ref.semver.")
@click.option("--semver-filter", default=None, help="RE2 regex, as in spec.ref.semverFilter.")
@click.option("--tag", default=None, help="A (mutable) tag whose current digest to show.")
@click.option("--flavor", type=click.Choice(["oci", "helm"]), default="oci", show_default=True)
@click.option(
    "--docker-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Docker config JSON with credentials for the registry.",
)
@click.option("--insecure", is_flag=True, help="Plain HTTP, as spec.insecure.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Extra CA bundle (PEM) for the registry's certificate.",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def tags_command(
    url: str,
    semver_range: str | None,
    semver_filter: str | None,
    tag: str | None,
    flavor: str,
    docker_config: Path | None,
    insecure: bool,
    ca_file: Path | None,
    output: str,
) -> None:
    """List every tag of oci://HOST[:PORT]/PATH and, given a rule, the selected tag and digest.

    The registry chooses the tags: text output escapes control characters, JSON is ASCII.

    \b
    Exit codes:
      0  the listing succeeded (and, given a rule, a tag was selected)
      1  nothing matches the rule
      2  invalid input: range, regex, URL, tag, docker config, TLS files, usage
      3  the registry failed: auth, not found, rate limited, unavailable, protocol
    """
    from exporter.cli.tags import ProbeError, probe_repository
    from exporter.model import printable

    try:
        report = probe_repository(
            url,
            semver_range=semver_range,
            semver_filter=semver_filter,
            tag=tag,
            flavor=flavor,
            docker_config=docker_config.read_bytes() if docker_config else None,
            insecure=insecure,
            ca_pem=ca_file.read_bytes() if ca_file else None,
        )
    except ProbeError as exc:
        _fail(exc.exit_code, printable(str(exc)))
        return
    if output == "json":
        selected = {"tag": report.selected, "digest": report.digest} if report.selected else None
        document = {
            "repository": report.repository,
            "tags": list(report.tags),
            "selected": selected,
        }
        click.echo(json.dumps(document, ensure_ascii=True))
    else:
        if report.tags:
            click.echo("\n".join(printable(t) for t in report.tags))
        if report.selected:
            click.echo(printable(f"selected: {report.selected} {report.digest}"))
    if report.has_rule and report.selected is None:
        if output == "text":
            click.echo("flux-oci-trigger: no tag matches the rule", err=True)
        sys.exit(EXIT_NO_MATCH)


def _settings(**flags: object) -> Settings:
    try:
        return from_sources({k: v for k, v in flags.items() if v is not None}, dict(os.environ))
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"flux-oci-trigger: {problem}", err=True)
        sys.exit(EXIT_INVALID)


# The settings check takes too: those that change what it reports (what run would decide).
_CHECK_SETTINGS = (
    "kubeconfig",
    "namespaces",
    "annotation_prefix",
    "watch_label_selector",
    "tag_parsing",
)


@main.command("run", epilog=SETTINGS_EPILOG)
@setting_options()
def run_command(**flags: object) -> None:
    """Watch opted-in Flux OCI sources and request reconciliation when they fall behind."""
    import signal

    from exporter import allocator
    from exporter.app.secrets import SecretError
    from exporter.app.service import ListenError, Service
    from exporter.kube.errors import KubeError
    from exporter.logsetup import configure

    settings = _settings(**flags)
    configure(settings.log_format, level=logging.getLevelName(settings.log_level.upper()))
    allocator.tune()  # before the worker threads exist: their arenas follow it
    try:
        service = Service(settings)
    except KubeError as exc:
        _fail(EXIT_KUBE, str(exc))
        return
    try:
        server = None if settings.once else service.serve()
    except ListenError as exc:
        _fail(EXIT_INVALID, f"metrics endpoint: {exc}")
        return
    if not service.start_informers():
        service.stop()
        _fail(1, "the initial lists did not complete (see the log)")
    if settings.once:
        service.run_once()
        service.stop()
        return
    try:
        events = service.listen_for_events(os.environ)
    except (OSError, SecretError) as exc:
        service.stop()
        _fail(EXIT_INVALID, f"events listener: {exc}")
        return
    # the handler only asks: the loop ends within a second and stops everything in order
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    try:
        service.loop()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        for running in (server, events):
            if running is not None:
                running.stop()


@main.command("check", epilog=SETTINGS_EPILOG)
@setting_options(*_CHECK_SETTINGS)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fail-on",
    default="",
    metavar="STATES",
    help="Exit 3 when a target is in one of these states, e.g. config_error,error,no_match.",
)
def check_command(output: str, fail_on: str, **flags: object) -> None:
    """One pass, no patches: what each target's state is and whether a request would go out.

    \b
    Exit codes:
      0  every target checked (none in a --fail-on state)
      1  the initial lists did not complete
      2  invalid input (settings, --fail-on)
      3  a target is in a --fail-on state (counted on stderr)
      4  the API server cannot be used
    """
    from exporter.app.service import Service
    from exporter.cli.report import failing, render_json, render_table
    from exporter.kube.errors import KubeError
    from exporter.logsetup import configure
    from exporter.model import State, printable

    names = [n.strip() for n in fail_on.split(",") if n.strip()]
    unknown = [n for n in names if n not in {s.value for s in State}]
    if unknown:
        known = ", ".join(s.value for s in State)
        shown = printable(", ".join(unknown))
        _fail(EXIT_INVALID, f"--fail-on: unknown state(s) {shown}; one of {known}")
        return

    settings = _settings(**flags, dry_run=True, notify_watch=False)
    configure("text", level=30)
    try:
        service = Service(settings, dry_run=True)
    except KubeError as exc:
        _fail(EXIT_KUBE, str(exc))
        return
    try:
        if not service.start_informers():
            _fail(1, "the initial lists did not complete")
        service.run_once()
        rows = service.store.snapshot().targets
    finally:
        service.stop()
    click.echo(render_json(rows) if output == "json" else render_table(rows))
    found = failing(rows, {State(n) for n in names})
    if found:
        counts = ", ".join(f"{state.value} {count}" for state, count in found.items())
        _fail(EXIT_FAILED_STATE, f"targets in a --fail-on state: {counts}")


@main.command("notify")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--kubeconfig", default=None, help="Kubeconfig file.",
              show_default="$KUBECONFIG, then ~/.kube/config")  # fmt: skip
@click.option("--context", default=None, help="The kubeconfig context to use.",
              show_default="the current context")  # fmt: skip
@click.option("--all-contexts", is_flag=True,
              help="Notify through every context of the kubeconfig (one per cluster).")  # fmt: skip
@click.option("--namespace", "-n", default=None, help="Namespace of the Flux sources.",
              show_default="the context's, else default")  # fmt: skip
@click.option("--wait", default=None, metavar="DURATION",
              help="Then wait until Flux applied it (e.g. 5m).")  # fmt: skip
@click.option("--annotation-prefix", default=None, help="Opt-in annotation prefix (--wait).",
              show_default="oci-trigger.gitlab.com/")  # fmt: skip
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def notify_command(
    refs: tuple[str, ...],
    kubeconfig: str | None,
    context: str | None,
    all_contexts: bool,
    namespace: str | None,
    wait: str | None,
    annotation_prefix: str | None,
    output: str,
) -> None:
    """Tell flux-oci-trigger that REF was pushed, through the Kubernetes API only.

    REF is [oci://]HOST[:PORT]/PATH:TAG, optionally @sha256:DIGEST, e.g.
    "$CI_REGISTRY_IMAGE:$CI_COMMIT_TAG". One OCIArtifactPushed Event per REF is created
    in the namespace; the exporter checks the registry for the opted-in objects on that
    repository there at once. Needs `create` on events.events.k8s.io (and, for --wait,
    read access to the Flux sources): manifests/notify/role.yaml.

    \b
    Exit codes:
      0  notified (with --wait: applied wherever it is selected)
      1  --wait: no opted-in object in scope selects the artifact
      2  invalid input (reference, duration, context)
      3  --wait: timed out (the objects still behind are listed)
      4  the API server cannot be used or refuses (the permission is named)
    """
    from exporter.cli import notify
    from exporter.core.notify import InvalidReference, parse_ref
    from exporter.flux.annotations import DEFAULT_PREFIX, parse_duration

    if all_contexts and context:
        _fail(EXIT_INVALID, "give --context or --all-contexts, not both")
    try:
        parsed = [parse_ref(ref) for ref in refs]
    except InvalidReference as exc:
        _fail(EXIT_INVALID, str(exc))
        return
    seconds = None
    if wait:
        try:
            seconds = parse_duration(wait)
        except ValueError as exc:
            _fail(EXIT_INVALID, f"--wait: {exc}")
    try:
        clusters = notify.clusters(kubeconfig, context, all_contexts, namespace)
        outcome = notify.run(clusters, parsed, wait=seconds,
                             prefix=annotation_prefix or DEFAULT_PREFIX,
                             instance=notify.instance_name())  # fmt: skip
    except notify.NotifyError as exc:
        _fail(exc.code, str(exc))
        return
    click.echo(notify.render_json(outcome) if output == "json" else notify.render_text(outcome))
    sys.exit(outcome.code)
