"""Read a backup-account entry as LDAP returned it into checked values.

Two views of one entry: :class:`Request` holds only the provisioning
attributes (enough for ``scan`` to classify it); :class:`Account` holds what
the work on the server needs, validated before anything is touched. Every
problem is reported with the attribute and the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from provbackup.config import INTERVALS
from provbackup.errors import InvalidEntryError

MODE = "sstProvisioningMode"
STATE = "sstProvisioningState"
RETURN_VALUE = "sstProvisioningReturnValue"
EXECUTION_DATE = "sstProvisioningExecutionDate"
DOCUMENTED_DATE = "sstProvisioningDate"
DATE_ATTRIBUTES = (EXECUTION_DATE, DOCUMENTED_DATE)
INTERVAL_ATTRIBUTES = {name: f"sstBackupInterval{name.capitalize()}" for name in INTERVALS}

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
)

MAX_ID = 2**32 - 2  # 2**32 - 1 is (uid_t) -1, "no change" to chown
MAX_QUOTA_BYTES = 2**60  # 1 EiB; anything larger is a typo, not a customer
MAX_INTERVAL = 999
SAFE_UID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class LdapEntry:
    """One entry as the server sent it: the DN and string values by attribute.

    ``attributes`` maps lower-cased attribute names to their values.
    """

    dn: str
    attributes: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_values(cls, dn: str, attributes: Mapping[str, Iterable[str]]) -> LdapEntry:
        """Build an entry from any mapping of names to values (names in any case)."""
        return cls(dn, {name.lower(): tuple(values) for name, values in attributes.items()})

    def values(self, name: str) -> tuple[str, ...]:
        """Return every value of attribute ``name`` (no values: empty tuple)."""
        return self.attributes.get(name.lower(), ())

    def single(self, name: str, required: bool = True) -> str | None:
        """Return the one value of ``name``.

        Raises InvalidEntryError when it has several values, or none and
        ``required`` is set; returns None for a missing optional attribute.
        """
        values = self.values(name)
        if len(values) > 1:
            raise InvalidEntryError(name, list(values), f"has {len(values)} values, expected one")
        if not values:
            if required:
                raise InvalidEntryError(name, None, "is missing")
            return None
        return values[0]


@dataclass(frozen=True)
class Request:
    """The provisioning attributes of an entry, unvalidated beyond their form.

    ``date_attribute`` is the name the entry uses for the date (None when it
    has neither); ``date`` is None for ``0`` (now) and for a missing date.
    ``problem`` describes why the provisioning attributes are unusable.
    """

    dn: str
    uid: str | None
    mode: str | None
    state: str | None
    date_attribute: str | None
    date: date | None
    return_value: int | None
    problem: str | None = None


@dataclass(frozen=True)
class Account:
    """Everything the work on the server needs, validated."""

    dn: str
    uid: str
    uid_number: int
    gid_number: int
    home_directory: str | None
    quota_bytes: int | None
    retain: tuple[tuple[str, int], ...]
    active: bool


class _Collector:
    """Runs readers and keeps every InvalidEntryError, so all problems are reported at once."""

    def __init__(self) -> None:
        self.errors: list[InvalidEntryError] = []
        self.messages: list[str] = []

    def attempt(self, function, *arguments):
        """Return ``function(*arguments)``, or None after recording its InvalidEntryError."""
        try:
            return function(*arguments)
        except InvalidEntryError as error:
            self.errors.append(error)
            self.messages.append(str(error))
            return None


def read_request(entry: LdapEntry, date_attribute: str = "auto") -> Request:
    """Read the provisioning attributes of ``entry``.

    ``date_attribute`` is ``auto`` (whichever of the two names the entry
    carries) or one of the two names. Never raises for bad values: the
    problem is returned in ``Request.problem`` so a listing can show it.
    """
    collector = _Collector()
    attempt = collector.attempt
    problems = collector.messages
    uid = attempt(entry.single, "uid")
    mode = attempt(entry.single, MODE)
    state = attempt(entry.single, STATE)
    if state is not None and state != "0" and parse_timestamp(state) is None:
        problems.append(f"{STATE}: {state!r}: expected 0 or YYYYMMDDThhmmssZ")
    name = _date_attribute_of(entry, date_attribute)
    when = None
    if name is None:
        wanted = " or ".join(DATE_ATTRIBUTES) if date_attribute == "auto" else date_attribute
        problems.append(f"{wanted}: (missing): is missing")
    else:
        when = attempt(_read_date, entry, name)
    return_value = None
    raw_return = attempt(entry.single, RETURN_VALUE, False)
    if raw_return is not None:
        try:
            return_value = int(raw_return)
        except ValueError:
            problems.append(f"{RETURN_VALUE}: {raw_return!r}: not an integer")
    return Request(
        dn=entry.dn,
        uid=uid,
        mode=mode,
        state=state,
        date_attribute=name,
        date=when,
        return_value=return_value,
        problem="; ".join(problems) or None,
    )


def read_account(
    entry: LdapEntry,
    *,
    min_uid: int,
    max_uid: int = 2**32 - 2,
    default_retain: tuple[tuple[str, int], ...],
    for_delete: bool = False,
) -> Account:
    """Validate what the work on the server needs.

    ``min_uid`` and ``max_uid`` bound the uidNumber/gidNumber accepted (0 never is);
    ``default_retain`` gives the count of an interval the entry does not
    set. ``for_delete`` skips quota, retention and activation, which a
    delete does not use, so a bad value there never blocks removing an
    account. Returns the :class:`Account`. Raises InvalidEntryError naming
    every bad attribute and value.
    """
    collector = _Collector()
    attempt = collector.attempt
    problems = collector.errors
    uid = attempt(_read_uid, entry)
    uid_number = attempt(_read_id, entry, "uidNumber", min_uid, max_uid)
    gid_number = attempt(_read_id, entry, "gidNumber", min_uid, max_uid)
    home = attempt(_read_home, entry)
    if for_delete:
        quota, active, retain = None, None, default_retain
    else:
        quota = attempt(_read_integer, entry, "sstQuota", MAX_QUOTA_BYTES)
        active = attempt(_read_active, entry)
        retain = _read_retain(entry, default_retain, attempt)
    if not retain and not any(
        error.attribute in INTERVAL_ATTRIBUTES.values() for error in problems
    ):
        problems.append(
            InvalidEntryError(
                "sstBackupInterval*",
                [entry.values(name) for name in INTERVAL_ATTRIBUTES.values()],
                "no interval is above 0",
            )
        )
    if problems:
        if len(problems) == 1:
            raise problems[0]
        combined = InvalidEntryError(problems[0].attribute or "", problems[0].value, "")
        combined.args = ("; ".join(str(error) for error in problems),)
        raise combined
    return Account(
        dn=entry.dn,
        uid=uid,
        uid_number=uid_number,
        gid_number=gid_number,
        home_directory=home,
        quota_bytes=quota,
        retain=retain,
        active=True if active is None else active,
    )


def _read_retain(entry: LdapEntry, default_retain: tuple[tuple[str, int], ...], attempt):
    defaults = dict(default_retain)
    counts = []
    for interval, attribute in INTERVAL_ATTRIBUTES.items():
        count = attempt(_read_integer, entry, attribute, MAX_INTERVAL)
        counts.append((interval, defaults.get(interval, 0) if count is None else count))
    return tuple((interval, count) for interval, count in counts if count > 0)


def parse_timestamp(text: str) -> datetime | None:
    """Return the UTC datetime of a ``YYYYMMDDThhmmssZ`` state, or None if malformed."""
    if len(text) != 16:
        return None
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return None


def _date_attribute_of(entry: LdapEntry, configured: str) -> str | None:
    if configured != "auto":
        return configured if entry.values(configured) else None
    for name in DATE_ATTRIBUTES:
        if entry.values(name):
            return name
    return None


def _read_date(entry: LdapEntry, name: str) -> date | None:
    text = entry.single(name)
    if text == "0":
        return None
    if len(text) == 8 and text.isdigit():
        try:
            return datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            pass
    raise InvalidEntryError(name, text, "expected 0 or a date YYYYMMDD")


def _read_uid(entry: LdapEntry) -> str:
    uid = entry.single("uid")
    if not SAFE_UID.fullmatch(uid) or uid in (".", ".."):
        raise InvalidEntryError(
            "uid",
            uid,
            "not a safe account name (letters, digits, '.', '_', '-'; at most 64; "
            "not starting with '-' or '.')",
        )
    if uid.startswith("."):
        raise InvalidEntryError("uid", uid, "must not start with '.'")
    return uid


def _read_id(entry: LdapEntry, name: str, min_uid: int, max_uid: int) -> int:
    text = entry.single(name)
    if not text.isascii() or not text.isdigit():
        raise InvalidEntryError(name, text, "not a non-negative integer")
    number = int(text)
    if number == 0:
        raise InvalidEntryError(name, text, "0 (root) is never accepted")
    if number < min_uid:
        raise InvalidEntryError(name, text, f"below [backup] min_uid {min_uid}")
    if number > min(max_uid, MAX_ID):
        raise InvalidEntryError(name, text, f"above [backup] max_uid {min(max_uid, MAX_ID)}")
    return number


def _read_home(entry: LdapEntry) -> str | None:
    home = entry.single("homeDirectory", required=False)
    if home is not None and ("\0" in home or not home.startswith("/")):
        raise InvalidEntryError("homeDirectory", home, "not an absolute path")
    return home


def _read_integer(entry: LdapEntry, name: str, maximum: int) -> int | None:
    text = entry.single(name, required=False)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise InvalidEntryError(name, text, "not a non-negative integer")
    number = int(text)
    if number > maximum:
        raise InvalidEntryError(name, text, f"larger than the maximum {maximum}")
    return number


def _read_active(entry: LdapEntry) -> bool | None:
    text = entry.single("sstIsActive", required=False)
    if text is None:
        return None
    if text.upper() == "TRUE":
        return True
    if text.upper() == "FALSE":
        return False
    raise InvalidEntryError("sstIsActive", text, "expected TRUE or FALSE")
