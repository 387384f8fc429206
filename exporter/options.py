"""Command-line options for settings: each shows its default and its variable in --help.

``exporter.settings`` reads the ``FLUX_OCI_TRIGGER_*`` variables itself (so an invalid
value is reported under the variable's name), so the options name their variable for the
help text but never read it: a flag not given reaches the settings as None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from exporter.settings import ENV_PREFIX, Settings

F = TypeVar("F", bound=Callable[..., Any])

SETTINGS_EPILOG = (
    f"Every setting can also come from its {ENV_PREFIX}* variable, shown next to it; "
    "a flag wins over its variable."
)


class SettingOption(click.Option):
    """Shows the setting's default and variable; leaves reading the variable to settings."""

    def __init__(self, *args: Any, shown: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown = shown

    def value_from_envvar(self, ctx: click.Context) -> None:
        return None

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        extra["default"] = self.shown
        return extra


def setting(
    name: str,
    help: str,
    *,
    flag: str | None = None,
    is_flag: bool = False,
    multiple: bool = False,
    choices: Sequence[str] | None = None,
    shown: str | None = None,
    metavar: str | None = None,
) -> Callable[[F], F]:
    """A ``--flag`` for the setting ``name`` (default None: not given)."""
    declared = flag or "--" + name.replace("_", "-")
    extra: dict[str, Any] = {}
    if is_flag and "/" not in declared:
        extra["is_flag"] = True
    if choices:
        extra["type"] = click.Choice(list(choices))
    default = getattr(Settings(), name)
    if metavar or (isinstance(default, float) and not is_flag):
        extra["metavar"] = metavar or "DURATION"
    return click.option(
        declared,
        name,
        cls=SettingOption,
        help=help,
        default=None,
        multiple=multiple,
        envvar=ENV_PREFIX + name.upper(),
        show_envvar=True,
        shown=shown if shown is not None else default_text(default),
        **extra,
    )


def default_text(value: object) -> str:
    """A setting's default as its flag would take it: ``60.0`` seconds -> ``1m``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return duration_text(value)
    text = str(getattr(value, "value", value))
    return text or '""'


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
