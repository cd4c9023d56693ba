"""The gate against a real slapd: one verdict per entry, the same in a dry run and a real
run (issue 10.6), values that mean something else on the server refused (11.4, 11.6),
and a run that dies of an unexpected error saying so in the status file (10.3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import (
    REPOSITORY,
    account_dir,
    modify_entry,
    read_entry,
    run,
    run_process,
    write_config,
)

from sandbox import account_entry


def add(server, uid, **options):
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, **options)
    server.add_entries([(dn, attributes)])
    return dn


def test_a_delete_with_an_unusable_quota_gets_the_same_answer_in_dry_run_and_real_run(
    tmp_path, ldap_server
):
    """A delete does not read sstQuota (it sets 0): an unusable one must not block it, in
    either run (the dry run used to say 'would fail' where the real run deleted)."""
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4200001")
    assert run(setup, "process").code == 0
    assert account_dir(setup.root, "4200001").is_dir()
    # slapd refuses 'lots' for an INTEGER attribute; -1 it takes, and no add could use it.
    modify_entry(
        ldap_server,
        dn,
        {"sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"], "sstQuota": ["-1"]},
    )

    dry = run(setup, "process", "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert dry.out.startswith("would    delete  4200001") and "would fail" not in dry.out
    assert "dry run: 1 entries would be processed" in dry.out

    real = run(setup, "process")
    assert real.code == 0, real.out + real.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not account_dir(setup.root, "4200001").exists()


def test_a_missing_backup_root_is_said_by_dry_run_scan_and_check(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4200002")
    setup.root.rmdir()
    missing = f"backup root {setup.root} does not exist (not mounted?)"

    dry = run(setup, "process", "--dry-run")
    assert dry.code == 78
    assert missing in dry.err and "nothing would be done" in dry.err
    assert "outside the backup root" not in dry.out + dry.err

    scan = run(setup, "scan")
    assert scan.code == 78
    assert "4200002" in scan.out  # the entries are still listed
    assert missing in scan.err

    real = run(setup, "process")
    assert real.code == 78 and "no entry was claimed" in real.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"]

    check = run(setup, "check")
    assert check.code == 2
    assert missing in check.out


def test_huge_integers_are_a_clean_invalid_entry_in_dry_run_and_real_run(tmp_path, ldap_server):
    """5,000 digits (slapd accepts them) are refused by their length: 10, never 70 or 99."""
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4200003", quota=None, extra={"sstQuota": ["9" * 5000]})
    dry = run(setup, "process", "--dry-run")
    assert dry.code == 1, dry.err
    assert "would fail: sstQuota: '99999999999999999999... (5000 characters)'" in dry.out
    real = run(setup, "process")
    assert real.code == 1, real.err
    assert "(5000 characters)': larger than the maximum" in real.out
    assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["10"]


def _system_account_ids() -> tuple[int, int]:
    """A uid of the local /etc/passwd file and a gid of /etc/group (not 0 nor 65534)."""
    uid = next(
        int(fields[2])
        for fields in (line.split(":") for line in Path("/etc/passwd").read_text().splitlines())
        if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) not in (0, 65534)
    )
    gid = next(
        int(fields[2])
        for fields in (line.split(":") for line in Path("/etc/group").read_text().splitlines())
        if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) not in (0, 65534)
    )
    return uid, gid


def test_ids_of_system_accounts_and_quota_0_are_refused(tmp_path, ldap_server):
    # min_uid 1 so that only the system-account rule can refuse them.
    setup = write_config(tmp_path, ldap_server, "[backup]\nmin_uid = 1\nmax_uid = 4300000\n")
    system_uid, system_gid = _system_account_ids()
    as_system_user = add(ldap_server, "4200004", uid_number=system_uid, gid_number=4200004)
    as_system_group = add(ldap_server, "4200005", uid_number=4200005, gid_number=system_gid)
    unlimited = add(ldap_server, "4200006", quota=0)
    too_high = add(ldap_server, "4300001")
    good = add(ldap_server, "4200007")

    result = run(setup, "process")

    assert result.code == 1
    lines = {dn: line for dn in (as_system_user, as_system_group, unlimited, too_high)
             for line in result.out.splitlines() if dn in line}  # fmt: skip
    assert f"uidNumber: '{system_uid}': belongs to the system (/etc/passwd" in lines[as_system_user]
    assert f"gidNumber: '{system_gid}': belongs to the system (/etc/group" in lines[as_system_group]
    assert "sstQuota: '0': 0 would mean 'unlimited'" in lines[unlimited]
    assert "uidNumber: '4300001': above [backup] max_uid 4300000" in lines[too_high]
    for dn in (as_system_user, as_system_group, unlimited, too_high):
        assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["10"], dn
    for uid in ("4200004", "4200005", "4200006", "4300001"):
        assert not account_dir(setup.root, uid).exists(), uid
    assert read_entry(ldap_server, good)["sstprovisioningmode"] == ["added"]
    # Quota 0 is refused on add and modify only: a delete sets 0 itself.
    assert account_dir(setup.root, "4200007").is_dir()


INDUCED = """
import sys

import ldap3

def refuse(*arguments, **options):
    raise RuntimeError("induced: the LDAP library failed in a way nobody foresaw")

ldap3.Connection.modify = refuse
from provbackup.__main__ import main

sys.argv = ["provbackup", *sys.argv[1:]]
main()
"""


def test_an_unexpected_exception_is_written_to_the_status_file_and_check_is_critical(
    tmp_path, ldap_server
):
    """SPEC section 8: any unexpected exception writes exit 70 and the error (issue 10.3)."""
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4200008")
    assert run(setup, "process").code == 0  # nothing due: a good status file first
    add(ldap_server, "4200009")
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("PROVBACKUP_CONFIG", None)
    completed = subprocess.run(
        [sys.executable, "-c", INDUCED, "--config", str(setup.config), "process"],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 70, completed.stderr
    assert "internal error: RuntimeError: induced" in completed.stderr
    status = json.loads(setup.status_file.read_text())
    assert status["exit_code"] == 70
    assert "RuntimeError: induced: the LDAP library failed" in status["error"]
    check = run_process(setup, "check")
    assert check.code == 2, check.out
    assert "last run exited 70: internal error: RuntimeError: induced" in check.out
