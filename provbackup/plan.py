"""Compute what the work on the backup server would do for one account.

Everything here is pure: paths, the rsnapshot configuration text, the quota
command and the expected ownership are derived from the validated
:class:`~provbackup.model.Account` and the configuration, without touching
the filesystem. The engine ``[backup] engine`` selects gives its part (the
quota command or its note, its dry-run lines) and travels with the plan, so
the work calls it without knowing which one it is. :mod:`provbackup.work`
applies an :class:`AccountPlan`; ``process --dry-run`` prints
:func:`describe` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provbackup.config import Config
from provbackup.engines import Engine, select_engine
from provbackup.logs import escape_control
from provbackup.model import ROOT_ID, Account, Verb, owner_text
from provbackup.paths import (
    QUARANTINE_DIRECTORY,
    RSNAPSHOT_CONF_INACTIVE,
    AccountPaths,
)

# Modes of the account tree; see README "Ownership and modes" and AccountPlan.directories.
SHARED_DIRECTORY_MODE = 0o755  # layout directories, A, A/chroot, A/chroot/home: root:root
HOME_MODE = 0o750  # root:gidNumber; the user cannot rename or replace .snapshots/incoming
USER_DIRECTORY_MODE = 0o700  # incoming/ and .ssh/: uidNumber:gidNumber
SNAPSHOTS_MODE = 0o750  # root:gidNumber; users read their snapshots, never write them
INACTIVE_INCOMING_MODE = 0o700  # root:gidNumber; no access at all, so no uploads anywhere below
CONF_MODE = 0o644  # root:root
QUARANTINE_MODE = 0o700  # root:root


# Options every account's rsnapshot.conf carries. rsync runs as root over user
# data: -a copies symlinks as symlinks (never follows them); no --relative, so
# a snapshot holds incoming/<upload>, not the server's absolute path; device
# and special files are never recreated; snapshot files become root-owned with
# the account's group and lose set-id bits, so the user can read them (group)
# but neither change nor delete them, and a set-id binary cannot be planted.
RSYNC_SHORT_ARGS = "-a"
RSYNC_LONG_ARGS = (
    "--delete --numeric-ids --delete-excluded --no-devices --no-specials"
    " --chown=0:{group} --chmod=ug-s,go-w,o-rwx,g+rX"
)
MAX_COMMENT_LENGTH = 400


@dataclass(frozen=True)
class DirectorySpec:
    """A directory the work creates or corrects: owner, group and mode."""

    path: Path
    uid: int
    gid: int
    mode: int
    purpose: str


@dataclass(frozen=True)
class RsnapshotFields:
    """The per-account values of an rsnapshot.conf; all else is the config's shape.

    :class:`provbackup.work.ConfigTester` configtests each shape once and
    checks per account that only these values differ.
    """

    comment: str
    snapshot_root: str
    backup_source: str
    lockfile: str
    group: str


@dataclass(frozen=True)
class RsnapshotShape:
    """What makes two accounts' rsnapshot.conf differ beyond their paths."""

    retain: tuple[tuple[str, int], ...]
    rsync: str


@dataclass(frozen=True)
class AccountPlan:
    """What applying the work for one entry does.

    ``directories`` are created or corrected in order (layout directories
    first; empty for delete). ``conf_path`` receives ``rsnapshot_conf``
    (``rsnapshot.conf``, or ``rsnapshot.conf.inactive`` for an inactive
    account) and ``stale_conf_path``, the other name, is removed.
    ``quota_argv`` is None when no quota command runs; ``quota_note`` says
    why or what it sets (both the engine's). ``quarantine_days`` applies to
    delete. ``engine`` is the selected engine, whose operations the work calls.
    """

    account: Account
    verb: Verb
    paths: AccountPaths
    directories: tuple[DirectorySpec, ...]
    rsnapshot_shape: RsnapshotShape
    rsnapshot_fields: RsnapshotFields
    rsnapshot_conf: str
    conf_path: Path
    stale_conf_path: Path
    quota_argv: tuple[str, ...] | None
    quota_note: str
    jail_template: Path | None
    quarantine_days: int
    engine: Engine


def build_plan(
    account: Account, verb: Verb, config: Config, *, engine: Engine | None = None
) -> AccountPlan:
    """Compute the work of ``verb`` for ``account``, as the gate admitted it.

    Pure and validation-free: ``account`` is trusted (see
    :func:`provbackup.entry.read_account`); the configuration gives the
    rsync path, the engine (its quota; ``engine`` another one, for a
    command working across engines) and the quarantine. Returns the
    :class:`AccountPlan`.
    """
    paths = account.paths
    shape = RsnapshotShape(retain=account.retain, rsync=config.rsnapshot.rsync)
    fields = RsnapshotFields(
        comment=comment_text(f"account {account.uid} from {account.dn}"),
        snapshot_root=f"{paths.snapshots}/",
        backup_source=f"{paths.incoming}/",
        lockfile=str(paths.rsnapshot_lock),
        group=str(account.gid_number),
    )
    if verb is Verb.DELETE:
        directories: tuple[DirectorySpec, ...] = ()
        text = ""
        quota_bytes: int | None = 0
    else:
        directories = _directories(paths, account)
        text = render_rsnapshot_conf(shape, fields)
        quota_bytes = account.quota_bytes
    active = account.active or verb is Verb.DELETE
    conf_path, stale_conf_path = (
        (paths.rsnapshot_conf, paths.rsnapshot_conf_inactive)
        if active
        else (paths.rsnapshot_conf_inactive, paths.rsnapshot_conf)
    )
    engine = engine or select_engine(config)
    quota_argv, quota_note = engine.plan_quota(account, verb, quota_bytes, config)
    return AccountPlan(
        account=account,
        verb=verb,
        paths=paths,
        directories=directories,
        rsnapshot_shape=shape,
        rsnapshot_fields=fields,
        rsnapshot_conf=text,
        conf_path=conf_path,
        stale_conf_path=stale_conf_path,
        quota_argv=quota_argv,
        quota_note=quota_note,
        jail_template=config.backup.jail_template,
        quarantine_days=config.delete.quarantine_days,
        engine=engine,
    )


def comment_text(text: str) -> str:
    """Return ``text`` fit for one comment line: control characters escaped, length capped.

    Newlines, tabs, other control characters and Unicode line separators
    become ``\\xNN``/``\\uNNNN`` escapes (:func:`provbackup.logs.escape_control`),
    so a DN can never start a new line of a configuration file.
    """
    escaped = escape_control(text)
    if len(escaped) > MAX_COMMENT_LENGTH:
        escaped = escaped[: MAX_COMMENT_LENGTH - 3] + "..."
    return escaped


def render_rsnapshot_conf(shape: RsnapshotShape, fields: RsnapshotFields) -> str:
    """Return the text of an account's rsnapshot.conf.

    rsnapshot separates fields with TABs. Takes the shape (retention, rsync)
    and the per-account fields; returns the text ending with a newline.
    """
    lines = [
        f"# rsnapshot configuration of backup {fields.comment}",
        "# Generated by provbackup; do not edit: every add or modify of the entry rewrites it.",
        "config_version\t1.2",
        f"snapshot_root\t{fields.snapshot_root}",
        # provbackup creates .snapshots; a missing one means something is wrong, not "create it".
        "no_create_root\t1",
        f"cmd_rsync\t{shape.rsync}",
        "one_fs\t1",
        # rsync into a fresh directory linked to the previous snapshot instead of
        # copying a tree with cp -al and rsyncing over it.
        "link_dest\t1",
        f"rsync_short_args\t{RSYNC_SHORT_ARGS}",
        f"rsync_long_args\t{RSYNC_LONG_ARGS.format(group=fields.group)}",
        *(f"retain\t{interval}\t{count}" for interval, count in shape.retain),
        f"lockfile\t{fields.lockfile}",
        # "./": a snapshot holds the client directories at its top (daily.0/<host>/...),
        # the paths Sepiola and OnlineRestore.pl restore from (SPEC section 6).
        f"backup\t{fields.backup_source}\t./",
    ]
    return "\n".join(lines) + "\n"


def describe(plan: AccountPlan) -> list[str]:
    """Return human lines saying what applying ``plan`` would do (for ``--dry-run``)."""
    account = plan.account
    paths = plan.paths
    lines = [f"{plan.verb} {account.uid} ({account.dn}): account directory {paths.account}"]
    if plan.verb is Verb.DELETE:
        lines.append(_quota_line(plan))
        lines.append(f"deactivate {paths.rsnapshot_conf} (renamed to {RSNAPSHOT_CONF_INACTIVE})")
        if plan.quarantine_days > 0:
            lines.append(
                f"move {paths.account} to {paths.root / QUARANTINE_DIRECTORY}/"
                f"{account.uid}.<UTC time> (purged after {plan.quarantine_days} days)"
            )
        else:
            lines.append(f"remove {paths.account} and everything below it (no quarantine)")
        for directory in reversed(paths.layout_directories):
            lines.append(f"remove {directory} if it is then empty")
        lines.append("a missing account directory means the delete is already done")
        return lines
    for spec in plan.directories:
        owner = owner_text(spec.uid, spec.gid)
        lines.append(f"directory {spec.path} {owner} {spec.mode:04o} ({spec.purpose})")
    lines += plan.engine.describe(paths)
    if plan.jail_template is not None:
        lines.append(
            f"link jail template {plan.jail_template} into {paths.chroot} "
            "(new or changed entries, hard-linked where the filesystem allows; its home/ "
            "is skipped; nothing is deleted)"
        )
        lines.append(
            f"write {paths.chroot}/etc/passwd and etc/group with the account's line "
            f"(home /home/{account.uid})"
        )
    quota = account.quota_bytes or 0
    lines.append(f"write {paths.chroot}/etc/provbackup/usage quota field ({quota} bytes)")
    retain = ", ".join(f"{interval} {count}" for interval, count in plan.rsnapshot_shape.retain)
    lines.append(
        f"write {plan.conf_path} {owner_text(ROOT_ID, ROOT_ID)} {CONF_MODE:04o} (retain {retain})"
    )
    lines.append(f"remove {plan.stale_conf_path} if present")
    if not account.active:
        lines.append(
            "account inactive: incoming/ closed to the user, no snapshots are taken "
            f"(configuration kept as {RSNAPSHOT_CONF_INACTIVE})"
        )
    lines.append("check the configuration with rsnapshot configtest ([rsnapshot] configtest)")
    lines.append(_quota_line(plan))
    return lines


def _quota_line(plan: AccountPlan) -> str:
    if plan.quota_argv is None:
        return plan.quota_note
    return f"{plan.quota_note}: {' '.join(plan.quota_argv)}"


def _directories(paths: AccountPaths, account: Account) -> tuple[DirectorySpec, ...]:
    gid = account.gid_number
    incoming = (
        DirectorySpec(paths.incoming, account.uid_number, gid, USER_DIRECTORY_MODE, "uploads")
        if account.active
        else DirectorySpec(
            paths.incoming, ROOT_ID, gid, INACTIVE_INCOMING_MODE, "uploads, closed: inactive"
        )
    )
    return (
        *(
            DirectorySpec(directory, ROOT_ID, ROOT_ID, SHARED_DIRECTORY_MODE, "layout")
            for directory in paths.layout_directories
        ),
        DirectorySpec(paths.account, ROOT_ID, ROOT_ID, SHARED_DIRECTORY_MODE, "account"),
        DirectorySpec(paths.chroot, ROOT_ID, ROOT_ID, SHARED_DIRECTORY_MODE, "jail"),
        DirectorySpec(paths.chroot / "home", ROOT_ID, ROOT_ID, SHARED_DIRECTORY_MODE, "jail"),
        DirectorySpec(paths.home, ROOT_ID, gid, HOME_MODE, "home"),
        incoming,
        DirectorySpec(paths.ssh, account.uid_number, gid, USER_DIRECTORY_MODE, "ssh keys"),
        DirectorySpec(paths.snapshots, ROOT_ID, gid, SNAPSHOTS_MODE, "snapshots"),
    )
