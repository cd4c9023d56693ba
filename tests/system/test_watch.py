"""``provbackup watch`` against a real slapd with syncprov: orders are worked as they appear.

Each test runs the real follower process (``python -m provbackup watch``);
the post_* hooks count every work (:func:`watchkit.works`), so "exactly
once" is counted, not assumed. No test starts a ``process`` run: what is
worked, the follower worked. No test asserts a time; every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from support import modify_entry, run, run_process
from watchkit import WAIT, Proxy, Watcher, add_order, follower_config, mode_of, wait_for, works

from provbackup.actions.watch import watch
from provbackup.cli.process import process_lifecycle
from provbackup.config import load_config
from sandbox import Slapd, account_entry


@pytest.fixture(scope="module")
def sync_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd with the syncprov overlay, TLS and the example ACL."""
    with Slapd(tmp_path_factory.mktemp("sync-slapd"), tls=True, acl=True, syncprov=True) as server:
        server.add_base()
        yield server


@pytest.fixture
def sync_server(sync_slapd: Slapd) -> Slapd:
    """The syncprov slapd, running, with no accounts."""
    if not sync_slapd.is_running():
        sync_slapd.start()
    sync_slapd.add_base()
    sync_slapd.clear_accounts()
    return sync_slapd


def _stopped(watcher: Watcher) -> None:
    code = watcher.stop()
    assert code == 0, watcher.text()


def test_an_added_order_is_worked_without_a_timer_run(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    watcher = Watcher(setup, tmp_path)
    try:
        watcher.wait_following()
        dn = add_order(sync_server, "3800001")
        wait_for("the order is added", lambda: mode_of(sync_server, dn) == "added")
    finally:
        _stopped(watcher)
    assert works(tmp_path) == {"add 3800001": 1}
    assert (setup.root / "1" / "001" / "800" / "3800001" / "rsnapshot.conf").is_file()
    # The batch recorded itself where process's runs do: check and scan read it there.
    assert setup.status_file.is_file()
    # A follower stopped by a signal leaves no health file behind (no stale warning).
    assert not (setup.status_file.parent / "watch.json").exists()


def test_a_modify_and_a_delete_order_are_worked(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    watcher = Watcher(setup, tmp_path)
    try:
        watcher.wait_following()
        dn = add_order(sync_server, "3800002")
        wait_for("the order is added", lambda: mode_of(sync_server, dn) == "added")
        modify_entry(sync_server, dn, {"sstProvisioningMode": ["modify"],
                                       "sstProvisioningState": ["0"]})  # fmt: skip
        wait_for("the modify is done", lambda: mode_of(sync_server, dn) == "modified")
        modify_entry(sync_server, dn, {"sstProvisioningMode": ["delete"],
                                       "sstProvisioningState": ["0"]})  # fmt: skip
        wait_for("the delete is done", lambda: mode_of(sync_server, dn) == "deleted")
    finally:
        _stopped(watcher)
    assert works(tmp_path) == {"add 3800002": 1, "modify 3800002": 1, "delete 3800002": 1}
    assert not (setup.root / "2" / "002" / "800" / "3800002").exists()


def test_an_order_placed_while_the_follower_is_down_is_worked_when_it_starts(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    dn = add_order(sync_server, "3800003")
    watcher = Watcher(setup, tmp_path)
    try:
        wait_for("the order is added", lambda: mode_of(sync_server, dn) == "added")
    finally:
        _stopped(watcher)
    assert works(tmp_path) == {"add 3800003": 1}


def test_slapd_killed_and_restarted_mid_burst_every_order_is_worked_at_most_once(
    tmp_path, sync_server
):
    setup = follower_config(tmp_path, sync_server)
    watcher = Watcher(setup, tmp_path)
    uids = [str(3810000 + number) for number in range(60)]
    try:
        watcher.wait_following()
        dns = [add_order(sync_server, uid) for uid in uids]
        wait_for("some orders are worked", lambda: len(works(tmp_path)) >= 5)
        sync_server.kill()
        sync_server.start()
        # The follower reconnects (a full refresh) and its batches finish the burst. The one
        # entry in hand when slapd died may be left in progress (interrupted: it waits for an
        # operator's reset, as after a process run); every other one is added.
        wait_for(
            "the burst is worked",
            lambda: sum(mode_of(sync_server, dn) == "added" for dn in dns) >= len(dns) - 1,
        )
        modes = [mode_of(sync_server, dn) for dn in dns]
    finally:
        _stopped(watcher)
    counted = works(tmp_path)
    assert max(counted.values()) == 1, counted  # nothing worked twice
    assert sum(mode == "added" for mode in modes) >= len(dns) - 1
    assert all(mode in ("added", "adding", "add") for mode in modes), modes
    # Every added entry was worked exactly once; the counts are the hooks' own.
    for uid, mode in zip(uids, modes, strict=True):
        if mode == "added":
            assert counted[f"add {uid}"] == 1, uid
    assert watcher.text().count("refresh complete") >= 2  # a refresh after the reconnection


def test_a_dropped_connection_fails_over_to_the_next_uri(tmp_path, sync_server):
    first, second = Proxy(sync_server.port), Proxy(sync_server.port)
    setup = follower_config(tmp_path, sync_server, extra=f"uri = {first.uri} {second.uri}\n")
    watcher = Watcher(setup, tmp_path)
    try:
        watcher.wait_following()
        assert f"following {first.uri}" in watcher.text()
        dn = add_order(sync_server, "3800004")
        wait_for("the first order is added", lambda: mode_of(sync_server, dn) == "added")
        first.stop()  # the TCP connection ends; the first URI refuses from now on
        watcher.wait_following(2)
        assert f"following {second.uri}" in watcher.text()
        later = add_order(sync_server, "3800005")
        wait_for("the second order is added", lambda: mode_of(sync_server, later) == "added")
    finally:
        _stopped(watcher)
        second.stop()
    assert works(tmp_path) == {"add 3800004": 1, "add 3800005": 1}


def test_two_followers_work_each_order_exactly_once(tmp_path, sync_server):
    hosts = [tmp_path / "host1", tmp_path / "host2"]
    watchers = []
    for host in hosts:
        host.mkdir()
        watchers.append(Watcher(follower_config(host, sync_server), host))
    uids = [str(3820000 + number) for number in range(30)]
    try:
        for watcher in watchers:
            watcher.wait_following()
        dns = [add_order(sync_server, uid) for uid in uids]
        wait_for("every order is added",
                 lambda: all(mode_of(sync_server, dn) == "added" for dn in dns))  # fmt: skip
    finally:
        for watcher in watchers:
            _stopped(watcher)
    total = works(hosts[0]) + works(hosts[1])
    assert total == {f"add {uid}": 1 for uid in uids}


def test_the_follower_on_a_consumer_of_a_provider(tmp_path):
    provider = Slapd(tmp_path / "provider", acl=True, syncprov=True)
    consumer = Slapd(tmp_path / "consumer", acl=True, consumer_of=provider)
    with provider:
        provider.add_base()
        with consumer:
            # Writes go to the provider ([ldap] uri), the follower follows the consumer.
            setup = follower_config(tmp_path, provider, extra=f"uri = {consumer.uri}\n",
                                    start_tls="no")  # fmt: skip
            watcher = Watcher(setup, tmp_path)
            try:
                watcher.wait_following()
                assert f"following {consumer.uri}" in watcher.text()
                dn = add_order(provider, "3800006")
                wait_for("the order is added", lambda: mode_of(provider, dn) == "added")
                wait_for("the consumer has it", lambda: mode_of(consumer, dn) == "added")
            finally:
                _stopped(watcher)
    assert works(tmp_path) == {"add 3800006": 1}


def test_a_missing_base_is_78_at_start_not_a_loop(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server,
                            base_dn=f"ou=nowhere,{sync_server.suffix}")  # fmt: skip
    result = run_process(setup, "watch", timeout=60)
    assert result.code == 78, result.err
    assert "ou=nowhere" in result.err


def test_a_bad_filter_is_78_at_start(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server, filter="(uid=x")
    result = run_process(setup, "watch", timeout=60)
    assert result.code == 78, result.err
    assert "filter" in result.err


def test_a_server_without_syncprov_is_78_at_start(tmp_path, ldap_server):
    setup = follower_config(tmp_path, ldap_server)
    result = run_process(setup, "watch", timeout=60)
    assert result.code == 78, result.err
    assert "sync search" in result.err


def test_check_reports_the_followers_health_and_a_dead_follower(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    before = run(setup, "check")
    assert "watch:" not in before.out  # no follower, no health file: nothing said
    watcher = Watcher(setup, tmp_path)
    try:
        watcher.wait_following()
        dn = add_order(sync_server, "3800007")
        wait_for("the order is added", lambda: mode_of(sync_server, dn) == "added")
        health = wait_for("a batch in the health file", lambda: _health_with_batch(setup))
        assert health["connected"] is True and health["uri"] == sync_server.uri
        result = run(setup, "check")
        assert result.code == 0, result.out
        assert f"watch: connected to {sync_server.uri}" in result.out
        assert "watch_lag=" in result.out
    finally:
        watcher.process.kill()  # a crash: the health file stays with a dead PID
        watcher.process.wait()
    result = run(setup, "check")
    assert result.code == 1, result.out
    assert "is not running" in result.out


def _health_with_batch(setup):
    path = setup.status_file.parent / "watch.json"
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    return document if document.get("batches") and document.get("lag_seconds") is not None else None


def test_sighup_reloads_the_configuration_and_follows_again(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server, filter="(uid=3800008)")
    watcher = Watcher(setup, tmp_path)
    try:
        watcher.wait_following()
        outside = add_order(sync_server, "3800009")  # outside the filter: left alone
        inside = add_order(sync_server, "3800008")
        wait_for("the order inside the filter is added",
                 lambda: mode_of(sync_server, inside) == "added")  # fmt: skip
        assert mode_of(sync_server, outside) == "add"
        text = setup.config.read_text().replace("filter = (uid=3800008)\n", "")
        setup.config.write_text(text)
        watcher.process.send_signal(signal.SIGHUP)
        watcher.wait_following(2)
        wait_for("the other order is added", lambda: mode_of(sync_server, outside) == "added")
    finally:
        _stopped(watcher)
    assert "configuration reloaded" in watcher.text()
    assert works(tmp_path) == {"add 3800008": 1, "add 3800009": 1}


def test_an_order_scheduled_for_tomorrow_is_worked_at_local_midnight(tmp_path, sync_server):
    # In process, with a clock the test moves past midnight; the directory and the work
    # are real. No change reaches the directory at midnight: the new day alone starts it.
    setup = follower_config(tmp_path, sync_server)
    tomorrow = (date.today() + timedelta(days=1)).strftime("%Y%m%d")
    dn = add_order(sync_server, "3800010", date=tomorrow)
    shift = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + shift[0]

    config = load_config(setup.config)
    lifecycle = process_lifecycle(config, wait=5, reload=True)
    codes = []

    def follow() -> None:
        with lifecycle.command():
            codes.append(watch(config, lifecycle, lambda: config, clock=clock))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        # The refresh's batch runs and leaves the scheduled order alone.
        wait_for("a first batch", lambda: setup.status_file.exists())
        assert mode_of(sync_server, dn) == "add"
        midnight = datetime.combine(date.today() + timedelta(days=1), datetime.min.time())
        shift[0] = midnight.astimezone(UTC) - datetime.now(UTC) + timedelta(seconds=1)
        wait_for("the order is added after midnight", lambda: mode_of(sync_server, dn) == "added")
    finally:
        lifecycle.signals.stop = "SIGTERM"
        thread.join(timeout=WAIT)
    assert codes == [0]
    assert works(tmp_path) == {"add 3800010": 1}


def test_sigterm_in_a_batch_finishes_the_entry_in_hand_and_exits_0(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    watcher = Watcher(setup, tmp_path)
    uids = [str(3830000 + number) for number in range(40)]
    try:
        watcher.wait_following()
        dns = [add_order(sync_server, uid) for uid in uids]
        wait_for("a first order is worked", lambda: works(tmp_path))
    finally:
        code = watcher.stop()
    assert code == 0, watcher.text()
    modes = [mode_of(sync_server, dn) for dn in dns]
    counted = works(tmp_path)
    # The entry in hand was finished: none is left in progress, each worked one is added,
    # the rest is untouched for the timer or the next start.
    assert "adding" not in modes, modes
    for uid, mode in zip(uids, modes, strict=True):
        assert counted[f"add {uid}"] == (1 if mode == "added" else 0), uid


def test_it_tells_systemd_ready_pets_the_watchdog_and_says_stopping(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    address = str(tmp_path / "notify.socket")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(WAIT)
    messages: list[str] = []
    watcher = Watcher(setup, tmp_path, NOTIFY_SOCKET=address, WATCHDOG_USEC="2000000")
    try:
        while not any("READY=1" in message for message in messages):
            messages.append(receiver.recv(4096).decode())
        while "WATCHDOG=1" not in messages:
            messages.append(receiver.recv(4096).decode())
    finally:
        _stopped(watcher)
        while "STOPPING=1" not in messages:
            messages.append(receiver.recv(4096).decode())
        receiver.close()
    assert messages[0].startswith("READY=1")


def test_a_burst_is_worked_in_a_few_batches_not_one_per_order(tmp_path, sync_server):
    setup = follower_config(tmp_path, sync_server)
    watcher = Watcher(setup, tmp_path)
    uids = [str(3840000 + number) for number in range(100)]
    try:
        watcher.wait_following()
        entries = [account_entry(uid, base_dn=sync_server.accounts_dn, uid_number=40000 + n,
                                 gid_number=40000 + n) for n, uid in enumerate(uids)]  # fmt: skip
        sync_server.add_entries(entries)  # the shop's import: one connection, back to back
        dns = [dn for dn, _ in entries]
        wait_for("the burst is added",
                 lambda: all(mode_of(sync_server, dn) == "added" for dn in dns))  # fmt: skip
    finally:
        _stopped(watcher)
    assert works(tmp_path) == {f"add {uid}": 1 for uid in uids}
    batches = watcher.text().count("batch finished:")
    assert 1 <= batches <= len(uids) // 4, batches
