"""Pieces the actions share: the clock and finding the entries a command names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

from provbackup.config import Config
from provbackup.directory import LdapDirectory
from provbackup.entry import LdapEntry
from provbackup.errors import NotFoundError, UsageError
from provbackup.filters import account_filter
from provbackup.ldapnames import escape, is_below

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the default clock)."""
    return datetime.now(UTC)


def local_today(clock: Clock) -> date:
    """The server's local date at ``clock()``: dates in the directory are local."""
    return clock().astimezone().date()


def search_named(
    directory: LdapDirectory,
    config: Config,
    *,
    dn: str | None,
    uid: str | None,
    search_filter: str | None = None,
) -> Iterator[LdapEntry]:
    """Yield the entries matching ``search_filter``, narrowed to ``dn`` or ``uid`` if given.

    The uid is escaped into the filter, so no argument can widen the search.
    Raises UsageError for a DN outside ``[ldap] base_dn``.
    """
    search_filter = search_filter or account_filter(config.ldap.filter)
    if uid is not None:
        search_filter = f"(&{search_filter}(uid={escape(uid)}))"
    if dn is None:
        return directory.search(search_filter)
    if not is_below(dn, config.ldap.base_dn):
        raise UsageError(f"{dn!r} is not below the configured base DN {config.ldap.base_dn!r}")
    return directory.search(search_filter, base=dn, scope="base")


def find_entries(
    directory: LdapDirectory,
    config: Config,
    *,
    dn: str | None = None,
    uid: str | None = None,
) -> list[LdapEntry]:
    """Return the provisioned entries named by exactly one of ``dn`` or ``uid``.

    Raises UsageError when both or neither are given or the DN lies outside
    the base, NotFoundError when nothing matches.
    """
    if (dn is None) == (uid is None):
        raise UsageError("give exactly one of --dn DN or a uid")
    entries = list(search_named(directory, config, dn=dn, uid=uid))
    if not entries:
        wanted = f"entry {dn!r}" if dn is not None else f"entry with uid {uid!r}"
        raise NotFoundError(f"no provisioned {wanted} under {config.ldap.base_dn}")
    return entries
