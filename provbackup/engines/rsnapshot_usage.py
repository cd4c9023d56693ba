"""The rsnapshot engine's usage figures: what an account's trees allocate on disk.

Sizes are what the filesystem allocates (``st_blocks * 512``, as ``du``
counts), each inode once by ``(st_dev, st_ino)``, found by an iterative walk
over directory descriptors: no recursion on the Python stack, no symlink
followed, no file opened. The group quota counts ``incoming/`` and
``.snapshots/`` together, each inode once: so ``backup`` is ``incoming/``
and ``snapshot`` is what ``.snapshots/`` adds on top of it (an inode shared
with ``incoming/`` is counted in ``backup`` only).
"""

from __future__ import annotations

import errno
import os
import stat

from provbackup.work.safe import OPEN_DIRECTORY_FLAGS, OpenDirectory, open_directory
from provbackup.work.usage import Usage

BLOCK_BYTES = 512
VANISHED = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


def allocated_bytes(top: OpenDirectory, seen: set[tuple[int, int]]) -> int:
    """Return the bytes allocated below (and for) the open directory ``top``.

    Counts every inode not yet in ``seen`` (and adds it there), so a hard
    link counts once, also across calls sharing ``seen``. Iterative: a stack
    of open directory descriptors as deep as the tree, never the Python
    stack. Entries that vanish during the walk are skipped.
    """
    total = 0
    info = os.fstat(top.fd)
    key = (info.st_dev, info.st_ino)
    if key not in seen:
        seen.add(key)
        total += info.st_blocks * BLOCK_BYTES
    # Each level holds its own descriptor and the names still to visit in it.
    stack: list[tuple[int, list[str]]] = [(os.dup(top.fd), os.listdir(top.fd))]
    try:
        while stack:
            fd, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop()
            try:
                status = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            key = (status.st_dev, status.st_ino)
            if key in seen:
                continue
            if status.st_nlink > 1 and not stat.S_ISDIR(status.st_mode):
                seen.add(key)  # only a hard-linked file can be met again
            total += status.st_blocks * BLOCK_BYTES
            if stat.S_ISDIR(status.st_mode):
                try:
                    child = os.open(name, OPEN_DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as error:
                    if error.errno in VANISHED:
                        continue  # removed, or swapped for a symlink, since the stat
                    raise  # EMFILE and the like: a figure must never be silently short
                try:
                    stack.append((child, os.listdir(child)))
                except BaseException:
                    os.close(child)
                    raise
    finally:
        for fd, _names in stack:
            os.close(fd)
    return total


def measure(home: OpenDirectory) -> Usage:
    """Measure the account's ``incoming/`` and ``.snapshots/`` below its open home."""
    seen: set[tuple[int, int]] = set()
    with open_directory(home, "incoming") as incoming:
        backup = allocated_bytes(incoming, seen)
    with open_directory(home, ".snapshots") as snapshots:
        snapshot = allocated_bytes(snapshots, seen)
    return Usage(backup=backup, snapshot=snapshot)
