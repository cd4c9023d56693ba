"""Real login parts for the end-to-end login tests: NSS through libnss-extrausers,
jailkit's jk_chrootsh.ini, a private sshd on a free loopback port, an ssh client.

Every global file touched (``/etc/nsswitch.conf``, ``/etc/jailkit/jk_chrootsh.ini``,
``/var/lib/extrausers/*``) is saved first and put back by :class:`GlobalFiles`
even when the test fails; the system's own sshd service is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

NSSWITCH = Path("/etc/nsswitch.conf")
CHROOTSH_INI = Path("/etc/jailkit/jk_chrootsh.ini")
EXTRAUSERS = Path("/var/lib/extrausers")
CHROOTSH = "/usr/sbin/jk_chrootsh"
SSHD = "/usr/sbin/sshd"
PRIVILEGE_SEPARATION = Path("/run/sshd")


@dataclass
class _Saved:
    path: Path
    content: bytes | None
    mode: int = 0o644
    owner: tuple[int, int] = (0, 0)


GLOBAL_LOCK = Path("/run/lock/provbackup-test-global-files.lock")
GLOBAL_LOCK_WAIT = 900.0


class GlobalFiles:
    """Save global files on entry and restore them (or their absence) on exit.

    Holds a flock for the whole time: two suites running at once on one
    machine (several worktrees) would otherwise save each other's edits and
    "restore" them.
    """

    def __init__(self, paths: Sequence[Path], directories: Sequence[Path] = ()) -> None:
        self.saved: list[_Saved] = []
        self.paths = paths
        self.directories = directories
        self.created: list[Path] = []
        self.lock_fd = -1

    def _lock(self) -> None:
        GLOBAL_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self.lock_fd = os.open(GLOBAL_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + GLOBAL_LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.lock_fd)
                    raise TimeoutError(f"{GLOBAL_LOCK} held for {GLOBAL_LOCK_WAIT:g} s") from None
                time.sleep(0.5)

    def __enter__(self) -> GlobalFiles:
        self._lock()
        for directory in self.directories:
            if not directory.exists():
                directory.mkdir(mode=0o755, parents=True)
                self.created.append(directory)
        for path in self.paths:
            try:
                status = path.stat()
                self.saved.append(
                    _Saved(path, path.read_bytes(), status.st_mode & 0o7777,
                           (status.st_uid, status.st_gid))
                )  # fmt: skip
            except FileNotFoundError:
                self.saved.append(_Saved(path, None))
        return self

    def __exit__(self, *exception: object) -> None:
        for saved in self.saved:
            with contextlib.suppress(OSError):
                if saved.content is None:
                    saved.path.unlink(missing_ok=True)
                    continue
                temporary = saved.path.with_name(f".{saved.path.name}.provbackup-restore")
                temporary.write_bytes(saved.content)
                os.chown(temporary, *saved.owner)
                os.chmod(temporary, saved.mode)
                os.replace(temporary, saved.path)
        for directory in reversed(self.created):
            with contextlib.suppress(OSError):
                directory.rmdir()
        os.close(self.lock_fd)  # releases the flock


def enable_extrausers() -> None:
    """Add ``extrausers`` to the passwd, group and shadow lines of nsswitch.conf."""
    lines = []
    for line in NSSWITCH.read_text().splitlines():
        match = re.match(r"^(passwd|group|shadow):(.*)$", line)
        if match and "extrausers" not in match.group(2).split():
            line = f"{line} extrausers"
        lines.append(line)
    NSSWITCH.write_text("\n".join(lines) + "\n")


def relax_home_owner() -> None:
    """Set ``relax_home_owner=1`` in jk_chrootsh.ini's [DEFAULT], as README tells operators."""
    text = CHROOTSH_INI.read_text() if CHROOTSH_INI.exists() else ""
    if re.search(r"^\[DEFAULT\]", text, re.MULTILINE):
        text = re.sub(r"^\[DEFAULT\]\s*$", "[DEFAULT]\nrelax_home_owner = 1", text, count=1,
                      flags=re.MULTILINE)  # fmt: skip
    else:
        text += "\n[DEFAULT]\nrelax_home_owner = 1\n"
    CHROOTSH_INI.write_text(text)


def write_extrausers(
    users: Sequence[tuple[str, int, int, str, str]], shells: Mapping[str, str] | None = None
) -> None:
    """Write /var/lib/extrausers: (name, uidNumber, gidNumber, home, shadow hash) per user.

    The login shell is jk_chrootsh, as nslcd's ``map passwd loginShell`` serves it,
    unless ``shells`` names another for a user (a non-customer such as the operator).
    """
    shell = dict(shells or {})
    passwd = "".join(f"{n}:x:{u}:{g}::{h}:{shell.get(n, CHROOTSH)}\n" for n, u, g, h, _ in users)
    group = "".join(f"{n}:x:{g}:\n" for n, _, g, _, _ in users)
    shadow = "".join(f"{n}:{s}:19000:0:99999:7:::\n" for n, _, _, _, s in users)
    (EXTRAUSERS / "passwd").write_text(passwd)
    (EXTRAUSERS / "group").write_text(group)
    (EXTRAUSERS / "shadow").write_text(shadow)
    os.chmod(EXTRAUSERS / "shadow", 0o640)


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_sshd(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``sshd -D -f config`` until the block ends; wait until ``port`` accepts."""
    created = not PRIVILEGE_SEPARATION.exists()
    if created:
        PRIVILEGE_SEPARATION.mkdir(mode=0o755)
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with open(log, "ab") as handle:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=handle)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert process.poll() is None, f"sshd exited: {log.read_text()}"
            assert time.monotonic() < deadline, "sshd did not start listening"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if created:
            with contextlib.suppress(OSError):
                PRIVILEGE_SEPARATION.rmdir()


@dataclass
class Client:
    """An ssh client for one account: its key and the server's port."""

    user: str
    key: Path
    port: int
    options: tuple[str, ...] = ()

    def ssh_argv(self, *options: str) -> list[str]:
        """``ssh`` with a private config: this key only, no host key prompts, no agent.

        ``options`` come first: for ssh the first value of an option wins.
        """
        return [
            "ssh", *options, *self.options, "-F", "/dev/null",
            "-p", str(self.port), "-i", str(self.key),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    @property
    def remote(self) -> str:
        return f"{self.user}@127.0.0.1"

    @property
    def rsh(self) -> str:
        """The ``-e`` argument of rsync."""
        return shlex.join(self.ssh_argv())

    def ssh(self, command: str, *, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as the clients do: one string the login shell runs."""
        return subprocess.run(
            [*self.ssh_argv(), self.remote, command],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def rsync(self, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real rsync with this client's ssh as its remote shell."""
        return subprocess.run(
            ["rsync", *arguments], input=stdin, capture_output=True, text=True, timeout=120,
            check=False, env={**os.environ, "RSYNC_RSH": self.rsh},
        )  # fmt: skip


def make_key(path: Path, kind: str = "ed25519") -> Path:
    """Generate a passphrase-less key pair at ``path`` (and ``path``.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


def as_user(uid: int, gid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with the user's ids and no other groups (outside any jail)."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
