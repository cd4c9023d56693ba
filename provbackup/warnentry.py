"""The gate for the customer-warning attributes: read once into a typed :class:`WarnSettings`.

What ``notify`` needs of an account entry beyond what :mod:`provbackup.entry`
reads for the work: the stoney ``sstBackup`` warning attributes, the
addresses, the language and the figures the snapshot runner wrote back.
:func:`read_warnings` never raises: every unusable value becomes one reason
in ``WarnSettings.faults`` (naming attribute and value, shown by ``show``,
``notify --dry-run`` and ``scan --warnings``) and the criterion it feeds is off. An address is
used only when it is exactly one well-formed address: a value with CR/LF,
several addresses or 5,000 characters is a reason, never a mail elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from provbackup.errors import InvalidEntryError
from provbackup.ldapentry import LdapEntry
from provbackup.model import parse_timestamp

# Read by notify (and shown by show); examples/slapd-acl.conf lets the bind DN read them.
WARN_ATTRIBUTES = (
    "sstBackupWarningOn",
    "sstBackupWarningNumbers",
    "sstBackupWarningDays",
    "sstNotificationWarningLevel",
    "sstNotificationWarningMedium",
    "sstNotificationWarning",
    "mail",
    "mobileTelephoneNumber",
    "preferredLanguage",
    "sstBackupLastSuccessfulBackup",
    "sstBackupSize",
    "sstIncrementSize",
)

KINDS = ("schedule", "quota")
MEDIA = ("mail", "sms")
MAX_ADDRESS = 254  # RFC 5321: a path is at most 256 octets with its <>
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
MAIL_ADDRESS = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
PHONE_NUMBER = re.compile(r"\+?[0-9]{3,20}")
PHONE_SEPARATORS = re.compile(r"[ ./()-]")
LANGUAGE = re.compile(r"[a-z]{2,3}")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # as the snapshot runner writes it
MAX_PERCENT = 999
MAX_COUNT = 99
MAX_BYTES = 2**63
T = TypeVar("T")


@dataclass(frozen=True)
class WarnFault:
    """One unusable warning attribute: its name, the value as shown (None: missing), why."""

    attribute: str
    value: str | None
    message: str  # the whole reason, "attribute: 'value': why", as show and notify say it


@dataclass(frozen=True)
class WarnSettings:
    """An account's warning settings and figures, validated.

    ``schedule_on``: sstBackupWarningOn is TRUE and ``schedule`` is selected;
    ``warning_days``/``warning_numbers``: 0 is off; ``quota_on``: ``quota``
    is selected; ``level``: percent, 0 is off; ``medium`` and ``address``:
    where the warning goes (None: nowhere, see ``problems``); ``language``:
    the primary tag of preferredLanguage when well-formed; ``last_backups``:
    (client host, UTC time) per host; ``used_bytes``: sstBackupSize +
    sstIncrementSize, None when either is missing; ``faults``: every
    unusable value.
    """

    schedule_on: bool = False
    warning_days: int = 0
    warning_numbers: int = 0
    quota_on: bool = False
    level: int = 0
    medium: str | None = None
    address: str | None = None
    language: str | None = None
    last_backups: tuple[tuple[str, datetime], ...] = ()
    used_bytes: int | None = None
    faults: tuple[WarnFault, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        """Each fault's message, in the order read."""
        return tuple(fault.message for fault in self.faults)


def read_warnings(entry: LdapEntry) -> WarnSettings:
    """Read the warning attributes of ``entry``; never raises (see the module docstring).

    Takes the entry; returns its :class:`WarnSettings`, each unusable value
    one :class:`WarnFault` and the criterion it feeds off.
    """
    problems: list[WarnFault] = []

    def attempt(function: Callable[..., T], *arguments: object) -> T | None:
        try:
            return function(*arguments)
        except InvalidEntryError as error:
            value = None if error.value is None else str(error.value)
            problems.append(WarnFault(error.attribute or "", value, str(error)))
            return None

    selected = attempt(_selected, entry)
    selected = set(KINDS) if selected is None else selected
    warning_on = attempt(_boolean, entry, "sstBackupWarningOn")
    days = attempt(_number, entry, "sstBackupWarningDays", MAX_COUNT)
    numbers = attempt(_number, entry, "sstBackupWarningNumbers", MAX_COUNT)
    level = attempt(_number, entry, "sstNotificationWarningLevel", MAX_PERCENT)
    medium = attempt(_medium, entry)
    address = None
    if medium == "mail":
        address = attempt(_mail, entry)
    elif medium == "sms":
        address = attempt(_phone, entry)
    size = attempt(_number, entry, "sstBackupSize", MAX_BYTES)
    increment = attempt(_number, entry, "sstIncrementSize", MAX_BYTES)
    hosts = _last_backups(entry, problems)
    return WarnSettings(
        schedule_on=bool(warning_on) and "schedule" in selected,
        warning_days=days or 0,
        warning_numbers=numbers or 0,
        quota_on="quota" in selected,
        level=level or 0,
        medium=medium,
        address=address,
        language=_language(entry),
        last_backups=hosts,
        used_bytes=None if size is None or increment is None else size + increment,
        faults=tuple(problems),
    )


def shown(text: str) -> str:
    """``text`` for a message: control characters escaped, a long value cut to its start."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _selected(entry: LdapEntry) -> set[str] | None:
    values = entry.values("sstNotificationWarning")
    if not values:
        return None
    unknown = [value for value in values if value.lower() not in KINDS]
    if unknown:
        raise InvalidEntryError(
            "sstNotificationWarning",
            [shown(value) for value in unknown],
            f"unknown warning kind (expected {' or '.join(KINDS)}); the others still apply",
        )
    return {value.lower() for value in values}


def _boolean(entry: LdapEntry, name: str) -> bool | None:
    text = entry.optional(name)
    if text is None:
        return None
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper() == "TRUE"
    raise InvalidEntryError(name, shown(text), "expected TRUE or FALSE")


def _number(entry: LdapEntry, name: str, maximum: int) -> int | None:
    text = entry.optional(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(maximum)):
        raise InvalidEntryError(name, shown(text), f"expected an integer from 0 to {maximum}")
    number = int(text)
    if number > maximum:
        raise InvalidEntryError(name, text, f"expected an integer from 0 to {maximum}")
    return number


def _medium(entry: LdapEntry) -> str | None:
    text = entry.optional("sstNotificationWarningMedium")
    if text is None:
        raise InvalidEntryError("sstNotificationWarningMedium", None, "is missing: no warning sent")
    if text.lower() not in MEDIA:
        raise InvalidEntryError(
            "sstNotificationWarningMedium", shown(text), "expected mail or sms: no warning sent"
        )
    return text.lower()


def _mail(entry: LdapEntry) -> str:
    values = entry.values("mail")
    if not values:
        raise InvalidEntryError("mail", None, "is missing: no warning sent")
    if len(values) > 1:
        raise InvalidEntryError(
            "mail", [shown(value) for value in values], "several addresses: no warning sent"
        )
    address = values[0]
    if len(address) > MAX_ADDRESS or not MAIL_ADDRESS.fullmatch(address):
        raise InvalidEntryError(
            "mail", shown(address), "not exactly one plain address (local@domain): no warning sent"
        )
    return address


def _phone(entry: LdapEntry) -> str:
    # slapd answers with the attribute's first name, "mobile" (RFC 4524), whatever was asked.
    values = entry.values("mobile") or entry.values("mobileTelephoneNumber")
    if len(values) != 1:
        reason = "is missing" if not values else "several numbers"
        raise InvalidEntryError(
            "mobileTelephoneNumber", [shown(value) for value in values] or None,
            f"{reason}: no warning sent",
        )  # fmt: skip
    number = PHONE_SEPARATORS.sub("", values[0]) if len(values[0]) <= 40 else values[0]
    if not PHONE_NUMBER.fullmatch(number):
        raise InvalidEntryError(
            "mobileTelephoneNumber", shown(values[0]), "not a phone number: no warning sent"
        )
    return number


def _language(entry: LdapEntry) -> str | None:
    """The primary tag of the first preferredLanguage (``de-CH;q=0.8`` → ``de``), or None.

    Only ever a key looked up among the languages the templates provide.
    """
    values = entry.values("preferredLanguage")
    if not values or len(values[0]) > 64:
        return None
    first = re.split(r"[-_;,\s]", values[0].strip(), maxsplit=1)[0].lower()
    return first if LANGUAGE.fullmatch(first) else None


def _last_backups(
    entry: LdapEntry, problems: list[WarnFault]
) -> tuple[tuple[str, datetime], ...]:
    hosts: dict[str, datetime] = {}
    for value in entry.values("sstBackupLastSuccessfulBackup"):
        if value == "0":
            continue
        host, _, when = value.rpartition(":")
        moment = parse_timestamp(when)
        if not HOST_NAME.fullmatch(host) or moment is None:
            name = "sstBackupLastSuccessfulBackup"
            problems.append(WarnFault(name, shown(value), f"{name}: {shown(value)!r}: expected 0 "
                                      "or host:YYYYMMDDThhmmssZ (value ignored)"))  # fmt: skip
            continue
        key, moment = host.lower(), moment.replace(tzinfo=UTC)
        hosts[key] = max(moment, hosts.get(key, moment))
    return tuple(sorted(hosts.items()))
