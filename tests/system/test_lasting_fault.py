"""A lasting fault (LDAP down) is reported when it starts, when it changes and at a
bounded rate, not on every run; the status file and ``check`` tell the truth every run.

Each run is a real ``python -m provbackup`` process against the session's
slapd, which the tests really stop (and always start again).
"""

from __future__ import annotations

import json
import socket
import time

from support import run_process, write_config

from provbackup.errors import EXIT_FAULT_REPEATED, EXIT_LDAP_UNAVAILABLE
from provbackup.faults import FAULT_FILE_NAME

CRITICAL = 2


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(setup) -> dict:
    return json.loads(setup.status_file.read_text())


def test_ldap_down_fails_once_then_runs_exit_79_until_it_is_back(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, "[run]\nfault_report_interval = 3600\n")
    record = setup.status_file.parent / FAULT_FILE_NAME
    assert run_process(setup, "-q", "process").code == 0
    try:
        ldap_server.stop()

        first = run_process(setup, "-q", "process")
        second = run_process(setup, "-q", "process")
        third = run_process(setup, "-q", "process")
        check = run_process(setup, "-qq", "check")

        # The start of the fault is reported with its own exit code ...
        assert first.code == EXIT_LDAP_UNAVAILABLE
        assert "provbackup: error: LDAP unavailable" in first.err
        # ... its repeats are not failures, but still say what happens.
        assert second.code == third.code == EXIT_FAULT_REPEATED
        assert "provbackup: error" not in second.err
        assert "still failing, the same fault as the last 2 runs" in third.err
        assert "LDAP unavailable" in third.err
        # The status file records the real fault on every run, and check sees it.
        assert status_of(setup)["exit_code"] == EXIT_LDAP_UNAVAILABLE
        assert "LDAP unavailable" in status_of(setup)["error"]
        assert check.code == CRITICAL
        assert check.out.startswith("PROVBACKUP CRITICAL - last run exited 69")
        assert json.loads(record.read_text())["runs"] == 3
    finally:
        ldap_server.start()

    recovered = run_process(setup, "-q", "process")

    assert recovered.code == 0
    assert "the fault is over after 3 run(s)" in recovered.err
    assert not record.exists()
    assert status_of(setup)["exit_code"] == 0
    assert run_process(setup, "-qq", "check").code == 0


def test_a_fault_that_changes_is_reported_again(tmp_path, ldap_server):
    first_port, second_port = closed_port(), closed_port()
    options = "[run]\nfault_report_interval = 3600\n"
    one = write_config(tmp_path, ldap_server, options, uri=f"ldap://127.0.0.1:{first_port}")

    assert run_process(one, "-q", "process").code == EXIT_LDAP_UNAVAILABLE
    assert run_process(one, "-q", "process").code == EXIT_FAULT_REPEATED

    # The same status directory, another unreachable server: another message.
    other = write_config(tmp_path, ldap_server, options, uri=f"ldap://127.0.0.1:{second_port}")
    changed = run_process(other, "-q", "process")

    assert changed.code == EXIT_LDAP_UNAVAILABLE
    assert f"127.0.0.1:{second_port}" in changed.err


def test_a_lasting_fault_is_reported_again_once_the_interval_has_passed(tmp_path, ldap_server):
    port = closed_port()
    setup = write_config(
        tmp_path, ldap_server, "[run]\nfault_report_interval = 1\n", uri=f"ldap://127.0.0.1:{port}"
    )

    assert run_process(setup, "-q", "process").code == EXIT_LDAP_UNAVAILABLE
    time.sleep(1.5)  # more than the interval, whatever the machine's load
    again = run_process(setup, "-q", "process")

    assert again.code == EXIT_LDAP_UNAVAILABLE
    assert "provbackup: error: LDAP unavailable" in again.err


def test_interval_0_reports_every_run(tmp_path, ldap_server):
    port = closed_port()
    setup = write_config(
        tmp_path, ldap_server, "[run]\nfault_report_interval = 0\n", uri=f"ldap://127.0.0.1:{port}"
    )

    codes = [run_process(setup, "-q", "process").code for _ in range(3)]

    assert codes == [EXIT_LDAP_UNAVAILABLE] * 3


def test_a_dry_run_neither_records_nor_hides_a_fault(tmp_path, ldap_server):
    port = closed_port()
    setup = write_config(tmp_path, ldap_server, uri=f"ldap://127.0.0.1:{port}")

    codes = [run_process(setup, "-q", "process", "--dry-run").code for _ in range(2)]

    assert codes == [EXIT_LDAP_UNAVAILABLE] * 2
    assert not (setup.status_file.parent / FAULT_FILE_NAME).exists()
