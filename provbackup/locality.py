"""Which backup server holds an account: many servers, one directory.

An account belongs to the server that added it. That server records its
name (``[backup] server_name``, default the host's FQDN) in the entry's
``[ldap] server_attribute`` (default ``host``, of the ``account`` object
class every stoney account entry carries, so the schema stays unchanged)
and in the account's ownership record on disk (``A/.provbackup-owner``).

:func:`holder` says, purely, who holds an entry from what the entry says
and whether this server has its account directory; :func:`may_claim` says
whether this server may claim a request of that verb. Nothing here talks
to LDAP or the filesystem.
"""

from __future__ import annotations

import enum
import functools
import socket
from dataclasses import dataclass

from provbackup.config import Config
from provbackup.errors import UsageError
from provbackup.ldapentry import LdapEntry
from provbackup.model import Changes, Operation, Verb


class Holder(enum.StrEnum):
    """Who holds an account, as this server sees it."""

    THIS = "this server"
    OTHER = "another server"
    NONE = "no server"


@dataclass(frozen=True)
class Locality:
    """Who holds an entry's account: ``holder``, the other server's name(s), and why."""

    holder: Holder
    reason: str
    others: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        """How scan and show say it: ``held by another server (backup2)``."""
        names = f" ({', '.join(self.others)})" if self.others else ""
        return f"held by {self.holder}{names}"


def server_name(config: Config) -> str:
    """This server's name: ``[backup] server_name``, or the host's fully qualified name."""
    return config.backup.server_name or _fqdn()


@functools.cache
def _fqdn() -> str:
    """The host's fully qualified name, looked up once per process (it may ask DNS)."""
    return socket.getfqdn()


def servers_of(entry: LdapEntry, config: Config) -> tuple[str, ...]:
    """The server names the entry records (``[ldap] server_attribute``); () when none."""
    attribute = config.ldap.server_attribute
    return entry.values(attribute) if attribute else ()


def holder(entry: LdapEntry, config: Config, *, tree_here: bool) -> Locality:
    """Say who holds ``entry``'s account.

    The directory decides where it names a server: this one (among the
    values, compared without case) or another. Where it names none (an
    entry from before, or ``server_attribute`` empty), the disk decides:
    ``tree_here`` (this server has the account directory) is this server,
    else no server holds it.
    """
    me = server_name(config)
    named = servers_of(entry, config)
    attribute = config.ldap.server_attribute
    if named:
        if me.casefold() in (name.casefold() for name in named):
            return Locality(Holder.THIS, f"{attribute} names this server ({me})")
        return Locality(
            Holder.OTHER,
            f"{attribute} names {', '.join(named)}, not this server ({me})",
            named,
        )
    where = f"no {attribute} value" if attribute else "[ldap] server_attribute is empty"
    if tree_here:
        return Locality(Holder.THIS, f"{where}; its account directory is on this server")
    return Locality(
        Holder.NONE,
        f"{where} and no account directory on this server ({me}): no server is known to hold it",
    )


def may_claim(verb: Verb, locality: Locality) -> str | None:
    """Why this server must not claim a ``verb`` request, or None when it may.

    An add is claimed unless another server holds the account (the servers
    whose filter selects it race for it; the compare-and-swap decides). A
    modify or delete only by the server holding it: anything else would
    fail it, or build a second, empty account.
    """
    if locality.holder is Holder.THIS:
        return None
    if locality.holder is Holder.OTHER:
        return (
            f"{locality.shown}: {locality.reason}; not claimed here "
            "(README 'Many backup servers, one directory')"
        )
    if verb is Verb.ADD:
        return None
    return (
        f"{locality.shown}: {locality.reason}; a {verb} is not claimed here, since its "
        "account may live on a server that does not say so (a modify would build a second, "
        "empty account; a delete would leave the real one): an operator decision: "
        "'provbackup reset --take-over' on the server that holds it (README 'Moving an "
        "account')"
    )


def claim_extra(verb: Verb, entry: LdapEntry, config: Config) -> Changes:
    """What a claim of ``verb`` also writes: this server's name where the entry names none.

    A delete records nothing (the finish removes the name).
    """
    attribute = config.ldap.server_attribute
    if not attribute or verb is Verb.DELETE or servers_of(entry, config):
        return {}
    return {attribute: [(Operation.ADD, [server_name(config)])]}


def release_changes(entry: LdapEntry, config: Config) -> Changes:
    """What a finished delete also writes: this server's name removed from the entry."""
    attribute = config.ldap.server_attribute
    me = server_name(config).casefold()
    mine = [name for name in servers_of(entry, config) if name.casefold() == me]
    if not attribute or not mine:
        return {}
    return {attribute: [(Operation.DELETE, mine)]}


def take_over_changes(config: Config) -> Changes:
    """What ``reset --take-over`` writes: this server as the only one holding the entry.

    Raises UsageError when ``[ldap] server_attribute`` is empty (the disk
    decides then: move the tree itself).
    """
    attribute = config.ldap.server_attribute
    if not attribute:
        raise UsageError(
            "--take-over needs [ldap] server_attribute: without it the account directory on "
            "disk says which server holds an account (README 'Moving an account')"
        )
    return {attribute: [(Operation.REPLACE, [server_name(config)])]}
