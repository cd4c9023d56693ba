"""What surrounds the engine migration: the root it needs, ``check``'s layout warning.

:func:`check_root` refuses a root the btrfs engine cannot take before any
account is touched; :func:`layout_warnings` is ``check``'s part (pure):
accounts of both engines' layouts on one root, or moved accounts with the
other engine configured. The migration itself is
:mod:`provbackup.engines.migration`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from provbackup.engines.migration import PLAIN, SUBVOLUME
from provbackup.errors import ConfigError
from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.safe import open_root


def check_root(root: Path) -> None:
    """Refuse a backup root the btrfs engine cannot take: not btrfs, or quotas off.

    Raises ConfigError (78) naming the reason and the fix; WorkError when
    the root is missing.
    """
    with open_root(root) as directory:
        if not kernel.is_btrfs(directory.fd):
            raise ConfigError(
                f"migrate-engine: the backup root {root} is not on a btrfs filesystem: "
                "the btrfs engine needs one (docs/btrfs.md)"
            )
        uuid = kernel.fsid(directory.fd)
    if not kernel.quota_state(uuid)[0]:
        raise ConfigError(
            f"migrate-engine: quotas are not enabled on {root}'s btrfs filesystem "
            f"(btrfs quota enable {root}; docs/btrfs.md says which mode)"
        )


def layout_warnings(layouts: Mapping[str, int], engine: str) -> list[str]:
    """Warn when accounts of both engines' layouts, or of the other engine's only, are on the root.

    Takes the count of accounts by :func:`layout_of` and the configured engine's name;
    pure. Returns the warnings (none when every account is in the
    configured engine's layout).
    """
    plain, moved = layouts.get(PLAIN, 0), layouts.get(SUBVOLUME, 0)
    if plain and moved:
        return [
            f"accounts of both engines' layouts on the backup root: {plain} rsnapshot "
            f"(plain incoming/), {moved} btrfs ([backup] engine = {engine}); finish with "
            "provbackup migrate-engine --all, then set [backup] engine = btrfs"
        ]
    if moved and engine != "btrfs":
        return [
            f"{moved} accounts in the btrfs engine's layout but [backup] engine = {engine}: "
            "set [backup] engine = btrfs"
        ]
    return []
