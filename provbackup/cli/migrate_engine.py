"""``provbackup migrate-engine``."""

from __future__ import annotations

import click

from provbackup.cli.options import Settings, pass_settings


@click.command("migrate-engine")
@click.option("--uid", metavar="UID", help="The account to move (its entry's uid).")
@click.option("--all", "every", is_flag=True, help="Every account directory on the backup root.")
@click.option("--dry-run", is_flag=True, help="Change nothing; print the plan as a table.")
@pass_settings
def migrate_engine_command(settings: Settings, uid: str | None, every: bool, dry_run: bool) -> int:
    """Move accounts made by the rsnapshot engine to the btrfs engine's layout.

    Snapshots are kept (each becomes a read-only subvolume sharing its data by
    reflink); incoming/ becomes a subvolume in its own qgroup limited to sstQuota.
    Crash-safe: a rerun finishes an interrupted move. Switch [backup] engine to
    btrfs once every account is moved (docs/btrfs.md).
    """
    from provbackup.actions.migrate_engine import migrate_engine
    from provbackup.output import migration_table

    if (uid is None) == (not every):
        raise click.UsageError("give exactly one of --uid UID or --all")
    config = settings.load()
    report = migrate_engine(config, uid=uid, every=every, dry_run=dry_run)
    click.echo(migration_table(report.results))
    return report.exit_code
