"""Usage write-back of a snapshot run: look accounts up and write their sizes to LDAP.

A refusal, an unreachable directory or a base DN that is gone (renamed, or
hidden by an ACL: noSuchObject) is a warning, never a lost snapshot: the
write-back stops for the rest of the run and ``error``/``exit_code`` say
why (69 unreachable, 78 the base DN).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from provbackup.actions.common import search_named
from provbackup.config import Config
from provbackup.entry import quota_of
from provbackup.errors import ProvbackupError
from provbackup.model import Changes, Operation

if TYPE_CHECKING:
    from provbackup.actions.snapshot_account import AccountResult
    from provbackup.directory import LdapDirectory

log = logging.getLogger(__name__)


class UsageWriter:
    """Looks accounts up and writes their usage back, in the calling thread only."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.directory: LdapDirectory | None = None
        self.error: str | None = None
        self.exit_code: int | None = None
        self.written = 0
        self.refused = 0
        self.dns: dict[str, str] = {}

    def open(self) -> None:
        """Connect to the directory; a failure is kept (usage not written), never raised."""
        from provbackup.directory import connect

        try:
            self.directory = connect(self.config.ldap)
        except ProvbackupError as error:
            self._lost(error)

    def _lost(self, error: ProvbackupError) -> None:
        """Stop the write-back for this run (snapshots go on) and record why."""
        if self.error is None:
            log.warning(
                "usage write-back skipped for the rest of this run, snapshots go on; "
                "usage is written back by a later run: %s",
                error,
            )
        self.error, self.exit_code = str(error), error.exit_code
        self.close()

    def lookup(self, uid: str) -> int | None:
        """Find the account's entry; return its sstQuota (None when unknown).

        Never raises for the directory: an unreachable server or a missing
        base DN ends the write-back for the run (see :meth:`_lost`).
        """
        if self.directory is None:
            return None
        try:
            entries = list(search_named(self.directory, self.config, dn=None, uid=uid))
        except ProvbackupError as error:
            self._lost(error)
            return None
        if len(entries) != 1:
            log.warning(
                "%s: %d entries with this uid in the directory: usage not written back",
                uid,
                len(entries),
            )
            return None
        entry = entries[0]
        self.dns[uid] = entry.dn
        return quota_of(entry)

    def write(self, uid: str, result: AccountResult) -> None:
        """Replace the usage attributes of the account's entry (a refusal is a warning)."""
        dn = self.dns.pop(uid, None)
        if self.directory is None or dn is None or result.usage is None:
            return
        changes: Changes = {
            "sstBackupSize": [(Operation.REPLACE, [str(result.usage.backup)])],
            "sstIncrementSize": [(Operation.REPLACE, [str(result.usage.snapshot)])],
        }
        if result.hosts:
            changes["sstBackupLastSuccessfulBackup"] = [(Operation.REPLACE, list(result.hosts))]
        try:
            answer = self.directory.modify(dn, changes)
        except ProvbackupError as error:
            self._lost(error)
            return
        if answer.ok:
            self.written += 1
            return
        self.refused += 1
        level = logging.WARNING if self.refused == 1 else logging.DEBUG
        log.log(
            level,
            "%s: usage write-back refused by the LDAP server: %s (the snapshot stands; "
            "further refusals this run are counted, not logged)",
            dn,
            answer.message,
        )

    def close(self) -> None:
        """Unbind, if bound."""
        if self.directory is not None:
            self.directory.close()
            self.directory = None
