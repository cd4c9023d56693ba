"""``python -m bench.migration``: what moving an account to the btrfs engine costs.

One account laid out as the rsnapshot engine leaves it (plain
``incoming/`` and ``--snapshots`` plain snapshots, hard-linked to each
other as rsnapshot makes them, ``--changed`` of the files new in each) on a
fresh loop-mounted btrfs with full qgroups, moved by
:func:`provbackup.engines.migration.migrate` twice: with reflinks (what it
does: ``FICLONE``) and with the bytes copied (``read``/``write``, what a
copy without reflinks costs). Printed for each sample: the wall time, the
filesystem's used bytes before, at the swap (old and new both present:
the peak) and after, and the account qgroup's referenced bytes. Also
shown: a hard link from the old tree into a subvolume (refused: EXDEV).
Run as root; docs/btrfs.md quotes the output.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from btrfs_image import BtrfsImage  # noqa: E402  (tests/ is not a package)

from provbackup.engines import migration  # noqa: E402
from provbackup.paths import account_paths  # noqa: E402
from provbackup.work import btrfs_ioctl, treecopy  # noqa: E402

UID = 63000


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.migration", description=__doc__)
    parser.add_argument("--files", type=int, default=1000, help="files per tree")
    parser.add_argument("--size", type=int, default=32 << 10, help="bytes per file")
    parser.add_argument("--snapshots", type=int, default=7, help="old snapshots")
    parser.add_argument("--changed", type=float, default=0.05, help="share new in each")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every sample here")
    return parser.parse_args(argv)


def used(mount: Path) -> int:
    """Bytes in use on the filesystem after a commit (statvfs)."""
    subprocess.run(["btrfs", "filesystem", "sync", str(mount)], check=True, capture_output=True)
    status = os.statvfs(mount)
    return (status.f_blocks - status.f_bfree) * status.f_frsize


def old_layout(root: Path, options: argparse.Namespace) -> Path:
    """The rsnapshot engine's layout: the oldest snapshot written, each newer one hard-linked."""
    home = root / str(UID) / "chroot" / "home" / str(UID)
    snapshots = home / ".snapshots"
    snapshots.mkdir(parents=True)
    names = [f"daily.{n}" for n in reversed(range(options.snapshots))]
    previous = None
    for generation, name in enumerate([*names, "incoming"]):
        tree = home / name if name == "incoming" else snapshots / name
        if previous is None:
            for index in range(options.files):
                target = tree / "host" / f"d{index % 50}" / f"f{index}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_content(generation, index, options.size))
        else:
            subprocess.run(["cp", "-al", f"{previous}/.", str(tree)], check=True)
            for index in range(0, options.files, max(1, int(1 / options.changed))):
                target = tree / "host" / f"d{index % 50}" / f"f{index}"
                target.unlink()
                target.write_bytes(_content(generation, index, options.size))
        previous = tree
    subprocess.run(["chown", "-R", f"{UID}:{UID}", str(home / "incoming")], check=True)
    return home


def _content(generation: int, index: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{generation}-{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _copy_bytes_by_hand(source: int, target: int) -> int:
    copied = 0
    while chunk := os.read(source, 1 << 20):
        os.write(target, chunk)
        copied += len(chunk)
    return copied


def sample(mode: str, options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """One migration on a fresh image; ``mode`` is ``reflink`` or ``copy``."""
    with BtrfsImage(directory, size=2 << 30) as image:
        root = image.mount / "root"
        home = old_layout(root, options)
        before = used(image.mount)
        peak: dict[str, int] = {}
        real_exchange = migration.exchange

        def measured_exchange(*arguments: Any) -> None:
            peak["used"] = used(image.mount)
            real_exchange(*arguments)

        migration.exchange = measured_exchange  # type: ignore[assignment]
        clone, copy = treecopy.FICLONE, treecopy._copy_bytes
        if mode == "copy":
            treecopy.FICLONE = 0  # an ioctl the kernel refuses: ENOTTY, so the bytes are copied
            treecopy._copy_bytes = _copy_bytes_by_hand  # copy_file_range would reflink
        try:
            started = time.monotonic()
            steps = migration.migrate(
                account_paths(root, "flat", str(UID)),
                migration.Owner(UID, UID, True, None),
                lambda: "no quota command",
            )
            seconds = time.monotonic() - started
        finally:
            migration.exchange = real_exchange  # type: ignore[assignment]
            treecopy.FICLONE, treecopy._copy_bytes = clone, copy
        after = used(image.mount)
        fd = os.open(home / "incoming", os.O_RDONLY | os.O_DIRECTORY)
        try:
            number = btrfs_ioctl.subvolume_id(fd)
            referenced = btrfs_ioctl.read_qgroup(
                btrfs_ioctl.fsid(fd), btrfs_ioctl.qgroup_id(1, number), "referenced"
            )
            inconsistent = btrfs_ioctl.quota_state(btrfs_ioctl.fsid(fd))[2]
        finally:
            os.close(fd)
        return {
            "mode": mode, "seconds": round(seconds, 3), "used_before": before,
            "used_at_swap": peak["used"], "used_after": after, "qgroup_referenced": referenced,
            "qgroups_inconsistent": inconsistent,
            "copied": next((step for step in steps if step.startswith("copied ")), ""),
        }  # fmt: skip


def hard_link_into_a_subvolume(directory: Path) -> str:
    """What a hard link from a plain tree into a subvolume gets from the kernel."""
    with BtrfsImage(directory, size=256 << 20) as image:
        (image.mount / "plain").write_bytes(b"x")
        subprocess.run(["btrfs", "subvolume", "create", str(image.mount / "sub")], check=True,
                       capture_output=True)  # fmt: skip
        try:
            os.link(image.mount / "plain", image.mount / "sub" / "linked")
        except OSError as error:
            return f"link into a subvolume: {errno.errorcode[error.errno]} ({error.strerror})"
        return "link into a subvolume: allowed"


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    with tempfile.TemporaryDirectory(prefix="bench-migration-") as temporary:
        directory = Path(temporary)
        print(hard_link_into_a_subvolume(directory / "link"), flush=True)
        print(f"account: {options.files} files of {options.size} bytes, {options.snapshots} "
              f"snapshots, {options.changed:.0%} new in each", flush=True)  # fmt: skip
        samples = []
        for number in range(options.samples):
            for mode in ("reflink", "copy"):
                result = sample(mode, options, directory / f"{mode}-{number}")
                samples.append(result)
                print(json.dumps(result), flush=True)
    if options.json:
        options.json.write_text(json.dumps({"options": vars(options) | {"json": str(options.json)},
                                            "samples": samples}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
