"""The customer-warning part of ``check``: what the last ``notify`` run says.

CRITICAL when the last run held every customer message back (a server
fault, the ``max_warnings_per_run`` guard) or ended with an error (69, 70,
78); WARNING when messages could not be sent (the mail server down, the
sms command failing) or a record was unusable. Nothing while notify never
ran (it may not be used).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from provbackup.errors import EXIT_ENTRIES_FAILED, EXIT_OK

if TYPE_CHECKING:
    from provbackup.actions.verdict import CheckResult
    from provbackup.config import Config


def notify_findings(status: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(critical, warnings) of the last notify run's status document (None: never ran)."""
    if status is None:
        return [], []
    code = status.get("exit_code")
    counts = status.get("counts") or {}
    if status.get("server_fault"):
        return [f"customer warnings held back: {status['server_fault']}"], []
    if status.get("guard"):
        return [f"customer warnings held back: {status['guard']}"], []
    if status.get("stopped_by_signal"):
        return [], [f"last run stopped by {status['stopped_by_signal']}"]
    if code not in (EXIT_OK, EXIT_ENTRIES_FAILED):
        return [f"last run exited {code}: {status.get('error') or 'no reason recorded'}"], []
    warnings = []
    failed = counts.get("failed", 0)
    if failed:
        warnings.append(f"{failed} customer warnings not sent (tried again by the next run)")
    for problem in status.get("problems") or []:
        warnings.append(str(problem))
    return [], warnings


def with_notify(result: CheckResult, config: Config) -> CheckResult:
    """``result`` with the last notify run's findings (``notify:`` parts) added."""
    from provbackup.actions.notify import notify_status_path
    from provbackup.actions.verdict import CheckResult, CheckState
    from provbackup.status import read_status

    critical, warnings = notify_findings(read_status(notify_status_path(config)))
    if not critical and not warnings:
        return result
    state = result.state
    if critical:
        state = CheckState.CRITICAL
    elif state == CheckState.OK:
        state = CheckState.WARNING
    parts = [result.summary, *(f"notify: {line}" for line in [*critical, *warnings])]
    return CheckResult(state, "; ".join(parts), result.perfdata)
