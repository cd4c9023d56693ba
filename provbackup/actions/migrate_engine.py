"""``migrate-engine``: accounts of the rsnapshot engine moved to the btrfs engine's layout.

The backup root must be on btrfs with quotas enabled (ConfigError, 78,
otherwise). Each account (``--uid``, or every account directory on the
root with ``--all``) is looked up in the directory and read through the
gate (its uidNumber, gidNumber, active flag and sstQuota: nothing of that
comes from the tree), checked to be its entry's
(:func:`provbackup.work.ownership.check_owner`), and moved under its
account lock (the lock ``process`` and ``snapshot`` take) by
:func:`provbackup.engines.migration.migrate`, which is crash-safe and
finishes what a killed run left. Once the new layout is in place the
rsnapshot engine's quota (``[quota] command``) is released with a delete
plan built for that engine. ``--dry-run`` looks and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from provbackup.accountlock import AccountBusyError, account_lock
from provbackup.actions.common import search_named
from provbackup.config import Config
from provbackup.directory import LdapDirectory, connect
from provbackup.engines import engine_named
from provbackup.engines import migration as moving
from provbackup.engines.migration_check import check_root
from provbackup.entry import Rules, read_account
from provbackup.errors import EXIT_ENTRIES_FAILED, EntryError, ProvbackupError, UsageError
from provbackup.model import Account, Verb
from provbackup.paths import account_paths
from provbackup.plan import build_plan
from provbackup.work.discover import account_directories
from provbackup.work.ownership import check_owner
from provbackup.work.safe import open_root

logger = logging.getLogger(__name__)

MIGRATED, ALREADY, WOULD, FAILED, BUSY = "migrated", "already", "would", "failed", "busy"


@dataclass
class Migration:
    """One account's outcome: migrated, already (btrfs), would (dry run), failed or busy."""

    uid: str
    outcome: str
    layout: str = "-"
    snapshots: list[str] = field(default_factory=list)
    quota: int | None = None
    message: str = ""
    steps: list[str] = field(default_factory=list)


@dataclass
class MigrationReport:
    """Every account's :class:`Migration`; ``exit_code`` 0, or 1 when one failed or was busy."""

    dry_run: bool
    results: list[Migration] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every account is (or would be) in the btrfs layout, else 1."""
        failed = any(item.outcome in (FAILED, BUSY) for item in self.results)
        return EXIT_ENTRIES_FAILED if failed else 0


def migrate_engine(
    config: Config, *, uid: str | None = None, every: bool = False, dry_run: bool = False
) -> MigrationReport:
    """Move the account ``uid`` (or, with ``every``, each one on the root) to the btrfs layout.

    Returns the :class:`MigrationReport`. Raises UsageError unless exactly
    one of ``uid`` and ``every`` is given, ConfigError (78) when the root is
    not on btrfs or its quotas are off, LdapUnavailableError.
    """
    if (uid is None) == (not every):
        raise UsageError("give exactly one of --uid UID or --all")
    root, layout = config.backup.root, config.backup.layout
    try:
        check_root(root)
    except EntryError as error:
        raise UsageError(f"migrate-engine: [backup] root: {error}") from None
    if uid is not None:
        try:
            account_paths(root, layout, uid)
        except (ValueError, EntryError) as error:
            raise UsageError(f"migrate-engine: --uid {uid!r}: {error}") from None
        uids = [uid]
    else:
        with open_root(root) as top:
            uids = [paths.account.name for paths, _directory in account_directories(top, layout)]
    report = MigrationReport(dry_run)
    rules = Rules.from_config(config)
    with connect(config.ldap) as directory:
        for name in uids:
            result = _one(config, directory, rules, name, dry_run)
            _log(result)
            report.results.append(result)
    return report


def _one(
    config: Config, directory: LdapDirectory, rules: Rules, uid: str, dry_run: bool
) -> Migration:
    result = Migration(uid, FAILED)
    try:
        account = _account(config, directory, rules, uid)
        result.quota = account.quota_bytes
        wait = 0.0 if dry_run else config.snapshot.lock_wait
        with account_lock(config, uid, wait):
            found = moving.survey(account.paths)
            result.layout, result.snapshots = found.layout, found.snapshots
            done = found.layout == moving.SUBVOLUME and found.unfinished is None
            if done:
                result.outcome = ALREADY
                result.message = "already in the btrfs engine's layout: nothing to do"
            elif dry_run:
                result.outcome = WOULD
                result.message = _would(found, account)
            else:
                result.steps = moving.migrate(
                    account.paths, _owner(account), _release(config, account)
                )
                result.outcome = MIGRATED
                result.message = (
                    f"in the btrfs engine's layout, {len(found.snapshots)} snapshots kept"
                )
    except AccountBusyError as error:
        result.outcome, result.message = BUSY, str(error)
    except FileNotFoundError as error:
        result.message = f"no account directory on this server ({error.filename or uid})"
    except (EntryError, ProvbackupError) as error:
        result.message = str(error)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        result.message = f"{where}{error.strerror or error}"
    return result


def _account(config: Config, directory: LdapDirectory, rules: Rules, uid: str) -> Account:
    """The account's entry read through the gate, checked to own its directory."""
    entries = list(search_named(directory, config, dn=None, uid=uid))
    if len(entries) != 1:
        raise ProvbackupError(
            f"{len(entries)} provisioned entries with uid {uid!r} under {config.ldap.base_dn}: "
            "the account's IDs and quota come from exactly one"
        )
    account = read_account(entries[0], Verb.MODIFY, rules)
    check_owner(account)
    return account


def _owner(account: Account) -> moving.Owner:
    return moving.Owner(account.uid_number, account.gid_number, account.active,
                        account.quota_bytes)  # fmt: skip


def _release(config: Config, account: Account) -> Callable[[], str]:
    """The rsnapshot engine's quota released, as its delete does (a plan built for it)."""
    old = engine_named("rsnapshot")
    plan = build_plan(account, Verb.DELETE, config, engine=old)
    return lambda: old.delete(plan, config.quota.timeout)


def _would(found: moving.Survey, account: Account) -> str:
    quota = "no limit" if account.quota_bytes is None else f"limit {account.quota_bytes} bytes"
    if found.layout == moving.SUBVOLUME:
        return f"would finish an interrupted migration (step {found.unfinished})"
    if found.layout == moving.MISSING:
        return f"would fail: {account.paths.incoming} missing"
    return (
        f"incoming/ into a subvolume in its own qgroup ({quota}), "
        f"{len(found.snapshots)} snapshots into read-only subvolumes (reflinks)"
        + (
            f", finishing an interrupted migration (step {found.unfinished})"
            if found.unfinished
            else ""
        )
    )


def _log(result: Migration) -> None:
    if result.outcome in (FAILED, BUSY):
        logger.error("%s: engine migration %s: %s", result.uid, result.outcome, result.message)
    else:
        logger.info("%s: engine migration %s: %s", result.uid, result.outcome, result.message)
