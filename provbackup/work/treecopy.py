"""A customer's tree copied by reflink, through descriptors, never following a link.

:func:`copy_tree` fills an empty directory (a new btrfs subvolume, for the
engine migration) with a copy of a tree a customer controls:

- the walk is a loop over an explicit stack, never recursion on the Python
  stack; every directory is opened relative to its parent's descriptor with
  ``O_DIRECTORY|O_NOFOLLOW|O_NONBLOCK``; at most :data:`MAX_OPEN_DIRECTORIES`
  pairs stay open (deeper ones are reopened from their parent on the way
  back up and checked to be the same directory);
- a regular file's data is shared, not copied: ``FICLONE`` (the ioctl
  behind ``cp --reflink=always``) on the two descriptors; where the kernel
  refuses a clone the bytes are copied (``copy_file_range``) and counted;
- a symbolic link is copied as a link (its target text, never followed);
  FIFOs, sockets and devices are left out and counted;
- nothing in the tree decides ownership: every copy gets the owner the
  caller gives (the account's uidNumber:gidNumber from its entry), the
  source's permission bits without set-uid/set-gid, and its times;
- a mount point inside the tree (another filesystem) fails the copy.

Hard links inside one tree are not kept as links (each name is a clone of
the same extents: the data is still stored once). :func:`exchange` swaps
two directory entries atomically (``renameat2(RENAME_EXCHANGE)``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.safe import OpenDirectory, check_name

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
RENAME_EXCHANGE = 2
OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN_DIRECTORIES = 32
KEPT_MODE_BITS = 0o1777  # never set-uid or set-gid in a copy
CLONE_REFUSED = (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS)


@dataclass
class CopyCount:
    """What :func:`copy_tree` did: entries by kind, bytes cloned and bytes copied."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    left_out: int = 0
    cloned_bytes: int = 0
    copied_bytes: int = 0

    def add(self, other: CopyCount) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def text(self) -> str:
        """The counts in words."""
        return (
            f"{self.files} files ({self.cloned_bytes} bytes shared by reflink, "
            f"{self.copied_bytes} copied), {self.directories} directories, "
            f"{self.symlinks} symbolic links, {self.left_out} special files left out"
        )


@dataclass
class _Frame:
    """One directory of the walk: its name in the parent, both descriptors, what is left."""

    name: str
    source: os.stat_result
    target: os.stat_result
    names: list[str]
    source_fd: int = -1
    target_fd: int = -1
    done: int = 0


def copy_tree(
    source: OpenDirectory, target: OpenDirectory, uid: int, gid: int
) -> tuple[CopyCount, os.stat_result]:
    """Copy everything below the open ``source`` into the open, empty ``target``.

    Takes both directories open and the owner every copy gets. The root of
    ``target`` itself is the caller's (owner, mode, time). Returns the
    counts and the lstat of ``source``'s root (its time for the caller).
    Raises WorkError for a mount point in the tree, OSError.
    """
    count = CopyCount()
    top = os.fstat(source.fd)
    filesystem = kernel.fsid(source.fd) if kernel.is_btrfs(source.fd) else None
    frames = [_Frame("", top, os.fstat(target.fd), sorted(os.listdir(source.fd)))]
    frames[0].source_fd, frames[0].target_fd = os.dup(source.fd), os.dup(target.fd)
    try:
        while frames:
            frame = frames[-1]
            _reopen(frames)
            if frame.done == len(frame.names):
                if len(frames) > 1:
                    _finish_directory(frame, uid, gid)
                _close(frame)
                frames.pop()
                continue
            name = frame.names[frame.done]
            frame.done += 1
            child = _copy_entry(frame, name, uid, gid, count, top.st_dev, filesystem, source.path)
            if child is not None:
                frames.append(child)
                deepest_closed = len(frames) - MAX_OPEN_DIRECTORIES - 1
                if deepest_closed >= 1:  # the top stays open: everything is reopened from it
                    _close(frames[deepest_closed])
    finally:
        for frame in frames:
            _close(frame)
    return count, top


def _copy_entry(
    frame: _Frame,
    name: str,
    uid: int,
    gid: int,
    count: CopyCount,
    device: int,
    filesystem: str | None,
    where: Path,
) -> _Frame | None:
    """Copy one entry of ``frame``; return the frame of a directory to descend into."""
    try:
        status = os.stat(name, dir_fd=frame.source_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None  # gone since the listing
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        try:
            fd = os.open(name, OPEN_FLAGS, dir_fd=frame.source_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                return None  # swapped for a symlink since the lstat: never followed
            raise
        try:
            opened = os.fstat(fd)
            if opened.st_dev != device and (
                filesystem is None or not kernel.is_btrfs(fd) or kernel.fsid(fd) != filesystem
            ):
                raise WorkError(
                    f"{where}: a mount point inside the tree ({name!r}): not copied",
                    return_value=RETURN_FILESYSTEM,
                )
            os.mkdir(name, 0o700, dir_fd=frame.target_fd)
            target_fd = os.open(name, OPEN_FLAGS, dir_fd=frame.target_fd)
        except BaseException:
            os.close(fd)
            raise
        child = _Frame(name, opened, os.fstat(target_fd), sorted(os.listdir(fd)), fd, target_fd)
        count.directories += 1
        return child
    if stat.S_ISLNK(mode):
        try:
            text = os.readlink(name, dir_fd=frame.source_fd)
        except (FileNotFoundError, OSError):
            return None
        os.symlink(text, name, dir_fd=frame.target_fd)
        os.chown(name, uid, gid, dir_fd=frame.target_fd, follow_symlinks=False)
        os.utime(name, ns=(status.st_atime_ns, status.st_mtime_ns), dir_fd=frame.target_fd,
                 follow_symlinks=False)  # fmt: skip
        count.symlinks += 1
        return None
    if stat.S_ISREG(mode):
        _copy_file(frame, name, uid, gid, count)
        return None
    count.left_out += 1
    return None


def _copy_file(frame: _Frame, name: str, uid: int, gid: int, count: CopyCount) -> None:
    try:
        source = os.open(name, FILE_FLAGS, dir_fd=frame.source_fd)
    except (FileNotFoundError, OSError):
        return  # gone, or swapped for a link or a special file since the lstat
    try:
        status = os.fstat(source)
        if not stat.S_ISREG(status.st_mode):
            count.left_out += 1
            return
        target = os.open(name, NEW_FILE_FLAGS, 0o600, dir_fd=frame.target_fd)
        try:
            try:
                fcntl.ioctl(target, FICLONE, source)
                count.cloned_bytes += status.st_size
            except OSError as error:
                if error.errno not in CLONE_REFUSED:
                    raise
                count.copied_bytes += _copy_bytes(source, target)
            os.fchown(target, uid, gid)
            os.fchmod(target, stat.S_IMODE(status.st_mode) & KEPT_MODE_BITS)
            os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns))
        finally:
            os.close(target)
        count.files += 1
    finally:
        os.close(source)


def _copy_bytes(source: int, target: int) -> int:
    copied = 0
    while True:
        moved = os.copy_file_range(source, target, 1 << 24)
        if moved == 0:
            return copied
        copied += moved


def _finish_directory(frame: _Frame, uid: int, gid: int) -> None:
    """Owner, mode and times of a copied directory, once its entries are in."""
    os.fchown(frame.target_fd, uid, gid)
    os.fchmod(frame.target_fd, stat.S_IMODE(frame.source.st_mode) & KEPT_MODE_BITS)
    os.utime(frame.target_fd, ns=(frame.source.st_atime_ns, frame.source.st_mtime_ns))


def _close(frame: _Frame) -> None:
    for fd in (frame.source_fd, frame.target_fd):
        if fd >= 0:
            os.close(fd)
    frame.source_fd = frame.target_fd = -1


def _reopen(frames: list[_Frame]) -> None:
    """Reopen, from the nearest open ancestor down, the directories closed on the way down."""
    closed = len(frames) - 1
    while frames[closed].source_fd < 0:
        closed -= 1
    for index in range(closed + 1, len(frames)):
        parent, frame = frames[index - 1], frames[index]
        frame.source_fd = _reopen_one(parent.source_fd, frame.name, frame.source)
        frame.target_fd = _reopen_one(parent.target_fd, frame.name, frame.target)


def _reopen_one(parent_fd: int, name: str, expected: os.stat_result) -> int:
    fd = os.open(name, OPEN_FLAGS, dir_fd=parent_fd)
    found = os.fstat(fd)
    if (found.st_dev, found.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise WorkError(
            f"{name!r} was replaced while it was copied: try again",
            return_value=RETURN_FILESYSTEM,
        )
    return fd


def exchange(
    first: OpenDirectory, first_name: str, second: OpenDirectory, second_name: str
) -> None:
    """Swap two entries atomically (``renameat2`` with ``RENAME_EXCHANGE``); raises OSError."""
    check_name(first, first_name)
    check_name(second, second_name)
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.renameat2(
        first.fd, os.fsencode(first_name), second.fd, os.fsencode(second_name), RENAME_EXCHANGE
    )
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(first.path / first_name))
