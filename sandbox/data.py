"""Loading and clearing a sandbox's data: online (ldap3, ldapadd) and offline (slapadd).

The functions take an open connection or the server's files, so that
:class:`sandbox.Slapd` offers each as a short method.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.entries import Entry
from sandbox.locations import LDAPADD_PROGRAM, SLAPADD_PROGRAM
from sandbox.processes import SandboxError, run_command

if TYPE_CHECKING:
    import ldap3

logger = logging.getLogger(__name__)

_ENTRY_ALREADY_EXISTS = 68
_NO_SUCH_OBJECT = 32


def connect(
    uri: str,
    bind_dn: str,
    password: str,
    *,
    ca_file: Path | None = None,
    start_tls: bool = False,
    **options: Any,
) -> ldap3.Connection:
    """Return an ldap3 connection to ``uri``, bound as ``bind_dn``.

    Args:
        uri: the server, ``ldap://`` or ``ldaps://``.
        bind_dn, password: the simple bind's credentials.
        ca_file: the CA to trust; the certificate is then verified.
        start_tls: send StartTLS before binding.
        **options: passed to ``ldap3.Connection`` (``receive_timeout`` defaults to 60).

    Raises:
        ldap3.core.exceptions.LDAPException: connecting, TLS or the bind failed.
    """
    import ldap3

    # ldap3's name check cannot match an IP address on Python 3.12 and later (Debian
    # 13): it also accepts "localhost", which every sandbox certificate names
    # beside 127.0.0.1 (provbackup checks names itself: provbackup/tlsnames.py).
    tls = (
        ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file), valid_names=["localhost"])
        if ca_file
        else None
    )
    server = ldap3.Server(uri, tls=tls, connect_timeout=5, get_info=ldap3.NONE)
    options.setdefault("receive_timeout", 60)
    auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND if start_tls else ldap3.AUTO_BIND_NO_TLS
    return ldap3.Connection(server, bind_dn, password, auto_bind=auto_bind, **options)


def add_entries(
    connection: ldap3.Connection, entries: Iterable[Entry], *, ignore_existing: bool = False
) -> int:
    """Add entries online, one request each, in the order given (parents first).

    Fine for thousands of entries; for 100,000 use :func:`slapadd`.

    Args:
        connection: a bound connection allowed to add them.
        entries: ``(dn, attributes)`` pairs, e.g. from :func:`sandbox.account_entry`.
        ignore_existing: skip entries that already exist.

    Returns:
        The number of entries added.

    Raises:
        SandboxError: an add was refused; names the DN and slapd's reason.
    """
    added = 0
    for dn, attributes in entries:
        values = {name: list(value) for name, value in attributes.items()}
        if connection.add(dn, attributes=values):  # type: ignore[no-untyped-call,unused-ignore]
            added += 1
            continue
        result = connection.result
        if ignore_existing and result.get("result") == _ENTRY_ALREADY_EXISTS:
            continue
        raise SandboxError(
            f"adding {dn} failed: {result.get('description')} "
            f"({result.get('result')}): {result.get('message')}"
        )
    return added


def delete_below(connection: ldap3.Connection, base_dn: str) -> int:
    """Delete every entry below ``base_dn``, children first; ``base_dn`` itself stays.

    One delete request per entry (about 1,000 a second); throwing the
    database away (:meth:`sandbox.Slapd.reset_database`) is faster for big trees.

    Returns:
        The number of entries deleted (0 also when ``base_dn`` does not exist).

    Raises:
        SandboxError: the search or a delete was refused.
    """
    import ldap3

    found = connection.extend.standard.paged_search(
        base_dn, "(objectClass=*)", ldap3.SUBTREE, attributes=["1.1"],
        paged_size=1000, generator=True,
    )  # fmt: skip
    names = [item["dn"] for item in found if item.get("type") == "searchResEntry"]
    if connection.result.get("result") not in (0, _NO_SUCH_OBJECT):
        raise SandboxError(f"searching {base_dn}: {connection.result}")
    names = [name for name in names if name.lower() != base_dn.lower()]
    names.sort(key=lambda name: name.count(","), reverse=True)  # children first
    for name in names:
        deleted = connection.delete(name)  # type: ignore[no-untyped-call,unused-ignore]
        if not deleted and connection.result.get("result") != _NO_SUCH_OBJECT:
            raise SandboxError(f"deleting {name}: {connection.result}")
    if names:
        logger.debug("sandbox slapd: deleted %d entries below %s", len(names), base_dn)
    return len(names)


@contextlib.contextmanager
def _ldif_file(ldif: str | os.PathLike[str], directory: Path) -> Iterator[Path]:
    """Yield a path holding the LDIF: ``ldif`` if a path, else a temp file in ``directory``."""
    if not isinstance(ldif, str):
        yield Path(ldif)
        return
    with tempfile.NamedTemporaryFile(
        "w", suffix=".ldif", dir=directory, encoding="utf-8", delete=False
    ) as handle:
        handle.write(ldif)
    try:
        yield Path(handle.name)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def slapadd(
    config_file: Path,
    suffix: str,
    ldif: str | os.PathLike[str],
    work_directory: Path,
    *,
    check_schema: bool = True,
) -> None:
    """Bulk-load LDIF into a stopped server's database with ``slapadd -q``.

    Args:
        config_file: the server's slapd.conf.
        suffix: the database to load.
        ldif: LDIF text (a ``str``) or the path of an LDIF file.
        work_directory: where LDIF text is written for slapadd.
        check_schema: False passes ``-s``, which loads entries that break the schema.

    Raises:
        SandboxError: slapadd failed (its output included).
    """
    with _ldif_file(ldif, work_directory) as path:
        command: list[str | os.PathLike[str]] = [
            SLAPADD_PROGRAM, "-q", "-f", config_file, "-b", suffix, "-l", path,
        ]  # fmt: skip
        if not check_schema:
            command.append("-s")
        started = time.monotonic()
        run_command(command, what=f"slapadd of {path}")
    logger.debug("sandbox slapd: slapadd took %.3f s", time.monotonic() - started)


def ldapadd(
    uri: str, bind_dn: str, password: str, ldif: str | os.PathLike[str], work_directory: Path
) -> None:
    """Add LDIF records through a running server with one ``ldapadd`` process.

    The password goes to ldapadd in a 0600 file in ``work_directory``, never in argv.

    Raises:
        SandboxError: ldapadd failed (its output included).
    """
    password_file = work_directory / "ldapadd.password"
    password_file.unlink(missing_ok=True)
    descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password)
    try:
        with _ldif_file(ldif, work_directory) as path:
            run_command([LDAPADD_PROGRAM, "-x", "-H", uri, "-D", bind_dn, "-y", password_file,
                         "-f", path], what=f"ldapadd of {path}")  # fmt: skip
    finally:
        password_file.unlink(missing_ok=True)
