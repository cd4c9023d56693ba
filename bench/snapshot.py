"""The snapshot phase: ``provbackup snapshot daily --jobs N`` against a plain loop.

The loop is what an operator would write without provbackup: one
``rsnapshot -c CONF daily`` after the other over the same accounts' files
(the list made once, outside the measurement). Both run over the same
accounts, each holding a small upload (a client directory with a few files,
Sepiola's ``backupTime`` and ``backupEnded.xml``); repetitions alternate
which goes first, and each one adds a snapshot to every account, so both
rotate and link against the same history. provbackup also does what the
loop does not: the walk of the layout, the locks, the backupTime fix, the
usage walk, the usage file and one LDAP search and modify per account.

Peak RSS is measured at two account counts (``--snapshot-accounts`` and
``--snapshot-accounts-large``) to show that memory does not grow with the
number of accounts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench import data
from bench.measure import Sample, median, run_measured

ENDED = (
    "<?xml version='1.0'?><backup_ended><enddate>2026-11-30T22:00:00+01:00</enddate>"
    "<id>100001</id><success>1</success></backup_ended>\n"
)


def add_options(add: Any) -> None:
    """Add the snapshot phase's options to the benchmark's parser (its ``add_argument``)."""
    add("--snapshot-accounts", type=int, default=200, help="accounts snapshot [200]")
    add(
        "--snapshot-accounts-large",
        type=int,
        default=800,
        help="accounts of the second peak-RSS measurement [800]",
    )
    add("--snapshot-runs", type=int, default=5, help="repetitions of each command [5]")
    add("--snapshot-jobs", type=int, default=4, help="provbackup snapshot --jobs [4]")


def _upload(root: Path, uid: str) -> None:
    """A small client upload in the account's incoming/, owned by the account."""
    padded = uid.zfill(6)
    home = root / padded[-1] / padded[-3:] / padded[-6:-3] / uid / "chroot" / "home" / uid
    client = home / "incoming" / "laptop"
    files = {
        "backup/C/Users/me/notes.txt": b"notes\n" * 50,
        "backup/C/Users/me/photo.jpg": os.urandom(20_000),
        "backup/C/Users/me/list.csv": b"a,b,c\n" * 300,
        ".sepiola_backup/backupTime": b"TODAY",
        ".sepiola_backup/backupEnded.xml": ENDED.encode(),
    }
    for name, content in files.items():
        path = client / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for directory, names, files_here in os.walk(home / "incoming"):
        for name in names + files_here:
            os.chown(os.path.join(directory, name), int(uid), int(uid))


def _provisioned(work: Path, name: str, accounts: int, environment: dict[str, str]) -> data.Phase:
    """A phase whose accounts are added by a real ``provbackup process`` and hold uploads."""
    phase = data.prepare(work, name, accounts=accounts, due=accounts)
    from bench.run import PROVBACKUP

    run_measured(
        [*PROVBACKUP, "-q", "--config", str(phase.config), "process"],
        environment=environment,
        timeout=3600,
    )
    for index in range(accounts):
        _upload(phase.root, str(data.FIRST_UID + index))
    os.sync()
    return phase


def bench_snapshot(
    work: Path, options: argparse.Namespace, environment: dict[str, str], progress: Any
) -> dict[str, Any]:
    """Run the snapshot phase; returns its figures (every sample kept)."""
    from bench.run import PROVBACKUP, summarize

    accounts, runs, jobs = options.snapshot_accounts, options.snapshot_runs, options.snapshot_jobs
    progress(f"snapshot: {accounts} accounts, provisioned by provbackup process")
    phase = _provisioned(work, "snapshot", accounts, environment)
    confs = sorted(str(path) for path in phase.root.glob("*/*/*/*/rsnapshot.conf"))
    if len(confs) != accounts:
        raise RuntimeError(f"snapshot: {len(confs)} configurations for {accounts} accounts")
    listing = phase.directory / "confs.txt"
    listing.write_text("\n".join(confs) + "\n")
    loop = [
        "/bin/sh",
        "-c",
        'while read -r conf; do rsnapshot -c "$conf" daily || exit 1; done < "$1"',
        "loop",
        str(listing),
    ]
    commands = {
        "loop": loop,
        "provbackup": [
            *PROVBACKUP,
            "-q",
            "--config",
            str(phase.config),
            "snapshot",
            "daily",
            "--jobs",
            str(jobs),
        ],
    }
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    try:
        for repetition in range(runs):
            order = list(commands) if repetition % 2 == 0 else list(reversed(commands))
            for name in order:
                progress(f"snapshot: repetition {repetition + 1}/{runs}: {name}")
                os.sync()
                samples[name].append(
                    run_measured(
                        commands[name],
                        stdout=phase.directory / f"{name}.out",
                        stderr=phase.directory / f"{name}.err",
                        environment=environment,
                        timeout=3600,
                    )
                )
        status = json.loads(phase.status_file.with_name("status-snapshot-daily.json").read_text())
        if status["counts"]["done"] != accounts:
            raise RuntimeError(f"snapshot: provbackup did {status['counts']} of {accounts}")
    finally:
        phase.slapd.stop()
    progress(f"snapshot: peak RSS at {options.snapshot_accounts_large} accounts")
    large = _provisioned(work, "snapshot-large", options.snapshot_accounts_large, environment)
    try:
        large_samples = [
            run_measured(
                [
                    *PROVBACKUP,
                    "-q",
                    "--config",
                    str(large.config),
                    "snapshot",
                    "daily",
                    "--jobs",
                    str(jobs),
                ],
                environment=environment,
                timeout=3600,
            )
        ]
    finally:
        large.slapd.stop()
    pairs = zip(samples["loop"], samples["provbackup"], strict=True)
    speedups = [loop_run.seconds / mine.seconds for loop_run, mine in pairs]
    figures = {name: summarize(items) for name, items in samples.items()}
    return {
        "accounts": accounts,
        "jobs": jobs,
        "runs": runs,
        **figures,
        "speedup": round(median(speedups), 3),
        "samples_speedup": [round(value, 3) for value in speedups],
        "speedup_of_medians": round(
            figures["loop"]["seconds"] / figures["provbackup"]["seconds"], 3
        ),
        "large": {"accounts": options.snapshot_accounts_large, **summarize(large_samples)},
        "python": sys.version.split()[0],
    }
