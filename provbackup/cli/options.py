"""Options shared by several commands, and the per-invocation settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from provbackup.config import Config


@dataclass
class Settings:
    """What the group's options set for the command: config path, verbosity."""

    config_path: str | None
    verbosity: int

    def load(self) -> Config:
        """Load the configuration once and start syslog if it asks for it.

        Raises ConfigError (78) naming file, section and key.
        """
        from provbackup.config import load_config
        from provbackup.logs import add_syslog

        config = load_config(self.config_path)
        if config.log.syslog:
            add_syslog(config.log.facility, config.log.level, str(config.log.syslog_socket))
        return config


pass_settings = click.make_pass_decorator(Settings)


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        function
    )


def dn_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--dn DN``: name the entry by its DN (must lie below [ldap] base_dn)."""
    return click.option("--dn", metavar="DN", help="The entry's DN.")(function)


def uid_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--uid UID``: name the entry by its uid."""
    return click.option("--uid", metavar="UID", help="The entry's uid.")(function)


def one_entry(dn: str | None, uid: str | None) -> None:
    """Insist on exactly one of ``--dn``/``--uid``; raises click.UsageError otherwise."""
    if (dn is None) == (uid is None):
        raise click.UsageError("give exactly one of --dn DN or --uid UID (or UID as argument)")
