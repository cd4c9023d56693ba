"""The throwaway slapd, the project schema and the pytest fixtures work for real."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPException

import sandbox
import sandbox.locations
from sandbox import (
    SandboxError,
    Slapd,
    account_entry,
    entries_to_ldif,
    free_port,
    jailkit_home_directory,
    make_certificate_authority,
    make_server_certificate,
    provbackup_schema_path,
    stoney_schema_path,
)

REPOSITORY = Path(__file__).resolve().parents[2]

INVALID_ATTRIBUTE_SYNTAX = 21
OBJECT_CLASS_VIOLATION = 65


def _read(server: Slapd, dn: str) -> dict[str, list[str]]:
    """Return the entry's attributes as lists of strings (raw values)."""
    connection = server.connection()
    try:
        assert connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["*"])
        return {
            name: [value.decode() for value in values]
            for name, values in connection.response[0]["raw_attributes"].items()
        }
    finally:
        connection.unbind()


def _uids(server: Slapd, search_filter: str) -> set[str]:
    connection = server.connection()
    try:
        connection.search(server.accounts_dn, search_filter, ldap3.LEVEL, attributes=["uid"])
        assert connection.result["result"] == 0, connection.result
        return {str(entry["attributes"]["uid"][0]) for entry in connection.response}
    finally:
        connection.unbind()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


# -- helpers ------------------------------------------------------------------


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_jailkit_home_directory_uses_the_stoney_layout() -> None:
    assert (
        jailkit_home_directory("/var/backup", "3723707")
        == "/var/backup/7/707/723/3723707/chroot/./home/3723707"
    )
    assert jailkit_home_directory("/b", "42") == "/b/2/042/000/42/chroot/./home/42"
    with pytest.raises(ValueError):
        jailkit_home_directory("/b", "alice")


def test_stoney_schema_path_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = tmp_path / "sst.schema"
    schema.write_text("# empty\n")
    monkeypatch.setenv(sandbox.STONEY_SCHEMA_VARIABLE, str(schema))
    assert stoney_schema_path() == schema.resolve()
    monkeypatch.setenv(sandbox.STONEY_SCHEMA_VARIABLE, str(tmp_path / "missing.schema"))
    assert stoney_schema_path() is None


def test_account_entry_shape() -> None:
    home = jailkit_home_directory("/srv/backup", "3723707")
    dn, attributes = account_entry(
        "3723707", base_dn="ou=accounts,dc=example", home_directory=home,
        intervals={"daily": 14}, active=False,
    )  # fmt: skip
    assert dn == "uid=3723707,ou=accounts,dc=example"
    assert attributes["objectClass"] == [
        "account", "posixAccount", "shadowAccount", "sstBackup", "sstRelationship",
        "sstProvisioning",
    ]  # fmt: skip
    assert attributes["uidNumber"] == attributes["gidNumber"] == ["3723707"]
    assert attributes["homeDirectory"] == [home]
    assert attributes["sstBackupIntervalDaily"] == ["14"]
    assert attributes["sstBackupIntervalWeekly"] == ["4"]
    assert attributes["sstIsActive"] == ["FALSE"]
    assert attributes["sstProvisioningExecutionDate"] == ["0"]
    assert "sstProvisioningDate" not in attributes
    _dn, other = account_entry("bob", base_dn="dc=x", date_attribute="sstProvisioningDate")
    assert other["uidNumber"] == ["10000"]
    assert "provbackupProvisioning" in other["objectClass"]
    assert "sstProvisioningExecutionDate" not in other
    with pytest.raises(ValueError):
        account_entry("bob", base_dn="dc=x", date_attribute="sstDate")


def test_account_entry_escapes_the_rdn_and_slapd_stores_the_uid_unchanged(
    ldap_server: Slapd,
) -> None:
    uid = 'a,b+c"d\\e<f>g;h=i'
    dn, attributes = account_entry(uid, base_dn=ldap_server.accounts_dn)
    assert dn == f'uid=a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i,{ldap_server.accounts_dn}'
    edges = account_entry("#x ", base_dn=ldap_server.accounts_dn)
    assert edges[0].startswith("uid=\\#x\\ ,")
    assert ldap_server.add_entries([(dn, attributes), edges]) == 2
    assert _read(ldap_server, dn)["uid"] == [uid]
    assert _read(ldap_server, edges[0])["uid"] == ["#x "]


def test_schema_and_programs_are_found_in_the_checkout() -> None:
    """The sandbox is not installed: it uses the checkout's schema/ (issue 13)."""
    assert provbackup_schema_path() == REPOSITORY / "schema" / "provbackup.schema"
    assert sandbox.locations.REPOSITORY_ROOT == REPOSITORY
    assert Path(sandbox.__file__).parent == REPOSITORY / "sandbox"


def test_entries_to_ldif_encodes_unsafe_values() -> None:
    text = entries_to_ldif([("uid=a,dc=x", {"cn": ["Zoë", " lead", "plain"], "n": [3]})])
    assert text.splitlines() == [
        "dn: uid=a,dc=x", "cn:: Wm/Dqw==", "cn:: IGxlYWQ=", "cn: plain", "n: 3",
    ]  # fmt: skip


# -- schema -------------------------------------------------------------------


def _definitions(path: Path) -> dict[str, dict[str, object]]:
    """Parse attributetype/objectclass definitions of a slapd.conf schema file."""
    text = re.sub(r"(?m)^\s*#.*$", "", path.read_text())
    macros: dict[str, str] = {}
    for name, value in re.findall(r"(?im)^objectidentifier\s+(\S+)\s+(\S+)", text):
        prefix, _, rest = value.partition(":")
        macros[name] = f"{macros[prefix]}.{rest}" if rest else value
    found: dict[str, dict[str, object]] = {}
    pattern = r"(?is)^(attributetype|objectclass)\s*\((.*?)\)\s*(?=^\S|\Z)"
    for kind, body in re.findall(pattern, text, flags=re.M):
        body = re.sub(r"DESC\s+'[^']*'", "", " ".join(body.split()))
        oid = body.split()[0]
        prefix, _, rest = oid.partition(":")
        name = re.search(r"NAME\s+'([^']+)'", body).group(1)  # type: ignore[union-attr]

        def field(keyword: str, body: str = body) -> str | None:
            match = re.search(rf"\b{keyword}\s+(\S+)", body)
            return match.group(1) if match else None

        def members(keyword: str, body: str = body) -> set[str]:
            match = re.search(rf"\b{keyword}\s+(\([^)]*\)|\S+)", body)
            words = match.group(1).strip("()").replace("$", " ").split() if match else []
            return {word.lower() for word in words}

        found[name] = {
            "kind": kind.lower(),
            "oid": f"{macros[prefix]}.{rest}" if rest else oid,
            "equality": field("EQUALITY"), "ordering": field("ORDERING"),
            "substr": field("SUBSTR"), "syntax": field("SYNTAX"),
            "single": "SINGLE-VALUE" in body,
            "structure": re.findall(r"\b(AUXILIARY|STRUCTURAL|ABSTRACT)\b", body),
            "must": members("MUST"), "may": members("MAY"),
        }  # fmt: skip
    return found


def test_our_schema_matches_the_stoney_schema() -> None:
    reference_path = stoney_schema_path()
    if reference_path is None:
        pytest.skip("stoney schema not found")
    ours, reference = _definitions(provbackup_schema_path()), _definitions(reference_path)
    shared = [name for name in ours if name in reference]
    assert len(shared) >= 40  # every sst definition we carry
    for name in shared:
        assert ours[name] == reference[name], name
    own = sorted(set(ours) - set(reference))
    assert own == ["provbackupProvisioning", "sstProvisioningDate"]
    assert str(ours["sstProvisioningDate"]["oid"]).startswith("1.3.6.1.4.1.32473.")


def test_account_entry_is_accepted_in_both_date_flavours(ldap_server: Slapd) -> None:
    home = jailkit_home_directory("/var/backup", "3723707")
    stoney = account_entry("3723707", base_dn=ldap_server.accounts_dn, home_directory=home)
    documented = account_entry(
        "3723708", base_dn=ldap_server.accounts_dn, date_attribute="sstProvisioningDate",
        date="20300101", home_directory=jailkit_home_directory("/var/backup", "3723708"),
    )  # fmt: skip
    assert ldap_server.add_entries([stoney, documented]) == 2
    stored = _read(ldap_server, stoney[0])
    assert stored["homeDirectory"] == [home]
    assert stored["sstProvisioningExecutionDate"] == ["0"]
    assert "posixAccount" in stored["objectClass"]
    stored = _read(ldap_server, documented[0])
    assert stored["sstProvisioningDate"] == ["20300101"]
    assert "provbackupProvisioning" in stored["objectClass"]


def test_account_entry_is_accepted_by_the_real_stoney_schema(stoney_ldap_server: Slapd) -> None:
    server = stoney_ldap_server
    entry = account_entry(
        "3723707", base_dn=server.accounts_dn, date="20240105",
        home_directory=jailkit_home_directory("/var/backup", "3723707"),
    )  # fmt: skip
    assert server.add_entries([entry]) == 1
    assert _read(server, entry[0])["sstProvisioningExecutionDate"] == ["20240105"]
    # The documentation's attribute name does not exist in the real schema.
    documented = account_entry(
        "4", base_dn=server.accounts_dn, date_attribute="sstProvisioningDate"
    )
    with pytest.raises(SandboxError, match=r"objectClass: value #\d+ invalid per syntax"):
        server.add_entries([documented])


@pytest.mark.parametrize("flavour", ["ldap_server", "stoney_ldap_server"])
def test_integer_syntax_is_enforced_and_length_bounds_are_not(
    flavour: str, request: pytest.FixtureRequest
) -> None:
    server: Slapd = request.getfixturevalue(flavour)
    dn, attributes = account_entry("1001", base_dn=server.accounts_dn, home_directory="/h")
    server.add_entries([(dn, attributes)])
    connection = server.connection()
    try:
        for bad in ("tomorrow", "2024-01-05", "020240105"):
            change = {"sstProvisioningExecutionDate": [(ldap3.MODIFY_REPLACE, [bad])]}
            assert not connection.modify(dn, change), bad
            assert connection.result["result"] == INVALID_ATTRIBUTE_SYNTAX
        # {8} / {3} are not enforced: "modifying" (9 characters) must be storable.
        change = {
            "sstProvisioningMode": [(ldap3.MODIFY_REPLACE, ["modifying"])],
            "sstProvisioningReturnValue": [(ldap3.MODIFY_REPLACE, ["1234"])],
        }
        assert connection.modify(dn, change), connection.result
    finally:
        connection.unbind()
    assert _read(server, dn)["sstProvisioningMode"] == ["modifying"]


def test_ordering_filter_on_the_execution_date_matches_nothing(ldap_server: Slapd) -> None:
    """No ORDERING rule: (attr<=N) is Undefined, silently no entries, not an error."""
    ldap_server.add_entries([
        account_entry("1001", base_dn=ldap_server.accounts_dn, date="20240105"),
    ])  # fmt: skip
    assert _uids(ldap_server, "(sstProvisioningExecutionDate=20240105)") == {"1001"}
    assert _uids(ldap_server, "(sstProvisioningExecutionDate<=20991231)") == set()
    assert _uids(ldap_server, "(!(sstProvisioningExecutionDate<=20991231))") == set()


def test_missing_must_attribute_is_rejected_unless_omitted(ldap_server: Slapd) -> None:
    dn, attributes = account_entry("1002", base_dn=ldap_server.accounts_dn, home_directory="/h")
    del attributes["uidNumber"]
    connection = ldap_server.connection()
    try:
        assert not connection.add(dn, attributes=attributes)
        assert connection.result["result"] == OBJECT_CLASS_VIOLATION
    finally:
        connection.unbind()
    dn, attributes = account_entry(
        "1002", base_dn=ldap_server.accounts_dn, home_directory="/h",
        omit=["uidNumber", "sstProvisioningMode"],
    )  # fmt: skip
    assert ldap_server.add_entries([(dn, attributes)]) == 1
    stored = _read(ldap_server, dn)
    assert "uidNumber" not in stored and "sstProvisioningMode" not in stored
    assert stored["gidNumber"] == ["1002"]
    assert "extensibleObject" in stored["objectClass"]
    assert "posixAccount" not in stored["objectClass"]


# -- searching ----------------------------------------------------------------


def test_equality_filters_on_state_and_mode(ldap_server: Slapd) -> None:
    base = ldap_server.accounts_dn
    ldap_server.add_entries([
        account_entry("2001", base_dn=base, mode="add"),
        account_entry("2002", base_dn=base, mode="delete"),
        account_entry("2003", base_dn=base, mode="added", state="20240105T101112Z"),
        account_entry("2004", base_dn=base, mode="ADD", state="20240105T101112Z"),
    ])  # fmt: skip
    assert _uids(ldap_server, "(sstProvisioningState=0)") == {"2001", "2002"}
    assert _uids(ldap_server, "(sstProvisioningMode=add)") == {"2001", "2004"}
    assert _uids(ldap_server, "(&(sstProvisioningMode=add)(sstProvisioningState=0))") == {"2001"}


def test_paged_search_returns_every_entry(ldap_server: Slapd) -> None:
    base = ldap_server.accounts_dn
    ldap_server.add_entries(account_entry(str(3000 + index), base_dn=base) for index in range(120))
    connection = ldap_server.connection()
    try:
        found = connection.extend.standard.paged_search(
            base, "(sstProvisioningState=0)", ldap3.LEVEL, attributes=["uid"], paged_size=50,
            generator=False,
        )  # fmt: skip
        assert len([item for item in found if item["type"] == "searchResEntry"]) == 120
        connection.search(base, "(objectClass=*)", ldap3.LEVEL, attributes=["1.1"], paged_size=50)
        cookie = connection.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
        assert len(connection.entries) == 50 and cookie  # really paged
    finally:
        connection.unbind()
    assert ldap_server.clear_accounts() == 120
    assert _uids(ldap_server, "(objectClass=*)") == set()


# -- life cycle ---------------------------------------------------------------


def test_start_stop_restart_keep_ports_and_data(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "ldap")
    with server:
        assert server.is_running()
        server.add_base()
        entry = account_entry("5001", base_dn=server.accounts_dn)
        server.add_entries([entry])
        port = server.port
        server.stop()
        assert not server.is_running() and _refused(port)
        with pytest.raises(LDAPException):
            server.connection()
        server.restart()
        assert server.port == port
        assert _read(server, entry[0])["uid"] == ["5001"]
    assert not server.is_running() and _refused(port)


def test_start_failure_reports_slapd_output(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "bad", indexes=["noSuchAttribute eq"], start_timeout=5)
    with pytest.raises(SandboxError, match="noSuchAttribute"):
        server.start()
    assert not server.is_running()


def test_offline_load_and_clear(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "offline")
    accounts = [account_entry(str(6000 + index), base_dn=server.accounts_dn) for index in range(3)]
    server.load_ldif_offline(entries_to_ldif([*server.base_entries(), *accounts]))
    with server:
        assert _uids(server, "(sstProvisioningMode=add)") == {"6000", "6001", "6002"}
        with pytest.raises(SandboxError, match="stopped"):
            server.load_ldif_offline("")
        more = account_entry("6003", base_dn=server.accounts_dn)
        server.load_ldif_online(entries_to_ldif([more]))
        assert len(_uids(server, "(uid=*)")) == 4
        assert server.clear_accounts() == 4
        assert _uids(server, "(uid=*)") == set()
        assert _read(server, server.accounts_dn)["ou"] == ["accounts"]


def test_stoney_flavour_loads_the_real_schema(stoney_slapd: Slapd) -> None:
    assert stoney_slapd.is_running()
    assert any(path.name == "sst.schema" for path in stoney_slapd.schema_files)
    assert not any(path.name == "provbackup.schema" for path in stoney_slapd.schema_files)


# -- TLS ----------------------------------------------------------------------


def _tls_connection(server: Slapd, uri: str, ca_file: Path, *, start_tls: bool) -> str:
    # valid_names: ldap3 matches no IP address on Python >= 3.12 (see sandbox/data.py).
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file), valid_names=["localhost"]
    )
    connection = ldap3.Connection(
        ldap3.Server(uri, tls=tls, connect_timeout=5, get_info=ldap3.NONE),
        server.root_dn, server.root_password,
    )  # fmt: skip
    try:
        connection.open()
        if start_tls:
            assert connection.start_tls()
        assert connection.bind()
        return str(connection.extend.standard.who_am_i())
    finally:
        with contextlib.suppress(LDAPException):  # the socket may be gone after a TLS failure
            connection.unbind()


def test_certificates_are_signed_by_their_ca_for_the_given_names(tmp_path: Path) -> None:
    ca_certificate, ca_key = make_certificate_authority(tmp_path / "tls")
    certificate, key = make_server_certificate(
        tmp_path / "tls", ca_certificate, ca_key, hosts=("127.0.0.1", "ldap.example")
    )
    for private in (ca_key, key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    # A client trusting the CA accepts the certificate for both names and no other.
    client = ssl.create_default_context(cafile=str(ca_certificate))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(certificate), str(key))
    for name, accepted in (("ldap.example", True), ("127.0.0.1", True), ("other.example", False)):
        assert _handshake(client, server, name) is accepted, name
    other_ca, _ = make_certificate_authority(tmp_path / "other")
    assert other_ca.read_bytes() != ca_certificate.read_bytes()
    stranger = ssl.create_default_context(cafile=str(other_ca))
    assert not _handshake(stranger, server, "ldap.example")


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, name: str) -> bool:
    """Run a TLS handshake over a socket pair; True when the client accepted the server."""
    near, far = socket.socketpair()

    def serve() -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            server.wrap_socket(far, server_side=True).close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client.wrap_socket(near, server_hostname=name).close()
        return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        near.close()
        thread.join(10)
        far.close()


def test_start_tls_verifies_with_the_generated_ca(ldap_server: Slapd) -> None:
    assert ldap_server.ca_file is not None
    identity = _tls_connection(ldap_server, ldap_server.uri, ldap_server.ca_file, start_tls=True)
    assert identity == f"dn:{ldap_server.root_dn}"


def test_ldaps_verifies_with_the_generated_ca(ldap_server: Slapd) -> None:
    assert ldap_server.ca_file is not None and ldap_server.ldaps_uri is not None
    identity = _tls_connection(ldap_server, ldap_server.ldaps_uri, ldap_server.ca_file,
                               start_tls=False)  # fmt: skip
    assert identity == f"dn:{ldap_server.root_dn}"
    connection = ldap_server.connection(uri=ldap_server.ldaps_uri)
    try:
        assert connection.server.ssl
    finally:
        connection.unbind()


@pytest.mark.parametrize("start_tls", [True, False], ids=["starttls", "ldaps"])
def test_a_client_trusting_an_unrelated_ca_is_refused(ldap_server: Slapd, start_tls: bool) -> None:
    unrelated = ldap_server.make_unrelated_ca()
    assert unrelated.read_bytes() != Path(str(ldap_server.ca_file)).read_bytes()
    uri = ldap_server.uri if start_tls else str(ldap_server.ldaps_uri)
    with pytest.raises(LDAPException) as caught:
        _tls_connection(ldap_server, uri, unrelated, start_tls=start_tls)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_slapd_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """Even a SIGKILLed test run (no teardown, no atexit) leaves no slapd behind."""
    script = (
        "import os, signal, sys\n"
        "from sandbox import Slapd\n"
        "server = Slapd(sys.argv[1]).start()\n"
        "print(server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "orphan")],
        capture_output=True, text=True, timeout=60, cwd=Path(sandbox.__file__).parent.parent,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    pid = int(child.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), f"slapd {pid} outlived its parent"
