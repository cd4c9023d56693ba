"""The per-account lock: one piece of work on an account at a time.

``provbackup snapshot`` (every interval) and ``provbackup process`` take it
around their work on an account, so a weekly and a daily snapshot never
run rsnapshot on one account together, and a delete never moves an account
away under a running snapshot. It is an advisory ``flock`` on
``<directory of [run] lock_file>/accounts/<uid>.lock``: root-only, outside
every customer's tree, freed by the kernel when its holder dies (even by
SIGKILL), so a stale lock never blocks anything. Lock files are never
removed: unlinking a lock file races with a process that just opened it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from provbackup.errors import ProvbackupError
from provbackup.paths import SAFE_UID

if TYPE_CHECKING:
    from provbackup.config import Config

log = logging.getLogger(__name__)

ACCOUNT_LOCK_DIRECTORY = "accounts"
LOCK_DIRECTORY_MODE = 0o700
LOCK_FILE_MODE = 0o600
POLL_SECONDS = 0.1


class AccountBusyError(ProvbackupError):
    """Another run holds the account's lock and did not let go within the wait.

    Not an entry failure: the caller leaves the account for a later run.
    """


def account_lock_path(config: Config, uid_or_account_dir: str | os.PathLike[str]) -> Path:
    """Return the lock file of an account, named by its uid or its account directory.

    The uid is the account directory's last component in every layout.
    Raises ValueError for a name that is not a safe uid (it would name a
    file elsewhere).
    """
    uid = (
        Path(uid_or_account_dir).name if "/" in str(uid_or_account_dir) else str(uid_or_account_dir)
    )
    if not SAFE_UID.fullmatch(uid) or uid in (".", ".."):
        raise ValueError(f"{uid!r} is not a safe account name for a lock file")
    return config.run.lock_file.parent / ACCOUNT_LOCK_DIRECTORY / f"{uid}.lock"


@contextlib.contextmanager
def account_lock(
    config: Config, uid_or_account_dir: str | os.PathLike[str], wait_seconds: float
) -> Iterator[Path]:
    """Hold the account's lock for the ``with`` block; yields the lock file's path.

    Takes the configuration (for the lock directory), the account's uid or
    account directory, and how many seconds to wait for a holder to let go
    (0: do not wait). Raises AccountBusyError when the wait runs out,
    ProvbackupError when the lock file cannot be opened, ValueError for an
    unsafe name.
    """
    path = account_lock_path(config, uid_or_account_dir)
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ProvbackupError(f"cannot lock {path}: {error.strerror}") from None
            if time.monotonic() >= deadline:
                raise AccountBusyError(
                    f"account {path.stem} is busy: another provbackup run holds {path}"
                    + (f" (waited {wait_seconds:g} s)" if wait_seconds > 0 else "")
                )
            time.sleep(POLL_SECONDS)
        log.debug("holding the account lock %s", path)
        yield path
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    directory = path.parent
    try:
        directory.mkdir(mode=LOCK_DIRECTORY_MODE, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as error:
        raise ProvbackupError(
            f"cannot open the account lock file {path}: {error.strerror}"
        ) from None
