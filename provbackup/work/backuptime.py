"""Give the newest snapshot's ``backupTime`` files the snapshot's time.

Sepiola writes ``TODAY`` into ``<host>/.sepiola_backup/backupTime`` and keys
its restore points by that file's date (``yyyy-MM-dd HH:mm``): every
snapshot still saying ``TODAY`` would collapse into one restore point. The
snapshot's copy is replaced (a new file renamed over it: a new inode), never
written through, because snapshots share unchanged files by hard links and
an older snapshot's copy must keep its own time. Nothing is followed: every
directory is opened with ``O_NOFOLLOW`` and only a regular file is read.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import datetime

from provbackup.errors import UnsafePathError
from provbackup.work.safe import OPEN_FILE_FLAGS, OpenDirectory, open_directory, replace_file

logger = logging.getLogger(__name__)

MARKER = b"TODAY"
MAX_BYTES = 64
TIME_FORMAT = "%Y-%m-%d %H:%M"
MAX_HOSTS = 100  # host directories looked at per snapshot (sorted), as work/usage.py


def fix_backup_time(snapshot: OpenDirectory, moment: datetime) -> list[str]:
    """Replace each ``<host>/.sepiola_backup/backupTime`` saying TODAY in the open snapshot.

    ``moment`` is the snapshot's time; it is written in the server's local
    time as ``yyyy-MM-dd HH:mm``. The new file keeps the old one's owner,
    group, mode and modification time. Returns the steps done. Hosts whose
    directories are not plain directories are skipped; only the first
    :data:`MAX_HOSTS` directories (sorted) are looked at, the rest is
    logged as a warning (a customer's directories must not make the work
    on a full account's snapshot, done with its limit raised, unbounded).
    """
    steps: list[str] = []
    text = moment.astimezone().strftime(TIME_FORMAT).encode("ascii")
    with os.scandir(snapshot.fd) as entries:
        hosts = sorted(entry.name for entry in entries if entry.is_dir(follow_symlinks=False))
    if len(hosts) > MAX_HOSTS:
        logger.warning(
            "%s: %d host directories, more than %d: backupTime fixed in the first %d only",
            snapshot.path, len(hosts), MAX_HOSTS, MAX_HOSTS,
        )  # fmt: skip
    for host in hosts[:MAX_HOSTS]:
        try:
            with (
                open_directory(snapshot, host) as client,
                open_directory(client, ".sepiola_backup") as metadata,
            ):
                if _replace_marker(metadata, text):
                    steps.append(f"{metadata.path}/backupTime: TODAY -> {text.decode()}")
        except (FileNotFoundError, UnsafePathError):
            continue
    return steps


def _replace_marker(metadata: OpenDirectory, text: bytes) -> bool:
    try:
        fd = os.open("backupTime", OPEN_FILE_FLAGS, dir_fd=metadata.fd)
    except OSError:
        return False  # missing, or a symlink (ELOOP): never followed
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_BYTES:
            return False
        content = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if content.strip() != MARKER:
        return False
    replace_file(
        metadata,
        "backupTime",
        text,
        uid=status.st_uid,
        gid=status.st_gid,
        mode=stat.S_IMODE(status.st_mode),
        mtime_ns=status.st_mtime_ns,
    )
    logger.debug("%s/backupTime replaced (was inode %d)", metadata.path, status.st_ino)
    return True
