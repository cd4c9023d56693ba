"""A real btrfs for the tests: a loop-mounted image made by the suite, always taken down.

:class:`BtrfsImage` makes a sparse file, ``mkfs.btrfs``, mounts it with
``-o loop`` and enables quotas (full qgroups, or simple quotas through the
kernel's ioctl: btrfs-progs before 6.7 cannot ask for them). Leaving the
context unmounts it and detaches the loop device, even after a failure.
:func:`unavailable` says why a machine cannot have one (not root, no
mkfs.btrfs, no loop device), for ``pytest.skip``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

from provbackup.work import btrfs_ioctl

IMAGE_PREFIX = "provbackup-btrfs-"  # then the pid of the test session that made it
QUOTA_CTL = 0xC0109428  # BTRFS_IOC_QUOTA_CTL
ENABLE_SIMPLE_QUOTA = 4
CUSTOMER_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def unavailable() -> str | None:
    """Return why this machine cannot mount a btrfs image for the tests, or None."""
    if os.geteuid() != 0:
        return "btrfs tests mount a loop image: they need root"
    for tool in ("mkfs.btrfs", "btrfs", "mount", "umount", "losetup", "setpriv"):
        if shutil.which(tool) is None:
            return f"btrfs tests need {tool} (bin/setup installs btrfs-progs and util-linux)"
    return None


class BtrfsImage:
    """A loop-mounted btrfs of ``size`` bytes in ``directory``; ``mount`` is its mount point."""

    def __init__(self, directory: Path, size: int = 512 << 20, *, simple_quotas: bool = False):
        self.image = directory / "btrfs.img"
        self.mount = directory / "mnt"
        self.size = size
        self.simple_quotas = simple_quotas
        self.mounted = False

    def __enter__(self) -> BtrfsImage:
        self.mount.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as image:
            image.truncate(self.size)
        _run("mkfs.btrfs", "-q", "-f", str(self.image))
        _run("mount", "-o", "loop", str(self.image), str(self.mount))
        self.mounted = True
        try:
            if self.simple_quotas:
                fd = os.open(self.mount, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    fcntl.ioctl(fd, QUOTA_CTL, struct.pack("QQ", ENABLE_SIMPLE_QUOTA, 0))
                finally:
                    os.close(fd)
            else:
                _run("btrfs", "quota", "enable", str(self.mount))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unmount (lazily if busy) and detach every loop device on the image; remove it."""
        if self.mounted:
            for _ in range(20):
                if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
            self.mounted = False
        listing = subprocess.run(
            ["losetup", "-j", str(self.image)], capture_output=True, text=True
        ).stdout
        for line in listing.splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True)
        self.image.unlink(missing_ok=True)


def remove_abandoned_images(temporary: Path) -> None:
    """Take down images left by test sessions that were killed (their pid is gone).

    A SIGKILLed session never runs its fixture's teardown: its mount and
    loop device would stay. Images of live sessions are left alone.
    """
    for directory in temporary.glob(f"{IMAGE_PREFIX}*-*"):
        pid = directory.name[len(IMAGE_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        image = BtrfsImage(directory)
        image.mounted = os.path.ismount(image.mount)
        image.close()
        shutil.rmtree(directory, ignore_errors=True)


def customer(
    uid: int, gid: int, *argv: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the customer ``uid``:``gid`` (no supplementary groups); never raises."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv],
        capture_output=True, text=True, env=CUSTOMER_ENVIRONMENT, cwd=cwd, timeout=120,
    )  # fmt: skip


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")


def subvolume_ids(mount: Path) -> set[int]:
    """The ids of every subvolume below the filesystem's top (5), walked with a list."""
    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found, queue = set(), [5]
        while queue:
            for child in btrfs_ioctl.child_subvolumes(fd, queue.pop()):
                found.add(child.subvolume)
                queue.append(child.subvolume)
        return found
    finally:
        os.close(fd)


def is_subvolume(path: Path) -> bool:
    """Whether ``path`` (not followed) is the root of a btrfs subvolume."""
    return path.lstat().st_ino == btrfs_ioctl.SUBVOLUME_ROOT_INODE


def read_only(path: Path) -> bool:
    """Whether the subvolume at ``path`` carries btrfs's read-only flag."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return btrfs_ioctl.is_read_only(fd)
    finally:
        os.close(fd)
