"""The follower's health file, and ``check``'s reading of it.

``provbackup watch`` keeps ``watch.json`` beside ``[run] status_file``
(the batches it runs write the ``process`` status file as usual): whether
it is connected and to which URI, since when, the last event, the events
and batches so far, the lag of the last batch (from the first event that
asked for it to the batch's end) and since when due work waits. It is
written when something changes and every :data:`HEARTBEAT_SECONDS`, and
removed when the follower ends by a signal (a stopped follower is no
fault). No other command needs it: it holds nothing ``process`` uses.
Imports nothing of python-ldap.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provbackup.jsonfile import write_json

if TYPE_CHECKING:
    from provbackup.actions.verdict import CheckResult

HEALTH_MODE = 0o644

HEARTBEAT_SECONDS = 300
# check warns when the follower has been disconnected, or due work has waited, this long.
DISCONNECTED_WARNING_SECONDS = 120
PENDING_WARNING_SECONDS = 300


def health_file(status_file: Path) -> Path:
    """The follower's health file: ``watch.json`` beside ``[run] status_file``."""
    return status_file.with_name("watch.json")


@dataclass
class Health:
    """What the health file holds (times are ISO 8601 UTC strings or None)."""

    pid: int
    started: str
    updated: str = ""
    connected: bool = False
    uri: str | None = None
    since: str | None = None
    error: str | None = None
    last_event: str | None = None
    events: int = 0
    reconnects: int = 0
    batches: int = 0
    last_batch: str | None = None
    last_batch_exit: int | None = None
    lag_seconds: float | None = None
    pending_since: str | None = None

    def write(self, path: Path, now: datetime) -> None:
        """Write the file atomically at ``now``."""
        self.updated = now.isoformat()
        write_json(path, asdict(self), HEALTH_MODE, "the follower's health file")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(value: Any, now: datetime) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return (now - datetime.fromisoformat(value)).total_seconds()
    except (ValueError, TypeError):
        return None


def evaluate_health(
    document: dict[str, Any] | None, now: datetime
) -> tuple[bool, str, float | None]:
    """Read the follower's health document at ``now`` (aware).

    Returns (healthy, a short text for check's line, the last batch's lag
    in seconds or None). ``document`` None (no file): not asked for here.
    """
    if document is None:
        return True, "", None
    lag = document.get("lag_seconds")
    lag = float(lag) if isinstance(lag, int | float) else None
    pid = document.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False, f"watch: the follower (pid {pid}) is not running", lag
    stale = _age(document.get("updated"), now)
    if stale is None or stale > 3 * HEARTBEAT_SECONDS:
        return False, "watch: the follower's health file is not being updated", lag
    if not document.get("connected"):
        down = _age(document.get("since") or document.get("started"), now)
        error = document.get("error") or "not connected"
        if down is None or down > DISCONNECTED_WARNING_SECONDS:
            return False, f"watch: disconnected for {int(down or 0)} s: {error}", lag
        return True, "watch: reconnecting", lag
    waiting = _age(document.get("pending_since"), now)
    if waiting is not None and waiting > PENDING_WARNING_SECONDS:
        return False, f"watch: due work has waited {int(waiting)} s", lag
    last = document.get("last_event") or "none yet"
    return True, f"watch: connected to {document.get('uri')}, last event {last}", lag


def read_health(status_file: Path) -> dict[str, Any] | None:
    """The health document beside ``status_file``, or None when there is none (or unreadable)."""
    path = health_file(status_file)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"pid": None}
    return document if isinstance(document, dict) else {"pid": None}


def with_follower(
    result: CheckResult, document: dict[str, Any] | None, now: datetime
) -> CheckResult:
    """Add the follower's health to ``check``'s verdict (nothing without a health file).

    An unhealthy follower (not running, not updating, disconnected for
    long, due work waiting) turns OK into WARNING: the timer still works.
    The perfdata gain ``watch_lag`` (seconds, the last batch's).
    """
    from provbackup.actions.verdict import CheckResult, CheckState

    if document is None:
        return result
    healthy, text, lag = evaluate_health(document, now)
    state = result.state
    if not healthy and state == CheckState.OK:
        state = CheckState.WARNING
    perfdata = dict(result.perfdata)
    if lag is not None:
        perfdata["watch_lag"] = f"{lag:g}s"
    return CheckResult(state, f"{result.summary}; {text}", perfdata)
