"""``provbackup process``."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from provbackup.cli.options import Settings, dn_option, pass_settings, uid_option
from provbackup.errors import EXIT_FAULT_REPEATED, LockHeldError, ProvbackupError

if TYPE_CHECKING:
    from provbackup.config import Config

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

    try:
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
    except LockHeldError:
        raise  # another run is busy: no fault, and its record is that run's business
    except Exception as error:
        progress.clear()
        if dry_run or _report_fault(config, error):
            raise
        return EXIT_FAULT_REPEATED
    if not dry_run:
        _fault_over(config)
    progress.clear()
    summary = report.summary()
    if report.outcomes or dry_run:
        click.echo(summary)
    log.info("run finished: %s", summary)
    return report.exit_code


def _report_fault(config: Config, error: Exception) -> bool:
    """Record the fault that ended this run; True when it must be reported as usual.

    False means the same fault was reported less than ``[run]
    fault_report_interval`` seconds ago: it is logged as a warning and the
    run exits 79 (see :mod:`provbackup.faults`). The status file has already
    recorded the real exit code and error.
    """
    from provbackup.faults import fault_file, note_fault

    if isinstance(error, ProvbackupError):
        text = f"exit {error.exit_code}: {' '.join(str(error).split())}"
    else:
        text = f"internal error: {type(error).__name__}: {error}"
    interval = config.run.fault_report_interval
    report, record = note_fault(
        fault_file(config.run.status_file), text, datetime.now(UTC), interval
    )
    if not report:
        log.warning(
            "still failing, the same fault as the last %d runs since %s (reported at %s; "
            "again after %d s, or when it changes): %s",
            record.runs - 1, record.first_seen, record.last_reported, interval, text,
        )  # fmt: skip
    return report


def _fault_over(config: Config) -> None:
    """Forget the fault recorded by earlier runs (this one ended without one); log its end."""
    from provbackup.faults import clear_fault, fault_file

    previous = clear_fault(fault_file(config.run.status_file))
    if previous is not None:
        log.warning(
            "the fault is over after %d run(s) since %s: %s",
            previous.runs, previous.first_seen, previous.text,
        )  # fmt: skip
