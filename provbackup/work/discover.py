"""Find the accounts a snapshot run works on: the disk decides, not LDAP.

:func:`account_directories` walks the layout (``stoney``: four levels of
digit names; ``flat``: one level) for account directories; ``.deleted`` is
never matched, and nothing is followed. :func:`find_accounts` keeps those
holding a regular file named exactly ``rsnapshot.conf`` (inactive accounts
have ``rsnapshot.conf.inactive``); the jail's refresh and the login check
take every account's ``chroot``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from provbackup.errors import InvalidEntryError, UnsafePathError
from provbackup.paths import RSNAPSHOT_CONF, SAFE_UID, AccountPaths, account_paths
from provbackup.work.safe import OpenDirectory, lstat_entry, open_directory, open_root

STONEY_LEVELS = (re.compile(r"\d"), re.compile(r"\d{3}"), re.compile(r"\d{3}"))


def find_accounts(root: Path, layout: str) -> Iterator[AccountPaths]:
    """Yield the paths of every account under ``root`` whose active rsnapshot.conf exists.

    Only a regular file named exactly ``rsnapshot.conf`` counts (see
    :func:`account_directories` for the walk). Raises WorkError when the
    root cannot be opened.
    """
    with open_root(root) as top:
        for paths, account in account_directories(top, layout):
            status = lstat_entry(account, RSNAPSHOT_CONF)
            if status is not None and stat.S_ISREG(status.st_mode):
                yield paths


def account_directories(
    top: OpenDirectory, layout: str
) -> Iterator[tuple[AccountPaths, OpenDirectory]]:
    """Yield ``(paths, open account directory)`` for every account under the open root ``top``.

    Walks only the names the layout makes (digits in ``stoney``, safe uids
    in ``flat``; never a dot name such as ``.deleted``), never follows a
    symlink and never recurses on the Python stack: the depth is fixed by
    the layout. Each account directory is closed when the iteration moves on.
    """
    if layout == "flat":
        yield from _accounts_in(top, top.path, layout)
        return
    for first in _subdirectories(top, STONEY_LEVELS[0]):
        with first:
            for second in _subdirectories(first, STONEY_LEVELS[1]):
                with second:
                    for third in _subdirectories(second, STONEY_LEVELS[2]):
                        with third:
                            yield from _accounts_in(third, top.path, layout)


def _subdirectories(parent: OpenDirectory, pattern: re.Pattern[str]) -> Iterator[OpenDirectory]:
    with os.scandir(parent.fd) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
        )
    for name in names:
        try:
            yield open_directory(parent, name)
        except (FileNotFoundError, UnsafePathError):
            continue  # vanished or replaced since the listing


def _accounts_in(
    parent: OpenDirectory, root: Path, layout: str
) -> Iterator[tuple[AccountPaths, OpenDirectory]]:
    with os.scandir(parent.fd) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if SAFE_UID.fullmatch(entry.name)
            and not entry.name.startswith(".")
            and entry.is_dir(follow_symlinks=False)
        )
    for name in names:
        try:
            paths = account_paths(root, layout, name)
        except (ValueError, InvalidEntryError):
            continue  # a name this layout never makes
        if paths.account.parent != parent.path:
            continue  # e.g. 12345 found under 7/707/723: not where the layout puts it
        try:
            account = open_directory(parent, name, path=paths.account)
        except (OSError, UnsafePathError):
            continue  # vanished or replaced since the listing
        with account:
            yield paths, account
