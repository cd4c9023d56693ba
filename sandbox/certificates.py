"""Throwaway TLS material for the sandbox slapd, made with ``trustme``.

trustme (a test dependency; Debian 12 packages python3-trustme 0.9, whose
API is all this module uses) makes a CA and certificates it signed in
memory; these functions write them as PEM files, since slapd and provbackup
read files. Keys are written mode 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

_ORGANIZATION = "provbackup sandbox"


@dataclass(frozen=True)
class TlsFiles:
    """A server's TLS material: the CA clients trust, the certificate and its key."""

    ca_certificate: Path
    certificate: Path
    key: Path


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` created with ``mode`` (a key is never readable by others)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def make_certificate_authority(
    directory: str | os.PathLike[str],
    name: str = "ca",
    common_name: str = "provbackup sandbox CA",
) -> tuple[Path, Path]:
    """Create a self-signed throwaway CA.

    Args:
        directory: where ``<name>.crt`` and ``<name>.key`` are written (created).
        name: file stem.
        common_name: names the CA in its subject (as its organizational unit).

    Returns:
        ``(certificate_path, key_path)``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name=_ORGANIZATION, organization_unit_name=common_name)
    return (
        _write(folder / f"{name}.crt", authority.cert_pem.bytes()),
        _write(folder / f"{name}.key", authority.private_key_pem.bytes(), 0o600),
    )


def make_unrelated_certificate_authority(directory: str | os.PathLike[str]) -> Path:
    """Create a second CA that signed nothing, for tests that must be refused.

    Returns:
        The path of its certificate (``unrelated-ca.crt`` in ``directory``).
    """
    certificate, _key = make_certificate_authority(
        directory, name="unrelated-ca", common_name="provbackup unrelated CA"
    )
    return certificate


def make_server_certificate(
    directory: str | os.PathLike[str],
    ca_certificate: Path,
    ca_key: Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    name: str = "server",
) -> tuple[Path, Path]:
    """Create a server certificate signed by the CA in the given files.

    Args:
        directory: where ``<name>.crt`` and ``<name>.key`` are written.
        ca_certificate: the signing CA's certificate (PEM).
        ca_key: the signing CA's private key (PEM).
        hosts: the names the certificate is valid for (subjectAltName):
            IP addresses become IP entries, anything else DNS names; the
            first is also its common name.
        name: file stem.

    Returns:
        ``(certificate_path, key_path)``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA.from_pem(ca_certificate.read_bytes(), ca_key.read_bytes())
    leaf = authority.issue_cert(*hosts, common_name=hosts[0], organization_name=_ORGANIZATION)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return (
        _write(folder / f"{name}.crt", chain),
        _write(folder / f"{name}.key", leaf.private_key_pem.bytes(), 0o600),
    )


def server_tls_files(directory: Path) -> TlsFiles:
    """Return ``ca.crt`` and ``server.crt``/``.key`` (127.0.0.1, localhost) in ``directory``.

    What is missing is made (a new CA also gets a new server certificate);
    what exists is kept, so a restarted server keeps the CA its clients trust.
    """
    ca_certificate, ca_key = directory / "ca.crt", directory / "ca.key"
    certificate, key = directory / "server.crt", directory / "server.key"
    if not (ca_certificate.is_file() and ca_key.is_file()):
        make_certificate_authority(directory)
        certificate.unlink(missing_ok=True)
    if not (certificate.is_file() and key.is_file()):
        make_server_certificate(directory, ca_certificate, ca_key)
    return TlsFiles(ca_certificate, certificate, key)
