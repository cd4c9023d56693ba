"""Child processes of the sandbox: free ports, one-shot commands, slapd's safety net.

A slapd started by the sandbox must never outlive the test run that started
it: :func:`spawn` asks Linux to SIGTERM it when its parent dies (even a
SIGKILLed one) and registers it for an ``atexit`` clean-up when the
interpreter ends without stopping it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class SandboxError(RuntimeError):
    """The sandbox slapd could not be prepared, started, loaded or stopped."""


class PortInUseError(SandboxError):
    """The server could not bind one of its ports."""


# Processes started by the sandbox and not yet stopped: stopped at exit so that
# an interpreter ending without Slapd.stop() leaves no slapd behind.
_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free right now.

    The port is found by binding to port 0 and closing the socket again, so
    another process may take it before it is used; :meth:`Slapd.start` retries
    with new ports when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_command(command: Sequence[str | os.PathLike[str]], *, what: str, **options: Any) -> str:
    """Run a command without a shell and return its combined stdout and stderr.

    Args:
        command: the program and its arguments.
        what: what the command does, for the error message.
        **options: passed to ``subprocess.run``.

    Raises:
        SandboxError: the program cannot be run or exits non-zero (its output included).
    """
    try:
        completed = subprocess.run(
            [str(part) for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
            **options,
        )
    except OSError as error:
        raise SandboxError(f"{what}: cannot run {command[0]}: {error}") from error
    if completed.returncode != 0:
        raise SandboxError(
            f"{what} failed (exit {completed.returncode}): {completed.stdout.strip()}"
        )
    return str(completed.stdout)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send this process SIGTERM when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort only
        return


def terminate(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM ``process``, wait up to ``timeout`` seconds, then SIGKILL it; forget it.

    Returns:
        True when it ended on SIGTERM (or had ended already), False when it was killed.
    """
    ended = True
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            ended = False
    _LIVE_PROCESSES.discard(process)
    return ended


def _stop_leftovers() -> None:
    """Terminate every server the sandbox started and nobody stopped (atexit)."""
    for process in list(_LIVE_PROCESSES):
        terminate(process, 5)


atexit.register(_stop_leftovers)


def spawn(
    command: Sequence[str], log_file: Path, *, die_with_parent: bool = True
) -> subprocess.Popen[bytes]:
    """Start a server in the foreground of a child process, its output appended to ``log_file``.

    Args:
        command: the program and its arguments.
        log_file: receives the child's stdout and stderr.
        die_with_parent: have Linux SIGTERM the child when the thread that
            started it dies (see :func:`die_with_parent`).

    Returns:
        The process, registered for the clean-up at interpreter exit.
    """
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    _LIVE_PROCESSES.add(process)
    return process


def wait_for_bind(
    process: subprocess.Popen[bytes], uri: str, bind_dn: str, password: str, timeout: float
) -> None:
    """Poll a starting slapd until a simple bind on ``uri`` succeeds.

    slapd opens all its listeners before it serves any, so a bind on the
    plain port means ldaps is up too (probing ldaps with a bare TCP connect
    would only log "TLS: can't accept" lines).

    Raises:
        SandboxError: the process exited, or no bind succeeded within ``timeout`` seconds.
    """
    import ldap3
    from ldap3.core.exceptions import LDAPException

    deadline = time.monotonic() + timeout
    delay = 0.005
    last_problem = "no answer"
    while True:
        status = process.poll()
        if status is not None:
            raise SandboxError(f"slapd exited with status {status}")
        try:
            server = ldap3.Server(uri, connect_timeout=1, get_info=ldap3.NONE)
            connection = ldap3.Connection(server, bind_dn, password, receive_timeout=2)
            try:
                if connection.bind():
                    return
                last_problem = f"bind refused: {connection.result.get('description')}"
            finally:
                connection.unbind()
        except (OSError, LDAPException) as error:
            last_problem = str(error) or type(error).__name__
        if time.monotonic() > deadline:
            raise SandboxError(f"no successful bind within {timeout} s: {last_problem}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def log_since(log_file: Path, offset: int) -> str:
    """Return what a server wrote to ``log_file`` after byte ``offset``."""
    try:
        with log_file.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace").strip() or "(nothing)"
    except OSError as error:
        return f"(cannot read {log_file}: {error})"


def start_server(
    command: Sequence[str],
    log_file: Path,
    *,
    probe: tuple[str, str, str],
    timeout: float,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start slapd (:func:`spawn`) and wait until it accepts a bind (:func:`wait_for_bind`).

    Args:
        command: slapd and its arguments (in the foreground: ``-d``).
        log_file: receives slapd's output.
        probe: ``(uri, bind_dn, password)`` of the bind that shows it is ready.
        timeout: seconds to wait for that bind.
        die_with_parent: see :func:`spawn`.

    Returns:
        The running process.

    Raises:
        PortInUseError: slapd could not bind a port (its output included).
        SandboxError: slapd exited or accepted no bind in time (its output included).
    """
    offset = log_file.stat().st_size if log_file.exists() else 0
    started = time.monotonic()
    process = spawn(command, log_file, die_with_parent=die_with_parent)
    logger.debug("sandbox slapd: started pid %s: %s", process.pid, " ".join(command))
    try:
        wait_for_bind(process, *probe, timeout)
    except SandboxError as error:
        terminate(process, 10)
        output = log_since(log_file, offset)
        message = f"sandbox slapd did not start ({error}); its output:\n{output}"
        if "Address already in use" in output:
            raise PortInUseError(message) from None
        raise SandboxError(message) from None
    logger.debug("sandbox slapd: ready after %.3f s", time.monotonic() - started)
    return process
