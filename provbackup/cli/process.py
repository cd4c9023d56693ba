"""``provbackup process``."""

from __future__ import annotations

import logging
import sys

import click

from provbackup.cli.options import Settings, dn_option, pass_settings, uid_option

log = logging.getLogger(__name__)


@click.command("process")
@click.option("--dry-run", is_flag=True, help="Change nothing anywhere; print what would be done.")
@dn_option
@uid_option
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Work on at most N entries.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Wait up to SECONDS for another run's lock instead of exiting 75 at once.",
)
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Process deletes even when more than [delete] max_per_run are due.",
)
@pass_settings
def process_command(
    settings: Settings,
    dry_run: bool,
    dn: str | None,
    uid: str | None,
    limit: int | None,
    wait: float,
    allow_mass_delete: bool,
) -> int:
    """Process the due entries once, under the run lock.

    Prints one line per entry and a summary, writes the status file, and
    exits 1 if any entry failed.
    """
    from provbackup.actions.process import process
    from provbackup.output import Progress, outcome_line

    if dn is not None and uid is not None:
        raise click.UsageError("give at most one of --dn and --uid")
    config = settings.load()
    progress = Progress(sys.stderr, enabled=settings.verbosity >= 0)

    def show(outcome) -> None:
        progress.clear()
        click.echo(outcome_line(outcome))
        progress.step()

    report = process(
        config,
        dry_run=dry_run,
        dn=dn,
        uid=uid,
        limit=limit,
        wait=wait,
        allow_mass_delete=allow_mass_delete,
        on_outcome=show,
        on_selected=progress.start,
    )
    progress.clear()
    summary = report.summary()
    if report.outcomes or dry_run:
        click.echo(summary)
    log.info("run finished: %s", summary)
    return report.exit_code
