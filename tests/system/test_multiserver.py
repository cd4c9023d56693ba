"""Many backup servers, one directory (issue 20), against real slapd pairs.

A two-provider pair (syncprov + mirror mode, :func:`sandbox.mirror_pair`)
with two hosts, each reading its own provider and claiming on one
designated provider (``[ldap] claim_uri``); a provider killed mid-run; two
backup servers (two roots) on one directory; moving an account; ``check``.
Every host is a real ``python -m provbackup`` process with its own
configuration, root, lock and status file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPOSITORY, Setup, account_dir, modify_entry, read_entry, run, write_config

from sandbox import Slapd, account_entry, mirror_pair

STATUS_OF = {"done", "failed", "skipped", "interrupted"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slapd, Slapd]]:
    first, second = mirror_pair(tmp_path_factory.mktemp("pair"), acl=True)
    with first, second:
        first.add_base()
        wait_for(lambda: entry_exists(second, second.accounts_dn), "the base replicated")
        yield first, second


def entry_exists(server: Slapd, dn: str) -> bool:
    return bool(read_entry(server, dn))


def wait_for(condition, what: str, timeout: float = 30.0, details=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {details()}"
        time.sleep(0.1)


def _by_mode(server: Slapd, uids: list[str]) -> dict[str, int]:
    """How many of ``uids`` ``server`` shows in each of add, adding, added."""
    return {mode: count_requests(server, uids, mode) for mode in ("add", "adding", "added")}


def count_requests(server: Slapd, uids: list[str], mode: str = "add") -> int:
    """How many of ``uids`` ``server`` shows in ``mode`` (replication's progress)."""
    connection = server.connection()
    try:
        found = connection.extend.standard.paged_search(
            server.accounts_dn, f"(sstProvisioningMode={mode})", attributes=["uid"], paged_size=500,
            generator=False,
        )  # fmt: skip
        wanted = set(uids)
        return sum(1 for item in found if set(item["attributes"].get("uid", [])) & wanted)
    finally:
        connection.unbind()


def host_setup(directory: Path, server: Slapd, name: str, worked: Path, **ldap: str) -> Setup:
    """A backup server ``name`` reading ``server``; its pre_add hook records each entry worked."""
    directory.mkdir(parents=True)
    hook = directory / "record-work"
    hook.write_text(f'#!/bin/sh\necho "$PROVBACKUP_UID {name}" >> {worked}\n')
    hook.chmod(0o755)
    extra = f"[backup]\nserver_name = {name}\n[hooks]\npre_add = {hook}\npre_modify = {hook}\n"
    return write_config(directory, server, extra, start_tls="no", **ldap)


def start(setup: Setup, *arguments: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("PROVBACKUP_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), "process", *arguments],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def outcomes(setup: Setup) -> list[tuple[str, str]]:
    status = json.loads(setup.status_file.read_text())
    return [(entry["uid"], entry["outcome"]) for entry in status["entries"]]


def add_accounts(server: Slapd, uids: list[str], **options: object) -> list[str]:
    entries = [
        account_entry(uid, base_dn=server.accounts_dn, home_directory=None, **options)  # type: ignore[arg-type]
        for uid in uids
    ]
    server.add_entries(entries)
    return [dn for dn, _ in entries]


# -- two hosts on two providers --------------------------------------------------------


def test_two_hosts_on_two_providers_work_each_of_200_entries_once_five_times(
    tmp_path: Path, pair: tuple[Slapd, Slapd]
) -> None:
    first, second = pair
    for repetition in range(5):
        base = tmp_path / f"round{repetition}"
        worked = base / "worked.log"
        hosts = [
            host_setup(base / name, server, name, worked, claim_uri=first.uri)
            for name, server in (("backup-a", first), ("backup-b", second))
        ]
        uids = [f"52{repetition}{index:04d}" for index in range(200)]
        # The web shop writes half the requests to each provider.
        dns = add_accounts(first, uids[::2]) + add_accounts(second, uids[1::2])
        for server in pair:
            wait_for(
                lambda server=server, uids=uids: count_requests(server, uids) == 200,
                "replication",
            )
        runs = [start(setup) for setup in hosts]  # at the same moment
        for process in runs:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err

        # Each entry worked exactly once: one pre_add hook run, one rsnapshot.conf
        # created (on one root), one write-back of "added", none refused.
        lines = worked.read_text().split("\n")[:-1]
        assert sorted(line.split()[0] for line in lines) == uids
        created = Counter(
            uid for setup in hosts for uid in uids
            if (account_dir(setup.root, uid) / "rsnapshot.conf").is_file()
        )  # fmt: skip
        assert sorted(created) == uids and set(created.values()) == {1}
        written = [(uid, outcome) for setup in hosts for uid, outcome in outcomes(setup)]
        assert sorted(uid for uid, outcome in written if outcome == "done") == uids
        assert not [item for item in written if item[1] == "failed"]
        # Both hosts worked (they ran side by side), and each entry names the server
        # whose root holds its tree, on both providers.
        worked_by = dict(line.split() for line in lines)
        assert set(worked_by.values()) == {"backup-a", "backup-b"}
        assert len(dns) == 200
        for uid in uids[:40]:
            dn = f"uid={uid},{first.accounts_dn}"
            entry = read_entry(first, dn)
            assert entry["sstprovisioningmode"] == ["added"]
            assert entry["host"] == [worked_by[uid]]
            holder = next(s for s in hosts if (account_dir(s.root, uid)).is_dir())
            assert f"server_name = {worked_by[uid]}" in holder.config.read_text()


@pytest.mark.parametrize("failover", [False, True], ids=["restarted", "failover"])
def test_a_claim_provider_killed_mid_run_loses_nothing_and_doubles_nothing(
    tmp_path: Path, pair: tuple[Slapd, Slapd], failover: bool
) -> None:
    """Killed (SIGKILL) with both runs busy. ``restarted``: claim_uri = P1; P1 is
    started again, then the runs go on. ``failover``: claim_uri = P1 P2 (each claim
    read back from the other before the work); the runs go on at once on P2 alone,
    then P1 comes back and catches up."""
    first, second = pair
    worked = tmp_path / "worked.log"
    hosts = []
    for name, own, other in (("backup-a", first, second), ("backup-b", second, first)):
        if failover:
            ldap = {"uri": f"{own.uri} {other.uri}", "claim_uri": f"{first.uri} {second.uri}"}
        else:
            ldap = {"claim_uri": first.uri}
        hosts.append(host_setup(tmp_path / name, own, name, worked, **ldap))
    uids = [f"5{3 + 5 * failover}{index:05d}" for index in range(200)]
    add_accounts(first, uids)
    wait_for(lambda: count_requests(second, uids) == 200, "replication")
    runs = [start(setup) for setup in hosts]

    def made() -> int:
        return sum(
            1 for setup in hosts for uid in uids
            if (account_dir(setup.root, uid) / "rsnapshot.conf").exists()
        )  # fmt: skip

    wait_for(lambda: made() >= 30, "the runs to get going", timeout=120)
    first.kill()  # the provider every claim goes to, mid-run
    codes = []
    for process in runs:
        _, err = process.communicate(timeout=120)
        codes.append(process.returncode)
    assert 69 in codes, "a run lost its claim provider (exit 69)"
    in_hand = [
        uid for setup in hosts for uid, outcome in outcomes(setup) if outcome == "interrupted"
    ]
    assert len(in_hand) <= 2, "at most the entry in hand on each host"
    if failover:  # on with provider 2 alone, at once
        runs = [start(setup) for setup in hosts]
        for process in runs:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
    first.start()  # the same data and ports: it catches up with its peer
    wait_for(
        # Every mode, not only "added": a claim (adding) P1 took just before the kill
        # reaches P2 only now, and a reset reads the host's own provider.
        lambda: _by_mode(first, uids) == _by_mode(second, uids),
        "the providers to agree",
        timeout=120,  # a loaded machine: both replay what the other took meanwhile
        details=lambda: f"P1 {_by_mode(first, uids)}, P2 {_by_mode(second, uids)}",
    )
    # The claims that got through show as interrupted: reset each where it is held,
    # then run both again.
    rows = json.loads(run(hosts[0], "scan", "--json").out)
    interrupted = [row["uid"] for row in rows if row["status"] == "interrupted"]
    assert set(interrupted) <= set(in_hand)
    for uid in interrupted:
        owner = next(
            setup for setup in hosts
            if read_entry(first, f"uid={uid},{first.accounts_dn}").get("host")
            == [setup.config.parent.name]
        )  # fmt: skip
        assert run(owner, "reset", "--uid", uid).code == 0
    # Each host reads its own provider: wait until both show the resets.
    for server in pair:
        wait_for(
            lambda server=server: count_requests(server, interrupted) == len(interrupted),
            "the resets replicated",
        )
    runs = [start(setup) for setup in hosts]
    for process in runs:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    lines = worked.read_text().split("\n")[:-1]
    by_uid: dict[str, set[str]] = {}
    for line in lines:
        uid, name = line.split()
        by_uid.setdefault(uid, set()).add(name)
    assert sorted(by_uid) == uids
    assert all(len(names) == 1 for names in by_uid.values()), "never worked by two hosts"
    twice = [uid for uid, count in Counter(line.split()[0] for line in lines).items() if count > 1]
    assert set(twice) <= set(interrupted), "only an interrupted entry is redone (same host)"
    for uid in uids:
        roots = [setup for setup in hosts if (account_dir(setup.root, uid)).is_dir()]
        assert len(roots) == 1, uid
        for server in pair:
            entry = read_entry(server, f"uid={uid},{server.accounts_dn}")
            assert entry["sstprovisioningmode"] == ["added"], (uid, server.uri)
            assert entry["host"] == [roots[0].config.parent.name]


def test_the_last_write_of_a_killed_provider_reaches_its_peer_when_it_starts_again(
    pair: tuple[Slapd, Slapd],
) -> None:
    """A write P1 made just before its SIGKILL, which P2 had not received, is not lost.

    back-mdb counts as always cleanly shut down, so syncprov never looks for
    entryCSNs newer than the contextCSN it wrote last: with
    ``syncprov-checkpoint 100 1`` (this pair's setting before) P2 never got
    the write (30 s), and the pair disagreed for good. The pair, like the
    README's advice, writes the contextCSN after every write (``1 1``).
    """
    first, second = pair
    dn, attributes = account_entry("6100001", base_dn=first.accounts_dn)
    first.add_entries([(dn, attributes)])
    wait_for(lambda: entry_exists(second, dn), "the add replicated")
    second.stop()  # P2 hears nothing more from P1
    modify_entry(first, dn, {"sstProvisioningMode": ["added"]})
    first.kill()
    second.start()
    first.start()
    wait_for(
        lambda: read_entry(second, dn).get("sstprovisioningmode") == ["added"],
        "P1's last write on P2",
        details=lambda: f"P2 shows {read_entry(second, dn).get('sstprovisioningmode')}",
    )
    assert read_entry(first, dn)["sstprovisioningmode"] == ["added"]


# -- two backup servers, one directory -------------------------------------------------


def test_two_servers_on_one_directory_keep_to_their_own_accounts(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    worked = tmp_path / "worked.log"
    a = host_setup(tmp_path / "backup-a", ldap_server, "backup-a", worked)
    b = host_setup(tmp_path / "backup-b", ldap_server, "backup-b", worked)
    (mine,) = add_accounts(ldap_server, ["5400001"])
    assert run(a, "process").code == 0
    assert read_entry(ldap_server, mine)["host"] == ["backup-a"]
    record = json.loads((account_dir(a.root, "5400001") / ".provbackup-owner").read_text())
    assert record["server"] == "backup-a"

    # A modify of A's account: B never claims it, however often it runs.
    request = {"sstProvisioningMode": ["modify"], "sstProvisioningState": ["0"]}
    modify_entry(ldap_server, mine, {**request, "sstQuota": ["2147483648"]})
    for _ in range(2):
        assert run(b, "process").code == 0
        assert read_entry(ldap_server, mine)["sstprovisioningmode"] == ["modify"]
    assert not account_dir(b.root, "5400001").exists()
    scanned = run(b, "scan", "--json")
    (row,) = [row for row in json.loads(scanned.out) if row["uid"] == "5400001"]
    assert row["held"] == "held by another server (backup-a)"
    assert "held by another server (backup-a)" in run(b, "scan").out
    assert "held by this server" in run(a, "show", "5400001").out
    assert run(a, "process").code == 0
    assert read_entry(ldap_server, mine)["sstprovisioningmode"] == ["modified"]

    # An add: both run at the same moment, one of them makes it.
    (new,) = add_accounts(ldap_server, ["5400002"])
    runs = [start(a), start(b)]
    for process in runs:
        process.communicate(timeout=120)
        assert process.returncode == 0
    trees = [setup for setup in (a, b) if account_dir(setup.root, "5400002").is_dir()]
    assert len(trees) == 1
    assert read_entry(ldap_server, new)["host"] == [trees[0].config.parent.name]

    # A modify no server holds (no host, no tree anywhere): claimed by neither.
    (orphan,) = add_accounts(ldap_server, ["5400003"], mode="modify")
    for setup in (a, b):
        result = run(setup, "process")
        assert "held by no server" in result.out + result.err
    assert read_entry(ldap_server, orphan)["sstprovisioningmode"] == ["modify"]
    assert not any(account_dir(s.root, "5400003").exists() for s in (a, b))

    # A delete of A's account removes A's tree only; B's root is untouched, even a
    # tree B has under the same uid (a copy left by a move, say).
    stray = account_dir(b.root, "5400001") / "keep"
    stray.mkdir(parents=True)
    before_b = sorted(str(path) for path in b.root.rglob("*"))
    modify_entry(ldap_server, mine, {"sstProvisioningMode": ["delete"],
                                     "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(b, "process").code == 0
    assert read_entry(ldap_server, mine)["sstprovisioningmode"] == ["delete"]
    assert run(a, "process").code == 0
    entry = read_entry(ldap_server, mine)
    assert entry["sstprovisioningmode"] == ["deleted"] and "host" not in entry
    assert not account_dir(a.root, "5400001").exists()
    assert sorted(str(path) for path in b.root.rglob("*")) == before_b
    lines = worked.read_text().split("\n")[:-1]
    assert "5400001 backup-b" not in lines


def test_moving_an_account_with_rsync_and_reset_take_over(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    worked = tmp_path / "worked.log"
    a = host_setup(tmp_path / "backup-a", ldap_server, "backup-a", worked)
    b = host_setup(tmp_path / "backup-b", ldap_server, "backup-b", worked)
    (dn,) = add_accounts(ldap_server, ["5500001"])
    assert run(a, "process").code == 0
    old = account_dir(a.root, "5500001")
    upload = old / "chroot/home/5500001/incoming/host1/file.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("customer data")
    os.chown(upload, 5500001, 5500001)

    # README "Moving an account": copy the tree, take the account over, move the old
    # tree out of the old server's root.
    new = account_dir(b.root, "5500001")
    new.parent.mkdir(parents=True)
    subprocess.run(["rsync", "-aHAX", "--numeric-ids", f"{old}/", f"{new}/"], check=True)
    taken = run(b, "reset", "--uid", "5500001", "--take-over", "--mode", "modify")
    assert taken.code == 0, taken.err
    assert read_entry(ldap_server, dn)["host"] == ["backup-b"]
    assert run(a, "process").code == 0  # A no longer holds it: the modify is B's
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["modify"]
    assert run(b, "process").code == 0
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["modified"]
    moved = new / "chroot/home/5500001/incoming/host1/file.txt"
    assert moved.read_text() == "customer data" and moved.stat().st_uid == 5500001
    record = json.loads((new / ".provbackup-owner").read_text())
    assert record["server"] == "backup-b"
    assert "held by this server" in run(b, "show", "5500001").out
    assert "held by another server (backup-b)" in run(a, "show", "5500001").out


# -- check -----------------------------------------------------------------------------


def test_check_warns_about_a_provider_pair_without_a_claim_rule(
    tmp_path: Path, pair: tuple[Slapd, Slapd]
) -> None:
    first, second = pair
    # Both providers have written (each one's server ID is in the context CSN).
    add_accounts(second, ["5600001"], mode="added", state="20260101T000000Z")
    wait_for(lambda: entry_exists(first, f"uid=5600001,{first.accounts_dn}"), "replication")
    (tmp_path / "unsafe").mkdir()
    (tmp_path / "safe").mkdir()
    unsafe = write_config(tmp_path / "unsafe", first, "", start_tls="no",
                          uri=f"{first.uri} {second.uri}")  # fmt: skip
    safe = write_config(tmp_path / "safe", first, "", start_tls="no",
                        uri=f"{first.uri} {second.uri}", claim_uri=first.uri)  # fmt: skip
    warned = run(unsafe, "check")
    assert "no claim rule is set" in warned.out, warned.out
    assert "no claim rule" not in run(safe, "check").out


def test_check_warns_about_entries_held_here_that_the_filter_no_longer_selects(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    (dn,) = add_accounts(ldap_server, ["5700001"], extra={"host": ["backup-a"]},
                         mode="added", state="20260101T000000Z")  # fmt: skip
    # A filter on an attribute the example ACL lets provbackup read (see its comment).
    setup = write_config(tmp_path, ldap_server, "[backup]\nserver_name = backup-a\n",
                         filter="(gidNumber=5700001)")  # fmt: skip
    assert "no longer match" not in run(setup, "check").out
    modify_entry(ldap_server, dn, {"gidNumber": ["5700002"]})
    assert (
        f"no longer match [ldap] filter, so no run works on them: {dn}" in run(setup, "check").out
    )


def test_a_claim_that_never_reaches_the_other_claim_provider_is_not_worked_on(
    tmp_path: Path, pair: tuple[Slapd, Slapd], ldap_server: Slapd
) -> None:
    first, _ = pair
    # The "other provider" is a server that never receives the claim (no replication
    # between them): as a provider that died before replicating it would look.
    (dn,) = add_accounts(first, ["5900001"])
    add_accounts(ldap_server, ["5900001"])
    worked = tmp_path / "worked.log"
    setup = host_setup(
        tmp_path / "backup-a", first, "backup-a", worked,
        claim_uri=f"{first.uri} {ldap_server.uri}", claim_verify_timeout="0.5",
    )  # fmt: skip
    result = run(setup, "process")
    assert result.code == 1
    assert "did not reach claim provider" in result.out + result.err
    assert not worked.exists() and not account_dir(setup.root, "5900001").exists()
    entry = read_entry(first, dn)
    assert entry["sstprovisioningmode"] == ["adding"] and "sstprovisioningreturnvalue" not in entry
    rows = json.loads(run(setup, "scan", "--json").out)
    assert [row["status"] for row in rows if row["uid"] == "5900001"] == ["interrupted"]
