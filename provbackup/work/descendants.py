"""Which processes belong to a running command: its process tree and its orphans.

While any command runs, this process is a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): a descendant that leaves the command's
session with ``setsid`` and loses its parent becomes our child instead of
init's. :class:`Tracker` tells whose such an orphan is by the
``PROVBACKUP_COMMAND_ID`` token in its environment (several commands may
run at once under snapshot ``--jobs``). Everything is read from ``/proc``,
walked with lists, never recursion.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "PROVBACKUP_COMMAND_ID"
PR_SET_CHILD_SUBREAPER = 36


class _HasPid(Protocol):
    @property
    def pid(self) -> int: ...


Started = TypeVar("Started", bound=_HasPid)


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children, from every thread's ``children`` file."""
    result: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", encoding="ascii") as handle:
                result += [int(word) for word in handle.read().split()]
        except OSError:
            continue
    return result


def tree(pid: int) -> list[int]:
    """The descendants of ``pid`` (not itself), walked with a list, not recursion."""
    found: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop()
        if child in found:
            continue
        found.append(child)
        pending += children(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def environment_token(pid: int) -> str | None:
    """The command token in ``pid``'s environment, or None (none, or gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    prefix = TOKEN_VARIABLE.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode("ascii", errors="replace")
    return None


class Tracker:
    """Which processes are whose while commands run (thread-safe; one per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}  # token -> the command's pid
        self.baseline: set[int] = set()  # our children before any command ran: not ours
        self.libc: ctypes.CDLL | None = None

    @contextlib.contextmanager
    def command(self, token: str) -> Iterator[Callable[[Callable[[], Started]], Started]]:
        """Track one command for the ``with`` block; yields ``start(launch)``.

        ``start`` calls ``launch()`` (which forks the command and returns an
        object with its ``pid``) and records the pid, both under the lock
        that :meth:`orphans` holds: a child another thread is forking, and
        which has not reached ``exec`` yet (its environment still ours, with
        no token), is never taken for an orphan (see :meth:`orphans`).
        """
        with self.lock:
            if not self.running:
                self.baseline = set(children(os.getpid()))
                self._subreaper(True)
            self.running[token] = 0

        def start(launch: Callable[[], Started]) -> Started:
            with self.lock:
                started = launch()
                self.running[token] = started.pid
                return started

        try:
            yield start
        finally:
            with self.lock:
                del self.running[token]
                if not self.running:
                    self._subreaper(False)

    def _subreaper(self, on: bool) -> None:
        try:
            if self.libc is None:
                self.libc = ctypes.CDLL(None, use_errno=True)
            if self.libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as error:
            logger.debug("cannot make this process a child subreaper: %s", error)

    def orphans(self, token: str) -> list[int]:
        """Our children that are orphans of the command ``token`` (reparented to us).

        Everything is read under the lock that :meth:`command`'s ``start``
        forks under: every command's process is then in ``running``, so a
        child of ours that is none of them and was not there before was
        reparented to us. One without a token (it cleared its environment)
        is taken for the orphan of the only command running, never when
        several run.
        """
        result = []
        with self.lock:
            commands = set(self.running.values())
            alone = len(self.running) == 1
            for child in children(os.getpid()):
                if child in self.baseline or child in commands:
                    continue
                owner = environment_token(child)
                if owner == token or (owner is None and alone):
                    result.append(child)
        return result

    def reap(self, orphans: list[int]) -> None:
        """Collect the exit status of those ``orphans`` (see :meth:`orphans`) that have died."""
        for pid in orphans:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


TRACKER = Tracker()
