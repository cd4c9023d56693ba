"""Does the LDAP server's certificate name the host in ``[ldap] uri``? (RFC 6125, RFC 2818).

ldap3 checks the name with ``ssl.match_hostname``, which Python 3.12 removed;
on Python 3.12 and later (Debian 13 has 3.13) it falls back to a copy of
Python 3.4's function, which knows no IP addresses: a certificate for
``127.0.0.1`` was refused for ``ldaps://127.0.0.1``. :mod:`provbackup.ldapconnect`
turns ldap3's check off and calls :func:`check_certificate_names` instead, after
the handshake verified the chain, so the rules are the same on every Python:
those of Python 3.11's ``ssl.match_hostname``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any


class NameMismatch(Exception):
    """The certificate does not name the host; ``names`` are the names it has."""

    def __init__(self, host: str, names: list[str]) -> None:
        super().__init__(f"certificate for {', '.join(names) or 'no name'}, not {host!r}")
        self.host = host
        self.names = names


def check_certificate_names(certificate: Mapping[str, Any], host: str) -> None:
    """Check that ``certificate`` is valid for ``host``.

    Takes the peer certificate as ``ssl.SSLSocket.getpeercert()`` returns it
    (a verified one) and the host of the URI (a DNS name or an IP address,
    IPv6 with or without brackets). An IP address matches only an
    ``IP Address`` subjectAltName; a DNS name matches a ``DNS``
    subjectAltName (case-insensitive; ``*`` only as the whole leftmost label,
    matching one label), or the subject's commonName where the certificate
    has no ``DNS`` subjectAltName at all.

    Returns nothing. Raises NameMismatch naming what the certificate is for.
    """
    alternatives = [(kind, str(value)) for kind, value in certificate.get("subjectAltName", ())]
    address = _address(host)
    if address is not None:
        if any(kind == "IP Address" and _address(value) == address for kind, value in alternatives):
            return
    else:
        dns = [value for kind, value in alternatives if kind == "DNS"]
        candidates = dns or [
            value
            for relative_name in certificate.get("subject", ())
            for key, value in relative_name
            if key == "commonName"
        ]
        if any(_dns_match(str(name), host) for name in candidates):
            return
    names = [value.strip() for _, value in alternatives] or [
        str(value)
        for relative_name in certificate.get("subject", ())
        for key, value in relative_name
        if key == "commonName"
    ]
    raise NameMismatch(host, names)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` spells (brackets and whitespace allowed), or None."""
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _dns_match(pattern: str, host: str) -> bool:
    """``pattern`` (a certificate's DNS name) matches ``host``, as Python 3.11 matched them."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    if "*" not in pattern:
        return pattern == host
    leftmost, dot, remainder = pattern.partition(".")
    # One wildcard, the whole leftmost label, with labels after it ("*.example.org").
    if leftmost != "*" or not dot or "*" in remainder or not remainder:
        return False
    host_leftmost, host_dot, host_remainder = host.partition(".")
    return bool(host_leftmost and host_dot) and host_remainder == remainder
