"""The one tree remover: iterative, descriptor-based, bounded, with a time budget.

Every removal of a directory tree (a delete with ``quarantine_days = 0``,
the quarantine purge) goes through :func:`remove_tree`. The tree may hold
anything a customer uploaded, and the customer may still be changing it
while it is removed, so:

- the walk is a loop over an explicit stack, never recursion on the Python
  stack: a tree 100,000 directories deep is removed like a flat one;
- every directory is opened relative to its parent's descriptor with
  ``O_DIRECTORY|O_NOFOLLOW|O_NONBLOCK``: a symlink is never followed (it is
  unlinked, its target untouched), and a FIFO or device swapped in for a
  directory fails the open at once instead of blocking the run;
- nothing is classified before it is acted on: a name is unlinked, and only
  when the kernel says it is a directory is it opened (so a swap between a
  check and the act cannot fool it);
- at most :data:`MAX_OPEN_DIRECTORIES` descriptors are open: deeper
  directories are reopened by name from an open ancestor when the walk
  comes back up, and checked to be the same directory (device, inode);
- it never leaves the filesystem it started on (a mount point inside the
  tree fails the removal instead of emptying what is mounted there);
- it stops when its :class:`Budget` is spent and says so: what is left stays
  in place for the next call, which continues where this one stopped.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from provbackup.errors import RETURN_FILESYSTEM, UnsafePathError, WorkError

logger = logging.getLogger(__name__)

OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_OPEN_DIRECTORIES = 32
# Names read from a directory at a time: a directory with millions of entries
# never becomes a list of millions of names.
BATCH = 512
# Operations every call does before it looks at the budget, so that even a
# spent budget makes progress and repeated runs always finish.
MIN_OPERATIONS = 100
# Names kept waiting across the whole stack: past this, a directory being
# descended from forgets its pending names and reads them again on return.
MAX_PENDING_NAMES = 65536
# A name found to be a directory and then a non-directory (or back) this many
# times in one call is being swapped by someone: give up on this tree for now.
MAX_SWAPS = 1000


class Budget:
    """A time budget (seconds, monotonic clock) shared by the removals of one run.

    ``seconds`` None means unlimited.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def spent(self) -> bool:
        """Tell whether the time is up."""
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass
class _Frame:
    """One directory on the walk's stack: its name in its parent and, while open, its fd."""

    name: str
    fd: int
    identity: tuple[int, int]
    names: list[str] = field(default_factory=list)


class _Walk:
    """The state of one removal (see the module docstring)."""

    def __init__(self, parent_fd: int, parent_path: Path, name: str, budget: Budget) -> None:
        self.parent_fd = parent_fd
        self.parent_path = parent_path
        self.top = name
        self.budget = budget
        self.frames: list[_Frame] = []
        self.device = -1
        self.operations = 0
        self.swaps = 0
        self.pending = 0

    def path(self, depth: int, name: str | None = None) -> Path:
        """The path of frame ``depth`` (and ``name`` in it), for messages only."""
        parts = [frame.name for frame in self.frames[: depth + 1]]
        if name is not None:
            parts.append(name)
        return self.parent_path.joinpath(*parts)

    def close(self) -> None:
        for frame in self.frames:
            if frame.fd >= 0:
                os.close(frame.fd)
                frame.fd = -1

    def fd_of(self, depth: int) -> int:
        """The descriptor of frame ``depth`` (-1: the parent), reopened if it was closed."""
        if depth < 0:
            return self.parent_fd
        if self.frames[depth].fd < 0:
            self._reopen(depth)
        return self.frames[depth].fd

    def _reopen(self, depth: int) -> None:
        start = depth
        while start >= 0 and self.frames[start].fd < 0:
            start -= 1
        for index in range(start + 1, depth + 1):
            frame = self.frames[index]
            parent = self.parent_fd if index == 0 else self.frames[index - 1].fd
            try:
                fd = os.open(frame.name, OPEN_FLAGS, dir_fd=parent)
            except OSError as error:
                raise self._changed(index, error.strerror) from None
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != frame.identity:
                os.close(fd)
                raise self._changed(index, "replaced by another directory")
            frame.fd = fd
            self._bound_descriptors()

    def _changed(self, depth: int, why: str | None) -> WorkError:
        return WorkError(
            f"cannot remove {self.path(depth)}: it changed during the removal ({why}); "
            "the next run continues",
            return_value=RETURN_FILESYSTEM,
        )

    def _bound_descriptors(self) -> None:
        open_frames = [frame for frame in self.frames if frame.fd >= 0]
        # The innermost ones are the ones the walk needs next; the top is cheap to keep.
        for frame in open_frames[1 : max(1, len(open_frames) - MAX_OPEN_DIRECTORIES + 1)]:
            os.close(frame.fd)
            frame.fd = -1

    def push(self, depth: int, name: str) -> bool:
        """Open directory ``name`` of frame ``depth`` and put it on the stack.

        Returns False when ``name`` is not a directory (any more) or gone.
        Raises WorkError for a mount point or an unreadable directory.
        """
        try:
            fd = os.open(name, OPEN_FLAGS, dir_fd=self.fd_of(depth))
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno in (errno.ENOTDIR, errno.ELOOP):
                return False
            raise self._failure(self.path(depth, name), error) from None
        status = os.fstat(fd)
        if self.device == -1:
            self.device = status.st_dev
        elif status.st_dev != self.device:
            os.close(fd)
            raise UnsafePathError(
                f"cannot remove {self.path(depth, name)}: a mount point (another filesystem); "
                "left alone, unmount it first"
            )
        if depth >= 0 and self.pending > MAX_PENDING_NAMES:
            self.pending -= len(self.frames[depth].names)
            self.frames[depth].names.clear()
        self.frames.append(_Frame(name, fd, (status.st_dev, status.st_ino)))
        self._bound_descriptors()
        return True

    def _failure(self, path: Path, error: OSError) -> WorkError:
        return WorkError(
            f"cannot remove {path}: {error.strerror or error}", return_value=RETURN_FILESYSTEM
        )

    def unlink(self, depth: int, name: str) -> bool:
        """Unlink the non-directory ``name`` in frame ``depth`` (-1: the parent).

        Returns False when it is a directory (nothing was done).
        """
        try:
            os.unlink(name, dir_fd=self.fd_of(depth))
        except FileNotFoundError:
            return True
        except IsADirectoryError:
            return False
        except OSError as error:
            raise self._failure(self.path(depth, name), error) from None
        return True

    def run(self) -> bool:
        """Remove the tree; True when it is gone, False when the budget ran out first."""
        while True:
            if self.unlink(-1, self.top):
                return True
            if self.push(-1, self.top):
                break
            self._count_swap(-1, self.top)
        while self.frames:
            depth = len(self.frames) - 1
            frame = self.frames[depth]
            if not frame.names:
                frame.names = self._read(depth)
                self.pending += len(frame.names)
                if not frame.names:
                    self._remove_empty(depth)
                    continue
            if self.operations >= MIN_OPERATIONS and self.budget.spent():
                return False
            self.operations += 1
            name = frame.names.pop()
            self.pending -= 1
            if not self.unlink(depth, name) and not self.push(depth, name):
                self._count_swap(depth, name)
                frame.names.append(name)
                self.pending += 1
        return True

    def _read(self, depth: int) -> list[str]:
        try:
            with os.scandir(self.fd_of(depth)) as entries:
                return [entry.name for entry in itertools.islice(entries, BATCH)]
        except OSError as error:
            raise self._failure(self.path(depth), error) from None

    def _remove_empty(self, depth: int) -> None:
        frame = self.frames.pop()
        if frame.fd >= 0:
            os.close(frame.fd)
            frame.fd = -1
        try:
            os.rmdir(frame.name, dir_fd=self.fd_of(depth - 1))
        except FileNotFoundError:
            pass
        except OSError as error:
            if error.errno == errno.ENOTDIR:
                # Swapped for a non-directory once emptied: take that name again (unlink).
                self._count_swap(depth - 1, frame.name)
                self._again(depth - 1, frame.name)
                return
            if error.errno != errno.ENOTEMPTY:
                raise self._failure(self.path(depth - 1, frame.name), error) from None
            # Something was added while it was emptied (a client still uploading):
            # go through it again, within the budget.
            self._again(depth - 1, frame.name)

    def _again(self, depth: int, name: str) -> None:
        """Put ``name`` of frame ``depth`` back on the walk (-1: the top itself)."""
        if depth >= 0:
            self.frames[depth].names.append(name)
            self.pending += 1
            return
        while not self.unlink(-1, name) and not self.push(-1, name):
            self._count_swap(-1, name)

    def _count_swap(self, depth: int, name: str) -> None:
        self.swaps += 1
        if self.swaps > MAX_SWAPS:
            raise WorkError(
                f"cannot remove {self.path(depth, name)}: it keeps changing between a directory "
                "and something else; the next run continues",
                return_value=RETURN_FILESYSTEM,
            )


def remove_tree(parent_fd: int, parent_path: Path, name: str, budget: Budget | None = None) -> bool:
    """Remove ``name`` in the directory ``parent_fd`` and everything below it.

    ``parent_path`` names the parent in messages only. ``name`` may be a
    directory or anything else (a symlink is unlinked, never followed).
    Returns True when it is gone (or was never there), False when
    ``budget`` ran out first: what is left stays for the next call.
    Raises WorkError naming the path when something cannot be removed or
    changes under the walk, UnsafePathError for a mount point below it.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(f"{parent_path}: refusing to remove {name!r}")
    walk = _Walk(parent_fd, parent_path, name, budget or Budget(None))
    try:
        return walk.run()
    finally:
        walk.close()
