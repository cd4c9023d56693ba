"""``check``'s view of many servers on one directory: the claim rule and this server's filter.

Two findings, both warnings:

- the configured URIs are providers of one multi-provider (mirror mode)
  pair and no claim rule (``[ldap] claim_uri``) is set: two hosts writing
  to two providers can then both claim one entry (docs/safety.md "Many
  servers, one directory");
- an entry this server holds (``[ldap] server_attribute`` names it) no
  longer matches ``[ldap] filter``: this server would never work on it again.
"""

from __future__ import annotations

import dataclasses
import logging

from provbackup.actions.verdict import CheckResult, CheckState
from provbackup.config import Config
from provbackup.directory import connect
from provbackup.errors import ProvbackupError
from provbackup.ldapnames import escape
from provbackup.locality import server_name
from provbackup.model import MODE

log = logging.getLogger(__name__)


def replication_findings(config: Config) -> list[str]:
    """The warnings above for ``config``; what cannot be read is left out (logged at debug)."""
    findings: list[str] = []
    uris = tuple(dict.fromkeys((*config.ldap.uris, *config.ldap.claim_uris)))
    providers: list[str] = []
    writers: set[str] = set()
    for uri in uris:
        try:
            with connect(dataclasses.replace(config.ldap, uris=(uri,))) as directory:
                syncprov, ids = directory.replication_facts()
        except ProvbackupError as error:
            log.debug("%s: not asked about replication: %s", uri, error)
            continue
        if syncprov:
            providers.append(uri)
        writers |= ids
    multi = len(writers) > 1 or len(providers) > 1
    if multi and not config.ldap.claim_uris:
        seen = ", ".join(providers) or ", ".join(uris)
        findings.append(
            f"the directory is replicated between several providers ({seen}; "
            f"{len(writers)} server IDs wrote to it) and no claim rule is set: two hosts "
            "claiming on two providers can both work one entry; set [ldap] claim_uri "
            "(docs/safety.md 'Many servers, one directory')"
        )
    findings += _held_but_unmatched(config)
    return findings


def _held_but_unmatched(config: Config) -> list[str]:
    """Entries naming this server that ``[ldap] filter`` no longer selects."""
    attribute, user_filter = config.ldap.server_attribute, config.ldap.filter
    if not attribute or not user_filter:
        return []
    me = escape(server_name(config))
    search_filter = f"(&({MODE}=*)({attribute}={me})(!{user_filter}))"
    try:
        with connect(config.ldap) as directory:
            lost = [entry.dn for entry in directory.search(search_filter)]
    except ProvbackupError as error:
        log.debug("not checked against [ldap] filter: %s", error)
        return []
    if not lost:
        return []
    shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
    return [
        f"{len(lost)} entries held by this server ({server_name(config)}) no longer match "
        f"[ldap] filter, so no run works on them: {shown}"
    ]


def with_replication(result: CheckResult, findings: list[str]) -> CheckResult:
    """Add the findings to a verdict: each one turns OK into WARNING."""
    if not findings:
        return result
    state = CheckState.WARNING if result.state == CheckState.OK else result.state
    return CheckResult(state, "; ".join([result.summary, *findings]), result.perfdata)
