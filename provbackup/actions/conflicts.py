"""One uid, one account: due entries that share their uid or gidNumber with another entry.

The account directory is derived from the uid, so two entries with one uid
would work on one directory: each fails with 11 and nothing is touched. A
gidNumber shared with another account would share its group quota and the
read access to its snapshots (they are root:gidNumber): refused too.

Found with one LDAP search for the whole batch (paged, like every search),
not one per entry: the due entries' uids, and the accounts (entries with a
uidNumber, so not a posixGroup) holding their gidNumbers, anywhere under
the base DN (not only those the ``[ldap] filter`` picks: an entry meant
for another server still owns its uid in the directory). The directory
should enforce it too (README: slapo-unique).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from provbackup.actions.entrywork import Due
from provbackup.directory import LdapDirectory
from provbackup.errors import UnsafePathError
from provbackup.ldapnames import escape, normalized_dn

log = logging.getLogger(__name__)

ATTRIBUTES = ("uid", "gidNumber")  # what the comparison needs, nothing more to decode
NAMED = 3  # other DNs named in a message


def refuse_shared_ids(directory: LdapDirectory, due: list[Due]) -> list[Due]:
    """Return ``due`` with each entry that shares its uid or gidNumber marked as failing (11).

    A marked entry keeps its place: the worker claims it and records the
    failure (return value 11) without any work on the server, and a dry
    run says it would fail. Raises LdapUnavailableError when LDAP goes away.
    """
    # An entry the gate refused fails on its own problem; the others are checked.
    valid = [item for item in due if item.account is not None]
    uids = sorted({item.account.uid for item in valid if item.account is not None})
    gids = sorted({item.account.gid_number for item in valid if item.account is not None})
    if not uids:
        return due
    parts = "".join(f"(uid={escape(uid)})" for uid in uids)
    if gids:
        shared = "".join(f"(gidNumber={gid})" for gid in gids)
        parts += f"(&(uidNumber=*)(|{shared}))"
    by_uid: dict[str, list[str]] = defaultdict(list)
    by_gid: dict[int, list[str]] = defaultdict(list)
    for entry in directory.search(f"(|{parts})", attributes=ATTRIBUTES):
        for uid in entry.values("uid"):
            by_uid[uid.lower()].append(entry.dn)
        for gid in entry.values("gidNumber"):
            if gid.isascii() and gid.isdigit() and len(gid) <= 10:
                by_gid[int(gid)].append(entry.dn)
    result = []
    for item in due:
        problem = _problem(item, by_uid, by_gid) if item.account is not None else None
        if problem is None:
            result.append(item)
        else:
            log.error("%s: %s", item.dn, problem)
            result.append(replace(item, account=None, problem=UnsafePathError(problem)))
    return result


def _problem(item: Due, by_uid: dict[str, list[str]], by_gid: dict[int, list[str]]) -> str | None:
    uid = item.request.uid
    if uid is None:
        return None
    others = _others(item.dn, by_uid.get(uid.lower(), ()))
    if others:
        return (
            f"uid: {uid!r}: also the uid of {_names(others)}: one uid, one account directory; "
            "nothing was touched; make the uid unique in the directory (README: slapo-unique)"
        )
    if item.account is None:
        return None
    gid = item.account.gid_number
    others = _others(item.dn, by_gid.get(gid, ()))
    if others:
        return (
            f"gidNumber: '{gid}': also the gidNumber of {_names(others)}: the accounts would "
            "share the group quota and each other's snapshots; nothing was touched; give "
            "every account its own gidNumber"
        )
    return None


def _others(dn: str, dns: Iterable[str]) -> list[str]:
    # The server sends one DN the same way each time: parse only when the text differs.
    candidates = list(dict.fromkeys(other for other in dns if other != dn))
    if not candidates:
        return []
    own = normalized_dn(dn)
    return [other for other in candidates if normalized_dn(other) != own]


def _names(dns: Sequence[str]) -> str:
    shown = ", ".join(dns[:NAMED])
    return shown + (f" and {len(dns) - NAMED} more" if len(dns) > NAMED else "")
