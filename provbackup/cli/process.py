"""``provbackup process``: options and output around :func:`provbackup.actions.process.process`.

The run lock, the SIGTERM/SIGINT handlers, the status file, the failure
mail and the lasting-fault record belong to the run lifecycle
(:mod:`provbackup.cli.lifecycle`); this module only adds what is
``process``'s own: the failure reasons kept beside the status file.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

from provbackup.cli.options import Settings, dn_option, pass_settings, uid_option

if TYPE_CHECKING:
    from provbackup.actions.report import RunReport
    from provbackup.cli.lifecycle import RunLifecycle
    from provbackup.config import Config
    from provbackup.outcomes import EntryOutcome
    from provbackup.runfiles import RunFiles

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
    from provbackup.actions.process import ProcessOptions, process
    from provbackup.actions.report import RunReport
    from provbackup.output import Progress, outcome_line

    if dn is not None and uid is not None:
        raise click.UsageError("give at most one of --dn and --uid")
    config = settings.load()
    progress = Progress(sys.stderr, enabled=settings.verbosity >= 0)

    def show(outcome: EntryOutcome) -> None:
        progress.clear()
        click.echo(outcome_line(outcome))
        progress.step()

    options = ProcessOptions(
        dry_run=dry_run, dn=dn, uid=uid, limit=limit, allow_mass_delete=allow_mass_delete
    )
    lifecycle = process_lifecycle(config, dry_run=dry_run, wait=wait)
    report = RunReport(started=lifecycle.clock(), dry_run=dry_run)
    with lifecycle.command():
        try:
            with lifecycle.batch(report):
                process(
                    config, options, report, clock=lifecycle.clock,
                    stop_requested=lifecycle.stop_requested,
                    on_outcome=show, on_selected=progress.start,
                )  # fmt: skip
        finally:
            progress.clear()
        summary = report.summary()
        if report.outcomes or dry_run:
            click.echo(summary)
        log.info("run finished: %s", summary)
    return lifecycle.exit_code(report)


def process_lifecycle(
    config: Config, *, dry_run: bool = False, wait: float = 0, reload: bool = False
) -> RunLifecycle:
    """The run lifecycle of ``process`` (and of ``watch``'s batches).

    Takes the configuration, whether it is a dry run, how long to wait
    for the run lock and whether SIGHUP asks for a reload (``watch``).
    Returns a :class:`~provbackup.cli.lifecycle.RunLifecycle` on the
    ``process`` files (``[run] lock_file``, ``status_file``) that records
    lasting faults (exit 79) and keeps
    each batch's failure reasons.
    """
    from provbackup.cli.lifecycle import RunLifecycle

    return RunLifecycle(
        config, "process", dry_run=dry_run, wait=wait, record_faults=True, reload=reload,
        on_recorded=keep_reasons,
    )  # fmt: skip


def keep_reasons(report: RunReport, files: RunFiles) -> None:
    """Keep the failure reasons of ``report``'s entries beside its status file.

    The reasons outlive the status file: ``scan`` and ``show`` read them
    until the entry changes (:mod:`provbackup.reasons`).
    """
    from provbackup.reasons import reasons_file, remember

    remember(reasons_file(files.status), report.outcomes, report.finished or report.started)
