"""Every configuration key, declared once: its section, name, type, default and doc.

Each section is a frozen dataclass; each field is declared with
:func:`~provbackup.config.declare.setting` (or ``secret``), which records
how its INI key is converted and what it means (the machinery is in
:mod:`provbackup.config.declare`). The reader (:mod:`provbackup.config.load`),
the unknown-key check and the man-page test all derive from :data:`SECTIONS`;
adding a key is adding one field here (plus its man page entry and sample line).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from provbackup.config import values as v
from provbackup.config.declare import Key, Setting, keys_of, secret, setting

HOOK_NAMES = tuple(
    f"{when}_{verb}" for verb in ("add", "modify", "delete") for when in ("pre", "post")
)


@dataclass(frozen=True)
class LdapConfig:
    """``[ldap]``: where the directory is and how to bind to it."""

    uris: tuple[str, ...] = setting(
        ("ldapi:///",), v.uris, "LDAP URIs tried in order (failover)", key="uri"
    )
    base_dn: str = setting("", v.dn, "where accounts are searched (subtree)", required=True)
    bind_dn: str | None = setting(None, v.text, "the DN to bind as; none: anonymous")
    bind_password: str | None = secret("the bind password", file_key="bind_password_file")
    # Not a key of its own: where bind_password was read from, for error messages.
    bind_password_file: Path | None = field(default=None, metadata={"source_of": "bind_password"})
    filter: str | None = setting(None, v.ldap_filter, "ANDed to every search")
    start_tls: bool = setting(True, v.boolean, "upgrade ldap:// with StartTLS")
    ca_file: Path | None = setting(None, v.existing_file, "CA certificates to verify the server")
    timeout: float = setting(10.0, v.positive_float, "seconds to wait for a connection or answer")
    attempts: int = setting(3, v.integer(1, 100), "rounds of connection attempts")
    retry_delay: float = setting(5.0, v.non_negative_float, "seconds between rounds")
    page_size: int = setting(500, v.integer(1, 100_000), "entries per page of a search")
    date_attribute: str = setting("auto", v.choice(v.DATE_ATTRIBUTES), "name of the date attribute")
    claim_uris: tuple[str, ...] = setting(
        (), v.uris, "the provider(s) every claim and write-back goes to, in order", key="claim_uri"
    )
    claim_verify_timeout: float = setting(
        5.0, v.non_negative_float, "seconds a claim may take to reach the other claim providers"
    )
    server_attribute: str = setting(
        "host", v.attribute_name, "the entry attribute naming the server holding it; empty: none"
    )


@dataclass(frozen=True)
class BackupConfig:
    """``[backup]``: where the accounts live on this server."""

    root: Path = setting(Path("/var/backup"), v.backup_root, "where every account lives")
    layout: str = setting("stoney", v.choice(v.LAYOUTS), "how account directories are laid out")
    engine: str = setting(
        "rsnapshot", v.choice(v.ENGINES), "how snapshots and quotas are made: rsnapshot or btrfs"
    )
    # Not required to exist at load: `provbackup jail-template` builds it; until then
    # each add/modify fails naming it, and `check` says so.
    jail_template: Path | None = setting(
        None, v.absolute_path, "the jail template linked into every account's jail"
    )
    min_uid: int = setting(1000, v.integer(1, v.MAX_ID), "lowest uidNumber and gidNumber accepted")
    max_uid: int = setting(
        v.MAX_ID, v.integer(1, v.MAX_ID), "highest uidNumber and gidNumber accepted"
    )
    server_name: str = setting(
        "", v.server_name, "this backup server's name (directory, ownership records); empty: FQDN"
    )


@dataclass(frozen=True)
class JailConfig:
    """``[jail]``: how ``jail-template`` builds the jail and what ``check`` inspects."""

    sections: tuple[str, ...] = setting(
        ("basicshell", "rsync"), v.word_list, "jk_init sections the jail template is built from"
    )
    programs: tuple[str, ...] = setting(
        (), v.path_list, "more programs copied into the template with jk_cp"
    )
    jk_init_config: Path = setting(
        Path("/etc/jailkit/jk_init.ini"), v.absolute_path, "jk_init's section definitions"
    )
    chrootsh: Path = setting(
        Path("/usr/sbin/jk_chrootsh"), v.absolute_path, "the accounts' login shell (jailkit)"
    )
    chrootsh_ini: Path = setting(
        Path("/etc/jailkit/jk_chrootsh.ini"), v.absolute_path, "jk_chrootsh's settings (checked)"
    )
    sshd: str = setting("/usr/sbin/sshd", v.absolute_path_text, "sshd, asked with -T by check")
    sshd_config: Path = setting(
        Path("/etc/ssh/sshd_config"), v.absolute_path, "sshd's configuration (checked)"
    )
    sshd_snippet: Path = setting(
        Path("/etc/ssh/sshd_config.d/provbackup.conf"),
        v.absolute_path,
        "the installed sshd snippet whose Match block check verifies",
    )
    check_login: str = setting(
        "auto", v.auto_boolean, "check the login setup: auto (with a jail template), yes, no"
    )


@dataclass(frozen=True)
class RsnapshotConfig:
    """``[rsnapshot]``: the per-account rsnapshot configuration."""

    command: str = setting("rsnapshot", v.text, "the rsnapshot program")
    configtest: str = setting("auto", v.auto_boolean, "run rsnapshot configtest: auto, yes, no")
    rsync: str = setting("/usr/bin/rsync", v.absolute_path_text, "cmd_rsync of every account")
    retain: tuple[tuple[str, int], ...] = setting(
        (("daily", 7), ("weekly", 4), ("monthly", 3)),
        v.parse_retain,
        "retention of each interval an entry does not set",
    )


@dataclass(frozen=True)
class QuotaConfig:
    """``[quota]``: the command that sets a user's quota; None disables quotas."""

    command: tuple[str, ...] | None = setting(
        None, v.quota_template, "command template setting a quota"
    )
    filesystem: str = setting("", v.text, "the {filesystem} placeholder; empty: the backup root")
    inodes_per_gib: int = setting(
        65536, v.integer(0, 10**9), "files allowed per GiB of quota: the {inode_limit} placeholder"
    )
    timeout: float = setting(
        120.0, v.positive_float, "seconds the quota command (and all it starts) may run"
    )


@dataclass(frozen=True)
class DeleteConfig:
    """``[delete]``: how account removal is guarded."""

    quarantine_days: int = setting(
        7, v.integer(0, 36500), "days a deleted account is kept before it is purged"
    )
    max_per_run: int = setting(
        20, v.integer(0, 10**9), "more due deletes than this: none is processed"
    )
    time_budget: float = setting(
        300.0, v.positive_float, "seconds a run spends removing trees; the rest waits"
    )


@dataclass(frozen=True)
class SnapshotConfig:
    """``[snapshot]``: how ``provbackup snapshot`` runs rsnapshot over the accounts."""

    jobs: int = setting(2, v.integer(1, 256), "accounts snapshot at once")
    lock_wait: float = setting(
        600.0, v.non_negative_float, "seconds to wait for an account another run works on"
    )
    timeout: float = setting(86400.0, v.positive_float, "seconds one account's rsnapshot may take")
    stale_slack: int = setting(
        10800, v.integer(0, 10**9), "check's slack beyond an account's smallest interval"
    )
    usage: bool = setting(True, v.boolean, "write the usage figures back to LDAP")


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: the lock and status files of a run."""

    lock_file: Path = setting(
        Path("/run/provbackup/provbackup.lock"), v.absolute_path, "the run lock"
    )
    status_file: Path = setting(
        Path("/var/lib/provbackup/status.json"), v.absolute_path, "report of the last run"
    )
    max_status_age: int = setting(
        3600, v.integer(1, 10**9), "check is CRITICAL when the status file is older (seconds)"
    )
    fault_report_interval: int = setting(
        3600,
        v.integer(0, 10**9),
        "a run ending with the fault already reported less than this many seconds ago "
        "exits 79, not with its error exit; 0: report every run",
    )


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: where logs go besides stderr."""

    syslog: bool = setting(False, v.boolean, "also log to syslog")
    syslog_socket: Path = setting(Path("/dev/log"), v.absolute_path, "the syslog socket")
    facility: str = setting("daemon", v.choice(v.SYSLOG_FACILITIES), "the syslog facility")
    level: str = setting("info", v.choice(v.LOG_LEVELS), "lowest level sent to syslog")


@dataclass(frozen=True)
class MailConfig:
    """``[mail]``: one summary mail per run with failures; disabled without ``to``."""

    to: tuple[str, ...] = setting((), v.address_list, "recipients; none: no mail")
    sender: str = setting("provbackup@localhost", v.text, "the From address", key="from")
    host: str = setting("localhost", v.text, "SMTP server")
    port: int = setting(25, v.integer(1, 65535), "SMTP port")
    starttls: bool = setting(True, v.boolean, "use StartTLS")
    username: str | None = setting(None, v.text, "SMTP login; none: no login")
    password: str | None = secret("SMTP password", file_key="password_file")
    subject: str = setting(
        "provbackup: {failed} entries failed on {hostname}", v.text, "subject template"
    )
    timeout: float = setting(30.0, v.positive_float, "seconds to wait for the SMTP server")

    @property
    def enabled(self) -> bool:
        """True when a recipient is configured."""
        return bool(self.to)


@dataclass(frozen=True)
class HooksConfig:
    """``[hooks]``: site commands run around the work on an entry."""

    # A read-only mapping, so the frozen config cannot be changed through it.
    commands: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={
            "setting": Setting(
                v.command, "command run before/after the work on an entry", each_of=HOOK_NAMES
            )
        },
    )
    timeout: float = setting(300.0, v.positive_float, "seconds a hook may run")


@dataclass(frozen=True)
class WatchConfig:
    """``[watch]``: the follower (``provbackup watch``): where it follows, how it retries."""

    uris: tuple[str, ...] = setting(
        (), v.uris, "LDAP URIs the follower follows, tried in order (failover); "
        "none: [ldap] uri. A local replica with syncprov may be named here while "
        "[ldap] uri names the provider the batches write to", key="uri",
    )  # fmt: skip
    retry_max: float = setting(
        30.0, v.positive_float, "the longest wait (seconds) between reconnection rounds; "
        "the first retry is at once, then the wait doubles from 0.5 s up to this",
    )  # fmt: skip


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: the customer warnings of ``provbackup notify`` (schedule and quota)."""

    templates: Path = setting(
        Path("/etc/provbackup/notify"), v.absolute_path, "one directory of templates per language"
    )
    language: str = setting("en", v.language_tag, "language of customers without a known one")
    repeat_days: int = setting(
        7, v.integer(0, 3650), "days before a warning still true is sent again; 0: once"
    )
    recovery: bool = setting(True, v.boolean, "send an 'all good again' when a condition ends")
    max_warnings_per_run: int = setting(
        50, v.integer(1, 10**9), "more messages due than this: none is sent"
    )
    sms_command: tuple[str, ...] | None = setting(
        None, v.sms_template, "command sending an sms to {number}, the text on stdin"
    )
    sms_timeout: float = setting(30.0, v.positive_float, "seconds the sms command may run")


# The sections in file order, each with the dataclass declaring its keys.
SECTIONS: dict[str, type] = {
    "ldap": LdapConfig,
    "backup": BackupConfig,
    "jail": JailConfig,
    "rsnapshot": RsnapshotConfig,
    "quota": QuotaConfig,
    "delete": DeleteConfig,
    "snapshot": SnapshotConfig,
    "run": RunConfig,
    "log": LogConfig,
    "mail": MailConfig,
    "hooks": HooksConfig,
    "watch": WatchConfig,
    "notify": NotifyConfig,
}


def declared_keys(section: str | None = None) -> Iterator[Key]:
    """Yield every declared key (of ``section`` only, if given), in declaration order.

    Takes an optional section name; returns an iterator of :class:`Key`
    (none for an unknown section); raises nothing.
    """
    for name, cls in SECTIONS.items():
        if section is None or name == section:
            yield from keys_of(name, cls)


def known_keys() -> dict[str, tuple[str, ...]]:
    """Every section and its INI keys, for the unknown-key check."""
    return {name: tuple(key.key for key in declared_keys(name)) for name in SECTIONS}


@dataclass(frozen=True)
class Config:
    """The whole configuration, as loaded from ``source``."""

    source: Path
    ldap: LdapConfig
    backup: BackupConfig = BackupConfig()
    jail: JailConfig = JailConfig()
    rsnapshot: RsnapshotConfig = RsnapshotConfig()
    quota: QuotaConfig = QuotaConfig()
    delete: DeleteConfig = DeleteConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    run: RunConfig = RunConfig()
    log: LogConfig = LogConfig()
    mail: MailConfig = MailConfig()
    hooks: HooksConfig = HooksConfig()
    watch: WatchConfig = WatchConfig()
    notify: NotifyConfig = NotifyConfig()
