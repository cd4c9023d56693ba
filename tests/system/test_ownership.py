"""One account directory, one owner (issue 11, finding 1; SPEC section 8).

The account directory is derived from the uid alone. Today a second entry
``cn=evil`` with the victim's uid and its own uidNumber/gidNumber 4000000
was handed the victim's tree: home, ``.snapshots`` and ``incoming`` were
re-owned to 4000000 and its delete removed the victim's account. These
tests run that attack, and its cousins, against a real slapd and a real
filesystem.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import ldap3
from support import account_dir, fingerprint, read_entry, run, write_config

from sandbox import Slapd, account_entry

ATTACKER_ID = 4000000


def add(server: Slapd, uid: str, *, dn: str | None = None, **options) -> str:
    entry_dn, attributes = account_entry(uid, base_dn=server.accounts_dn, **options)
    if dn is not None:
        entry_dn = f"{dn},{server.accounts_dn}"
        attributes["cn"] = [dn.split("=", 1)[1]]
    server.add_entries([(entry_dn, attributes)])
    return entry_dn


def request(server: Slapd, dn: str, mode: str, **replace: list[str]) -> None:
    """Put a request on ``dn`` as the web shop would (mode, state 0, return value removed)."""
    connection = server.connection()
    try:
        changes = {
            "sstProvisioningMode": [(ldap3.MODIFY_REPLACE, [mode])],
            "sstProvisioningState": [(ldap3.MODIFY_REPLACE, ["0"])],
            "sstProvisioningReturnValue": [(ldap3.MODIFY_REPLACE, [])],
        }
        for name, values in replace.items():
            changes[name] = [(ldap3.MODIFY_REPLACE, values)]
        assert connection.modify(dn, changes), connection.result
    finally:
        connection.unbind()


def entry_uuid(server: Slapd, dn: str) -> str:
    connection = server.connection()
    try:
        assert connection.search(
            dn, "(objectClass=*)", search_scope="BASE", attributes=["entryUUID"]
        )
        return str(connection.response[0]["raw_attributes"]["entryUUID"][0].decode())
    finally:
        connection.unbind()


def owners(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def readable_by(uid: int, path: Path) -> bool:
    """Whether the user ``uid`` (its own group, nothing else) can read ``path``."""
    return (
        subprocess.run(
            ["cat", str(path)], user=uid, group=uid, extra_groups=[], capture_output=True
        ).returncode
        == 0
    )


def outcome_line(output: str, dn: str) -> str:
    return next(line for line in output.splitlines() if dn in line)


def test_a_duplicate_uid_cannot_take_over_the_victims_account(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    victim = add(ldap_server, "3723707")
    assert run(setup, "process").code == 0
    account = account_dir(setup.root, "3723707")
    home = account / "chroot" / "home" / "3723707"
    secret = home / "incoming" / "tax-return.pdf"
    secret.write_text("the victim's data")
    os.chown(secret, 3723707, 3723707)
    secret.chmod(0o600)
    before = fingerprint(account)
    assert not readable_by(ATTACKER_ID, secret)

    attacker = add(
        ldap_server, "3723707", dn="cn=evil", uid_number=ATTACKER_ID, gid_number=ATTACKER_ID
    )
    result = run(setup, "process")

    assert result.code == 1
    line = outcome_line(result.out, attacker)
    assert line.startswith("failed") and "also the uid of" in line and victim in line
    assert read_entry(ldap_server, attacker)["sstprovisioningreturnvalue"] == ["11"]
    assert fingerprint(account) == before, "the victim's tree is untouched"
    assert owners(home / "incoming")[:2] == (3723707, 3723707)
    assert owners(home / ".snapshots")[:2] == (0, 3723707)
    assert not readable_by(ATTACKER_ID, secret)
    assert read_entry(ldap_server, victim)["sstprovisioningmode"] == ["added"]
    shown = run(setup, "show", "--dn", attacker, "--json")
    owner = json.loads(shown.out)[0]["server"]["owner"]
    assert "ANOTHER entry" in owner and entry_uuid(ldap_server, victim) in owner
    shown = run(setup, "show", "--dn", victim, "--json")
    assert json.loads(shown.out)[0]["server"]["owner"].endswith("(this entry)")

    # The attacker's delete removes nothing either.
    request(ldap_server, attacker, "delete")
    deleted = run(setup, "process")
    assert deleted.code == 1
    assert "also the uid of" in outcome_line(deleted.out, attacker)
    assert read_entry(ldap_server, attacker)["sstprovisioningreturnvalue"] == ["11"]
    assert fingerprint(account) == before
    assert read_entry(ldap_server, victim)["sstprovisioningmode"] == ["added"]


def test_a_leftover_tree_is_not_handed_to_a_new_entry_reusing_the_uid(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    old = add(ldap_server, "3723708")
    assert run(setup, "process").code == 0
    account = account_dir(setup.root, "3723708")
    (account / "chroot" / "home" / "3723708" / "incoming" / "old-customer").write_text("old")
    # The entry vanishes without a delete request (an operator's ldapdelete): the tree stays.
    connection = ldap_server.connection()
    assert connection.delete(old), connection.result
    connection.unbind()
    before = fingerprint(account)

    for uid_number in (3723708, 4100000):  # the same uidNumber reused, or another one
        new = add(ldap_server, "3723708", uid_number=uid_number, gid_number=uid_number)
        dry = run(setup, "process", "--dry-run")
        assert "would fail" in outcome_line(dry.out, new)
        assert "was made for another entry" in outcome_line(dry.out, new)
        result = run(setup, "process")
        assert result.code == 1
        line = outcome_line(result.out, new)
        assert "was made for another entry" in line, line
        assert read_entry(ldap_server, new)["sstprovisioningreturnvalue"] == ["11"]
        assert fingerprint(account) == before
        connection = ldap_server.connection()
        assert connection.delete(new), connection.result
        connection.unbind()


def test_the_owner_record_names_the_entry_and_is_roots_alone(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "3723709")
    assert run(setup, "process").code == 0
    record = account_dir(setup.root, "3723709") / ".provbackup-owner"
    assert owners(record) == (0, 0, 0o600)
    document = json.loads(record.read_text())
    assert document["entryUUID"] == entry_uuid(ldap_server, dn)
    assert (document["uidNumber"], document["gidNumber"]) == (3723709, 3723709)
    # Modify and delete by the owner go through; the record goes with the tree.
    request(ldap_server, dn, "modify")
    assert run(setup, "process").code == 0
    request(ldap_server, dn, "delete")
    assert run(setup, "process").code == 0
    assert not account_dir(setup.root, "3723709").exists()


def test_a_first_release_tree_is_adopted_only_by_its_owner(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "3723710")
    assert run(setup, "process").code == 0
    account = account_dir(setup.root, "3723710")
    record = account / ".provbackup-owner"
    record.unlink()  # as the first release left it
    before = fingerprint(account)

    # Another uidNumber than the one owning incoming/: refused, nothing touched.
    request(ldap_server, dn, "modify", uidNumber=["4100001"], gidNumber=["4100001"])
    refused = run(setup, "process")
    assert refused.code == 1
    assert "has no ownership record and is not this entry's" in outcome_line(refused.out, dn)
    assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["11"]
    assert fingerprint(account) == before

    # The owning numbers: adopted, and recorded.
    request(ldap_server, dn, "modify", uidNumber=["3723710"], gidNumber=["3723710"])
    assert run(setup, "process").code == 0
    assert json.loads(record.read_text())["entryUUID"] == entry_uuid(ldap_server, dn)


def test_two_new_entries_with_one_uid_both_fail_and_nothing_is_made(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    first = add(ldap_server, "3723711")
    second = add(ldap_server, "3723711", dn="cn=twin", uid_number=4100002, gid_number=4100002)

    result = run(setup, "process")

    assert result.code == 1
    for dn in (first, second):
        assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["11"]
    assert os.listdir(setup.root) == []


def test_a_gid_number_shared_with_another_account_is_refused(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    owner = add(ldap_server, "3723712", gid_number=4100003)
    assert run(setup, "process").code == 0
    sharer = add(ldap_server, "3723713", gid_number=4100003)

    result = run(setup, "process")

    assert result.code == 1
    line = outcome_line(result.out, sharer)
    assert "gidNumber: '4100003': also the gidNumber of" in line and owner in line
    assert read_entry(ldap_server, sharer)["sstprovisioningreturnvalue"] == ["11"]
    assert not account_dir(setup.root, "3723713").exists()


def test_the_batch_costs_one_search_whatever_its_size(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    searches = []
    for uids in (["3723720"], [str(3723730 + index) for index in range(8)]):
        for uid in uids:
            add(ldap_server, uid)
        assert run(setup, "process").code == 0
        searches.append(json.loads(setup.status_file.read_text())["ldap"]["searches"])
    assert searches[0] == searches[1]
