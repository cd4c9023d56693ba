"""TLS to the directory, against real slapd servers with throwaway certificate authorities.

The session slapd (``ldap_server``) serves ldaps:// and StartTLS with a
certificate from its own CA. provbackup must verify that certificate by
default, over both, refuse a server whose certificate the configured CA did
not sign or that names another host (exit 69, one clear line), and talk
plain LDAP only where ``[ldap] start_tls = no`` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import read_entry, run, run_process, write_config

from sandbox import (
    Slapd,
    account_entry,
    make_certificate_authority,
    make_server_certificate,
)

VERIFY_FAILED = "TLS certificate verification failed (check [ldap] ca_file)"


def one_error_line(result) -> str:
    """The run's error: exactly one ``provbackup: error:`` line, no traceback."""
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("provbackup: error:")]
    assert len(errors) == 1, result.err
    return errors[0]


@pytest.fixture
def wrong_name_server(tmp_path: Path) -> Iterator[tuple[Slapd, Path]]:
    """A slapd whose certificate is signed by a CA we trust but names another host."""
    folder = tmp_path / "wrong-name" / "tls"
    ca_certificate, ca_key = make_certificate_authority(folder)
    make_server_certificate(folder, ca_certificate, ca_key, hosts=("backup-ldap.example",))
    with Slapd(tmp_path / "wrong-name", tls=True) as server:
        server.add_base()
        yield server, ca_certificate


@pytest.fixture
def other_address_server(tmp_path: Path) -> Iterator[tuple[Slapd, Path]]:
    """A slapd on 127.0.0.1 whose trusted certificate is for the address 127.0.0.2 only."""
    folder = tmp_path / "other-address" / "tls"
    ca_certificate, ca_key = make_certificate_authority(folder)
    make_server_certificate(folder, ca_certificate, ca_key, hosts=("127.0.0.2",))
    with Slapd(tmp_path / "other-address", tls=True) as server:
        server.add_base()
        yield server, ca_certificate


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd without any TLS (no certificate, no StartTLS)."""
    with Slapd(tmp_path / "plain") as server:
        server.add_base()
        yield server


def with_an_entry(server: Slapd) -> str:
    """Add one due entry; returns its DN."""
    dn, attributes = account_entry("5100001", base_dn=server.accounts_dn)
    server.add_entries([(dn, attributes)])
    return dn


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
def test_the_configured_ca_verifies_ldaps_and_starttls(
    tmp_path: Path, ldap_server: Slapd, scheme: str
) -> None:
    uri = ldap_server.ldaps_uri if scheme == "ldaps" else ldap_server.uri
    setup = write_config(tmp_path, ldap_server, uri=uri)
    dn = with_an_entry(ldap_server)
    result = run(setup, "process")
    assert result.code == 0, result.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
@pytest.mark.parametrize("trust", ["unrelated-ca", "system-cas"])
def test_a_certificate_the_configured_ca_did_not_sign_is_refused_with_exit_69(
    tmp_path: Path, ldap_server: Slapd, scheme: str, trust: str
) -> None:
    """An unrelated CA, or none configured (the system's CAs): verification is on by default."""
    uri = ldap_server.ldaps_uri if scheme == "ldaps" else ldap_server.uri
    setup = write_config(tmp_path, ldap_server, uri=uri)
    if trust == "unrelated-ca":
        text = setup.config.read_text().replace(
            str(ldap_server.ca_file), str(ldap_server.make_unrelated_ca())
        )
    else:
        text = "".join(
            line + "\n"
            for line in setup.config.read_text().splitlines()
            if not line.startswith("ca_file")
        )
    setup.config.write_text(text)
    dn = with_an_entry(ldap_server)

    for command in ("process", "scan"):
        result = run_process(setup, command)
        assert result.code == 69, result.err
        line = one_error_line(result)
        assert VERIFY_FAILED in line and uri in line, line
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"], "nothing was claimed"


def test_start_tls_off_does_not_turn_off_ldaps_verification(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(
        tmp_path,
        ldap_server,
        uri=ldap_server.ldaps_uri,
        start_tls="no",
        ca_file=str(ldap_server.make_unrelated_ca()),
    )
    result = run_process(setup, "scan")
    assert result.code == 69
    assert VERIFY_FAILED in one_error_line(result)


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
def test_a_certificate_for_another_host_name_is_refused(
    tmp_path: Path, wrong_name_server: tuple[Slapd, Path], scheme: str
) -> None:
    server, ca_certificate = wrong_name_server
    uri = server.ldaps_uri if scheme == "ldaps" else server.uri
    setup = write_config(tmp_path, server, uri=uri, ca_file=str(ca_certificate))
    result = run_process(setup, "scan")
    assert result.code == 69, result.err
    line = one_error_line(result)
    assert "TLS certificate is for backup-ldap.example, not '127.0.0.1'" in line, line


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
def test_the_certificates_dns_name_and_ip_address_are_both_accepted(
    tmp_path: Path, ldap_server: Slapd, scheme: str
) -> None:
    """The session certificate names 127.0.0.1 (an IP entry) and localhost (a DNS entry).

    ldap3's own check knows no IP entries on Python 3.12 and later (Debian 13):
    provbackup checks the names itself, alike on every Python.
    """
    uri = ldap_server.ldaps_uri if scheme == "ldaps" else ldap_server.uri
    assert uri is not None and "//127.0.0.1:" in uri
    for spelled in (uri, uri.replace("//127.0.0.1:", "//localhost:")):
        result = run_process(write_config(tmp_path, ldap_server, uri=spelled), "scan")
        assert result.code == 0, (spelled, result.err)


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
def test_a_certificate_for_another_ip_address_is_refused(
    tmp_path: Path, other_address_server: tuple[Slapd, Path], scheme: str
) -> None:
    server, ca_certificate = other_address_server
    uri = server.ldaps_uri if scheme == "ldaps" else server.uri
    setup = write_config(tmp_path, server, uri=uri, ca_file=str(ca_certificate))
    dn = with_an_entry(server)
    for command in ("process", "scan"):
        result = run_process(setup, command)
        assert result.code == 69, result.err
        line = one_error_line(result)
        assert "TLS certificate is for 127.0.0.2, not '127.0.0.1'" in line, line
        assert "(not retried" in result.err, result.err
    assert read_entry(server, dn)["sstprovisioningmode"] == ["add"], "nothing was claimed"


def test_plain_ldap_is_used_only_where_start_tls_is_turned_off(
    tmp_path: Path, plain_server: Slapd, ldap_server: Slapd
) -> None:
    # A server without TLS: refused unless configured so; never a silent fallback.
    refused = write_config(tmp_path, plain_server, uri=plain_server.uri)
    result = run_process(refused, "scan")
    assert result.code == 69
    line = one_error_line(result)
    assert "does not offer StartTLS" in line and "start_tls = no" in line, line

    allowed = write_config(tmp_path, plain_server, uri=plain_server.uri, start_tls="no")
    dn = with_an_entry(plain_server)
    assert run(allowed, "process").code == 0
    assert read_entry(plain_server, dn)["sstprovisioningmode"] == ["added"]
    # And the TLS server too talks plain LDAP only when told to.
    plain_to_tls = write_config(tmp_path, ldap_server, uri=ldap_server.uri, start_tls="no")
    debug = run_process(plain_to_tls, "-v", "scan")
    assert debug.code == 0, debug.err
    assert " -ZZ " not in debug.err
    default = run_process(write_config(tmp_path, ldap_server, uri=ldap_server.uri), "-v", "scan")
    assert default.code == 0 and " -ZZ " in default.err
