"""A delete SIGKILLed at each of its steps, then reset + process: deleted, nothing left.

The run is killed deterministically just before its N-th step after the
claim (``tests/killpoint.py``), for every N until a run finishes. A flake of
``test_faults.py::test_sigkill_at_20_random_points_...`` found the window:
the tree remover took ``A/.provbackup-owner`` before the customer's tree,
so a delete killed there left an unrecorded tree in the live root, and the
delete after the reset judged it by its owners alone and failed it with 11.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPOSITORY, modify_entry, read_entry, run, write_config

from sandbox import Slapd, account_entry

UID = "4600207"
KILLPOINT = REPOSITORY / "tests" / "killpoint.py"
OWNER_FILE = ".provbackup-owner"


def copy_with_owners(source: Path, target: Path) -> None:
    """Copy the tree ``source`` to ``target`` keeping links, modes and owners."""
    shutil.copytree(source, target, symlinks=True)
    for directory, names, files in os.walk(source):
        for name in [".", *names, *files]:
            path = Path(directory, name)
            status = path.lstat()
            os.lchown(target / path.relative_to(source), status.st_uid, status.st_gid)


def kill_at(setup_config: Path, step: int) -> subprocess.CompletedProcess[str]:
    """Run ``process`` under the kill point ``step``; returns the finished process."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "KILL_AT": str(step)}
    environment.pop("PROVBACKUP_CONFIG", None)
    return subprocess.run(
        [sys.executable, str(KILLPOINT), "--config", str(setup_config), "process"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_delete_killed_at_any_step_keeps_its_record_and_converges_after_reset(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server, "[backup]\nserver_name = backup1\n")
    dn, attributes = account_entry(UID, base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    assert run(setup, "process").code == 0
    account = setup.root / "7" / "207" / "600" / UID
    incoming = account / "chroot" / "home" / UID / "incoming"
    (incoming / "data.bin").write_bytes(os.urandom(2048))
    (incoming / "etc").symlink_to("/etc")
    (incoming / "photos" / "2026").mkdir(parents=True)
    (incoming / "photos" / "2026" / "a.jpg").write_bytes(b"jpeg")
    baseline = tmp_path / "baseline"
    copy_with_owners(setup.root, baseline)
    # Renumbered by its operator with the delete: the record (same entryUUID) says the
    # tree is this entry's; its owners, the old numbers, no longer do.
    request = {
        "sstProvisioningMode": ["delete"],
        "sstProvisioningState": ["0"],
        "sstProvisioningReturnValue": [],
        "host": ["backup1"],
        "uidNumber": ["4700207"],
        "gidNumber": ["4700207"],
    }

    killed = 0
    for step in range(1, 200):
        shutil.rmtree(setup.root)
        copy_with_owners(baseline, setup.root)
        modify_entry(ldap_server, dn, request)
        ended = kill_at(setup.config, step)
        if ended.returncode != -signal.SIGKILL:
            assert ended.returncode == 0, ended.stderr
            break
        killed += 1
        # Killed anywhere, the live root holds the recorded tree, an empty A, or no A.
        if account.exists():
            left = os.listdir(account)
            assert OWNER_FILE in left or not left, f"step {step}: unrecorded {left}"
        if read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleting"]:
            assert run(setup, "reset", "--uid", UID).code == 0
        final = run(setup, "process")
        assert final.code == 0, f"step {step}: {final.err}"
        entry = read_entry(ldap_server, dn)
        assert entry["sstprovisioningmode"] == ["deleted"], f"step {step}"
        assert entry["sstprovisioningreturnvalue"] == ["0"], f"step {step}"
        assert "host" not in entry, f"step {step}: the server's name stays recorded"
        assert os.listdir(setup.root) == [], f"step {step}: left {os.listdir(setup.root)}"
    # The claim's answer, the quota command, the conf's rename and every name removed.
    assert killed >= 20, f"only {killed} kill points inside the delete"
