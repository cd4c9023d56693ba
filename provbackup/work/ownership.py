"""One account directory, one owner: the record of which entry made an account directory.

The account directory ``A`` is derived from the uid alone, so without a
record a second entry with the same uid (or a new entry reusing a deleted
customer's uid, finding the leftover tree) would be handed the existing
tree, its owners "corrected" to the newcomer's uidNumber. So each ``A``
holds ``A/.provbackup-owner`` (root:root 0600; ``A`` is root's and
outside the customer's home): the ``entryUUID``, uidNumber and gidNumber
of the entry that made it. It is written atomically (a temporary file
created with ``O_EXCL``, then renamed; never through a symlink) and checked
before anything is done on add, modify and delete:

- a record naming another entryUUID fails the entry with 11 and nothing is
  touched (no chown, no hook, no quota);
- the same entryUUID with other numbers is the same entry renumbered by its
  operator: allowed, and the record is updated;
- no record (a tree the first release made, or a crash right after ``A``
  was created): the tree is adopted only when the owners already there are
  the entry's (home and ``.snapshots`` of group gidNumber, ``incoming/``
  and ``.ssh/`` of uidNumber:gidNumber, or root:gidNumber for an inactive
  ``incoming/``); anything else fails with 11. A delete adopts the same way
  (it writes nothing).

An entry without an entryUUID (a directory server that does not give one)
is checked by the owners alone, and cannot take over a tree recorded for
an entry that had one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field

from provbackup.errors import EntryError, UnsafePathError
from provbackup.model import ROOT_ID, Account
from provbackup.paths import AccountPaths
from provbackup.work.safe import OpenDirectory, open_directory, open_root

OWNER_FILE = ".provbackup-owner"
OWNER_MODE = 0o600
MAX_RECORD_BYTES = 4096
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Owner:
    """Who an account directory belongs to: an entry's entryUUID, uidNumber and gidNumber."""

    entry_uuid: str | None
    uid_number: int
    gid_number: int
    # The backup server that holds it (README 'Many backup servers, one directory').
    # Not part of who owns it: a moved tree keeps its owner and is re-recorded.
    server: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, account: Account, server: str | None = None) -> Owner:
        """The owner ``account`` would be recorded as, on backup server ``server``."""
        return cls(account.entry_uuid, account.uid_number, account.gid_number, server)

    def record(self, account: Account) -> bytes:
        """The record's content for ``account`` (JSON, one line)."""
        document = {
            "entryUUID": self.entry_uuid,
            "uidNumber": self.uid_number,
            "gidNumber": self.gid_number,
            "uid": account.uid,
            "dn": account.dn,
        }
        if self.server is not None:
            document["server"] = self.server
        return (json.dumps(document, sort_keys=True) + "\n").encode("utf-8")


def read_record(account_directory: OpenDirectory) -> Owner | None:
    """Return the owner recorded in the open account directory, None when there is none.

    An empty or unreadable record (a crash while it was first written)
    counts as none: the tree is then adopted only by its owners. Raises
    UnsafePathError when something other than a regular file stands there.
    """
    try:
        fd = os.open(OWNER_FILE, READ_FLAGS, dir_fd=account_directory.fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UnsafePathError(
            f"{account_directory.path / OWNER_FILE}: {error.strerror}; not following it"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(
                f"{account_directory.path / OWNER_FILE}: not a regular file; left alone"
            )
        data = os.read(fd, MAX_RECORD_BYTES)
    finally:
        os.close(fd)
    try:
        document = json.loads(data)
        uuid = document["entryUUID"]
        server = document.get("server")
        return Owner(
            uuid if isinstance(uuid, str) else None,
            int(document["uidNumber"]),
            int(document["gidNumber"]),
            server if isinstance(server, str) else None,
        )
    except (ValueError, KeyError, TypeError):
        return None


def check_owner(account: Account, server: str | None = None) -> bool:
    """Check that ``account``'s directory is its own before anything is done on it.

    Returns True when the record must be written (a new account, no record
    yet, the entry was renumbered, or it names another backup server than
    ``server``: a moved tree), False when it is right.
    Raises UnsafePathError (11) naming the directory and its owner when it
    was made for another entry, or has no record and owners that are not
    the entry's.
    """
    owner = Owner.of(account)
    paths = account.paths
    with contextlib.ExitStack() as stack:
        parent = stack.enter_context(open_root(paths.root))
        try:
            for directory in (*paths.layout_directories, paths.account):
                parent = stack.enter_context(open_directory(parent, directory.name))
        except FileNotFoundError:
            return True  # a new account: recorded as soon as A is made
        recorded = read_record(parent)
        moved = server is not None and recorded is not None and recorded.server != server
        if recorded == owner:
            return moved
        if recorded is not None and recorded.entry_uuid is not None:
            if recorded.entry_uuid != owner.entry_uuid:
                raise UnsafePathError(
                    f"{paths.account} was made for another entry (entryUUID "
                    f"{recorded.entry_uuid}, uidNumber {recorded.uid_number}), not this one "
                    f"(entryUUID {owner.entry_uuid}): a reused or duplicate uid? "
                    "Nothing was touched; see README 'One account directory, one owner'"
                )
            return True  # this entry, renumbered by its operator: record the new numbers
        _check_owners(parent, account, recorded)
        return recorded != owner or moved


def _check_owners(
    account_directory: OpenDirectory, account: Account, recorded: Owner | None
) -> None:
    """Raise UnsafePathError unless every owner found in the tree is the entry's."""
    uid, gid = account.uid_number, account.gid_number
    problems = []
    if recorded is not None and (recorded.uid_number, recorded.gid_number) != (uid, gid):
        problems.append(f"recorded for {recorded.uid_number}:{recorded.gid_number}")
    found = _owners(account_directory, account)
    # root:root is what a directory is between its mkdir and its chown (a crash):
    # nobody's yet. Accepted for the home (what is in it is checked) and empty ones.
    unowned = (ROOT_ID, ROOT_ID)
    expected = {
        "home": {(ROOT_ID, gid), (uid, gid), unowned},
        ".snapshots": {(ROOT_ID, gid)},
        "incoming": {(uid, gid), (ROOT_ID, gid)},
        ".ssh": {(uid, gid)},
    }
    for name, (owner, empty) in found.items():
        if owner not in expected[name] and not (owner == unowned and empty):
            problems.append(f"{name} is owned by {owner[0]}:{owner[1]}")
    if problems:
        raise UnsafePathError(
            f"{account.paths.account} has no ownership record and is not this entry's "
            f"(uidNumber {uid}, gidNumber {gid}): {', '.join(problems)}; a leftover tree of "
            "another customer? Nothing was touched; see README 'One account directory, one owner'"
        )


def _owners(
    account_directory: OpenDirectory, account: Account
) -> dict[str, tuple[tuple[int, int], bool]]:
    """The owners of the home and the directories in it that exist, and whether each is empty.

    Never follows a link; a symlink or a file there is left to the work to refuse.
    """
    found: dict[str, tuple[tuple[int, int], bool]] = {}
    with contextlib.ExitStack() as stack:
        parent = account_directory
        try:
            for name in ("chroot", "home", account.uid):
                parent = stack.enter_context(open_directory(parent, name))
        except FileNotFoundError:
            return found
        status = os.fstat(parent.fd)
        found["home"] = ((status.st_uid, status.st_gid), False)
        for name in (".snapshots", "incoming", ".ssh"):
            try:
                with open_directory(parent, name) as directory:
                    status = os.fstat(directory.fd)
                    with os.scandir(directory.fd) as entries:
                        empty = next(entries, None) is None
            except (FileNotFoundError, UnsafePathError):
                continue
            found[name] = ((status.st_uid, status.st_gid), empty)
    return found


def write_record(
    account_directory: OpenDirectory, account: Account, steps: list[str], server: str | None = None
) -> None:
    """Record ``account`` (held by backup server ``server``) as the open directory's owner.

    A temporary file created with ``O_EXCL|O_NOFOLLOW`` (root, 0600) is
    renamed over the record: a reader sees the old record or the new one,
    and a symlink is replaced, never followed. Not fsynced: a record lost
    in a crash is rewritten by the next add or modify (the tree is adopted
    by its owners meanwhile).
    """
    temporary = f".provbackup-tmp.{OWNER_FILE}.{secrets.token_hex(6)}"
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        OWNER_MODE,
        dir_fd=account_directory.fd,
    )
    try:
        try:
            os.fchown(fd, ROOT_ID, ROOT_ID)
            os.fchmod(fd, OWNER_MODE)
            os.write(fd, Owner.of(account, server).record(account))
        finally:
            os.close(fd)
        os.rename(
            temporary, OWNER_FILE, src_dir_fd=account_directory.fd, dst_dir_fd=account_directory.fd
        )
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=account_directory.fd)
        raise
    steps.append(f"recorded the owner of {account_directory.path} in {OWNER_FILE}")


def describe_owner(paths: AccountPaths, entry_uuid: str | None) -> str:
    """Say, for ``show``, whom the account directory is recorded for, next to ``entry_uuid``.

    Read-only, follows no link, never raises for what it finds.
    """
    try:
        with contextlib.ExitStack() as stack:
            parent = stack.enter_context(open_root(paths.root))
            for directory in (*paths.layout_directories, paths.account):
                parent = stack.enter_context(open_directory(parent, directory.name))
            recorded = read_record(parent)
    except (OSError, EntryError) as error:
        return f"unreadable: {error}"
    if recorded is None:
        return "no record (the next add or modify records it if the owners are the entry's)"
    text = (
        f"entryUUID {recorded.entry_uuid}, uidNumber {recorded.uid_number}, "
        f"gidNumber {recorded.gid_number}"
    )
    if recorded.server is not None:
        text += f", server {recorded.server}"
    if recorded.entry_uuid is None or entry_uuid is None:
        return text
    if recorded.entry_uuid == entry_uuid:
        return f"{text} (this entry)"
    return f"{text}: ANOTHER entry (this one is {entry_uuid}); its work fails with 11"


def account_directory_exists(paths: AccountPaths) -> bool:
    """Tell whether this server has the account directory of ``paths``; read-only.

    Follows no link. Something unsafe standing there (a symlink, a file)
    counts as present: the work then refuses it with its reason.
    """
    try:
        with contextlib.ExitStack() as stack:
            parent = stack.enter_context(open_root(paths.root))
            for directory in (*paths.layout_directories, paths.account):
                parent = stack.enter_context(open_directory(parent, directory.name))
    except FileNotFoundError:
        return False
    except (OSError, EntryError):
        return True
    return True
