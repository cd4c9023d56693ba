"""The installed package end to end: a customer's login, upload and restore; the btrfs engine.

Used by bin/package-smoke.py (run by bin/test-package, as root, with the
package installed). Only what the package and the README's install steps
give is used: /usr/bin/provbackup, its conffile, the sshd snippet from
/usr/share/doc/provbackup/examples, and Debian's openssh-server, jailkit,
rsync and btrfs-progs. The test's own parts are the throwaway slapd
(sandbox/), NSS through libnss-extrausers (README's login step 5 names it
as the alternative to nslcd) and an ssh client with a fresh key
(tests/loginkit.py, as tests/system/test_login.py uses them).

- :func:`customer_login`: README's login steps 1, 3, 4 and 5 (the Recommends
  installed, relax_home_owner, the snippet in /etc/ssh/sshd_config.d/,
  the account known to NSS) and a real sshd on a free loopback port with
  /etc/ssh/sshd_config; every global file is put back on exit, also on a
  failure, and sshd is stopped.
- :func:`upload_snapshot_restore`: as the customer, over that sshd: login,
  getQuota, an rsync upload into incoming/, ``provbackup snapshot`` of the
  account's lowest interval, an rsync restore from that snapshot compared
  byte for byte, getQuota again.
- :func:`btrfs_simple_quotas`: a loop-mounted btrfs image with simple quotas,
  an account added there with ``[backup] engine = btrfs``, and ``check``
  naming simple quotas; skipped with a printed reason where no loop device
  can be had.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from loginkit import (  # noqa: E402
    CHROOTSH_INI,
    EXTRAUSERS,
    NSSWITCH,
    Client,
    GlobalFiles,
    enable_extrausers,
    free_port,
    make_key,
    relax_home_owner,
    running_sshd,
    write_extrausers,
)

BINARY = "/usr/bin/provbackup"
# Only what a cron job or the unit has: nothing from this checkout or a venv.
CLEAN_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
EXAMPLES = Path("/usr/share/doc/provbackup/examples")
SNIPPET = Path("/etc/ssh/sshd_config.d/provbackup.conf")  # where README step 4 puts it
# README's login step 1, and rsnapshot (a Recommends) for the snapshot runs.
RECOMMENDS = ("openssh-server", "jailkit", "rsync", "rsnapshot")
HOST = "pkgtest"  # the client's directory in incoming/ (Sepiola: its host name)
UPLOAD_BYTES = 3 << 20
QUOTA_CTL, ENABLE_SIMPLE_QUOTA = 0xC0109428, 4  # BTRFS_IOC_QUOTA_CTL (tests/btrfs_image.py)


def run(*arguments: str, expect: int = 0) -> str:
    """Run the installed provbackup; fail unless it exits ``expect``; return its stdout."""
    completed = subprocess.run(
        [BINARY, *arguments], capture_output=True, text=True, env=CLEAN_ENVIRONMENT,
        cwd="/", timeout=300, check=False,
    )  # fmt: skip
    print(f"$ provbackup {' '.join(arguments)}  -> exit {completed.returncode}")
    print(completed.stdout + completed.stderr, end="")
    if completed.returncode != expect:
        raise SystemExit(f"package-smoke: expected exit {expect}, got {completed.returncode}")
    return completed.stdout


def require(condition: bool, what: str, detail: str = "") -> None:
    """Print ``what`` as checked, or exit naming it (and ``detail``, e.g. a command's stderr)."""
    if not condition:
        raise SystemExit(f"package-smoke: FAILED: {what} {detail}".rstrip())
    print(f"ok: {what}")


def command(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell) with the clean environment; never raises on its exit code."""
    return subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENVIRONMENT,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip


def install_recommends() -> None:
    """README's login step 1: ``apt-get install openssh-server jailkit rsync`` (+ rsnapshot)."""
    installed = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *RECOMMENDS], capture_output=True, text=True,
        stdin=subprocess.DEVNULL, check=False,
        env={**CLEAN_ENVIRONMENT, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    require(installed.returncode == 0, f"apt-get install {' '.join(RECOMMENDS)}",
            installed.stderr[-2000:])  # fmt: skip
    versions = command("dpkg-query", "-W", "-f=${Package} ${Version}, ", *RECOMMENDS).stdout
    print(f"ok: README's packages installed: {versions.rstrip(', ')}")


@contextlib.contextmanager
def customer_login(uid: str, home: str, work: Path) -> Iterator[Client]:
    """Set the server up for ``uid``'s logins as the README says; yield the customer's client.

    ``home`` is the entry's homeDirectory (``.../chroot/./home/<uid>``). The
    account's numbers are the uid (sandbox's account_entry). Global files
    (nsswitch.conf, jk_chrootsh.ini, /var/lib/extrausers, the installed
    snippet) are restored on exit, and sshd is stopped, also on a failure.
    """
    install_recommends()
    shipped = EXAMPLES / "sshd_config.d" / "provbackup.conf"
    require(shipped.is_file(), f"the package ships the sshd snippet ({shipped})")
    number = int(uid)
    with GlobalFiles(
        [NSSWITCH, CHROOTSH_INI, SNIPPET, *(EXTRAUSERS / n for n in ("passwd", "group", "shadow"))],
        [EXTRAUSERS],
    ):
        relax_home_owner()  # step 3: [DEFAULT] relax_home_owner = 1 in jk_chrootsh.ini
        installed = command("install", "-m", "0644", str(shipped), f"{SNIPPET.parent}/")  # step 4
        require(installed.returncode == 0 and SNIPPET.read_bytes() == shipped.read_bytes(),
                f"install -m 0644 {shipped} {SNIPPET.parent}/", installed.stderr)  # fmt: skip
        # Step 5 with libnss-extrausers: the shell jk_chrootsh, as nslcd's map would serve it.
        write_extrausers([(uid, number, number, home, "*")])
        enable_extrausers()
        passwd = command("getent", "passwd", uid).stdout.strip()
        require(passwd.endswith(f":{home}:/usr/sbin/jk_chrootsh"), f"getent passwd {uid}: {passwd}")
        key = make_key(work / "customer-key")
        keys = Path(home.replace("/./", "/")) / ".ssh" / "authorized_keys"
        keys.write_text(Path(f"{key}.pub").read_text())
        os.chown(keys, number, number)
        keys.chmod(0o600)
        port = free_port()
        # README's `sshd -t` is running_sshd's, before it starts sshd.
        # Debian's /etc/ssh/sshd_config (which includes sshd_config.d/*.conf) with this
        # test's port in front: for sshd the first value wins. No PAM: pam_loginuid and
        # pam_systemd want a booted system; key logins do not need PAM.
        config = work / "sshd_config"
        config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nPidFile {work / 'sshd.pid'}\n"
                          "UsePAM no\nInclude /etc/ssh/sshd_config\n")  # fmt: skip
        with running_sshd(config, port, work / "sshd.log"):
            print(f"ok: sshd on 127.0.0.1:{port} with {SNIPPET}")
            yield Client(uid, key, port)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _get_quota(client: Client) -> list[int]:
    printed = client.ssh("/bin/getQuota")
    require(printed.returncode == 0, f"ssh {client.user} /bin/getQuota", printed.stderr)
    return [int(figure) for figure in printed.stdout.split()]


def upload_snapshot_restore(client: Client, account: Path, quota_mib: int, work: Path) -> None:
    """As the customer: log in, upload, restore from ``provbackup snapshot``; compare bytes."""
    login = client.ssh("sh -c 'echo LoggedIn'")
    require((login.returncode, login.stdout) == (0, "LoggedIn\n"),
            "the customer logs in through sshd and jk_chrootsh", login.stderr)  # fmt: skip
    require(_get_quota(client) == [quota_mib, 0, 0], f"getQuota before a snapshot: {quota_mib} 0 0")
    source = work / "upload"
    source.mkdir()
    (source / "data.bin").write_bytes(os.urandom(UPLOAD_BYTES))
    (source / "Grüße.txt").write_text("a non-ASCII name\n")
    upload = client.rsync("-rtS8", f"{source}/", f"{client.remote}:incoming/{HOST}/")
    require(upload.returncode == 0, f"rsync upload into incoming/{HOST}/", upload.stderr)
    home = account / "chroot" / "home" / client.user
    landed = home / "incoming" / HOST / "data.bin"
    require(landed.is_file() and landed.stat().st_uid == int(client.user)
            and _digest(landed) == _digest(source / "data.bin"),
            "the upload landed in incoming/, the customer's")  # fmt: skip
    retain = [line.split("\t")[1] for line in (account / "rsnapshot.conf").read_text().splitlines()
              if line.startswith("retain\t")]  # fmt: skip
    interval = retain[0]  # README: retain lines in the order hourly, daily, ... (lowest first)
    run("snapshot", interval)
    snapshot = home / ".snapshots" / f"{interval}.0" / HOST / "data.bin"
    require(snapshot.is_file(), f"the snapshot holds it ({snapshot})")
    restored = work / "restore"
    restore = client.rsync("-rt8", f"{client.remote}:.snapshots/{interval}.0/{HOST}/",
                           f"{restored}/")  # fmt: skip
    require(restore.returncode == 0, f"rsync restore from .snapshots/{interval}.0/",
            restore.stderr)  # fmt: skip
    require(sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in source.iterdir())
            and all(_digest(restored / p.name) == _digest(p) for p in source.iterdir()),
            f"the restore is byte-exact ({UPLOAD_BYTES} bytes and a non-ASCII name)")  # fmt: skip
    figures = _get_quota(client)
    require(len(figures) == 3 and figures[0] == quota_mib and figures[1] >= UPLOAD_BYTES >> 20,
            f"getQuota after the snapshot: quota {quota_mib} MiB, the upload counted "
            f"(quota backup snapshot = {' '.join(map(str, figures))})")  # fmt: skip
    wiped = client.ssh(f"rm -rf .snapshots/{interval}.0")
    require(wiped.returncode != 0 and snapshot.is_file(), "the customer cannot remove a snapshot")


def _loop_unavailable() -> str | None:
    """Why no btrfs image can be loop-mounted here, or None."""
    for tool in ("mkfs.btrfs", "btrfs", "losetup"):
        if shutil.which(tool, path=CLEAN_ENVIRONMENT["PATH"]) is None:
            return f"{tool} is not installed"
    free = command("losetup", "--find")
    if free.returncode != 0:
        return f"no free loop device (losetup --find: {free.stderr.strip()})"
    return None


def _enable_simple_quotas(mount: Path) -> None:
    """``btrfs quota enable --simple``; the kernel's ioctl where the progs predate 6.7."""
    enabled = command("btrfs", "quota", "enable", "--simple", str(mount))
    if enabled.returncode == 0:
        print(f"ok: btrfs quota enable --simple {mount}")
        return
    version = command("btrfs", "--version").stdout.strip()
    said = (enabled.stderr.strip().splitlines() or [f"exit {enabled.returncode}"])[0]
    print(f"note: {version} cannot enable simple quotas ({said}): "
          "enabling them through the kernel's ioctl, as the suite does")  # fmt: skip
    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, QUOTA_CTL, struct.pack("QQ", ENABLE_SIMPLE_QUOTA, 0))
    finally:
        os.close(fd)


def btrfs_simple_quotas(
    work: Path, uid: str, directory: Callable[[Path, Path], AbstractContextManager[Path]]
) -> None:
    """A btrfs root with simple quotas: one add with engine = btrfs; check must say so.

    ``directory(root, folder)`` is the LDAP side for it: a context that
    holds an add request for ``uid`` below ``root`` and yields the path of a
    second configuration (engine btrfs, that root; its status and lock in
    ``folder``).
    """
    reason = _loop_unavailable()
    if reason is not None:
        print(f"SKIPPED: the btrfs engine check: {reason}")
        return
    image, mount = work / "btrfs.img", work / "btrfs"
    mount.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(512 << 20)
    made = command("mkfs.btrfs", "-q", "-f", str(image))
    require(made.returncode == 0, f"mkfs.btrfs {image}", made.stderr)
    mounted = command("mount", "-o", "loop", str(image), str(mount))
    if mounted.returncode != 0:
        print(f"SKIPPED: the btrfs engine check: mount -o loop failed: {mounted.stderr.strip()}")
        return
    try:
        _enable_simple_quotas(mount)
        root = mount / "backup"
        root.mkdir(mode=0o755)
        with directory(root, work / "btrfs-run") as config:
            _add_and_check(config, root, uid)
    finally:
        for _ in range(20):
            if command("umount", str(mount)).returncode == 0:
                break
            time.sleep(0.25)
        else:
            command("umount", "-l", str(mount))
        for line in command("losetup", "-j", str(image)).stdout.splitlines():
            command("losetup", "-d", line.split(":", 1)[0])
        image.unlink(missing_ok=True)


def _add_and_check(config: Path, root: Path, uid: str) -> None:
    """``process`` adds ``uid`` on the btrfs ``root``; ``check`` must name simple quotas."""
    processed = run("--config", str(config), "process")
    require(re.search(rf"^done\s+add\s+{uid}\s", processed, re.MULTILINE) is not None
            and "1 done, 0 failed" in processed, "process added it on btrfs")  # fmt: skip
    home = root / uid[-1] / uid[-3:] / uid[-6:-3] / uid / "chroot" / "home" / uid
    incoming = home / "incoming"
    require(incoming.stat().st_ino == 256, f"{incoming} is a btrfs subvolume")
    checked = run("--config", str(config), "check")
    require(checked.startswith("PROVBACKUP OK"), "check on the btrfs root says OK")
    require("btrfs engine: simple quotas" in checked,
            f"check says the btrfs engine has simple quotas (kernel {os.uname().release})")
