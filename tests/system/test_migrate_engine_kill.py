"""The engine migration killed with SIGKILL at many points: the old layout or the new, never less.

Each account is laid out as the rsnapshot engine leaves it (plain
``incoming/``, plain snapshots hard-linked to each other, ``.ssh/``); a
child process runs :func:`provbackup.engines.migration.migrate` and is
killed after a delay spread over the time a whole migration takes. After
every kill the account holds exactly the old layout (every tree as it was)
or exactly the new one (every tree a subvolume with the same content, the
snapshots read-only); one more run then always finishes it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btrfs_image import BtrfsImage, is_subvolume, read_only, subvolume_ids

from provbackup.engines import migration
from provbackup.errors import WorkError
from provbackup.paths import account_paths
from provbackup.work import btrfs_ioctl

GID = 62000
SNAPSHOTS = ("daily.0", "daily.1", "weekly.0")
FILES = 120
CHILD = """
import sys
from pathlib import Path
from provbackup.engines import migration
from provbackup.paths import account_paths
root, uid = Path(sys.argv[1]), sys.argv[2]
paths = account_paths(root, "flat", uid)
owner = migration.Owner(int(uid), int(uid), True, 64 << 20)
print("ready", flush=True)
migration.migrate(paths, owner, lambda: "quota released")
print("done", flush=True)
"""


def old_layout(root: Path, uid: str, seed: int) -> Path:
    """An account as the rsnapshot engine leaves it (flat layout); returns its home."""
    number = int(uid)
    account = root / uid
    home = account / "chroot" / "home" / uid
    home.mkdir(parents=True)
    os.chown(home, 0, number)
    home.chmod(0o750)
    incoming, ssh, snapshots = home / "incoming", home / ".ssh", home / ".snapshots"
    for directory, owner, mode in ((incoming, number, 0o700), (ssh, number, 0o700),
                                   (snapshots, 0, 0o750)):  # fmt: skip
        directory.mkdir()
        os.chown(directory, owner, number)
        directory.chmod(mode)
    (ssh / "authorized_keys").write_text(f"ssh-ed25519 AAAA{seed} customer\n")
    first = snapshots / SNAPSHOTS[-1]
    for index in range(FILES):
        target = first / "host" / f"d{index % 7}" / f"f{index}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(hashlib.sha256(f"{seed}-{index}".encode()).digest() * (1 + index * 8))
        target.chmod(0o640 if index % 2 else 0o604)
        os.utime(target, (1_600_000_000 + index, 1_600_000_000 + index))
    (first / "host" / "link").symlink_to("d0/f0")
    (first / "host" / "escape").symlink_to("/etc/passwd")
    # the newer trees: rsnapshot's hard links, one file changed in each
    previous = first
    for age, name in enumerate([*reversed(SNAPSHOTS[:-1]), "incoming"]):
        tree = home / name if name == "incoming" else snapshots / name
        subprocess.run(["cp", "-al", f"{previous}/.", str(tree)], check=True)
        changed = tree / "host" / "d1" / "f1"
        changed.unlink()
        changed.write_bytes(f"changed {age}".encode())
        previous = tree
    for name in SNAPSHOTS:
        (snapshots / name).chmod(0o750)
        os.chown(snapshots / name, 0, number)
    for tree in [incoming, *(snapshots / name for name in SNAPSHOTS)]:
        for directory, subdirectories, files in os.walk(tree):
            for name in [*subdirectories, *files]:  # the customer's, as rsync -a keeps them
                os.lchown(os.path.join(directory, name), number, number)
    for age, name in enumerate(SNAPSHOTS):
        os.utime(snapshots / name, (1_700_000_000 - age * 86400,) * 2)
    os.chown(incoming, number, number)
    return home


def digest(tree: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``tree``: kind, content (or link target), permission bits, mtime."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, subdirectories, files in os.walk(tree):
        for name in [*subdirectories, *files]:
            path = Path(directory) / name
            status = path.lstat()
            if stat.S_ISLNK(status.st_mode):
                found[str(path.relative_to(tree))] = ("link", os.readlink(path), status.st_mtime_ns)
            elif stat.S_ISREG(status.st_mode):
                found[str(path.relative_to(tree))] = (
                    "file", hashlib.sha256(path.read_bytes()).hexdigest(),
                    stat.S_IMODE(status.st_mode), status.st_mtime_ns,
                )  # fmt: skip
            else:
                found[str(path.relative_to(tree))] = ("dir", stat.S_IMODE(status.st_mode))
    return found


def trees(home: Path) -> dict[str, dict[str, tuple[object, ...]]]:
    return {
        "incoming": digest(home / "incoming"),
        ".ssh": digest(home / ".ssh"),
        **{name: digest(home / ".snapshots" / name) for name in SNAPSHOTS},
    }


def layout(home: Path, expected: dict[str, dict[str, tuple[object, ...]]]) -> str:
    """Say which layout the account is in, asserting that it is all of one of them."""
    assert trees(home) == expected
    snapshots = [home / ".snapshots" / name for name in SNAPSHOTS]
    assert sorted(os.listdir(home / ".snapshots")) == sorted(SNAPSHOTS)
    if not is_subvolume(home / "incoming"):
        assert not any(is_subvolume(path) for path in snapshots)
        return "old"
    assert all(is_subvolume(path) and read_only(path) for path in snapshots)
    for path in snapshots:
        status = path.stat()
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (
            0,
            int(path.parts[-3]),
            0o750,
        )
    return "new"


def run_once(root: Path, uid: str) -> None:
    paths = account_paths(root, "flat", uid)
    migration.migrate(
        paths, migration.Owner(int(uid), int(uid), True, 64 << 20), lambda: "released"
    )


def consistent(root: Path) -> bool:
    fd = os.open(root, os.O_RDONLY)
    try:
        return not btrfs_ioctl.quota_state(btrfs_ioctl.fsid(fd))[2]
    finally:
        os.close(fd)


def test_sigkill_at_any_point_leaves_the_old_layout_or_the_new_and_a_rerun_finishes(
    btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    # One uninterrupted migration: how long the whole takes, to spread the kills over it.
    home = old_layout(btrfs_root, str(GID), 0)
    expected = trees(home)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(btrfs_root), str(GID)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    started = time.monotonic()
    assert child.stdout.readline() == "done\n"
    whole = time.monotonic() - started  # from "ready" to "done": the migration itself
    assert child.wait() == 0
    assert layout(home, expected) == "new"
    seen = {"old": 0, "new": 0}
    kills = 24
    for round_number in range(1, kills + 1):
        uid = str(GID + round_number)
        home = old_layout(btrfs_root, uid, round_number)
        expected = trees(home)
        # kill points spread over 1.6 times the whole (a loaded machine is slower), and a
        # second kill for every third account
        for delay in [
            1.6 * whole * round_number / kills,
            *([whole / 3] if round_number % 3 == 0 else []),
        ]:
            child_process = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(btrfs_root), uid],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert child_process.stdout is not None
            assert child_process.stdout.readline() == "ready\n"
            time.sleep(delay)
            child_process.kill()
            child_process.wait()
            seen[layout(home, expected)] += 1
        run_once(btrfs_root, uid)
        assert layout(home, expected) == "new"
        assert not (btrfs_root / uid / migration.MIGRATION_DIRECTORY).exists()
    print("kills ending in each layout:", seen)
    assert seen["old"] > 0 and seen["new"] > 0, seen  # the kills fell on both sides of the swap
    # nothing orphaned: per account incoming/ and its three snapshots; figures exact
    assert len(subvolume_ids(btrfs_image.mount) - before) == (kills + 1) * (1 + len(SNAPSHOTS))
    assert consistent(btrfs_root)


def test_a_failure_after_the_swap_is_finished_by_the_next_run(btrfs_root: Path) -> None:
    uid = str(GID + 100)
    home = old_layout(btrfs_root, uid, 100)
    expected = trees(home)
    paths = account_paths(btrfs_root, "flat", uid)
    owner = migration.Owner(int(uid), int(uid), True, None)

    def refused() -> str:
        raise WorkError("quota command failed")

    with pytest.raises(WorkError, match="quota command failed"):
        migration.migrate(paths, owner, refused)
    assert layout(home, expected) == "new"  # the swap happened; the rest is left
    assert migration.survey(paths).unfinished is not None
    released = []
    migration.migrate(paths, owner, lambda: released.append(1) or "released")
    assert released == [1] and migration.survey(paths).unfinished is None
    assert not (btrfs_root / uid / migration.MIGRATION_DIRECTORY).exists()
    assert migration.migrate(paths, owner, lambda: released.append(2) or "released") == []
    assert released == [1]  # a finished account is not touched again
