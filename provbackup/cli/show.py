"""``provbackup show``."""

from __future__ import annotations

import json

import click

from provbackup.cli.options import Settings, dn_option, json_option, one_entry, pass_settings


@click.command("show")
@click.argument("uid", required=False)
@click.option("--uid", "uid_option", metavar="UID", help="The entry's uid (same as UID).")
@dn_option
@json_option
@pass_settings
def show_command(
    settings: Settings, uid: str | None, uid_option: str | None, dn: str | None, as_json: bool
) -> int:
    """Show one account: its provisioning attributes and what is on the server."""
    from provbackup.actions.show import show
    from provbackup.output import show_table

    if uid is not None and uid_option is not None and uid != uid_option:
        raise click.UsageError("give the uid once: as UID or as --uid UID")
    uid = uid if uid is not None else uid_option
    one_entry(dn, uid)
    config = settings.load()
    views = show(config, uid=uid, dn=dn)
    if as_json:
        click.echo(json.dumps([view.as_dict() for view in views], indent=2, sort_keys=True))
    else:
        click.echo("\n\n".join(show_table(view) for view in views))
    return 0
