"""Converters from an INI value (a stripped, non-empty string) to a typed value.

Each takes the text and returns the value or raises ValueError with a short
reason; the reader adds the file, section, key and value to it.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

INTERVALS = ("hourly", "daily", "weekly", "monthly", "yearly")
LAYOUTS = ("stoney", "flat")
ENGINES = ("rsnapshot", "btrfs")
DATE_ATTRIBUTES = ("auto", "sstProvisioningExecutionDate", "sstProvisioningDate")
SYSLOG_FACILITIES = (
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
    "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
)  # fmt: skip
LOG_LEVELS = ("debug", "info", "warning", "error")
QUOTA_PLACEHOLDERS = (
    "uid", "uidnumber", "gidnumber", "quota_bytes", "quota_kib", "inode_limit", "filesystem",
)  # fmt: skip
MAX_ID = 2**32 - 2  # 2**32 - 1 is (uid_t) -1, "no change" to chown

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    matches = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def text(value: str) -> str:
    """Any text, as written."""
    return value


_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def attribute_name(value: str) -> str:
    """An LDAP attribute name (letters, digits, hyphens), or empty for none."""
    if value and not _ATTRIBUTE_NAME.fullmatch(value):
        raise ValueError(f"not an LDAP attribute name: {value!r}")
    return value


def server_name(value: str) -> str:
    """A host name (letters, digits, dots, hyphens, underscores), or empty for the FQDN."""
    if value and not _SERVER_NAME.fullmatch(value):
        raise ValueError(f"not a server name (letters, digits, '.', '-', '_'): {value!r}")
    return value


def boolean(value: str) -> bool:
    """yes/no, true/false, on/off, 1/0 (any case)."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected yes or no")


def auto_boolean(value: str) -> str:
    """``auto``, or a boolean as ``yes``/``no``."""
    lowered = value.lower()
    if lowered == "auto":
        return "auto"
    return "yes" if boolean(lowered) else "no"


def integer(low: int, high: int) -> Callable[[str], int]:
    """An integer converter accepting ``low`` to ``high``."""

    def convert(value: str) -> int:
        if len(value) > 24:  # int() of a huge text is slow and never in range
            raise ValueError(f"expected an integer from {low} to {high}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError("expected an integer") from None
        if not low <= number <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return number

    return convert


def non_negative_float(value: str) -> float:
    """A number from 0 up (below 10**7)."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if not 0 <= number < 10**7:
        raise ValueError("expected a number from 0 up")
    return number


def positive_float(value: str) -> float:
    """A number above 0."""
    number = non_negative_float(value)
    if number == 0:
        raise ValueError("expected a number above 0")
    return number


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A converter accepting one of ``choices`` (any case), returned as declared."""

    def convert(value: str) -> str:
        for candidate in choices:
            if value.lower() == candidate.lower():
                return candidate
        raise ValueError(f"expected one of {', '.join(choices)}" + suggest(value, choices))

    return convert


def absolute_path(value: str) -> Path:
    """An absolute path, normalized."""
    if not value.startswith("/"):
        raise ValueError("expected an absolute path")
    if "\0" in value:
        raise ValueError("contains a NUL character")
    return Path(os.path.normpath(value))


def absolute_path_text(value: str) -> str:
    """An absolute path, normalized, as text."""
    return str(absolute_path(value))


def existing_file(value: str) -> Path:
    """A path naming an existing file."""
    path = Path(value)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def existing_directory(value: str) -> Path:
    """An absolute path naming an existing directory."""
    path = absolute_path(value)
    if not path.is_dir():
        raise ValueError("no such directory")
    return path


def backup_root(value: str) -> Path:
    """An absolute path other than ``/``."""
    path = absolute_path(value)
    if path == Path("/"):
        raise ValueError("the backup root cannot be the filesystem root")
    return path


def word_list(value: str) -> tuple[str, ...]:
    """Names separated by commas or blanks (jk_init sections)."""
    words = tuple(value.replace(",", " ").split())
    for word in words:
        if not word.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{word!r} is not a section name")
    return words


def path_list(value: str) -> tuple[str, ...]:
    """Absolute paths separated by commas or blanks."""
    return tuple(absolute_path_text(word) for word in value.replace(",", " ").split())


def uris(value: str) -> tuple[str, ...]:
    """ldap://, ldaps:// or ldapi:// URIs separated by spaces or commas."""
    words = tuple(value.replace(",", " ").split())
    for uri in words:
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in ("ldap", "ldaps", "ldapi"):
            raise ValueError(f"{uri!r} is not an ldap://, ldaps:// or ldapi:// URI")
    return words


def dn(value: str) -> str:
    """A DN ldap3 can parse."""
    from ldap3.utils.dn import parse_dn

    try:
        parse_dn(value)
    except Exception:
        raise ValueError("not a valid DN") from None
    return value


def ldap_filter(value: str) -> str:
    """Check ``value`` with ldap3's own filter parser, so a bad filter is a config error.

    A filter without outer parentheses (``uid=x``) gets them. Raises
    ValueError naming what ldap3 found wrong.
    """
    from ldap3.core.exceptions import LDAPInvalidFilterError
    from ldap3.operation.search import parse_filter

    wrapped = value if value.startswith("(") else f"({value})"
    try:
        parse_filter(wrapped, None, False, False, None, False)  # type: ignore[no-untyped-call]
    except LDAPInvalidFilterError as error:
        raise ValueError(
            f"not a valid LDAP filter ({error}); e.g. (objectClass=sstBackup)"
        ) from None
    return wrapped


def command(value: str) -> tuple[str, ...]:
    """A command line split like a shell line (never run by a shell)."""
    try:
        words = tuple(shlex.split(value))
    except ValueError as error:
        raise ValueError(f"cannot split into words: {error}") from None
    if not words:
        raise ValueError("empty command")
    return words


def quota_template(value: str) -> tuple[str, ...]:
    """A command whose words may hold the :data:`QUOTA_PLACEHOLDERS`."""
    words = command(value)
    for word in words:
        try:
            word.format(**{name: "" for name in QUOTA_PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"bad placeholder {error} in {word!r}; known: "
                + ", ".join("{" + name + "}" for name in QUOTA_PLACEHOLDERS)
            ) from None
    return words


def language_tag(value: str) -> str:
    """A language tag of two or three lower-case letters (``en``, ``de``)."""
    if not re.fullmatch(r"[a-z]{2,3}", value):
        raise ValueError(f"{value!r} is not a language tag of 2 or 3 lower-case letters")
    return value


def sms_template(value: str) -> tuple[str, ...]:
    """A command whose words may hold ``{number}`` (replaced by the customer's number)."""
    words = command(value)
    for word in words:
        rest = word.replace("{number}", "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"bad placeholder in {word!r}; known: {{number}}")
    return words


def address_list(value: str) -> tuple[str, ...]:
    """Mail addresses separated by spaces or commas."""
    addresses = tuple(value.replace(",", " ").split())
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"{address!r} is not a mail address")
    return addresses


def parse_retain(value: str) -> tuple[tuple[str, int], ...]:
    """Parse ``daily 7, weekly 4`` (or ``daily=7``) into ordered (interval, count) pairs.

    Returns the pairs in the order hourly, daily, weekly, monthly, yearly,
    without zero counts. Raises ValueError on unknown intervals or bad counts.
    """
    counts: dict[str, int] = {}
    for part in value.replace(";", ",").split(","):
        words = part.replace("=", " ").split()
        if not words:
            continue
        if len(words) != 2:
            raise ValueError(f"expected 'interval count' pairs separated by commas, got {part!r}")
        name, count = words[0].lower(), words[1]
        if name not in INTERVALS:
            raise ValueError(f"unknown interval {name!r}" + suggest(name, INTERVALS))
        if not count.isdigit() or int(count) > 999:
            raise ValueError(f"count for {name} must be an integer from 0 to 999, got {count!r}")
        counts[name] = int(count)
    pairs = tuple((name, counts[name]) for name in INTERVALS if counts.get(name))
    if not pairs:
        raise ValueError("at least one interval needs a count above 0")
    return pairs
