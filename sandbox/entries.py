"""LDAP test data: backup-account entries, the base tree, LDIF.

:func:`account_entry` builds a backup-account entry shaped like the stoney
cloud's documented example; :func:`base_entries` the suffix and the
accounts' tree above it (and, for a sandbox with the example ACL, the
provbackup bind DN's entry); :func:`entries_to_ldif` turns entries into LDIF
for slapadd or ldapadd. All of it is pure: nothing here talks to a server.

The accounts' tree, as in the stoney cloud (``suffix`` defaults to
``dc=stoney-cloud,dc=org``)::

    <suffix>
      ou=services
        cn=provbackup        <- bind_account_entry(): the bind DN the example ACL names
        ou=backup
          ou=accounts        <- the accounts' base DN
            uid=3723707      <- account_entry("3723707", base_dn=accounts_dn)
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ldap3.utils.dn import escape_rdn

Entry = tuple[str, Mapping[str, Sequence[str | bytes | int]]]
"""An LDAP entry as ``(dn, {attribute: [values]})``."""

DEFAULT_SUFFIX = "dc=stoney-cloud,dc=org"
ACCOUNTS_RDNS = "ou=accounts,ou=backup,ou=services"
"""The accounts' base DN relative to the suffix, as in the stoney cloud."""
BIND_ACCOUNT_RDNS = "cn=provbackup,ou=services"
"""provbackup's own bind DN relative to the suffix, as in examples/slapd-acl.conf."""


def jailkit_home_directory(root: str | os.PathLike[str], uid: str) -> str:
    """Return the jailkit ``homeDirectory`` of a numeric uid in the stoney layout.

    ``jailkit_home_directory("/var/backup", "3723707")`` is
    ``/var/backup/7/707/723/3723707/chroot/./home/3723707`` (the uid is
    zero-padded to 6 digits for the path components; ``/./`` marks the chroot).

    Raises:
        ValueError: the uid is not made of ASCII digits.
    """
    if not (uid.isascii() and uid.isdigit()):
        raise ValueError(f"the stoney layout needs a numeric uid, not {uid!r}")
    padded = uid.zfill(6)
    account = Path(root) / padded[-1] / padded[-3:] / padded[-6:-3] / uid
    return f"{account}/chroot/./home/{uid}"


# MUST attributes of the classes account_entry uses (from the schemas), used to
# replace a class by extensibleObject when the caller omits one of them.
_REQUIRED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "account": frozenset({"uid"}),
    "posixAccount": frozenset({"cn", "uid", "uidNumber", "gidNumber", "homeDirectory"}),
    "shadowAccount": frozenset({"uid"}),
    "sstBackup": frozenset({
        "sstBackupIntervalHourly", "sstBackupIntervalDaily", "sstBackupIntervalWeekly",
        "sstBackupIntervalMonthly", "sstBackupIntervalYearly", "sstBackupWarningDays",
        "sstBackupWarningNumbers", "sstBackupWarningOn", "sstNotificationWarningLevel",
        "sstNotificationWarningMedium", "sstUseSelfcare", "sstUseSSH", "sstIsActive",
    }),
    "sstRelationship": frozenset(),
    "sstProvisioning": frozenset({
        "sstProvisioningExecutionDate", "sstProvisioningMode", "sstProvisioningState",
    }),
    "provbackupProvisioning": frozenset({
        "sstProvisioningDate", "sstProvisioningMode", "sstProvisioningState",
    }),
}  # fmt: skip
_REQUIRED_LOWER = {
    name: frozenset(attribute.lower() for attribute in required)
    for name, required in _REQUIRED_ATTRIBUTES.items()
}

DATE_ATTRIBUTES = ("sstProvisioningExecutionDate", "sstProvisioningDate")
"""The two names of the provisioning date: the stoney schema's and the documentation's."""

DEFAULT_INTERVALS = {"hourly": 0, "daily": 7, "weekly": 4, "monthly": 3, "yearly": 0}


def account_entry(
    uid: str,
    *,
    base_dn: str,
    uid_number: int | None = None,
    gid_number: int | None = None,
    mode: str = "add",
    state: str = "0",
    date: str = "0",
    date_attribute: str = "sstProvisioningExecutionDate",
    quota: int | None = 1073741824,
    intervals: Mapping[str, int] | None = None,
    active: bool = True,
    home_directory: str | None = None,
    extra: Mapping[str, Sequence[str]] | None = None,
    omit: Iterable[str] = (),
) -> tuple[str, dict[str, list[str]]]:
    """Build a backup-account entry shaped like the stoney cloud's documented example.

    The entry has the object classes account, posixAccount, shadowAccount,
    sstBackup, sstRelationship and sstProvisioning (provbackupProvisioning
    when ``date_attribute`` is ``sstProvisioningDate``), ``uid``, ``cn``,
    ``uidNumber``, ``gidNumber``, ``homeDirectory``, ``loginShell``, every
    sstBackup MUST attribute, ``sstQuota``, sstRelationship owner UIDs and the
    three provisioning attributes. The function is pure: it talks to no server.

    Args:
        uid: the account's uid (also its RDN and cn).
        base_dn: the DN the entry goes under, usually ``Slapd.accounts_dn``.
        uid_number: uidNumber; default the uid when it is numeric, else 10000.
        gid_number: gidNumber; default the uidNumber.
        mode: sstProvisioningMode.
        state: sstProvisioningState.
        date: the provisioning date value (``0`` or ``YYYYMMDD``).
        date_attribute: ``sstProvisioningExecutionDate`` (stoney schema,
            INTEGER) or ``sstProvisioningDate`` (the documentation's name,
            a string; only in our own schema).
        quota: sstQuota in bytes; None leaves it out.
        intervals: retention counts by ``hourly``/``daily``/``weekly``/
            ``monthly``/``yearly``; missing keys take the defaults 0, 7, 4, 3, 0.
        active: sstIsActive TRUE or FALSE.
        home_directory: homeDirectory, normally the jailkit form
            ``<root>/7/707/723/3723707/chroot/./home/3723707``
            (see :func:`jailkit_home_directory`). None means "no homeDirectory":
            since posixAccount requires one, the entry then carries
            extensibleObject instead of posixAccount (see ``omit``).
        extra: attributes merged in last, replacing generated attributes of the
            same name (names compare case-insensitively), e.g.
            ``{"sstProvisioningReturnValue": ["3"]}``.
        omit: attribute names to leave out, for malformed-entry tests. The
            schema would reject an entry lacking a MUST attribute, so every
            object class that requires an omitted attribute is dropped and
            ``extensibleObject`` is added instead: the entry keeps all its other
            attributes and is accepted, just without e.g. ``uidNumber``. Tests
            that need the entry to keep its classes must load it offline with
            ``Slapd.load_ldif_offline(..., check_schema=False)``.

    Returns:
        ``(dn, attributes)`` with the DN ``uid=<uid>,<base_dn>`` and every
        value a string.

    Raises:
        ValueError: an unknown ``date_attribute``, an unknown interval name, an
            empty uid, or omitting ``uid`` or ``objectClass`` (the RDN needs uid).
    """
    if not uid:
        raise ValueError("uid must not be empty")
    if date_attribute not in DATE_ATTRIBUTES:
        raise ValueError(f"date_attribute must be one of {DATE_ATTRIBUTES}, not {date_attribute!r}")
    counts = dict(DEFAULT_INTERVALS)
    for interval, count in (intervals or {}).items():
        if interval not in counts:
            raise ValueError(f"unknown interval {interval!r}, expected one of {tuple(counts)}")
        counts[interval] = count
    omitted = {name.lower() for name in omit}
    if home_directory is None:
        omitted.add("homedirectory")
    if omitted & {"uid", "objectclass"}:
        raise ValueError("uid and objectClass cannot be omitted (uid names the entry)")

    if uid_number is None:
        uid_number = int(uid) if uid.isascii() and uid.isdigit() else 10000
    if gid_number is None:
        gid_number = uid_number
    provisioning_class = (
        "sstProvisioning" if date_attribute == "sstProvisioningExecutionDate"
        else "provbackupProvisioning"
    )  # fmt: skip
    classes = ["account", "posixAccount", "shadowAccount", "sstBackup", "sstRelationship",
               provisioning_class]  # fmt: skip

    def boolean(value: bool) -> list[str]:
        return ["TRUE" if value else "FALSE"]

    attributes: dict[str, list[str]] = {
        "objectClass": classes,
        "uid": [uid],
        "cn": [uid],
        "uidNumber": [str(uid_number)],
        "gidNumber": [str(gid_number)],
        "homeDirectory": [home_directory or ""],
        "loginShell": ["/usr/sbin/jk_chrootsh"],
        "sstBackupIntervalHourly": [str(counts["hourly"])],
        "sstBackupIntervalDaily": [str(counts["daily"])],
        "sstBackupIntervalWeekly": [str(counts["weekly"])],
        "sstBackupIntervalMonthly": [str(counts["monthly"])],
        "sstBackupIntervalYearly": [str(counts["yearly"])],
        "sstBackupWarningDays": ["3"],
        "sstBackupWarningNumbers": ["3"],
        "sstBackupWarningOn": boolean(True),
        "sstNotificationWarningLevel": ["85"],
        "sstNotificationWarningMedium": ["mail"],
        "sstUseSelfcare": boolean(True),
        "sstUseSSH": boolean(True),
        "sstIsActive": boolean(active),
        "sstQuota": [str(quota)],
        "sstBelongsToResellerUID": ["4000000"],
        "sstBelongsToCustomerUID": ["4000001"],
        "sstBelongsToPersonUID": ["4000002"],
        "sstProvisioningMode": [mode],
        "sstProvisioningState": [state],
        date_attribute: [date],
    }
    if quota is None:
        omitted.add("sstquota")

    if omitted:
        dropped = [name for name in classes if _REQUIRED_LOWER[name] & omitted]
        if dropped:
            classes[:] = [name for name in classes if name not in dropped]
            classes.append("extensibleObject")
        attributes = {
            name: values for name, values in attributes.items() if name.lower() not in omitted
        }
    for name, values in (extra or {}).items():
        for existing in [key for key in attributes if key.lower() == name.lower()]:
            del attributes[existing]
        attributes[name] = [str(value) for value in values]
    return f"uid={escape_rdn(uid)},{base_dn}", attributes


# RFC 2849: a value must be base64-encoded if it is not ASCII, holds NUL, LF or
# CR, starts with space, colon or "<" or (our choice, for safety) ends with space.
_UNSAFE_LDIF_VALUE = re.compile(r"[^\x01-\x09\x0b\x0c\x0e-\x7f]|^[ :<]| $")


def _ldif_line(name: str, value: str | bytes | int) -> str:
    """Format one ``name: value`` LDIF line, base64-encoding unsafe values (RFC 2849)."""
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return f"{name}:: {base64.b64encode(value).decode('ascii')}"
    else:
        text = str(value)
    if text and _UNSAFE_LDIF_VALUE.search(text):
        return f"{name}:: {base64.b64encode(text.encode('utf-8')).decode('ascii')}"
    return f"{name}: {text}"


def entries_to_ldif(entries: Iterable[Entry]) -> str:
    """Turn entries into LDIF content records (for slapadd or ldapadd).

    Args:
        entries: ``(dn, {attribute: [values]})`` pairs; values may be str,
            bytes or int. Unsafe values (non-ASCII, leading space, ...) are
            base64-encoded.

    Returns:
        The LDIF text, one record per entry, separated by blank lines.
    """
    records = []
    for dn, attributes in entries:
        lines = [_ldif_line("dn", dn)]
        for name, values in attributes.items():
            lines.extend(_ldif_line(name, value) for value in values)
        records.append("\n".join(lines) + "\n")
    return "\n".join(records)


def _suffix_entry(suffix: str) -> Entry:
    """Return the entry for the suffix itself, from the type of its first RDN."""
    first = suffix.split(",", 1)[0]
    attribute, _, value = first.partition("=")
    attribute = attribute.strip().lower()
    if attribute == "dc":
        return suffix, {"objectClass": ["dcObject", "organization"], "dc": [value], "o": [value]}
    if attribute == "o":
        return suffix, {"objectClass": ["organization"], "o": [value]}
    if attribute == "ou":
        return suffix, {"objectClass": ["organizationalUnit"], "ou": [value]}
    raise ValueError(f"cannot build an entry for the suffix {suffix!r} (use dc=, o= or ou=)")


def hashed_password(password: str) -> str:
    """Return ``password`` as a salted SHA-1 userPassword (``{SSHA}...``), like slappasswd."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def bind_account_entry(suffix: str, password: str) -> Entry:
    """Return the entry of provbackup's bind DN, ``cn=provbackup,ou=services,<suffix>``.

    An organizationalRole with a hashed userPassword (simpleSecurityObject),
    the usual shape of a service account; what it may do is the ACL's business.
    """
    return f"{BIND_ACCOUNT_RDNS},{suffix}", {
        "objectClass": ["organizationalRole", "simpleSecurityObject"],
        "cn": ["provbackup"],
        "description": ["provbackup: provisions the online-backup accounts"],
        "userPassword": [hashed_password(password)],
    }


def base_entries(suffix: str, *, bind_password: str | None = None) -> list[Entry]:
    """Return the suffix entry, ``ou=services``, ``ou=backup`` and ``ou=accounts``, parents first.

    Args:
        suffix: the database suffix.
        bind_password: when given, provbackup's bind DN entry
            (:func:`bind_account_entry`) is included with this password.

    Raises:
        ValueError: the suffix's first RDN is not dc=, o= or ou=.
    """
    entries = [_suffix_entry(suffix)]
    parent = suffix
    for name in reversed(ACCOUNTS_RDNS.split(",")):
        parent = f"{name},{parent}"
        entries.append((parent, {"objectClass": ["organizationalUnit"],
                                 "ou": [name.split("=", 1)[1]]}))  # fmt: skip
        if name == "ou=services" and bind_password is not None:
            entries.append(bind_account_entry(suffix, bind_password))
    return entries
