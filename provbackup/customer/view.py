"""What ``show`` says about an account's customer warnings: settings, reasons, each state."""

from __future__ import annotations

from typing import Any

from provbackup.config import Config
from provbackup.customer.records import read_record_quietly
from provbackup.ldapentry import LdapEntry
from provbackup.warnentry import read_warnings


def warnings_view(entry: LdapEntry, uid: str | None, config: Config) -> dict[str, Any]:
    """The warning settings of ``entry``, why a warning cannot go out, and each recorded state.

    Each condition (``schedule:<host>``, ``schedule:`` for no backup yet,
    ``quota``) shows since when it holds, when and to whom a warning was last
    sent (and how many times), an attempt never confirmed, and the last error.
    """
    settings = read_warnings(entry)
    view: dict[str, Any] = {
        "schedule": "on" if settings.schedule_on else "off",
        "warning days": settings.warning_days,
        "warning numbers": settings.warning_numbers,
        "quota": f"on at {settings.level}%" if settings.quota_on and settings.level else "off",
        "medium": settings.medium,
        "address": settings.address,
        "language": settings.language,
        "last backups": [f"{host} {moment.isoformat()}" for host, moment in settings.last_backups],
    }
    if settings.problems:
        view["problem"] = "; ".join(settings.problems)
    record = read_record_quietly(config, uid) if uid else None
    states: dict[str, str] = {}
    for key, state in sorted((record.conditions if record else {}).items()):
        parts = [f"since {state.since}"]
        if state.sent:
            parts.append(f"sent {state.sent} to {state.to} ({state.count}x)")
        else:
            parts.append("not sent yet")
        if state.attempt:
            parts.append(f"{state.attempt_message} attempted {state.attempt}, not confirmed")
        if state.error:
            parts.append(f"error: {state.error}")
        states[key] = "; ".join(parts)
    view["states"] = states or "none (no warning due)"
    return view
