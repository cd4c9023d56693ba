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
@click.option(
    "--any-status",
    is_flag=True,
    help="Also reset an entry that is not failed or interrupted (done, pending, scheduled).",
)
@click.option("--now", is_flag=True, help="Set the date to 0: do it at the next run.")
@click.option(
    "--take-over",
    is_flag=True,
    help="Make this backup server the one holding the account (any status).",
)
@pass_settings
def reset_command(
    settings: Settings,
    dn: str | None,
    uid: str | None,
    mode: str | None,
    force: bool,
    any_status: bool,
    now: bool,
    take_over: bool,
) -> int:
    """Put a failed or interrupted entry back to a request for the next process run.

    The date is kept (a scheduled request stays scheduled) unless --now.
    """
    from provbackup.actions.reset import reset
    from provbackup.output import reset_table

    one_entry(dn, uid)
    config = settings.load()
    result = reset(
        config, dn=dn, uid=uid, mode=mode, force=force, any_status=any_status, now=now,
        take_over=take_over,
    )  # fmt: skip
    statuses = (str(result.status_before), str(result.status_after))
    click.echo(reset_table(result.dn, result.before, result.after, statuses))
    return 0
