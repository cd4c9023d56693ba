"""``python -m bench.engines``: ``provbackup snapshot daily`` with the rsnapshot and btrfs engines.

The same accounts (made by a real ``process`` run from a real slapd, one
per engine and size) at two tree sizes (files per account), on one
loop-mounted btrfs with quotas enabled, measured by wall time of the
command as a timer would run it. Every sample is printed and written to
the JSON file; the targets: the btrfs time must not grow with the files
per account (large/small median within 1.5x) and be at least 10x faster
than rsnapshot at the larger size. Run as root, on an otherwise quiet
machine; it takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import data, machine

ENGINES = ("rsnapshot", "btrfs")
GROWTH_TARGET = 1.5
SPEED_TARGET = 10.0
SETTLE_SECONDS = 3.0
REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from btrfs_image import BtrfsImage  # noqa: E402  (tests/ is not a package)


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (``python -m bench.engines --help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    add = parser.add_argument
    add("--accounts", type=int, default=10, help="accounts per engine and size [10]")
    add("--small", type=int, default=100, help="files per account, small trees [100]")
    add("--large", type=int, default=10_000, help="files per account, large trees [10000]")
    add("--runs", type=int, default=5, help="snapshot runs measured per engine and size [5]")
    add("--image-mib", type=int, default=4096, help="size of the btrfs image [4096]")
    add(
        "--simple-quotas",
        action="store_true",
        help="enable simple quotas (kernel 6.7+) instead of full qgroups on the image",
    )
    add("--output", type=Path, default=Path("bench-engines.json"), help="JSON results")
    return parser.parse_args(argv)


def progress(message: str) -> None:
    print(f"bench.engines: {message}", file=sys.stderr, flush=True)


def prepare(work: Path, engine: str, files: int, accounts: int) -> data.Phase:
    """Accounts made by ``process`` with ``engine``, each uploading ``files`` small files."""
    phase = data.prepare(work, f"{engine}-{files}", accounts=accounts, due=accounts)
    text = phase.config.read_text()
    text = text.replace("[backup]\n", f"[backup]\nengine = {engine}\n")
    text += "[snapshot]\nusage = no\njobs = 2\n"
    phase.config.write_text(text)
    result = provbackup(phase.config, "process")
    if result.returncode != 0:
        raise RuntimeError(f"process for {engine}: {result.stdout}{result.stderr}")
    for index in range(accounts):
        uid = str(data.FIRST_UID + index)
        padded = uid.zfill(6)
        home = phase.root / padded[-1] / padded[-3:] / padded[-6:-3] / uid / "chroot/home" / uid
        upload(home / "incoming" / "laptop", files, int(uid))
    os.sync()
    return phase


def upload(top: Path, files: int, owner: int) -> None:
    """What a client leaves: ``files`` files of 1-4 KiB in directories of 100, the user's."""
    for index in range(files):
        directory = top / "backup" / f"d{index // 100:04d}"
        if index % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{index:06d}"
        path.write_bytes(os.urandom(1024 + (index % 4) * 1024))
    for root, directories, names in os.walk(top):
        for name in directories + names:
            os.lchown(os.path.join(root, name), owner, owner)
    os.lchown(top, owner, owner)


def provbackup(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(
        [sys.executable, "-m", "provbackup", "-q", "--config", str(config), *arguments],
        capture_output=True, text=True, env=environment, timeout=3600,
    )  # fmt: skip


def measure(phase: data.Phase) -> tuple[float, float]:
    """One ``snapshot daily`` over the phase's accounts: (wall seconds, summed account seconds).

    The filesystem is synced and left to settle first, so that no case pays
    for the writeback of the case before it. The account seconds are the
    runner's own per-account times (status file): the snapshot work without
    the command's start-up.
    """
    os.sync()
    time.sleep(SETTLE_SECONDS)
    started = time.monotonic()
    result = provbackup(phase.config, "snapshot", "daily")
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"snapshot daily in {phase.name}: {result.stdout}{result.stderr}")
    status = json.loads(phase.status_file.with_name("status-snapshot-daily.json").read_text())
    accounts = sum(float(item["seconds"]) for item in status["accounts"])
    return round(seconds, 3), round(accounts, 3)


def main(argv: list[str] | None = None) -> int:
    """Measure, print a table with every sample, write JSON; 0 when the targets are met."""
    options = parse_options(argv)
    if os.geteuid() != 0:
        print("python -m bench.engines: run as root (it mounts a btrfs image)", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="provbackup-bench-engines-"))
    directory.chmod(0o711)
    samples: dict[str, list[float]] = {}
    account_samples: dict[str, list[float]] = {}
    load_start = os.getloadavg()[0]
    image_size = options.image_mib << 20
    with BtrfsImage(directory, image_size, simple_quotas=options.simple_quotas) as image:
        phases = {}
        try:
            for files in (options.small, options.large):
                for engine in ENGINES:
                    progress(f"preparing {options.accounts} {engine} accounts of {files} files")
                    phases[f"{engine}-{files}"] = prepare(
                        image.mount, engine, files, options.accounts
                    )
            # Interleaved, so that a slow moment of the shared machine hits every case.
            for run in range(options.runs):
                for name, phase in phases.items():
                    wall, accounts = measure(phase)
                    samples.setdefault(name, []).append(wall)
                    account_samples.setdefault(name, []).append(accounts)
                    progress(f"run {run + 1}: {name} {wall} s (accounts {accounts} s)")
        finally:
            for phase in phases.values():
                phase.slapd.stop()
    shutil.rmtree(directory, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    large, small = options.large, options.small
    growth = medians[f"btrfs-{large}"] / medians[f"btrfs-{small}"]
    speedup = medians[f"rsnapshot-{large}"] / medians[f"btrfs-{large}"]
    targets = {
        "btrfs large/small": {"value": round(growth, 2), "target": f"<= {GROWTH_TARGET}",
                              "met": growth <= GROWTH_TARGET},
        "rsnapshot/btrfs at large": {"value": round(speedup, 1), "target": f">= {SPEED_TARGET}",
                                     "met": speedup >= SPEED_TARGET},
    }  # fmt: skip
    document: dict[str, Any] = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "settings": {"quotas": "simple" if options.simple_quotas else "full qgroups",
                     "accounts": options.accounts, "files": [small, large], "runs": options.runs,
                     "command": "provbackup -q snapshot daily ([snapshot] jobs = 2, usage = no)"},
        "samples_seconds": samples,
        "medians_seconds": medians,
        "account_samples_seconds": account_samples,
        "account_medians_seconds": {
            name: statistics.median(values) for name, values in account_samples.items()
        },
        "targets": targets,
    }  # fmt: skip
    for name, values in samples.items():
        print(f"{name:<18} median {medians[name]:>8.3f} s  samples {values}")
        print(f"{'':<18} accounts, summed: samples {account_samples[name]}")
    for name, item in targets.items():
        print(
            f"{name:<26} {item['value']!s:>8} {item['target']:>8}  {'yes' if item['met'] else 'NO'}"
        )
    options.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if all(item["met"] for item in targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
