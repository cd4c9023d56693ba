"""``provbackup process``: the command layer around :func:`provbackup.actions.process.process`.

Here, not in the action: the run lock, the SIGTERM/SIGINT handlers, the
status file and the failure mail. Whatever ends the run (an entry failed,
LDAP lost, a bug), the status file says so before the process exits:
an unexpected exception is written as exit 70 with its message.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from provbackup.cli.options import Settings, dn_option, pass_settings, uid_option
from provbackup.errors import EXIT_FAULT_REPEATED, LockHeldError, ProvbackupError

if TYPE_CHECKING:
    from provbackup.actions.process import ProcessOptions
    from provbackup.actions.report import EntryOutcome, RunReport
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
    from provbackup.actions.process import ProcessOptions
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
    try:
        report = run_process(
            config, options, wait=wait, on_outcome=show, on_selected=progress.start
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


def run_process(
    config: Config,
    options: ProcessOptions,
    *,
    wait: float = 0,
    clock: Callable[[], datetime] | None = None,
    on_outcome: Callable[[EntryOutcome], None] | None = None,
    on_selected: Callable[[int], None] | None = None,
) -> RunReport:
    """Run :func:`~provbackup.actions.process.process` under the lock, signals handled.

    Takes the configuration, the :class:`ProcessOptions`, how long to wait
    for the lock, the clock and the callbacks. Returns the RunReport.
    Raises LockHeldError (75) before anything is done or written when
    another run holds the lock; any error of the run itself is raised
    after the status file (real runs) records it: a ProvbackupError with
    its exit code, anything else as exit 70 (internal error).
    """
    from provbackup.actions.common import utc_now
    from provbackup.actions.process import process
    from provbackup.actions.report import RunReport
    from provbackup.errors import EXIT_SOFTWARE
    from provbackup.lock import run_lock

    clock = clock or utc_now
    report = RunReport(started=clock(), dry_run=options.dry_run)
    stop = StopRequested()
    lock = nullcontext() if options.dry_run else run_lock(config.run.lock_file, wait)
    with lock, _signals_stop(stop):
        try:
            process(
                config, options, report, clock=clock, stop_requested=stop.name,
                on_outcome=on_outcome, on_selected=on_selected,
            )  # fmt: skip
        except ProvbackupError as error:
            report.exit_code, report.error = error.exit_code, str(error)
            raise
        except Exception as error:
            # A bug or an unforeseen condition outside any one entry: the status file
            # and check must say the run failed, not keep the last good verdict.
            report.exit_code = EXIT_SOFTWARE
            report.error = f"internal error: {type(error).__name__}: {error}"
            raise
        finally:
            report.finished = clock()
            if not options.dry_run:
                _write_status_and_mail(config, report)
    return report


def _write_status_and_mail(config: Config, report: RunReport) -> None:
    from provbackup.reasons import reasons_file, remember
    from provbackup.status import write_status

    hostname = socket.gethostname()
    write_status(config.run.status_file, report.to_status(hostname))
    # The reasons outlive this status file: scan and show read them until the entry changes.
    remember(
        reasons_file(config.run.status_file), report.outcomes, report.finished or report.started
    )
    if report.failed:
        from provbackup.notify import send_failure_mail

        send_failure_mail(config.mail, report, hostname)


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag the run checks between entries."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, number: int, frame: object) -> None:
        self.signal_name = signal.Signals(number).name
        log.warning("%s received: finishing the entry in hand, then stopping", self.signal_name)

    def name(self) -> str | None:
        """The name of the signal received, or None."""
        return self.signal_name


@contextmanager
def _signals_stop(flag: StopRequested) -> Iterator[None]:
    handled = (signal.SIGTERM, signal.SIGINT)
    try:
        previous = {number: signal.signal(number, flag) for number in handled}
    except ValueError:  # not the main thread (a library caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
