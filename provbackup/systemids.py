"""The IDs of the system's own accounts, read from the local files, not NSS.

Customer accounts reach the system through NSS (nslcd from LDAP, or
libnss-extrausers), never through ``/etc/passwd`` and ``/etc/group``: an
entry whose uidNumber or gidNumber is in those files (or is 65534, nobody
and nogroup) would hand a system account's files or a system group's
quota to a customer. NSS is not asked on purpose: it would answer with
the customer accounts themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PASSWD_FILE = Path("/etc/passwd")
GROUP_FILE = Path("/etc/group")
NOBODY = 65534


@dataclass(frozen=True)
class SystemIds:
    """The uids of ``/etc/passwd`` and the gids of ``/etc/group`` (65534 always in both)."""

    uids: frozenset[int]
    gids: frozenset[int]


def read_system_ids(passwd: Path = PASSWD_FILE, group: Path = GROUP_FILE) -> SystemIds:
    """Read the numeric IDs (third field) of ``passwd`` and ``group``.

    A missing or unreadable file is logged and taken as empty (65534 is
    still refused): provbackup must not stop because a container has no
    /etc/group. Malformed lines are skipped.
    """
    return SystemIds(
        uids=frozenset({NOBODY, *_third_fields(passwd)}),
        gids=frozenset({NOBODY, *_third_fields(group)}),
    )


def _third_fields(path: Path) -> set[int]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        log.warning("%s: cannot read the system's IDs: %s", path, error.strerror or error)
        return set()
    numbers = set()
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2].isascii() and fields[2].isdigit() and len(fields[2]) < 11:
            numbers.add(int(fields[2]))
    return numbers
