"""Webhook secrets, from files (a mounted Secret) or environment variables, never flags.

``FLUX_OCI_TRIGGER_<SOURCE>_SECRET_FILE`` (a path) wins over
``FLUX_OCI_TRIGGER_<SOURCE>_SECRET`` (the value), for SOURCE in DISTRIBUTION, GITLAB,
GITHUB, HARBOR. Trailing newlines of a file are dropped. A source with no secret (or whose file does
not exist: a mounted Secret without that key) is off.
The values never reach a log line: only which sources are on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from exporter.core.hooks import HTTP_SOURCES, HookSource

PREFIX = "FLUX_OCI_TRIGGER_"


class SecretError(Exception):
    """A secret file could not be read (the message names the file, not its content)."""


def hook_secrets(env: Mapping[str, str]) -> dict[HookSource, str]:
    found: dict[HookSource, str] = {}
    for source in HTTP_SOURCES:
        name = f"{PREFIX}{source.value.upper()}_SECRET"
        path = env.get(name + "_FILE")
        if path and not Path(path).exists():
            continue  # a mounted Secret without this key: the source is off
        if path:
            try:
                value = Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        else:
            value = env.get(name, "")
        if value:
            found[source] = value
    return found
