"""Run an external command (quota, hook, rsnapshot): argv, no shell, bounded in time and output.

A command is over when its process has exited *and* nothing it started is
left; it gets ``timeout`` seconds for both. At the timeout, everything
still running is killed and the call returns, whatever the children do:

- the wait is on the process (a pidfd), never on its output pipes' EOF, so
  a grandchild keeping stdout open cannot hold the run (and the lock);
- the command starts in a session of its own, and while any command runs
  this process is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``):
  a descendant that leaves the session with ``setsid`` and loses its parent
  becomes our child instead of init's, so it is found (through
  ``/proc/<pid>/task/<tid>/children``) and killed;
- every command's environment carries ``PROVBACKUP_COMMAND_ID``, a token of
  its own, which tells whose a reparented process is when several commands
  run at once (snapshot ``--jobs``);
- output is kept up to :data:`MAX_OUTPUT` bytes per stream (the end of it).

A descendant that both leaves the session and clears its environment is
still found while its parent lives (it is in the command's process tree),
and when it is orphaned while only one command runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from provbackup.errors import WorkError
from provbackup.work.descendants import TOKEN_VARIABLE, TRACKER, alive, tree

logger = logging.getLogger(__name__)

TAIL_LINES = 5
TAIL_CHARACTERS = 600
MAX_OUTPUT = 64 * 1024
# Without pidfds (Linux < 5.3), how often the process is polled.
POLL_SECONDS = 0.01
# How often leftover descendants are looked for while the command waits for them.
LEFTOVER_POLL_SECONDS = 0.05
# How long killed processes are given to disappear (a process in
# uninterruptible sleep cannot die before its I/O ends).
KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: exit status and its decoded output (the end of it, bounded)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def status_text(self) -> str:
        """Return ``exited with N`` or ``was killed by signal N``."""
        if self.returncode < 0:
            return f"was killed by signal {-self.returncode}"
        return f"exited with {self.returncode}"


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    return_value: int,
    environment: Mapping[str, str] | None = None,
    merge_output: bool = False,
    stdin_data: bytes | None = None,
) -> CommandResult:
    """Run ``argv`` without a shell, stdin from /dev/null, for at most ``timeout`` seconds.

    ``what`` names the command in messages; ``return_value`` is the
    sstProvisioningReturnValue of the WorkError raised when the command is
    missing, cannot be started, or is not over at the timeout (it is then
    killed with every process it started; the message says which were
    left). ``environment`` replaces ours; ``merge_output`` sends stderr
    into stdout; ``stdin_data`` is given on stdin instead of /dev/null (from
    an unlinked temporary file: a command that does not read it cannot block
    us). A non-zero exit is returned, not raised: the caller words that error.
    """
    argv = tuple(argv)
    token = secrets.token_hex(8)
    env = dict(os.environ if environment is None else environment)
    env[TOKEN_VARIABLE] = token
    logger.debug("running %s: %s", what, argv)
    with TRACKER.command(token) as start, contextlib.ExitStack() as stack:
        stdin: int | IO[bytes] = subprocess.DEVNULL
        if stdin_data is not None:
            stdin = stack.enter_context(tempfile.TemporaryFile())
            stdin.write(stdin_data)
            stdin.flush()
            stdin.seek(0)
        try:
            process = start(
                lambda: subprocess.Popen(
                    argv,
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
            )
        except FileNotFoundError:
            raise WorkError(
                f"{what}: command not found: {argv[0]}", return_value=return_value
            ) from None
        except PermissionError:
            raise WorkError(
                f"{what}: not executable: {argv[0]}", return_value=return_value
            ) from None
        except (OSError, ValueError) as error:
            raise WorkError(
                f"{what}: cannot run {argv[0]}: {error}", return_value=return_value
            ) from None
        run = _Run(process, token, time.monotonic() + timeout)
        try:
            exited = run.wait_for_exit()
            leftovers = run.wait_for_leftovers() if exited else run.descendants()
            described = _describe(leftovers)
        finally:
            # Always, also on an exception or a signal: nothing the command started survives.
            run.kill_everything()
            run.close()
        stdout, stderr = run.output()
    if not exited:
        message = f"{what}: {argv[0]} timed out after {timeout:g} s and was killed"
        if described:
            message += f", with the processes it started ({described})"
    elif leftovers:
        message = (
            f"{what}: {argv[0]} {_status(process.returncode)} but left processes running "
            f"({described}) until the {timeout:g} s timeout; they were killed "
            "(a command must not leave processes behind)"
        )
    else:
        return CommandResult(argv=argv, returncode=process.returncode, stdout=stdout, stderr=stderr)
    if (stdout + stderr).strip():
        message += f"; its output: {tail(stdout + stderr)}"
    raise WorkError(message, return_value=return_value)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """Return the last non-empty ``lines`` of ``text`` on one line, joined by `` | ``."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept) or "(no output)"
    if len(joined) > TAIL_CHARACTERS:
        joined = "..." + joined[-TAIL_CHARACTERS:]
    return joined


def _status(returncode: int | None) -> str:
    if returncode is None:
        return "ended"
    if returncode < 0:
        return f"was killed by signal {-returncode}"
    return f"exited with {returncode}"


def _describe(pids: list[int]) -> str:
    names = []
    for pid in pids[:5]:
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
                names.append(f"pid {pid} {handle.read().strip()}")
        except OSError:
            names.append(f"pid {pid}")
    if len(pids) > 5:
        names.append(f"{len(pids) - 5} more")
    return ", ".join(names)


class _Run:
    """One started command: its output, its process and what it started."""

    def __init__(self, process: subprocess.Popen[bytes], token: str, deadline: float) -> None:
        self.process = process
        self.token = token
        self.deadline = deadline
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.buffers: dict[int, bytearray] = {}
        self.selector = selectors.DefaultSelector()
        for stream, buffer in ((process.stdout, self.stdout), (process.stderr, self.stderr)):
            if stream is not None:
                os.set_blocking(stream.fileno(), False)
                self.buffers[stream.fileno()] = buffer
                self.selector.register(stream.fileno(), selectors.EVENT_READ)
        self.pidfd = -1
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(process.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ)

    def _exited(self) -> bool:
        # WNOWAIT: the process stays a zombie, so its pid and process group
        # cannot be reused by anyone before we are done with them.
        try:
            result = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return result is not None

    def _read(self, timeout: float) -> None:
        """Read what the pipes have, waiting at most ``timeout`` seconds for something."""
        wait = timeout if self.pidfd >= 0 else min(timeout, POLL_SECONDS)
        for key, _ in self.selector.select(max(wait, 0)):
            if key.fd == self.pidfd:
                continue
            self._drain(key.fd)

    def _drain(self, fd: int) -> None:
        buffer = self.buffers[fd]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(fd)
                return
            buffer += chunk
            if len(buffer) > MAX_OUTPUT:
                del buffer[: len(buffer) - MAX_OUTPUT]

    def wait_for_exit(self) -> bool:
        """Read output until the process exits (True) or the deadline passes (False)."""
        while not self._exited():
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._read(remaining)
        return True

    def wait_for_leftovers(self) -> list[int]:
        """After the exit: wait until nothing the command started runs; return what is left."""
        while True:
            for fd in list(self.buffers):
                if fd in self.selector.get_map():
                    self._drain(fd)
            TRACKER.reap(TRACKER.orphans(self.token))
            leftovers = self.descendants()
            if not leftovers or time.monotonic() >= self.deadline:
                return leftovers
            self._read(min(LEFTOVER_POLL_SECONDS, self.deadline - time.monotonic()))

    def descendants(self) -> list[int]:
        """Every live process the command started (its tree, and orphans carrying its token)."""
        found = tree(self.process.pid) if not self._exited() else []
        for orphan in TRACKER.orphans(self.token):
            found += [orphan, *tree(orphan)]
        return [pid for pid in dict.fromkeys(found) if pid != self.process.pid and alive(pid)]

    def kill_everything(self) -> None:
        """SIGKILL the command and all it started, until none is left; reap them."""
        give_up = time.monotonic() + KILL_WAIT_SECONDS
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        while True:
            targets = self.descendants()
            if not self._exited():
                targets.append(self.process.pid)
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            TRACKER.reap(TRACKER.orphans(self.token))
            if not targets:
                break
            if time.monotonic() >= give_up:
                logger.warning("processes %s would not die; left behind", targets)
                break
            time.sleep(0.01)
        self.process.wait()

    def output(self) -> tuple[str, str]:
        """The collected stdout and stderr (the end of each), decoded."""
        return self.stdout.decode("utf-8", errors="replace"), self.stderr.decode(
            "utf-8", errors="replace"
        )

    def close(self) -> None:
        """Read what is left without waiting; close the pipes, the selector and the pidfd."""
        for fd in list(self.buffers):
            if fd in self.selector.get_map():
                self._drain(fd)
        self.selector.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
