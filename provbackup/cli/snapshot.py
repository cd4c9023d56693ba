"""``provbackup snapshot INTERVAL``."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

from provbackup.cli.options import Settings, pass_settings
from provbackup.config import INTERVALS

if TYPE_CHECKING:
    from provbackup.actions.snapshot_account import AccountResult

log = logging.getLogger(__name__)


@click.command("snapshot")
@click.argument("interval", type=click.Choice(INTERVALS))
@click.option("--uid", metavar="UID", help="Only this account.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=256),
    metavar="N",
    help="Snapshot up to N accounts at once [default: [snapshot] jobs].",
)
@click.option("--dry-run", is_flag=True, help="Change nothing; print what would be done.")
@pass_settings
def snapshot_command(
    settings: Settings, interval: str, uid: str | None, jobs: int | None, dry_run: bool
) -> int:
    """Run rsnapshot INTERVAL for every active account that keeps INTERVAL.

    Accounts are found on disk (an active rsnapshot.conf), not in LDAP.
    Prints one line per account and a summary, writes the interval's
    status file and the usage figures (LDAP and the jail's usage file);
    exits 1 if an account failed, 75 if another run of INTERVAL is busy,
    69 if the snapshots are done but LDAP was unavailable for the usage, 78
    if the base DN was missing for it.
    """
    from provbackup.actions.snapshot import prepare, snapshot
    from provbackup.actions.snapshotreport import SnapshotReport, command_name
    from provbackup.cli.lifecycle import RunLifecycle
    from provbackup.output import Progress, snapshot_line

    config = settings.load()
    progress = Progress(sys.stderr, enabled=settings.verbosity >= 0)
    progress.start(None)

    def show(result: AccountResult) -> None:
        progress.clear()
        click.echo(snapshot_line(result))
        progress.step()

    # SIGTERM (systemctl stop) or SIGINT: no account is started after it, those in hand finish.
    lifecycle = RunLifecycle(config, command_name(interval), dry_run=dry_run)
    report = SnapshotReport(interval=interval, started=lifecycle.clock(), dry_run=dry_run)
    with lifecycle.command():
        job = prepare(config, interval, dry_run=dry_run, clock=lifecycle.clock)
        with lifecycle.batch(report):
            snapshot(
                job, report, uid=uid, jobs=jobs, on_result=show,
                stop_requested=lifecycle.stop_requested,
            )  # fmt: skip
        progress.clear()
        summary = report.summary()
        click.echo(summary)
        log.info("%s snapshot run finished: %s", interval, summary)
    return lifecycle.exit_code(report)
