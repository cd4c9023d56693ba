"""``provbackup scan``."""

from __future__ import annotations

import sys

import click

from provbackup.cli.options import Settings, json_option, pass_settings


@click.command("scan")
@json_option
@pass_settings
def scan_command(settings: Settings, as_json: bool) -> int:
    """List every entry needing attention (read-only).

    Shows due entries (overdue marked), scheduled ones, failed and
    interrupted ones, and entries whose provisioning attributes are invalid.
    """
    from provbackup.actions.scan import scan
    from provbackup.output import scan_table, write_json_array

    config = settings.load()
    rows = scan(config)
    if as_json:
        write_json_array((row.as_dict() for row in rows), sys.stdout)
    else:
        click.echo(scan_table(rows))
    return 0
