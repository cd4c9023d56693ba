"""Removing customer trees: deep, racing, bounded (issue 11, findings 2 and 5).

Each tree here is what a customer can make in ``incoming/`` with rsync or
sftp: a directory nested 1,300 deep (today's rmtree recursed and died with
RecursionError on every run), and directories swapped for FIFOs or symlinks
by a process racing the removal (a FIFO opened as a directory blocked the
run forever). The real ``provbackup process`` runs as a subprocess with a
timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import REPOSITORY, fingerprint, read_entry, run_process, write_config

from provbackup.work.remove import MIN_OPERATIONS, Budget, remove_tree
from sandbox import Slapd, account_entry

DEPTH = 1300


def nest(top: Path, depth: int, name: str = "d") -> None:
    """Make ``top/d/d/.../d`` ``depth`` levels deep, a file at the bottom, by descriptors."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(leaf, b"data")
        os.close(leaf)
    finally:
        os.close(fd)


def quarantined(root: Path, name: str = "4100001.20200101T000000Z") -> Path:
    path = root / ".deleted" / name
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return path


def status_of(setup) -> dict:
    return json.loads(setup.status_file.read_text())


def test_a_1300_deep_quarantined_tree_is_purged_and_the_run_succeeds(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    tree = quarantined(setup.root)
    nest(tree / "incoming", DEPTH)

    result = run_process(setup, "process")

    assert result.code == 0, result.err
    assert "RecursionError" not in result.err
    assert not tree.exists()
    status = status_of(setup)
    assert status["exit_code"] == 0
    assert status["purge"] == {"removed": 1, "failed": [], "unfinished": []}


def test_deleting_an_account_holding_a_1300_deep_upload_removes_it(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)  # quarantine_days = 0: removed at once
    dn, attributes = account_entry("4100002", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    assert run_process(setup, "process").code == 0
    account = setup.root / "2" / "002" / "100" / "4100002"
    nest(account / "chroot" / "home" / "4100002" / "incoming" / "deep", DEPTH)
    request_delete(ldap_server, dn)

    result = run_process(setup, "process")

    assert result.code == 0, result.out + result.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not account.exists()


def request_delete(server: Slapd, dn: str) -> None:
    import ldap3

    connection = server.connection()
    try:
        assert connection.modify(
            dn,
            {
                "sstProvisioningMode": [(ldap3.MODIFY_REPLACE, ["delete"])],
                "sstProvisioningState": [(ldap3.MODIFY_REPLACE, ["0"])],
            },
        ), connection.result
    finally:
        connection.unbind()


def test_one_bad_quarantined_tree_never_stops_the_others(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    deep = quarantined(setup.root, "4100003.20200101T000000Z")
    nest(deep, DEPTH)
    frozen = quarantined(setup.root, "4100004.20200101T000000Z")
    frozen.mkdir()
    (frozen / "kept").write_text("immutable")
    plain = quarantined(setup.root, "4100005.20200101T000000Z")
    (plain / "incoming").mkdir(parents=True)
    (plain / "incoming" / "file").write_text("x")
    chattr = subprocess.run(
        ["chattr", "+i", str(frozen / "kept")], capture_output=True, text=True, check=False
    )
    if chattr.returncode != 0:
        pytest.skip(f"this filesystem has no immutable flag: {chattr.stderr.strip()}")
    try:
        result = run_process(setup, "process")
    finally:
        subprocess.run(["chattr", "-i", str(frozen / "kept")], check=True)

    assert result.code == 0, result.err
    assert not deep.exists() and not plain.exists()
    assert (frozen / "kept").read_text() == "immutable"
    purge = status_of(setup)["purge"]
    assert purge["removed"] == 2
    assert len(purge["failed"]) == 1
    assert f"{frozen}/kept" in purge["failed"][0]
    assert "Operation not permitted" in purge["failed"][0]
    assert f"cannot purge {frozen}" in result.err


def test_the_remover_keeps_few_descriptors_open(tmp_path):
    """1,300 levels removed by a process allowed 40 open files in all."""
    nest(tmp_path / "top", DEPTH)
    code = textwrap.dedent(
        """
        import os, resource, sys
        from pathlib import Path
        from provbackup.work.remove import remove_tree
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
        parent = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
        print(remove_tree(parent, Path(sys.argv[1]), "top"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
    assert os.listdir(tmp_path) == []
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 40  # ours untouched


def test_a_spent_budget_stops_the_removal_and_the_next_call_goes_on(tmp_path):
    top = tmp_path / "top"
    for index in range(5):
        (top / str(index)).mkdir(parents=True)
        for number in range(100):
            (top / str(index) / f"f{number}").write_text("x")
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        calls = 1
        while not remove_tree(parent, tmp_path, "top", Budget(0)):
            remaining = sum(len(files) for _, _, files in os.walk(top))
            assert remaining < 500, "each call makes progress"
            calls += 1
            assert calls < 100
    finally:
        os.close(parent)
    assert calls >= 500 // MIN_OPERATIONS
    assert not top.exists()


def test_a_spent_budget_on_delete_moves_the_rest_to_the_quarantine(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, extra="[delete]\ntime_budget = 0.000001\n")
    dn, attributes = account_entry("4100006", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    assert run_process(setup, "process").code == 0
    account = setup.root / "6" / "006" / "100" / "4100006"
    incoming = account / "chroot" / "home" / "4100006" / "incoming"
    for number in range(3 * MIN_OPERATIONS):
        (incoming / f"f{number}").write_text("x")
    request_delete(ldap_server, dn)

    first = run_process(setup, "process")

    assert first.code == 0, first.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not account.exists()
    left = os.listdir(setup.root / ".deleted")
    assert len(left) == 1 and left[0].startswith("4100006.")
    runs = 1
    while os.listdir(setup.root / ".deleted"):
        assert run_process(setup, "process").code == 0
        runs += 1
        assert runs < 20
    assert runs >= 2


RACER = textwrap.dedent(
    """
    import ctypes, os, signal, sys
    libc = ctypes.CDLL(None, use_errno=True)
    RENAME_EXCHANGE = 2
    top, count = sys.argv[1], int(sys.argv[2])
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    partner = {}
    for i in range(count):
        partner[f"d{i}"] = f"x{i}".encode()
        partner[f"x{i}"] = f"d{i}".encode()
    # The remover walks the directory in its readdir order: race just ahead of it.
    order = [name for name in os.listdir(fd) if name in partner]
    exchanges = 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        position = 0
        while position < len(order):
            try:
                os.stat(order[position], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                position += 1
                continue
            except OSError:
                break
            for name in order[position : position + 3]:
                if libc.renameat2(fd, name.encode(), fd, partner[name], RENAME_EXCHANGE) == 0:
                    exchanges += 1
    finally:
        print(exchanges, flush=True)
    """
)


def start_racer(top: Path, count: int) -> subprocess.Popen[str]:
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(top), str(count)], stdout=subprocess.PIPE, text=True
    )
    assert racer.stdout is not None
    assert racer.stdout.readline().strip() == "ready"
    return racer


def stop_racer(racer: subprocess.Popen[str]) -> int:
    racer.terminate()
    out, _ = racer.communicate(timeout=30)
    return int(out.split()[-1]) if out.split() else 0


COUNT = 200


@pytest.mark.parametrize("swapped_in", ["fifo", "symlink"])
def test_entries_swapped_while_the_purge_runs_never_block_or_lead_outside(
    tmp_path, ldap_server, swapped_in
):
    """A real process exchanges directories with FIFOs (or symlinks out) as fast as it can."""
    setup = write_config(tmp_path, ldap_server)
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (outside / "secret" / "file").write_text("keep me")
    before = fingerprint(outside)
    top = quarantined(setup.root)
    top.mkdir()
    for index in range(COUNT):
        (top / f"d{index}").mkdir()
        (top / f"d{index}" / "file").write_text("x")
        if swapped_in == "fifo":
            os.mkfifo(top / f"x{index}")
        else:
            os.symlink(outside / "secret", top / f"x{index}")
    racer = start_racer(top, COUNT)
    try:
        result = run_process(setup, "process", timeout=90)
    finally:
        exchanges = stop_racer(racer)

    assert result.code == 0, result.err
    assert exchanges > 0, "the racer did exchange entries"
    assert not top.exists(), result.err
    assert fingerprint(outside) == before


def test_a_fifo_in_place_of_the_tree_is_removed_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "top")
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert remove_tree(parent, tmp_path, "top")
    finally:
        os.close(parent)
    assert os.listdir(tmp_path) == []
