"""``provbackup scan``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from provbackup.cli.options import Settings, json_option, pass_settings

if TYPE_CHECKING:
    from provbackup.actions.scan import ScanRow
    from provbackup.actions.warnscan import WarningRow


@click.command("scan")
@json_option
@click.option(
    "--warnings",
    "warnings",
    is_flag=True,
    help="List instead the active accounts whose customer warnings cannot go out "
    "(entry, attribute, value, problem).",
)
@pass_settings
def scan_command(settings: Settings, as_json: bool, warnings: bool) -> int:
    """List every entry needing attention (read-only).

    Shows due entries (overdue marked), scheduled ones, failed and
    interrupted ones, and entries whose provisioning attributes are invalid.
    With --warnings: every active account whose warning settings are
    unusable or whose last warning could not be sent.
    """
    from provbackup.actions.scan import scan
    from provbackup.actions.warnscan import warning_rows
    from provbackup.output import Progress, scan_table, warnings_table, write_json_array

    config = settings.load()
    progress = Progress(sys.stderr, enabled=settings.verbosity >= 0)

    def counted(rows: Iterator[ScanRow | WarningRow]) -> Iterator[ScanRow | WarningRow]:
        for row in rows:
            progress.step()
            yield row

    rows = counted(warning_rows(config) if warnings else scan(config))
    if as_json:
        write_json_array((row.as_dict() for row in rows), sys.stdout)
        progress.clear()
    else:
        table = warnings_table(rows) if warnings else scan_table(rows)
        progress.clear()
        click.echo(table)
    from provbackup.errors import ConfigError
    from provbackup.work import root_problem

    # The entries are listed either way; an unusable root is still an error to act on.
    problem = root_problem(config.backup.root)
    if problem is not None:
        raise ConfigError(f"{config.source}: [backup] root: {problem}; process would do nothing")
    return 0
