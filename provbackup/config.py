"""Load and validate the INI configuration into frozen dataclasses.

The file is read once per command. Every problem is collected before
anything is raised, so an operator fixes a broken file in one go; each
message names the file, the section and the key.
"""

from __future__ import annotations

import configparser
import difflib
import logging
import os
import shlex
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from provbackup.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/provbackup/provbackup.conf")
CONFIG_ENVIRONMENT_VARIABLE = "PROVBACKUP_CONFIG"

INTERVALS = ("hourly", "daily", "weekly", "monthly", "yearly")
LAYOUTS = ("stoney", "flat")
DATE_ATTRIBUTES = ("auto", "sstProvisioningExecutionDate", "sstProvisioningDate")
SYSLOG_FACILITIES = (
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
    "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
)  # fmt: skip
QUOTA_PLACEHOLDERS = ("uid", "uidnumber", "gidnumber", "quota_bytes", "quota_kib", "filesystem")
HOOK_NAMES = tuple(
    f"{when}_{verb}" for verb in ("add", "modify", "delete") for when in ("pre", "post")
)


@dataclass(frozen=True)
class LdapConfig:
    """``[ldap]``: where the directory is and how to bind to it."""

    uris: tuple[str, ...]
    base_dn: str
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    filter: str | None = None
    start_tls: bool = True
    ca_file: Path | None = None
    timeout: float = 10.0
    attempts: int = 3
    retry_delay: float = 5.0
    page_size: int = 500
    date_attribute: str = "auto"


@dataclass(frozen=True)
class BackupConfig:
    """``[backup]``: where the accounts live on this server."""

    root: Path = Path("/var/backup")
    layout: str = "stoney"
    jail_template: Path | None = None
    min_uid: int = 1000


@dataclass(frozen=True)
class RsnapshotConfig:
    """``[rsnapshot]``: the per-account rsnapshot configuration."""

    command: str = "rsnapshot"
    configtest: str = "auto"  # auto: where the command is installed; yes; no
    rsync: str = "/usr/bin/rsync"
    retain: tuple[tuple[str, int], ...] = (("daily", 7), ("weekly", 4), ("monthly", 3))


@dataclass(frozen=True)
class QuotaConfig:
    """``[quota]``: the command that sets a user's quota; None disables quotas."""

    command: tuple[str, ...] | None = None
    filesystem: str = ""


@dataclass(frozen=True)
class DeleteConfig:
    """``[delete]``: how account removal is guarded."""

    quarantine_days: int = 7
    max_per_run: int = 20


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: the lock and status files of a run."""

    lock_file: Path = Path("/run/provbackup/provbackup.lock")
    status_file: Path = Path("/var/lib/provbackup/status.json")
    max_status_age: int = 3600


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: where logs go besides stderr."""

    syslog: bool = False
    syslog_socket: Path = Path("/dev/log")
    facility: str = "daemon"
    level: str = "info"


@dataclass(frozen=True)
class MailConfig:
    """``[mail]``: one summary mail per run with failures; disabled without ``to``."""

    to: tuple[str, ...] = ()
    sender: str = "provbackup@localhost"
    host: str = "localhost"
    port: int = 25
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    subject: str = "provbackup: {failed} entries failed on {hostname}"
    timeout: float = 30.0

    @property
    def enabled(self) -> bool:
        """True when a recipient is configured."""
        return bool(self.to)


@dataclass(frozen=True)
class HooksConfig:
    """``[hooks]``: site commands run around the work on an entry."""

    # A read-only mapping, so the frozen config cannot be changed through it.
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    timeout: float = 300.0


@dataclass(frozen=True)
class Config:
    """The whole configuration, as loaded from ``source``."""

    source: Path
    ldap: LdapConfig
    backup: BackupConfig = BackupConfig()
    rsnapshot: RsnapshotConfig = RsnapshotConfig()
    quota: QuotaConfig = QuotaConfig()
    delete: DeleteConfig = DeleteConfig()
    run: RunConfig = RunConfig()
    log: LogConfig = LogConfig()
    mail: MailConfig = MailConfig()
    hooks: HooksConfig = HooksConfig()


# Every key a section may hold; anything else is reported with a suggestion.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "ldap": (
        "uri", "bind_dn", "bind_password", "bind_password_file", "base_dn", "filter",
        "start_tls", "ca_file", "timeout", "attempts", "retry_delay", "page_size",
        "date_attribute",
    ),
    "backup": ("root", "layout", "jail_template", "min_uid"),
    "rsnapshot": ("command", "configtest", "rsync", "retain"),
    "quota": ("command", "filesystem"),
    "delete": ("quarantine_days", "max_per_run"),
    "run": ("lock_file", "status_file", "max_status_age"),
    "log": ("syslog", "syslog_socket", "facility", "level"),
    "mail": (
        "to", "from", "host", "port", "starttls", "username", "password", "password_file",
        "subject", "timeout",
    ),
    "hooks": (*HOOK_NAMES, "timeout"),
}  # fmt: skip

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")


def find_config_path(option: str | os.PathLike[str] | None) -> Path:
    """Return the config path: ``option``, else ``$PROVBACKUP_CONFIG``, else the default."""
    if option:
        return Path(option)
    from_environment = os.environ.get(CONFIG_ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment)
    return DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the configuration file.

    Takes the path given on the command line (or None to use the
    environment variable or the default path). Returns the frozen
    :class:`Config`. Raises :class:`ConfigError` listing every problem.
    """
    source = find_config_path(path)
    parser = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0")
    try:
        with open(source, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"{source}: configuration file not found") from None
    except PermissionError:
        raise ConfigError(
            f"{source}: configuration file not readable (permission denied)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a configuration file") from None
    except (configparser.Error, UnicodeDecodeError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"{source}: cannot parse: {message}") from None
    return _Reader(source, parser).build()


class _Reader:
    """Turns a parsed INI file into :class:`Config`, collecting every problem."""

    def __init__(self, source: Path, parser: configparser.ConfigParser) -> None:
        self.source = source
        self.parser = parser
        self.problems: list[str] = []

    def problem(self, section: str, key: str | None, message: str) -> None:
        where = f"[{section}]" if key is None else f"[{section}] {key}"
        self.problems.append(f"{self.source}: {where}: {message}")

    def raw(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            return None
        value = self.parser.get(section, key).strip()
        return value if value != "" else None

    def get(
        self,
        section: str,
        key: str,
        convert: Callable[[str], Any],
        default: Any,
        *,
        required: bool = False,
    ) -> Any:
        value = self.raw(section, key)
        if value is None:
            if required:
                self.problem(section, key, "is required")
            return default
        try:
            return convert(value)
        except ValueError as error:
            self.problem(section, key, f"{value!r}: {error}")
            return default

    def check_names(self) -> None:
        for section in self.parser.sections():
            if section not in KNOWN_KEYS:
                self.problem(section, None, "unknown section" + _suggest(section, KNOWN_KEYS))
                continue
            for key in self.parser.options(section):
                if key not in KNOWN_KEYS[section]:
                    self.problem(section, key, "unknown key" + _suggest(key, KNOWN_KEYS[section]))

    def build(self) -> Config:
        self.check_names()
        config = Config(
            source=self.source,
            ldap=self.ldap(),
            backup=self.backup(),
            rsnapshot=self.rsnapshot(),
            quota=self.quota(),
            delete=self.delete(),
            run=self.run(),
            log=self.log(),
            mail=self.mail(),
            hooks=self.hooks(),
        )
        if self.problems:
            raise ConfigError(self.problems)
        return config

    def secret(self, section: str, key: str, file_key: str) -> str | None:
        inline = self.raw(section, key)
        path = self.raw(section, file_key)
        if inline is not None and path is not None:
            self.problem(section, file_key, f"give either {key} or {file_key}, not both")
            return None
        if path is None:
            if inline is not None:
                self.warn_if_readable(section, key)
            return inline
        try:
            return read_secret_file(Path(path))
        except ValueError as error:
            self.problem(section, file_key, str(error))
            return None

    def warn_if_readable(self, section: str, key: str) -> None:
        """Warn (not refuse: it works) when a file holding a secret is readable by others."""
        try:
            mode = self.source.stat().st_mode
        except OSError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "%s: [%s] %s: the file holding this password is accessible by group or "
                "others (mode %04o); chmod 600 it, or use %s_file",
                self.source, section, key, stat.S_IMODE(mode), key,
            )  # fmt: skip

    def ldap(self) -> LdapConfig:
        section = "ldap"
        uris = self.get(section, "uri", _uris, ("ldapi:///",))
        start_tls = self.get(section, "start_tls", _boolean, True)
        timeout = self.get(section, "timeout", _positive_float, 10.0)
        ca_file = self.get(section, "ca_file", Path, None)
        if ca_file is not None and not ca_file.is_file():
            self.problem(section, "ca_file", f"{str(ca_file)!r}: no such file")
        bind_dn = self.raw(section, "bind_dn")
        password = self.secret(section, "bind_password", "bind_password_file")
        if bind_dn is None and password is not None:
            self.problem(section, "bind_dn", "is required when a bind password is given")
        return LdapConfig(
            uris=uris,
            base_dn=self.get(section, "base_dn", _dn, "", required=True),
            bind_dn=bind_dn,
            bind_password=password,
            filter=self.get(section, "filter", _filter, None),
            start_tls=start_tls,
            ca_file=ca_file,
            timeout=timeout,
            attempts=self.get(section, "attempts", _integer(1, 100), 3),
            retry_delay=self.get(section, "retry_delay", _non_negative_float, 5.0),
            page_size=self.get(section, "page_size", _integer(1, 100_000), 500),
            date_attribute=self.get(section, "date_attribute", _choice(DATE_ATTRIBUTES), "auto"),
        )

    def backup(self) -> BackupConfig:
        section = "backup"
        root = self.get(section, "root", _absolute_path, Path("/var/backup"))
        if root == Path("/"):
            self.problem(section, "root", "'/': the backup root cannot be the filesystem root")
        template = self.get(section, "jail_template", _absolute_path, None)
        if template is not None and not template.is_dir():
            self.problem(section, "jail_template", f"{str(template)!r}: no such directory")
        return BackupConfig(
            root=root,
            layout=self.get(section, "layout", _choice(LAYOUTS), "stoney"),
            jail_template=template,
            min_uid=self.get(section, "min_uid", _integer(1, 2**32 - 2), 1000),
        )

    def rsnapshot(self) -> RsnapshotConfig:
        section = "rsnapshot"
        return RsnapshotConfig(
            command=self.get(section, "command", str, "rsnapshot"),
            configtest=self.get(section, "configtest", _auto_boolean, "auto"),
            rsync=self.get(section, "rsync", _absolute_path_string, "/usr/bin/rsync"),
            retain=self.get(section, "retain", parse_retain, RsnapshotConfig.retain),
        )

    def quota(self) -> QuotaConfig:
        section = "quota"
        return QuotaConfig(
            command=self.get(section, "command", _quota_template, None),
            filesystem=self.get(section, "filesystem", str, ""),
        )

    def delete(self) -> DeleteConfig:
        section = "delete"
        return DeleteConfig(
            quarantine_days=self.get(section, "quarantine_days", _integer(0, 36500), 7),
            max_per_run=self.get(section, "max_per_run", _integer(0, 10**9), 20),
        )

    def run(self) -> RunConfig:
        section = "run"
        defaults = RunConfig()
        return RunConfig(
            lock_file=self.get(section, "lock_file", _absolute_path, defaults.lock_file),
            status_file=self.get(section, "status_file", _absolute_path, defaults.status_file),
            max_status_age=self.get(section, "max_status_age", _integer(1, 10**9), 3600),
        )

    def log(self) -> LogConfig:
        section = "log"
        return LogConfig(
            syslog=self.get(section, "syslog", _boolean, False),
            syslog_socket=self.get(section, "syslog_socket", _absolute_path, Path("/dev/log")),
            facility=self.get(section, "facility", _choice(SYSLOG_FACILITIES), "daemon"),
            level=self.get(
                section, "level", _choice(("debug", "info", "warning", "error")), "info"
            ),
        )

    def mail(self) -> MailConfig:
        section = "mail"
        defaults = MailConfig()
        return MailConfig(
            to=self.get(section, "to", _address_list, ()),
            sender=self.get(section, "from", str, defaults.sender),
            host=self.get(section, "host", str, defaults.host),
            port=self.get(section, "port", _integer(1, 65535), defaults.port),
            starttls=self.get(section, "starttls", _boolean, True),
            username=self.raw(section, "username"),
            password=self.secret(section, "password", "password_file"),
            subject=self.get(section, "subject", str, defaults.subject),
            timeout=self.get(section, "timeout", _positive_float, 30.0),
        )

    def hooks(self) -> HooksConfig:
        section = "hooks"
        commands = {}
        for name in HOOK_NAMES:
            command = self.get(section, name, _command, None)
            if command is not None:
                commands[name] = command
        return HooksConfig(
            commands=MappingProxyType(commands),
            timeout=self.get(section, "timeout", _positive_float, 300.0),
        )


def read_secret_file(path: Path) -> str:
    """Return the first line of a password file, refusing one others may read.

    Raises ValueError naming the path when it is missing, unreadable, or
    accessible by group or others.
    """
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ValueError(
                    f"{str(path)!r} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
                )
            content = handle.read()
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r}: no such file") from None
    except OSError as error:
        raise ValueError(f"{str(path)!r}: {error.strerror}") from None
    lines = content.decode("utf-8", errors="strict").splitlines()
    if not lines or not lines[0]:
        raise ValueError(f"{str(path)!r} is empty")
    return lines[0]


def parse_retain(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``daily 7, weekly 4`` (or ``daily=7``) into ordered (interval, count) pairs.

    Returns the pairs in the order hourly, daily, weekly, monthly, yearly,
    without zero counts. Raises ValueError on unknown intervals or bad counts.
    """
    counts: dict[str, int] = {}
    for part in text.replace(";", ",").split(","):
        words = part.replace("=", " ").split()
        if not words:
            continue
        if len(words) != 2:
            raise ValueError(f"expected 'interval count' pairs separated by commas, got {part!r}")
        name, count = words[0].lower(), words[1]
        if name not in INTERVALS:
            raise ValueError(f"unknown interval {name!r}" + _suggest(name, INTERVALS))
        if not count.isdigit() or int(count) > 999:
            raise ValueError(f"count for {name} must be an integer from 0 to 999, got {count!r}")
        counts[name] = int(count)
    pairs = tuple((name, counts[name]) for name in INTERVALS if counts.get(name))
    if not pairs:
        raise ValueError("at least one interval needs a count above 0")
    return pairs


def _suggest(name: str, choices: Any) -> str:
    matches = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected yes or no")


def _auto_boolean(value: str) -> str:
    lowered = value.lower()
    if lowered == "auto":
        return "auto"
    return "yes" if _boolean(lowered) else "no"


def _integer(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("expected an integer") from None
        if not low <= number <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return number

    return convert


def _positive_float(value: str) -> float:
    number = _non_negative_float(value)
    if number == 0:
        raise ValueError("expected a number above 0")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if not 0 <= number < 10**7:
        raise ValueError("expected a number from 0 up")
    return number


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}" + _suggest(value, choices))

    return convert


def _absolute_path(value: str) -> Path:
    if not value.startswith("/"):
        raise ValueError("expected an absolute path")
    if "\0" in value:
        raise ValueError("contains a NUL character")
    return Path(os.path.normpath(value))


def _absolute_path_string(value: str) -> str:
    return str(_absolute_path(value))


def _uris(value: str) -> tuple[str, ...]:
    uris = tuple(value.replace(",", " ").split())
    for uri in uris:
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in ("ldap", "ldaps", "ldapi"):
            raise ValueError(f"{uri!r} is not an ldap://, ldaps:// or ldapi:// URI")
    return uris


def _dn(value: str) -> str:
    from ldap3.utils.dn import parse_dn

    try:
        parse_dn(value)
    except Exception:
        raise ValueError("not a valid DN") from None
    return value


def _filter(value: str) -> str:
    """Check ``value`` with ldap3's own filter parser, so a bad filter is a config error.

    A filter without outer parentheses (``uid=x``) gets them. Raises
    ValueError naming what ldap3 found wrong.
    """
    from ldap3.core.exceptions import LDAPInvalidFilterError
    from ldap3.operation.search import parse_filter

    text = value if value.startswith("(") else f"({value})"
    try:
        parse_filter(text, None, False, False, None, False)
    except LDAPInvalidFilterError as error:
        raise ValueError(
            f"not a valid LDAP filter ({error}); e.g. (objectClass=sstBackup)"
        ) from None
    return text


def _command(value: str) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(value))
    except ValueError as error:
        raise ValueError(f"cannot split into words: {error}") from None
    if not words:
        raise ValueError("empty command")
    return words


def _quota_template(value: str) -> tuple[str, ...]:
    words = _command(value)
    for word in words:
        try:
            word.format(**{name: "" for name in QUOTA_PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"bad placeholder {error} in {word!r}; known: "
                + ", ".join("{" + name + "}" for name in QUOTA_PLACEHOLDERS)
            ) from None
    return words


def _address_list(value: str) -> tuple[str, ...]:
    addresses = tuple(value.replace(",", " ").split())
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"{address!r} is not a mail address")
    return addresses
