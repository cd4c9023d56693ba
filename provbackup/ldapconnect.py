"""Open and bind one LDAP connection: TLS, StartTLS, the bind, and errors an operator can act on.

:mod:`provbackup.directory` tries the configured URIs in turn with
:func:`open_connection` and wraps the bound connection.
"""

from __future__ import annotations

import contextlib
import re
import ssl

import ldap3
from ldap3.core import exceptions as ldap_exceptions

from provbackup.config import LdapConfig
from provbackup.tlsnames import NameMismatch, check_certificate_names

INVALID_CREDENTIALS = 49


class ConnectFailed(Exception):
    """A URI could not be bound; ``deterministic`` when trying again cannot help."""

    def __init__(self, message: str, *, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


class BindRefused(Exception):
    """The server refused the credentials: never retried."""


# Bind results that retrying cannot change: confidentialityRequired,
# inappropriateAuthentication, insufficientAccessRights, unwillingToPerform.
_DETERMINISTIC_BIND_RESULTS = (13, 48, 50, 53)


def open_connection(config: LdapConfig, uri: str) -> ldap3.Connection:
    """Open ``uri``, upgrade it with StartTLS where configured, and bind.

    Returns the bound connection. Raises ConnectFailed (``deterministic``
    when trying again cannot help) or BindRefused (invalid credentials).
    """
    scheme = uri.split("://", 1)[0].lower()
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(config.ca_file) if config.ca_file else None,
        # ldap3's own name check, broken for IP addresses on Python >= 3.12, is off
        # ("*" passes it); _check_names does it after every handshake (tlsnames.py).
        valid_names=["*"],
    )
    try:
        connection = _connection(config, uri, use_ssl=scheme == "ldaps", tls=tls)
        connection.open()
        if scheme == "ldaps":
            _check_names(connection, uri)
        if config.start_tls and scheme == "ldap":
            _start_tls(connection, uri)
            _check_names(connection, uri)
    except ConnectFailed:
        raise
    except (ldap_exceptions.LDAPException, OSError, ssl.SSLError) as error:
        raise ConnectFailed(
            f"{uri}: {_describe(error)}", deterministic=_is_deterministic(error)
        ) from None
    except _GARBLED as error:
        raise ConnectFailed(_not_ldap(uri, error)) from None
    _bind(connection, config, uri)
    return connection


def _connection(config: LdapConfig, uri: str, *, use_ssl: bool, tls: ldap3.Tls) -> ldap3.Connection:
    """The unopened connection to ``uri``: timeouts, credentials, no schema, no name checks."""
    server = ldap3.Server(
        uri,
        use_ssl=use_ssl,
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=config.timeout,
    )
    return ldap3.Connection(
        server,
        user=config.bind_dn,
        password=config.bind_password,
        auto_bind=ldap3.AUTO_BIND_NONE,
        raise_exceptions=False,
        # ldap3 packs it into SO_RCVTIMEO as an integer.
        receive_timeout=max(1, round(config.timeout + 0.499)),
        auto_escape=False,
        # No schema is read (get_info=NONE), so ldap3 has no names to check: what
        # check_names still does is re-parse and re-escape every DN on the client
        # (refusing "uid=x, ou=y" that slapd accepts) and format every value we
        # never read (raw_attributes only). Off, DNs go out as the server sent them
        # or the user gave them, and a burst is about 10% faster (docs/performance.md).
        check_names=False,
        return_empty_attributes=False,
        read_only=False,
    )


def _start_tls(connection: ldap3.Connection, uri: str) -> None:
    """Upgrade the open ``connection`` with StartTLS; raise ConnectFailed when it cannot be."""
    try:
        started = connection.start_tls()
    except ldap_exceptions.LDAPStartTLSError as error:
        raise ConnectFailed(
            f"{uri}: StartTLS failed: {_describe(error)}",
            deterministic=_is_deterministic(error),
        ) from None
    if not started:
        result = connection.result or {}
        raise ConnectFailed(
            f"{uri}: the server refused StartTLS ({result.get('description')}); "
            "configure TLS on the server, use ldaps://, or set [ldap] start_tls = no "
            "for a trusted local link",
            deterministic=True,
        )


def _bind(connection: ldap3.Connection, config: LdapConfig, uri: str) -> None:
    """Bind ``connection``; raise BindRefused (invalid credentials) or ConnectFailed."""
    try:
        bound = connection.bind()
    except (ldap_exceptions.LDAPException, OSError) as error:
        raise ConnectFailed(
            f"{uri}: bind failed: {_describe(error)}", deterministic=_is_deterministic(error)
        ) from None
    except _GARBLED as error:
        raise ConnectFailed(_not_ldap(uri, error)) from None
    if bound:
        return
    result = connection.result or {}
    code = result.get("result")
    password = _password_source(config)
    if code == INVALID_CREDENTIALS:
        raise BindRefused(
            f"LDAP server {uri} refused the bind as {config.bind_dn!r}: invalid credentials "
            f"(check [ldap] bind_dn and {password})"
        )
    message = result.get("message")
    raise ConnectFailed(
        f"{uri}: bind as {config.bind_dn or 'anonymous'!r} refused: "
        f"{result.get('description')}"
        + (f" ({message})" if message else "")
        + (f"; check {password}" if code in _DETERMINISTIC_BIND_RESULTS else ""),
        deterministic=code in _DETERMINISTIC_BIND_RESULTS,
    )


def _check_names(connection: ldap3.Connection, uri: str) -> None:
    """Refuse the TLS connection unless its verified certificate names the URI's host.

    Raises ConnectFailed (deterministic) after closing the connection.
    """
    socket = connection.socket
    certificate = socket.getpeercert() if isinstance(socket, ssl.SSLSocket) else None
    try:
        if not certificate:
            raise NameMismatch(connection.server.host, [])
        check_certificate_names(certificate, connection.server.host)
    except NameMismatch as mismatch:
        with contextlib.suppress(ldap_exceptions.LDAPException, OSError):
            connection.unbind()  # closing what is refused anyway
        raise ConnectFailed(
            f"{uri}: TLS certificate is for {', '.join(mismatch.names) or 'another host'}, "
            f"not {mismatch.host!r}: use a host name the certificate names in [ldap] uri",
            deterministic=True,
        ) from None


# What ldap3's BER decoder raises when the answer is not LDAP at all (an HTTP or
# SSH server on the port): a connection failure, not an internal error.
_GARBLED = (KeyError, IndexError, ValueError, TypeError)


def _not_ldap(uri: str, error: BaseException) -> str:
    return (
        f"{uri}: the server does not answer like an LDAP server (wrong host or port? "
        f"ldaps:// on an ldap:// port?): {type(error).__name__}: {error}"
    )


def _password_source(config: LdapConfig) -> str:
    """Where the bind password came from, for error messages (never the password)."""
    if config.bind_password_file is not None:
        return f"the password in {str(config.bind_password_file)!r} ([ldap] bind_password_file)"
    if config.bind_password is not None:
        return "[ldap] bind_password"
    return "the bind password (none configured: anonymous bind)"


def _is_deterministic(error: BaseException) -> bool:
    """True for TLS failures that no retry can change (no StartTLS, a bad certificate)."""
    text = str(error)
    return any(
        marker in text
        for marker in (
            "startTLS failed - protocolError",
            "certificate verify failed",
            "CERTIFICATE_VERIFY_FAILED",
        )
    )


def _describe(error: BaseException) -> str:
    text = str(error)
    if "startTLS failed - protocolError" in text:
        return (
            "the server does not offer StartTLS; configure TLS on the server, use ldaps://, "
            "or set [ldap] start_tls = no for a trusted local link"
        )
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = re.search(r"certificate verify failed: ([^(]+?)\s*\(", text)
        return "TLS certificate verification failed (check [ldap] ca_file): " + (
            reason.group(1) if reason else text
        )
    return text or type(error).__name__
