"""The gate's rules for single attribute values: IDs, names, integers, dates, flags.

Part of the gate (:mod:`provbackup.entry`, which alone calls these): each
reader takes the entry and returns the typed value or raises one
InvalidEntryError naming the attribute and the value. Integers are
length-checked before ``int()``.
"""

from __future__ import annotations

from datetime import date, datetime

from provbackup.config import MAX_ID
from provbackup.errors import InvalidEntryError
from provbackup.ldapentry import LdapEntry
from provbackup.paths import SAFE_UID

MAX_QUOTA_BYTES = 2**60  # 1 EiB; anything larger is a typo, not a customer
MAX_INTERVAL = 999


def read_date(entry: LdapEntry, name: str) -> date | None:
    """The date ``name`` (YYYYMMDD; ``0``: none). Raises InvalidEntryError."""
    text = entry.single(name)
    if text == "0":
        return None
    if len(text) == 8 and text.isdigit():
        try:
            return datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            pass
    raise InvalidEntryError(name, text, "expected 0 or a date YYYYMMDD")


def read_uid(entry: LdapEntry) -> str:
    """The uid, a safe account name (also a directory name). Raises InvalidEntryError."""
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


def digits(name: str, text: str, maximum: int) -> int:
    """``text`` as a non-negative integer up to ``maximum``, its length checked first.

    A 5,000-digit value (the server accepts it) is refused by its length,
    before int() could spend time on it or refuse it with an error of its own.
    """
    if not text.isascii() or not text.isdigit():
        raise InvalidEntryError(name, shown(text), "not a non-negative integer")
    if len(text.lstrip("0")) > len(str(maximum)):
        raise InvalidEntryError(name, shown(text), f"larger than the maximum {maximum}")
    number = int(text)
    if number > maximum:
        raise InvalidEntryError(name, text, f"larger than the maximum {maximum}")
    return number


def shown(text: str) -> str:
    """``text`` shortened for a message: a huge value is named by its start and length."""
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def read_id(
    entry: LdapEntry, name: str, bounds: tuple[int, int], system: frozenset[int], file: str
) -> int:
    """The ID ``name`` (uidNumber, gidNumber): from ``bounds`` ([backup] min_uid, max_uid),
    never 0, never one of the ``system`` IDs (from ``/etc/<file>``)."""
    min_uid, max_uid = bounds
    text = entry.single(name)
    number = digits(name, text, MAX_ID)
    if number == 0:
        raise InvalidEntryError(name, text, "0 (root) is never accepted")
    if number < min_uid:
        raise InvalidEntryError(name, text, f"below [backup] min_uid {min_uid}")
    if number > max_uid:
        raise InvalidEntryError(name, text, f"above [backup] max_uid {max_uid}")
    if number in system:
        raise InvalidEntryError(
            name,
            text,
            f"belongs to the system (/etc/{file} or 65534); customer accounts need IDs of "
            "their own",
        )
    return number


def read_home(entry: LdapEntry) -> str | None:
    """The homeDirectory, an absolute path, or None. Raises InvalidEntryError."""
    home = entry.optional("homeDirectory")
    if home is not None and ("\0" in home or not home.startswith("/")):
        raise InvalidEntryError("homeDirectory", home, "not an absolute path")
    return home


def read_integer(entry: LdapEntry, name: str, maximum: int) -> int | None:
    """The optional integer ``name`` from 0 to ``maximum``, or None. Raises InvalidEntryError."""
    text = entry.optional(name)
    if text is None:
        return None
    return digits(name, text, maximum)


def read_quota(entry: LdapEntry) -> int | None:
    """sstQuota in bytes (1 up), or None. Raises InvalidEntryError."""
    quota = read_integer(entry, "sstQuota", MAX_QUOTA_BYTES)
    if quota == 0:
        raise InvalidEntryError(
            "sstQuota", "0", "0 would mean 'unlimited' to the quota command; give bytes (1 up)"
        )
    return quota


def quota_of(entry: LdapEntry) -> int | None:
    """The entry's sstQuota in bytes, or None when it has none or an unusable one (never raises).

    For readers that only report (the snapshot run's usage), not for the work.
    """
    try:
        return read_quota(entry)
    except InvalidEntryError:
        return None


def read_active(entry: LdapEntry) -> bool | None:
    """sstIsActive (TRUE or FALSE), or None. Raises InvalidEntryError."""
    text = entry.optional("sstIsActive")
    if text is None:
        return None
    if text.upper() == "TRUE":
        return True
    if text.upper() == "FALSE":
        return False
    raise InvalidEntryError("sstIsActive", text, "expected TRUE or FALSE")
