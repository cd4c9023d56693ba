"""One RFC 4533 refreshAndPersist search, through python-ldap's ``ldap.syncrepl``.

The only module (with :mod:`provbackup.watch.follower`) that imports
python-ldap: the other commands run without it. ldap3 has no codec for the
Sync Request and Sync State controls or the Sync Info intermediate message
and its synchronous strategies wait for the search's end, which a persist
search never reaches (docs/architecture.md, "The follower").

:func:`open_sync` opens and binds one connection the way
:mod:`provbackup.ldapconnect` does (StartTLS, the CA file, the timeouts);
:func:`follow` runs the search on it and hands what arrives to a
:class:`SyncSink` until it is told to stop or the connection ends. No
cookie is ever kept: every search starts with a full refresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import ldap
import ldap.ldapobject
import ldap.syncrepl

from provbackup.config import LdapConfig

# e-syncRefreshRequired (RFC 4533 3.3.2): the server ended the search; refresh in full.
SYNC_REFRESH_REQUIRED = 4096
# Keep-alive probes so a connection the network dropped silently is noticed.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 10, 3


class SyncSink(Protocol):
    """What receives a sync search's messages (called from the follower's thread)."""

    def entry(self, dn: str, attributes: dict[str, list[bytes]]) -> None:
        """An entry added or changed (or present at the refresh): its DN and attributes."""

    def gone(self, count: int) -> None:
        """``count`` entries left the search's scope (deleted or no longer matching)."""

    def refreshed(self) -> None:
        """The refresh phase is over: from now on, changes as they happen."""


class SearchRefused(Exception):
    """The server refused the search itself (no such base, a bad filter, no syncprov, a bind).

    Trying again cannot help until the configuration or the server changes.
    """


class ConnectionLost(Exception):
    """The connection could not be opened, or it or the search ended; worth retrying."""


class _Consumer(ldap.syncrepl.SyncreplConsumer, ldap.ldapobject.SimpleLDAPObject):  # type: ignore[misc]
    """A python-ldap connection that passes the sync messages to a sink."""

    def __init__(self, uri: str, sink: SyncSink) -> None:
        ldap.ldapobject.SimpleLDAPObject.__init__(self, uri)
        self.sink = sink

    def syncrepl_entry(self, dn: str, attributes: dict[str, list[bytes]], uuid: str) -> None:
        self.sink.entry(dn, attributes)

    def syncrepl_delete(self, uuids: list[str]) -> None:
        self.sink.gone(len(uuids))

    def syncrepl_present(self, uuids: list[str] | None, refreshDeletes: bool = False) -> None:
        return None

    def syncrepl_refreshdone(self) -> None:
        self.sink.refreshed()

    def syncrepl_get_cookie(self) -> None:
        return None  # never resumed: a full refresh on every connection

    def syncrepl_set_cookie(self, cookie: str) -> None:
        return None


def _describe(error: ldap.LDAPError) -> str:
    """One line from python-ldap's error dictionary: description (info)."""
    details: Any = error.args[0] if error.args else {}
    if not isinstance(details, dict):
        return str(error)
    text = str(details.get("desc") or type(error).__name__)
    info = details.get("info")
    if info:
        text += f" ({info.decode() if isinstance(info, bytes) else info})"
    return text


# Errors the server (or libldap, for a filter) answers the search or bind with
# that no retry changes.
_REFUSALS = (
    ldap.NO_SUCH_OBJECT,
    ldap.FILTER_ERROR,
    ldap.INVALID_DN_SYNTAX,
    ldap.UNAVAILABLE_CRITICAL_EXTENSION,
    ldap.INVALID_CREDENTIALS,
    ldap.INSUFFICIENT_ACCESS,
    ldap.CONFIDENTIALITY_REQUIRED,
)


def close(connection: _Consumer) -> None:
    """Unbind ``connection``; a connection already gone is no error."""
    with contextlib.suppress(ldap.LDAPError):
        connection.unbind_ext_s()


def open_sync(config: LdapConfig, uri: str, sink: SyncSink) -> _Consumer:
    """Open ``uri`` (StartTLS where configured), bind, and return the connection.

    Raises SearchRefused when the bind is refused, ConnectionLost when the
    server cannot be reached or TLS fails.
    """
    connection = _Consumer(uri, sink)
    connection.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    connection.set_option(ldap.OPT_REFERRALS, 0)
    connection.set_option(ldap.OPT_NETWORK_TIMEOUT, config.timeout)
    connection.set_option(ldap.OPT_TIMEOUT, config.timeout)
    for option, value in (
        ("OPT_X_KEEPALIVE_IDLE", KEEPALIVE_IDLE),
        ("OPT_X_KEEPALIVE_INTERVAL", KEEPALIVE_INTERVAL),
        ("OPT_X_KEEPALIVE_PROBES", KEEPALIVE_PROBES),
    ):
        if hasattr(ldap, option):
            connection.set_option(getattr(ldap, option), value)
    connection.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    if config.ca_file is not None:
        connection.set_option(ldap.OPT_X_TLS_CACERTFILE, str(config.ca_file))
    connection.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    try:
        if config.start_tls and uri.lower().startswith("ldap://"):
            connection.start_tls_s()
        connection.simple_bind_s(config.bind_dn or "", config.bind_password or "")
    except _REFUSALS as error:
        close(connection)
        raise SearchRefused(f"{uri}: bind as {config.bind_dn or 'anonymous'!r}: "
                            f"{_describe(error)}") from None  # fmt: skip
    except ldap.LDAPError as error:
        close(connection)
        raise ConnectionLost(f"{uri}: {_describe(error)}") from None
    return connection


def follow(
    connection: _Consumer,
    config: LdapConfig,
    search_filter: str,
    attributes: list[str],
    stopping: Callable[[], bool],
    poll_seconds: float,
) -> None:
    """Run the refreshAndPersist search on ``connection`` until ``stopping()`` is true.

    Entries, deletes and the end of the refresh go to the connection's
    sink as they arrive. Returns when stopping; raises SearchRefused when
    the server refuses the search (no such base, a filter it rejects, no
    syncprov), ConnectionLost when the connection or the search ends
    (e-syncRefreshRequired included).
    """
    uri = connection._uri
    try:
        message_id = connection.syncrepl_search(
            config.base_dn, ldap.SCOPE_SUBTREE, mode="refreshAndPersist",
            filterstr=search_filter, attrlist=attributes,
        )  # fmt: skip
        while not stopping():
            try:
                if not connection.syncrepl_poll(msgid=message_id, timeout=poll_seconds):
                    raise ConnectionLost(f"{uri}: the server ended the sync search")
            except ldap.TIMEOUT:
                continue
    except _REFUSALS as error:
        raise SearchRefused(f"{uri}: the sync search on {config.base_dn!r} with "
                            f"{search_filter!r}: {_describe(error)}") from None  # fmt: skip
    except ldap.LDAPError as error:
        details: Any = error.args[0] if error.args else {}
        if isinstance(details, dict) and details.get("result") == SYNC_REFRESH_REQUIRED:
            raise ConnectionLost(f"{uri}: the server asked for a full refresh "
                                 "(e-syncRefreshRequired)") from None  # fmt: skip
        raise ConnectionLost(f"{uri}: {_describe(error)}") from None
