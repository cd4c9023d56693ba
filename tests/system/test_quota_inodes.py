"""The quota command sets inode limits too (issue 11, finding 4: the sample left them 0).

``setquota`` reads inode limits of 0 as "unlimited": one customer could fill
a shared filesystem's inode table with empty files. ``{inode_limit}`` gives
the command ``[quota] inodes_per_gib`` files per GiB of sstQuota. Kernel
quotas are off on the test machine, so the command is the recording script.
"""

from __future__ import annotations

import ldap3
from support import REPOSITORY, run, write_config

from sandbox import account_entry

GIB = 2**30


def add(server, uid: str, quota: int) -> str:
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, quota=quota)
    server.add_entries([(dn, attributes)])
    return dn


def recorded(setup) -> dict[str, list[str]]:
    lines = setup.quota_log.read_text().splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines}


def test_inode_limit_follows_the_quota_at_the_configured_ratio(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    recorder = tmp_path / "record-quota"
    setup = write_config(
        tmp_path,
        ldap_server,
        extra=f"[quota]\ncommand = {recorder} {{uid}} {{quota_bytes}} {{inode_limit}}\n"
        "inodes_per_gib = 1000\n",
    )
    add(ldap_server, "4300001", 2 * GIB)
    add(ldap_server, "4300002", 1)
    add(ldap_server, "4300003", 3 * GIB // 2 + 1)

    assert run(setup, "process").code == 0

    assert recorded(setup) == {
        "4300001": [str(2 * GIB), "2000"],
        "4300002": ["1", "1"],  # a tiny quota still limits files: never 0 (unlimited)
        "4300003": [str(3 * GIB // 2 + 1), "1501"],  # rounded up
    }


def test_delete_lifts_the_inode_limit_with_the_block_limit(tmp_path, ldap_server):
    recorder = tmp_path / "record-quota"
    setup = write_config(
        tmp_path,
        ldap_server,
        extra=f"[quota]\ncommand = {recorder} {{uid}} {{quota_kib}} {{inode_limit}}\n",
    )
    dn = add(ldap_server, "4300004", GIB)
    assert run(setup, "process").code == 0
    connection = ldap_server.connection()
    connection.modify(
        dn,
        {
            "sstProvisioningMode": [(ldap3.MODIFY_REPLACE, ["delete"])],
            "sstProvisioningState": [(ldap3.MODIFY_REPLACE, ["0"])],
        },
    )
    connection.unbind()
    assert run(setup, "process").code == 0
    lines = setup.quota_log.read_text().splitlines()
    assert lines == ["4300004 1048576 65536", "4300004 0 0"]


def test_the_sample_quota_command_sets_inode_limits(tmp_path, ldap_server):
    sample = (REPOSITORY / "etc" / "provbackup.conf").read_text()
    (line,) = [line for line in sample.splitlines() if line.startswith("#command = setquota")]
    command = line.removeprefix("#command = ").replace("setquota", str(tmp_path / "record-quota"))
    setup = write_config(tmp_path, ldap_server, extra=f"[quota]\ncommand = {command}\n")
    add(ldap_server, "4300005", GIB)

    assert run(setup, "process").code == 0

    (arguments,) = [line.split() for line in setup.quota_log.read_text().splitlines()]
    # setquota -g GROUP BLOCK-SOFT BLOCK-HARD INODE-SOFT INODE-HARD FILESYSTEM
    assert arguments[:6] == ["-g", "4300005", "1048576", "1048576", "65536", "65536"]
