"""Operating it: syslog, JSON logs, progress on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys

from support import REPOSITORY, run, run_process, write_config

from sandbox import account_entry


def test_syslog_gets_tagged_lines_with_the_configured_facility(tmp_path, ldap_server):
    address = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(10)
    try:
        setup = write_config(
            tmp_path,
            ldap_server,
            f"[log]\nsyslog = yes\nsyslog_socket = {address}\nfacility = local3\n",
        )
        dn, attributes = account_entry("4100001", base_dn=ldap_server.accounts_dn)
        ldap_server.add_entries([(dn, attributes)])
        result = run_process(setup, "-q", "process")
        assert result.code == 0, result.err
        assert "INFO" not in result.err, "-q keeps info off stderr, not off syslog"
        messages = []
        receiver.settimeout(2)
        try:
            while True:
                messages.append(receiver.recv(65536).decode())
        except TimeoutError:
            pass
    finally:
        receiver.close()
    local3_info = 19 * 8 + 6
    tagged = [m for m in messages if m.startswith(f"<{local3_info}>provbackup[")]
    assert any(f"{dn}: add → adding" in m for m in tagged), messages
    assert any("run finished: 1 done, 0 failed, 0 skipped" in m for m in tagged), messages


def test_missing_syslog_socket_is_a_warning_not_a_failure(tmp_path, ldap_server):
    setup = write_config(
        tmp_path, ldap_server, f"[log]\nsyslog = yes\nsyslog_socket = {tmp_path}/none.sock\n"
    )
    result = run_process(setup, "scan")
    assert result.code == 0
    assert "none.sock does not exist" in result.err


def test_log_json_writes_one_object_per_line(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn, attributes = account_entry("4100002", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    result = run(setup, "--log-json", "process")
    assert result.code == 0
    records = [json.loads(line) for line in result.err.splitlines() if line.strip()]
    assert any(record["message"] == f"{dn}: add → adding" for record in records)
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)


def run_with_terminal_stderr(setup, *arguments: str) -> tuple[int, str, str]:
    """Run provbackup with stderr on a pseudo-terminal; returns (code, stdout, terminal)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), *arguments],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        text=True,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = process.stdout.read()
    process.wait(timeout=120)
    os.close(controller)
    return process.returncode, out, seen.decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_under_cron(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    entries = [account_entry(f"41001{index:02d}", base_dn=ldap_server.accounts_dn)
               for index in range(3)]  # fmt: skip
    ldap_server.add_entries(entries)
    code, out, terminal = run_with_terminal_stderr(setup, "process")
    assert code == 0
    assert re.search(r"\r\x1b\[K3/3", terminal), repr(terminal)
    assert "\r" not in out, "stdout (the per-entry lines) carries no progress"
    for dn, _ in entries:
        from support import modify_entry

        modify_entry(ldap_server, dn, {"sstProvisioningMode": ["modify"],
                                       "sstProvisioningState": ["0"]})  # fmt: skip
    piped = run_process(setup, "process")
    assert piped.code == 0
    assert "\r" not in piped.err and "3/3" not in piped.err
    code, out, terminal = run_with_terminal_stderr(setup, "-q", "scan")
    assert "\x1b[K" not in terminal, "-q silences progress"
