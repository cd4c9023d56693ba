"""The btrfs ioctls the btrfs engine needs, on open directory descriptors.

Each function takes file descriptors (opened without following symlinks by
:mod:`provbackup.work.safe`) and names of one path component, never a
path: the kernel resolves nothing a customer could have swapped. Layouts
are those of ``linux/btrfs.h`` (stable kernel ABI). Every function raises
OSError with the kernel's errno on failure.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

BTRFS_SUPER_MAGIC = 0x9123683E
# The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
SUBVOLUME_ROOT_INODE = 256
SYSFS = Path("/sys/fs/btrfs")

_MAGIC = 0x94
_WRITE = 1
_READ = 2


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_MAGIC << 8) | number


_VOL_ARGS_V2 = 4096  # struct btrfs_ioctl_vol_args_v2
_NAME_OFFSET = 56  # its name / subvolid union
_NAME_MAX = 4039
_INO_LOOKUP = _ioc(_READ | _WRITE, 18, 4096)
_SNAP_CREATE_V2 = _ioc(_WRITE, 23, _VOL_ARGS_V2)
_SUBVOL_CREATE_V2 = _ioc(_WRITE, 24, _VOL_ARGS_V2)
_SUBVOL_GETFLAGS = _ioc(_READ, 25, 8)
_SUBVOL_SETFLAGS = _ioc(_WRITE, 26, 8)
_FS_INFO = _ioc(_READ, 31, 1024)
_QGROUP_ASSIGN = _ioc(_WRITE, 41, 24)
_QGROUP_CREATE = _ioc(_WRITE, 42, 16)
_QGROUP_LIMIT = _ioc(_READ, 43, 48)
_SNAP_DESTROY_V2 = _ioc(_WRITE, 63, _VOL_ARGS_V2)

_FLAG_READ_ONLY = 1 << 1  # BTRFS_SUBVOL_RDONLY
_FLAG_QGROUP_INHERIT = 1 << 2  # BTRFS_SUBVOL_QGROUP_INHERIT
_FLAG_SPEC_BY_ID = 1 << 4  # BTRFS_SUBVOL_SPEC_BY_ID
_LIMIT_MAX_REFERENCED = 1  # BTRFS_QGROUP_LIMIT_MAX_RFER
_NO_LIMIT = (1 << 64) - 1  # CLEAR_VALUE: removes the limit
_TREE_SEARCH = _ioc(_READ | _WRITE, 17, 4096)
_SEARCH_KEY_BYTES = 104  # struct btrfs_ioctl_search_key
_SEARCH_ITEMS = 4096  # as many as fit in the buffer
_ROOT_TREE = 1  # BTRFS_ROOT_TREE_OBJECTID
_ROOT_REF_KEY = 156  # BTRFS_ROOT_REF_KEY: (parent, ROOT_REF, child) -> dirid, name


def qgroup_id(level: int, number: int) -> int:
    """Return the kernel's qgroup id of ``level/number`` (``level << 48 | number``)."""
    return (level << 48) | number


def is_btrfs(fd: int) -> bool:
    """Return True when the open ``fd`` is on a btrfs filesystem (fstatfs f_type)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86-64
    if libc.fstatfs(fd, buffer) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    f_type = struct.unpack_from("l", buffer.raw)[0] & 0xFFFFFFFF
    return bool(f_type == BTRFS_SUPER_MAGIC)


def fsid(fd: int) -> str:
    """Return the filesystem's UUID as ``/sys/fs/btrfs`` names it."""
    buffer = bytearray(1024)
    fcntl.ioctl(fd, _FS_INFO, buffer)
    raw = bytes(buffer[16:32]).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def subvolume_id(fd: int) -> int:
    """Return the id (tree id) of the subvolume holding the open ``fd`` (needs root)."""
    buffer = bytearray(4096)
    struct.pack_into("QQ", buffer, 0, 0, SUBVOLUME_ROOT_INODE)
    fcntl.ioctl(fd, _INO_LOOKUP, buffer)
    return int(struct.unpack_from("Q", buffer, 0)[0])


def is_subvolume_root(status: os.stat_result) -> bool:
    """Return True when ``status`` (of a btrfs directory) is a subvolume's root."""
    return status.st_ino == SUBVOLUME_ROOT_INODE


def is_read_only(fd: int) -> bool:
    """Return True when the subvolume of the open ``fd`` is read-only."""
    buffer = bytearray(8)
    fcntl.ioctl(fd, _SUBVOL_GETFLAGS, buffer)
    return bool(struct.unpack("Q", buffer)[0] & _FLAG_READ_ONLY)


def set_read_only(fd: int) -> None:
    """Make the subvolume of the open ``fd`` read-only (its root's owner may undo it: root's).

    For a subvolume built in place (the engine migration); a snapshot is made
    read-only by creation instead (a full qgroup refuses the flag: EDQUOT).
    """
    buffer = bytearray(8)
    fcntl.ioctl(fd, _SUBVOL_GETFLAGS, buffer)
    flags = struct.unpack("Q", buffer)[0] | _FLAG_READ_ONLY
    fcntl.ioctl(fd, _SUBVOL_SETFLAGS, struct.pack("Q", flags))


def _vol_args(name: str, *, fd: int = 0, flags: int = 0) -> bytearray:
    encoded = name.encode()
    if not encoded or len(encoded) > _NAME_MAX or b"/" in encoded or encoded in (b".", b".."):
        raise OSError(errno.EINVAL, f"not a single path component: {name!r}")
    buffer = bytearray(_VOL_ARGS_V2)
    struct.pack_into("qQQ", buffer, 0, fd, 0, flags)
    buffer[_NAME_OFFSET : _NAME_OFFSET + len(encoded)] = encoded
    return buffer


def _with_inherit(buffer: bytearray, qgroups: tuple[int, ...]) -> ctypes.Array[ctypes.c_char]:
    """Point ``buffer``'s qgroup_inherit at a new struct naming ``qgroups``; keep it alive."""
    inherit = struct.pack(f"9Q{len(qgroups)}Q", 0, len(qgroups), 0, 0, 0, 0, 0, 0, 0, *qgroups)
    memory = ctypes.create_string_buffer(inherit, len(inherit))
    flags = struct.unpack_from("Q", buffer, 16)[0] | _FLAG_QGROUP_INHERIT
    struct.pack_into("QQQ", buffer, 16, flags, len(inherit), ctypes.addressof(memory))
    return memory


def create_subvolume(parent_fd: int, name: str, qgroups: tuple[int, ...] = ()) -> None:
    """Create the subvolume ``name`` in the directory ``parent_fd``, member of ``qgroups``."""
    buffer = _vol_args(name)
    keep = _with_inherit(buffer, qgroups) if qgroups else None
    fcntl.ioctl(parent_fd, _SUBVOL_CREATE_V2, buffer)
    del keep


def snapshot(
    source_fd: int,
    parent_fd: int,
    name: str,
    *,
    read_only: bool,
    qgroups: tuple[int, ...] = (),
) -> None:
    """Snapshot the subvolume whose root is ``source_fd`` as ``name`` in ``parent_fd``.

    The snapshot joins ``qgroups`` at creation: the kernel then updates their
    figures at once (quick inherit) when the source is in exactly those.
    """
    buffer = _vol_args(name, fd=source_fd, flags=_FLAG_READ_ONLY if read_only else 0)
    keep = _with_inherit(buffer, qgroups) if qgroups else None
    fcntl.ioctl(parent_fd, _SNAP_CREATE_V2, buffer)
    del keep


def delete_subvolume(parent_fd: int, name: str) -> None:
    """Delete the subvolume ``name`` of the directory ``parent_fd`` (not a path).

    The kernel refuses (EINVAL) an entry that is not a subvolume's root and
    (ENOTEMPTY) a subvolume that still holds other subvolumes.
    """
    fcntl.ioctl(parent_fd, _SNAP_DESTROY_V2, _vol_args(name))


def delete_subvolume_by_id(fd: int, number: int) -> None:
    """Delete the subvolume with id ``number`` on the filesystem of ``fd``: no path at all."""
    buffer = bytearray(_VOL_ARGS_V2)
    struct.pack_into("qQQ", buffer, 0, 0, 0, _FLAG_SPEC_BY_ID)
    struct.pack_into("Q", buffer, _NAME_OFFSET, number)
    fcntl.ioctl(fd, _SNAP_DESTROY_V2, buffer)


@dataclass(frozen=True)
class ChildSubvolume:
    """A subvolume directly inside another: its id, and where (directory inode, name)."""

    subvolume: int
    directory_inode: int
    name: str


def child_subvolumes(fd: int, parent: int, most: int | None = None) -> list[ChildSubvolume]:
    """Return the subvolumes directly inside subvolume ``parent`` (needs root).

    Reads the ROOT_REF items of the filesystem's root tree (a tree search on
    any ``fd`` of the filesystem): no path is walked, nothing customer-made
    is opened. With ``most``, stops once that many are found.
    """
    children: list[ChildSubvolume] = []
    offset = 0
    while True:
        buffer = bytearray(4096)
        struct.pack_into(
            "7Q3I", buffer, 0, _ROOT_TREE, parent, parent, offset, _NO_LIMIT, 0, _NO_LIMIT,
            _ROOT_REF_KEY, _ROOT_REF_KEY, _SEARCH_ITEMS,
        )  # fmt: skip
        fcntl.ioctl(fd, _TREE_SEARCH, buffer)
        found = struct.unpack_from("I", buffer, 64)[0]
        position = _SEARCH_KEY_BYTES
        for _ in range(found):
            _transid, objectid, child, kind, length = struct.unpack_from("3Q2I", buffer, position)
            position += 32
            if objectid == parent and kind == _ROOT_REF_KEY:
                directory, _sequence, name_length = struct.unpack_from("<QQH", buffer, position)
                name = bytes(buffer[position + 18 : position + 18 + name_length])
                children.append(ChildSubvolume(child, directory, name.decode(errors="replace")))
                if most is not None and len(children) >= most:
                    return children
            position += length
            offset = child + 1
        if found == 0 or offset == 0 or offset >= _NO_LIMIT:
            return children


def directory_path(fd: int, subvolume: int, inode: int) -> str:
    """Return the path (ending in ``/``, or empty) of directory ``inode`` in ``subvolume``."""
    buffer = bytearray(4096)
    struct.pack_into("QQ", buffer, 0, subvolume, inode)
    fcntl.ioctl(fd, _INO_LOOKUP, buffer)
    return bytes(buffer[16:]).split(b"\0", 1)[0].decode(errors="replace")


def create_qgroup(fd: int, qgroup: int) -> bool:
    """Create ``qgroup``; return False when it already exists."""
    try:
        fcntl.ioctl(fd, _QGROUP_CREATE, struct.pack("QQ", 1, qgroup))
    except FileExistsError:
        return False
    return True


def destroy_qgroup(fd: int, qgroup: int) -> bool:
    """Destroy ``qgroup``; return False when it did not exist."""
    try:
        fcntl.ioctl(fd, _QGROUP_CREATE, struct.pack("QQ", 0, qgroup))
    except FileNotFoundError:
        return False
    return True


def assign_qgroup(fd: int, member: int, parent: int) -> bool:
    """Make ``member`` a member of ``parent``; return False when it already was."""
    try:
        fcntl.ioctl(fd, _QGROUP_ASSIGN, struct.pack("QQQ", 1, member, parent))
    except FileExistsError:
        return False
    return True


def limit_qgroup(fd: int, qgroup: int, max_referenced: int | None) -> None:
    """Limit what ``qgroup`` may reference to ``max_referenced`` bytes (None: no limit)."""
    value = _NO_LIMIT if max_referenced is None else max_referenced
    fcntl.ioctl(fd, _QGROUP_LIMIT, struct.pack("6Q", qgroup, _LIMIT_MAX_REFERENCED, value, 0, 0, 0))


def qgroup_directory(filesystem: str, qgroup: int) -> Path:
    """Return the sysfs directory of ``qgroup`` on the filesystem with UUID ``filesystem``."""
    return SYSFS / filesystem / "qgroups" / f"{qgroup >> 48}_{qgroup & ((1 << 48) - 1)}"


def read_qgroup(filesystem: str, qgroup: int, field: str) -> int:
    """Return one figure (``referenced``, ``max_referenced``, ...) of ``qgroup`` from sysfs."""
    return int((qgroup_directory(filesystem, qgroup) / field).read_text().strip())


def quota_state(filesystem: str) -> tuple[bool, str, bool]:
    """Return (quotas enabled, mode ``qgroup``/``squota``, figures inconsistent) from sysfs."""
    directory = SYSFS / filesystem / "qgroups"
    if not directory.is_dir():
        return False, "", False

    def read(name: str, default: str) -> str:
        try:
            return (directory / name).read_text().strip()
        except OSError:
            return default

    return read("enabled", "1") == "1", read("mode", "qgroup"), read("inconsistent", "0") == "1"
