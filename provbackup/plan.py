"""Compute what the work on the backup server would do for one account.

Everything here is pure: paths, the rsnapshot configuration text, the quota
command and the expected ownership are derived from the validated
:class:`~provbackup.entry.Account` and the configuration, without touching
the filesystem. :mod:`provbackup.work` applies an :class:`AccountPlan`;
``process --dry-run`` prints :func:`describe` of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from provbackup.config import (
    INTERVALS,
    BackupConfig,
    Config,
    DeleteConfig,
    QuotaConfig,
    RsnapshotConfig,
)
from provbackup.entry import SAFE_UID, Account
from provbackup.errors import RETURN_QUOTA, InvalidEntryError, UnsafePathError, WorkError

ACTIONS = ("add", "modify", "delete")
ROOT_ID = 0

# Modes of the account tree; see README "Ownership and modes" and AccountPlan.directories.
SHARED_DIRECTORY_MODE = 0o755  # layout directories, A, A/chroot, A/chroot/home: root:root
HOME_MODE = 0o750  # root:gidNumber; the user cannot rename or replace .snapshots/incoming
USER_DIRECTORY_MODE = 0o700  # incoming/ and .ssh/: uidNumber:gidNumber
SNAPSHOTS_MODE = 0o750  # root:gidNumber; users read their snapshots, never write them
INACTIVE_INCOMING_MODE = 0o700  # root:gidNumber; no access at all, so no uploads anywhere below
CONF_MODE = 0o644  # root:root
QUARANTINE_DIRECTORY = ".deleted"
QUARANTINE_MODE = 0o700  # root:root

RSNAPSHOT_CONF = "rsnapshot.conf"
RSNAPSHOT_CONF_INACTIVE = "rsnapshot.conf.inactive"
RSNAPSHOT_LOCK = "rsnapshot.pid"

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
class AccountPaths:
    """Every path of one account, all inside ``root``.

    ``expected_home_directory`` is the jailkit form ``A/chroot/./home/<uid>``
    the entry's homeDirectory should hold; it is a string because
    :class:`~pathlib.Path` would drop the ``/./`` marking the chroot.
    """

    root: Path
    account: Path
    chroot: Path
    home: Path
    incoming: Path
    ssh: Path
    snapshots: Path
    rsnapshot_conf: Path
    rsnapshot_conf_inactive: Path
    rsnapshot_lock: Path
    expected_home_directory: str

    @property
    def layout_directories(self) -> tuple[Path, ...]:
        """The directories between ``root`` and the account directory, outermost first."""
        # The account's own parents: no Path is parsed again (a burst asks per account).
        depth = len(self.account.relative_to(self.root).parts)
        return tuple(reversed(self.account.parents[: depth - 1]))


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
    why or what it sets. ``quarantine_days`` applies to delete.
    """

    account: Account
    action: str
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


def account_paths(root: Path, layout: str, uid: str) -> AccountPaths:
    """Return the paths of the account ``uid`` under ``root`` in ``layout``.

    ``layout`` is ``stoney`` (``<root>/<last digit>/<last 3 digits>/<digits
    6..4 from the end>/<uid>``, the uid zero-padded to 6 digits first) or
    ``flat`` (``<root>/<uid>``). Raises InvalidEntryError for a uid that is
    not a safe name or, in the stoney layout, not numeric; ValueError for a
    relative root or an unknown layout.
    """
    if not SAFE_UID.fullmatch(uid):
        raise InvalidEntryError("uid", uid, "not a safe account name")
    root = Path(os.path.normpath(root))
    if not root.is_absolute():
        raise ValueError(f"backup root {str(root)!r} is not an absolute path")
    if layout == "stoney":
        if not (uid.isascii() and uid.isdigit()):
            raise InvalidEntryError("uid", uid, "the stoney layout needs a numeric uid")
        padded = uid.zfill(6)
        account = root.joinpath(padded[-1], padded[-3:], padded[-6:-3], uid)
    elif layout == "flat":
        account = root / uid
    else:
        raise ValueError(f"unknown layout {layout!r}")
    chroot = account / "chroot"
    home = chroot.joinpath("home", uid)
    return AccountPaths(
        root=root,
        account=account,
        chroot=chroot,
        home=home,
        incoming=home / "incoming",
        ssh=home / ".ssh",
        snapshots=home / ".snapshots",
        rsnapshot_conf=account / RSNAPSHOT_CONF,
        rsnapshot_conf_inactive=account / RSNAPSHOT_CONF_INACTIVE,
        rsnapshot_lock=account / RSNAPSHOT_LOCK,
        expected_home_directory=f"{chroot}/./home/{uid}",
    )


def build(account: Account, action: str, config: Config) -> AccountPlan:
    """Build the plan for ``account`` from the whole configuration; see :func:`build_plan`."""
    return build_plan(
        account, action, config.backup, config.rsnapshot, config.quota, delete=config.delete
    )


def build_plan(
    account: Account,
    action: str,
    backup: BackupConfig,
    rsnapshot: RsnapshotConfig,
    quota: QuotaConfig,
    delete: DeleteConfig | None = None,
) -> AccountPlan:
    """Compute the work for ``account`` and ``action`` (add, modify or delete).

    ``delete`` gives the quarantine of a delete (default: DeleteConfig()).
    Returns the :class:`AccountPlan`. Raises InvalidEntryError for a bad
    uid, ids or retention, UnsafePathError for a homeDirectory that is not
    the account's jailkit home inside the backup root, WorkError when the
    quota command has a bad placeholder, ValueError for an
    unknown action.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    for attribute, number in (("uidNumber", account.uid_number), ("gidNumber", account.gid_number)):
        if number <= ROOT_ID or number < backup.min_uid:
            raise InvalidEntryError(
                attribute, str(number), f"below [backup] min_uid {backup.min_uid} (or root)"
            )
    paths = account_paths(backup.root, backup.layout, account.uid)
    check_home_directory(account.home_directory, paths)
    # A delete needs no retention: an entry with none must still be deletable.
    retain = () if action == "delete" else ordered_retain(account.retain)
    shape = RsnapshotShape(retain=retain, rsync=rsnapshot.rsync)
    fields = RsnapshotFields(
        comment=sanitize_comment(f"account {account.uid} from {account.dn}"),
        snapshot_root=f"{paths.snapshots}/",
        backup_source=f"{paths.incoming}/",
        lockfile=str(paths.rsnapshot_lock),
        group=str(account.gid_number),
    )
    if action == "delete":
        directories: tuple[DirectorySpec, ...] = ()
        text = ""
        quota_bytes: int | None = 0
    else:
        directories = _directories(paths, account)
        text = render_rsnapshot_conf(shape, fields)
        quota_bytes = account.quota_bytes
    active = account.active or action == "delete"
    conf_path, stale_conf_path = (
        (paths.rsnapshot_conf, paths.rsnapshot_conf_inactive)
        if active
        else (paths.rsnapshot_conf_inactive, paths.rsnapshot_conf)
    )
    quota_argv, quota_note = _quota(account, quota_bytes, quota, backup.root)
    return AccountPlan(
        account=account,
        action=action,
        paths=paths,
        directories=directories,
        rsnapshot_shape=shape,
        rsnapshot_fields=fields,
        rsnapshot_conf=text,
        conf_path=conf_path,
        stale_conf_path=stale_conf_path,
        quota_argv=quota_argv,
        quota_note=quota_note,
        jail_template=backup.jail_template,
        quarantine_days=(delete or DeleteConfig()).quarantine_days,
    )


def check_home_directory(value: str | None, paths: AccountPaths) -> None:
    """Accept a homeDirectory that is the account's home inside the backup root.

    ``value`` is the entry's homeDirectory (None: not set, accepted). The
    jailkit form ``A/chroot/./home/<uid>`` and the plain ``A/chroot/home/<uid>``
    are accepted (compared after normalizing ``.`` and repeated slashes).
    Raises UnsafePathError naming homeDirectory and the value otherwise.
    """
    if value is None:
        return
    expected = paths.expected_home_directory

    def refuse(reason: str) -> UnsafePathError:
        return UnsafePathError(
            f"homeDirectory: {value!r}: {reason}; expected {expected!r}",
            attribute="homeDirectory",
            value=value,
        )

    if not value.startswith("/") or "\0" in value:
        raise refuse("not an absolute path")
    if ".." in value.split("/"):
        raise refuse("contains '..'")
    # normpath keeps a leading '//' (POSIX allows it a meaning); nothing here needs it.
    normalized = "/" + os.path.normpath(value).lstrip("/")
    if not is_within(Path(normalized), paths.root):
        raise refuse(f"outside the backup root {str(paths.root)!r}")
    if normalized != str(paths.home):
        raise refuse("is not this account's home")


def is_within(path: Path, root: Path) -> bool:
    """Return True if the normalized absolute ``path`` is ``root`` or below it (no I/O)."""
    # The same test as ``path == root or root in path.parents``, without making every parent.
    return path.is_relative_to(root)


def ordered_retain(retain: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Return ``retain`` in the order hourly, daily, weekly, monthly, yearly, without zeros.

    Raises InvalidEntryError for an unknown interval, a negative count or
    when no interval is above 0.
    """
    counts: dict[str, int] = {}
    for interval, count in retain:
        if interval not in INTERVALS:
            raise InvalidEntryError("sstBackupInterval*", interval, "unknown interval")
        if count < 0:
            raise InvalidEntryError(f"sstBackupInterval{interval.capitalize()}", count, "negative")
        counts[interval] = count
    ordered = tuple((interval, counts[interval]) for interval in INTERVALS if counts.get(interval))
    if not ordered:
        raise InvalidEntryError("sstBackupInterval*", dict(retain), "no interval is above 0")
    return ordered


def sanitize_comment(text: str) -> str:
    """Return ``text`` fit for one comment line: non-printable characters escaped, length capped.

    Newlines, tabs, other control characters and Unicode line separators
    become ``\\xNN``/``\\uNNNN`` escapes, so a DN can never start a new line
    of a configuration file.
    """
    # Almost every comment is printable already: one C-level test instead of a loop.
    escaped = (
        text
        if text.isprintable()
        else "".join(
            character if character.isprintable() else ascii(character)[1:-1] for character in text
        )
    )
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
    lines = [f"{plan.action} {account.uid} ({account.dn}): account directory {paths.account}"]
    if plan.action == "delete":
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
    if plan.jail_template is not None:
        lines.append(
            f"copy jail template {plan.jail_template} into {paths.chroot} "
            "(new or changed entries; its home/ is skipped; nothing is deleted)"
        )
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


def owner_text(uid: int, gid: int) -> str:
    """Return ``uid:gid`` with 0 shown as root."""
    return f"{'root' if uid == ROOT_ID else uid}:{'root' if gid == ROOT_ID else gid}"


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


def _quota(
    account: Account, quota_bytes: int | None, quota: QuotaConfig, root: Path
) -> tuple[tuple[str, ...] | None, str]:
    if quota.command is None:
        return None, "quota: not set ([quota] command is empty)"
    if quota_bytes is None:
        return None, "quota: left unchanged (the entry has no sstQuota)"
    if quota_bytes < 0:
        raise InvalidEntryError("sstQuota", quota_bytes, "negative")
    # Without [quota] filesystem the backup root is taken: it is normally the mount point.
    filesystem = quota.filesystem or str(root)
    values = {
        "uid": account.uid,
        "uidnumber": str(account.uid_number),
        "gidnumber": str(account.gid_number),
        "quota_bytes": str(quota_bytes),
        "quota_kib": str(-(-quota_bytes // 1024)),
        "filesystem": filesystem,
    }
    try:
        argv = tuple(word.format(**values) for word in quota.command)
    except (KeyError, IndexError, ValueError) as error:
        raise WorkError(
            f"[quota] command: bad placeholder {error}", return_value=RETURN_QUOTA
        ) from None
    return argv, f"quota: set to {quota_bytes} bytes ({values['quota_kib']} KiB)"
