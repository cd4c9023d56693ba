"""The per-account side of the jail: its ``etc/passwd`` and ``etc/group``, and getQuota.

jk_chrootsh looks the user up in the jail's own ``etc/passwd`` (home
``/home/<uid>``, shell ``/bin/sh``) after the chroot, so every account
needs its line there; these files are written per account (root:root
0644), never linked from the template. ``/bin/getQuota`` (in the template)
reads ``etc/provbackup/usage``, which :mod:`provbackup.work.usage` writes
(the contract shared by ``process`` and the snapshot runner).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from provbackup.model import ROOT_ID
from provbackup.plan import AccountPlan
from provbackup.work.discover import account_directories
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    file_matches,
    lstat_entry,
    open_directory,
    remove_stale_temporaries,
    replace_file,
)

logger = logging.getLogger(__name__)

JAIL_SHELL = "/bin/sh"
JAIL_FILE_MODE = 0o644
JAIL_DIRECTORY_MODE = 0o755
USAGE_DIRECTORY = "provbackup"  # etc/provbackup: the usage file's (provbackup.work.usage)
MAX_BASE_BYTES = 64 * 1024

# /bin/getQuota inside the jail: POSIX sh, so it needs nothing but the jail's
# shell. Quota rounds down, usage up: the free space a client computes
# (quota - backup - snapshot) is never more than there is. 0 means unknown.
GETQUOTA_SCRIPT = """\
#!/bin/sh
# getQuota -- written by provbackup jail-template; do not edit.
# Prints the account's quota, backup (incoming/) and snapshot usage in MiB,
# from /etc/provbackup/usage (written by provbackup process and snapshot):
# one line "<quota_bytes> <backup_bytes> <snapshot_bytes>"; 0 is unknown.
usage=/etc/provbackup/usage
quota=0 backup=0 snapshot=0
if [ -r "$usage" ]; then
    read -r quota backup snapshot rest < "$usage" || true
fi
number() {
    case "$1" in
        ''|*[!0-9]*) echo 0 ;;
        *) echo "$1" ;;
    esac
}
quota=$(number "$quota") backup=$(number "$backup") snapshot=$(number "$snapshot")
echo "$((quota / 1048576)) $(((backup + 1048575) / 1048576)) $(((snapshot + 1048575) / 1048576))"
"""

DEFAULT_PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
DEFAULT_GROUP = "root:x:0:\n"


def write_account_files(plan: AccountPlan, jail: OpenDirectory, steps: list[str]) -> None:
    """Write the jail's ``etc/passwd`` and ``etc/group`` of ``plan`` into ``jail`` (A/chroot).

    The template's lines, without any for this uid, plus the account's
    own; only when a jail template is configured. Also removes the
    temporary files a killed run left in ``etc/`` and ``etc/provbackup/``.
    Appends what changed to ``steps``. Raises UnsafePathError for a symlink
    or non-directory on the way, WorkError/OSError when a file cannot be
    written.
    """
    account = plan.account
    with ensure_directory(jail, "etc", ROOT_ID, ROOT_ID, JAIL_DIRECTORY_MODE, steps) as etc:
        # A run killed mid-write leaves its temporary file: the next one converges.
        remove_stale_temporaries(etc, steps)
        status = lstat_entry(etc, USAGE_DIRECTORY)
        if status is not None and stat.S_ISDIR(status.st_mode):
            with open_directory(etc, USAGE_DIRECTORY) as usage:
                remove_stale_temporaries(usage, steps)
        if plan.jail_template is None:
            return
        uid = account.uid
        passwd = _base(plan.jail_template, "passwd", DEFAULT_PASSWD, uid) + (
            f"{uid}:x:{account.uid_number}:{account.gid_number}::/home/{uid}:{JAIL_SHELL}\n"
        )
        group = _base(plan.jail_template, "group", DEFAULT_GROUP, uid) + (
            f"{uid}:x:{account.gid_number}:\n"
        )
        for name, content in (("passwd", passwd), ("group", group)):
            _write(etc, name, content.encode(), ROOT_ID, JAIL_FILE_MODE, steps)


def _base(template: Path, name: str, default: str, uid: str) -> str:
    """The template's ``etc/<name>`` lines, without any line of ``uid`` (the account's own)."""
    try:
        fd = os.open(template, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return default
    with OpenDirectory(fd, template) as root:
        try:
            etc = open_directory(root, "etc")
        except (FileNotFoundError, OSError):
            return default
        with etc:
            text = _read_small(etc, name, MAX_BASE_BYTES)
    if text is None:
        return default
    lines = [line for line in text.splitlines() if line and line.split(":", 1)[0] != uid]
    return "".join(f"{line}\n" for line in lines)


def _read_small(directory: OpenDirectory, name: str, limit: int) -> str | None:
    """The text (``limit`` bytes at most) of the regular file ``name``; symlinks not followed."""
    try:
        fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=directory.fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def _write(
    directory: OpenDirectory, name: str, content: bytes, gid: int, mode: int, steps: list[str]
) -> None:
    if not file_matches(directory, name, content, ROOT_ID, gid, mode):
        replace_file(directory, name, content, uid=ROOT_ID, gid=gid, mode=mode)
        steps.append(f"wrote {directory.path / name}")


def find_jails(root: OpenDirectory, layout: str) -> Iterator[tuple[Path, OpenDirectory]]:
    """Yield ``(account directory path, open A/chroot)`` for every account under ``root``.

    The walk is :func:`provbackup.work.discover.account_directories` (the
    layout's names only, no symlink followed, ``.deleted`` skipped);
    accounts without a ``chroot`` directory are passed over. Each jail is
    closed when the iteration moves on.
    """
    for paths, account in account_directories(root, layout):
        chroot = lstat_entry(account, "chroot")
        if chroot is None or not stat.S_ISDIR(chroot.st_mode):
            continue
        with open_directory(account, "chroot") as jail:
            yield paths.account, jail
