"""The sandbox server: one throwaway slapd, started and stopped by the test run.

:class:`Slapd` writes ``slapd.conf`` (:mod:`sandbox.configuration`) into a
working directory, runs Debian's ``/usr/sbin/slapd`` on free ports of
127.0.0.1 in the foreground of a child process and stops it again. Loading
and clearing data is :mod:`sandbox.data`'s job; :class:`Slapd` offers it as
methods.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox import data
from sandbox.acl import acl_text
from sandbox.certificates import (
    TlsFiles,
    make_unrelated_certificate_authority,
    server_tls_files,
)
from sandbox.configuration import Replication, ServerSettings, SyncSettings, slapd_conf
from sandbox.entries import (
    ACCOUNTS_RDNS,
    BIND_ACCOUNT_RDNS,
    DEFAULT_SUFFIX,
    Entry,
    base_entries,
)
from sandbox.locations import SLAPD_PROGRAM, base_schema_paths, provbackup_schema_path
from sandbox.processes import PortInUseError, SandboxError, free_port, start_server, terminate

if TYPE_CHECKING:
    import ldap3

logger = logging.getLogger(__name__)

DEFAULT_ROOT_PASSWORD = "sandbox-secret"
DEFAULT_BIND_PASSWORD = "provbackup-secret"
DEFAULT_INDEXES = (
    "objectClass eq",
    "uid eq",
    "sstProvisioningState eq",
    "sstProvisioningMode eq",
)
_START_ATTEMPTS = 3


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
        bind_dn, bind_password: what provbackup binds as (:meth:`ldap_settings`):
            with ``acl=True`` the restricted ``cn=provbackup,ou=services,<suffix>``,
            else the root DN.
        acl: whether ``examples/slapd-acl.conf`` is loaded.
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
        acl: bool = False,
        bind_password: str = DEFAULT_BIND_PASSWORD,
        tls: bool = False,
        port: int | None = None,
        ldaps_port: int | None = None,
        max_size: int = 2 * 1024**3,
        debug_level: str = "none",
        start_timeout: float = 10.0,
        die_with_parent: bool = True,
        syncprov: bool = False,
        consumer_of: Slapd | None = None,
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
            indexes: ``index`` lines, e.g. ``"uid eq"``; with ``acl`` those of
                attributes the example indexes already are left out.
            acl: load the example ACL ``examples/slapd-acl.conf`` (before Debian's
                default rules, with slapd's default size limit) and create its
                bind DN with ``bind_password`` in :meth:`add_base`;
                :meth:`ldap_settings` then names that DN.
            bind_password: the password of the restricted bind DN.
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
            syncprov: load the syncprov overlay (RFC 4533 content synchronisation,
                what ``provbackup watch`` follows).
            consumer_of: make this server a read-only consumer of that provider
                (syncrepl refreshAndPersist bound as its rootdn), serving sync
                searches itself (implies ``syncprov``); start the provider first.

        Raises:
            FileNotFoundError: a schema file, the example ACL or the slapd program
                is missing.
            ValueError: the password cannot be written into slapd.conf.
        """
        self.directory = Path(directory).resolve()
        self.suffix = suffix
        self.root_dn = root_dn or f"cn=admin,{suffix}"
        if any(char in root_password for char in '"\\\n'):
            raise ValueError("root_password must not contain quotes, backslashes or newlines")
        self.root_password = root_password
        self.acl = acl
        self.bind_dn = f"{BIND_ACCOUNT_RDNS},{suffix}" if acl else self.root_dn
        self.bind_password = bind_password if acl else root_password
        extra_schemas = [provbackup_schema_path()] if schema_files is None else schema_files
        self.schema_files = base_schema_paths() + [Path(path).resolve() for path in extra_schemas]
        for path in [*self.schema_files, SLAPD_PROGRAM]:
            if not path.is_file():
                raise FileNotFoundError(f"sandbox slapd: {path} not found")
        self._acl_text = acl_text(suffix, self.schema_files) if acl else None
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
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self.sync: SyncSettings | None = None
        if consumer_of is not None:
            provider = consumer_of
            self.sync = SyncSettings(provider.uri, provider.root_dn, provider.root_password)
        elif syncprov:
            self.sync = SyncSettings()
        # Set by mirror_pair (before the first start): one provider of a replicated pair.
        self.replication: Replication | None = None

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
        """
        certificate = self.directory / "tls" / "unrelated-ca.crt"
        if not certificate.is_file():
            make_unrelated_certificate_authority(certificate.parent)
        return certificate

    def ldap_settings(self) -> dict[str, str]:
        """Return client settings for provbackup's ``[ldap]`` section.

        Returns:
            ``uri``, ``bind_dn`` and ``bind_password`` (:attr:`bind_dn`: the
            restricted DN with ``acl=True``), ``base_dn`` (the accounts' DN)
            and, with TLS, ``ca_file``.
        """
        settings = {
            "uri": self.uri,
            "bind_dn": self.bind_dn,
            "bind_password": self.bind_password,
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
        settings = ServerSettings(
            directory=self.directory, schema_files=self.schema_files, suffix=self.suffix,
            root_dn=self.root_dn, root_password=self.root_password,
            database_directory=self.database_directory, max_size=self.max_size,
            indexes=self.indexes, acl=self._acl_text,
            tls=self._server_tls() if self.tls else None, replication=self.replication,
            sync=self.sync,
        )  # fmt: skip
        self.config_file.write_text(slapd_conf(settings))
        self._prepared = True

    def _server_tls(self) -> TlsFiles:
        """Create the CA and server certificate in ``tls/`` once; return them."""
        files = server_tls_files(self.directory / "tls")
        self.ca_file = files.ca_certificate
        return files

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
            except PortInUseError:
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
        """Run slapd in the foreground of a child process and wait for a root bind."""
        command = [str(SLAPD_PROGRAM), "-f", str(self.config_file), "-h", self._listen_urls(),
                   "-d", self.debug_level]  # fmt: skip
        self._process = start_server(
            command, self.log_file, probe=(self.uri, self.root_dn, self.root_password),
            timeout=self.start_timeout, die_with_parent=self.die_with_parent,
        )  # fmt: skip

    def kill(self) -> None:
        """Kill slapd with SIGKILL at once (a crashed provider); the database is kept."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop slapd: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

        Safe to call when it is not running. The database is kept.
        """
        if self._process is None:
            return
        pid = self._process.pid
        if not terminate(self._process, timeout):
            logger.warning("sandbox slapd pid %s ignored SIGTERM and was killed", pid)
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

    # -- clients -------------------------------------------------------------

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

        Pass ``slapd.bind_dn, slapd.bind_password`` to act as provbackup. With
        TLS the connection trusts :attr:`ca_file` and verifies the certificate
        (``uri=slapd.ldaps_uri`` or ``start_tls=True``); ``options`` go to
        ``ldap3.Connection``. The caller unbinds it.

        Raises:
            ldap3.core.exceptions.LDAPException: connecting, TLS or the bind failed.
        """
        return data.connect(
            uri or self.uri,
            bind_dn or self.root_dn,
            self.root_password if password is None else password,
            ca_file=self.ca_file,
            start_tls=start_tls,
            **options,
        )

    # -- data (sandbox.data) -------------------------------------------------

    def base_entries(self) -> list[Entry]:
        """Return the suffix, the accounts' tree above the accounts and, with ``acl``,
        provbackup's bind DN entry (see :func:`sandbox.entries.base_entries`)."""
        return base_entries(self.suffix, bind_password=self.bind_password if self.acl else None)

    def add_base(self) -> None:
        """Create :meth:`base_entries` online; existing entries are kept.

        Raises:
            SandboxError: an add failed for another reason than "already exists".
        """
        self.add_entries(self.base_entries(), ignore_existing=True)

    def add_entries(self, entries: Iterable[Entry], *, ignore_existing: bool = False) -> int:
        """Add entries online as the root DN; see :func:`sandbox.data.add_entries`."""
        connection = self.connection()
        try:
            return data.add_entries(connection, entries, ignore_existing=ignore_existing)
        finally:
            connection.unbind()

    def load_ldif_offline(self, ldif: str | os.PathLike[str], *, check_schema: bool = True) -> None:
        """Bulk-load LDIF (text, or a ``Path``) with slapadd while slapd is stopped.

        Parents come first; an empty database needs :meth:`base_entries` too:
        ``load_ldif_offline(entries_to_ldif([*slapd.base_entries(), *accounts]))``.
        ``check_schema=False`` loads entries that break the schema.

        Raises:
            SandboxError: slapd is running, or slapadd failed (its output included).
        """
        if self.is_running():
            raise SandboxError("load_ldif_offline needs slapd stopped; call stop() first")
        self._prepare()
        data.slapadd(self.config_file, self.suffix, ldif, self.directory,
                     check_schema=check_schema)  # fmt: skip

    def load_ldif_online(self, ldif: str | os.PathLike[str]) -> None:
        """Add LDIF records (text, or a ``Path``) as the root DN with one ldapadd.

        Raises:
            SandboxError: ldapadd failed (its output included).
        """
        data.ldapadd(self.uri, self.root_dn, self.root_password, ldif, self.directory)

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

        Returns:
            The number of entries deleted; see :func:`sandbox.data.delete_below`.
        """
        connection = self.connection()
        try:
            return data.delete_below(connection, self.accounts_dn)
        finally:
            connection.unbind()


def mirror_pair(directory: str | os.PathLike[str], **options: Any) -> tuple[Slapd, Slapd]:
    """Describe two providers replicating each other (syncprov + mirror mode); nothing started.

    Each lives in ``<directory>/provider1`` and ``<directory>/provider2`` on
    fixed free ports, has its own ``serverID`` (1, 2) and a syncrepl
    (refreshAndPersist, retried every second) from the other, bound as the
    peer's rootdn. ``options`` go to both :class:`Slapd` (``acl``, ``tls``,
    ...). Start both (either order), then add the base on one of them: it
    reaches the other by replication. A write to either reaches the other
    within milliseconds while both run; a stopped or killed provider
    catches up when started again (same ports, same data).

    Returns:
        The two servers, not started.
    """
    root = Path(directory)
    first, second = (
        Slapd(root / f"provider{number}", port=free_port(), **options) for number in (1, 2)
    )
    for number, (server, peer) in enumerate(((first, second), (second, first)), start=1):
        server.replication = Replication(
            server_id=number, peer_uri=peer.uri, bind_dn=peer.root_dn,
            credentials=peer.root_password,
        )  # fmt: skip
    return first, second
