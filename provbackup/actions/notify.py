"""``notify``: one stateless run of the customer warnings over the active accounts.

Reads the templates (a bad one: 78 before anything), the daily snapshot
run's status file (a server fault holds every customer message back, see
:mod:`provbackup.customer.server`), the accounts on disk (the disk decides
which accounts are this server's, as for snapshots: two servers on one
directory each warn their own customers), then the directory through the
gates (:func:`provbackup.entry.read_account`,
:func:`provbackup.warnentry.read_warnings`) and each account's record.
The rules decide per account; when more messages are due than ``[notify]
max_warnings_per_run``, none is sent. Never waits on a snapshot run: it
only reads what the last one wrote.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from provbackup.actions.common import search_named
from provbackup.actions.warnscan import warned_account
from provbackup.config import Config
from provbackup.customer.records import RecordError, load_record, record_path
from provbackup.customer.rules import Facts, decide
from provbackup.customer.server import failed_accounts, server_fault
from provbackup.customer.step import (
    FAILED,
    HELD,
    SENT,
    UNDELIVERABLE,
    WOULD,
    MessageResult,
    Planned,
    carry_out,
)
from provbackup.customer.templates import load_templates
from provbackup.entry import LdapEntry, Rules, read_request
from provbackup.errors import (
    EXIT_ENTRIES_FAILED,
    EXIT_OK,
    SIGNAL_EXIT_BASE,
    ConfigError,
    EntryError,
)
from provbackup.model import Verb, parse_timestamp
from provbackup.warnentry import read_warnings

log = logging.getLogger(__name__)

COMMAND = "notify"  # its run files: notify.lock, status-notify.json (provbackup.runfiles)
MAIL_FAILURES_TRIED = 3
ADVICE = (
    "Customer warnings held back or not sent are tried again by the next run.",
    "  provbackup notify --dry-run         what would be sent now",
    "  provbackup show UID                 an account's warnings and their state",
    "  provbackup check                    the snapshot runs the warnings rely on",
    "",
    "See provbackup(1), command notify.",
)


@dataclass(frozen=True)
class Problem:
    """One thing the operator must hear of (the failure mail's item)."""

    dn: str
    uid: str | None
    message: str
    verb: str | None = "notify"
    return_value: int | None = None


@dataclass
class NotifyReport:
    """One notify run: every message's fate, the problems, the exit code."""

    started: datetime
    dry_run: bool
    finished: datetime | None = None
    exit_code: int = EXIT_OK
    error: str | None = None
    server_fault: str | None = None
    guard: str | None = None
    stopped_by_signal: str | None = None
    accounts: int = 0
    messages: list[MessageResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    advice: tuple[str, ...] = ADVICE

    def count(self, outcome: str) -> int:
        """How many messages ended with ``outcome``."""
        return sum(1 for item in self.messages if item.outcome == outcome)

    @property
    def failed(self) -> list[Problem]:
        """What the operator's mail lists: the run's problems and every message not sent."""
        unsent = [
            Problem(item.uid, item.uid, f"{item.template} {item.message}: {item.reason}")
            for item in self.messages
            if item.outcome == FAILED
        ]
        return self.problems + unsent

    def summary(self) -> str:
        """One line: the counts, and why nothing was sent where that is the case."""
        if self.server_fault:
            held = self.count(HELD)
            return f"server fault, {held} customer messages held back: {self.server_fault}"
        if self.guard:
            return self.guard
        if self.dry_run:
            return f"dry run: {self.count(WOULD)} messages would be sent, nothing changed"
        line = (
            f"{self.accounts} accounts, {self.count(SENT)} messages sent, {self.count(FAILED)} "
            f"failed, {self.count(UNDELIVERABLE)} without a usable address"
        )
        return line + (f"; stopped by {self.stopped_by_signal}" if self.stopped_by_signal else "")

    def to_status(self, hostname: str) -> dict[str, object]:
        """The status-file document of this run."""
        return {
            "command": "notify", "hostname": hostname, "pid": os.getpid(),
            "started": self.started.isoformat(),
            "finished": (self.finished or self.started).isoformat(),
            "exit_code": self.exit_code, "error": self.error,
            "server_fault": self.server_fault, "guard": self.guard,
            "stopped_by_signal": self.stopped_by_signal,
            "counts": {name: self.count(name) for name in (SENT, FAILED, UNDELIVERABLE, HELD)},
            "problems": [problem.message for problem in self.problems],
            "messages": [item.as_dict() for item in self.messages],
        }  # fmt: skip


def notify_status_path(config: Config) -> Path:
    """The status file of notify runs (``status-notify.json`` beside ``[run] status_file``)."""
    from provbackup.runfiles import run_files

    return run_files(config, COMMAND).status


def notify(
    config: Config,
    report: NotifyReport,
    *,
    uid: str | None = None,
    hostname: str = "localhost",
    stop_requested: Callable[[], str | None] = lambda: None,
) -> NotifyReport:
    """Run the customer warnings once into ``report``; see the module docstring.

    ``report.started`` is the run's "now" and ``report.dry_run`` whether it
    sends and records anything; ``stop_requested`` returns the name of a
    signal that asked the run to stop: no account is started after it
    (exit 128 + the signal's number). Returns the :class:`NotifyReport`
    (exit 0, or 1 when a message failed, a record was unusable, the server
    fault held messages back or the guard stopped the run). Raises
    ConfigError (78) for a bad template or a missing backup root,
    LdapUnavailableError (69).
    """
    from provbackup.actions.snapshotreport import status_path
    from provbackup.directory import connect
    from provbackup.status import read_status
    from provbackup.work.discover import find_accounts

    templates = load_templates(config.notify.templates, config.notify.language)
    dry_run = report.dry_run
    now = report.started
    status = read_status(status_path(config, "daily"))
    report.server_fault = server_fault(status, now, config.snapshot.stale_slack)
    busy = failed_accounts(status)
    try:
        found = find_accounts(config.backup.root, config.backup.layout)
        here = {paths.account.name for paths in found}
    except EntryError as error:
        raise ConfigError(f"{config.source}: [backup] root: {error}") from None
    rules = Rules.from_config(config)
    planned: list[Planned] = []
    with connect(config.ldap) as directory:
        for entry in search_named(directory, config, dn=None, uid=uid):
            item = _plan(config, rules, entry, here, busy, now, report)
            if item is not None:
                planned.append(item)
    report.accounts = len(planned)
    due = sum(len(item.decision.due) for item in planned if item.deliverable)
    limit = config.notify.max_warnings_per_run
    if report.server_fault or due > limit:
        if not report.server_fault:
            report.guard = (
                f"{due} customer messages due, more than [notify] max_warnings_per_run {limit}: "
                "none sent (a fault of the server or the directory is more likely than that many "
                "customers at once; raise the limit once checked)"
            )
        why = report.server_fault or report.guard or ""
        report.problems.insert(0, Problem("provbackup notify", "-", why))
        for item in planned:
            report.messages += [
                MessageResult(item.account.uid, entry.key, entry.message, entry.template,
                              item.settings.medium, item.settings.address, HELD)
                for entry in item.decision.due
            ]  # fmt: skip
        log.warning("no customer message sent: %s", report.summary())
    else:
        failures = {"mail": 0}

        def may_send(medium: str) -> str | None:
            if medium == "mail" and failures["mail"] >= MAIL_FAILURES_TRIED:
                return f"not tried: the mail server failed {MAIL_FAILURES_TRIED} times this run"
            return None

        for item in planned:
            if stop_requested() is not None:
                report.stopped_by_signal = stop_requested()
                break
            results = carry_out(config, templates, item, now=now, hostname=hostname,
                                dry_run=dry_run, may_send=may_send)  # fmt: skip
            for result in results:
                if result.medium == "mail" and result.outcome == FAILED:
                    failures["mail"] += 1
                elif result.medium == "mail" and result.outcome == SENT:
                    failures["mail"] = 0
            report.messages += results
    if report.server_fault or report.guard or report.failed:
        report.exit_code = EXIT_ENTRIES_FAILED
    if report.stopped_by_signal:
        report.exit_code = SIGNAL_EXIT_BASE + signal.Signals[report.stopped_by_signal].value
    return report


def _plan(
    config: Config,
    rules: Rules,
    entry: LdapEntry,
    here: set[str],
    busy: frozenset[str],
    now: datetime,
    report: NotifyReport,
) -> Planned | None:
    """One entry through the gates and the rules; None when it is not an active account here."""
    account = warned_account(entry, config, rules)
    if account is None or account.uid not in here:
        return None
    request = read_request(entry, config.ldap.date_attribute)
    settings = read_warnings(entry)
    if settings.problems:
        report.reasons[account.uid] = list(settings.problems)
    path = record_path(config, account.uid)
    try:
        record = load_record(path, account.uid, account.entry_uuid)
    except RecordError as error:
        log.error("%s: %s", entry.dn, error)
        report.problems.append(Problem(entry.dn, account.uid, str(error)))
        return None
    dirty = record.added is None
    if record.added is None:
        finished = parse_timestamp(request.state or "") if request.verb is Verb.ADD else None
        record.added = (finished.replace(tzinfo=UTC) if finished else now).isoformat()
    facts = Facts(
        settings, account.quota_bytes, account.retain, datetime.fromisoformat(record.added),
        schedule_known=account.uid not in busy,
    )  # fmt: skip
    decision = decide(facts, record.sent(), now, repeat_days=config.notify.repeat_days,
                      recovery=config.notify.recovery)  # fmt: skip
    return Planned(account, settings, record, path, decision, dirty=dirty)
