"""Faults a backup server meets, with real processes, a real slapd and real filesystems.

LDAP going away in the middle of a run, the run killed (SIGKILL at many
points) or stopped (SIGTERM, SIGINT), four hosts racing over the same
entries, and the server side failing: a full disk, an immutable directory,
a quota command or an rsnapshot configtest that fails. Each test checks
that every entry ends in a state ``scan`` explains, that nothing is left
that a rerun would trip over, and that reset + process converges on the
tree a clean run makes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import (
    REPOSITORY,
    Setup,
    account_dir,
    fingerprint,
    modify_entry,
    read_entry,
    run,
    run_process,
    write_config,
)

from provbackup.actions.verdict import CheckState, evaluate
from provbackup.lock import lock_holders, run_lock
from provbackup.state import Status
from sandbox import Slapd, account_entry

DONE_MODES = {"add": "added", "modify": "modified", "delete": "deleted"}


# -- helpers ---------------------------------------------------------------------------


def add_entries(server: Slapd, uids: list[str], **options) -> list[str]:
    """Add request entries for ``uids``; returns their DNs."""
    entries = [account_entry(uid, base_dn=server.accounts_dn, **options) for uid in uids]
    server.add_entries(entries)
    return [dn for dn, _ in entries]


def request(server: Slapd, dn: str, mode: str, **attributes: list[str]) -> None:
    """Put a request (mode, state 0, no return value) on ``dn`` as the web shop would."""
    modify_entry(
        server,
        dn,
        {
            "sstProvisioningMode": [mode],
            "sstProvisioningState": ["0"],
            "sstProvisioningReturnValue": [],
            **attributes,
        },
    )


def mode_of(server: Slapd, dn: str) -> str:
    """The entry's sstProvisioningMode."""
    return read_entry(server, dn)["sstprovisioningmode"][0]


def start_process(setup: Setup, *arguments: str, tmp: Path | None = None) -> subprocess.Popen:
    """Start ``provbackup process`` as a real process (stdout and stderr piped)."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("PROVBACKUP_CONFIG", None)
    if tmp is not None:
        # A killed run cannot remove its configtest scratch directory: keep it here.
        environment["TMPDIR"] = str(tmp)
    return subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), "process", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def wait_for(path: Path, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Wait until ``path`` exists (failing early if ``process`` ends first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended before {path.name}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


class Gate:
    """A pre_add hook that holds the N-th entry of a run until released.

    ``log`` gets one uid per hook call; the N-th call writes its PID to
    ``blocked`` and waits for ``release`` to exist, then exits with
    ``exit_code``. The test does its damage while the entry is in hand.
    """

    def __init__(self, directory: Path, at: int, exit_code: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "hook.log"
        self.blocked = directory / "blocked"
        self.release = directory / "release"
        self.script = directory / "gate-hook"
        self.script.write_text(
            "#!/bin/sh\n"
            f'echo "$PROVBACKUP_UID" >> {self.log}\n'
            f'if [ "$(wc -l < {self.log})" -eq {at} ]; then\n'
            f"  echo $$ > {self.blocked}.tmp && mv {self.blocked}.tmp {self.blocked}\n"
            f"  while [ ! -e {self.release} ]; do sleep 0.01; done\n"
            f"  exit {exit_code}\n"
            "fi\n"
        )
        self.script.chmod(0o755)

    @property
    def config(self) -> str:
        """The configuration section that installs the gate."""
        return f"[hooks]\npre_add = {self.script}\n"

    def in_hand(self) -> str:
        """The uid of the entry the gate holds."""
        return self.log.read_text().split()[-1]

    def open(self) -> None:
        """Let the held entry go on."""
        self.release.touch()


def one_line_error(err: str) -> str:
    """The one ``provbackup: error:`` line of a failed command (no traceback)."""
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("provbackup: error:")]
    return line


def scan_rows(setup: Setup) -> dict[str, str]:
    """``scan --json`` as uid → status."""
    result = run(setup, "scan", "--json")
    assert result.code == 0, result.err
    return {row["uid"]: row["status"] for row in json.loads(result.out)}


def lock_is_free(lock_file: Path) -> bool:
    """Take the run lock within 2 s (raises LockHeldError if still held), and let it go.

    The kernel frees a dead holder's flock when the process is reaped; the short
    wait only absorbs scheduling on a loaded machine, while a stale lock would
    still be held after it.
    """
    with run_lock(lock_file, wait=2):
        return True


# -- LDAP goes away ---------------------------------------------------------------------


@pytest.mark.parametrize("work_fails", [False, True], ids=["work-done", "work-failed"])
def test_ldap_stopped_mid_run_leaves_every_entry_in_a_defined_state(
    tmp_path: Path, ldap_server: Slapd, work_fails: bool
) -> None:
    gate = Gate(tmp_path / "gate", at=3, exit_code=1 if work_fails else 0)
    setup = write_config(tmp_path, ldap_server, gate.config)
    uids = [f"45000{index:02d}" for index in range(7)]
    dns = dict(zip(uids, add_entries(ldap_server, uids), strict=True))
    run_ = start_process(setup)
    wait_for(gate.blocked, run_)
    ldap_server.stop()
    gate.open()
    out, err = run_.communicate(timeout=60)

    assert run_.returncode == 69, err
    assert err.strip().splitlines()[-1].startswith("provbackup: error: LDAP server")
    assert "Traceback" not in err
    in_hand = gate.in_hand()
    status = json.loads(setup.status_file.read_text())
    assert status["exit_code"] == 69 and "LDAP server" in status["error"]
    outcomes = {entry["uid"]: entry for entry in status["entries"]}
    done = {uid for uid, entry in outcomes.items() if entry["outcome"] == "done"}
    assert len(done) == 2 and in_hand not in done
    assert outcomes[in_hand]["outcome"] == "interrupted"
    expected = "the work failed" if work_fails else "the work on the server is done"
    assert expected in outcomes[in_hand]["message"]
    assert "scan shows it interrupted ('adding')" in outcomes[in_hand]["message"]
    assert f"interrupted add     {in_hand}" in out, "the entry in hand is reported on stdout"

    ldap_server.start()
    # Every entry is in a defined state, and scan shows exactly what needs a reset:
    # the one in hand. The others are done or still requested.
    for uid in done:
        assert mode_of(ldap_server, dns[uid]) == "added"
    rows = scan_rows(setup)
    assert rows == {
        **{uid: "interrupted" for uid in [in_hand]},
        **{uid: "due" for uid in uids if uid not in done and uid != in_hand},
    }
    check = run_process(setup, "check")
    assert check.code == 2, check.out  # CRITICAL: the last run exited 69
    assert "1 interrupted" in check.out

    assert run(setup, "reset", "--uid", in_hand).code == 0
    assert run(setup, "process").code == 0
    assert {mode_of(ldap_server, dn) for dn in dns.values()} == {"added"}
    assert scan_rows(setup) == {}
    for uid in uids:
        assert (account_dir(setup.root, uid) / "rsnapshot.conf").is_file()


def test_ldap_hanging_mid_run_is_given_up_after_the_timeout(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    """A server that stops answering (SIGSTOP: a dead network) must not hang the run."""
    gate = Gate(tmp_path / "gate", at=2)
    setup = write_config(tmp_path, ldap_server, gate.config, timeout="2")
    uids = [f"45001{index:02d}" for index in range(4)]
    add_entries(ldap_server, uids)
    run_ = start_process(setup)
    wait_for(gate.blocked, run_)
    slapd_pid = ldap_server.pid
    assert slapd_pid is not None
    os.kill(slapd_pid, signal.SIGSTOP)
    try:
        gate.open()
        started = time.monotonic()
        _, err = run_.communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        os.kill(slapd_pid, signal.SIGCONT)
    assert run_.returncode == 69, err
    assert waited < 10, "the configured timeout (2 s) bounds the wait"
    assert "timed out" in err
    status = json.loads(setup.status_file.read_text())
    assert status["counts"]["interrupted"] == 1
    # The write that timed out may still have been applied once slapd went on: the
    # entry is then done, else scan shows it interrupted. Never anything in between.
    in_hand = gate.in_hand()
    dn = f"uid={in_hand},{ldap_server.accounts_dn}"
    if mode_of(ldap_server, dn) == "added":
        assert in_hand not in scan_rows(setup)
    else:
        assert scan_rows(setup)[in_hand] == "interrupted"


# -- SIGKILL at random points -----------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_20_random_points_then_reset_converges_on_the_clean_tree(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    seed = int(os.environ.get("PROVBACKUP_KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    why = f"(PROVBACKUP_KILL_SEED={seed} reproduces this run)"
    setup = write_config(tmp_path, ldap_server, "[backup]\nserver_name = backup1\n")
    root = setup.root
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    adds = [f"46000{index:02d}" for index in range(30)]
    modifies = [f"46001{index:02d}" for index in range(15)]
    deletes = [f"46002{index:02d}" for index in range(15)]
    existing = add_entries(ldap_server, modifies + deletes)
    assert run(setup, "process").code == 0
    for uid in modifies + deletes:  # user data, including a link out of the account
        incoming = account_dir(root, uid) / "chroot" / "home" / uid / "incoming"
        (incoming / "data.bin").write_bytes(os.urandom(2048))
        (incoming / "etc").symlink_to("/etc")
    new = add_entries(ldap_server, adds)
    requests: dict[str, tuple[str, dict[str, list[str]]]] = {dn: ("add", {}) for dn in new}
    for index, (uid, dn) in enumerate(zip(modifies, existing, strict=False)):
        changes = (
            {"sstIsActive": ["FALSE"]}
            if index % 2
            else {"sstBackupIntervalHourly": ["24"], "sstQuota": [str(2**31 + index)]}
        )
        requests[dn] = ("modify", changes)
        assert uid in dn
    for dn in existing[len(modifies) :]:
        # Requested again once done, a delete must still name its server: a delete of an
        # account no server holds is an operator's decision, never claimed.
        requests[dn] = ("delete", {"host": ["backup1"]})

    def put_requests() -> None:
        for dn, (mode, changes) in requests.items():
            request(ldap_server, dn, mode, **changes)

    baseline = tmp_path / "baseline"
    # cp -a, not copytree: the owners are kept, so the restored trees are the
    # customers' as a real server's are (copytree made them all root's).
    subprocess.run(["cp", "-a", "--", str(root), str(baseline)], check=True)
    put_requests()
    clean = run(setup, "process")
    assert clean.code == 0, clean.err
    reference = fingerprint(root)

    shutil.rmtree(root)
    subprocess.run(["cp", "-a", "--", str(baseline), str(root)], check=True)
    assert fingerprint(root) == fingerprint(baseline)
    put_requests()
    kills = 0
    runs = 0
    while kills < 22:
        runs += 1
        assert runs < 200, f"the runs stopped making progress {why}"
        process = start_process(setup, tmp=scratch)
        if rng.random() < 0.25:
            # Anywhere: start-up, connect, search, the first claim.
            time.sleep(rng.uniform(0, 0.8))
        else:
            # Just after an entry ended, or inside the next one's claim, work or finish.
            for _ in range(rng.choice((0, 1, 1, 2))):
                process.stdout.readline()
            time.sleep(rng.uniform(0, 0.03))
        process.kill()
        process.communicate()
        if process.returncode == -signal.SIGKILL:
            kills += 1
        # The kernel dropped the dead run's lock: the next run is not blocked.
        assert lock_is_free(setup.lock_file), why
        rows = scan_rows(setup)
        interrupted = [uid for uid, status in rows.items() if status == "interrupted"]
        assert len(interrupted) <= 1, f"one entry at a time is in hand {why}"
        assert not [uid for uid, status in rows.items() if status == "failed"], why
        for uid in interrupted:
            assert run(setup, "reset", "--uid", uid).code == 0
        if not rows:
            # All done before enough kills: request everything again. Every step is
            # idempotent, so the clean run's tree is still where this must end.
            put_requests()
    assert kills >= 20, f"only {kills} kills landed in a run {why}"

    final = run(setup, "process")
    assert final.code == 0, final.err
    assert scan_rows(setup) == {}
    for dn, (mode, _) in requests.items():
        assert mode_of(ldap_server, dn) == DONE_MODES[mode], why
    assert fingerprint(root) == reference, f"the tree differs from a clean run's {why}"


# -- SIGTERM / SIGINT -------------------------------------------------------------------


@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_lets_the_entry_in_hand_finish_then_stops_the_run(
    tmp_path: Path, ldap_server: Slapd, number: signal.Signals, code: int
) -> None:
    gate = Gate(tmp_path / "gate", at=2)
    setup = write_config(tmp_path, ldap_server, gate.config)
    uids = [f"47000{index:02d}" for index in range(5)]
    dns = dict(zip(uids, add_entries(ldap_server, uids), strict=True))
    run_ = start_process(setup)
    wait_for(gate.blocked, run_)
    in_hand = gate.in_hand()

    # Mid-run, an operator's reset is refused and scan shows the entry being worked on.
    refused = run_process(setup, "reset", "--uid", in_hand)
    assert refused.code == 75 and "--force" in refused.err
    assert mode_of(ldap_server, dns[in_hand]) == "adding"
    assert scan_rows(setup)[in_hand] == "running"

    run_.send_signal(number)
    time.sleep(0.2)  # the signal is handled while the hook still runs
    gate.open()
    out, err = run_.communicate(timeout=60)

    assert run_.returncode == code, err
    assert f"stopped by {number.name}" in out
    status = json.loads(setup.status_file.read_text())
    assert (status["exit_code"], status["stopped_by_signal"]) == (code, number.name)
    done = [entry["uid"] for entry in status["entries"] if entry["outcome"] == "done"]
    assert len(done) == 2 and done[-1] == in_hand, "the entry in hand was finished"
    assert mode_of(ldap_server, dns[in_hand]) == "added"
    left = [uid for uid in uids if uid not in done]
    assert {uid: mode_of(ldap_server, dns[uid]) for uid in left} == dict.fromkeys(left, "add")
    assert not lock_holders(setup.lock_file)
    # The stop is a warning for monitoring, not a failure: the next run goes on.
    check = run_process(setup, "check")
    assert check.code == 1 and f"last run stopped by {number.name}" in check.out, check.out
    assert run_process(setup, "process").code == 0
    assert {mode_of(ldap_server, dn) for dn in dns.values()} == {"added"}


def test_sigterm_to_the_run_and_its_hook_abandons_the_entry_with_a_reason(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    """systemd stops a service by signalling every process of it, the hook included."""
    gate = Gate(tmp_path / "gate", at=1)
    setup = write_config(tmp_path, ldap_server, gate.config)
    uids = ["4700100", "4700101"]
    dns = dict(zip(uids, add_entries(ldap_server, uids), strict=True))
    run_ = start_process(setup)
    wait_for(gate.blocked, run_)
    hook_pid = int(gate.blocked.read_text())
    run_.send_signal(signal.SIGTERM)
    os.kill(hook_pid, signal.SIGTERM)
    out, err = run_.communicate(timeout=60)
    assert "stopped by SIGTERM" in out

    assert run_.returncode == 143, err
    in_hand = gate.in_hand()
    status = json.loads(setup.status_file.read_text())
    (entry,) = status["entries"]
    assert entry["uid"] == in_hand and entry["outcome"] == "failed"
    assert "was killed by signal 15" in entry["message"]
    assert read_entry(ldap_server, dns[in_hand])["sstprovisioningreturnvalue"] == ["50"]
    assert scan_rows(setup)[in_hand] == "failed"
    assert not account_dir(setup.root, in_hand).exists(), "a pre hook runs before any work"


def test_check_reports_a_run_stopped_by_a_signal_as_a_warning() -> None:
    now = datetime.now(UTC)
    counts = dict.fromkeys(Status, 0)
    stopped = {"finished": now.isoformat(), "exit_code": 143, "stopped_by_signal": "SIGTERM"}
    verdict = evaluate(counts, stopped, now=now, max_status_age=3600)
    assert verdict.state is CheckState.WARNING
    assert "last run stopped by SIGTERM" in verdict.summary
    crashed = {"finished": now.isoformat(), "exit_code": 143, "stopped_by_signal": None}
    assert evaluate(counts, crashed, now=now, max_status_age=3600).state is CheckState.CRITICAL


# -- races ------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_hosts_over_200_entries_work_on_each_exactly_once(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    root = tmp_path / "backup"
    root.mkdir()
    worked = tmp_path / "worked.log"
    hook = tmp_path / "record-work"
    hook.write_text(f'#!/bin/sh\necho "$PROVBACKUP_UID $HOST" >> {worked}\n')
    hook.chmod(0o755)
    uids = [f"48{index:05d}" for index in range(200)]
    dns = add_entries(ldap_server, uids)
    hosts = []
    for name in ("a", "b", "c", "d"):
        directory = tmp_path / name
        directory.mkdir()
        hosts.append(
            write_config(
                directory, ldap_server, f"[backup]\nroot = {root}\n[hooks]\npre_add = {hook}\n"
            )
        )
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "provbackup", "--config", str(setup.config), "process"],
            env={**environment, "HOST": name},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, setup in zip("abcd", hosts, strict=True)
    ]
    for process in runs:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    # The pre_add hook ran exactly once per entry: no entry was worked on twice.
    lines = worked.read_text().split("\n")[:-1]
    assert sorted(line.split()[0] for line in lines) == uids
    done: list[str] = []
    skipped = 0
    working_hosts = 0
    for setup in hosts:
        status = json.loads(setup.status_file.read_text())
        mine = [entry["uid"] for entry in status["entries"] if entry["outcome"] == "done"]
        done += mine
        working_hosts += bool(mine)
        skipped += status["counts"]["skipped"]
    assert sorted(done) == uids, "each entry done by exactly one host"
    assert working_hosts >= 2, "the hosts really ran side by side"
    assert {mode_of(ldap_server, dn) for dn in dns} == {"added"}
    assert sum(1 for uid in uids if (account_dir(root, uid) / "rsnapshot.conf").is_file()) == 200


# -- the server side fails --------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=256k``) at ``path`` for the block.

    Skips the test where mounting is not allowed (an unprivileged container).
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path, *, inodes: bool) -> Path:
    """Use up the filesystem's space (or inodes) with files in ``directory``."""
    filler = directory / "filler"
    filler.mkdir()
    index = 0
    with contextlib.suppress(OSError):
        while True:
            with open(filler / str(index), "wb") as handle:
                if not inodes:
                    handle.write(b"\0" * 65536)
                    handle.flush()
                    os.fsync(handle.fileno())
            index += 1
    return filler


def temporaries(root: Path) -> list[str]:
    """Temporary files a work step left anywhere below ``root``."""
    return [path for path in fingerprint(root) if ".provbackup-tmp." in path]


def converges_like_a_clean_add(setup: Setup, server: Slapd, dn: str, uid: str) -> None:
    """Reset + process finishes ``dn``; its tree equals a fresh add's on a clean disk."""
    assert run(setup, "reset", "--dn", dn).code == 0
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    assert mode_of(server, dn) == "added"
    recovered = fingerprint(account_dir(setup.root, uid))
    request(server, dn, "delete")
    assert run(setup, "process").code == 0
    assert not account_dir(setup.root, uid).exists()
    request(server, dn, "add")
    assert run(setup, "process").code == 0
    assert fingerprint(account_dir(setup.root, uid)) == recovered


def test_a_missing_backup_root_claims_nothing_and_says_so(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    """A disk that is not mounted must not turn every due entry into a failed one."""
    setup = write_config(tmp_path, ldap_server)
    dns = add_entries(ldap_server, ["4950001", "4950002"])
    setup.root.rmdir()

    result = run_process(setup, "process")

    assert result.code == 78, result.err
    line = one_line_error(result.err)
    assert f"[backup] root: backup root {setup.root} does not exist (not mounted?)" in line
    assert "no entry was claimed" in line
    assert {mode_of(ldap_server, dn) for dn in dns} == {"add"}
    status = json.loads(setup.status_file.read_text())
    assert status["exit_code"] == 78 and "not mounted" in status["error"]
    setup.root.mkdir()
    assert run_process(setup, "process").code == 0
    assert {mode_of(ldap_server, dn) for dn in dns} == {"added"}


def test_a_quarantine_that_is_not_a_directory_is_left_alone_and_reported(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "4960000.20000101T000000Z").mkdir(parents=True)
    (setup.root / ".deleted").symlink_to(elsewhere)
    (dn,) = add_entries(ldap_server, ["4960001"])

    result = run_process(setup, "process")

    assert result.code == 0, result.err
    assert mode_of(ldap_server, dn) == "added"
    assert "ERROR: cannot purge the quarantine" in result.err
    assert ".deleted: is a symbolic link" in result.err
    assert (elsewhere / "4960000.20000101T000000Z").is_dir(), "nothing purged through the link"


@pytest.mark.parametrize("inodes", [False, True], ids=["no-space", "no-inodes"])
def test_a_full_disk_fails_the_entry_with_the_reason_and_leaves_nothing_half_done(
    tmp_path: Path, ldap_server: Slapd, inodes: bool
) -> None:
    setup = write_config(tmp_path, ldap_server)
    with small_filesystem(setup.root, "size=512k,nr_inodes=400"):
        kept = "4900001"
        (kept_dn,) = add_entries(ldap_server, [kept])
        assert run(setup, "process").code == 0
        filler = fill(setup.root, inodes=inodes)
        (new_dn,) = add_entries(ldap_server, ["4900002"])
        # A modify that changes only the quota needs no space: it is done in the same run.
        request(ldap_server, kept_dn, "modify", sstQuota=["2048"])

        result = run(setup, "process")

        assert result.code == 1
        line = next(line for line in result.out.splitlines() if new_dn in line)
        assert line.startswith("failed"), line
        # Names the file or directory it could not write, in full.
        assert re.search(rf"{setup.root}/\S+: No space left on device", line), line
        assert mode_of(ldap_server, kept_dn) == "modified", "the run went on"
        assert read_entry(ldap_server, new_dn)["sstprovisioningreturnvalue"] == ["20"]
        assert temporaries(setup.root) == []
        assert not (account_dir(setup.root, "4900002") / "rsnapshot.conf").exists()

        shutil.rmtree(filler)
        converges_like_a_clean_add(setup, ldap_server, new_dn, "4900002")


def test_an_immutable_directory_fails_the_entry_and_the_run_goes_on(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    """Root is not refused by modes; an immutable inode (chattr +i) is what it meets."""
    setup = write_config(tmp_path, ldap_server)
    uids = ["4910001", "4920002"]
    dns = dict(zip(uids, add_entries(ldap_server, uids), strict=True))
    frozen = setup.root / "1"
    frozen.mkdir()
    frozen_now = subprocess.run(
        ["chattr", "+i", str(frozen)], capture_output=True, text=True, check=False
    )
    if frozen_now.returncode != 0:
        pytest.skip(f"this filesystem has no immutable flag: {frozen_now.stderr.strip()}")
    try:
        result = run(setup, "process")
        assert result.code == 1
        line = next(line for line in result.out.splitlines() if dns["4910001"] in line)
        assert line.startswith("failed") and "Operation not permitted" in line
        assert f"{frozen}/001: Operation not permitted" in line, "names what it could not create"
        assert mode_of(ldap_server, dns["4920002"]) == "added"
        assert os.listdir(frozen) == []
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)
    converges_like_a_clean_add(setup, ldap_server, dns["4910001"], "4910001")


@pytest.mark.parametrize("broken", ["exits-non-zero", "not-executable", "missing"])
def test_a_failing_quota_command_fails_the_entry_and_the_run_goes_on(
    tmp_path: Path, ldap_server: Slapd, broken: str
) -> None:
    quota = tmp_path / "quota-tool"
    if broken == "exits-non-zero":
        # Fails for one account only, as setquota does for an unknown user.
        quota.write_text(
            '#!/bin/sh\nif [ "$1" = 4930001 ]; then\n'
            '  echo "setquota: user 4930001 has no entry in the quota file" >&2; exit 3\nfi\n'
        )
        quota.chmod(0o755)
    elif broken == "not-executable":
        quota.write_text("#!/bin/sh\n")
        quota.chmod(0o644)
    setup = write_config(tmp_path, ldap_server, f"[quota]\ncommand = {quota} {{uid}}\n")
    uids = ["4930001", "4930002"]
    dns = dict(zip(uids, add_entries(ldap_server, uids), strict=True))

    result = run(setup, "process")

    if broken != "exits-non-zero":
        # A program that is not installed is found before any entry is claimed
        # (issue 10.9): one line naming the key, exit 78, every entry still requested.
        assert result.code == 78, result.err
        assert f"[quota] command: {str(quota)!r} is not an installed program" in result.err
        assert [mode_of(ldap_server, dns[uid]) for uid in uids] == ["add", "add"]
        quota.write_text("#!/bin/sh\n")
        quota.chmod(0o755)
        assert run(setup, "process").code == 0
        assert [mode_of(ldap_server, dns[uid]) for uid in uids] == ["added", "added"]
        return
    assert result.code == 1
    reason = "exited with 3: setquota: user 4930001 has no entry in the quota file"
    failing = ["4930001"]
    for uid in uids:
        line = next(line for line in result.out.splitlines() if dns[uid] in line)
        if uid in failing:
            assert line.startswith("failed") and reason in line, line
            assert read_entry(ldap_server, dns[uid])["sstprovisioningreturnvalue"] == ["40"]
        else:
            assert line.startswith("done"), line
    assert temporaries(setup.root) == []

    quota.write_text("#!/bin/sh\n")
    quota.chmod(0o755)
    converges_like_a_clean_add(setup, ldap_server, dns["4930001"], "4930001")


def test_a_failing_rsnapshot_configtest_keeps_the_old_configuration_and_the_run_goes_on(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server, "[rsnapshot]\nconfigtest = yes\n")
    existing, deleted = add_entries(ldap_server, ["4940001", "4940002"])
    assert run(setup, "process").code == 0
    conf = account_dir(setup.root, "4940001") / "rsnapshot.conf"
    before = conf.read_bytes()
    (tmp_path / "broken").mkdir()
    broken = write_config(
        tmp_path / "broken",
        ldap_server,
        f"[backup]\nroot = {setup.root}\n"
        "[rsnapshot]\nconfigtest = yes\nrsync = /nonexistent/rsync\n",
    )
    (new,) = add_entries(ldap_server, ["4940003"])
    request(ldap_server, existing, "modify", sstBackupIntervalHourly=["6"])
    request(ldap_server, deleted, "delete")

    result = run(broken, "process")

    assert result.code == 1
    for dn in (new, existing):
        line = next(line for line in result.out.splitlines() if dn in line)
        assert line.startswith("failed") and "rsnapshot configtest failed" in line, line
        assert "/nonexistent/rsync" in line
        assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["30"]
    assert conf.read_bytes() == before, "the account keeps its working configuration"
    assert not (account_dir(setup.root, "4940003") / "rsnapshot.conf").exists()
    assert mode_of(ldap_server, deleted) == "deleted", "the run went on"
    assert temporaries(setup.root) == []

    assert run(setup, "reset", "--dn", existing).code == 0
    converges_like_a_clean_add(setup, ldap_server, new, "4940003")
    assert mode_of(ldap_server, existing) == "modified"
    assert "retain\thourly\t6" in conf.read_text()
