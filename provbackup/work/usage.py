"""What an account's clients last finished, and its usage file (both engines).

The figures come from the engine (:meth:`provbackup.engines.base.Engine.usage`;
the rsnapshot engine's walk is :mod:`provbackup.engines.rsnapshot_usage`).
``sstQuota`` bounds what ``incoming/`` and ``.snapshots/`` hold together:
``backup`` is ``incoming/`` and ``snapshot`` what ``.snapshots/`` adds on
top of it, and quota - backup - snapshot is what is left, as getQuota shows.

``backupEnded.xml`` is written by the customer and read as root: opened
without following a symlink or blocking on a FIFO, at most 64 KiB, parsed
by defusedxml (a DOCTYPE or an entity is refused in whatever encoding the
file uses: nothing is expanded or fetched), its enddate taken only in the
one form Sepiola writes, and host names validated and length-capped before
they reach LDAP. Whatever a host's file holds, that host is left out with
one log line; it never fails the account.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from provbackup.errors import EntryError
from provbackup.model import ROOT_ID, TIMESTAMP_FORMAT
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    open_directory,
    remove_stale_temporaries,
    replace_file,
)

logger = logging.getLogger(__name__)

MAX_OPEN_FILES = 1 << 20
MAX_XML_BYTES = 64 * 1024
MAX_HOSTS = 100
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# What Sepiola writes (Qt's ISO date with an offset), in ASCII digits only.
END_DATE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:?[0-9]{2})"
)
EARLIEST_YEAR = 1970  # and at most 9999: a timestamp keeps its four digits
ENDED_FILE = (".sepiola_backup", "backupEnded.xml")
LAST_BACKUP_ATTRIBUTE = "sstBackupLastSuccessfulBackup"
SHOWN = 40  # characters of a customer's value a message shows
USAGE_DIRECTORY = ("etc", "provbackup")
USAGE_FILE = "usage"
USAGE_MODE = 0o640


@dataclass(frozen=True)
class Usage:
    """Allocated bytes: ``backup`` in incoming/, ``snapshot`` added by .snapshots/."""

    backup: int
    snapshot: int


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to the hard limit; return the new soft limit.

    The walk holds a descriptor per level of depth, per worker: a customer's
    deeply nested upload must not run the process out of descriptors.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
        if wanted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
    return soft


def last_successful_backups(home: OpenDirectory) -> list[str]:
    """Return ``<host>:YYYYMMDDThhmmssZ`` for every client host whose last backup succeeded.

    Reads ``incoming/<host>/.sepiola_backup/backupEnded.xml`` of each host
    directory (hosts sorted, at most 100, names validated). A host whose
    file is missing or says ``success`` other than 1 is left out; one whose
    file raises anything (unsafe, refused by :func:`parse_backup_ended`) is
    left out with one warning naming account, host, file and value.
    """
    values: list[str] = []
    with open_directory(home, "incoming") as incoming:
        with os.scandir(incoming.fd) as entries:
            hosts = sorted(
                entry.name
                for entry in entries
                if HOST_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            )
        for host in hosts[:MAX_HOSTS]:
            try:
                ended = _backup_ended(incoming, host)
            except FileNotFoundError:
                continue  # no backup finished from this host yet
            except Exception as error:  # the customer's data: this host only, never the account
                where = incoming.path.joinpath(host, *ENDED_FILE)
                logger.warning("account %s: host %s: %s: %s; left out of %s", home.path.name, host,
                               where, _one_line(error), LAST_BACKUP_ATTRIBUTE)  # fmt: skip
                continue
            if ended is not None:
                values.append(f"{host}:{ended.strftime(TIMESTAMP_FORMAT)}")
    return values


def _one_line(error: Exception) -> str:
    """The error as one printable, bounded line (it may quote a customer's bytes)."""
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if not isinstance(error, ValueError):
        text = f"{type(error).__name__}: {text}"
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return text if len(text) <= 4 * SHOWN else text[: 4 * SHOWN] + "..."


def _shown(value: str | bytes) -> str:
    """A customer's value for a message: quoted, escaped, cut to SHOWN characters."""
    return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")


def _backup_ended(incoming: OpenDirectory, host: str) -> datetime | None:
    with (
        open_directory(incoming, host) as client,
        open_directory(client, ENDED_FILE[0]) as metadata,
    ):
        data = _read_small_file(metadata, ENDED_FILE[1])
    return parse_backup_ended(data)


def parse_backup_ended(data: bytes) -> datetime | None:
    """Return the UTC end time of a successful backup from a backupEnded.xml, else None.

    Raises ValueError naming what is wrong (with the value, cut) for: over
    64 KiB; a DOCTYPE or entity in any encoding (defusedxml: nothing
    expanded or fetched); XML that is not well-formed (UTF-32, which expat
    cannot read, too); another root; an enddate other than
    ``YYYY-MM-DDThh:mm:ss[.ffffff]`` and ``Z`` or ``+hh:mm`` in ASCII
    digits, no real time, or outside the years 1970-9999 in UTC.
    """
    if len(data) > MAX_XML_BYTES:
        raise ValueError(f"larger than {MAX_XML_BYTES} bytes")
    try:
        root = SafeElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as error:
        raise ValueError(f"refused, nothing expanded or fetched: {error}") from None
    except ElementTree.ParseError as error:
        raise ValueError(f"not well-formed XML ({error}), starting {_shown(data)}") from None
    if root.tag != "backup_ended":
        raise ValueError(f"root element {_shown(root.tag)}, expected backup_ended")
    success = (root.findtext("success") or "").strip()
    if success != "1":
        return None
    text = (root.findtext("enddate") or "").strip()
    if not END_DATE.fullmatch(text):
        raise ValueError(f"enddate {_shown(text)} is not an ISO 8601 time with a UTC offset")
    try:
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as error:  # 2013-02-30, +24:00, 0001-01-01...+00:01
        raise ValueError(f"enddate {_shown(text)} is not a time: {error}") from None
    if moment.year < EARLIEST_YEAR:
        raise ValueError(f"enddate {_shown(text)} is before {EARLIEST_YEAR}")
    return moment


def _read_small_file(parent: OpenDirectory, name: str) -> bytes:
    fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=parent.fd)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("not a regular file")
        if status.st_size > MAX_XML_BYTES:
            raise ValueError(f"larger than {MAX_XML_BYTES} bytes")
        return os.read(fd, MAX_XML_BYTES + 1)
    finally:
        os.close(fd)


def usage_line(quota_bytes: int, usage: Usage | None) -> str:
    """The usage file's one line: ``<quota_bytes> <backup_bytes> <snapshot_bytes>``."""
    backup, snapshot = (usage.backup, usage.snapshot) if usage is not None else (0, 0)
    return f"{max(0, quota_bytes)} {backup} {snapshot}\n"


def read_usage_file(account: OpenDirectory) -> tuple[int, int, int] | None:
    """Return the three figures of ``A/chroot/etc/provbackup/usage``, None when unreadable."""
    try:
        with (
            open_directory(account, "chroot") as chroot,
            open_directory(chroot, USAGE_DIRECTORY[0]) as etc,
            open_directory(etc, USAGE_DIRECTORY[1]) as directory,
        ):
            data = _read_small_file(directory, USAGE_FILE)
    except (OSError, ValueError):
        return None
    fields = data.decode("ascii", errors="replace").split()
    # ASCII digits only ("²".isdigit() is true, int("²") raises), and no giant numbers.
    if len(fields) != 3 or not all(re.fullmatch(r"[0-9]{1,20}", field) for field in fields):
        return None
    quota, backup, snapshot = (int(field) for field in fields)
    return quota, backup, snapshot


def write_usage_file(
    account: OpenDirectory, gid: int, quota_bytes: int, usage: Usage | None
) -> None:
    """Replace ``A/chroot/etc/provbackup/usage`` atomically (root:gid 0640, no link followed).

    Creates ``chroot/etc/provbackup`` (root:root 0755) where missing. Raises
    OSError or UnsafePathError when the jail's directories are not plain
    directories.
    """
    steps: list[str] = []
    with (
        open_directory(account, "chroot") as chroot,
        ensure_directory(chroot, USAGE_DIRECTORY[0], ROOT_ID, ROOT_ID, 0o755, steps) as etc,
        ensure_directory(etc, USAGE_DIRECTORY[1], ROOT_ID, ROOT_ID, 0o755, steps) as directory,
    ):
        # A run killed between writing and renaming left its temporary file (both
        # writers hold the account lock, so none is in use now).
        remove_stale_temporaries(directory, steps)
        content = usage_line(quota_bytes, usage).encode("ascii")
        replace_file(directory, USAGE_FILE, content, uid=ROOT_ID, gid=gid, mode=USAGE_MODE)


def update_usage_quota(
    account: OpenDirectory, gid: int, quota_bytes: int | None, steps: list[str]
) -> None:
    """Put ``quota_bytes`` into the usage file, keeping its sizes (``process`` add/modify).

    ``quota_bytes`` None (no sstQuota) keeps the file's quota. Writes only
    when the line changes; appends a step when it does. The file only
    informs getQuota: failing to write it (a full disk) is a warning, never
    the entry's failure; the next snapshot run writes it again.
    """
    _remove_stale_temporaries(account, steps)
    previous = read_usage_file(account)
    backup, snapshot = (previous[1], previous[2]) if previous else (0, 0)
    quota = quota_bytes if quota_bytes is not None else (previous[0] if previous else 0)
    if previous == (quota, backup, snapshot) and _usage_owner_is(account, gid):
        return
    try:
        write_usage_file(account, gid, quota, Usage(backup=backup, snapshot=snapshot))
    except (OSError, EntryError) as error:
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        logger.warning("%s: usage file not updated: %s%s", account.path, where, reason)
        steps.append(f"usage file not updated: {where}{reason}")
        return
    steps.append(f"usage file: quota {quota} bytes")


def _remove_stale_temporaries(account: OpenDirectory, steps: list[str]) -> None:
    """Remove what a run killed while replacing the usage file left (converges like A's)."""
    try:
        with (
            open_directory(account, "chroot") as chroot,
            open_directory(chroot, USAGE_DIRECTORY[0]) as etc,
            open_directory(etc, USAGE_DIRECTORY[1]) as directory,
        ):
            remove_stale_temporaries(directory, steps)
    except (OSError, EntryError):
        return


def _usage_owner_is(account: OpenDirectory, gid: int) -> bool:
    """True when the usage file has its owner and mode (and no killed run's temporary is left)."""
    try:
        with (
            open_directory(account, "chroot") as chroot,
            open_directory(chroot, USAGE_DIRECTORY[0]) as etc,
            open_directory(etc, USAGE_DIRECTORY[1]) as directory,
        ):
            status = os.stat(USAGE_FILE, dir_fd=directory.fd, follow_symlinks=False)
            left: list[str] = []
            remove_stale_temporaries(directory, left)
    except OSError:
        return False
    return (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (
        ROOT_ID,
        gid,
        USAGE_MODE,
    )
