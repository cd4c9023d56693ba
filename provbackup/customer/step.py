"""The send/record step: carry out one account's decision, recording each message around it.

For each message due (see :mod:`provbackup.customer.rules`): fill its
template in the customer's language, note the attempt in the account's
record (atomically; a record that cannot be written means the message is
not sent), send it, and record the outcome: sent (when, to whom, how many
times) or why not. A recovery confirmed sent removes the condition from the
record. See :mod:`provbackup.customer.records` for what a SIGKILL between
sending and recording does (at most one duplicate, never a lost warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from provbackup.config import Config
from provbackup.customer.deliver import Outgoing, send
from provbackup.customer.records import AccountRecord, ConditionRecord, save_record
from provbackup.customer.rules import NEVER, RECOVERY, Decision, Due, host_of
from provbackup.customer.templates import Templates
from provbackup.model import Account
from provbackup.warnentry import WarnSettings

log = logging.getLogger(__name__)

SENT = "sent"
FAILED = "failed"
UNDELIVERABLE = "undeliverable"
WOULD = "would"
HELD = "held"


@dataclass
class Planned:
    """One account ready for the step: its facts, its record and the rules' decision."""

    account: Account
    settings: WarnSettings
    record: AccountRecord
    path: Path
    decision: Decision
    dirty: bool = False  # the record gained something (when the account was added) to save

    @property
    def deliverable(self) -> bool:
        """True when the account has a medium and an address (else see its problems)."""
        return self.settings.medium is not None and self.settings.address is not None


@dataclass(frozen=True)
class MessageResult:
    """What became of one message: sent, failed, undeliverable, would (dry run) or held."""

    uid: str
    key: str
    message: str
    template: str
    medium: str | None
    to: str | None
    outcome: str
    reason: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The message as the status file holds it."""
        return {
            "uid": self.uid, "key": self.key, "message": self.message, "template": self.template,
            "medium": self.medium, "to": self.to, "outcome": self.outcome, "reason": self.reason,
        }  # fmt: skip


def size_text(count: int | None) -> str:
    """Bytes as the customer reads them: ``12.3 GiB``, ``512.0 MiB``; ``-`` when unknown."""
    if count is None:
        return "-"
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    return f"{count / (1 << 20):.1f} MiB"


def time_text(moment: datetime | None) -> str:
    """A time as the customer reads it: ``2026-11-30 08:15 UTC``; ``-`` when unknown."""
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def values_for(planned: Planned, due: Due, added: datetime) -> dict[str, str]:
    """The placeholders of ``due``'s template (every one, ``-`` where it does not apply)."""
    settings, account = planned.settings, planned.account
    hosts = dict(settings.last_backups)
    host = host_of(due.key)
    if host is None and due.key == NEVER and hosts:
        host = min(hosts, key=lambda name: hosts[name])  # the first host to report
    condition = due.condition
    used, quota = settings.used_bytes, account.quota_bytes
    percent = "-" if used is None or not quota else str(used * 100 // quota)
    return {
        "uid": account.uid,
        "host": host or "-",
        "last_backup": time_text(hosts.get(host) if host else None),
        "days": str(condition.days) if condition else "-",
        "missed": str(condition.missed) if condition else "-",
        "usage": size_text(used),
        "quota": size_text(quota),
        "percent": percent,
        "level": str(settings.level),
        "added": time_text(added),
    }


def carry_out(
    config: Config,
    templates: Templates,
    planned: Planned,
    *,
    now: datetime,
    hostname: str,
    dry_run: bool,
    may_send: Callable[[str], str | None],
) -> list[MessageResult]:
    """Send and record every message due for ``planned``; return what became of each.

    ``may_send(medium)`` returns why that medium is not tried any more this
    run (the mail server failed repeatedly), or None. A dry run only
    returns what would be sent. The record is saved when anything changed.
    """
    record, settings, uid = planned.record, planned.settings, planned.account.uid
    added = datetime.fromisoformat(record.added) if record.added else now
    results: list[MessageResult] = []
    changed = planned.dirty or bool(planned.decision.forget)
    for key in planned.decision.forget:
        record.conditions.pop(key, None)
    language = templates.pick(settings.language)
    for due in planned.decision.due:
        template = templates.get(settings.language, due.template)
        subject, body = template.fill(values_for(planned, due, added))

        def result(outcome: str, reason: str | None = None, *, item: Due = due) -> MessageResult:
            return MessageResult(uid, item.key, item.message, item.template, settings.medium,
                                 settings.address, outcome, reason)  # fmt: skip

        if dry_run:
            why = None if planned.deliverable else "; ".join(settings.problems) or "no address"
            results.append(result(WOULD, why))
            continue
        state = record.conditions.setdefault(due.key, ConditionRecord(since=now.isoformat()))
        changed = True
        if settings.medium is None or settings.address is None:
            state.error = "; ".join(settings.problems) or "no address"
            results.append(result(UNDELIVERABLE, state.error))
            continue
        held = may_send(settings.medium)
        if held is not None:
            state.error = held
            results.append(result(FAILED, held))
            continue
        state.attempt, state.attempt_message = now.isoformat(), due.message
        if not save_record(planned.path, record):
            state.attempt = state.attempt_message = None
            results.append(result(FAILED, "the attempt could not be recorded: not sent"))
            continue
        outgoing = Outgoing(settings.medium, settings.address, language, subject, body)
        error = send(config, outgoing, hostname)
        state.attempt = state.attempt_message = None
        record.note(now, due.key, due.message, settings.address, error or SENT)
        if error is not None:
            state.error = error
            results.append(result(FAILED, error))
        else:
            log.info("%s: %s %s sent to %s", uid, due.template, due.message, settings.address)
            if due.message == RECOVERY:
                del record.conditions[due.key]
            else:
                state.sent, state.count, state.error = now.isoformat(), state.count + 1, None
                state.to, state.medium = settings.address, settings.medium
            results.append(result(SENT))
        if not save_record(planned.path, record):
            reason = error or "sent, but not recorded: it is sent again by the next run"
            results[-1] = result(FAILED, reason)
    if changed and not dry_run and not save_record(planned.path, record):
        log.error("%s: the warning record could not be written", uid)
    return results
