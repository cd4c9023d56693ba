"""Run an external command (quota, hook, rsnapshot): argv, no shell, with a timeout."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provbackup.errors import WorkError

logger = logging.getLogger(__name__)

TAIL_LINES = 5
TAIL_CHARACTERS = 600


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: exit status and its decoded output."""

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
) -> CommandResult:
    """Run ``argv`` without a shell, stdin from /dev/null, and wait at most ``timeout`` seconds.

    ``what`` names the command in messages; ``return_value`` is the
    sstProvisioningReturnValue of the WorkError raised when the command is
    missing, cannot be started or times out (the whole process group is
    killed then). ``merge_output`` sends stderr into stdout. A non-zero
    exit is returned, not raised: the caller words that error.
    """
    argv = tuple(argv)
    logger.debug("running %s: %s", what, argv)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
            env=None if environment is None else dict(environment),
            # A session of its own: a timeout kills the command and everything it started.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise WorkError(
            f"{what}: command not found: {argv[0]}", return_value=return_value
        ) from None
    except PermissionError:
        raise WorkError(f"{what}: not executable: {argv[0]}", return_value=return_value) from None
    except (OSError, ValueError) as error:
        raise WorkError(
            f"{what}: cannot run {argv[0]}: {error}", return_value=return_value
        ) from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise WorkError(
            f"{what}: {argv[0]} timed out after {timeout:g} s and was killed",
            return_value=return_value,
        ) from None
    except BaseException:
        _kill_group(process)
        process.wait()
        raise
    return CommandResult(
        argv=argv,
        returncode=process.returncode,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=(stderr or b"").decode("utf-8", errors="replace"),
    )


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """Return the last non-empty ``lines`` of ``text`` on one line, joined by `` | ``."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept) or "(no output)"
    if len(joined) > TAIL_CHARACTERS:
        joined = "..." + joined[-TAIL_CHARACTERS:]
    return joined


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
