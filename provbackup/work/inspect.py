"""Read-only view of an account on the server, for ``show``."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provbackup.config import Config
from provbackup.entry import LdapEntry
from provbackup.errors import EntryError, WorkError
from provbackup.paths import AccountPaths, account_paths
from provbackup.work.ownership import describe_owner
from provbackup.work.safe import (
    OpenDirectory,
    describe_kind,
    lstat_entry,
    open_directory,
    open_root,
)

NEWEST_SNAPSHOT = re.compile(r"(hourly|daily|weekly|monthly|yearly)\.0")
# What the engine adds to the view (provbackup.engines.base.Engine.inspect).
Inspect = Callable[[AccountPaths], dict[str, Any]]


def inspect_entry(
    entry: LdapEntry, config: Config, *, engine: str | None = None, inspect: Inspect | None = None
) -> dict[str, Any]:
    """Describe the server side of ``entry`` (see :func:`inspect_account`, ``engine``, ``inspect``).

    Needs only the entry's uid. Raises InvalidEntryError when the uid is
    missing or unusable in the configured layout.
    """
    uid = entry.single("uid")
    paths = account_paths(config.backup.root, config.backup.layout, uid)
    view = inspect_account(paths, engine=engine, inspect=inspect)
    if view["exists"]:
        view["owner"] = describe_owner(paths, entry.optional("entryUUID"))
    if not view["exists"]:
        view["quarantined"] = quarantined(
            config.backup.root, uid or "", config.delete.quarantine_days
        )
    return view


def quarantined(root: Path, uid: str, days: int) -> list[str]:
    """Where a deleted account with ``uid`` waits in ``<root>/.deleted``, and until when.

    Returns one text per quarantined copy, oldest first: its path, when it
    was deleted and from when a run purges it. Empty when there is none
    (purged already, never deleted, or ``[delete] quarantine_days = 0``).
    Follows no symlink; never raises for what it finds.
    """
    from provbackup.model import parse_timestamp
    from provbackup.paths import QUARANTINE_DIRECTORY
    from provbackup.work.purge import QUARANTINE_NAME

    try:
        with (
            open_root(root) as top,
            open_directory(top, QUARANTINE_DIRECTORY) as quarantine,
        ):
            names = os.listdir(quarantine.fd)
    except (OSError, EntryError):
        return []
    found = []
    for name in sorted(names):
        match = QUARANTINE_NAME.fullmatch(name)
        if match is None or match["uid"] != uid:
            continue
        deleted = parse_timestamp(match["stamp"])
        when = ""
        if deleted is not None:
            purge = (deleted.replace(tzinfo=UTC) + timedelta(days=days)).isoformat()
            when = f" (deleted {deleted.replace(tzinfo=UTC).isoformat()}, purged from {purge})"
        found.append(f"{root / QUARANTINE_DIRECTORY / name}{when}")
    return found


def inspect_account(
    paths: AccountPaths, *, engine: str | None = None, inspect: Inspect | None = None
) -> dict[str, Any]:
    """Describe the account's directories, rsnapshot.conf and newest snapshot.

    Walks from the backup root without following any symlink: a symlink or
    a file on the way is reported as such and what lies beyond it as
    ``unreachable``. Returns a JSON-ready dict: ``account_dir``,
    ``exists`` (the account directory is a real directory), ``entries``
    (name -> ``path``, ``type`` and, where it exists, ``owner``, ``group``,
    ``mode``), ``rsnapshot_conf`` (``active``, ``inactive``, ``both`` or
    ``missing``) and ``newest_snapshot`` (``name`` and UTC ``time``, or
    None); first ``engine`` (the engine's title) when given, last what
    ``inspect`` (the engine's) adds: for btrfs, ``btrfs`` (the incoming/
    subvolume, its qgroup, limit and figures). Never raises for what it
    finds; a missing backup root reads as everything missing.
    """
    named = {
        "account": paths.account,
        "chroot": paths.chroot,
        "home": paths.home,
        "incoming": paths.incoming,
        "ssh": paths.ssh,
        "snapshots": paths.snapshots,
        "rsnapshot_conf": paths.rsnapshot_conf,
        "rsnapshot_conf_inactive": paths.rsnapshot_conf_inactive,
    }
    entries = {name: _probe(paths.root, path) for name, path in named.items()}
    active = entries["rsnapshot_conf"]["type"] == "regular file"
    inactive = entries["rsnapshot_conf_inactive"]["type"] == "regular file"
    conf = {(True, False): "active", (False, True): "inactive", (True, True): "both"}.get(
        (active, inactive), "missing"
    )
    view: dict[str, Any] = {} if engine is None else {"engine": engine}
    view |= {
        "account_dir": str(paths.account),
        "home": str(paths.home),
        "exists": entries["account"]["type"] == "directory",
        "entries": entries,
        "rsnapshot_conf": conf,
        "newest_snapshot": (
            _newest_snapshot(paths) if entries["snapshots"]["type"] == "directory" else None
        ),
    }
    if inspect is not None:
        view |= inspect(paths)
    return view


def _probe(root: Path, path: Path) -> dict[str, Any]:
    parts = path.relative_to(root).parts
    try:
        with contextlib.ExitStack() as stack:
            directory = stack.enter_context(open_root(root))
            for index, name in enumerate(parts[:-1]):
                try:
                    directory = stack.enter_context(open_directory(directory, name))
                except FileNotFoundError:
                    return {"path": str(path), "type": "missing"}
                except EntryError:
                    blocker = root.joinpath(*parts[: index + 1])
                    return {
                        "path": str(path),
                        "type": "unreachable",
                        "reason": f"{blocker} is not a directory",
                    }
            status = lstat_entry(directory, parts[-1])
    except WorkError:
        return {"path": str(path), "type": "missing"}
    if status is None:
        return {"path": str(path), "type": "missing"}
    return {
        "path": str(path),
        "type": describe_kind(status.st_mode),
        "owner": status.st_uid,
        "group": status.st_gid,
        "mode": f"{stat.S_IMODE(status.st_mode):04o}",
    }


def _newest_snapshot(paths: AccountPaths) -> dict[str, Any] | None:
    with contextlib.ExitStack() as stack:
        directory: OpenDirectory = stack.enter_context(open_root(paths.root))
        try:
            for name in paths.snapshots.relative_to(paths.root).parts:
                directory = stack.enter_context(open_directory(directory, name))
        except (OSError, EntryError):
            return None
        newest: tuple[float, str] | None = None
        for name in os.listdir(directory.fd):
            if not NEWEST_SNAPSHOT.fullmatch(name):
                continue
            status = lstat_entry(directory, name)
            if status is None or not stat.S_ISDIR(status.st_mode):
                continue
            if newest is None or status.st_mtime > newest[0]:
                newest = (status.st_mtime, name)
    if newest is None:
        return None
    return {
        "name": newest[1],
        "time": datetime.fromtimestamp(newest[0], UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
