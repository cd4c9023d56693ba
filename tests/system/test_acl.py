"""The example ACL examples/slapd-acl.conf is real: the suite's provbackup binds with it.

The session slapds (tests/conftest.py) load the file and create its bind DN;
these tests prove that the DN can do what provbackup needs (a whole add,
modify, delete cycle, scans beyond slapd's default size limit) and nothing
else (writes and reads outside the file's lists are refused), against our
schema and the stoney cloud's real one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import ldap3
import pytest
from support import REPOSITORY, read_entry, run, write_config

from sandbox import Slapd, account_entry, acl_example_path, jailkit_home_directory

INSUFFICIENT_ACCESS = 50
ACL_FILE = REPOSITORY / "examples" / "slapd-acl.conf"

# What examples/slapd-acl.conf lets provbackup write, and a value each takes.
WRITABLE = {
    "sstProvisioningMode": "adding",
    "sstProvisioningState": "20240105T101112Z",
    "sstProvisioningExecutionDate": "20240105",
    "sstProvisioningReturnValue": "40",
    "sstBackupSize": "1024",
    "sstIncrementSize": "2048",
    "sstBackupLastSuccessfulBackup": "client1:20240105T101112Z",
}
# Attributes of an account provbackup must never change, with a value each could take.
NOT_WRITABLE = {
    "uid": "someone-else",
    "uidNumber": "0",
    "gidNumber": "0",
    "homeDirectory": "/root",
    "sstQuota": "999999999999",
    "sstIsActive": "FALSE",
    "sstBackupIntervalDaily": "0",
    "loginShell": "/bin/sh",
    "sstBelongsToCustomerUID": "1",
    "userPassword": "known",
    "sstProvisioningExecutionTime": "0101",
}
# What provbackup reads (write implies read), and what it must not see.
READABLE = {"uid", "uidnumber", "gidnumber", "homedirectory", "sstquota", "sstisactive",
            "sstbackupintervaldaily", "entryuuid", "sstprovisioningmode",
            "sstprovisioningstate", "sstprovisioningexecutiondate",
            # the customer warnings (notify)
            "sstbackupwarningon", "sstbackupwarningdays", "sstbackupwarningnumbers",
            "sstnotificationwarninglevel", "sstnotificationwarningmedium",
            "sstnotificationwarning", "mail", "mobile",
            "preferredlanguage"}  # fmt: skip
NOT_READABLE = {"cn", "loginshell", "sstbelongstocustomeruid", "sstusessh", "sstuseselfcare"}

FLAVOURS = ["ldap_server", "stoney_ldap_server"]


@pytest.fixture(params=FLAVOURS)
def server(request: pytest.FixtureRequest) -> Slapd:
    """Each session slapd with the example ACL: our schema and the stoney cloud's."""
    return request.getfixturevalue(request.param)


def as_provbackup(server: Slapd) -> ldap3.Connection:
    """A connection bound with the credentials provbackup's configuration gets."""
    settings = server.ldap_settings()
    return server.connection(settings["bind_dn"], settings["bind_password"])


def rule_lines(text: str) -> list[str]:
    """The lines of slapd.conf text that say something (no comments, no blank lines)."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_provbackup_binds_as_the_restricted_dn_not_the_administrator(server: Slapd) -> None:
    settings = server.ldap_settings()
    assert settings["bind_dn"] == f"cn=provbackup,ou=services,{server.suffix}" != server.root_dn
    connection = as_provbackup(server)
    try:
        assert connection.extend.standard.who_am_i() == f"dn:{settings['bind_dn']}"
    finally:
        connection.unbind()
    # A wrong password is refused: the DN has a real password, not an open door.
    with pytest.raises(ldap3.core.exceptions.LDAPBindError):
        server.connection(settings["bind_dn"], settings["bind_password"] + "x")


def test_the_sandbox_loads_the_documented_text(stoney_ldap_server: Slapd) -> None:
    """Against the stoney schema and suffix the file goes into slapd.conf unchanged."""
    assert acl_example_path() == ACL_FILE
    documented = ACL_FILE.read_text()
    assert documented.rstrip("\n") in stoney_ldap_server.config_file.read_text()


def test_with_our_schema_the_only_edit_is_the_documented_date_attribute(
    ldap_server: Slapd,
) -> None:
    documented = rule_lines(ACL_FILE.read_text())
    date = "sstProvisioningExecutionDate,"
    loaded = rule_lines(ldap_server.config_file.read_text())
    start = loaded.index(documented[0])
    expected = [line.replace(date, f"{date}sstProvisioningDate,") for line in documented]
    assert loaded[start : start + len(documented)] == expected
    assert expected != documented  # the date really is added


def test_every_listed_attribute_can_be_written(server: Slapd) -> None:
    dn, attributes = account_entry("4100001", base_dn=server.accounts_dn, home_directory="/h")
    server.add_entries([(dn, attributes)])
    connection = as_provbackup(server)
    try:
        for name, value in WRITABLE.items():
            assert connection.modify(dn, {name: [(ldap3.MODIFY_REPLACE, [value])]}), (
                name, connection.result,
            )  # fmt: skip
        # reset removes the return value: deleting is writing too.
        change = {"sstProvisioningReturnValue": [(ldap3.MODIFY_DELETE, [])]}
        assert connection.modify(dn, change), connection.result
    finally:
        connection.unbind()
    stored = read_entry(server, dn)
    for name, value in WRITABLE.items():
        if name != "sstProvisioningReturnValue":
            assert stored[name.lower()] == [value], name
    assert "sstprovisioningreturnvalue" not in stored


@pytest.mark.parametrize("attribute", sorted(NOT_WRITABLE))
def test_an_attribute_outside_the_list_cannot_be_written(
    ldap_server: Slapd, attribute: str
) -> None:
    dn, attributes = account_entry("4100002", base_dn=ldap_server.accounts_dn, home_directory="/h")
    attributes["userPassword"] = ["original"]
    ldap_server.add_entries([(dn, attributes)])
    before = read_entry(ldap_server, dn)
    connection = as_provbackup(ldap_server)
    try:
        change = {attribute: [(ldap3.MODIFY_REPLACE, [NOT_WRITABLE[attribute]])]}
        assert not connection.modify(dn, change)
        assert connection.result["result"] == INSUFFICIENT_ACCESS, connection.result
    finally:
        connection.unbind()
    assert read_entry(ldap_server, dn) == before


def test_entries_cannot_be_added_deleted_or_renamed_nor_anything_outside_the_accounts_changed(
    server: Slapd,
) -> None:
    dn, attributes = account_entry("4100003", base_dn=server.accounts_dn, home_directory="/h")
    server.add_entries([(dn, attributes)])
    other, other_attributes = account_entry("4100004", base_dn=server.accounts_dn)
    connection = as_provbackup(server)
    try:
        refused = [
            connection.add(other, attributes=other_attributes),
            connection.delete(dn),
            connection.modify_dn(dn, "uid=4100005"),
            connection.modify(server.suffix, {"o": [(ldap3.MODIFY_REPLACE, ["taken"])]}),
            connection.modify(server.accounts_dn, {"description": [(ldap3.MODIFY_ADD, ["x"])]}),
        ]
        assert refused == [False] * 5
    finally:
        connection.unbind()
    assert read_entry(server, dn)["uid"] == ["4100003"]
    assert read_entry(server, other) == {}


def test_only_the_listed_attributes_are_read(server: Slapd) -> None:
    warnings = {"mail": ["c@example.org"], "mobileTelephoneNumber": ["+41791234567"],
                "preferredLanguage": ["de"], "sstNotificationWarning": ["quota"]}  # fmt: skip
    dn, attributes = account_entry(
        "4100006", base_dn=server.accounts_dn, home_directory="/h", extra=warnings
    )
    server.add_entries([(dn, attributes)])
    connection = as_provbackup(server)
    try:
        assert connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["*", "+"])
        seen = {name.lower() for name in connection.response[0]["raw_attributes"]}
        # A filter on an attribute it may not read matches nothing.
        connection.search(server.accounts_dn, "(sstBelongsToCustomerUID=4000001)", ldap3.LEVEL)
        assert connection.response == []
    finally:
        connection.unbind()
    assert seen >= READABLE, READABLE - seen
    assert not NOT_READABLE & seen
    assert set(read_entry(server, dn)) >= NOT_READABLE  # the administrator sees them


def test_a_whole_add_modify_delete_cycle_works_with_the_restricted_dn(
    tmp_path: Path, server: Slapd
) -> None:
    setup = write_config(tmp_path, server)
    assert f"bind_dn = cn=provbackup,ou=services,{server.suffix}" in setup.config.read_text()
    uid = "4100007"
    home = jailkit_home_directory(setup.root, uid)
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, home_directory=home)
    server.add_entries([(dn, attributes)])
    account = Path(home.split("/chroot/")[0])

    def request(mode: str, **changes: str) -> None:
        connection = server.connection()  # the web shop: the administrator
        try:
            values = {"sstProvisioningMode": mode, "sstProvisioningState": "0", **changes}
            change = {name: [(ldap3.MODIFY_REPLACE, [value])] for name, value in values.items()}
            assert connection.modify(dn, change), connection.result
        finally:
            connection.unbind()

    result = run(setup, "process")
    assert result.code == 0, result.err
    assert read_entry(server, dn)["sstprovisioningmode"] == ["added"]
    assert (account / "rsnapshot.conf").is_file()

    request("modify", sstIsActive="FALSE")
    result = run(setup, "process")
    assert result.code == 0, result.err
    assert read_entry(server, dn)["sstprovisioningmode"] == ["modified"]
    assert (account / "rsnapshot.conf.inactive").is_file()

    request("delete")
    result = run(setup, "process")
    assert result.code == 0, result.err
    entry = read_entry(server, dn)
    assert entry["sstprovisioningmode"] == ["deleted"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", entry["sstprovisioningstate"][0])
    assert not account.exists()


def test_scan_sees_more_entries_than_slapds_default_size_limit(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    """slapd answers a DN without a limits line at most 500 entries; the file lifts that."""
    count = 520
    ldap_server.add_entries(
        account_entry(str(4200000 + index), base_dn=ldap_server.accounts_dn)
        for index in range(count)
    )
    connection = as_provbackup(ldap_server)
    try:
        connection.search(ldap_server.accounts_dn, "(sstProvisioningState=0)", ldap3.LEVEL,
                          attributes=["1.1"], size_limit=0)  # fmt: skip
        assert len(connection.response) == count, connection.result
    finally:
        connection.unbind()
    anonymous = ldap3.Connection(ldap3.Server(ldap_server.uri, get_info=ldap3.NONE), auto_bind=True)
    try:
        anonymous.search(ldap_server.suffix, "(objectClass=*)", ldap3.SUBTREE, attributes=["1.1"])
        assert anonymous.result["description"] == "sizeLimitExceeded"  # the default is there
        assert len(anonymous.response) == 500
    finally:
        anonymous.unbind()
    setup = write_config(tmp_path, ldap_server, page_size="200")
    result = run(setup, "scan", "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)) == count


def test_the_readme_install_section_shows_every_rule_of_the_file() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    install = readme.split("## Installing on a backup server", 1)[1].split("\n## ", 1)[0]
    position = 0
    for line in rule_lines(ACL_FILE.read_text()):
        assert line in install[position:], f"README lacks, in this order: {line}"
        position = install.index(line, position) + len(line)


def test_the_acl_follows_another_suffix(tmp_path: Path) -> None:
    """Every DN of the file moves with the suffix: the rules still hold for the new tree."""
    with Slapd(tmp_path / "other", suffix="dc=example,dc=net", acl=True) as other:
        other.add_base()
        assert "stoney-cloud" not in other.config_file.read_text()
        dn, attributes = account_entry("4300001", base_dn=other.accounts_dn)
        other.add_entries([(dn, attributes)])
        connection = as_provbackup(other)
        try:
            assert connection.extend.standard.who_am_i() == (
                "dn:cn=provbackup,ou=services,dc=example,dc=net"
            )
            assert connection.modify(dn, {"sstBackupSize": [(ldap3.MODIFY_REPLACE, ["1"])]})
            assert not connection.modify(dn, {"sstQuota": [(ldap3.MODIFY_REPLACE, ["1"])]})
        finally:
            connection.unbind()
