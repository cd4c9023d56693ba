"""End-to-end smoke test of the INSTALLED package (run by bin/test-package, as root).

Starts a throwaway slapd from the checkout's ``sandbox/`` (with TLS), points
the package's own conffile /etc/provbackup/provbackup.conf at it (the default
config path, lock and status file), adds one account request, and runs the
installed ``/usr/bin/provbackup`` with a clean environment: ``process``
(the account is added), ``show`` and ``check``. Then, with the slapd still
running, upgrades to ``sys.argv[2]`` (the same code built as another Debian
revision) the way the README describes, with the conffile edited and the
timer enabled: the conffile is kept (no prompt, mode 0600), the timer stays
enabled, the account tree is untouched and ``check`` still says OK.
Prints what it checked; exits non-zero at the first check that fails.
``sys.argv[1]`` is the backup root to use (left in place: bin/test-package
checks that purging keeps it).
"""

from __future__ import annotations

import glob
import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from sandbox import Slapd, account_entry, jailkit_home_directory  # noqa: E402

BINARY = "/usr/bin/provbackup"
CONFIG = Path("/etc/provbackup/provbackup.conf")
UID = "3723707"
# Only what a cron job or the unit has: nothing from this checkout or a venv.
CLEAN_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def run(*arguments: str, expect: int = 0) -> str:
    """Run the installed provbackup; fail unless it exits ``expect``; return its stdout."""
    completed = subprocess.run(
        [BINARY, *arguments], capture_output=True, text=True, env=CLEAN_ENVIRONMENT,
        cwd="/", timeout=120, check=False,
    )  # fmt: skip
    print(f"$ provbackup {' '.join(arguments)}  -> exit {completed.returncode}")
    print(completed.stdout + completed.stderr, end="")
    if completed.returncode != expect:
        raise SystemExit(f"package-smoke: expected exit {expect}, got {completed.returncode}")
    return completed.stdout


def require(condition: bool, what: str) -> None:
    """Print ``what`` as checked, or exit naming it."""
    if not condition:
        raise SystemExit(f"package-smoke: FAILED: {what}")
    print(f"ok: {what}")


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
    with tempfile.TemporaryDirectory(prefix="provbackup-smoke-") as work, Slapd(
        Path(work) / "slapd", tls=True
    ) as server:
        server.add_base()
        settings = server.ldap_settings()
        secret = Path(work) / "ldap.secret"
        secret.write_text(settings["bind_password"] + "\n")
        secret.chmod(0o600)
        # The package's conffile, edited as an administrator would.
        text = CONFIG.read_text()
        text = text.replace(
            "uri = ldap://ldap1.example.com ldap://ldap2.example.com", f"uri = {settings['uri']}"
        )
        text = text.replace(
            "bind_dn = cn=provbackup,ou=services,dc=stoney-cloud,dc=org",
            f"bind_dn = {settings['bind_dn']}",
        )
        text = text.replace(
            "bind_password_file = /etc/provbackup/ldap.secret", f"bind_password_file = {secret}"
        )
        text = text.replace(
            "base_dn = ou=accounts,ou=backup,ou=services,dc=stoney-cloud,dc=org",
            f"base_dn = {settings['base_dn']}",
        )
        text = text.replace("#ca_file = /etc/ssl/certs/ca-certificates.crt",
                            f"ca_file = {settings['ca_file']}")  # fmt: skip
        text = text.replace("root = /var/backup", f"root = {root}")
        text = text.replace("syslog = yes", "syslog = no")
        require(str(root) in text and settings["uri"] in text, "the conffile was edited")
        CONFIG.write_text(text)
        server.add_entries(
            [account_entry(UID, base_dn=server.accounts_dn,
                           home_directory=jailkit_home_directory(root, UID))]
        )  # fmt: skip

        run("--version")
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
        checked = run("-qq", "check")
        require(checked.startswith("PROVBACKUP OK"), "check says OK")
        require(Path("/var/lib/provbackup/status.json").is_file(),
                "the status file is in /var/lib/provbackup")  # fmt: skip
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
    require(installed.returncode == 0, f"apt-get install ./{deb}: {installed.stderr[-2000:]}")
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
