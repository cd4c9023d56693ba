"""Load and validate the INI configuration into the frozen dataclasses of sections.py.

The file is read once per command. Every problem is collected before
anything is raised, so an operator fixes a broken file in one go; each
message names the file, the section and the key.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

from provbackup.config.declare import Key
from provbackup.config.sections import SECTIONS, Config, declared_keys, known_keys
from provbackup.config.values import suggest
from provbackup.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/provbackup/provbackup.conf")
CONFIG_ENVIRONMENT_VARIABLE = "PROVBACKUP_CONFIG"


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
        """Record a problem naming the file, ``[section]`` and ``key`` (None: the section)."""
        where = f"[{section}]" if key is None else f"[{section}] {key}"
        self.problems.append(f"{self.source}: {where}: {message}")

    def raw(self, section: str, key: str) -> str | None:
        """The stripped text of ``key`` in ``section``; None when absent or empty."""
        if not self.parser.has_option(section, key):
            return None
        value = self.parser.get(section, key).strip()
        return value if value != "" else None

    def convert(self, key: Key, default: Any) -> Any:
        """The value of ``key`` converted, or ``default`` (the problem recorded)."""
        value = self.raw(key.section, key.key)
        if value is None:
            if key.setting.required:
                self.problem(key.section, key.key, "is required")
            return default
        try:
            return key.setting.convert(value)
        except ValueError as error:
            self.problem(key.section, key.key, f"{value!r}: {error}")
            return default

    def check_names(self) -> None:
        """Record every unknown section and key, with a close known name when there is one."""
        known = known_keys()
        for section in self.parser.sections():
            if section not in known:
                self.problem(section, None, "unknown section" + suggest(section, known))
                continue
            for key in self.parser.options(section):
                if key not in known[section]:
                    self.problem(section, key, "unknown key" + suggest(key, known[section]))

    def build(self) -> Config:
        """Return the validated Config; raises ConfigError listing every problem found."""
        self.check_names()
        sections = {name: self.section(name) for name in SECTIONS}
        self.cross_check(sections)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(source=self.source, **sections)

    def section(self, name: str) -> Any:
        """Build the dataclass of section ``name`` from its declared keys."""
        values: dict[str, Any] = {}
        mappings: dict[str, dict[str, Any]] = {}
        for key in declared_keys(name):
            declared = key.setting
            if declared.each_of:
                value = self.convert(key, None)
                mapping = mappings.setdefault(key.field_name, {})
                if value is not None:
                    mapping[key.key] = value
            elif declared.file_key is not None:
                if key.key != declared.file_key:
                    values[key.field_name] = self.secret(key)
            else:
                values[key.field_name] = self.convert(key, key.default)
        for field_name, mapping in mappings.items():
            values[field_name] = MappingProxyType(mapping)
        for item in dataclasses.fields(SECTIONS[name]):
            source_of = item.metadata.get("source_of")
            if source_of is not None:  # the secret's file, so errors can name it
                secret_key = next(k for k in declared_keys(name) if k.field_name == source_of)
                path = self.raw(name, secret_key.setting.file_key or "")
                values[item.name] = Path(path) if path is not None else None
        return SECTIONS[name](**values)

    def secret(self, key: Key) -> str | None:
        """A secret given inline, or through its ``*_file`` key (a file only its owner reads)."""
        file_key = key.setting.file_key
        assert file_key is not None
        inline = self.raw(key.section, key.key)
        path = self.raw(key.section, file_key)
        if inline is not None and path is not None:
            self.problem(key.section, file_key, f"give either {key.key} or {file_key}, not both")
            return None
        if path is None:
            if inline is not None:
                self.warn_if_readable(key.section, key.key)
            return inline
        try:
            return read_secret_file(Path(path))
        except ValueError as error:
            self.problem(key.section, file_key, str(error))
            return None

    def cross_check(self, sections: dict[str, Any]) -> None:
        """Problems that involve two keys."""
        ldap, backup = sections["ldap"], sections["backup"]
        if ldap.bind_dn is None and ldap.bind_password is not None:
            self.problem("ldap", "bind_dn", "is required when a bind password is given")
        if backup.min_uid > backup.max_uid:
            self.problem("backup", "max_uid", f"{backup.max_uid} is below min_uid {backup.min_uid}")

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
