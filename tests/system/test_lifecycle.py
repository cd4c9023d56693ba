"""The run lifecycle (cli/lifecycle.py) as the next commands use it: ``notify``, ``watch``.

``process`` and ``snapshot`` are tested through the command line (test_process,
test_snapshot, test_lasting_fault, test_gate); here the parts only a
follower or a new one-shot command needs: a lock taken per batch, files
named per command, SIGHUP as a reload request, a pause cut short by a
signal, a lock wait ended by SIGTERM. Real signals to this process, the
real flock and real files under a temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import REPOSITORY, hold_lock, make_config

from provbackup.cli.lifecycle import RunLifecycle
from provbackup.config import Config, RunConfig
from provbackup.errors import (
    EXIT_FAULT_REPEATED,
    EXIT_LDAP_UNAVAILABLE,
    EXIT_LOCKED,
    LdapUnavailableError,
    ProvbackupError,
)
from provbackup.lock import lock_holders


@dataclass
class BatchReport:
    """The least a report needs to go through the lifecycle."""

    started: datetime
    dry_run: bool = False
    finished: datetime | None = None
    exit_code: int = 0
    error: str | None = None
    items: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Any]:
        return []

    def summary(self) -> str:
        return f"{len(self.items)} items"

    def to_status(self, hostname: str) -> dict[str, Any]:
        return {"command": "test", "exit_code": self.exit_code, "error": self.error,
                "items": self.items}  # fmt: skip


def config_in(tmp_path: Path, interval: int = 3600) -> Config:
    run = RunConfig(
        lock_file=tmp_path / "run" / "provbackup.lock",
        status_file=tmp_path / "state" / "status.json",
        fault_report_interval=interval,
    )
    return replace(make_config(tmp_path / "backup"), run=run)


def report() -> BatchReport:
    return BatchReport(started=datetime.now(UTC))


def test_a_follower_holds_the_lock_per_batch_and_writes_its_own_status_file(tmp_path):
    config = config_in(tmp_path)
    lifecycle = RunLifecycle(config, "notify")
    lock_file = tmp_path / "run" / "notify.lock"
    held_during: list[list[int]] = []
    free_between: list[list[int]] = []
    with lifecycle.command():
        for number in range(2):
            batch = report()
            with lifecycle.batch(batch):
                held_during.append(lock_holders(lock_file))
                batch.items.append(f"batch {number}")
            free_between.append(lock_holders(lock_file))
    assert held_during == [[os.getpid()], [os.getpid()]]
    assert free_between == [[], []]
    status = json.loads((tmp_path / "state" / "status-notify.json").read_text())
    assert status["items"] == ["batch 1"] and status["exit_code"] == 0
    # The process files are not another command's: no process status, no process lock taken.
    assert not config.run.status_file.exists()
    assert lifecycle.exit_code(batch) == 0


def test_process_batches_use_the_configured_lock_and_status_file(tmp_path):
    config = config_in(tmp_path)
    lifecycle = RunLifecycle(config, "process")
    batch = report()
    with lifecycle.command(), lifecycle.batch(batch):
        assert lock_holders(config.run.lock_file) == [os.getpid()]
    assert json.loads(config.run.status_file.read_text())["command"] == "test"


def test_sighup_asks_for_a_reload_once_and_cuts_the_pause_short(tmp_path):
    lifecycle = RunLifecycle(config_in(tmp_path), "watch", reload=True)
    before = signal.getsignal(signal.SIGHUP)
    with lifecycle.command():
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGHUP))
        timer.start()
        lifecycle.pause(600)  # returns on the SIGHUP, or the test times out
        timer.join()
        assert lifecycle.reload_requested() is True
        assert lifecycle.reload_requested() is False
        assert lifecycle.stop_requested() is None
        lifecycle.reconfigure(config_in(tmp_path / "reloaded"))
        assert lifecycle.files.lock == tmp_path / "reloaded" / "run" / "watch.lock"
    assert signal.getsignal(signal.SIGHUP) == before


def test_sigterm_stops_the_pause_and_is_what_stop_requested_says(tmp_path):
    lifecycle = RunLifecycle(config_in(tmp_path), "watch")
    before = signal.getsignal(signal.SIGTERM)
    with lifecycle.command():
        assert signal.getsignal(signal.SIGHUP) != lifecycle.signals  # not asked for: left alone
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        lifecycle.pause(600)
        timer.join()
        assert lifecycle.stop_requested() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_unexpected_exception_is_exit_70_in_the_status_file_and_raised(tmp_path):
    lifecycle = RunLifecycle(config_in(tmp_path), "notify")
    batch = report()
    with pytest.raises(RuntimeError, match="boom"), lifecycle.command(), lifecycle.batch(batch):
        raise RuntimeError("boom")
    status = json.loads((tmp_path / "state" / "status-notify.json").read_text())
    assert status["exit_code"] == 70
    assert status["error"] == "internal error: RuntimeError: boom"
    assert batch.finished is not None


def test_a_repeated_fault_ends_the_command_with_79_and_a_clean_batch_clears_it(tmp_path):
    config = config_in(tmp_path)
    fault_file = tmp_path / "state" / "last-fault-notify.json"

    def failing_run() -> int:
        lifecycle = RunLifecycle(config, "notify", record_faults=True)
        batch = report()
        with lifecycle.command(), lifecycle.batch(batch):
            raise LdapUnavailableError("ldap://x: connection refused")
        return lifecycle.exit_code(batch)

    with pytest.raises(LdapUnavailableError):
        failing_run()  # the first time: reported with its own exit code
    assert failing_run() == EXIT_FAULT_REPEATED
    status = json.loads((tmp_path / "state" / "status-notify.json").read_text())
    assert status["exit_code"] == EXIT_LDAP_UNAVAILABLE  # the status file keeps the truth
    assert json.loads(fault_file.read_text())["runs"] == 2
    assert not (tmp_path / "state" / "last-fault.json").exists()  # process's record untouched
    clean = RunLifecycle(config, "notify", record_faults=True)
    with clean.command(), clean.batch(report()):
        pass
    assert not fault_file.exists()


def test_an_unusable_lock_file_is_a_lasting_fault_too(tmp_path):
    """As before the lifecycle: a symlink in place of the lock file is refused, and recorded."""
    config = config_in(tmp_path)
    config.run.lock_file.parent.mkdir(parents=True)
    config.run.lock_file.symlink_to(tmp_path / "elsewhere")

    def one_run() -> int:
        lifecycle = RunLifecycle(config, "process", record_faults=True)
        batch = report()
        with lifecycle.command(), lifecycle.batch(batch):
            raise AssertionError("the block must not run without the lock")
        return lifecycle.exit_code(batch)

    with pytest.raises(ProvbackupError, match="is a symbolic link"):
        one_run()
    assert one_run() == EXIT_FAULT_REPEATED
    assert json.loads((tmp_path / "state" / "last-fault.json").read_text())["runs"] == 2
    assert not config.run.status_file.exists()
    assert not (tmp_path / "elsewhere").exists()


def test_a_dry_run_takes_no_lock_and_writes_nothing(tmp_path):
    config = config_in(tmp_path)
    lifecycle = RunLifecycle(config, "notify", dry_run=True, record_faults=True)
    with lifecycle.command(), lifecycle.batch(report()):
        assert lock_holders(tmp_path / "run" / "notify.lock") == []
    assert not (tmp_path / "state").exists()


WAITER = """
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from support import make_config
from test_lifecycle import BatchReport

from provbackup.cli.lifecycle import RunLifecycle
from provbackup.config import RunConfig
from provbackup.errors import LockHeldError

run = RunConfig(lock_file=Path(sys.argv[1]), status_file=Path(sys.argv[1]).with_name("s.json"))
lifecycle = RunLifecycle(replace(make_config(), run=run), "process", wait=600)
try:
    with lifecycle.command():
        print("waiting", flush=True)  # the handlers are in place
        with lifecycle.batch(BatchReport(started=datetime.now(UTC))):
            print("got the lock", flush=True)
except LockHeldError as error:
    print(lifecycle.stop_requested(), error, flush=True)
    sys.exit(error.exit_code)
"""


def test_sigterm_ends_the_wait_for_the_lock_with_75_and_nothing_written(tmp_path):
    lock_file = tmp_path / "provbackup.lock"
    holder = hold_lock(lock_file)
    tests = REPOSITORY / "tests"
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(lock_file)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": f"{REPOSITORY}:{tests}:{tests / 'system'}"},
    )  # fmt: skip
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "waiting"
        assert lock_holders(lock_file) == [holder.pid]
        waiter.send_signal(signal.SIGTERM)
        # Without the signal ending it the wait would last 600 s: the timeout fails the test.
        out, _ = waiter.communicate(timeout=60)
    finally:
        for child in (waiter, holder):
            child.kill()
            child.wait()
    assert waiter.returncode == EXIT_LOCKED, out
    assert out.startswith("SIGTERM another provbackup run holds the lock")
    assert not (tmp_path / "s.json").exists()
