"""``provbackup reset``."""

from __future__ import annotations

import click

from provbackup.cli.options import Settings, dn_option, one_entry, pass_settings, uid_option


@click.command("reset")
@dn_option
@uid_option
@click.option(
    "--mode",
    type=click.Choice(["add", "modify", "delete"]),
    help="The request to put back [default: the verb of the current mode].",
)
@click.option("--force", is_flag=True, help="Reset even while a process run holds the lock.")
@pass_settings
def reset_command(
    settings: Settings, dn: str | None, uid: str | None, mode: str | None, force: bool
) -> int:
    """Put an entry back to a request (state 0, date 0) for the next process run."""
    from provbackup.actions.reset import reset
    from provbackup.output import reset_table

    one_entry(dn, uid)
    config = settings.load()
    result = reset(config, dn=dn, uid=uid, mode=mode, force=force)
    click.echo(reset_table(result.dn, result.before, result.after))
    return 0
