"""Apply an :class:`~provbackup.plan.AccountPlan` on the real filesystem.

Add and modify converge the account tree on the plan (create what is
missing, correct owners and modes, rewrite rsnapshot.conf when it differs),
so a second run, or a run after a crash half-way, gives the same tree. A
failed step leaves what was done in place: the next run picks up from
there, and user data is never removed on a failed add or modify. Delete
moves the account directory into quarantine or removes it, never following
a symlink; a missing account directory means the delete was already done.
What depends on ``[backup] engine`` (what incoming/ is, the quota) is asked
of the plan's engine (:class:`provbackup.engines.base.Engine`), never by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from datetime import UTC, datetime

from provbackup.config import Config
from provbackup.errors import RETURN_FILESYSTEM, EntryError, WorkError
from provbackup.locality import server_name
from provbackup.model import ROOT_ID, Verb, timestamp
from provbackup.paths import (
    QUARANTINE_DIRECTORY,
    RSNAPSHOT_CONF,
    RSNAPSHOT_CONF_INACTIVE,
    RSNAPSHOT_LOCK,
)
from provbackup.plan import CONF_MODE, QUARANTINE_MODE, AccountPlan
from provbackup.work import subvolumes
from provbackup.work.hooks import run_hook
from provbackup.work.jail import write_account_files
from provbackup.work.ownership import OWNER_FILE, check_owner, write_record
from provbackup.work.remove import Budget
from provbackup.work.rsnapshot import ConfigTester
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    file_matches,
    lstat_entry,
    open_directory,
    open_root,
    remove_non_directory,
    remove_stale_temporaries,
    remove_tree,
    replace_file,
)
from provbackup.work.template import copy_jail_template
from provbackup.work.usage import update_usage_quota

logger = logging.getLogger(__name__)

MAX_LOCKFILE_BYTES = 64


def apply_plan(
    plan: AccountPlan,
    config: Config,
    *,
    now: datetime,
    tester: ConfigTester | None = None,
    budget: Budget | None = None,
) -> list[str]:
    """Do the work of ``plan``: ``pre_<verb>`` hook, the work, ``post_<verb>`` hook.

    ``config`` gives ``[rsnapshot]`` and ``[hooks]`` (everything else is in
    the plan). ``tester`` is the run's :class:`ConfigTester` (a one-off is
    made without it); ``now`` (the run's clock, aware) names a quarantined account; ``budget``
    bounds the time a removal takes (the run's, shared with the purge). Returns
    the steps done, for the log. Raises UnsafePathError for a symlink or a
    non-directory on the account's paths (left untouched), WorkError for a
    failed step (its return_value says which kind), InvalidEntryError for
    an unusable entry.
    """
    steps: list[str] = []
    # Before anything, hooks included: a directory made for another entry is left alone.
    try:
        server = server_name(config)
        record_owner = server if check_owner(plan.account, server) else None
    except OSError as error:
        raise WorkError(
            f"{plan.paths.account}: {error.strerror or error}", return_value=RETURN_FILESYSTEM
        ) from error
    _note(steps, run_hook(f"pre_{plan.verb}", plan, config.hooks))
    try:
        if plan.verb is Verb.DELETE:
            _delete(plan, now, steps, budget, config.quota.timeout)
        else:
            with contextlib.ExitStack() as stack:
                if tester is None:
                    tester = stack.enter_context(ConfigTester(config.rsnapshot))
                _provision(plan, tester, steps, config.quota.timeout, record_owner)
    except EntryError:
        raise
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise WorkError(
            f"{plan.paths.account}: {where}{error.strerror or error}",
            return_value=RETURN_FILESYSTEM,
        ) from error
    _note(steps, run_hook(f"post_{plan.verb}", plan, config.hooks))
    for step in steps:
        logger.debug("%s: %s", plan.account.uid, step)
    return steps


def _note(steps: list[str], step: str | None) -> None:
    if step:
        steps.append(step)


def _provision(
    plan: AccountPlan,
    tester: ConfigTester,
    steps: list[str],
    quota_timeout: float,
    record_owner: str | None,
) -> None:
    paths = plan.paths
    with contextlib.ExitStack() as stack:
        # Keyed by the paths' text, and each directory handed its known path: hashing
        # Path objects and making their parents was a measurable share of a burst's
        # CPU per entry (docs/performance.md). The plan lists parents before children.
        opened: dict[str, OpenDirectory] = {
            str(paths.root): stack.enter_context(open_root(paths.root))
        }
        for spec in plan.directories:
            text = str(spec.path)
            if spec.path == paths.incoming:
                plan.engine.create(opened[str(paths.home)], steps)
            opened[text] = stack.enter_context(
                ensure_directory(
                    opened[os.path.dirname(text)], spec.path.name, spec.uid, spec.gid, spec.mode,
                    steps, path=spec.path,
                )
            )  # fmt: skip
            if record_owner and spec.path == paths.account:
                # Recorded before anything is made inside it: a crash leaves no
                # unrecorded tree with owners in it.
                write_record(opened[text], plan.account, steps, record_owner)
        account = opened[str(paths.account)]
        remove_stale_temporaries(account, steps)
        jail = opened[str(paths.chroot)]
        if plan.jail_template is not None:
            copy_jail_template(plan.jail_template, jail, steps)
        write_account_files(plan, jail, steps)
        steps.append(tester.check_shape(plan))
        if plan.account.active:
            _write_conf(plan, account, tester, steps)
            _remove_stale_conf(plan, account, steps)
        else:
            # Stop the snapshots first: a crash in between leaves none, not both.
            _remove_stale_conf(plan, account, steps)
            _write_conf(plan, account, tester, steps)
        # What /bin/getQuota prints: the new quota at once, the sizes of the last snapshot run.
        update_usage_quota(account, plan.account.gid_number, plan.account.quota_bytes, steps)
        steps.append(plan.engine.quota(plan, opened[str(paths.home)], quota_timeout))


def _write_conf(
    plan: AccountPlan, account: OpenDirectory, tester: ConfigTester, steps: list[str]
) -> None:
    name = plan.conf_path.name
    content = plan.rsnapshot_conf.encode("utf-8")
    file_test = tester.test_file if tester.wants_file_test(plan) else None
    if file_matches(account, name, content, ROOT_ID, ROOT_ID, CONF_MODE):
        if file_test is not None:
            file_test(plan.conf_path)
        return
    replace_file(
        account, name, content, uid=ROOT_ID, gid=ROOT_ID, mode=CONF_MODE, before_rename=file_test
    )
    steps.append(f"wrote {plan.conf_path}")


def _remove_stale_conf(plan: AccountPlan, account: OpenDirectory, steps: list[str]) -> None:
    if remove_non_directory(account, plan.stale_conf_path.name):
        steps.append(f"removed {plan.stale_conf_path}")


def _delete(
    plan: AccountPlan,
    now: datetime,
    steps: list[str],
    budget: Budget | None,
    quota_timeout: float,
) -> None:
    paths = plan.paths
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(open_root(paths.root))
        chain = [root]
        for directory in paths.layout_directories:
            try:
                chain.append(stack.enter_context(open_directory(chain[-1], directory.name)))
            except FileNotFoundError:
                break
        parent = chain[-1]
        present = (
            len(chain) == len(paths.layout_directories) + 1
            and lstat_entry(parent, paths.account.name) is not None
        )
        if present:
            # Refuses a symlink or a file in place of the account directory, before anything.
            with open_directory(parent, paths.account.name) as account:
                _refuse_while_rsnapshot_runs(account)
                steps.append(plan.engine.delete(plan, quota_timeout))
                # A quarantined account must never be picked up by a snapshot runner.
                if lstat_entry(account, RSNAPSHOT_CONF) is not None:
                    os.rename(
                        RSNAPSHOT_CONF, RSNAPSHOT_CONF_INACTIVE,
                        src_dir_fd=account.fd, dst_dir_fd=account.fd,
                    )  # fmt: skip
                    steps.append(f"deactivated {paths.rsnapshot_conf}")
            if plan.quarantine_days > 0:
                _quarantine(plan, root, parent, now, steps)
            elif _remove_account(plan, parent, budget, steps):
                steps.append(f"removed {paths.account}")
            else:
                # Out of time ([delete] time_budget): what is left waits in the
                # quarantine, where the next run's purge goes on with it.
                _quarantine(plan, root, parent, now, steps)
        else:
            steps.append(plan.engine.delete(plan, quota_timeout))
            steps.append(f"{paths.account} does not exist: nothing to remove")
        _remove_empty_layout(plan, chain, steps)


def _remove_account(
    plan: AccountPlan, parent: OpenDirectory, budget: Budget | None, steps: list[str]
) -> bool:
    """Remove the account directory (its btrfs subvolumes first); False when out of time.

    The ownership record goes last: the remover takes names in directory
    order, so it could unlink the record before the customer's tree. A run
    killed then left an unrecorded tree in the live root that the next
    delete (after reset) judged by its owners alone, and failed with 11
    whenever those were not the entry's. With the record kept until
    everything else in ``A`` is gone, a killed removal always leaves
    either a recorded tree or an empty ``A``, and the next delete finishes it.
    """
    with open_directory(parent, plan.paths.account.name) as account:
        steps += subvolumes.remove_account_subvolumes(account, plan.account.uid)
        # A is root's (0755, never the customer's): its few names can be listed.
        for name in sorted(os.listdir(account.fd)):
            if name != OWNER_FILE and not remove_tree(account, name, budget):
                return False
    return remove_tree(parent, plan.paths.account.name, budget)


def _refuse_while_rsnapshot_runs(account: OpenDirectory) -> None:
    """Raise WorkError when the account's lockfile names a live process."""
    try:
        fd = os.open(RSNAPSHOT_LOCK, OPEN_FILE_FLAGS, dir_fd=account.fd)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        text = os.read(fd, MAX_LOCKFILE_BYTES).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit() or int(text) <= 0:
        return
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise WorkError(
        f"{account.path / RSNAPSHOT_LOCK}: rsnapshot (pid {text}) is running for this account; "
        "retry after it finished",
        return_value=RETURN_FILESYSTEM,
    )


def _quarantine(
    plan: AccountPlan, root: OpenDirectory, parent: OpenDirectory, now: datetime, steps: list[str]
) -> None:
    with ensure_directory(
        root, QUARANTINE_DIRECTORY, ROOT_ID, ROOT_ID, QUARANTINE_MODE, steps
    ) as quarantine:
        stamp = timestamp(_utc(now))
        name = f"{plan.account.uid}.{stamp}"
        counter = 0
        while lstat_entry(quarantine, name) is not None:
            counter += 1
            name = f"{plan.account.uid}.{stamp}.{counter}"
        try:
            os.rename(plan.paths.account.name, name, src_dir_fd=parent.fd, dst_dir_fd=quarantine.fd)
        except OSError as error:
            raise WorkError(
                f"cannot move {plan.paths.account} to {quarantine.path / name}: "
                f"{error.strerror} (quarantine needs the same filesystem; "
                "[delete] quarantine_days = 0 removes at once)",
                return_value=RETURN_FILESYSTEM,
            ) from None
        os.fsync(quarantine.fd)
        os.fsync(parent.fd)
    if plan.quarantine_days > 0:
        purged = f"purged after {plan.quarantine_days} days"
    else:
        purged = "[delete] time_budget spent: the next run removes the rest"
    steps.append(f"moved {plan.paths.account} to {quarantine.path / name} ({purged})")


def _remove_empty_layout(plan: AccountPlan, chain: list[OpenDirectory], steps: list[str]) -> None:
    layout = plan.paths.layout_directories
    for index in range(len(chain) - 1, 0, -1):
        try:
            os.rmdir(layout[index - 1].name, dir_fd=chain[index - 1].fd)
        except FileNotFoundError:
            continue
        except OSError:
            # Not empty (another account lives there) or not a directory: keep it.
            break
        steps.append(f"removed empty {layout[index - 1]}")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
