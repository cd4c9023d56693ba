"""The LDAP bind password stays secret: not in logs, arguments, environments, status files.

provbackup runs as root and starts other programs (hooks, the quota
command, rsnapshot) that a site may log or audit. Each test runs the real
command against the real slapd with the bind password in a 0600 file and
looks for the password everywhere a run leaves text: stdout and stderr at
every verbosity (plain and ``--log-json``), tracebacks (``-v``), the status
file, and the command line and environment of the run and of every process
it starts, read from /proc while they run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPOSITORY, Setup, run, run_process, write_config

from sandbox import Slapd, account_entry


def with_password_file(tmp_path: Path, server: Slapd, extra: str = "", **ldap: str) -> Setup:
    """A configuration that reads the bind password from a 0600 file."""
    secret = tmp_path / "bind.secret"
    secret.write_text(server.bind_password + "\n")
    secret.chmod(0o600)
    setup = write_config(tmp_path, server, extra, **ldap)
    text = setup.config.read_text().replace(
        f"bind_password = {server.bind_password}", f"bind_password_file = {secret}"
    )
    assert "bind_password_file" in text
    setup.config.write_text(text)
    return setup


def recorder(path: Path, log: Path, then: str = "") -> Path:
    """A script that appends its argv and environment (NUL-separated) to ``log``."""
    path.write_text(
        f'#!/bin/sh\n{{ printf "%s\\0" "$0" "$@"; cat /proc/$$/environ; echo; }} >> {log}\n' + then
    )
    path.chmod(0o755)
    return path


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children.get(current, [])
    return found


def test_the_password_is_in_no_log_at_any_level_nor_in_the_status_file(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    password = ldap_server.bind_password
    setup = with_password_file(tmp_path, ldap_server, "[rsnapshot]\nconfigtest = yes\n")
    entries = [
        account_entry("5200001", base_dn=ldap_server.accounts_dn),
        account_entry("5200002", base_dn=ldap_server.accounts_dn, uid_number=0),
    ]
    ldap_server.add_entries(entries)
    texts = []
    for options in ([], ["-v"], ["-vv"], ["-q"], ["--log-json"], ["-v", "--log-json"]):
        # In this process (click's runner) for speed; the real command line below.
        for command in (["process"], ["scan"], ["show", "5200001"], ["check"]):
            result = run(setup, *options, *command)
            texts.append(result.out + result.err)
        # Next round has work again: the failed entry and the done one are requested anew.
        for dn, _ in entries:
            texts.append(
                run(setup, *options, "reset", "--dn", dn, "--mode", "add", "--any-status").out
            )
    result = run_process(setup, "-v", "process")
    assert result.code == 1 and "5200002" in result.out
    texts += [result.out + result.err, setup.status_file.read_text()]
    # Tracebacks: -v prints one for an error; here LDAP cannot be reached.
    (tmp_path / "closed").mkdir()
    # fault_report_interval 0: the second run reports (and traces) the fault again, not 79.
    closed = with_password_file(
        tmp_path / "closed", ldap_server, "[run]\nfault_report_interval = 0\n",
        uri="ldap://127.0.0.1:9",
    )  # fmt: skip
    for options in (["-v"], ["-v", "--log-json"]):
        result = run_process(closed, *options, "process")
        assert result.code == 69
        assert "Traceback" in result.err, "the traceback is there, and shows no password"
        texts.append(result.out + result.err)
    # The debug lines were there to leak into: each search as an ldapsearch line.
    assert any("equivalent: ldapsearch" in text and " -W " in text for text in texts)
    for text in texts:
        assert password not in text


def test_no_process_of_a_run_shows_the_password_in_its_arguments_or_environment(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    password = ldap_server.bind_password
    seen = tmp_path / "seen"
    release = tmp_path / "release"
    wait = f"while [ ! -e {release} ]; do sleep 0.01; done\n"
    hook = recorder(tmp_path / "pre-add", seen, then=wait)
    quota = recorder(tmp_path / "quota", seen)
    rsnapshot = recorder(tmp_path / "rsnapshot", seen, then='exec /usr/bin/rsnapshot "$@"\n')
    setup = with_password_file(
        tmp_path,
        ldap_server,
        f"[hooks]\npre_add = {hook}\npost_add = {hook}\n"
        f"[quota]\ncommand = {quota} {{uid}} {{quota_kib}}\n"
        f"[rsnapshot]\ncommand = {rsnapshot}\nconfigtest = yes\n",
    )
    ldap_server.add_entries([account_entry("5200101", base_dn=ldap_server.accounts_dn)])
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    running = subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), "-v", "process"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # While the pre_add hook waits, read every process of the run from /proc.
        while not (seen.exists() and seen.read_bytes().count(b"\n") >= 1):
            assert running.poll() is None, running.communicate()
            time.sleep(0.01)
        pids = descendants(running.pid)
        assert len(pids) >= 2, "the run and its hook"
        read = set()
        for pid in pids:
            for name in ("cmdline", "environ"):
                try:
                    content = Path(f"/proc/{pid}/{name}").read_bytes()
                except (ProcessLookupError, FileNotFoundError):
                    continue  # a short-lived child (the hook's sleep) already ended
                read.add(pid)
                assert password.encode() not in content, (pid, name)
        assert running.pid in read, "the run itself was read while it waited"
    finally:
        release.touch()
    out, err = running.communicate(timeout=60)
    assert running.returncode == 0, err
    assert password.encode() not in out + err
    calls = seen.read_bytes()
    assert calls.count(b"\n") >= 4, "hooks, quota and rsnapshot configtest all recorded"
    assert b"configtest" in calls and b"PROVBACKUP_UID=5200101" in calls
    assert password.encode() not in calls


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620])
def test_a_password_file_group_or_others_can_read_or_write_is_refused_before_connecting(
    tmp_path: Path, ldap_server: Slapd, mode: int
) -> None:
    setup = with_password_file(tmp_path, ldap_server, uri="ldap://127.0.0.1:9")
    secret = tmp_path / "bind.secret"
    secret.chmod(mode)
    # Through a symlink it is the file's own mode that counts.
    link = tmp_path / "link.secret"
    link.symlink_to(secret)
    for path in (secret, link):
        setup.config.write_text(setup.config.read_text().replace(str(secret), str(path)))
        result = run_process(setup, "process")
        # 78 (configuration), not 69: refused before any attempt to reach LDAP.
        assert result.code == 78, result.err
        assert "[ldap] bind_password_file" in result.err
        assert f"mode {mode:04o}" in result.err and "chmod 600" in result.err
        assert ldap_server.bind_password not in result.err
        setup.config.write_text(setup.config.read_text().replace(str(path), str(secret)))


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_password_file_only_root_can_read_is_used(
    tmp_path: Path, ldap_server: Slapd, mode: int
) -> None:
    setup = with_password_file(tmp_path, ldap_server)
    (tmp_path / "bind.secret").chmod(mode)
    result = run_process(setup, "scan")
    assert result.code == 0, result.err
    assert json.loads(run_process(setup, "scan", "--json").out) == []
