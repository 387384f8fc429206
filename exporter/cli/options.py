"""Command-line options made from the settings' declarations (``exporter.settings``).

Each shows its help, its default and its variable in --help, all taken from the
declaration. ``exporter.settings`` reads the ``FLUX_OCI_TRIGGER_*`` variables itself (so
an invalid value is reported under the variable's name), so the options name their
variable for the help text but never read it: a flag not given reaches the settings as
None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from exporter.settings import ENV_PREFIX, SETTINGS, Setting

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


def setting_options(*names: str) -> Callable[[F], F]:
    """The options of the settings ``names`` (every setting when none), in the order of
    their declarations."""
    unknown = set(names).difference(s.name for s in SETTINGS)
    if unknown:
        raise ValueError(f"no such setting: {', '.join(sorted(unknown))}")
    chosen = [s for s in SETTINGS if not names or s.name in names]

    def decorate(command: F) -> F:
        for one in reversed(chosen):  # click lists options in the order they were added
            command = option(one)(command)
        return command

    return decorate


def option(setting: Setting) -> Callable[[F], F]:
    """The flag (and its aliases) of one setting; its value is None when not given."""
    kind = setting.kind
    extra: dict[str, Any] = {}
    if kind.switch:
        extra["is_flag"] = True
    elif kind.choices:
        extra["type"] = click.Choice(kind.choices)
    else:
        extra["metavar"] = kind.metavar
    if kind.many:
        extra["multiple"] = True
        extra["callback"] = _none_when_empty
    return click.option(
        setting.flag,
        *setting.aliases,
        setting.name,
        cls=SettingOption,
        help=setting.help,
        default=None,
        envvar=setting.variable,
        show_envvar=True,
        shown=setting.shown,
        **extra,
    )


def _none_when_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return value or None  # a repeatable flag not given: () from click, "not given" here
