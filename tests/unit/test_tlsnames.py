"""The certificate-name rules provbackup applies itself on every Python (tlsnames.py).

The certificates are what ``ssl.SSLSocket.getpeercert()`` returns; the real
handshakes against slapd are in tests/system/test_tls.py.
"""

from __future__ import annotations

import pytest

from provbackup.tlsnames import NameMismatch, check_certificate_names


def certificate(*alternatives: tuple[str, str], common_name: str = "ldap.example.org") -> dict:
    return {
        "subject": ((("organizationName", "Example"),), (("commonName", common_name),)),
        "subjectAltName": alternatives,
    }


@pytest.mark.parametrize(
    ("alternatives", "host"),
    [
        ((("IP Address", "127.0.0.1"),), "127.0.0.1"),
        ((("DNS", "localhost"), ("IP Address", "192.0.2.7")), "192.0.2.7"),
        ((("IP Address", "2001:DB8:0:0:0:0:0:1\n"),), "2001:db8::1"),  # as OpenSSL prints it
        ((("IP Address", "2001:DB8:0:0:0:0:0:1"),), "[2001:db8::1]"),
        ((("DNS", "ldap.example.org"),), "LDAP.Example.ORG"),
        ((("DNS", "ldap.example.org"),), "ldap.example.org."),
        ((("DNS", "*.example.org"),), "ldap1.example.org"),
        ((("DNS", "other.example"), ("DNS", "ldap.example.org")), "ldap.example.org"),
    ],
)
def test_a_name_the_certificate_has_matches(alternatives, host: str) -> None:
    check_certificate_names(certificate(*alternatives), host)


@pytest.mark.parametrize(
    ("alternatives", "host"),
    [
        ((("IP Address", "127.0.0.2"),), "127.0.0.1"),
        # An address written as a DNS name, or a name as an address: not the same thing.
        ((("DNS", "127.0.0.1"),), "127.0.0.1"),
        ((("IP Address", "127.0.0.1"),), "localhost"),
        ((("DNS", "ldap.example.org"),), "ldap.example.org.evil.example"),
        ((("DNS", "ldap.example.org"),), "example.org"),
        # The wildcard is one whole label, the leftmost, with a domain after it.
        ((("DNS", "*.example.org"),), "a.b.example.org"),
        ((("DNS", "*.example.org"),), "example.org"),
        ((("DNS", "l*.example.org"),), "ldap.example.org"),
        ((("DNS", "*"),), "ldap"),
        ((("DNS", "ldap.*.org"),), "ldap.example.org"),
        ((("DNS", "*.*.org"),), "a.example.org"),
    ],
)
def test_a_name_the_certificate_does_not_have_is_refused(alternatives, host: str) -> None:
    with pytest.raises(NameMismatch) as refused:
        check_certificate_names(certificate(*alternatives), host)

    assert refused.value.host == host
    assert refused.value.names == [value.strip() for _, value in alternatives]


def test_the_common_name_counts_only_without_a_dns_alternative_name() -> None:
    check_certificate_names(certificate(common_name="ldap.example.org"), "ldap.example.org")
    check_certificate_names(
        certificate(("IP Address", "192.0.2.7"), common_name="ldap.example.org"),
        "ldap.example.org",
    )
    with pytest.raises(NameMismatch) as refused:
        check_certificate_names(
            certificate(("DNS", "other.example"), common_name="ldap.example.org"),
            "ldap.example.org",
        )
    assert refused.value.names == ["other.example"]
    # Never for an address.
    with pytest.raises(NameMismatch):
        check_certificate_names(certificate(common_name="127.0.0.1"), "127.0.0.1")


def test_a_certificate_without_names_is_refused_saying_so() -> None:
    with pytest.raises(NameMismatch) as refused:
        check_certificate_names({}, "ldap.example.org")
    assert refused.value.names == []
    assert "no name" in str(refused.value)
