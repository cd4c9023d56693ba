"""What is due for one account, given its settings, its record and the time: pure.

A **condition** is one thing wrong right now: a client host whose last
successful backup is overdue (``schedule:<host>``), an account that never
had a backup and whose first one is overdue (``schedule:``), usage at or
above the warning level (``quota``). :func:`decide` compares the conditions
with what the account's record says was sent, and returns what to send:

- a **warning** when a condition starts (nothing confirmed sent for it), and
  again once ``repeat_days`` days (0: never again) have passed since the
  last one confirmed sent;
- a **recovery** ("all good again") when a condition that was warned about
  is over: the host backed up again, the first backup came, usage fell
  below the level (only with ``recovery`` on; else it is just forgotten);
- nothing, and the record forgotten, where the customer turned the kind off
  (sstBackupWarningOn FALSE, both criteria 0, level 0, not selected in
  sstNotificationWarning), or a host no longer reports at all;
- nothing, and the record kept, where the facts are not known (a server
  fault, usage not written yet): a server fault never makes a warning, nor
  an "all good again".

Schedule, per host: overdue when ``warning_days`` > 0 and the backup is at
least that many days old (exactly N days: overdue), or ``warning_numbers``
> 0 and at least that many scheduled backups were missed, counted against
the account's interval (one backup per day when it keeps daily or hourly
snapshots; else its smallest interval: weekly 7, monthly 31, yearly 366
days): floor(age / period) >= N. Without any backup, the age counts from
when the account was added. Quota: ``used * 100 >= level * quota`` (the
level exactly reached warns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provbackup.warnentry import WarnSettings

DAY = timedelta(days=1)
PERIODS = {"hourly": DAY, "daily": DAY, "weekly": 7 * DAY, "monthly": 31 * DAY,
           "yearly": 366 * DAY}  # fmt: skip
NEVER = "schedule:"
QUOTA = "quota"

WARNING = "warning"
RECOVERY = "recovery"


@dataclass(frozen=True)
class Facts:
    """What the rules need of an account, all validated.

    ``added``: when the account was added (the age of a never-backed-up
    account counts from it); ``schedule_known``/``quota_known``: False when
    the figures cannot be trusted this run (a server fault; usage never
    written), so nothing is decided for that kind.
    """

    settings: WarnSettings
    quota_bytes: int | None
    retain: tuple[tuple[str, int], ...]
    added: datetime
    schedule_known: bool = True


@dataclass(frozen=True)
class Condition:
    """One condition true now: its key and the figures its message is filled with."""

    key: str
    kind: str
    host: str | None = None
    last_backup: datetime | None = None
    days: int = 0
    missed: int = 0
    used: int | None = None
    quota: int | None = None
    percent: int | None = None

    @property
    def template(self) -> str:
        """The template kind of its warning: ``schedule``, ``no-backup`` or ``quota``."""
        if self.kind == QUOTA:
            return "quota"
        return "schedule" if self.host else "no-backup"


@dataclass(frozen=True)
class Sent:
    """What a record says of a condition: when a message was last confirmed sent."""

    sent: datetime | None = None


@dataclass(frozen=True)
class Due:
    """One message to send: a warning (``condition`` set) or a recovery of ``key``."""

    message: str
    key: str
    condition: Condition | None = None
    repeat: bool = False

    @property
    def kind(self) -> str:
        """``schedule`` or ``quota``."""
        return kind_of(self.key)

    @property
    def template(self) -> str:
        """The template kind: schedule, no-backup, quota, schedule-ok, quota-ok."""
        if self.condition is not None:
            return self.condition.template
        return f"{self.kind}-ok"

    @property
    def host(self) -> str | None:
        """The client host of a schedule key (None for ``schedule:`` and ``quota``)."""
        return host_of(self.key)


@dataclass(frozen=True)
class Decision:
    """The verdict for one account: what to send, what to forget, what is true now."""

    due: tuple[Due, ...] = ()
    forget: tuple[str, ...] = ()
    current: tuple[Condition, ...] = ()
    unknown: tuple[str, ...] = field(default=())


def kind_of(key: str) -> str:
    """``schedule`` or ``quota`` for a condition key."""
    return QUOTA if key == QUOTA else "schedule"


def host_of(key: str) -> str | None:
    """The host of a ``schedule:<host>`` key, None otherwise."""
    if key == QUOTA:
        return None
    return key.partition(":")[2] or None


def schedule_period(retain: tuple[tuple[str, int], ...]) -> timedelta | None:
    """The time between two scheduled backups of an account with ``retain``; None: none kept."""
    periods = [PERIODS[interval] for interval, count in retain if count > 0 and interval in PERIODS]
    return min(periods, default=None)


def overdue(settings: WarnSettings, period: timedelta | None, age: timedelta) -> bool:
    """True when a backup ``age`` old is overdue under the days and numbers criteria."""
    if age < timedelta(0):
        return False  # a time in the future (a client's clock): not overdue
    if settings.warning_days > 0 and age >= settings.warning_days * DAY:
        return True
    return bool(
        settings.warning_numbers > 0 and period is not None
        and age // period >= settings.warning_numbers
    )  # fmt: skip


def schedule_conditions(facts: Facts, now: datetime) -> tuple[dict[str, Condition], set[str]]:
    """The overdue schedule conditions by key, and the keys known good now.

    Call only when the schedule kind is on (see :func:`schedule_on`).
    """
    settings = facts.settings
    period = schedule_period(facts.retain)
    bad: dict[str, Condition] = {}
    good: set[str] = set()

    def condition(key: str, host: str | None, last: datetime | None, age: timedelta) -> None:
        if overdue(settings, period, age):
            missed = age // period if period else 0
            bad[key] = Condition(key, "schedule", host, last, age // DAY, missed)
        else:
            good.add(key)

    if not settings.last_backups:
        condition(NEVER, None, None, now - facts.added)
        return bad, good
    good.add(NEVER)
    for host, last in settings.last_backups:
        condition(f"schedule:{host}", host, last, now - last)
    return bad, good


def schedule_on(settings: WarnSettings) -> bool:
    """True when the customer wants schedule warnings and a criterion is above 0."""
    return settings.schedule_on and (settings.warning_days > 0 or settings.warning_numbers > 0)


def quota_on(settings: WarnSettings) -> bool:
    """True when the customer wants quota warnings at a level above 0."""
    return settings.quota_on and settings.level > 0


def quota_conditions(facts: Facts) -> tuple[dict[str, Condition], set[str]] | None:
    """The quota condition (or the key known good); None when usage or quota is unknown."""
    used, quota = facts.settings.used_bytes, facts.quota_bytes
    if used is None or quota is None or quota <= 0:
        return None
    percent = used * 100 // quota
    if used * 100 >= facts.settings.level * quota:
        return {QUOTA: Condition(QUOTA, QUOTA, used=used, quota=quota, percent=percent)}, set()
    return {}, {QUOTA}


def decide(
    facts: Facts,
    recorded: Mapping[str, Sent],
    now: datetime,
    *,
    repeat_days: int,
    recovery: bool,
) -> Decision:
    """What to send for one account now; see the module docstring.

    Takes the account's :class:`Facts`, its record (condition key →
    :class:`Sent`), the aware current time, ``repeat_days`` (0: a warning
    is sent once per condition) and whether recoveries are sent.
    Returns the :class:`Decision`.
    """
    due: list[Due] = []
    forget: list[str] = []
    current: list[Condition] = []
    unknown: list[str] = []
    for kind in ("schedule", QUOTA):
        keys = [key for key in recorded if kind_of(key) == kind]
        verdict: tuple[dict[str, Condition], set[str]] | None
        if kind == "schedule":
            if not schedule_on(facts.settings):
                forget += keys
                continue
            verdict = schedule_conditions(facts, now) if facts.schedule_known else None
        else:
            if not quota_on(facts.settings):
                forget += keys
                continue
            verdict = quota_conditions(facts)
        if verdict is None:
            unknown.append(kind)
            continue
        bad, good = verdict
        current += bad.values()
        for key, condition in bad.items():
            last = recorded.get(key, Sent()).sent
            if last is None:
                due.append(Due(WARNING, key, condition))
            elif repeat_days > 0 and now - last >= repeat_days * DAY:
                due.append(Due(WARNING, key, condition, repeat=True))
        for key in keys:
            if key in bad:
                continue
            if recovery and key in good and recorded[key].sent is not None:
                due.append(Due(RECOVERY, key))
            else:
                forget.append(key)
    return Decision(tuple(due), tuple(forget), tuple(current), tuple(unknown))
