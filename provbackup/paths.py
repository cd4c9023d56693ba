"""Where an account lives under the backup root: pure path arithmetic, no I/O.

The gate (:mod:`provbackup.entry`) derives an account's paths once, and
checks the entry's homeDirectory against them; the plan and the work use
them as they are.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from provbackup.errors import InvalidEntryError, UnsafePathError

SAFE_UID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
RSNAPSHOT_CONF = "rsnapshot.conf"
RSNAPSHOT_CONF_INACTIVE = "rsnapshot.conf.inactive"
RSNAPSHOT_LOCK = "rsnapshot.pid"
QUARANTINE_DIRECTORY = ".deleted"


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


def check_home_directory(value: str | None, paths: AccountPaths, jailed: bool = False) -> None:
    """Accept a homeDirectory that is the account's home inside the backup root.

    ``value`` is the entry's homeDirectory (None: not set). Without a jail
    the jailkit form ``A/chroot/./home/<uid>``, the plain
    ``A/chroot/home/<uid>`` (compared after normalizing ``.`` and repeated
    slashes) and None are accepted. With ``jailed`` (a jail template is
    configured) only the jailkit form is: jk_chrootsh finds the chroot at
    the ``/./``, so a login with any other value fails. Raises
    UnsafePathError naming homeDirectory and the value for a path that is
    not the account's home; InvalidEntryError (10) for a missing value or
    marker under ``jailed``.
    """
    expected = paths.expected_home_directory
    if value is None:
        if jailed:
            raise InvalidEntryError(
                "homeDirectory", None, f"needed for a jailed login; expected {expected!r}"
            )
        return

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
    if jailed and _without_marker(value, paths):
        raise InvalidEntryError(
            "homeDirectory",
            value,
            "lacks the jail marker '/./' after the chroot (jk_chrootsh cannot log in); "
            f"expected {expected!r}",
        )


def _without_marker(value: str, paths: AccountPaths) -> bool:
    """True unless ``value`` marks the chroot with ``/./`` (``A/chroot/./home/<uid>``)."""
    jail, marker, inside = value.partition("/./")
    if not marker:
        return True
    return (
        "/" + os.path.normpath(jail).lstrip("/") != str(paths.chroot)
        or os.path.normpath("/" + inside) != f"/home/{paths.home.name}"
    )


def is_within(path: Path, root: Path) -> bool:
    """Return True if the normalized absolute ``path`` is ``root`` or below it (no I/O)."""
    # The same test as ``path == root or root in path.parents``, without making every parent.
    return path.is_relative_to(root)
