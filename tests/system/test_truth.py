"""Issue 10: every operator mistake gets a non-zero, one-line, actionable answer.

Each test runs the real command against the session's real slapd and fails
without the fix it names: a wrong base DN, a bad filter, reset rules,
failure reasons kept, check's short LDAP budget, and the smaller surprises.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from support import modify_entry, read_entry, run, run_process, write_config

from sandbox import account_entry


def add(server, uid, **options):
    options.setdefault("home_directory", None)
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, **options)
    server.add_entries([(dn, attributes)])
    return dn


def day(offset: int = 0) -> str:
    return (date.today() + timedelta(days=offset)).strftime("%Y%m%d")


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- 10.1: a base DN that does not exist is an error, not "nothing to do" ---


def test_a_missing_base_dn_exits_78_for_scan_and_process(tmp_path, ldap_server):
    wrong = "ou=acounts," + ldap_server.accounts_dn.split(",", 1)[1]
    setup = write_config(tmp_path, ldap_server, base_dn=wrong)
    add(ldap_server, "4100001")
    for command in ("scan", "process"):
        result = run_process(setup, command)
        assert result.code == 78, (command, result.err)
        lines = error_lines(result.err)
        assert len(lines) == 1, result.err
        assert f"base DN {wrong!r} does not exist on {ldap_server.uri}" in lines[0]
        assert "[ldap] base_dn" in lines[0]
    status = json.loads(setup.status_file.read_text())
    assert status["exit_code"] == 78 and "does not exist" in status["error"]


def test_a_missing_base_dn_is_critical_for_check(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, base_dn="ou=nowhere,dc=com")
    result = run_process(setup, "check")
    assert result.code == 2, result.out
    assert result.out.startswith("PROVBACKUP CRITICAL - ")
    assert "base DN 'ou=nowhere,dc=com' does not exist" in result.out


def test_show_and_process_of_a_missing_dn_below_an_existing_base_say_not_found(
    tmp_path, ldap_server
):
    setup = write_config(tmp_path, ldap_server)
    missing = f"uid=4100002,{ldap_server.accounts_dn}"
    result = run(setup, "show", "--dn", missing)
    assert result.code == 1 and "no provisioned entry" in result.err


# --- 10.7: a bad [ldap] filter is a configuration error ---


def test_a_bad_filter_fails_config_validation_with_78(tmp_path, ldap_server):
    for bad in ("a", "(&(a=1)(!b))", "(uid=1)(uid=2)"):
        setup = write_config(tmp_path, ldap_server, filter=bad)
        for command in ("scan", "process"):
            result = run_process(setup, command)
            assert result.code == 78, (bad, command, result.err)
            lines = error_lines(result.err)
            assert len(lines) == 1, result.err
            assert f"{setup.config}: [ldap] filter: " in lines[0]
            assert "not a valid LDAP filter" in lines[0]


def test_a_good_filter_without_parentheses_still_narrows_the_search(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, filter="uid=4100003")
    add(ldap_server, "4100003")
    add(ldap_server, "4100004")
    rows = json.loads(run(setup, "scan", "--json").out)
    assert [row["uid"] for row in rows] == ["4100003"]


# --- 10.2: reset acts on failed or interrupted entries and keeps scheduled dates ---


def account_path(root, uid: str):
    padded = uid.zfill(6)
    return root / padded[-1] / padded[-3:] / padded[-6:-3] / uid


def test_reset_of_the_delete_scheduled_for_2030_12_31_never_deletes_now(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4100010")
    assert run(setup, "process").code == 0
    account = account_path(setup.root, "4100010")
    assert account.is_dir()
    # The shop schedules the delete for the end of the contract.
    modify_entry(ldap_server, dn, {
        "sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"],
        "sstProvisioningExecutionDate": ["20301231"],
    })  # fmt: skip

    refused = run(setup, "reset", "--uid", "4100010")
    assert refused.code == 2
    lines = error_lines(refused.err)
    assert len(lines) == 1 and "is scheduled" in lines[0] and "--any-status" in lines[0]
    assert read_entry(ldap_server, dn)["sstprovisioningexecutiondate"] == ["20301231"]

    forced = run(setup, "reset", "--uid", "4100010", "--any-status", "--force")
    assert forced.code == 0, forced.err
    assert re.search(r"status\s+scheduled\s+scheduled", forced.out), forced.out
    assert re.search(r"sstProvisioningExecutionDate\s+20301231\s+20301231", forced.out)
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["delete"]
    assert entry["sstprovisioningexecutiondate"] == ["20301231"]
    assert run(setup, "process").code == 0
    assert account.is_dir(), "the next run must not delete the account before its date"
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["delete"]

    now = run(setup, "reset", "--uid", "4100010", "--any-status", "--now")
    assert now.code == 0, now.err
    assert re.search(r"status\s+scheduled\s+due", now.out), now.out
    assert read_entry(ldap_server, dn)["sstprovisioningexecutiondate"] == ["0"]


def test_reset_of_an_interrupted_delete_keeps_its_future_date(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4100011", mode="deleting", date="20301231")
    result = run(setup, "reset", "--dn", dn)
    assert result.code == 0, result.err
    assert re.search(r"status\s+interrupted\s+scheduled", result.out), result.out
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["delete"]
    assert entry["sstprovisioningexecutiondate"] == ["20301231"]


def test_reset_of_a_done_or_pending_entry_needs_any_status(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    done = add(ldap_server, "4100012", mode="added", state="20260101T000000Z",
               extra={"sstProvisioningReturnValue": ["0"]})  # fmt: skip
    pending = add(ldap_server, "4100013", mode="add")
    for uid, dn, mode in (("4100012", done, "added"), ("4100013", pending, "add")):
        for arguments in ((), ("--mode", "modify"), ("--force",), ("--now",)):
            refused = run(setup, "reset", "--uid", uid, *arguments)
            assert refused.code == 2, (uid, arguments)
            assert len(error_lines(refused.err)) == 1
            assert "not failed or interrupted" in refused.err
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == [mode]
    again = run(setup, "reset", "--uid", "4100012", "--mode", "modify", "--any-status")
    assert again.code == 0, again.err
    assert re.search(r"status\s+done\s+due", again.out), again.out
    assert read_entry(ldap_server, done)["sstprovisioningmode"] == ["modify"]


def test_reset_of_a_failed_entry_needs_no_flag_and_keeps_an_overdue_date(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    overdue = day(-3)
    dn = add(ldap_server, "4100014", mode="adding", date=overdue,
             extra={"sstProvisioningReturnValue": ["40"]})  # fmt: skip
    result = run(setup, "reset", "--uid", "4100014")
    assert result.code == 0, result.err
    assert re.search(r"status\s+failed\s+overdue", result.out), result.out
    assert re.search(r"sstProvisioningReturnValue\s+40\s+-\s*$", result.out, re.M), result.out
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["add"]
    assert entry["sstprovisioningexecutiondate"] == [overdue]
    assert "sstprovisioningreturnvalue" not in entry


# --- 10.8: check answers fast with LDAP down; deterministic failures are not retried ---


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_status(setup) -> None:
    """A status file of a run that just ended well, so check speaks only of LDAP."""
    from datetime import UTC, datetime

    moment = datetime.now(UTC).isoformat()
    setup.status_file.parent.mkdir(parents=True, exist_ok=True)
    setup.status_file.write_text(json.dumps(
        {"started": moment, "finished": moment, "exit_code": 0, "error": None}
    ))  # fmt: skip


def attempt_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "LDAP attempt" in line]


def test_check_makes_one_attempt_per_uri_whatever_the_configured_attempts(tmp_path):
    down = f"ldap://127.0.0.1:{free_port()}"
    setup = write_config(tmp_path, None, uri=down, base_dn="dc=x", start_tls="no",
                         attempts="3", retry_delay="30", timeout="10")  # fmt: skip
    fresh_status(setup)
    check = run_process(setup, "check")
    assert check.code == 3, check.out + check.err
    assert check.out.startswith("PROVBACKUP UNKNOWN - cannot read the directory: ")
    assert "after 1 attempt(s)" in check.out, check.out
    assert len(attempt_lines(check.err)) == 1, check.err
    # process and scan keep the configured rounds (here without their 30 s pauses).
    setup = write_config(tmp_path, None, uri=down, base_dn="dc=x", start_tls="no",
                         attempts="3", retry_delay="0")  # fmt: skip
    scan = run_process(setup, "scan")
    assert scan.code == 69 and len(attempt_lines(scan.err)) == 3, scan.err


def test_check_gives_up_on_servers_that_never_answer(tmp_path):
    import socket

    # Three listening sockets that never accept: TCP connects, LDAP never answers.
    silent = [socket.socket() for _ in range(3)]
    try:
        uris = []
        for sock in silent:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            uris.append(f"ldap://127.0.0.1:{sock.getsockname()[1]}")
        setup = write_config(tmp_path, None, uri=" ".join(uris), base_dn="dc=x",
                             start_tls="no", attempts="5", retry_delay="5",
                             timeout="30")  # fmt: skip
        fresh_status(setup)
        check = run_process(setup, "check", timeout=60)
    finally:
        for sock in silent:
            sock.close()
    assert check.code == 3, check.out + check.err
    assert check.out.startswith("PROVBACKUP UNKNOWN - ")
    assert "no LDAP server answered within 4 s" in check.out, check.out


def test_a_server_without_starttls_is_not_retried(tmp_path):
    from sandbox import Slapd

    with Slapd(tmp_path / "plain", tls=False) as plain:
        plain.add_base()
        setup = write_config(tmp_path, plain, start_tls="yes", attempts="3", retry_delay="0")
        for command in ("scan", "process"):
            result = run_process(setup, command)
            assert result.code == 69, result.err
            assert attempt_lines(result.err) == [], "a deterministic failure is no 'attempt'"
            assert result.err.count("not retried") == 1, result.err
            final = error_lines(result.err)[-1]
            assert "does not offer StartTLS" in final and "start_tls = no" in final
        fresh_status(setup)
        check = run_process(setup, "check")
        assert check.code == 3 and "does not offer StartTLS" in check.out, check.out
        assert attempt_lines(check.err) == [] and check.err.count("not retried") == 1


def test_a_wrong_password_is_tried_once_and_names_the_password_file(tmp_path, ldap_server):
    secret = tmp_path / "ldap.secret"
    secret.write_text("not-the-password\n")
    secret.chmod(0o600)
    setup = write_config(tmp_path, ldap_server, bind_password_file=str(secret),
                         attempts="3", retry_delay="0")  # fmt: skip
    text = setup.config.read_text()
    setup.config.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("bind_password ="))
    )
    result = run_process(setup, "scan")
    assert result.code == 69, result.err
    assert attempt_lines(result.err) == []
    lines = error_lines(result.err)
    assert len(lines) == 1, result.err
    assert "invalid credentials" in lines[0] and str(secret) in lines[0]
    assert "not-the-password" not in result.err


# --- 10.5: the reason of a failure stays readable until the entry changes ---


def test_a_failure_reason_outlives_the_next_run_and_goes_with_the_failure(tmp_path, ldap_server):
    import os
    import stat

    failing = tmp_path / "failing-quota"
    failing.write_text("#!/bin/sh\necho 'quota: no such filesystem /srv' >&2\nexit 3\n")
    failing.chmod(0o755)
    setup = write_config(tmp_path, ldap_server, extra=f"[quota]\ncommand = {failing} {{uid}}\n")
    dn = add(ldap_server, "4100020")
    first = run(setup, "process")
    assert first.code == 1 and "no such filesystem" in first.out, first.out
    assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["40"]
    # The next, idle run replaces the status file: the reason must not go with it.
    assert run(setup, "process").code == 0
    assert "no such filesystem" not in setup.status_file.read_text()

    rows = json.loads(run(setup, "scan", "--json").out)
    assert [(row["uid"], row["status"], row["return_value"]) for row in rows] == [
        ("4100020", "failed", 40)
    ]
    assert "no such filesystem /srv" in rows[0]["problem"]
    assert "no such filesystem /srv" in run(setup, "scan").out
    shown = json.loads(run(setup, "show", "4100020", "--json").out)
    assert "no such filesystem /srv" in shown[0]["provisioning"]["problem"]
    kept = setup.status_file.parent / "reasons.json"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600

    # Once the entry changes (here: reset), the old reason is no longer shown.
    assert run(setup, "reset", "--uid", "4100020").code == 0
    rows = json.loads(run(setup, "scan", "--json").out)
    assert [(row["status"], row["problem"]) for row in rows] == [("due", None)]
    shown = json.loads(run(setup, "show", "4100020", "--json").out)
    assert "problem" not in shown[0]["provisioning"]
    # A run that finishes the entry drops its record.
    setup = write_config(tmp_path, ldap_server)
    assert run(setup, "process").code == 0
    assert "4100020" not in kept.read_text()


# --- 10.9: the smaller surprises ---


def test_the_sample_config_shows_the_defaults_it_claims_to(tmp_path):
    import configparser
    import dataclasses
    from pathlib import Path

    from provbackup.config import declared_keys

    sample = Path(__file__).resolve().parents[2] / "etc" / "provbackup.conf"
    assert "Every key set below shows its default" in sample.read_text()
    keys = {(key.section, key.key): key for key in declared_keys()}
    section, comment, checked, wrong = "", [], 0, []
    for line in sample.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section, comment = stripped[1:-1], []
        elif stripped.startswith("#"):
            comment.append(stripped)
        elif "=" in stripped:
            name, value = (part.strip() for part in stripped.split("=", 1))
            key = keys[(section, name)]
            said = " ".join(comment).lower()
            comment = []
            if key.setting.required or "site-specific" in said:
                assert key.setting.required or "default:" in said, (section, name)
                continue
            if key.default is dataclasses.MISSING:  # a password file: always site-specific
                wrong.append(f"[{section}] {name}: set, not marked site-specific")
                continue
            checked += 1
            if key.setting.convert(value) != key.default:
                wrong.append(f"[{section}] {name} = {value}: default is {key.default!r}")
        else:
            comment = []
    assert wrong == []
    assert checked >= 25
    configparser.ConfigParser(interpolation=None).read(sample)  # still a valid INI file


def test_show_takes_uid_as_an_option_too(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4100030")
    by_option = run(setup, "show", "--uid", "4100030", "--json")
    assert by_option.code == 0, by_option.err
    assert json.loads(by_option.out)[0]["provisioning"]["uid"] == "4100030"
    assert by_option.out == run(setup, "show", "4100030", "--json").out
    both = run(setup, "show", "4100030", "--uid", "4100031")
    assert both.code == 2


def test_process_of_an_unknown_uid_is_an_error_and_of_a_done_one_says_why(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4100032", mode="added", state="20260101T000000Z",
        extra={"sstProvisioningReturnValue": ["0"]})  # fmt: skip
    unknown = run_process(setup, "process", "--uid", "4100099")
    assert unknown.code == 1, unknown.err
    lines = error_lines(unknown.err)
    assert len(lines) == 1 and "no provisioned entry with uid '4100099'" in lines[0]
    done = run_process(setup, "process", "--uid", "4100032")
    assert done.code == 0, done.err
    assert "uid=4100032" in done.err and "done ('added'" not in done.err
    assert "done (sstProvisioningMode 'added'), nothing to do" in done.err


def test_quiet_and_verbose_work_after_the_command_name(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4100033")
    verbose = run_process(setup, "scan", "-v")
    assert verbose.code == 0, verbose.err
    assert "equivalent: ldapsearch" in verbose.err
    quiet = run_process(setup, "process", "-q")
    assert quiet.code == 0, quiet.err
    assert quiet.err == "" and "1 done" in quiet.out
    assert run_process(setup, "check", "-qq").code == 0


def test_a_write_refused_for_insufficient_access_names_the_attributes(tmp_path, ldap_server):
    # The suite's slapd runs the example ACL in front of Debian's default rules: a DN
    # other than provbackup's reads the accounts (Debian: "by * read") but writes nothing.
    reader = f"cn=truth-reader-{tmp_path.name[-12:]},{ldap_server.suffix}"
    ldap_server.add_entries([(reader, {
        "objectClass": ["organizationalRole", "simpleSecurityObject"],
        "userPassword": ["reader-secret"],
    })])  # fmt: skip
    try:
        setup = write_config(tmp_path, ldap_server, bind_dn=reader, bind_password="reader-secret")
        dn = add(ldap_server, "4100034")
        result = run(setup, "process")
        assert result.code == 1, result.out + result.err
        line = next(line for line in result.out.splitlines() if "4100034" in line)
        assert "insufficientAccessRights" in line, line
        assert (f"{reader!r} needs write access to sstProvisioningMode, sstProvisioningState, "
                "sstProvisioningExecutionDate (or sstProvisioningDate), "
                "sstProvisioningReturnValue, host below") in line  # fmt: skip
        assert "slapd-acl.conf" in line
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"]
        anonymous = write_config(tmp_path, ldap_server, bind_dn="", bind_password="")
        result = run(anonymous, "process")
        line = next(line for line in result.out.splitlines() if "4100034" in line)
        assert "an anonymous bind needs write access to sstProvisioningMode" in line, line
    finally:
        connection = ldap_server.connection()
        try:
            connection.delete(reader)
        finally:
            connection.unbind()


def test_show_of_a_deleted_account_says_where_it_is_quarantined(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, extra="[delete]\nquarantine_days = 7\n")
    dn = add(ldap_server, "4100035")
    assert run(setup, "process").code == 0
    modify_entry(ldap_server, dn, {"sstProvisioningMode": ["delete"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0
    (moved,) = (setup.root / ".deleted").iterdir()
    shown = run(setup, "show", "4100035", "--json")
    assert shown.code == 0, shown.err
    server = json.loads(shown.out)[0]["server"]
    assert server["exists"] is False
    assert len(server["quarantined"]) == 1
    assert server["quarantined"][0].startswith(f"{moved} (deleted ")
    assert "purged from" in server["quarantined"][0]
    assert str(moved) in run(setup, "show", "4100035").out


def test_a_quota_command_that_is_not_installed_stops_the_run_before_any_claim(
    tmp_path, ldap_server
):
    dn = add(ldap_server, "4100036")
    for program in ("/nonexistent/sbin/setquota", "provbackup-no-such-setquota"):
        setup = write_config(
            tmp_path, ldap_server, extra=f"[quota]\ncommand = {program} -g {{gidnumber}}\n"
        )
        for arguments in (("process",), ("process", "--dry-run")):
            result = run_process(setup, *arguments)
            assert result.code == 78, (program, result.err)
            lines = error_lines(result.err)
            assert len(lines) == 1, result.err
            assert f"[quota] command: {program!r} is not an installed program" in lines[0]
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"]
        assert not any(setup.root.iterdir())


def test_a_server_that_does_not_speak_ldap_is_a_connection_failure_not_a_bug(tmp_path):
    import socket
    import threading

    # A real TCP service that answers every connection with an HTTP error, as a
    # web server on a mistyped port would.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]

    def answer() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                client.recv(4096)
                client.sendall(
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n"
                    b"date: Tue, 01 Dec 2026 09:46:58 GMT\r\n\r\n"
                )

    threading.Thread(target=answer, daemon=True).start()
    try:
        setup = write_config(tmp_path, None, uri=f"ldap://127.0.0.1:{port}", base_dn="dc=x",
                             start_tls="no", attempts="2", retry_delay="0")  # fmt: skip
        result = run_process(setup, "scan")
        fresh_status(setup)
        check = run_process(setup, "check")
    finally:
        listener.close()
    assert result.code == 69, result.err
    assert "internal error" not in result.err
    assert "does not answer like an LDAP server" in error_lines(result.err)[-1]
    assert check.code == 3 and "does not answer like an LDAP server" in check.out, check.out
