"""Would this server let a backup account log in, and only into its jail?

``check`` asks this when a jail is configured. Each finding is one line
naming the file or setting to fix:

- CRITICAL (a login would be refused, or would get past the jail): the jail
  template missing or without a shell or ``/bin/getQuota``; ``jk_chrootsh``
  missing or not set-uid root; ``relax_home_owner`` not set in the
  ``jk_chrootsh.ini`` section that applies to the accounts; an account
  unknown to NSS, or served with another login shell or a homeDirectory
  without ``/./``; ``sshd -T`` for an account showing forwarding allowed,
  sftp served inside sshd (``internal-sftp``) without a chroot, the sshd
  snippet's Match block not in effect for it, or the snippet changing root's
  or the operator's settings (:mod:`provbackup.actions.sshd_check`).
- WARNING: ``fs.protected_hardlinks`` off; sshd cannot be asked (``sshd
  -T`` failed) or the snippet read; no account on disk to check NSS and sshd
  with.

The account checked is the first one found on disk (every account is
served by the same NSS and sshd settings).
"""

from __future__ import annotations

import configparser
import grp
import logging
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

from provbackup.actions.sshd_check import check_sshd
from provbackup.config import Config
from provbackup.errors import EntryError
from provbackup.work.jail import find_jails
from provbackup.work.safe import lstat_entry, open_directory, open_root
from provbackup.work.session import protected_hardlinks

logger = logging.getLogger(__name__)


@dataclass
class LoginFindings:
    """What :func:`check_login_setup` found: critical problems, warnings, the account used."""

    critical: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    account: str | None = None


def wants_login_check(config: Config) -> bool:
    """True when ``[jail] check_login`` says so (auto: a jail template is configured)."""
    setting = config.jail.check_login
    return setting == "yes" or (setting == "auto" and config.backup.jail_template is not None)


def check_login_setup(config: Config) -> LoginFindings:
    """Inspect the jail template, jailkit, NSS and sshd; return the findings (never raises)."""
    findings = LoginFindings()
    _check_template(config, findings)
    _check_chrootsh(config, findings)
    _check_hardlinks(findings)
    account = _first_account(config, findings)
    _check_chrootsh_ini(config, account, findings)
    if account is None:
        findings.warnings.append(
            f"no account under {config.backup.root} yet: NSS and sshd not checked"
        )
        return findings
    findings.account = account
    _check_nss(config, account, findings)
    check_sshd(config, account, findings.critical, findings.warnings)
    return findings


def _check_template(config: Config, findings: LoginFindings) -> None:
    template = config.backup.jail_template
    if template is None:
        findings.critical.append("no [backup] jail_template: accounts get an empty jail")
        return
    if not template.is_dir():
        findings.critical.append(
            f"jail template {template} does not exist: run provbackup jail-template"
        )
        return
    for program in ("bin/sh", "bin/getQuota"):
        # Resolved inside the template: jk_init makes bin a symlink to usr/bin.
        resolved = os.path.realpath(template / program)
        if not Path(resolved).is_relative_to(template) or not os.access(resolved, os.X_OK):
            findings.critical.append(
                f"jail template {template} has no /{program}: run provbackup jail-template"
            )


def _check_chrootsh(config: Config, findings: LoginFindings) -> None:
    shell = config.jail.chrootsh
    try:
        status = shell.stat()
    except OSError as error:
        findings.critical.append(f"{shell}: {error.strerror} (install jailkit)")
        return
    if status.st_uid != 0 or not status.st_mode & stat.S_ISUID:
        findings.critical.append(f"{shell} is not set-uid root: it cannot chroot any login")


def _check_hardlinks(findings: LoginFindings) -> None:
    if not protected_hardlinks():
        findings.warnings.append(
            "fs.protected_hardlinks is 0: users could hard-link files they cannot read "
            "into incoming/; sysctl fs.protected_hardlinks=1"
        )


def _first_account(config: Config, findings: LoginFindings) -> str | None:
    try:
        with open_root(config.backup.root) as root:
            for _account, jail in find_jails(root, config.backup.layout):
                if lstat_entry(jail, "home") is None:
                    continue
                with open_directory(jail, "home") as homes:
                    names = sorted(os.listdir(homes.fd))
                if names:
                    return names[0]
    except (EntryError, OSError) as error:
        # An unsafe path there is process's to report; here it only means "no sample".
        findings.warnings.append(f"cannot look for an account to check: {error}")
    return None


def _check_chrootsh_ini(config: Config, account: str | None, findings: LoginFindings) -> None:
    path = config.jail.chrootsh_ini
    parser = configparser.ConfigParser(interpolation=None, default_section="\0", strict=False)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        parser = configparser.ConfigParser(default_section="\0")
    except (OSError, configparser.Error, UnicodeDecodeError) as error:
        findings.critical.append(f"{path}: cannot read: {' '.join(str(error).split())}")
        return
    section = "DEFAULT"
    if account is not None:
        # jk_chrootsh uses one section: the user's, else the primary group's, else DEFAULT.
        group = _group_name(account)
        for candidate in (account, f"group {group}" if group else None):
            if candidate and parser.has_section(candidate):
                section = candidate
                break
    value = "0"
    if parser.has_section(section):
        value = parser.get(section, "relax_home_owner", fallback="0")
    if value.strip() != "1":
        findings.critical.append(
            f"{path}: [{section}] lacks relax_home_owner=1: jk_chrootsh refuses every login "
            "(the homes are root-owned on purpose)"
        )


def _group_name(account: str) -> str | None:
    try:
        return grp.getgrgid(pwd.getpwnam(account).pw_gid).gr_name
    except (KeyError, OSError):
        return None


def _check_nss(config: Config, account: str, findings: LoginFindings) -> None:
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        findings.critical.append(
            f"account {account} is unknown to NSS (getent passwd {account}): no login possible "
            "(nslcd or libnss-extrausers in /etc/nsswitch.conf?)"
        )
        return
    if entry.pw_shell != str(config.jail.chrootsh):
        findings.critical.append(
            f"getent passwd {account} gives the shell {entry.pw_shell!r}, not "
            f"{config.jail.chrootsh}: a login would get past the jail (nslcd: map passwd "
            f'loginShell "{config.jail.chrootsh}")'
        )
    if "/./" not in entry.pw_dir:
        findings.critical.append(
            f"getent passwd {account} gives the home {entry.pw_dir!r} without '/./': "
            "jk_chrootsh cannot find the jail"
        )
