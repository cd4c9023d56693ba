"""A claim read back from the other claim providers before any work starts.

With ``[ldap] claim_uri`` naming one provider, every claim is decided by
that one server's compare-and-swap. Naming more (``claim_uri = P1 P2``)
lets claims fail over to P2 when P1 is down, and opens one window: a claim
P1 acknowledged just before it died, not yet replicated, is missing on P2,
where another host may claim and work the same entry. So a run that may
fail over first reads each claim back from every other claim provider that
answers, until it shows the claim (the in-progress mode and, where the
entry carries one, this server's name), for at most ``[ldap]
claim_verify_timeout`` seconds. A claim that never shows is not worked on:
the entry stays in progress (``scan``: interrupted) for an operator.
A provider that does not answer at the start of the run, or goes away
during it, is down: it is not asked (nobody claims on it meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from provbackup.closing import Closing
from provbackup.config import Config
from provbackup.directory import LdapDirectory, connect
from provbackup.errors import LdapUnavailableError
from provbackup.locality import server_name, servers_of
from provbackup.model import MODE, Verb

log = logging.getLogger(__name__)

POLL_SECONDS = 0.005


class ClaimVerifier(Closing):
    """Connections to the claim providers other than ``writer_uri``; use as a context manager."""

    def __init__(self, config: Config, writer_uri: str) -> None:
        self.config = config
        self.timeout = config.ldap.claim_verify_timeout
        self.peers: list[LdapDirectory] = []
        once = dataclasses.replace(config.ldap, attempts=1, retry_delay=0.0)
        for uri in config.ldap.claim_uris:
            if uri == writer_uri:
                continue
            try:
                self.peers.append(connect(dataclasses.replace(once, uris=(uri,))))
            except LdapUnavailableError as error:
                log.warning("claim provider %s is down, claims are not read back from it: %s",
                            uri, error)  # fmt: skip

    def close(self) -> None:
        """Close the connection to every peer (twice is harmless)."""
        for peer in self.peers:
            peer.close()

    def confirm(self, dn: str, verb: Verb) -> str | None:
        """Wait until every peer shows this server's claim of ``verb`` on ``dn``.

        Returns None when each does (or none is left to ask), else why not:
        the peer shows another claim, or nothing within the timeout.
        """
        me = server_name(self.config).casefold()
        for peer in list(self.peers):
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    entry = peer.read(dn)
                except LdapUnavailableError as error:
                    log.warning("claim provider %s went away, no longer asked: %s", peer.uri, error)
                    self.peers.remove(peer)
                    break
                if entry is not None and verb.in_progress in entry.values(MODE):
                    named = [name.casefold() for name in servers_of(entry, self.config)]
                    if not named or me in named or verb is Verb.DELETE:
                        break
                    return (
                        f"claim provider {peer.uri} shows another server's claim "
                        f"({', '.join(named)}): not worked on here"
                    )
                if time.monotonic() > deadline:
                    return (
                        f"the claim did not reach claim provider {peer.uri} within "
                        f"{self.timeout:g} s ([ldap] claim_verify_timeout): not worked on, so "
                        "no other host can work it too; once replication is back, reset it"
                    )
                time.sleep(POLL_SECONDS)
        return None
