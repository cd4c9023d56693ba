"""End-to-end smoke test of the INSTALLED package (run by bin/test-package, as root).

Starts a throwaway slapd from the checkout's ``sandbox/`` (with TLS), points
the package's own conffile /etc/provbackup/provbackup.conf at it (the default
config path, lock and status file) with a jail template as README's login
step 2 says, builds the template, adds one account request, and runs the
installed ``/usr/bin/provbackup`` with a clean environment: ``jail-template``,
``scan``, ``process`` (the account is added) and ``show``. Then README's
login steps (bin/package_e2e.py): the Recommends installed, jailkit's
relax_home_owner, the package's sshd snippet in /etc/ssh/sshd_config.d/, the
account known to NSS, a real sshd on a loopback port; ``check`` says OK
with no ``login:`` finding; the customer logs in, uploads with rsync,
``provbackup snapshot`` takes the account's lowest interval and the
customer restores from it, byte for byte. Then the btrfs engine on a
loop-mounted btrfs with simple quotas: one add, and ``check`` names simple
quotas (skipped with a printed reason where no loop device can be had).
Then, with all of that still running, upgrades to ``sys.argv[2]`` (the same
code built as another Debian revision) the way the README describes, with
the conffile edited and the timer enabled: the conffile is kept (no prompt,
mode 0600), the timer stays enabled, the account tree is untouched and
``check`` still says OK. Every global file is put back and every process
and mount is stopped on the way out, also on a failure.
Prints what it checked; exits non-zero at the first check that fails.
``sys.argv[1]`` is the backup root to use (left in place: bin/test-package
checks that purging keeps it; not below a world-writable directory such as
/tmp: jailkit refuses such a jail).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from package_e2e import (  # noqa: E402  (bin/, this script's directory)
    CLEAN_ENVIRONMENT,
    btrfs_simple_quotas,
    customer_login,
    require,
    run,
    upload_snapshot_restore,
)

from sandbox import Slapd, account_entry, jailkit_home_directory  # noqa: E402

CONFIG = Path("/etc/provbackup/provbackup.conf")
UID = "3723707"
BTRFS_UID = "3723708"
QUOTA_MIB = 1024  # sandbox's account_entry: sstQuota 1 GiB


def configured(
    shipped: str, server: Slapd, secret: Path, root: Path, lines: dict[str, str]
) -> str:
    """The shipped conffile edited as an administrator would: ``server``'s LDAP, ``root``.

    ``lines`` maps more shipped lines to their replacements (each must be there).
    """
    settings = server.ldap_settings()
    secret.write_text(settings["bind_password"] + "\n")
    secret.chmod(0o600)
    edits = {
        "uri = ldap://ldap1.example.com ldap://ldap2.example.com": f"uri = {settings['uri']}",
        "bind_dn = cn=provbackup,ou=services,dc=stoney-cloud,dc=org":
            f"bind_dn = {settings['bind_dn']}",
        "bind_password_file = /etc/provbackup/ldap.secret": f"bind_password_file = {secret}",
        "base_dn = ou=accounts,ou=backup,ou=services,dc=stoney-cloud,dc=org":
            f"base_dn = {settings['base_dn']}",
        "#ca_file = /etc/ssl/certs/ca-certificates.crt": f"ca_file = {settings['ca_file']}",
        "root = /var/backup": f"root = {root}",
        "syslog = yes": "syslog = no",
        **lines,
    }  # fmt: skip
    text = shipped
    for old, new in edits.items():
        require(f"\n{old}\n" in text, f"the conffile has the line {old!r}")
        text = text.replace(f"\n{old}\n", f"\n{new}\n", 1)
    return text


def add_request(server: Slapd, root: Path, uid: str) -> None:
    """Put an add request for ``uid`` (its jailkit homeDirectory below ``root``) into LDAP."""
    server.add_entries(
        [account_entry(uid, base_dn=server.accounts_dn,
                       home_directory=jailkit_home_directory(root, uid))]
    )  # fmt: skip


@contextlib.contextmanager
def btrfs_directory(shipped: str, root: Path, directory: Path) -> Iterator[Path]:
    """A slapd of its own with an add request, and a second config for ``root``, engine btrfs.

    Yields the config's path; its lock and status files are in ``directory``.
    """
    directory.mkdir(mode=0o700)
    with Slapd(directory / "slapd", tls=True) as server:
        server.add_base()
        text = configured(
            shipped, server, directory / "ldap.secret", root,
            {"engine = rsnapshot": "engine = btrfs",
               "lock_file = /run/provbackup/provbackup.lock":
                   f"lock_file = {directory / 'provbackup.lock'}",
               "status_file = /var/lib/provbackup/status.json":
                   f"status_file = {directory / 'status.json'}"},
        )  # fmt: skip
        config = directory / "provbackup.conf"
        config.write_text(text)
        config.chmod(0o600)
        add_request(server, root, BTRFS_UID)
        yield config


def main() -> int:
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    imported = subprocess.run(
        ["/usr/bin/python3", "-c", "import provbackup; print(provbackup.__file__)"],
        capture_output=True, text=True, env=CLEAN_ENVIRONMENT, cwd="/", check=True,
    ).stdout.strip()  # fmt: skip
    require(imported.startswith("/usr/lib/python3/dist-packages/provbackup/"),
            f"the installed package is the one imported ({imported})")  # fmt: skip
    sandbox_found = subprocess.run(
        ["/usr/bin/python3", "-c", "import sandbox"], capture_output=True,
        env=CLEAN_ENVIRONMENT, cwd="/", check=False,
    ).returncode == 0  # fmt: skip
    require(not sandbox_found, "the test sandbox is not installed")
    if not Path("/etc/provbackup/ldap.secret").exists():
        # As shipped (no bind password yet), a run fails and check does not say OK.
        run("-q", "process", expect=78)
        require(run("-qq", "check", expect=3).startswith("PROVBACKUP UNKNOWN"),
                "unconfigured: process exits 78, check says UNKNOWN")  # fmt: skip
    shipped = CONFIG.read_text()
    with tempfile.TemporaryDirectory(prefix="provbackup-smoke-") as temporary, Slapd(
        Path(temporary) / "slapd", tls=True
    ) as server:
        work = Path(temporary)
        server.add_base()
        template = root / ".jail-template"
        CONFIG.write_text(configured(
            shipped, server, work / "ldap.secret", root,
            {"#jail_template = /var/backup/.jail-template": f"jail_template = {template}"},
        ))  # fmt: skip
        run("--version")
        run("jail-template")  # README's login step 2
        require((template / "bin" / "getQuota").is_file(),
                f"the jail template is built ({template})")  # fmt: skip
        add_request(server, root, UID)
        scanned = run("scan")
        require(UID in scanned, "scan lists the due request")
        processed = run("process")
        require(re.search(rf"^done\s+add\s+{UID}\s", processed, re.MULTILINE) is not None
                and "1 done, 0 failed" in processed, "process added it")  # fmt: skip
        shown = run("show", UID)
        require("added" in shown, "show reports the account as added")
        account = root / UID[-1] / UID[-3:] / UID[-6:-3] / UID
        require((account / "chroot" / "home" / UID / "incoming").is_dir(),
                f"the account tree exists ({account})")  # fmt: skip
        require((account / "rsnapshot.conf").is_file(), "its rsnapshot.conf exists")
        require((account / "chroot" / "bin" / "getQuota").is_file(), "its jail has the template")
        with customer_login(UID, jailkit_home_directory(root, UID), work) as client:
            checked = run("-qq", "check")
            require(checked.startswith("PROVBACKUP OK") and "login:" not in checked,
                    "check says OK, with no login: finding (README's login step 6)")  # fmt: skip
            require(Path("/var/lib/provbackup/status.json").is_file(),
                    "the status file is in /var/lib/provbackup")  # fmt: skip
            upload_snapshot_restore(client, account, QUOTA_MIB, work)
            btrfs_simple_quotas(
                work, BTRFS_UID, lambda btrfs_root, directory: btrfs_directory(
                    shipped, btrfs_root, directory)
            )  # fmt: skip
            if len(sys.argv) > 2:
                upgrade(Path(sys.argv[2]), root)
    return 0


def tree(root: Path) -> list[tuple[str, int, int, int, int]]:
    """Every path below ``root`` with its mode, owner, group and size (no link followed)."""
    listing = []
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        listing.append((str(path), status.st_mode, status.st_uid, status.st_gid, status.st_size))
    return listing


def upgrade(deb: Path, root: Path) -> None:
    """Upgrade to ``deb`` with the conffile edited and the timer enabled; check what stays."""
    subprocess.run(["systemctl", "enable", "provbackup.timer"], capture_output=True, check=True)
    conffile = CONFIG.read_bytes()
    before = tree(root)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
    installed = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", f"./{deb}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPOSITORY, check=False,
        env={**CLEAN_ENVIRONMENT, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    require(installed.returncode == 0, f"apt-get install ./{deb}", installed.stderr[-2000:])
    now = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "provbackup"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    require(now == version, f"upgraded to {version}")
    require(hashlib.sha256(CONFIG.read_bytes()).digest() == hashlib.sha256(conffile).digest(),
            "the edited conffile is kept")  # fmt: skip
    require(CONFIG.stat().st_mode & 0o777 == 0o600, "the conffile is still 0600")
    require(not Path(f"{CONFIG}.dpkg-dist").exists(), "no conffile prompt (no .dpkg-dist)")
    require(bool(glob.glob("/etc/systemd/system/*.wants/provbackup.timer")),
            "the enabled timer stays enabled")  # fmt: skip
    require(tree(root) == before, "the account tree is untouched by the upgrade")
    require(run("-qq", "check").startswith("PROVBACKUP OK"), "check still says OK")
    require("added" in run("show", UID), "show still reports the account")


if __name__ == "__main__":
    sys.exit(main())
