"""The run lock: one ``process`` (or one run of a named command) at a time on this host.

The lock is an advisory ``flock`` on ``[run] lock_file``, so the kernel
frees it when the holder dies, even by SIGKILL: a stale lock never blocks
the next run. The holder writes its PID into the lock file itself, through
the descriptor it holds the lock on, so a refused run can name it. The file
is opened with ``O_NOFOLLOW`` and never truncated by path: a symlink put in
its place (in a directory others can write) is refused, never written
through. The file is never removed (removing a flock file races with a
run that has just opened it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from provbackup.errors import LockHeldError, ProvbackupError

log = logging.getLogger(__name__)

LOCK_FILE_MODE = 0o644
POLL_SECONDS = 0.05
MAX_PID_BYTES = 32
OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def holder_pid(lock_file: Path) -> int | None:
    """Return the PID of the lock's holder, or None when unknown.

    The kernel's lock table is asked first; the PID the holder wrote into
    the lock file is the fallback (read without following a symlink).
    """
    holders = lock_holders(lock_file)
    if holders:
        return holders[0]
    return _written_pid(lock_file)


def _written_pid(lock_file: Path) -> int | None:
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, MAX_PID_BYTES).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None


def _open_lock_file(lock_file: Path) -> int:
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProvbackupError(
            f"cannot create the lock directory {lock_file.parent}: {error.strerror}"
        ) from None
    try:
        fd = os.open(lock_file, OPEN_FLAGS, LOCK_FILE_MODE)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ProvbackupError(
                f"the lock file {lock_file} is a symbolic link; not following it "
                "(remove it, and keep [run] lock_file in a directory only root can write)"
            ) from None
        raise ProvbackupError(f"cannot open the lock file {lock_file}: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ProvbackupError(f"the lock file {lock_file} is not a regular file")
    return fd


def _take(fd: int, wait: float, give_up: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + max(wait, 0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline or give_up():
                return False
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def run_lock(
    lock_file: Path, wait: float = 0, give_up: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Hold the run lock for the duration of the ``with`` block.

    Takes the lock file path, how many seconds to wait for it (0: fail at
    once) and what ends the wait early (a stop signal). Raises
    LockHeldError naming the holder's PID when another run keeps it,
    ProvbackupError when the lock file cannot be created or is a symlink.
    """
    fd = _open_lock_file(lock_file)
    try:
        if not _take(fd, wait, give_up):
            pid = holder_pid(lock_file)
            holder = f" (PID {pid})" if pid else ""
            raise LockHeldError(
                f"another provbackup run holds the lock {lock_file}{holder}; nothing changed"
            )
        with contextlib.suppress(OSError):
            # Through the locked descriptor: never a path that may have become a symlink.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        log.debug("holding the run lock %s", lock_file)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)


def lock_holders(lock_file: Path) -> list[int]:
    """Return the PIDs holding a flock on ``lock_file``, without touching the lock.

    Reads the kernel's lock table (/proc/locks), so a reader such as
    ``scan`` never competes with a starting ``process`` for the lock.
    Returns an empty list when the file does not exist or nobody holds it.
    """
    try:
        info = os.stat(lock_file, follow_symlinks=False)
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
