"""``jail-template``: build the jail template once, and re-apply it to every account.

The template is built with jailkit's ``jk_init`` (``[jail] sections``) and
``jk_cp`` (``[jail] programs``) into a fresh directory next to the target,
given provbackup's ``/bin/getQuota``, a files-only ``etc/nsswitch.conf``
and ``/dev/null``, made root-owned and writable by root only, tried with
``chroot`` (a shell, echo, cat, ls, mkdir, rm, rsync and getQuota must
run), and only then put in place of the old one by a rename. Files already
hard-linked into accounts keep their old inodes until the account is
refreshed: a rebuild never changes a file a running jail uses.

Both steps hold the run lock, so no ``process`` run links a half-built
template.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from provbackup.config import Config
from provbackup.errors import RETURN_FILESYSTEM, EntryError, JailTemplateError, WorkError
from provbackup.lock import run_lock
from provbackup.work.commands import run_command, tail
from provbackup.work.jail import GETQUOTA_SCRIPT, find_jails
from provbackup.work.safe import OpenDirectory, open_root, remove_tree
from provbackup.work.template import copy_jail_template

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 600.0
# Shells redirect to /dev/null; puttygen (Sepiola's first run) and ssh read urandom.
JAIL_DEVICES = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9)}
JAIL_NSSWITCH = "passwd: files\ngroup: files\nshadow: files\n"
# What the clients run in the jail (SPEC section 6); checked after the build.
REQUIRED_PROGRAMS = ("sh", "echo", "cat", "ls", "mkdir", "rm", "rsync")
SMOKE_SCRIPT = (
    'for program in "$@"; do command -v "$program" >/dev/null '
    '|| { echo "missing: $program"; exit 1; }; done; '
    "rsync --version >/dev/null || exit 1; echo LoggedIn; /bin/getQuota"
)


@dataclass
class BuildReport:
    """What ``jail-template`` built: the directory, its size and the commands run."""

    directory: Path
    files: int = 0
    bytes: int = 0
    replaced: bool = False
    commands: list[str] = field(default_factory=list)


@dataclass
class ApplyReport:
    """What re-applying the template to every account did."""

    accounts: int = 0
    changed: int = 0
    failed: list[str] = field(default_factory=list)


def build_template(config: Config, directory: Path, *, wait: float = 0) -> BuildReport:
    """Build the jail template into ``directory`` (replacing one already there).

    Takes the configuration (``[jail]``, ``[run] lock_file``) and how long to
    wait for the run lock. Returns the :class:`BuildReport`. Raises
    JailTemplateError when jailkit fails, the result misses a program the
    clients need, or ``directory`` is not a plain directory path;
    LockHeldError when a run holds the lock.
    """
    directory = Path(os.path.normpath(directory))
    if not directory.is_absolute() or directory == Path("/"):
        raise JailTemplateError(f"jail template {directory}: give an absolute path below /")
    parent = directory.parent
    if not parent.is_dir():
        raise JailTemplateError(f"jail template {directory}: {parent} does not exist")
    existing = _lstat(directory)
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        raise JailTemplateError(
            f"jail template {directory}: exists and is not a directory; left alone"
        )
    _check_sections(config)
    token = secrets.token_hex(4)
    staging = parent / f".{directory.name}.new-{token}"
    report = BuildReport(directory=directory)
    with run_lock(config.run.lock_file, wait):
        os.mkdir(staging, 0o755)
        try:
            _run_jailkit(config, staging, report)
            _add_own_files(staging)
            _make_shareable(staging, report)
            _smoke_test(staging)
            report.replaced = existing is not None
            _swap(staging, directory, token)
        except BaseException:
            _remove(parent, staging.name)
            raise
    logger.info("jail template %s: %d files, %d bytes", directory, report.files, report.bytes)
    return report


def apply_template(config: Config, template: Path, *, wait: float = 0) -> ApplyReport:
    """Re-apply ``template`` to the jail of every account under ``[backup] root``.

    Only the shared part is refreshed (links, directories, symlinks); the
    per-account files are process's. One account's failure is logged and
    the rest go on (``ApplyReport.failed``). Raises LockHeldError when a
    run holds the lock, WorkError when the backup root is missing.
    """
    report = ApplyReport()
    with run_lock(config.run.lock_file, wait), open_root(config.backup.root) as root:
        for account, jail in find_jails(root, config.backup.layout):
            report.accounts += 1
            steps: list[str] = []
            try:
                if copy_jail_template(template, jail, steps):
                    report.changed += 1
            except (EntryError, OSError) as error:
                logger.error("%s: jail template not applied: %s", account, error)
                report.failed.append(f"{account}: {error}")
    return report


def _check_sections(config: Config) -> None:
    """Refuse sections jk_init does not know: it only warns about them and goes on."""
    path = config.jail.jk_init_config
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0")
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error, UnicodeDecodeError) as error:
        raise JailTemplateError(f"[jail] jk_init_config {path}: cannot read: {error}") from None
    unknown = [name for name in config.jail.sections if not parser.has_section(name)]
    if unknown:
        raise JailTemplateError(
            f"[jail] sections: {', '.join(unknown)} not defined in {path} (jk_init -l lists them)"
        )


def _run_jailkit(config: Config, staging: Path, report: BuildReport) -> None:
    jail = config.jail
    tools = jail.chrootsh.parent
    commands = [
        [str(tools / "jk_init"), "-c", str(jail.jk_init_config), "-j", str(staging),
         *jail.sections],
    ]  # fmt: skip
    if jail.programs:
        commands.append([str(tools / "jk_cp"), "-j", str(staging), *jail.programs])
    for argv in commands:
        report.commands.append(" ".join(argv))
        result = run_command(
            argv, timeout=COMMAND_TIMEOUT, what="jailkit", return_value=RETURN_FILESYSTEM,
            merge_output=True,
        )  # fmt: skip
        # jk_init says ERROR and goes on for a section it cannot find: that is a failure too.
        errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
        if result.returncode != 0 or errors:
            raise JailTemplateError(
                f"{' '.join(argv[:1])} {result.status_text()}: "
                f"{tail(chr(10).join(errors) or result.stdout)}"
            )


def _add_own_files(staging: Path) -> None:
    """getQuota, a files-only nsswitch.conf, the devices and the base passwd/group."""
    # jk_init makes bin a symlink to usr/bin; any such link must stay inside the staging
    # tree: one to the host's /usr/bin would have root write into the host.
    binaries = _inside(staging, "bin", create=True)
    _write(binaries / "getQuota", GETQUOTA_SCRIPT, 0o755)
    etc = _inside(staging, "etc", create=True)
    _write(etc / "nsswitch.conf", JAIL_NSSWITCH, 0o644)
    if not (etc / "passwd").exists():
        _write(etc / "passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
    if not (etc / "group").exists():
        _write(etc / "group", "root:x:0:\n", 0o644)
    devices = _inside(staging, "dev", create=True)
    for name, (major, minor) in JAIL_DEVICES.items():
        if not (devices / name).exists():
            os.mknod(devices / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(devices / name, 0o666)


def _inside(staging: Path, name: str, *, create: bool) -> Path:
    """``staging/name`` resolved, refusing anything that leads out of ``staging``."""
    path = staging / name
    if create and not os.path.lexists(path):
        path.mkdir(mode=0o755)
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(os.path.realpath(staging)) or not resolved.is_dir():
        raise JailTemplateError(
            f"the new jail's /{name} leads to {resolved}, outside the jail; not writing there"
        )
    return resolved


def _write(path: Path, text: str, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # O_NOFOLLOW|O_EXCL: a symlink planted at the name is refused, never written through.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        os.fchown(handle.fileno(), 0, 0)
        os.fchmod(handle.fileno(), mode)


def _make_shareable(staging: Path, report: BuildReport) -> None:
    """Root owns everything, nobody else writes, no set-id bits, no sockets."""
    for top, directories, files in os.walk(staging):
        for name in directories + files:
            path = Path(top, name)
            status = path.lstat()
            if stat.S_ISSOCK(status.st_mode):
                path.unlink()
                continue
            os.chown(path, 0, 0, follow_symlinks=False)
            if stat.S_ISLNK(status.st_mode):
                continue
            mode = stat.S_IMODE(status.st_mode)
            if stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode):
                mode &= ~(stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID)
            os.chmod(path, mode)
            if stat.S_ISREG(status.st_mode):
                report.files += 1
                report.bytes += status.st_size
    os.chown(staging, 0, 0)
    os.chmod(staging, 0o755)


def _smoke_test(staging: Path) -> None:
    argv = [shutil.which("chroot") or "/usr/sbin/chroot", str(staging), "/bin/sh", "-c",
            SMOKE_SCRIPT, "smoke", *REQUIRED_PROGRAMS[1:]]  # fmt: skip
    result = run_command(argv, timeout=60, what="jail smoke test", return_value=RETURN_FILESYSTEM,
                         merge_output=True)  # fmt: skip
    if result.returncode != 0 or "LoggedIn" not in result.stdout:
        raise JailTemplateError(
            f"the new jail does not work (chroot {staging} /bin/sh {result.status_text()}: "
            f"{tail(result.stdout)}); add the jk_init section giving it to [jail] sections"
        )


def _swap(staging: Path, directory: Path, token: str) -> None:
    old = directory.parent / f".{directory.name}.old-{token}"
    if _lstat(directory) is not None:
        os.rename(directory, old)
    try:
        os.rename(staging, directory)
    except BaseException:
        if _lstat(old) is not None:
            os.rename(old, directory)
        raise
    _remove(directory.parent, old.name)


def _remove(parent: Path, name: str) -> None:
    if _lstat(parent / name) is None:
        return
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with OpenDirectory(fd, parent) as handle:
            remove_tree(handle, name)
    except (WorkError, OSError) as error:
        logger.warning("could not remove %s: %s", parent / name, error)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
