"""A throwaway local OpenLDAP server (slapd) for the tests, the demo and benchmarks.

:class:`Slapd` writes an old-style ``slapd.conf`` into a working directory,
runs Debian's ``/usr/sbin/slapd`` on free ports of 127.0.0.1 in the
foreground of a child process and stops it again. It loads Debian's core,
cosine, nis and inetorgperson schemas plus, by default, the project's own
``schema/provbackup.schema`` (a stoney cloud subset plus
``sstProvisioningDate``); pass ``schema_files=[stoney_schema_path()]`` to run
against the real stoney cloud schema instead (never both: they define the
same OIDs).

Directory layout of a sandbox (``suffix`` defaults to ``dc=stoney-cloud,dc=org``)::

    <suffix>
      ou=services
        ou=backup
          ou=accounts          <- Slapd.accounts_dn, the accounts' base DN
            uid=3723707        <- account_entry("3723707", base_dn=accounts_dn)

:func:`account_entry` builds a backup-account entry shaped like the stoney
cloud's documented example and :func:`entries_to_ldif` turns entries into
LDIF for the fast offline load (:meth:`Slapd.load_ldif_offline`, slapadd).

Only the standard library is imported at module level; ldap3 is imported by
the functions that need it.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ldap3

logger = logging.getLogger(__name__)

__all__ = [
    "ACCOUNTS_RDNS",
    "DATE_ATTRIBUTES",
    "DEFAULT_INDEXES",
    "DEFAULT_INTERVALS",
    "DEFAULT_ROOT_PASSWORD",
    "DEFAULT_SUFFIX",
    "STONEY_SCHEMA_VARIABLE",
    "Entry",
    "SandboxError",
    "Slapd",
    "account_entry",
    "entries_to_ldif",
    "free_port",
    "jailkit_home_directory",
    "make_certificate_authority",
    "make_server_certificate",
    "make_unrelated_certificate_authority",
    "provbackup_schema_path",
    "stoney_schema_path",
]

Entry = tuple[str, Mapping[str, Sequence[str | bytes | int]]]
"""An LDAP entry as ``(dn, {attribute: [values]})``."""

DEFAULT_SUFFIX = "dc=stoney-cloud,dc=org"
DEFAULT_ROOT_PASSWORD = "sandbox-secret"
ACCOUNTS_RDNS = "ou=accounts,ou=backup,ou=services"
"""The accounts' base DN relative to the suffix, as in the stoney cloud."""

DEFAULT_INDEXES = (
    "objectClass eq",
    "uid eq",
    "sstProvisioningState eq",
    "sstProvisioningMode eq",
)

SLAPD_PROGRAM = Path("/usr/sbin/slapd")
SLAPADD_PROGRAM = Path("/usr/sbin/slapadd")
LDAPADD_PROGRAM = "ldapadd"
MODULE_DIRECTORY = Path("/usr/lib/ldap")
DEBIAN_SCHEMA_DIRECTORY = Path("/etc/ldap/schema")
BASE_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
"""Debian schemas always loaded first (in this order)."""

STONEY_SCHEMA_VARIABLE = "PROVBACKUP_STONEY_SCHEMA"
"""Environment variable naming the stoney cloud ``sst.schema`` file."""

_REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
_START_ATTEMPTS = 3
_CERTIFICATE_DAYS = 30

# Processes started by this module and not yet stopped: stopped at exit so that
# an interpreter ending without Slapd.stop() leaves no slapd behind.
_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()


class SandboxError(RuntimeError):
    """The sandbox slapd could not be prepared, started, loaded or stopped."""


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free right now.

    The port is found by binding to port 0 and closing the socket again, so
    another process may take it before it is used; :meth:`Slapd.start` retries
    with new ports when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def provbackup_schema_path() -> Path:
    """Return the path of the project's ``schema/provbackup.schema``.

    Raises:
        FileNotFoundError: the file is not in the checkout this module runs from.
    """
    path = _REPOSITORY_ROOT / "schema" / "provbackup.schema"
    if not path.is_file():
        raise FileNotFoundError(f"provbackup schema not found: {path}")
    return path


def stoney_schema_path() -> Path | None:
    """Find the stoney cloud's real schema, ``shared/reference/sst.schema``.

    Looks at ``$PROVBACKUP_STONEY_SCHEMA`` first (when set, only there), then
    at ``shared/reference/sst.schema`` in the repository's folder and in each
    folder above it (CI puts ``shared/`` beside the clone, i.e. at
    ``<repo>/../shared``).

    Returns:
        The path of an existing file, or None when there is none.
    """
    configured = os.environ.get(STONEY_SCHEMA_VARIABLE)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return path.resolve()
        logger.warning("%s=%s: no such file", STONEY_SCHEMA_VARIABLE, configured)
        return None
    for folder in (_REPOSITORY_ROOT, *_REPOSITORY_ROOT.parents):
        candidate = folder / "shared" / "reference" / "sst.schema"
        if candidate.is_file():
            return candidate
    return None


def jailkit_home_directory(root: str | os.PathLike[str], uid: str) -> str:
    """Return the jailkit ``homeDirectory`` of a numeric uid in the stoney layout.

    ``jailkit_home_directory("/var/backup", "3723707")`` is
    ``/var/backup/7/707/723/3723707/chroot/./home/3723707`` (the uid is
    zero-padded to 6 digits for the path components; ``/./`` marks the chroot).

    Raises:
        ValueError: the uid is not made of ASCII digits.
    """
    if not (uid.isascii() and uid.isdigit()):
        raise ValueError(f"the stoney layout needs a numeric uid, not {uid!r}")
    padded = uid.zfill(6)
    account = Path(root) / padded[-1] / padded[-3:] / padded[-6:-3] / uid
    return f"{account}/chroot/./home/{uid}"


def _escape_rdn_value(value: str) -> str:
    """Escape a string for use as an RDN value (RFC 4514)."""
    escaped = "".join(f"\\{char}" if char in ',+"\\<>;=' else char for char in value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _run(command: Sequence[str | os.PathLike[str]], *, what: str, **options: Any) -> str:
    """Run a command, return its combined output; raise SandboxError if it fails."""
    try:
        completed = subprocess.run(
            [str(part) for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
            **options,
        )
    except OSError as error:
        raise SandboxError(f"{what}: cannot run {command[0]}: {error}") from error
    if completed.returncode != 0:
        raise SandboxError(
            f"{what} failed (exit {completed.returncode}): {completed.stdout.strip()}"
        )
    return completed.stdout


# ---------------------------------------------------------------------------
# throwaway certificates (openssl CLI)
# ---------------------------------------------------------------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no

[subject]
CN = {common_name}

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {alt_names}
"""

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _write_openssl_config(
    directory: Path, stem: str, common_name: str, hosts: Sequence[str] = ("localhost",)
) -> Path:
    """Write a minimal openssl configuration for one certificate; return its path."""
    names = []
    for host in hosts:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            names.append(f"DNS:{host}")
        else:
            names.append(f"IP:{host}")
    path = directory / f"{stem}.cnf"
    path.write_text(_OPENSSL_CONFIG.format(common_name=common_name, alt_names=", ".join(names)))
    return path


def make_certificate_authority(
    directory: str | os.PathLike[str],
    name: str = "ca",
    common_name: str = "provbackup sandbox CA",
) -> tuple[Path, Path]:
    """Create a self-signed throwaway CA (EC P-256, valid 30 days) with openssl.

    Args:
        directory: where ``<name>.crt`` and ``<name>.key`` are written (created).
        name: file stem.
        common_name: the CA's subject CN.

    Returns:
        ``(certificate_path, key_path)``.

    Raises:
        SandboxError: openssl failed or is missing.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / f"{name}.crt", folder / f"{name}.key"
    config = _write_openssl_config(folder, name, common_name)
    _run(
        ["openssl", "req", "-x509", *_EC_KEY, "-keyout", key, "-out", certificate,
         "-days", str(_CERTIFICATE_DAYS), "-config", config, "-extensions", "ca",
         "-set_serial", f"0x{secrets.token_hex(8)}"],
        what=f"creating CA {certificate}",
    )  # fmt: skip
    key.chmod(0o600)
    return certificate, key


def make_unrelated_certificate_authority(directory: str | os.PathLike[str]) -> Path:
    """Create a second CA that signed nothing, for tests that must be refused.

    Returns:
        The path of its certificate (``unrelated-ca.crt`` in ``directory``).

    Raises:
        SandboxError: openssl failed or is missing.
    """
    certificate, _key = make_certificate_authority(
        directory, name="unrelated-ca", common_name="provbackup unrelated CA"
    )
    return certificate


def make_server_certificate(
    directory: str | os.PathLike[str],
    ca_certificate: Path,
    ca_key: Path,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    name: str = "server",
) -> tuple[Path, Path]:
    """Create a server certificate signed by the given CA.

    Args:
        directory: where ``<name>.crt`` and ``<name>.key`` are written.
        ca_certificate: the signing CA's certificate.
        ca_key: the signing CA's private key.
        hosts: subjectAltName entries; IP addresses become ``IP:``, names ``DNS:``.
        name: file stem.

    Returns:
        ``(certificate_path, key_path)``.

    Raises:
        SandboxError: openssl failed or is missing.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / f"{name}.crt", folder / f"{name}.key"
    request = folder / f"{name}.csr"
    config = _write_openssl_config(folder, name, hosts[0], hosts)
    _run(
        ["openssl", "req", "-new", *_EC_KEY, "-keyout", key, "-out", request,
         "-config", config],
        what=f"creating the key and request {request}",
    )  # fmt: skip
    _run(
        ["openssl", "x509", "-req", "-in", request, "-CA", ca_certificate, "-CAkey", ca_key,
         "-set_serial", f"0x{secrets.token_hex(8)}", "-days", str(_CERTIFICATE_DAYS),
         "-extfile", config, "-extensions", "server", "-out", certificate],
        what=f"signing {certificate}",
    )  # fmt: skip
    key.chmod(0o600)
    return certificate, key


# ---------------------------------------------------------------------------
# entries and LDIF
# ---------------------------------------------------------------------------

# MUST attributes of the classes account_entry uses (from the schemas), used to
# replace a class by extensibleObject when the caller omits one of them.
_REQUIRED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "account": frozenset({"uid"}),
    "posixAccount": frozenset({"cn", "uid", "uidNumber", "gidNumber", "homeDirectory"}),
    "shadowAccount": frozenset({"uid"}),
    "sstBackup": frozenset({
        "sstBackupIntervalHourly", "sstBackupIntervalDaily", "sstBackupIntervalWeekly",
        "sstBackupIntervalMonthly", "sstBackupIntervalYearly", "sstBackupWarningDays",
        "sstBackupWarningNumbers", "sstBackupWarningOn", "sstNotificationWarningLevel",
        "sstNotificationWarningMedium", "sstUseSelfcare", "sstUseSSH", "sstIsActive",
    }),
    "sstRelationship": frozenset(),
    "sstProvisioning": frozenset({
        "sstProvisioningExecutionDate", "sstProvisioningMode", "sstProvisioningState",
    }),
    "provbackupProvisioning": frozenset({
        "sstProvisioningDate", "sstProvisioningMode", "sstProvisioningState",
    }),
}  # fmt: skip
_REQUIRED_LOWER = {
    name: frozenset(attribute.lower() for attribute in required)
    for name, required in _REQUIRED_ATTRIBUTES.items()
}

DATE_ATTRIBUTES = ("sstProvisioningExecutionDate", "sstProvisioningDate")
"""The two names of the provisioning date: the stoney schema's and the documentation's."""

DEFAULT_INTERVALS = {"hourly": 0, "daily": 7, "weekly": 4, "monthly": 3, "yearly": 0}


def account_entry(
    uid: str,
    *,
    base_dn: str,
    uid_number: int | None = None,
    gid_number: int | None = None,
    mode: str = "add",
    state: str = "0",
    date: str = "0",
    date_attribute: str = "sstProvisioningExecutionDate",
    quota: int | None = 1073741824,
    intervals: Mapping[str, int] | None = None,
    active: bool = True,
    home_directory: str | None = None,
    extra: Mapping[str, Sequence[str]] | None = None,
    omit: Iterable[str] = (),
) -> tuple[str, dict[str, list[str]]]:
    """Build a backup-account entry shaped like the stoney cloud's documented example.

    The entry has the object classes account, posixAccount, shadowAccount,
    sstBackup, sstRelationship and sstProvisioning (provbackupProvisioning
    when ``date_attribute`` is ``sstProvisioningDate``), ``uid``, ``cn``,
    ``uidNumber``, ``gidNumber``, ``homeDirectory``, ``loginShell``, every
    sstBackup MUST attribute, ``sstQuota``, sstRelationship owner UIDs and the
    three provisioning attributes. The function is pure: it talks to no server.

    Args:
        uid: the account's uid (also its RDN and cn).
        base_dn: the DN the entry goes under, usually ``Slapd.accounts_dn``.
        uid_number: uidNumber; default the uid when it is numeric, else 10000.
        gid_number: gidNumber; default the uidNumber.
        mode: sstProvisioningMode.
        state: sstProvisioningState.
        date: the provisioning date value (``0`` or ``YYYYMMDD``).
        date_attribute: ``sstProvisioningExecutionDate`` (stoney schema,
            INTEGER) or ``sstProvisioningDate`` (the documentation's name,
            a string; only in our own schema).
        quota: sstQuota in bytes; None leaves it out.
        intervals: retention counts by ``hourly``/``daily``/``weekly``/
            ``monthly``/``yearly``; missing keys take the defaults 0, 7, 4, 3, 0.
        active: sstIsActive TRUE or FALSE.
        home_directory: homeDirectory, normally the jailkit form
            ``<root>/7/707/723/3723707/chroot/./home/3723707``
            (see :func:`jailkit_home_directory`). None means "no homeDirectory":
            since posixAccount requires one, the entry then carries
            extensibleObject instead of posixAccount (see ``omit``).
        extra: attributes merged in last, replacing generated attributes of the
            same name (names compare case-insensitively), e.g.
            ``{"sstProvisioningReturnValue": ["3"]}``.
        omit: attribute names to leave out, for malformed-entry tests. The
            schema would reject an entry lacking a MUST attribute, so every
            object class that requires an omitted attribute is dropped and
            ``extensibleObject`` is added instead: the entry keeps all its other
            attributes and is accepted, just without e.g. ``uidNumber``. Tests
            that need the entry to keep its classes must load it offline with
            ``Slapd.load_ldif_offline(..., check_schema=False)``.

    Returns:
        ``(dn, attributes)`` with the DN ``uid=<uid>,<base_dn>`` and every
        value a string.

    Raises:
        ValueError: an unknown ``date_attribute``, an unknown interval name, an
            empty uid, or omitting ``uid`` or ``objectClass`` (the RDN needs uid).
    """
    if not uid:
        raise ValueError("uid must not be empty")
    if date_attribute not in DATE_ATTRIBUTES:
        raise ValueError(f"date_attribute must be one of {DATE_ATTRIBUTES}, not {date_attribute!r}")
    counts = dict(DEFAULT_INTERVALS)
    for interval, count in (intervals or {}).items():
        if interval not in counts:
            raise ValueError(f"unknown interval {interval!r}, expected one of {tuple(counts)}")
        counts[interval] = count
    omitted = {name.lower() for name in omit}
    if home_directory is None:
        omitted.add("homedirectory")
    if omitted & {"uid", "objectclass"}:
        raise ValueError("uid and objectClass cannot be omitted (uid names the entry)")

    if uid_number is None:
        uid_number = int(uid) if uid.isascii() and uid.isdigit() else 10000
    if gid_number is None:
        gid_number = uid_number
    provisioning_class = (
        "sstProvisioning" if date_attribute == "sstProvisioningExecutionDate"
        else "provbackupProvisioning"
    )  # fmt: skip
    classes = ["account", "posixAccount", "shadowAccount", "sstBackup", "sstRelationship",
               provisioning_class]  # fmt: skip

    def boolean(value: bool) -> list[str]:
        return ["TRUE" if value else "FALSE"]

    attributes: dict[str, list[str]] = {
        "objectClass": classes,
        "uid": [uid],
        "cn": [uid],
        "uidNumber": [str(uid_number)],
        "gidNumber": [str(gid_number)],
        "homeDirectory": [home_directory or ""],
        "loginShell": ["/usr/sbin/jk_chrootsh"],
        "sstBackupIntervalHourly": [str(counts["hourly"])],
        "sstBackupIntervalDaily": [str(counts["daily"])],
        "sstBackupIntervalWeekly": [str(counts["weekly"])],
        "sstBackupIntervalMonthly": [str(counts["monthly"])],
        "sstBackupIntervalYearly": [str(counts["yearly"])],
        "sstBackupWarningDays": ["3"],
        "sstBackupWarningNumbers": ["3"],
        "sstBackupWarningOn": boolean(True),
        "sstNotificationWarningLevel": ["85"],
        "sstNotificationWarningMedium": ["mail"],
        "sstUseSelfcare": boolean(True),
        "sstUseSSH": boolean(True),
        "sstIsActive": boolean(active),
        "sstQuota": [str(quota)],
        "sstBelongsToResellerUID": ["4000000"],
        "sstBelongsToCustomerUID": ["4000001"],
        "sstBelongsToPersonUID": ["4000002"],
        "sstProvisioningMode": [mode],
        "sstProvisioningState": [state],
        date_attribute: [date],
    }
    if quota is None:
        omitted.add("sstquota")

    if omitted:
        dropped = [name for name in classes if _REQUIRED_LOWER[name] & omitted]
        if dropped:
            classes[:] = [name for name in classes if name not in dropped]
            classes.append("extensibleObject")
        attributes = {
            name: values for name, values in attributes.items() if name.lower() not in omitted
        }
    for name, values in (extra or {}).items():
        for existing in [key for key in attributes if key.lower() == name.lower()]:
            del attributes[existing]
        attributes[name] = [str(value) for value in values]
    return f"uid={_escape_rdn_value(uid)},{base_dn}", attributes


# RFC 2849: a value must be base64-encoded if it is not ASCII, holds NUL, LF or
# CR, starts with space, colon or "<" or (our choice, for safety) ends with space.
_UNSAFE_LDIF_VALUE = re.compile(r"[^\x01-\x09\x0b\x0c\x0e-\x7f]|^[ :<]| $")


def _ldif_line(name: str, value: str | bytes | int) -> str:
    """Format one ``name: value`` LDIF line, base64-encoding unsafe values (RFC 2849)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return f"{name}:: {base64.b64encode(value).decode('ascii')}"
    text = str(value)
    if text and _UNSAFE_LDIF_VALUE.search(text):
        return f"{name}:: {base64.b64encode(text.encode('utf-8')).decode('ascii')}"
    return f"{name}: {text}"


def entries_to_ldif(entries: Iterable[Entry]) -> str:
    """Turn entries into LDIF content records (for slapadd or ldapadd).

    Args:
        entries: ``(dn, {attribute: [values]})`` pairs; values may be str,
            bytes or int. Unsafe values (non-ASCII, leading space, ...) are
            base64-encoded.

    Returns:
        The LDIF text, one record per entry, separated by blank lines.
    """
    records = []
    for dn, attributes in entries:
        lines = [_ldif_line("dn", dn)]
        for name, values in attributes.items():
            lines.extend(_ldif_line(name, value) for value in values)
        records.append("\n".join(lines) + "\n")
    return "\n".join(records)


def _suffix_entry(suffix: str) -> Entry:
    """Return the entry for the suffix itself, from the type of its first RDN."""
    first = suffix.split(",", 1)[0]
    attribute, _, value = first.partition("=")
    attribute = attribute.strip().lower()
    if attribute == "dc":
        return suffix, {"objectClass": ["dcObject", "organization"], "dc": [value], "o": [value]}
    if attribute == "o":
        return suffix, {"objectClass": ["organization"], "o": [value]}
    if attribute == "ou":
        return suffix, {"objectClass": ["organizationalUnit"], "ou": [value]}
    raise ValueError(f"cannot build an entry for the suffix {suffix!r} (use dc=, o= or ou=)")


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send slapd SIGTERM when the process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort only
        return


def _stop_leftovers() -> None:
    """Terminate every slapd this module started and nobody stopped (atexit)."""
    for process in list(_LIVE_PROCESSES):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        _LIVE_PROCESSES.discard(process)


atexit.register(_stop_leftovers)


class _PortInUse(SandboxError):
    """slapd could not bind one of its ports."""


class Slapd:
    """A throwaway slapd serving one mdb database from a working directory.

    Construct, then :meth:`start` (or use it as a context manager, which
    starts and stops it). Ports are chosen at construction and kept by
    :meth:`restart`, so clients configured with :attr:`uri` still work after
    a fault test stopped and restarted the server. The database lives in
    ``<directory>/db`` and survives :meth:`stop`.

    Files in the working directory: ``slapd.conf``, ``slapd.log`` (slapd's
    stderr: start-up errors, more with ``debug_level="stats"``), ``slapd.pid``,
    ``slapd.args``, ``db/`` and, with ``tls=True``, ``tls/`` (ca.crt, ca.key,
    server.crt, server.key).

    Attributes:
        directory: the working directory.
        suffix, root_dn, root_password: the database suffix and its rootdn/rootpw.
        schema_files: the schema files loaded, Debian's base schemas first.
        indexes: the ``index`` lines (without the keyword).
        host, port, ldaps_port: where it listens (ldaps_port is None without TLS).
        ca_file: the CA certificate clients must trust (None without TLS; the
            file exists once the server was started or a load prepared it).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        suffix: str = DEFAULT_SUFFIX,
        root_dn: str | None = None,
        root_password: str = DEFAULT_ROOT_PASSWORD,
        schema_files: Sequence[str | os.PathLike[str]] | None = None,
        indexes: Sequence[str] = DEFAULT_INDEXES,
        tls: bool = False,
        port: int | None = None,
        ldaps_port: int | None = None,
        max_size: int = 2 * 1024**3,
        debug_level: str = "none",
        start_timeout: float = 10.0,
        die_with_parent: bool = True,
    ) -> None:
        """Describe a sandbox; nothing is written or started yet.

        Args:
            directory: working directory (created when needed).
            suffix: the database suffix.
            root_dn: the rootdn; default ``cn=admin,<suffix>``.
            root_password: the rootpw (plain text; no quotes or backslashes).
            schema_files: extra schema files loaded after Debian's core, cosine,
                nis and inetorgperson; default ``[provbackup_schema_path()]``.
                Use ``[stoney_schema_path()]`` for the real stoney schema.
            indexes: ``index`` lines, e.g. ``"uid eq"``.
            tls: create a throwaway CA and server certificate (127.0.0.1 and
                localhost) and serve ldaps:// as well; ldap:// then supports StartTLS.
            port, ldaps_port: fixed ports; default free ones.
            max_size: the mdb ``maxsize`` in bytes (a sparse map, not disk use).
            debug_level: slapd ``-d`` level; ``none`` logs only start-up errors,
                ``stats`` logs every operation to ``slapd.log``.
            start_timeout: seconds :meth:`start` waits for a successful bind.
            die_with_parent: have Linux terminate slapd when the thread that
                started it dies (PR_SET_PDEATHSIG), so a killed test run leaves
                no server behind. Turn off when starting from a short-lived thread.

        Raises:
            FileNotFoundError: a schema file or the slapd program is missing.
            ValueError: the password cannot be written into slapd.conf.
        """
        self.directory = Path(directory).resolve()
        self.suffix = suffix
        self.root_dn = root_dn or f"cn=admin,{suffix}"
        if any(char in root_password for char in '"\\\n'):
            raise ValueError("root_password must not contain quotes, backslashes or newlines")
        self.root_password = root_password
        extra_schemas = [provbackup_schema_path()] if schema_files is None else schema_files
        self.schema_files = [DEBIAN_SCHEMA_DIRECTORY / f"{name}.schema" for name in BASE_SCHEMAS]
        self.schema_files += [Path(path).resolve() for path in extra_schemas]
        for path in [*self.schema_files, SLAPD_PROGRAM]:
            if not path.is_file():
                raise FileNotFoundError(f"sandbox slapd: {path} not found")
        self.indexes = list(indexes)
        self.tls = tls
        self.host = "127.0.0.1"
        self._fixed_ports = port is not None or ldaps_port is not None
        self.port = port or free_port()
        self.ldaps_port: int | None = (ldaps_port or free_port()) if tls else None
        self.max_size = max_size
        self.debug_level = debug_level
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self.ca_file: Path | None = self.directory / "tls" / "ca.crt" if tls else None
        self._ca_key: Path | None = None
        self._server_certificate: Path | None = None
        self._server_key: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # -- names ---------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The plain LDAP URI, ``ldap://127.0.0.1:<port>`` (StartTLS capable with TLS)."""
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_uri(self) -> str | None:
        """The LDAP-over-TLS URI ``ldaps://127.0.0.1:<port>``, or None without TLS."""
        return f"ldaps://{self.host}:{self.ldaps_port}" if self.ldaps_port else None

    @property
    def accounts_dn(self) -> str:
        """The accounts' base DN, ``ou=accounts,ou=backup,ou=services,<suffix>``."""
        return f"{ACCOUNTS_RDNS},{self.suffix}"

    @property
    def config_file(self) -> Path:
        """The generated ``slapd.conf``."""
        return self.directory / "slapd.conf"

    @property
    def database_directory(self) -> Path:
        """The mdb database directory."""
        return self.directory / "db"

    @property
    def log_file(self) -> Path:
        """slapd's stderr (start-up errors; operations with ``debug_level="stats"``)."""
        return self.directory / "slapd.log"

    @property
    def pid(self) -> int | None:
        """The running slapd's process id, or None."""
        return self._process.pid if self.is_running() and self._process else None

    def is_running(self) -> bool:
        """Return True while the slapd started by this object is alive."""
        return self._process is not None and self._process.poll() is None

    def make_unrelated_ca(self) -> Path:
        """Create (once) a CA certificate unrelated to this server's, for negative tests.

        Returns:
            Its path, ``<directory>/tls/unrelated-ca.crt``.

        Raises:
            SandboxError: openssl failed.
        """
        certificate = self.directory / "tls" / "unrelated-ca.crt"
        if not certificate.is_file():
            make_unrelated_certificate_authority(certificate.parent)
        return certificate

    def ldap_settings(self) -> dict[str, str]:
        """Return client settings for this server (names as in provbackup's ``[ldap]``).

        Returns:
            ``uri``, ``bind_dn``, ``bind_password``, ``base_dn`` (the accounts'
            DN) and, with TLS, ``ca_file``.
        """
        settings = {
            "uri": self.uri,
            "bind_dn": self.root_dn,
            "bind_password": self.root_password,
            "base_dn": self.accounts_dn,
        }
        if self.ca_file:
            settings["ca_file"] = str(self.ca_file)
        return settings

    # -- configuration -------------------------------------------------------

    def _prepare(self) -> None:
        """Create the directories, TLS material (once) and ``slapd.conf``."""
        if self._prepared:
            return
        self.database_directory.mkdir(parents=True, exist_ok=True)
        if self.tls:
            folder = self.directory / "tls"
            ca_certificate, self._ca_key = folder / "ca.crt", folder / "ca.key"
            if not (ca_certificate.is_file() and self._ca_key.is_file()):
                ca_certificate, self._ca_key = make_certificate_authority(folder)
            server = folder / "server.crt", folder / "server.key"
            if not all(path.is_file() for path in server):
                server = make_server_certificate(folder, ca_certificate, self._ca_key)
            self.ca_file = ca_certificate
            self._server_certificate, self._server_key = server
        self.config_file.write_text(self._config_text())
        self._prepared = True

    def _config_text(self) -> str:
        """Return the text of ``slapd.conf``."""
        lines = [
            "# Generated by sandbox: a throwaway test server.",
            *(f"include {path}" for path in self.schema_files),
            f"pidfile {self.directory / 'slapd.pid'}",
            f"argsfile {self.directory / 'slapd.args'}",
            f"modulepath {MODULE_DIRECTORY}",
            "moduleload back_mdb",
            "loglevel none",
            "sizelimit unlimited",
            "timelimit unlimited",
        ]
        if self.tls:
            lines += [
                f"TLSCACertificateFile {self.ca_file}",
                f"TLSCertificateFile {self._server_certificate}",
                f"TLSCertificateKeyFile {self._server_key}",
                "TLSVerifyClient never",
            ]
        lines += [
            "",
            "database mdb",
            f'suffix "{self.suffix}"',
            f'rootdn "{self.root_dn}"',
            f'rootpw "{self.root_password}"',
            f"directory {self.database_directory}",
            f"maxsize {self.max_size}",
            "dbnosync",
            "sizelimit unlimited",
            "timelimit unlimited",
            "limits * size=unlimited time=unlimited",
            *(f"index {index}" for index in self.indexes),
        ]
        return "\n".join(lines) + "\n"

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Slapd:
        """Start slapd and wait until it accepts a bind as the root DN.

        Does nothing when it is already running. When slapd cannot bind a port
        that was picked automatically (another process took it), new ports are
        picked and the start is retried; after the first successful start the
        ports stay fixed.

        Returns:
            self.

        Raises:
            SandboxError: slapd exited or did not accept a bind within
                ``start_timeout``; the message includes slapd's output.
        """
        if self.is_running():
            return self
        self._prepare()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._spawn_and_wait()
            except _PortInUse:
                if self._fixed_ports or attempt == _START_ATTEMPTS:
                    raise
                logger.debug("sandbox slapd: port taken, retrying with new ports")
                self.port = free_port()
                self.ldaps_port = free_port() if self.tls else None
            else:
                break
        self._fixed_ports = True
        return self

    def _listen_urls(self) -> str:
        urls = [f"ldap://{self.host}:{self.port}/"]
        if self.ldaps_port:
            urls.append(f"ldaps://{self.host}:{self.ldaps_port}/")
        return " ".join(urls)

    def _spawn_and_wait(self) -> None:
        """Run slapd in the foreground of a child process and wait for a bind."""
        command = [str(SLAPD_PROGRAM), "-f", str(self.config_file), "-h", self._listen_urls(),
                   "-d", self.debug_level]  # fmt: skip
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        _LIVE_PROCESSES.add(self._process)
        logger.debug("sandbox slapd: started pid %s: %s", self._process.pid, " ".join(command))
        try:
            self._wait_ready()
        except SandboxError as error:
            self._terminate()
            output = self._log_since(log_offset)
            message = f"sandbox slapd did not start ({error}); its output:\n{output}"
            if "Address already in use" in output:
                raise _PortInUse(message) from None
            raise SandboxError(message) from None
        logger.debug("sandbox slapd: ready after %.3f s at %s", time.monotonic() - started,
                     self._listen_urls())  # fmt: skip

    def _wait_ready(self) -> None:
        """Poll until a root bind on the plain port succeeds.

        slapd opens all its listeners before it serves any, so a bind on the
        plain port means ldaps is up too (probing ldaps with a bare TCP connect
        would only log "TLS: can't accept" lines).
        """
        import ldap3

        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        last_problem = "no answer"
        while True:
            assert self._process is not None
            status = self._process.poll()
            if status is not None:
                raise SandboxError(f"slapd exited with status {status}")
            try:
                server = ldap3.Server(self.host, port=self.port, connect_timeout=1,
                                      get_info=ldap3.NONE)  # fmt: skip
                connection = ldap3.Connection(server, self.root_dn, self.root_password,
                                              receive_timeout=2)  # fmt: skip
                try:
                    if connection.bind():
                        return
                    last_problem = f"bind refused: {connection.result.get('description')}"
                finally:
                    connection.unbind()
            except (OSError, ldap3.core.exceptions.LDAPException) as error:
                last_problem = str(error) or type(error).__name__
            if time.monotonic() > deadline:
                raise SandboxError(f"no successful bind within {self.start_timeout} s: "
                                   f"{last_problem}")  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _log_since(self, offset: int) -> str:
        """Return what slapd wrote to its log after ``offset``."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace").strip() or "(nothing)"
        except OSError as error:
            return f"(cannot read {self.log_file}: {error})"

    def _terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the process, wait, SIGKILL if it does not end."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("sandbox slapd pid %s ignored SIGTERM, killing it", process.pid)
                process.kill()
                process.wait()
        _LIVE_PROCESSES.discard(process)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop slapd: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

        Safe to call when it is not running. The database is kept.
        """
        if self._process is None:
            return
        pid = self._process.pid
        self._terminate(timeout)
        self._process = None
        logger.debug("sandbox slapd: stopped pid %s", pid)

    def restart(self) -> Slapd:
        """Stop and start again with the same ports, configuration and data.

        Returns:
            self.

        Raises:
            SandboxError: the new start failed.
        """
        self.stop()
        return self.start()

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, *exception_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<Slapd {self.uri} {self.suffix!r} {state} in {self.directory}>"

    # -- data ----------------------------------------------------------------

    def connection(
        self,
        bind_dn: str | None = None,
        password: str | None = None,
        *,
        uri: str | None = None,
        start_tls: bool = False,
        **options: Any,
    ) -> ldap3.Connection:
        """Return a bound ldap3 connection, by default as the root DN on :attr:`uri`.

        With TLS configured the server object trusts :attr:`ca_file` and
        verifies the certificate, so ``uri=slapd.ldaps_uri`` or
        ``start_tls=True`` give a verified TLS connection.

        Args:
            bind_dn, password: credentials; default the root DN and password.
            uri: the server URI; default :attr:`uri`.
            start_tls: send StartTLS before binding.
            **options: passed to ``ldap3.Connection`` (e.g. ``raise_exceptions``).

        Returns:
            The bound connection; the caller unbinds it.

        Raises:
            ldap3.core.exceptions.LDAPException: connecting, TLS or the bind failed.
        """
        import ssl

        import ldap3

        tls = (
            ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
            if self.ca_file else None
        )  # fmt: skip
        server = ldap3.Server(uri or self.uri, tls=tls, connect_timeout=5, get_info=ldap3.NONE)
        options.setdefault("receive_timeout", 60)
        auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND if start_tls else ldap3.AUTO_BIND_NO_TLS
        return ldap3.Connection(
            server,
            bind_dn or self.root_dn,
            self.root_password if password is None else password,
            auto_bind=auto_bind,
            **options,
        )

    def base_entries(self) -> list[Entry]:
        """Return the suffix entry and ``ou=services``, ``ou=backup``, ``ou=accounts``.

        Raises:
            ValueError: the suffix's first RDN is not dc=, o= or ou=.
        """
        entries = [_suffix_entry(self.suffix)]
        parent = self.suffix
        for name in reversed(ACCOUNTS_RDNS.split(",")):
            parent = f"{name},{parent}"
            entries.append((parent, {"objectClass": ["organizationalUnit"],
                                     "ou": [name.split("=", 1)[1]]}))  # fmt: skip
        return entries

    def add_base(self) -> None:
        """Create the suffix entry and the accounts' tree; existing entries are kept.

        Raises:
            SandboxError: an add failed for another reason than "already exists".
        """
        self.add_entries(self.base_entries(), ignore_existing=True)

    def add_entries(self, entries: Iterable[Entry], *, ignore_existing: bool = False) -> int:
        """Add entries online (ldap3, one request each), parents first.

        Fine for thousands of entries; for 100,000 use :meth:`load_ldif_offline`.

        Args:
            entries: ``(dn, attributes)`` pairs, e.g. from :func:`account_entry`.
            ignore_existing: skip entries that already exist.

        Returns:
            The number of entries added.

        Raises:
            SandboxError: an add was refused; names the DN and slapd's reason.
        """
        added = 0
        connection = self.connection()
        try:
            for dn, attributes in entries:
                values = {name: list(value) for name, value in attributes.items()}
                if connection.add(dn, attributes=values):
                    added += 1
                    continue
                result = connection.result
                if ignore_existing and result.get("result") == 68:  # entryAlreadyExists
                    continue
                raise SandboxError(
                    f"adding {dn} failed: {result.get('description')} "
                    f"({result.get('result')}): {result.get('message')}"
                )
        finally:
            connection.unbind()
        return added

    @contextlib.contextmanager
    def _ldif_file(self, ldif: str | os.PathLike[str]) -> Iterator[Path]:
        """Yield a path holding the LDIF: ``ldif`` itself if a path, else a temp file."""
        if not isinstance(ldif, str):
            yield Path(ldif)
            return
        with tempfile.NamedTemporaryFile(
            "w", suffix=".ldif", dir=self.directory, encoding="utf-8", delete=False
        ) as handle:
            handle.write(ldif)
        try:
            yield Path(handle.name)
        finally:
            Path(handle.name).unlink(missing_ok=True)

    def load_ldif_offline(self, ldif: str | os.PathLike[str], *, check_schema: bool = True) -> None:
        """Bulk-load LDIF with ``slapadd -q`` while slapd is stopped (fastest way).

        Parents must come before children; include :meth:`base_entries` when
        the database is empty, e.g.
        ``load_ldif_offline(entries_to_ldif([*slapd.base_entries(), *accounts]))``.

        Args:
            ldif: LDIF text (a ``str``) or the path of an LDIF file (a ``Path``).
            check_schema: False passes ``-s`` to slapadd, which loads entries
                that break the schema (e.g. posixAccount without uidNumber).

        Raises:
            SandboxError: slapd is running, or slapadd failed (its output included).
        """
        if self.is_running():
            raise SandboxError("load_ldif_offline needs slapd stopped; call stop() first")
        self._prepare()
        with self._ldif_file(ldif) as path:
            command = [SLAPADD_PROGRAM, "-q", "-f", self.config_file, "-b", self.suffix,
                       "-l", path]  # fmt: skip
            if not check_schema:
                command.append("-s")
            started = time.monotonic()
            _run(command, what=f"slapadd of {path}")
        logger.debug("sandbox slapd: slapadd took %.3f s", time.monotonic() - started)

    def load_ldif_online(self, ldif: str | os.PathLike[str]) -> None:
        """Add LDIF records through the running server with one ``ldapadd`` process.

        Args:
            ldif: LDIF text (a ``str``) or the path of an LDIF file (a ``Path``).

        Raises:
            SandboxError: ldapadd failed (its output included).
        """
        password_file = self.directory / "rootpw"
        password_file.write_text(self.root_password)
        password_file.chmod(0o600)
        with self._ldif_file(ldif) as path:
            _run([LDAPADD_PROGRAM, "-x", "-H", self.uri, "-D", self.root_dn, "-y",
                  password_file, "-f", path], what=f"ldapadd of {path}")  # fmt: skip

    def reset_database(self) -> None:
        """Throw the whole database away; if slapd was running, restart it with the base.

        Much faster than :meth:`clear_accounts` for big trees (a benchmark's
        100,000 entries take a minute to delete one by one). Ports and
        configuration stay.

        Raises:
            SandboxError: the restart failed.
        """
        running = self.is_running()
        self.stop()
        for path in self.database_directory.glob("*.mdb"):
            path.unlink()
        if running:
            self.start()
            self.add_base()

    def clear_accounts(self) -> int:
        """Delete every entry below :attr:`accounts_dn` (the DN itself stays).

        One delete request per entry (about 1,000 a second); see
        :meth:`reset_database` for big trees.

        Returns:
            The number of entries deleted (0 also when accounts_dn does not exist).

        Raises:
            SandboxError: a delete was refused.
        """
        import ldap3

        connection = self.connection()
        try:
            found = connection.extend.standard.paged_search(
                self.accounts_dn, "(objectClass=*)", ldap3.SUBTREE, attributes=["1.1"],
                paged_size=1000, generator=True,
            )  # fmt: skip
            names = [item["dn"] for item in found if item.get("type") == "searchResEntry"]
            if connection.result.get("result") not in (0, 32):  # 32: noSuchObject
                raise SandboxError(f"searching {self.accounts_dn}: {connection.result}")
            accounts = self.accounts_dn.lower()
            names = [name for name in names if name.lower() != accounts]
            names.sort(key=lambda name: name.count(","), reverse=True)  # children first
            for name in names:
                if not connection.delete(name) and connection.result.get("result") != 32:
                    raise SandboxError(f"deleting {name}: {connection.result}")
        finally:
            connection.unbind()
        if names:
            logger.debug("sandbox slapd: deleted %d entries below %s", len(names),
                         self.accounts_dn)  # fmt: skip
        return len(names)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m sandbox DIR
    logging.basicConfig(level=logging.DEBUG)
    with Slapd(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(), tls=True) as sandbox:
        sandbox.add_base()
        print(f"{sandbox!r}\n{sandbox.ldap_settings()}\nCtrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
