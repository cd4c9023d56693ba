"""The run lifecycle: one home for what every locked command does around its work.

A command with a run lifecycle (``process``, ``snapshot INTERVAL``; next
``notify`` and ``watch``) builds one :class:`RunLifecycle` and lets it own:

- **the signals**, for the command's whole life (:meth:`RunLifecycle.command`):
  SIGTERM or SIGINT sets a flag the work reads between items
  (:meth:`RunLifecycle.stop_requested`): the item in hand is finished, no
  other is started, and the action ends its report with 128 + the signal
  (143, 130) and ``stopped_by_signal``. With ``reload=True``, SIGHUP sets
  the flag :meth:`RunLifecycle.reload_requested` reads (and clears).
- **the run lock**, per batch (:meth:`RunLifecycle.batch`): taken at once
  or within ``wait`` seconds, else LockHeldError (75) before anything is
  done or written; a stop signal ends the wait. A dry run takes no lock.
- **the status file**, written atomically whatever ends the batch: its own
  exit code, a ProvbackupError's code and message, or an unexpected
  exception as exit 70 with its message (re-raised after).
- **the failure mail** (:mod:`provbackup.notify`) when the report has failed items.
- **the lasting-fault record** (:mod:`provbackup.faults`, ``record_faults``):
  a batch ending with the fault already reported less than ``[run]
  fault_report_interval`` ago raises FaultRepeatedError, which
  :meth:`RunLifecycle.command` turns into exit 79; a batch ending without a
  fault clears the record.

Each command's files come from :func:`provbackup.runfiles.run_files` by its
name. A one-shot command runs one batch inside its ``command()``; a
follower (``watch``) runs batches in a loop inside one ``command()``,
taking the lock per batch (so ``reset`` and ``jail-template`` can get in
between), waiting with :meth:`RunLifecycle.pause` (cut short by a signal)
and reloading its configuration with :meth:`RunLifecycle.reconfigure`::

    lifecycle = RunLifecycle(config, "process", wait=wait, record_faults=True)
    report = RunReport(started=lifecycle.clock(), dry_run=False)
    with lifecycle.command():
        with lifecycle.batch(report):
            process(config, options, report, stop_requested=lifecycle.stop_requested)
        print(report.summary())
    return lifecycle.exit_code(report)

Nothing here prints: output stays in the CLI module, the work in ``actions/``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from provbackup.errors import (
    EXIT_FAULT_REPEATED,
    EXIT_SOFTWARE,
    FaultRepeatedError,
    LockHeldError,
    ProvbackupError,
)

if TYPE_CHECKING:
    from provbackup.config import Config
    from provbackup.runfiles import RunFiles

log = logging.getLogger(__name__)

PAUSE_STEP_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP


class Report(Protocol):
    """What the lifecycle needs of a batch's report (``RunReport``, ``SnapshotReport``)."""

    started: datetime
    finished: datetime | None
    dry_run: bool
    exit_code: int
    error: str | None

    @property
    def failed(self) -> Sequence[Any]:
        """The items (entries, accounts) that failed in this run."""

    def summary(self) -> str:
        """One line: what the run did (``3 done, 1 failed, ...``)."""

    def to_status(self, hostname: str) -> dict[str, Any]:
        """The run as the status file records it, written on ``hostname``."""


R = TypeVar("R", bound=Report)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Signals:
    """The signal handler: SIGTERM/SIGINT ask for a stop, SIGHUP for a reload."""

    def __init__(self) -> None:
        self.stop: str | None = None
        self.reload = False

    def __call__(self, number: int, frame: object) -> None:
        name = signal.Signals(number).name
        if number == RELOAD_SIGNAL:
            self.reload = True
            log.info("%s received: the configuration is reloaded after the batch in hand", name)
            return
        self.stop = name
        log.warning("%s received: finishing the entry in hand, then stopping", name)


@contextmanager
def handling_signals(handler: Signals, *, reload: bool = False) -> Iterator[Signals]:
    """Install ``handler`` for SIGTERM and SIGINT (and SIGHUP with ``reload``) in the block.

    The previous handlers come back at the end. Outside the main thread (a
    library caller) the signals are left alone.
    """
    numbers = STOP_SIGNALS + ((RELOAD_SIGNAL,) if reload else ())
    try:
        previous = {number: signal.signal(number, handler) for number in numbers}
    except ValueError:  # not the main thread: leave signals alone
        yield handler
        return
    try:
        yield handler
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def describe_error(error: Exception) -> tuple[int, str]:
    """The exit code and status-file message of the ``error`` that ended a batch."""
    if isinstance(error, ProvbackupError):
        return error.exit_code, str(error)
    # A bug or an unforeseen condition outside any one item: the status file and
    # check must say the run failed, not keep the last good verdict.
    return EXIT_SOFTWARE, f"internal error: {type(error).__name__}: {error}"


class RunLifecycle:
    """Lock, signals, status file, failure mail and fault record of one command's runs.

    Takes the configuration, the command's name (its files: see
    :mod:`provbackup.runfiles`), whether it is a dry run (no lock, no
    status file, no mail, no fault record), how long to wait for the lock,
    whether lasting faults are recorded (exit 79), whether SIGHUP asks for
    a reload, the clock, and ``on_recorded``: called with the report and
    the :class:`~provbackup.runfiles.RunFiles` right after the status file
    is written (``process`` keeps its failure reasons beside it).
    """

    def __init__(
        self,
        config: Config,
        command: str,
        *,
        dry_run: bool = False,
        wait: float = 0,
        record_faults: bool = False,
        reload: bool = False,
        clock: Callable[[], datetime] = _utc_now,
        on_recorded: Callable[[Any, RunFiles], None] | None = None,
    ) -> None:
        self.command_name = command
        self.dry_run = dry_run
        self.wait = wait
        self.record_faults = record_faults
        self.reload = reload
        self.clock = clock
        self.on_recorded = on_recorded
        self.signals = Signals()
        self.fault_repeated = False
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Use ``config`` (reloaded) from the next batch on: its files, mail and fault interval."""
        from provbackup.runfiles import run_files

        self.config = config
        self.files: RunFiles = run_files(config, self.command_name)

    def stop_requested(self) -> str | None:
        """The name of the signal that asked the command to stop, or None."""
        return self.signals.stop

    def reload_requested(self) -> bool:
        """True once after a SIGHUP (the flag is cleared)."""
        requested, self.signals.reload = self.signals.reload, False
        return requested

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` between batches; return early on a stop or a reload signal."""
        deadline = time.monotonic() + seconds
        while self.signals.stop is None and not self.signals.reload:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, PAUSE_STEP_SECONDS))

    def exit_code(self, report: Report) -> int:
        """The command's exit code: 79 for a repeated fault, else the report's."""
        return EXIT_FAULT_REPEATED if self.fault_repeated else report.exit_code

    @contextmanager
    def command(self) -> Iterator[RunLifecycle]:
        """The command's whole life: the signal handlers; a repeated fault ends it quietly.

        A FaultRepeatedError from a batch is swallowed here (it was logged
        as a warning) and :meth:`exit_code` gives 79; any other error
        passes through to ``__main__``.
        """
        with handling_signals(self.signals, reload=self.reload):
            try:
                yield self
            except FaultRepeatedError:
                self.fault_repeated = True

    @contextmanager
    def batch(self, report: R) -> Iterator[R]:
        """One batch of work under the run lock; ``report`` is recorded however it ends.

        Raises LockHeldError (75) before the block runs when another run
        holds the lock, or the ProvbackupError of a lock file that cannot
        be used (recorded as a fault; no status file is written).
        Re-raises whatever the block raised once the status file records
        it (``report.exit_code`` and ``error`` set), or FaultRepeatedError
        (79) from it when it is a fault already reported
        (``record_faults``). ``report.finished`` is set whenever the block ran.
        """
        from provbackup.lock import run_lock

        lock: AbstractContextManager[None] = (
            nullcontext()
            if self.dry_run
            else run_lock(self.files.lock, self.wait, give_up=lambda: self.signals.stop is not None)
        )
        with ExitStack() as stack:
            try:
                stack.enter_context(lock)
            except LockHeldError:
                raise  # another run is busy: no fault, and its record is that run's business
            except Exception as error:  # the lock file itself (a symlink, no directory)
                if self.record_faults and not self.dry_run:
                    self._note_fault(error)
                raise
            failure: Exception | None = None
            completed = False
            try:
                yield report
                completed = True
            except Exception as error:
                failure = error
                report.exit_code, report.error = describe_error(error)
                raise
            finally:
                report.finished = self.clock()
                if not self.dry_run:
                    self._record(report)
                    if self.record_faults and failure is not None:
                        self._note_fault(failure)
                    elif self.record_faults and completed:
                        self._fault_over()

    def _record(self, report: Report) -> None:
        """Write the status file, call ``on_recorded``, mail the failures (never raises on mail)."""
        import socket

        from provbackup.status import write_status

        hostname = socket.gethostname()
        write_status(self.files.status, report.to_status(hostname))
        if self.on_recorded is not None:
            self.on_recorded(report, self.files)
        if report.failed:
            from provbackup.notify import send_failure_mail

            send_failure_mail(self.config.mail, report, hostname)

    def _note_fault(self, error: Exception) -> None:
        """Record the fault that ended this batch; raise FaultRepeatedError when already reported.

        The fault is reported as usual (its own error goes on) unless the
        same fault was reported less than ``[run] fault_report_interval``
        seconds ago: then it is logged as a warning and FaultRepeatedError
        (79) raised from it. The status file has already recorded the real
        exit code and error.
        """
        from provbackup.faults import note_fault

        if isinstance(error, ProvbackupError):
            text = f"exit {error.exit_code}: {' '.join(str(error).split())}"
        else:
            text = describe_error(error)[1]
        interval = self.config.run.fault_report_interval
        report, record = note_fault(self.files.faults, text, datetime.now(UTC), interval)
        if report:
            return
        log.warning(
            "still failing, the same fault as the last %d runs since %s (reported at %s; "
            "again after %d s, or when it changes): %s",
            record.runs - 1, record.first_seen, record.last_reported, interval, text,
        )  # fmt: skip
        raise FaultRepeatedError(text) from error

    def _fault_over(self) -> None:
        """Forget the fault earlier batches recorded (this one ended without one); log its end."""
        from provbackup.faults import clear_fault

        previous = clear_fault(self.files.faults)
        if previous is not None:
            log.warning(
                "the fault is over after %d run(s) since %s: %s",
                previous.runs, previous.first_seen, previous.text,
            )  # fmt: skip
