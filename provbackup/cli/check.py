"""``provbackup check``: a monitoring plugin (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

import logging

import click

from provbackup.cli.options import Settings, pass_settings

log = logging.getLogger(__name__)


@click.command("check")
@pass_settings
def check_command(settings: Settings) -> int:
    """Check the entries and the last run, for Nagios, Icinga and the like.

    Prints one line, "PROVBACKUP STATE - summary | perfdata", and exits
    0 (OK), 1 (WARNING: entries overdue or interrupted), 2 (CRITICAL:
    entries failed or invalid, the last run is older than [run]
    max_status_age or ended in error) or 3 (UNKNOWN: the configuration or
    the directory cannot be read).
    """
    from provbackup.actions.check import check
    from provbackup.actions.verdict import unknown
    from provbackup.errors import ProvbackupError

    # Every problem must end as a plugin line and exit 3, never as
    # provbackup's own exit codes (69, 78, 70), which a monitoring system
    # would misread as CRITICAL or worse.
    try:
        result = check(settings.load())
    except ProvbackupError as error:
        result = unknown(" ".join(str(error).split()))
    except Exception as error:
        log.debug("internal error", exc_info=True)
        result = unknown(f"internal error: {type(error).__name__}: {error}")
    click.echo(result.line())
    return int(result.state)
