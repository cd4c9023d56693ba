"""Talk to the LDAP directory: connect with failover, search page by page, modify.

This module and :mod:`provbackup.ldapconnect` (opening, StartTLS and the
bind) are the ones that talk through ldap3. Every search is logged at
debug level as the equivalent ``ldapsearch`` command line (the password
shown as a placeholder), so an operator can replay it by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_exceptions

from provbackup.closing import Closing
from provbackup.config import LdapConfig
from provbackup.entry import READ_ATTRIBUTES, LdapEntry
from provbackup.errors import BaseDnMissingError, LdapUnavailableError
from provbackup.ldapconnect import BindRefused, ConnectFailed, open_connection
from provbackup.ldapnames import is_below
from provbackup.model import MODE, RETURN_VALUE, STATE, Changes, Operation

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = 49
NO_SUCH_OBJECT = 32
NO_SUCH_ATTRIBUTE = 16
INSUFFICIENT_ACCESS = 50
STRONGER_AUTH_REQUIRED = 8  # slapd's answer to an anonymous write
SYNC_CONTROL = "1.3.6.1.4.1.4203.1.9.1.1"  # RFC 4533: a server running syncprov offers it
_OPERATIONS = {
    Operation.ADD: ldap3.MODIFY_ADD,
    Operation.DELETE: ldap3.MODIFY_DELETE,
    Operation.REPLACE: ldap3.MODIFY_REPLACE,
}


@dataclass
class ModifyResult:
    """What the server answered to a modify: ``ok`` or the result code and message."""

    ok: bool
    code: int
    message: str

    @property
    def conflict(self) -> bool:
        """True when the entry changed (or vanished) since it was read."""
        return self.code in (NO_SUCH_ATTRIBUTE, NO_SUCH_OBJECT)


class LdapDirectory(Closing):
    """A bound connection to one of the configured servers.

    Counts searches, returned entries and modifies so a run can report the
    cost it put on the server.
    """

    def __init__(self, config: LdapConfig, connection: ldap3.Connection, uri: str) -> None:
        self.config = config
        self.connection = connection
        self.uri = uri
        self.searches = 0
        self.entries_returned = 0
        self.modifies = 0
        extra = config.server_attribute
        known = {name.lower() for name in READ_ATTRIBUTES}
        self.read_attributes = READ_ATTRIBUTES + (
            (extra,) if extra and extra.lower() not in known else ()
        )

    def close(self) -> None:
        """Unbind; errors on a dead connection are ignored."""
        try:
            self.connection.unbind()
        except Exception:  # the connection may be gone already
            log.debug("unbind failed", exc_info=True)

    def search(
        self,
        search_filter: str,
        *,
        base: str | None = None,
        scope: str = "sub",
        attributes: tuple[str, ...] | None = None,
    ) -> Iterator[LdapEntry]:
        """Yield the entries matching ``search_filter``, fetched page by page.

        ``base`` defaults to the configured base DN; ``scope`` is ``sub`` or
        ``base``. A base search of a DN that does not exist yields nothing.
        Raises BaseDnMissingError (78) when the base of a subtree search does
        not exist (a wrong ``[ldap] base_dn`` must not look like "nothing to
        do"), LdapUnavailableError when the server goes away and
        ProvbackupError-derived errors for a refused search.
        """
        base = base or self.config.base_dn
        attributes = attributes or self.read_attributes
        self.searches += 1
        log.debug("%s", self._ldapsearch_line(search_filter, base, scope, attributes))
        ldap_scope = ldap3.BASE if scope == "base" else ldap3.SUBTREE
        try:
            results = self.connection.extend.standard.paged_search(
                search_base=base,
                search_filter=search_filter,
                search_scope=ldap_scope,
                dereference_aliases=ldap3.DEREF_NEVER,
                attributes=list(attributes),
                paged_size=self.config.page_size,
                generator=True,
            )
            for result in results:
                if result.get("type") != "searchResEntry":
                    continue
                self.entries_returned += 1
                yield LdapEntry.from_values(
                    result["dn"],
                    {
                        name: [value.decode("utf-8", "replace") for value in values]
                        for name, values in result["raw_attributes"].items()
                    },
                )
        except ldap_exceptions.LDAPOperationResult as error:
            if error.result == NO_SUCH_OBJECT:
                self._no_such_base(base, scope, getattr(error, "dn", None))
                return
            raise LdapUnavailableError(
                f"LDAP search under {base!r} failed: {error.description} ({error.message})"
            ) from None
        except ldap_exceptions.LDAPException as error:
            raise LdapUnavailableError(
                f"LDAP server {self.uri} failed during a search: {error}"
            ) from None
        self._check_search_result(base, scope)

    def _check_search_result(self, base: str, scope: str) -> None:
        result = self.connection.result or {}
        code = result.get("result", 0)
        if code == NO_SUCH_OBJECT:
            self._no_such_base(base, scope, result.get("dn"))
        elif code != 0:
            raise LdapUnavailableError(
                f"LDAP search under {base!r} failed: {result.get('description')} "
                f"({result.get('message')})"
            )

    def _no_such_base(self, base: str, scope: str, matched: object) -> None:
        """Raise BaseDnMissingError for a subtree search; a base search just found nothing."""
        if scope == "base":
            return
        known = f" (the nearest existing entry is {matched!r})" if matched else ""
        raise BaseDnMissingError(
            f"base DN {base!r} does not exist on {self.uri}{known}: check [ldap] base_dn"
        )

    def read(self, dn: str) -> LdapEntry | None:
        """Return the entry at ``dn`` (base search), or None when it does not exist."""
        for entry in self.search("(objectClass=*)", base=dn, scope="base"):
            return entry
        return None

    def modify(self, dn: str, changes: Changes) -> ModifyResult:
        """Send one modify request with ``changes``; returns the server's answer.

        Raises LdapUnavailableError when the connection is lost; a refused
        modify is returned, not raised, since the caller decides what a
        conflict means.
        """
        self.modifies += 1
        ldap_changes = {
            attribute: [(_OPERATIONS[operation], values) for operation, values in operations]
            for attribute, operations in changes.items()
        }
        try:
            self.connection.modify(dn, ldap_changes)  # type: ignore[no-untyped-call]
        except ldap_exceptions.LDAPException as error:
            raise LdapUnavailableError(
                f"LDAP server {self.uri} failed during a modify of {dn!r}: {error}"
            ) from None
        result = self.connection.result or {}
        code = int(result.get("result", 0))
        message = str(result.get("description", "")) + (
            f" ({result['message']})" if result.get("message") else ""
        )
        if code in (INSUFFICIENT_ACCESS, STRONGER_AUTH_REQUIRED):
            message += "; " + self._write_access_hint(list(changes))
        if code != 0:
            log.debug("modify of %s refused: %s", dn, message)
        return ModifyResult(ok=code == 0, code=code, message=message)

    def replication_facts(self) -> tuple[bool, frozenset[str]]:
        """Whether this server offers syncprov, and the server IDs that wrote its data.

        Reads the root DSE (the sync request control, RFC 4533) and the
        ``contextCSN`` of the naming context holding the base DN: a
        multi-provider pair carries one CSN per provider that wrote. Returns
        (False, empty) for what cannot be read; raises LdapUnavailableError
        when the server goes away.
        """
        try:
            self.connection.search(
                "", "(objectClass=*)", ldap3.BASE,
                attributes=["supportedControl", "namingContexts"],
            )  # fmt: skip
            root = self.connection.response[0]["attributes"] if self.connection.response else {}
            syncprov = SYNC_CONTROL in (root.get("supportedControl") or ())
            contexts = [ctx for ctx in root.get("namingContexts") or () if is_below(
                self.config.base_dn, ctx)]  # fmt: skip
            ids: set[str] = set()
            for context in contexts:
                self.connection.search(context, "(objectClass=*)", ldap3.BASE,
                                       attributes=["contextCSN"])  # fmt: skip
                for found in self.connection.response or ():
                    for csn in found.get("attributes", {}).get("contextCSN") or ():
                        parts = str(csn).split("#")
                        ids.update(parts[2:3])
        except ldap_exceptions.LDAPException as error:
            raise LdapUnavailableError(f"LDAP server {self.uri} failed: {error}") from None
        return syncprov, frozenset(ids)

    def _write_access_hint(self, written: list[str]) -> str:
        """Which attributes the bind DN must be allowed to write, for a refused modify."""
        if MODE in written:  # a provisioning write: name every attribute process and reset write
            date = (
                "sstProvisioningExecutionDate (or sstProvisioningDate)"
                if self.config.date_attribute == "auto"
                else self.config.date_attribute
            )
            written = [MODE, STATE, date, RETURN_VALUE]
            if self.config.server_attribute:
                written.append(self.config.server_attribute)
        who = repr(self.config.bind_dn) if self.config.bind_dn else "an anonymous bind"
        return (
            f"{who} needs write access to {', '.join(written)} below "
            f"{self.config.base_dn!r} (see the example ACL slapd-acl.conf)"
        )

    def _ldapsearch_line(
        self, search_filter: str, base: str, scope: str, attributes: tuple[str, ...]
    ) -> str:
        words = ["ldapsearch", "-LLL", "-H", self.uri, "-x"]
        if self.config.start_tls and self.uri.lower().startswith("ldap://"):
            words.append("-ZZ")
        if self.config.bind_dn:
            words += ["-D", self.config.bind_dn, "-W"]
        words += ["-b", base, "-s", scope, "-a", "never"]
        if scope != "base":
            words += ["-E", f"pr={self.config.page_size}/noprompt"]
        words.append(search_filter)
        words += attributes
        return "equivalent: " + " ".join(shlex.quote(word) for word in words)


def connect(config: LdapConfig) -> LdapDirectory:
    """Connect and bind to the first configured server that answers.

    Tries every URI in order, ``attempts`` rounds in all, sleeping
    ``retry_delay`` seconds between rounds. Only network trouble is
    retried: a URI that failed deterministically (StartTLS not offered, a
    certificate that does not verify, a bind refused for anything but
    invalid credentials) is not tried again, and when every URI failed so
    the error is raised at once. Invalid credentials end the attempts at
    once (a wrong password does not get better, and retries could lock the
    account). Returns a bound :class:`LdapDirectory`. Raises
    LdapUnavailableError when no URI could be bound.
    """
    last_error = "no LDAP URI configured"
    given_up: dict[str, str] = {}  # URI -> its deterministic failure
    for attempt in range(1, config.attempts + 1):
        for uri in config.uris:
            if uri in given_up:
                continue
            try:
                connection = open_connection(config, uri)
            except BindRefused as error:
                raise LdapUnavailableError(str(error)) from None
            except ConnectFailed as error:
                last_error = str(error)
                if error.deterministic:
                    given_up[uri] = last_error
                    log.warning("LDAP %s (not retried: retrying cannot change it)", last_error)
                else:
                    log.warning("LDAP attempt %d/%d: %s", attempt, config.attempts, last_error)
                continue
            log.debug("bound to %s as %s", uri, config.bind_dn or "anonymous")
            return LdapDirectory(config, connection, uri)
        if len(given_up) == len(config.uris):
            raise LdapUnavailableError("; ".join(given_up.values()))
        if attempt < config.attempts and config.retry_delay:
            time.sleep(config.retry_delay)
    raise LdapUnavailableError(
        f"LDAP unavailable after {config.attempts} attempt(s) on "
        f"{', '.join(config.uris)}: {last_error}"
    )


@contextlib.contextmanager
def claim_directory(config: LdapConfig, directory: LdapDirectory) -> Iterator[LdapDirectory]:
    """The directory every claim and write-back of a run goes to.

    ``directory`` itself unless ``[ldap] claim_uri`` is set; then a second
    connection to the first claim URI that answers (failing over to the
    next only when it cannot be bound), closed at the end. Raises
    LdapUnavailableError when no claim URI can be bound.
    """
    if not config.claim_uris:
        yield directory
        return
    writer = connect(dataclasses.replace(config, uris=config.claim_uris))
    log.debug("claims and write-backs go to %s", writer.uri)
    try:
        yield writer
    finally:
        writer.close()
