"""``snapshot INTERVAL``: rsnapshot over every account that keeps INTERVAL, then usage.

The disk decides which accounts run (an active ``rsnapshot.conf`` that
retains the interval), not LDAP: with the directory down the snapshots
still run, and only the usage write-back waits for a later run (exit 69
once every snapshot is done, so the failure is seen; 78 when the base DN
is gone: renamed, or hidden by an ACL). Up to ``[snapshot]
jobs`` accounts at once in worker threads, each under its account lock; the
whole run under a lock per interval (another run of the same interval: exit
75). One account's failure never stops the others (exit 1).

LDAP stays in the calling thread: before an account is handed to a worker
its entry is looked up (DN, sstQuota), and once it is done its usage is
written back with one plain replace. A refused write (a schema without the
attributes, an ACL) is a warning, once per run: the snapshot stands.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provbackup.actions.common import Clock, utc_now
from provbackup.actions.usagewriter import UsageWriter
from provbackup.config import INTERVALS, Config
from provbackup.engines import ENGINE_BTRFS, btrfs
from provbackup.errors import (
    EXIT_CONFIG,
    EXIT_ENTRIES_FAILED,
    EXIT_LDAP_UNAVAILABLE,
    EXIT_OK,
    SIGNAL_EXIT_BASE,
    ConfigError,
    EntryError,
    ProvbackupError,
    UsageError,
)
from provbackup.lock import run_lock
from provbackup.paths import AccountPaths, account_paths
from provbackup.status import write_status
from provbackup.work.discover import find_accounts
from provbackup.work.rsnapshot import resolve_command
from provbackup.work.safe import lstat_entry, open_root
from provbackup.work.snapshot_account import (
    BUSY,
    DONE,
    FAILED,
    SKIPPED,
    WOULD,
    AccountResult,
    SnapshotJob,
    snapshot_account,
)
from provbackup.work.snapshots import open_account
from provbackup.work.usage import raise_open_files_limit

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

USAGE_ATTRIBUTES = ("sstBackupSize", "sstIncrementSize", "sstBackupLastSuccessfulBackup")
OUTCOMES = (DONE, FAILED, BUSY, SKIPPED)
ADVICE = (
    "A failed snapshot is retried by the next run of its interval. For each one:",
    "  provbackup show UID                          the account on disk",
    "  provbackup snapshot INTERVAL --uid UID -v    run it again by hand, with detail",
    "",
    "See provbackup(1), section SNAPSHOTS.",
)


def status_path(config: Config, interval: str) -> Path:
    """The status file of ``interval``'s runs, beside ``[run] status_file``."""
    return config.run.status_file.with_name(f"status-snapshot-{interval}.json")


def lock_path(config: Config, interval: str) -> Path:
    """The lock of ``interval``'s runs, beside ``[run] lock_file``."""
    return config.run.lock_file.with_name(f"snapshot-{interval}.lock")


@dataclass
class SnapshotReport:
    """One snapshot run: every account's result (compact), the exit code, usage write-back."""

    interval: str
    started: datetime
    dry_run: bool
    results: list[AccountResult] = field(default_factory=list)
    finished: datetime | None = None
    exit_code: int = EXIT_OK
    error: str | None = None
    usage_written: int = 0
    usage_refused: int = 0
    ldap_error: str | None = None
    ldap_exit_code: int = EXIT_LDAP_UNAVAILABLE
    stopped_by_signal: str | None = None
    advice: tuple[str, ...] = ADVICE

    def count(self, outcome: str) -> int:
        """How many accounts ended with ``outcome``."""
        return sum(1 for item in self.results if item.outcome == outcome)

    @property
    def failed(self) -> list[_MailItem]:
        """The accounts whose snapshot failed or found the account busy, for the mail."""
        return [
            _MailItem(item.account, item.uid, f"snapshot {self.interval}", item.message)
            for item in self.results
            if item.failed
        ]

    def summary(self) -> str:
        """One line: counts by outcome, and the usage write-back."""
        if self.dry_run:
            return (
                f"dry run: {self.count(WOULD)} accounts would get a {self.interval} snapshot, "
                f"{self.count(SKIPPED)} skipped, nothing changed"
            )
        line = ", ".join(f"{self.count(name)} {name}" for name in OUTCOMES)
        line += f"; usage written for {self.usage_written}"
        if self.usage_refused:
            line += f", refused for {self.usage_refused}"
        if self.ldap_error:
            reason = (
                "base DN missing" if self.ldap_exit_code == EXIT_CONFIG else "LDAP unavailable"
            )
            line += f" ({reason}: usage not written back)"
        if self.stopped_by_signal:
            line += f"; stopped by {self.stopped_by_signal}"
        return line

    def to_status(self, hostname: str) -> dict[str, object]:
        """The status-file document of this run."""
        return {
            "command": "snapshot",
            "interval": self.interval,
            "hostname": hostname,
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "finished": (self.finished or self.started).isoformat(),
            "exit_code": self.exit_code,
            "error": self.error,
            "ldap_error": self.ldap_error,
            "stopped_by_signal": self.stopped_by_signal,
            "counts": {name: self.count(name) for name in OUTCOMES},
            "usage": {"written": self.usage_written, "refused": self.usage_refused},
            "accounts": [
                {
                    key: value
                    for key, value in asdict(item).items()
                    if key in ("uid", "account", "outcome", "message", "seconds", "newest")
                }
                for item in self.results
            ],
        }


@dataclass(frozen=True)
class _MailItem:
    """A failed account as the failure mail lists it (``dn`` is its account directory)."""

    dn: str
    uid: str | None
    verb: str | None
    message: str
    return_value: int | None = None


def snapshot(
    config: Config,
    interval: str,
    *,
    uid: str | None = None,
    jobs: int | None = None,
    dry_run: bool = False,
    clock: Clock = utc_now,
    on_result: Callable[[AccountResult], None] | None = None,
    stop_requested: Callable[[], str | None] = lambda: None,
) -> SnapshotReport:
    """Run ``interval``'s snapshots once; see the module docstring.

    ``uid`` narrows the run to one account, ``jobs`` overrides ``[snapshot]
    jobs``; ``on_result`` is called in this thread as each account ends;
    ``stop_requested`` returns the name of a signal that asked the run to
    stop: no account is started after it, those in hand are finished, and
    the run exits 128 + the signal's number.
    Returns the :class:`SnapshotReport` (exit code 0, 1 or 69). Raises
    UsageError for an unknown interval, LockHeldError (75) when another run
    of the interval holds its lock, ConfigError (78) when the backup root
    or rsnapshot is missing.
    """
    if interval not in INTERVALS:
        raise UsageError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}")
    report = SnapshotReport(interval=interval, started=clock(), dry_run=dry_run)
    btrfs_engine = config.backup.engine == ENGINE_BTRFS
    argv = resolve_command(config.rsnapshot)
    if argv is None and not btrfs_engine:
        raise ConfigError(
            f"{config.source}: [rsnapshot] command: {config.rsnapshot.command!r} not found"
        )
    try:
        if btrfs_engine:
            btrfs.check_backup_root(config.backup.root)
        else:
            with open_root(config.backup.root):
                pass
    except EntryError as error:
        raise ConfigError(f"{config.source}: [backup] root: {error}") from None
    raise_open_files_limit()
    job = SnapshotJob(config, interval, argv or [], dry_run, clock)
    lock = nullcontext() if dry_run else run_lock(lock_path(config, interval))
    with lock:
        try:
            _run(job, report, uid, jobs or config.snapshot.jobs, on_result, stop_requested)
        except ProvbackupError as error:
            report.exit_code, report.error = error.exit_code, str(error)
            raise
        except Exception as error:
            report.exit_code, report.error = 70, f"internal error: {type(error).__name__}: {error}"
            raise
        finally:
            report.finished = clock()
            if not dry_run:
                hostname = socket.gethostname()
                write_status(status_path(config, interval), report.to_status(hostname))
                if report.failed:
                    from provbackup.notify import send_failure_mail

                    send_failure_mail(config.mail, report, hostname)
    return report


def _run(
    job: SnapshotJob,
    report: SnapshotReport,
    uid: str | None,
    jobs: int,
    on_result: Callable[[AccountResult], None] | None,
    stop_requested: Callable[[], str | None],
) -> None:
    config = job.config
    writer = UsageWriter(config) if config.snapshot.usage and not job.dry_run else None
    with contextlib.ExitStack() as stack:
        if writer is not None:
            stack.callback(writer.close)
            writer.open()
            report.ldap_error = writer.error
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(max_workers=jobs))
        running: dict[concurrent.futures.Future[AccountResult], AccountPaths] = {}

        def finish(done: set[concurrent.futures.Future[AccountResult]]) -> None:
            for future in done:
                paths = running.pop(future)
                result = future.result()
                if result.outcome == DONE and writer is not None:
                    writer.write(paths.account.name, result)
                _log(result, job.interval)
                report.results.append(result)
                if on_result is not None:
                    on_result(result)

        accounts = _accounts(config, uid, report, on_result)
        stack.callback(accounts.close)  # a stopped run leaves the walk's descriptors to close

        def stopped() -> bool:
            """On a signal: cancel the accounts handed to the pool but not started."""
            if report.stopped_by_signal is None:
                report.stopped_by_signal = stop_requested()
                if report.stopped_by_signal:
                    log.warning("stopped by %s: no more accounts started", report.stopped_by_signal)
            if report.stopped_by_signal:
                for future in [future for future in running if future.cancel()]:
                    del running[future]
            return report.stopped_by_signal is not None

        for paths in accounts:
            # A bounded window of accounts in flight: memory does not grow with the root.
            while len(running) >= 2 * jobs and not stopped():
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                finish(done)
            if stopped():
                break
            quota = writer.lookup(paths.account.name) if writer is not None else None
            running[pool.submit(snapshot_account, job, paths, quota)] = paths
        while running:
            done, _ = concurrent.futures.wait(
                running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            finish(done)
            stopped()
        if writer is not None:
            report.usage_written, report.usage_refused = writer.written, writer.refused
            report.ldap_error = writer.error
            report.ldap_exit_code = writer.exit_code or EXIT_LDAP_UNAVAILABLE
    if report.stopped_by_signal:
        # 128 + the signal's number, as process and a shell report it (143 for SIGTERM).
        report.exit_code = SIGNAL_EXIT_BASE + signal.Signals[report.stopped_by_signal].value
    elif any(item.failed for item in report.results):
        report.exit_code = EXIT_ENTRIES_FAILED
    elif report.ldap_error and report.count(DONE):
        report.exit_code = report.ldap_exit_code  # 69, or 78 for a missing base DN


def _accounts(
    config: Config,
    uid: str | None,
    report: SnapshotReport,
    on_result: Callable[[AccountResult], None] | None,
) -> Generator[AccountPaths, None, None]:
    root, layout = config.backup.root, config.backup.layout
    if uid is None:
        yield from find_accounts(root, layout)
        return
    try:
        paths = account_paths(root, layout, uid)
        with open_account(paths) as (account, _home):
            active = lstat_entry(account, "rsnapshot.conf") is not None
            inactive = lstat_entry(account, "rsnapshot.conf.inactive") is not None
    except (EntryError, OSError, ValueError) as error:
        message = f"no account directory for {uid!r} under {root}: {error}"
        result = AccountResult(uid=uid, account=str(root), outcome=FAILED, message=message)
    else:
        if active:
            yield paths
            return
        outcome, message = (
            (SKIPPED, "inactive (rsnapshot.conf.inactive)")
            if inactive
            else (FAILED, "no rsnapshot.conf: run provbackup reset --mode modify for it")
        )
        result = AccountResult(
            uid=uid, account=str(paths.account), outcome=outcome, message=message
        )
    _log(result, report.interval)
    report.results.append(result)
    if on_result is not None:
        on_result(result)


def _log(result: AccountResult, interval: str) -> None:
    if result.failed:
        log.error(
            "%s: %s snapshot %s: %s", result.account, interval, result.outcome, result.message
        )
    else:
        log.info(
            "%s: %s snapshot %s (%.1f s)", result.account, interval, result.outcome, result.seconds
        )
        for step in result.steps:  # layout moves, pruning, backupTime: worth a line each
            log.info("%s: %s", result.account, step)
