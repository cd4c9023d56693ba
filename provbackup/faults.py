"""Lasting faults: reported when they start, when they change, and at a bounded rate.

The timer runs ``process`` every 15 seconds. Were every run that meets the
same fault (LDAP down for an hour, the backup filesystem unmounted) to end
with its error exit, the unit would fail and fire ``OnFailure=``, and the
cron line would mail, 240 times an hour. So the command layer records the
fault that ended a run in ``last-fault.json`` beside the status file, and a
run ending with the *same* fault (same exit code and message) less than
``[run] fault_report_interval`` seconds after it was last reported exits
:data:`~provbackup.errors.EXIT_FAULT_REPEATED` (79) instead, with the
fault logged as a warning. The unit counts 79 as success and the cron line
drops it. The status file is written exactly as before, with the real exit
code and error, so ``check`` stays CRITICAL on every run while it lasts.
A run that ends without a fault removes the record and logs that the fault
is over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from provbackup.jsonfile import write_json

log = logging.getLogger(__name__)

FAULT_FILE_NAME = "last-fault.json"


@dataclass(frozen=True)
class Fault:
    """A fault that ended runs: its text, when first seen and last reported, how many runs."""

    text: str
    first_seen: str
    last_reported: str
    runs: int


def fault_file(status_file: Path) -> Path:
    """The fault record that goes with ``status_file``: ``last-fault.json`` beside it."""
    return status_file.parent / FAULT_FILE_NAME


def read_fault(path: Path) -> Fault | None:
    """Return the recorded fault, or None when there is none or the file is unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return Fault(
            text=str(data["text"]),
            first_seen=str(data["first_seen"]),
            last_reported=str(data["last_reported"]),
            runs=int(data["runs"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def note_fault(path: Path, text: str, now: datetime, interval: int) -> tuple[bool, Fault]:
    """Record that a run ended with the fault ``text`` at ``now`` (aware).

    Returns (report, record): ``report`` is True when the fault must be
    reported with its own exit code: nothing was recorded, the recorded
    fault differs, it was last reported ``interval`` seconds ago or more,
    ``interval`` is 0, or the record cannot be written (better one report
    too many than a fault nobody hears of). Raises nothing.
    """
    stamp = now.isoformat(timespec="seconds")
    previous = read_fault(path)
    if previous is None or previous.text != text:
        record = Fault(text, stamp, stamp, 1)
        report = True
    else:
        report = interval == 0 or _seconds_since(previous.last_reported, now) >= interval
        record = Fault(
            text,
            previous.first_seen,
            stamp if report else previous.last_reported,
            previous.runs + 1,
        )
    if not _write(path, record):
        report = True
    return report, record


def clear_fault(path: Path) -> Fault | None:
    """Remove the fault record; return the fault it held (None: there was none)."""
    previous = read_fault(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return previous


def _seconds_since(stamp: str, now: datetime) -> float:
    """Seconds from the ISO time ``stamp`` to ``now``; infinite when unreadable or ahead."""
    try:
        seconds = (now - datetime.fromisoformat(stamp)).total_seconds()
    except (ValueError, TypeError):  # malformed, or without a zone
        return float("inf")
    return seconds if seconds >= 0 else float("inf")


def _write(path: Path, record: Fault) -> bool:
    """Replace ``path`` with ``record`` atomically (mode 0600); False when that failed."""
    return write_json(path, asdict(record), 0o600, "the fault record")
