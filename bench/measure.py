"""Run one command as a child process and measure its wall time and peak RSS.

The peak RSS is GNU time's ``%M`` (``/usr/bin/time``, Debian package
``time``): the largest resident set of the command or of any process it
waited for (an ``rsnapshot configtest`` it started). It is not read from
this process's own ``wait4``/``RUSAGE_CHILDREN``: Linux starts a child's
``ru_maxrss`` at the resident size of the process that forked it (Python
forks with vfork, so that is the whole benchmark, which holds generated
directories), and every figure would carry the benchmark's own memory.
GNU time is a small C program: ``/usr/bin/true`` under it reports under
1 MB, against 200 MB through ``wait4`` once the benchmark held 200 MB.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class Sample:
    """One measured run: wall seconds, peak RSS in MB (10**6 bytes), CPU seconds, exit code.

    ``cpu_seconds`` is user plus system time of the command and what it
    waited for: less disturbed than wall time by other work on the machine.
    """

    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    exit_code: int


class CommandFailed(RuntimeError):
    """A measured command exited with an unexpected code."""


def run_measured(
    argv: Sequence[str],
    *,
    stdout: Path | None = None,
    stderr: Path | None = None,
    environment: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    expected_exit: int | None = 0,
) -> Sample:
    """Run ``argv`` to its end and return its :class:`Sample`.

    Takes the command, files for its stdout and stderr (default: discarded),
    its environment, a timeout after which it is killed, and the exit code
    expected (None: any). Output goes to files, not pipes, so the benchmark
    never reads while measuring. The wall time includes GNU time's own
    start (about a millisecond). Raises CommandFailed naming the command and
    the end of its stderr when the exit code differs or it times out.
    """
    with (
        tempfile.NamedTemporaryFile("r", prefix="bench-rss-", encoding="ascii") as report,
        open(stdout or os.devnull, "wb") as out,
        open(stderr or os.devnull, "wb") as err,
    ):
        # GNU time exits with the command's own exit code; %M is in KiB.
        command = [str(GNU_TIME), "-f", "%M %U %S", "-o", report.name, *argv]
        started = time.perf_counter()
        # Its own process group, so the watchdog stops the command, not just GNU time.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=environment,
            start_new_session=True,
        )  # fmt: skip
        # A watchdog thread, not wait(timeout): Popen.wait with a timeout polls
        # with sleeps of up to 50 ms, which would round every figure up to that.
        watchdog = threading.Timer(timeout, _kill_group, [process.pid])
        watchdog.start()
        try:
            process.wait()
        finally:
            watchdog.cancel()
        seconds = time.perf_counter() - started
        text = report.read().strip()
    if expected_exit is not None and process.returncode != expected_exit:
        detail = ""
        if stderr is not None and stderr.exists():
            detail = stderr.read_text(errors="replace")[-2000:]
        # GNU time reports a command killed by a signal (the watchdog's) as 128 + signal.
        raise CommandFailed(
            f"{' '.join(argv)} exited {process.returncode}, expected {expected_exit} "
            f"(timeout {timeout} s):\n{detail}"
        )
    # The last line is "%M %U %S"; a command killed by a signal has "Command terminated" first.
    peak_kib, user, system = text.splitlines()[-1].split()
    return Sample(
        seconds, int(peak_kib) * 1024 / 1e6, float(user) + float(system), process.returncode
    )


def _kill_group(group: int) -> None:
    """SIGKILL the process group ``group`` (a measured command that overran its timeout)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def check_gnu_time() -> None:
    """Raise CommandFailed unless GNU time is installed (``apt-get install time``)."""
    if not GNU_TIME.is_file():
        raise CommandFailed(f"{GNU_TIME} is missing: install the Debian package 'time'")


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (rounded to 4 decimals, for the table and the JSON)."""
    return round(statistics.median(values), 4)
