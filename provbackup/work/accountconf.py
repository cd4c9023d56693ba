"""An account's snapshot configuration on disk, as both engines read it.

Every account's ``rsnapshot.conf`` says which intervals it keeps, whichever
engine takes the snapshots (the btrfs engine reads the same retain lines);
an active one marks the account for the snapshot runner. Everything is
reached from the backup root through directory descriptors opened with
``O_NOFOLLOW`` (:mod:`provbackup.work.safe`): nothing a customer planted is
followed.

- :func:`open_account` opens an account's directory and home from the root.
- :func:`read_conf` reads the retain lines and paths of an account's file
  and checks they are this account's own paths.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from provbackup.config import INTERVALS
from provbackup.errors import RETURN_RSNAPSHOT, WorkError
from provbackup.paths import RSNAPSHOT_CONF, AccountPaths
from provbackup.work.safe import OPEN_FILE_FLAGS, OpenDirectory, open_directory, open_root

MAX_CONF_BYTES = 64 * 1024
OLD_DESTINATION = "incoming/"
NEW_DESTINATION = "./"


@dataclass(frozen=True)
class AccountConf:
    """What the snapshot runner needs from an account's rsnapshot.conf.

    ``retain`` is the (interval, count) pairs in the file's order (the first
    is the interval rsnapshot syncs into); ``destination`` is the backup
    line's destination (``./``, or ``incoming/`` in the first release).
    """

    retain: tuple[tuple[str, int], ...]
    destination: str
    text: str

    @property
    def counts(self) -> dict[str, int]:
        """The retain counts by interval."""
        return dict(self.retain)

    @property
    def lowest(self) -> str | None:
        """The interval rsnapshot syncs into (the others rotate from it)."""
        return self.retain[0][0] if self.retain else None


@contextlib.contextmanager
def open_account(paths: AccountPaths) -> Iterator[tuple[OpenDirectory, OpenDirectory]]:
    """Open the account directory and its home from the root, never following a symlink.

    Yields ``(account, home)``. Raises FileNotFoundError when the account is
    gone, UnsafePathError for a symlink or file on the way.
    """
    parts = paths.home.relative_to(paths.root).parts
    account_depth = len(paths.account.relative_to(paths.root).parts)
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(open_root(paths.root))
        account = None
        for index, name in enumerate(parts):
            directory = stack.enter_context(open_directory(directory, name))
            if index == account_depth - 1:
                account = directory
        assert account is not None
        yield account, directory


def read_conf(
    account: OpenDirectory, paths: AccountPaths, name: str = RSNAPSHOT_CONF
) -> AccountConf:
    """Read the account's rsnapshot.conf (a regular file, at most 64 KiB, not followed).

    Checks that its snapshot_root and backup source are this account's own
    paths. Returns the :class:`AccountConf`. Raises WorkError
    (RETURN_RSNAPSHOT) naming the file for anything else.
    """
    where = account.path / name
    try:
        fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=account.fd)
    except FileNotFoundError:
        raise WorkError(f"{where}: vanished", return_value=RETURN_RSNAPSHOT) from None
    except OSError as error:
        raise WorkError(f"{where}: {error.strerror}", return_value=RETURN_RSNAPSHOT) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_CONF_BYTES:
            raise WorkError(
                f"{where}: not a regular file of at most {MAX_CONF_BYTES} bytes",
                return_value=RETURN_RSNAPSHOT,
            )
        data = os.read(fd, MAX_CONF_BYTES + 1)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    retain: list[tuple[str, int]] = []
    snapshot_root = destination = source = None
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] in ("retain", "interval") and len(fields) == 3:
            if fields[1] in INTERVALS and fields[2].isdigit() and int(fields[2]) > 0:
                retain.append((fields[1], int(fields[2])))
        elif fields[0] == "snapshot_root" and len(fields) == 2:
            snapshot_root = fields[1]
        elif fields[0] == "backup" and len(fields) >= 3:
            source, destination = fields[1], fields[2]
    if snapshot_root != f"{paths.snapshots}/" or source != f"{paths.incoming}/":
        raise WorkError(
            f"{where}: snapshot_root {snapshot_root!r} or backup source {source!r} is not this "
            f"account's ({paths.snapshots}/, {paths.incoming}/); run provbackup reset --mode "
            "modify for it",
            return_value=RETURN_RSNAPSHOT,
        )
    if destination not in (OLD_DESTINATION, NEW_DESTINATION):
        raise WorkError(
            f"{where}: backup destination {destination!r} is neither ./ nor incoming/",
            return_value=RETURN_RSNAPSHOT,
        )
    return AccountConf(retain=tuple(retain), destination=destination, text=text)
