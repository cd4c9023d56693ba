"""``python -m bench.multiserver``: many hosts on a two-provider (mirror mode) pair.

Each sample loads fresh due ``add`` entries (half written to each
provider, as a web shop behind a load balancer would), waits until both
providers hold all of them, then starts every host's ``provbackup -q
process`` at the same moment. Host ``i`` reads provider ``i % 2``; its
claims go where the scenario says:

- ``1 host, 1 provider``: the reference (one host, reading and claiming on provider 1);
- ``N hosts, claim_uri``: every claim and write-back to provider 1 (the shipped rule);
- ``N hosts, no claim rule``: each host claims on the provider it reads (unsafe:
  shown for the duplicates it makes);
- ``N hosts, claim_uri, provider 1 killed``: ``claim_uri = P1 P2``; provider 1
  is SIGKILLed once a third of the entries are made; every host runs again at
  once (failing over to provider 2), provider 1 is restarted, the entries left
  interrupted are reset where they are held, and every host runs a last time.

Counted per sample: entries made (an ``rsnapshot.conf`` in a root), entries
made on more than one root, ``done`` write-backs in the status files (a
duplicate is any entry done or made more than once), failed outcomes, and
the wall time from the start of the first run to the end of the last.
Writes every sample to the JSON output and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from sandbox import Slapd, account_entry, mirror_pair

REPOSITORY = Path(__file__).resolve().parent.parent
INDEXES = ("objectClass eq", "uid eq", "gidNumber eq", "sstProvisioningState eq",
           "sstProvisioningMode eq")  # fmt: skip


def progress(message: str) -> None:
    """One line on stderr."""
    print(f"bench.multiserver: {message}", file=sys.stderr, flush=True)


def account_dir(root: Path, uid: str) -> Path:
    padded = uid.zfill(6)
    return root / padded[-1] / padded[-3:] / padded[-6:-3] / uid


class Host:
    """One backup server: its directory, root, configuration and status file."""

    def __init__(self, directory: Path, name: str, read: list[Slapd], claim: list[Slapd]) -> None:
        self.name = name
        self.root = directory / "backup"
        self.root.mkdir(parents=True)
        self.status_file = directory / "run" / "status.json"
        claim_line = f"claim_uri = {' '.join(s.uri for s in claim)}\n" if claim else ""
        settings = read[0].ldap_settings()
        text = (
            f"[ldap]\nuri = {' '.join(s.uri for s in read)}\nbind_dn = {settings['bind_dn']}\n"
            f"bind_password = {settings['bind_password']}\nbase_dn = {settings['base_dn']}\n"
            f"start_tls = no\nattempts = 1\nretry_delay = 0\ntimeout = 10\n{claim_line}"
            f"[backup]\nroot = {self.root}\nserver_name = {name}\n"
            "[rsnapshot]\nconfigtest = yes\n[quota]\ncommand =\n[delete]\nquarantine_days = 0\n"
            f"[run]\nlock_file = {directory / 'run' / 'lock'}\nstatus_file = {self.status_file}\n"
        )
        self.config = directory / "provbackup.conf"
        self.config.write_text(text, encoding="utf-8")
        self.config.chmod(0o600)
        self.done: list[str] = []
        self.failed = 0
        self.exit_codes: list[int] = []

    def start(self, *arguments: str) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
        environment.pop("PROVBACKUP_CONFIG", None)
        command = [sys.executable, "-m", "provbackup", "-q", "--config", str(self.config),
                   *arguments]  # fmt: skip
        return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip

    def collect(self, process: subprocess.Popen[bytes]) -> None:
        """Wait for a run and add its outcomes to this host's counts."""
        process.communicate(timeout=900)
        self.exit_codes.append(process.returncode)
        if not self.status_file.is_file():
            return
        status = json.loads(self.status_file.read_text())
        for entry in status.get("entries", []):
            if entry["outcome"] == "done":
                self.done.append(entry["uid"])
            elif entry["outcome"] == "failed":
                self.failed += 1

    def interrupted(self) -> list[str]:
        """The uids the last run left interrupted."""
        status = json.loads(self.status_file.read_text())
        return [e["uid"] for e in status.get("entries", []) if e["outcome"] == "interrupted"]


def count_due(server: Slapd, prefix: str) -> int:
    connection = server.connection()
    try:
        found = connection.extend.standard.paged_search(
            server.accounts_dn, f"(&(sstProvisioningMode=add)(uid={prefix}*))",
            attributes=["uid"], paged_size=1000, generator=False,
        )  # fmt: skip
        return sum(1 for item in found if item.get("type") == "searchResEntry")
    finally:
        connection.unbind()


def load(pair: tuple[Slapd, ...], prefix: str, count: int) -> list[str]:
    """Add ``count`` due add entries (half on each provider); wait until both hold all."""
    uids = [f"{prefix}{index:04d}" for index in range(count)]
    for index, server in enumerate(pair):
        server.add_entries(
            account_entry(uid, base_dn=server.accounts_dn, home_directory=None)
            for uid in uids[index :: len(pair)]
        )
    deadline = time.monotonic() + 120
    while any(count_due(server, prefix) < count for server in pair):
        if time.monotonic() > deadline:
            raise RuntimeError("replication did not deliver every entry within 120 s")
        time.sleep(0.2)
    return uids


def sample(
    work: Path, pair: tuple[Slapd, ...], scenario: str, hosts: int, claim: str,
    kill: bool, prefix: str, entries: int,
) -> dict[str, Any]:  # fmt: skip
    """Run one sample of ``scenario``; returns its counts and wall time."""
    if claim == "single":  # the reference without replication: one plain slapd
        pair = (pair[2],) * 2
    first, second = pair[0], pair[1]
    uids = load(pair[:1] if claim == "single" else pair[:2], prefix, entries)
    # designated: claim_uri = P1; failover: claim_uri = P1 P2; none: no claim rule.
    claim_servers = {"designated": [first], "failover": [first, second]}.get(claim, [])
    group = []
    for index in range(hosts):
        own = pair[index % 2] if hosts > 1 else first
        other = second if own is first else first
        read = [own] if own is other else [own, other]
        group.append(Host(work / f"host{index}", f"host{index}", read, claim_servers))
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    runs = [(host, host.start("process")) for host in group]
    killed_at = None
    if kill:
        while sum(1 for h in group for u in uids if (account_dir(h.root, u) / "rsnapshot.conf")
                  .exists()) < entries // 3:  # fmt: skip
            time.sleep(0.05)
        first.kill()
        killed_at = round(time.monotonic() - started, 3)
    for host, process in runs:
        host.collect(process)
    if kill:
        in_hand = {host.name: host.interrupted() for host in group}  # the kill's casualties
        runs = [(host, host.start("process")) for host in group]  # provider 1 is down
        for host, process in runs:
            host.collect(process)
        first.start()
        time.sleep(2)  # the restarted provider catches up with its peer
        for host in group:
            for uid in in_hand[host.name] + host.interrupted():
                subprocess.run(
                    [sys.executable, "-m", "provbackup", "-q", "--config", str(host.config),
                     "reset", "--uid", uid],
                    env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, check=False,
                    capture_output=True,
                )  # fmt: skip
        runs = [(host, host.start("process")) for host in group]
        for host, process in runs:
            host.collect(process)
    elapsed = time.monotonic() - started
    made = Counter(
        uid for host in group for uid in uids
        if (account_dir(host.root, uid) / "rsnapshot.conf").is_file()
    )  # fmt: skip
    done = Counter(uid for host in group for uid in host.done)
    duplicates = sorted({uid for uid, n in made.items() if n > 1}
                        | {uid for uid, n in done.items() if n > 1})  # fmt: skip
    return {
        "scenario": scenario,
        "hosts": hosts,
        "entries": entries,
        "seconds": round(elapsed, 3),
        "entries_per_second": round(entries / elapsed, 1),
        "made": len(made),
        "made_on_two_roots": sum(1 for n in made.values() if n > 1),
        "done_write_backs": sum(done.values()),
        "duplicates": len(duplicates),
        "failed": sum(host.failed for host in group),
        "not_made": entries - len(made),
        "not_done": entries - len(done),
        "exit_codes": [host.exit_codes for host in group],
        "per_host_done": [len(host.done) for host in group],
        "killed_at_seconds": killed_at,
        "load_average_at_start": round(load_at_start, 2),
    }


SCENARIOS: dict[str, tuple[int, str, bool]] = {
    "1 host, plain slapd (no replication)": (1, "single", False),
    "1 host, 1 provider": (1, "none", False),
    "2 hosts, claim_uri": (2, "designated", False),
    "4 hosts, claim_uri": (4, "designated", False),
    "2 hosts, no claim rule": (2, "none", False),
    "4 hosts, no claim rule": (4, "none", False),
    "2 hosts, claim_uri, provider 1 killed": (2, "failover", True),
    "4 hosts, claim_uri, provider 1 killed": (4, "failover", True),
}


def main(argv: list[str] | None = None) -> int:
    """Run ``--runs`` rounds of every scenario, interleaved; write and print the samples."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.multiserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--entries", type=int, default=1000, help="due entries per sample [1000]")
    parser.add_argument("--runs", type=int, default=3, help="samples of each scenario [3]")
    parser.add_argument("--only", default="", help="scenario names separated by semicolons [all]")
    parser.add_argument("--output", type=Path, default=Path("bench-multiserver.json"))
    parser.add_argument("--workdir", type=Path, default=None)
    options = parser.parse_args(argv)
    chosen = [name.strip() for name in options.only.split(";") if name.strip()] or list(SCENARIOS)
    work = Path(tempfile.mkdtemp(prefix="provbackup-multiserver-", dir=options.workdir))
    samples: list[dict[str, Any]] = []
    servers = (*mirror_pair(work / "ldap", acl=True, indexes=INDEXES),
               Slapd(work / "ldap" / "plain", acl=True, indexes=INDEXES))  # fmt: skip
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        servers[0].add_base()
        servers[2].add_base()
        time.sleep(2)
        number = 0
        for run in range(options.runs):
            for name in chosen:
                hosts, claim, kill = SCENARIOS[name]
                number += 1
                directory = work / f"sample{number}"
                directory.mkdir()
                result = sample(directory, servers, name, hosts, claim, kill,
                                 f"6{number:02d}", options.entries)  # fmt: skip
                result["run"] = run + 1
                samples.append(result)
                progress(
                    f"{name} #{run + 1}: {result['seconds']} s, "
                    f"{result['duplicates']} duplicates, {result['failed']} failed"
                )
                shutil.rmtree(directory, ignore_errors=True)
                for server in servers:  # every sample starts with both providers up
                    if not server.is_running():
                        server.start()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    document = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "machine": machine.describe(),
        "entries": options.entries,
        "samples": samples,
    }
    options.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(table(samples))
    return 0


def table(samples: list[dict[str, Any]]) -> str:
    """One line per scenario: median seconds and entries/s, every sample's duplicates."""
    lines = [f"{'scenario':42} {'median s':>9} {'entries/s':>10}  duplicates  failed  samples (s)"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for item in samples:
        by_name.setdefault(item["scenario"], []).append(item)
    for name, items in by_name.items():
        seconds = sorted(item["seconds"] for item in items)
        median = seconds[len(seconds) // 2]
        lines.append(
            f"{name:42} {median:9.3f} {items[0]['entries'] / median:10.1f}  "
            f"{','.join(str(i['duplicates']) for i in items):>10}  "
            f"{','.join(str(i['failed']) for i in items):>6}  "
            + ", ".join(f"{i['seconds']:.3f}" for i in items)
        )
    return "\n".join(lines)


_: Callable[..., int] = main

if __name__ == "__main__":
    raise SystemExit(main())
