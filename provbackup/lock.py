"""The run lock: one ``process`` at a time on this host, held with filelock.

The lock is an advisory ``flock`` on ``[run] lock_file``, so the kernel
frees it when the holder dies, even by SIGKILL: a stale lock never blocks
the next run. The holder's PID is written beside it (``<lock_file>.pid``)
so a refused run can name it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from provbackup.errors import LockHeldError, ProvbackupError

log = logging.getLogger(__name__)


def _pid_path(lock_file: Path) -> Path:
    return lock_file.with_name(lock_file.name + ".pid")


def holder_pid(lock_file: Path) -> int | None:
    """Return the PID of the lock's holder, or None when unknown."""
    holders = lock_holders(lock_file)
    if holders:
        return holders[0]
    try:
        text = _pid_path(lock_file).read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _make_lock(lock_file: Path, timeout: float):
    import filelock

    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProvbackupError(
            f"cannot create the lock directory {lock_file.parent}: {error.strerror}"
        ) from None
    return filelock.FileLock(str(lock_file), timeout=timeout), filelock.Timeout


@contextlib.contextmanager
def run_lock(lock_file: Path, wait: float = 0) -> Iterator[None]:
    """Hold the run lock for the duration of the ``with`` block.

    Takes the lock file path and how many seconds to wait for it (0: fail
    at once). Raises LockHeldError naming the holder's PID when another
    run keeps it, ProvbackupError when the lock file cannot be created.
    """
    lock, timeout_error = _make_lock(lock_file, wait)
    try:
        lock.acquire()
    except timeout_error:
        pid = holder_pid(lock_file)
        holder = f" (PID {pid})" if pid else ""
        raise LockHeldError(
            f"another provbackup run holds the lock {lock_file}{holder}; nothing changed"
        ) from None
    except OSError as error:
        raise ProvbackupError(f"cannot open the lock file {lock_file}: {error.strerror}") from None
    try:
        with contextlib.suppress(OSError):
            _pid_path(lock_file).write_text(f"{os.getpid()}\n", encoding="ascii")
        log.debug("holding the run lock %s", lock_file)
        yield
    finally:
        with contextlib.suppress(OSError):
            _pid_path(lock_file).unlink()
        lock.release()


def lock_holders(lock_file: Path) -> list[int]:
    """Return the PIDs holding a flock on ``lock_file``, without touching the lock.

    Reads the kernel's lock table (/proc/locks), so a reader such as
    ``scan`` never competes with a starting ``process`` for the lock.
    Returns an empty list when the file does not exist or nobody holds it.
    """
    try:
        info = os.stat(lock_file)
    except OSError:
        return []
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = []
    try:
        with open("/proc/locks", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; "->" marks waiters.
                if (
                    len(fields) >= 6
                    and fields[1] in ("FLOCK", "POSIX", "OFDLCK")
                    and fields[5] == device
                    and fields[4].isdigit()
                ):
                    holders.append(int(fields[4]))
    except OSError:
        return []
    return holders


def lock_is_held(lock_file: Path) -> bool:
    """Tell whether a run holds the lock now (see :func:`lock_holders`)."""
    return bool(lock_holders(lock_file))
