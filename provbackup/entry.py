"""The gate: an LDAP entry is read and validated here, once, into typed values.

:func:`read_request` reads the provisioning attributes into a
:class:`~provbackup.model.Request` (enough for ``scan`` to classify the
entry; never raises). :func:`read_account` validates what the work on the
server needs into an :class:`~provbackup.model.Account` for one verb, or
raises one InvalidEntryError/UnsafePathError naming every bad attribute
and value. Nothing after the gate validates again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from provbackup.config import Config
from provbackup.entryvalues import (
    MAX_INTERVAL,
    quota_of,
    read_active,
    read_date,
    read_home,
    read_id,
    read_integer,
    read_quota,
    read_uid,
    shown,
)
from provbackup.errors import EntryError, InvalidEntryError, UnsafePathError
from provbackup.ldapentry import LdapEntry
from provbackup.model import (
    DATE_ATTRIBUTES,
    INTERVAL_ATTRIBUTES,
    MODE,
    RETURN_VALUE,
    STATE,
    Account,
    Request,
    Verb,
    parse_mode,
    parse_timestamp,
)
from provbackup.paths import account_paths, check_home_directory
from provbackup.systemids import SystemIds, read_system_ids
from provbackup.warnentry import WARN_ATTRIBUTES

T = TypeVar("T")

# Every attribute provbackup reads; searches ask for these and nothing else.
READ_ATTRIBUTES = (
    "uid",
    "uidNumber",
    "gidNumber",
    "homeDirectory",
    MODE,
    STATE,
    RETURN_VALUE,
    *DATE_ATTRIBUTES,
    "sstQuota",
    "sstIsActive",
    *INTERVAL_ATTRIBUTES.values(),
    *WARN_ATTRIBUTES,  # the customer warnings (notify, show): read by warnentry.py
    # Operational: returned only when asked for by name. Which entry made an account.
    "entryUUID",
)

__all__ = ["READ_ATTRIBUTES", "LdapEntry", "Rules", "quota_of", "read_account", "read_request"]


@dataclass(frozen=True)
class Rules:
    """What the gate checks an account against, from the configuration.

    ``system_ids`` are the IDs of the local /etc/passwd and /etc/group files
    (read once per run, see :mod:`provbackup.systemids`).
    """

    min_uid: int
    max_uid: int
    default_retain: tuple[tuple[str, int], ...]
    root: Path
    layout: str
    system_ids: SystemIds = field(default_factory=read_system_ids)
    # A jail template is configured: logins go through jk_chrootsh, which needs
    # the "/./" marker in homeDirectory (see paths.check_home_directory).
    jailed: bool = False

    @classmethod
    def from_config(cls, config: Config, system_ids: SystemIds | None = None) -> Rules:
        """The rules of ``config``; ``system_ids`` default to the local files' IDs."""
        return cls(
            min_uid=config.backup.min_uid,
            max_uid=config.backup.max_uid,
            default_retain=config.rsnapshot.retain,
            root=config.backup.root,
            layout=config.backup.layout,
            system_ids=system_ids if system_ids is not None else read_system_ids(),
            jailed=config.backup.jail_template is not None,
        )


class _Collector:
    """Runs readers and keeps every EntryError, so all problems are reported at once."""

    def __init__(self) -> None:
        self.errors: list[EntryError] = []

    def attempt(self, function: Callable[..., T], *arguments: Any) -> T | None:
        """Return ``function(*arguments)``, or None after recording its EntryError."""
        try:
            return function(*arguments)
        except (InvalidEntryError, UnsafePathError) as error:
            self.errors.append(error)
            return None

    def raise_if_any(self) -> None:
        """Raise the one error, or one naming them all.

        The combined error is an UnsafePathError (11) when any problem is an
        unsafe path (it may be an attack), else an InvalidEntryError (10).
        """
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) == 1:
            raise first
        message = "; ".join(str(error) for error in self.errors)
        combined: EntryError
        if any(isinstance(error, UnsafePathError) for error in self.errors):
            combined = UnsafePathError(message, attribute=first.attribute, value=first.value)
        else:
            combined = InvalidEntryError(first.attribute or "", first.value, "")
            combined.args = (message,)
        raise combined


def read_request(entry: LdapEntry, date_attribute: str = "auto") -> Request:
    """Read the provisioning attributes of ``entry``.

    ``date_attribute`` is ``auto`` (whichever of the two names the entry
    carries) or one of the two names. Never raises for bad values: the
    problem is returned in ``Request.problem`` so a listing can show it.
    """
    collector = _Collector()
    attempt = collector.attempt
    extra: list[str] = []
    uid = attempt(entry.single, "uid")
    mode = attempt(entry.single, MODE)
    meaning = parse_mode(mode)
    if mode is not None and meaning is None:
        extra.append(f"{MODE}: {mode!r}: unknown mode (expected one of {', '.join(Verb)})")
    state = attempt(entry.single, STATE)
    if state is not None and state != "0" and parse_timestamp(state) is None:
        extra.append(f"{STATE}: {state!r}: expected 0 or YYYYMMDDThhmmssZ")
    name = _date_attribute_of(entry, date_attribute)
    when = None
    if name is None:
        wanted = " or ".join(DATE_ATTRIBUTES) if date_attribute == "auto" else date_attribute
        extra.append(f"{wanted}: (missing): is missing")
    else:
        when = attempt(read_date, entry, name)
    return_value = None
    raw_return = attempt(entry.optional, RETURN_VALUE)
    if raw_return is not None:
        digits = raw_return.removeprefix("-")
        if digits.isascii() and digits.isdigit() and len(digits) < 10:
            return_value = int(raw_return)
        else:
            extra.append(f"{RETURN_VALUE}: {shown(raw_return)!r}: not an integer")
    problems = [str(error) for error in collector.errors] + extra
    return Request(
        dn=entry.dn,
        uid=uid,
        mode=mode,
        state=state,
        date_attribute=name,
        date=when,
        return_value=return_value,
        problem="; ".join(problems) or None,
        verb=meaning[0] if meaning else None,
        phase=meaning[1] if meaning else None,
    )


def read_account(entry: LdapEntry, verb: Verb, rules: Rules) -> Account:
    """Validate what the work of ``verb`` on the server needs.

    Every verb checks uid, uidNumber, gidNumber (from ``min_uid`` to
    ``max_uid``, never 0, never a system ID) and homeDirectory (the
    account's jailkit home under the backup root). Add and modify also
    check sstQuota (1 byte up: 0 would mean "unlimited" to setquota), the
    intervals and sstIsActive. A delete does not read those: it sets the
    quota to 0 and needs no retention, so an unusable value there never
    blocks removing an account. Returns the :class:`Account`. Raises
    InvalidEntryError (10) or UnsafePathError (11) naming every bad
    attribute and value.
    """
    collector = _Collector()
    attempt = collector.attempt
    uid = attempt(read_uid, entry)
    bounds = (rules.min_uid, rules.max_uid)
    uid_number = attempt(read_id, entry, "uidNumber", bounds, rules.system_ids.uids, "passwd")
    gid_number = attempt(read_id, entry, "gidNumber", bounds, rules.system_ids.gids, "group")
    home = attempt(read_home, entry)
    paths = attempt(account_paths, rules.root, rules.layout, uid) if uid is not None else None
    if paths is not None:
        # A delete goes through whatever the entry says: the marker only matters for logins.
        jailed = rules.jailed and verb is not Verb.DELETE
        attempt(check_home_directory, home, paths, jailed)
    quota: int | None = None
    active: bool | None = True
    retain: tuple[tuple[str, int], ...] = ()
    if verb is not Verb.DELETE:
        quota = attempt(read_quota, entry)
        active = attempt(read_active, entry)
        retain = _read_retain(entry, rules.default_retain, collector)
    collector.raise_if_any()
    assert uid is not None and uid_number is not None and gid_number is not None
    assert paths is not None
    return Account(
        dn=entry.dn,
        uid=uid,
        uid_number=uid_number,
        gid_number=gid_number,
        home_directory=home,
        quota_bytes=quota,
        retain=retain,
        active=True if active is None else active,
        paths=paths,
        entry_uuid=entry.optional("entryUUID"),
    )


def _read_retain(
    entry: LdapEntry, default_retain: tuple[tuple[str, int], ...], collector: _Collector
) -> tuple[tuple[str, int], ...]:
    defaults = dict(default_retain)
    counts = []
    bad = len(collector.errors)
    for interval, attribute in INTERVAL_ATTRIBUTES.items():
        count = collector.attempt(read_integer, entry, attribute, MAX_INTERVAL)
        counts.append((interval, defaults.get(interval, 0) if count is None else count))
    retain = tuple((interval, count) for interval, count in counts if count > 0)
    if not retain and len(collector.errors) == bad:
        collector.errors.append(
            InvalidEntryError(
                "sstBackupInterval*",
                [entry.values(name) for name in INTERVAL_ATTRIBUTES.values()],
                "no interval is above 0",
            )
        )
    return retain


def _date_attribute_of(entry: LdapEntry, configured: str) -> str | None:
    if configured != "auto":
        return configured if entry.values(configured) else None
    for name in DATE_ATTRIBUTES:
        if entry.values(name):
            return name
    return None
