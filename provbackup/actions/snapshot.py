"""``snapshot INTERVAL``: rsnapshot over every account that keeps INTERVAL, then usage.

The disk decides which accounts run (an active ``rsnapshot.conf`` that
retains the interval), not LDAP: with the directory down the snapshots
still run, and only the usage write-back waits for a later run (exit 69
once every snapshot is done, so the failure is seen; 78 when the base DN
is gone: renamed, or hidden by an ACL). Up to ``[snapshot]
jobs`` accounts at once in worker threads, each under its account lock; the
command layer runs the whole under a lock per interval (another run of the
same interval: exit 75) and writes its status file (the run lifecycle,
:mod:`provbackup.cli.lifecycle`; the report is
:mod:`provbackup.actions.snapshotreport`). One account's failure never
stops the others (exit 1).

LDAP stays in the calling thread: before an account is handed to a worker
its entry is looked up (DN, sstQuota), and once it is done its usage is
written back with one plain replace. A refused write (a schema without the
attributes, an ACL) is a warning, once per run: the snapshot stands.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import signal
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from provbackup.actions.common import Clock, utc_now
from provbackup.actions.snapshot_account import (
    DONE,
    FAILED,
    SKIPPED,
    AccountResult,
    SnapshotJob,
    snapshot_account,
)
from provbackup.actions.usagewriter import UsageWriter
from provbackup.config import INTERVALS, Config
from provbackup.engines import select_engine
from provbackup.errors import (
    EXIT_ENTRIES_FAILED,
    EXIT_LDAP_UNAVAILABLE,
    SIGNAL_EXIT_BASE,
    ConfigError,
    EntryError,
    UsageError,
)
from provbackup.paths import AccountPaths, account_paths
from provbackup.work.accountconf import open_account
from provbackup.work.discover import find_accounts
from provbackup.work.safe import lstat_entry, open_root
from provbackup.work.usage import raise_open_files_limit

if TYPE_CHECKING:
    from provbackup.actions.snapshotreport import SnapshotReport

log = logging.getLogger(__name__)

USAGE_ATTRIBUTES = ("sstBackupSize", "sstIncrementSize", "sstBackupLastSuccessfulBackup")


def prepare(
    config: Config, interval: str, *, dry_run: bool = False, clock: Clock = utc_now
) -> SnapshotJob:
    """Check what a run of ``interval`` needs before it starts; return its job.

    Takes the configuration, the interval, whether it is a dry run and the
    clock. Returns the :class:`SnapshotJob` :func:`snapshot` runs. Raises
    UsageError for an unknown interval, ConfigError (78) when the backup
    root or rsnapshot is missing (before the lock is taken or a status
    file written).
    """
    if interval not in INTERVALS:
        raise UsageError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}")
    engine = select_engine(config)
    engine.check_tools(config)
    try:
        with open_root(config.backup.root):
            pass
        engine.check_root(config.backup.root)
    except EntryError as error:
        raise ConfigError(f"{config.source}: [backup] root: {error}") from None
    raise_open_files_limit()
    return SnapshotJob(config, engine, interval, dry_run, clock)


def snapshot(
    job: SnapshotJob,
    report: SnapshotReport,
    *,
    uid: str | None = None,
    jobs: int | None = None,
    on_result: Callable[[AccountResult], None] | None = None,
    stop_requested: Callable[[], str | None] = lambda: None,
) -> SnapshotReport:
    """Run the snapshots of ``job`` (from :func:`prepare`) once, filling ``report``.

    ``uid`` narrows the run to one account, ``jobs`` overrides ``[snapshot]
    jobs``; ``on_result`` is called in this thread as each account ends;
    ``stop_requested`` returns the name of a signal that asked the run to
    stop: no account is started after it, those in hand are finished, and
    the run exits 128 + the signal's number. Takes no lock and writes no
    status file: the command layer's run lifecycle does
    (:mod:`provbackup.cli.lifecycle`). Returns ``report`` (exit code 0, 1,
    69, or 128 + the signal). Raises LdapUnavailableError only through
    the usage write-back's own handling (it records the error instead).
    """
    _run(job, report, uid, jobs or job.config.snapshot.jobs, on_result, stop_requested)
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
