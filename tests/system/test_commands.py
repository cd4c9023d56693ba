"""Hooks and quota commands end at their timeout, whatever their children do (issue 11, 3).

Today's runner waited for the output pipes' EOF: a hook that left a
``setsid`` grandchild holding stdout kept the run, and the lock, forever.
Each test here runs real processes; the ``process`` runs are subprocesses
with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import read_entry, run_process, write_config

from provbackup.errors import WorkError
from provbackup.work.commands import MAX_OUTPUT, run_command
from sandbox import account_entry


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def grandchild_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the grandchild never started"
        time.sleep(0.05)
    return int(pid_file.read_text())


def leaves_a_grandchild(tmp_path: Path, name: str, *, then: str = "exit 0") -> Path:
    """A command that starts a setsid grandchild holding its stdout, then ``then``."""
    pid_file = tmp_path / f"{name}.grandchild"
    return script(
        tmp_path / name,
        "#!/bin/sh\n"
        f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' &\n"
        "echo started a helper\n"
        f"{then}\n",
    )


def test_a_hook_leaving_a_setsid_grandchild_on_stdout_fails_at_the_timeout(tmp_path, ldap_server):
    hook = leaves_a_grandchild(tmp_path, "post-add-hook")
    setup = write_config(tmp_path, ldap_server, extra=f"[hooks]\npost_add = {hook}\ntimeout = 2\n")
    dn, attributes = account_entry("4200001", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])

    result = run_process(setup, "process", timeout=90)

    assert result.code == 1, result.err
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningreturnvalue"] == ["50"]
    line = next(line for line in result.out.splitlines() if "4200001" in line)
    assert "exited with 0 but left processes running" in line
    assert "sleep" in line and "2 s timeout" in line
    assert gone(grandchild_pid(tmp_path / "post-add-hook.grandchild"))


def test_a_hook_still_running_at_the_timeout_is_killed_with_its_setsid_grandchild(tmp_path):
    hook = leaves_a_grandchild(tmp_path, "slow-hook", then="sleep 300")
    started = time.monotonic()
    with pytest.raises(WorkError, match="timed out after 1 s and was killed") as caught:
        run_command([str(hook)], timeout=1, what="hook pre_add", return_value=50)
    assert caught.value.return_value == 50
    assert "sleep" in str(caught.value), "names what it started"
    assert time.monotonic() - started < 60, "returned instead of waiting for the grandchild"
    assert gone(grandchild_pid(tmp_path / "slow-hook.grandchild"))


def test_a_quota_command_leaving_a_grandchild_fails_the_entry_with_40(tmp_path, ldap_server):
    quota = leaves_a_grandchild(tmp_path, "quota-tool")
    setup = write_config(
        tmp_path, ldap_server, extra=f"[quota]\ncommand = {quota} {{uid}}\ntimeout = 2\n"
    )
    dn, attributes = account_entry("4200002", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])

    result = run_process(setup, "process", timeout=90)

    assert result.code == 1, result.err
    assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["40"]
    assert gone(grandchild_pid(tmp_path / "quota-tool.grandchild"))


def test_a_command_that_cleans_up_after_itself_succeeds_at_once(tmp_path):
    tool = script(tmp_path / "tidy", "#!/bin/sh\n(sleep 0.2) &\nwait\necho done\n")
    result = run_command([str(tool)], timeout=30, what="quota command", return_value=40)
    assert (result.returncode, result.stdout) == (0, "done\n")


def test_output_is_kept_bounded(tmp_path):
    noisy = script(tmp_path / "noisy", "#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' x\n")
    result = run_command([str(noisy)], timeout=60, what="hook post_add", return_value=50)
    assert result.returncode == 0
    assert len(result.stdout) == MAX_OUTPUT


def test_processes_the_command_did_not_start_are_left_alone(tmp_path):
    """A child of ours from before (the suite's own slapd, say) is not the command's."""
    ours = subprocess.Popen(["sleep", "60"], env={k: v for k, v in os.environ.items()})
    try:
        hook = leaves_a_grandchild(tmp_path, "hook")
        with pytest.raises(WorkError, match="left processes running"):
            run_command([str(hook)], timeout=1, what="hook post_add", return_value=50)
        assert ours.poll() is None, "our own child was not killed"
        assert gone(grandchild_pid(tmp_path / "hook.grandchild"))
    finally:
        ours.kill()
        ours.wait()


def test_a_command_another_thread_is_starting_is_never_taken_for_an_orphan(monkeypatch):
    """A race CI hit under snapshot ``--jobs 2``: a child forked but not yet exec'd.

    Its environment is still ours, with no token, so it looked like the
    reparented orphan of the only other command running, whose cleanup
    SIGKILLed it ("rsnapshot daily was killed by signal 9: (no output)").
    Here the second command forks, and waits 1 s before its exec, just as
    the first looks for its orphans; forking and looking are serialized, so
    the looking never sees it half-started.
    """
    from provbackup.work import descendants

    tracker = descendants.Tracker()
    listing = descendants.children
    forked_read, forked_write = os.pipe()
    second: list[subprocess.Popen[bytes]] = []

    def start_second() -> None:
        def before_exec() -> None:
            os.write(forked_write, b"x")
            time.sleep(1)

        with tracker.command("second") as start:
            process = start(lambda: subprocess.Popen(["true"], preexec_fn=before_exec))
            second.append(process)
            process.wait()

    thread = threading.Thread(target=start_second)

    def children_while_another_starts(pid: int) -> list[int]:
        if pid == os.getpid() and thread.ident is None:  # the first listing only
            thread.start()  # the second command starts while the first is looking
            select.select([forked_read], [], [], 2)
        return listing(pid)

    try:
        with tracker.command("first") as start:
            start(lambda: subprocess.Popen(["true"])).wait()
            monkeypatch.setattr(descendants, "children", children_while_another_starts)
            orphans = tracker.orphans("first")
            monkeypatch.setattr(descendants, "children", listing)
        thread.join(10)
    finally:
        os.close(forked_read)
        os.close(forked_write)
    assert thread.ident is not None and not thread.is_alive()
    assert orphans == []
    assert second and second[0].returncode == 0
