"""End to end with real parts: provbackup adds accounts from a real slapd into a
jail built by real jailkit; the accounts are known to the system through NSS
(libnss-extrausers, never /etc/passwd), log in through a real sshd on a free
loopback port and jk_chrootsh, and the real rsync replays what the service's
clients do (SPEC section 6): Sepiola's login check, upload, getQuota, restore
listing and download, its first run with a password and puttygen;
OnlineBackup.pl's LEGACY=1 upload, mkdir -p and ls -al; rsnapshot; and
OnlineRestore.pl's restore. Then the jail's walls: another customer's files,
port forwarding, sftp, a deactivated and a deleted account. sshd runs with a
copy of Debian's stock sshd_config (its Include pointed at a private
sshd_config.d holding the shipped snippet): the snippet's Match block must
reach the customers and nobody else, root and the operator keep every
setting of the lines after the Include.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loginkit import (
    CHROOTSH_INI,
    EXTRAUSERS,
    NSSWITCH,
    SSHD,
    Client,
    GlobalFiles,
    as_user,
    enable_extrausers,
    free_port,
    make_key,
    relax_home_owner,
    running_sshd,
    write_extrausers,
)
from support import REPOSITORY, Setup, modify_entry, read_entry, run, write_config

from provbackup.paths import AccountPaths, account_paths
from sandbox import Slapd, account_entry

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: starts sshd, edits nsswitch.conf and jk_chrootsh.ini, runs chroot",
)

SNIPPET = REPOSITORY / "examples" / "sshd_config.d" / "provbackup.conf"
# Debian's pristine sshd_config, shipped by openssh-server (ucf's reference copy).
STOCK_SSHD_CONFIG = Path("/usr/share/openssh/sshd_config")
STOCK_INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf\n"
# A non-customer with an ordinary shell: its name does not start with a digit.
OPERATOR, OPERATOR_ID = "pbtestop", 3723790
QUOTA = 5 * 1024**3  # sstQuota: getQuota prints 5120 MiB
PASSWORD = "Sepiola-first-run"
# The accounts: uid (also uidNumber and gidNumber). Each test uses its own.
MAIN, OTHER, INACTIVE, DELETED, FIRST_RUN = "3723707", "3723708", "3723709", "3723710", "3723711"
ACCOUNTS = (MAIN, OTHER, INACTIVE, DELETED, FIRST_RUN)
# OpenSSH 10 (Debian 13) has no DSA at all: "PubkeyAcceptedAlgorithms +ssh-dss"
# stops sshd, and Sepiola's DSA key cannot log in (9.2, Debian 12: allowed so).
_KEY_TYPES = subprocess.run(["ssh", "-Q", "key"], capture_output=True, text=True, check=False)
DSA = "ssh-dss" in _KEY_TYPES.stdout.split()
SEPIOLA_UPLOAD = ("-iilrtHS8", "--specials", "--no-p", "--no-g", "--chmod=ugo=rwX")
SEPIOLA_DOWNLOAD = ("-iilrtHS8", "--no-p", "--no-g", "--chmod=u=rwX,g-rwx,o-rwx")


@dataclass
class Server:
    """The running service: config, LDAP, sshd port, a client per account."""

    setup: Setup
    ldap: Slapd
    base: Path
    port: int
    clients: dict[str, Client]

    def paths(self, uid: str) -> AccountPaths:
        return account_paths(self.setup.root, "stoney", uid)

    def dn(self, uid: str) -> str:
        return f"uid={uid},{self.ldap.accounts_dn}"


def _installed_snippet() -> str:
    """The shipped snippet with the two lines README tells Sepiola operators to uncomment."""
    text = SNIPPET.read_text()
    for line in ("PasswordAuthentication yes", "PubkeyAcceptedAlgorithms +ssh-dss"):
        assert f"    #{line}\n" in text, line
        # Without DSA (OpenSSH 10) README says to leave the ssh-dss line out: it stops sshd.
        if DSA or "ssh-dss" not in line:
            text = text.replace(f"    #{line}\n", f"    {line}\n")
    return text


def _stock_accept_env() -> list[str]:
    """The variables of the stock sshd_config's AcceptEnv lines, in order."""
    names = []
    for line in STOCK_SSHD_CONFIG.read_text().splitlines():
        words = line.split()
        if words and words[0].lower() == "acceptenv":
            names += words[1:]
    return names


def _stock_with_include(included: Path) -> str:
    """Debian's stock sshd_config with its one Include naming ``included`` instead."""
    stock = STOCK_SSHD_CONFIG.read_text()
    assert stock.count(STOCK_INCLUDE) == 1, STOCK_SSHD_CONFIG
    return stock.replace(STOCK_INCLUDE, f"Include {included}\n")


def _sshd_config(base: Path, port: int, snippet: str | None, name: str = "sshd_config") -> Path:
    """Stock sshd_config + private sshd_config.d: this server's settings and ``snippet``.

    The server's own settings come in a file sorted before provbackup.conf
    (as a local 00-*.conf would): the first value sshd reads wins, the
    stock lines after the Include (UsePAM yes, X11Forwarding yes, ...) come
    later.
    """
    included = base / f"{name}.d"
    included.mkdir()
    (included / "00-login-test.conf").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"PidFile {base / 'sshd.pid'}\nUsePAM no\nStrictModes yes\nLogLevel VERBOSE\n"
    )
    if snippet is not None:
        (included / "provbackup.conf").write_text(snippet)
    config = base / name
    config.write_text(_stock_with_include(included / "*.conf"))
    return config


def _operator_client(home: Path, port: int) -> Client:
    """A key login for the operator's own (non-customer) account, home ``home``."""
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = make_key(home.parent / "client-operator")
    keys = home / ".ssh" / "authorized_keys"
    keys.write_text(Path(f"{key}.pub").read_text())
    keys.chmod(0o600)
    for path in (home, home / ".ssh", keys):
        os.chown(path, OPERATOR_ID, OPERATOR_ID)
    return Client(OPERATOR, key, port)


def _password_hash(password: str) -> str:
    done = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(scope="module")
def server(slapd: Slapd) -> Iterator[Server]:
    """Everything up: template, accounts added by process, NSS, jailkit, sshd."""
    import tempfile

    # Not under /tmp: jailkit and sshd's StrictModes refuse a world-writable parent.
    base = Path(tempfile.mkdtemp(prefix="provbackup-login-", dir="/var/lib"))
    os.chmod(base, 0o755)
    slapd.add_base()
    slapd.clear_accounts()
    port = free_port()
    try:
        with GlobalFiles(
            [
                NSSWITCH,
                CHROOTSH_INI,
                *(EXTRAUSERS / name for name in ("passwd", "group", "shadow")),
            ],
            [EXTRAUSERS],
        ):
            setup = write_config(
                base, slapd,
                extra=f"[backup]\njail_template = {base / 'template'}\n"
                f"[jail]\nprograms = /usr/bin/puttygen\nsshd_config = {base / 'sshd_config'}\n"
                f"sshd_snippet = {base / 'sshd_config.d' / 'provbackup.conf'}\n",
            )  # fmt: skip
            built = run(setup, "jail-template")
            assert built.code == 0, built.err
            homes = {
                uid: account_paths(setup.root, "stoney", uid).expected_home_directory
                for uid in ACCOUNTS
            }
            slapd.add_entries(
                account_entry(uid, base_dn=slapd.accounts_dn, quota=QUOTA,
                              home_directory=homes[uid])
                for uid in ACCOUNTS
            )  # fmt: skip
            processed = run(setup, "process")
            assert processed.code == 0, processed.out + processed.err
            hashed = _password_hash(PASSWORD)
            operator_home = base / OPERATOR
            write_extrausers(
                [*((uid, int(uid), int(uid), homes[uid], hashed if uid == FIRST_RUN else "*")
                   for uid in ACCOUNTS),
                 (OPERATOR, OPERATOR_ID, OPERATOR_ID, str(operator_home), "*")],
                shells={OPERATOR: "/bin/sh"},
            )  # fmt: skip
            enable_extrausers()
            relax_home_owner()
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(base / "host_key")], check=True)  # fmt: skip
            clients = {}
            for uid in ACCOUNTS:
                key = make_key(base / f"client-{uid}")
                paths = account_paths(setup.root, "stoney", uid)
                keys = paths.ssh / "authorized_keys"
                if uid != FIRST_RUN:  # Sepiola's first run adds its own key
                    keys.write_text(Path(f"{key}.pub").read_text())
                    os.chown(keys, int(uid), int(uid))
                    keys.chmod(0o600)
                clients[uid] = Client(uid, key, port)
            clients[OPERATOR] = _operator_client(operator_home, port)
            config = _sshd_config(base, port, _installed_snippet())
            with running_sshd(config, port, base / "sshd.log"):
                yield Server(setup, slapd, base, port, clients)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _tree(top: Path) -> dict[str, str]:
    """Relative path -> sha256 of content, or '-> target' for a symlink, 'dir' for a directory."""
    result = {}
    for directory, names, files in os.walk(top):
        for name in names + files:
            path = Path(directory, name)
            relative = str(path.relative_to(top))
            if path.is_symlink():
                result[relative] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                result[relative] = "dir"
            else:
                result[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _make_source(top: Path) -> Path:
    (top / "docs").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "docs" / "report.txt").write_bytes(os.urandom(100_000))
    (top / "docs" / "Grüße ünd ß.txt").write_text("non-ASCII names survive -8\n")
    os.link(top / "docs" / "report.txt", top / "docs" / "report-hardlink.txt")
    (top / "big.bin").write_bytes(os.urandom(3_000_000))
    os.symlink("docs/report.txt", top / "link")
    return top


def test_sepiola_login_quota_upload_snapshot_and_restore(server: Server) -> None:
    client = server.clients[MAIN]
    paths = server.paths(MAIN)
    login = client.ssh("sh -c 'echo LoggedIn'")
    assert (login.returncode, login.stdout) == (0, "LoggedIn\n"), login.stderr
    quota = client.ssh("/bin/getQuota")
    assert quota.stdout.split() == ["5120", "0", "0"], quota.stderr

    source = _make_source(server.base / "sepiola-source")
    made = client.ssh("mkdir -p incoming/host1/backup incoming/host1/.sepiola_backup")
    assert made.returncode == 0, made.stderr
    upload = client.rsync(
        *SEPIOLA_UPLOAD, f"{source}/", f"{client.remote}:incoming/host1/backup/C/"
    )
    assert upload.returncode == 0, upload.stderr
    # Sepiola's uploadToMetaFolder: plink ... sh -c cat > <meta folder>/<file>, stdin the file.
    meta = "incoming/host1/.sepiola_backup"
    for name, content in (("backupTime", "TODAY"), ("backupStarted.xml", "<started/>")):
        sent = client.ssh(f"sh -c cat > {meta}/{name}", stdin=content.encode())
        assert sent.returncode == 0, sent.stderr
    uploaded = paths.incoming / "host1" / "backup" / "C"
    assert _tree(uploaded) == _tree(source)
    assert (uploaded / "docs" / "report.txt").stat().st_ino == (
        uploaded / "docs" / "report-hardlink.txt"
    ).stat().st_ino
    assert (uploaded / "big.bin").stat().st_uid == int(MAIN)

    conf = paths.rsnapshot_conf
    snapshot = subprocess.run(["rsnapshot", "-c", str(conf), "daily"], capture_output=True,
                              text=True, check=False)  # fmt: skip
    assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
    assert (paths.snapshots / "daily.0" / "host1" / "backup" / "C" / "big.bin").is_file()

    # Sepiola's restore listing: backupTime of incoming and of every snapshot.
    listing = client.rsync("-r", "--list-only", "--include=*/", "--include=backupTime",
                           "--exclude=*", f"{client.remote}:.snapshots/")  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert "daily.0/host1/.sepiola_backup/backupTime" in listing.stdout
    current = client.rsync("--list-only", f"{client.remote}:{meta}/backupTime")
    assert current.returncode == 0 and "backupTime" in current.stdout, current.stderr

    restored = server.base / "sepiola-restore"
    point = f"{client.remote}:.snapshots/daily.0/host1/backup/C/"
    download = client.rsync(*SEPIOLA_DOWNLOAD, point, f"{restored}/")
    assert download.returncode == 0, download.stderr
    assert _tree(restored) == _tree(source)


def test_online_backup_legacy_upload_and_online_restore(server: Server) -> None:
    client = server.clients[MAIN]
    source = _make_source(server.base / "onlinebackup-source")
    excludes = server.base / "exclude-list"
    excludes.write_text("*.tmp\n")
    (source / "skip.tmp").write_text("excluded")
    assert client.ssh("mkdir -p incoming/host2").returncode == 0
    relative = str(source.relative_to("/"))
    files = "\n".join(f"{relative}/{name}" for name in ("docs", "big.bin", "link", "skip.tmp"))
    upload = client.rsync(
        f"--exclude-from={excludes}", "--delete", "-rSlHtvz", "--files-from=-", "/",
        f"{client.remote}:~/incoming/host2/", stdin=files + "\n",
    )  # fmt: skip
    assert upload.returncode == 0, upload.stderr
    listed = client.ssh(f"ls -al incoming/host2/{relative}")
    assert listed.returncode == 0, listed.stderr
    assert "big.bin" in listed.stdout and "skip.tmp" not in listed.stdout
    landed = server.paths(MAIN).incoming / "host2" / relative
    assert (landed / "big.bin").read_bytes() == (source / "big.bin").read_bytes()

    # The default mode (no LEGACY) keeps replaced files in ~/.snapshots/<date>/: refused there.
    (source / "docs" / "report.txt").write_bytes(os.urandom(1000))
    default_mode = client.rsync(
        f"--exclude-from={excludes}", "--delete", "-rSlHtvz", "--backup",
        "--backup-dir=~/.snapshots/20261201/host2", "--files-from=-", "/",
        f"{client.remote}:~/incoming/host2/", stdin=files + "\n",
    )  # fmt: skip
    assert default_mode.returncode != 0
    assert not (server.paths(MAIN).snapshots / "20261201").exists()
    assert sorted(os.listdir(server.paths(MAIN).home)) == [".snapshots", ".ssh", "incoming"]
    (source / "docs" / "report.txt").write_bytes((landed / "docs" / "report.txt").read_bytes())

    conf = server.paths(MAIN).rsnapshot_conf
    subprocess.run(["rsnapshot", "-c", str(conf), "daily"], check=True, capture_output=True)
    restored = server.base / "onlinerestore"
    restore = client.rsync("-rlHtDvz", f"{client.remote}:~/.snapshots/daily.0/host2/",
                           f"{restored}/")  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    (source / "skip.tmp").unlink()
    assert _tree(restored / relative) == {
        name: digest for name, digest in _tree(source).items() if not name.startswith("empty")
    }


def test_sepiola_first_run_password_and_puttygen_in_the_jail(server: Server) -> None:
    client = server.clients[FIRST_RUN]
    folder = ".ssh/"
    script = (
        "echo LoggedIn;"
        f"puttygen -q -t dsa -b 1024 -o {folder}key.private-putty;"
        f"puttygen {folder}key.private-putty -o {folder}key.public-openssh -O public-openssh;"
        f"puttygen {folder}key.private-putty -o {folder}key.private-openssh -O private-openssh;"
        f"cat {folder}key.public-openssh >> {folder}authorized_keys;"
        "echo StartPrivateOpenSshKey;"
        f"cat {folder}key.private-openssh;"
        "echo EndPrivateOpenSshKey;"
        f"rm {folder}key.private-putty; rm {folder}key.private-openssh; "
        f"rm {folder}key.public-openssh"
    )
    askpass = server.base / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
    askpass.chmod(0o700)
    argv = client.ssh_argv("-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
                           "-o", "PreferredAuthentications=password")  # fmt: skip
    process = subprocess.Popen(
        [*argv, client.remote, f"sh -c '{script}'"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"},
    )  # fmt: skip
    assert process.stdin and process.stderr
    # Like Sepiola: an empty passphrase after each of puttygen's two prompts.
    prompts, seen, deadline = 0, b"", time.monotonic() + 120
    while prompts < 2 and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stderr], [], [], 1)
        if ready:
            seen += os.read(process.stderr.fileno(), 4096)
            while seen.count(b"passphrase") > prompts:
                process.stdin.write(b"\n")
                process.stdin.flush()
                prompts += 1
    out, err = process.communicate(timeout=120)
    text = out.decode()
    assert text.startswith("LoggedIn"), (text, seen + err)
    key_text = text.split("StartPrivateOpenSshKey\n")[1].split("EndPrivateOpenSshKey")[0]
    key = server.base / "sepiola-openssh-key"
    key.write_text(key_text)
    key.chmod(0o600)
    # plink speaks ssh-dss; OpenSSH 9.2 (rsync's ssh, here) needs it allowed on both sides.
    with_key = Client(FIRST_RUN, key, server.port,
                      ("-o", "PubkeyAcceptedAlgorithms=+ssh-dss") if DSA else ())  # fmt: skip
    login = with_key.ssh("sh -c 'echo LoggedIn'")
    if DSA:
        assert login.stdout == "LoggedIn\n", login.stderr
    else:  # OpenSSH 10: the key Sepiola made is useless (README, Login)
        assert login.returncode != 0 and "LoggedIn" not in login.stdout, login
    keys = server.paths(FIRST_RUN).ssh / "authorized_keys"
    assert keys.read_text().startswith("ssh-dss ")
    assert keys.stat().st_uid == int(FIRST_RUN)


def test_one_customer_cannot_read_another(server: Server) -> None:
    other = server.clients[OTHER]
    homes = other.ssh("ls -a /home")
    assert homes.stdout.split() == [".", "..", OTHER], homes.stderr
    secret = server.paths(MAIN).incoming
    (secret / "secret.txt").write_text("main's data")
    os.chown(secret / "secret.txt", int(MAIN), int(MAIN))
    # Not through the jail either: outside it, the other uid meets the home's 0750.
    read = as_user(int(OTHER), int(OTHER), "cat", str(secret / "secret.txt"))
    assert read.returncode != 0 and "Permission denied" in read.stderr
    fetched = other.rsync("-r", f"{other.remote}:/home/{MAIN}/", str(server.base / "stolen"))
    assert fetched.returncode != 0
    assert not (server.base / "stolen" / "incoming").exists()


def test_the_user_cannot_change_the_shared_jail(server: Server) -> None:
    jail = server.paths(MAIN).chroot
    shared = jail / "usr" / "bin" / "rsync"
    template = server.base / "template" / "usr" / "bin" / "rsync"
    assert shared.stat().st_ino == template.stat().st_ino
    assert shared.stat().st_nlink >= len(ACCOUNTS) + 1
    uid = int(MAIN)
    for argv in (
        ["sh", "-c", f"echo x >> {shared}"],
        ["mv", str(shared), f"{shared}.moved"],
        ["rm", "-f", str(shared)],
        ["chmod", "0777", str(shared)],
        ["ln", str(shared), str(server.paths(MAIN).incoming / "linked")],
        ["sh", "-c", f"echo x > {jail}/etc/passwd"],
        ["sh", "-c", f"echo 1 1 1 > {jail}/etc/provbackup/usage"],
    ):
        done = as_user(uid, uid, *argv)
        assert done.returncode != 0, argv
    assert shared.stat().st_ino == template.stat().st_ino
    client = server.clients[MAIN]
    inside = client.ssh("rm -f /usr/bin/rsync; echo x > /bin/getQuota; mv /etc /etc2; echo done")
    assert "done" in inside.stdout
    assert client.ssh("/bin/getQuota").stdout.split()[0] == "5120"


def test_port_forwarding_and_sftp_do_not_get_past_the_jail(server: Server) -> None:
    client = server.clients[MAIN]
    socks = free_port()
    tunnel = subprocess.Popen(
        [*client.ssh_argv(), "-N", "-D", f"127.0.0.1:{socks}", client.remote],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", socks), 1)
                break
            except OSError:
                assert time.monotonic() < deadline and tunnel.poll() is None
                time.sleep(0.1)
        with connection:
            connection.settimeout(10)
            connection.sendall(b"\x05\x01\x00")
            assert connection.recv(2) == b"\x05\x00"
            target = socket.inet_aton("127.0.0.1") + server.port.to_bytes(2, "big")
            connection.sendall(b"\x05\x01\x00\x01" + target)
            received = b""
            try:
                while chunk := connection.recv(4096):
                    received += chunk
                    if len(received) > 64:
                        break
            except TimeoutError:
                pass
        # A SOCKS success (05 00) followed by sshd's own banner would mean the tunnel works.
        assert b"SSH-2.0" not in received
        assert not received.startswith(b"\x05\x00")
    finally:
        tunnel.kill()
        tunnel.wait(10)
    sftp = subprocess.run(
        ["sftp", "-b", "-", "-F", "/dev/null", "-P", str(server.port), "-i", str(client.key),
         "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", client.remote],
        input="get /etc/shadow shadow-copy\nls /\n", capture_output=True, text=True,
        cwd=server.base, timeout=60, check=False,
    )  # fmt: skip
    assert sftp.returncode != 0
    assert not (server.base / "shadow-copy").exists()


def test_deactivated_account_cannot_upload(server: Server) -> None:
    client = server.clients[INACTIVE]
    assert client.ssh("mkdir -p incoming/host3").returncode == 0
    modify_entry(server.ldap, server.dn(INACTIVE), {
        "sstIsActive": ["FALSE"], "sstProvisioningMode": ["modify"],
        "sstProvisioningState": ["0"],
    })  # fmt: skip
    processed = run(server.setup, "process")
    assert processed.code == 0, processed.out + processed.err
    source = _make_source(server.base / "inactive-source")
    upload = client.rsync(*SEPIOLA_UPLOAD, f"{source}/", f"{client.remote}:incoming/host3/")
    assert upload.returncode != 0
    written = client.ssh("echo x > incoming/new-file")
    assert written.returncode != 0
    incoming = server.paths(INACTIVE).incoming
    assert sorted(os.listdir(incoming)) == ["host3"]
    assert os.listdir(incoming / "host3") == []
    # Still a login: the customer can restore.
    assert client.ssh("sh -c 'echo LoggedIn'").stdout == "LoggedIn\n"


def test_deleted_account_cannot_log_in(server: Server) -> None:
    client = server.clients[DELETED]
    assert client.ssh("sh -c 'echo LoggedIn'").stdout == "LoggedIn\n"
    modify_entry(server.ldap, server.dn(DELETED), {
        "sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"],
    })  # fmt: skip
    processed = run(server.setup, "process")
    assert processed.code == 0, processed.out + processed.err
    assert read_entry(server.ldap, server.dn(DELETED))["sstprovisioningmode"] == ["deleted"]
    # NSS still knows the user (the entry is still in LDAP): the login must fail anyway.
    login = client.ssh("sh -c 'echo LoggedIn'")
    assert login.returncode == 255 and "LoggedIn" not in login.stdout


def _sshd_t(config: Path, user: str) -> dict[str, list[str]]:
    """``sshd -T -f config -C user=...``: keyword -> the values sshd shows, in order."""
    done = subprocess.run(
        [SSHD, "-T", "-f", str(config), "-C", f"user={user},host=localhost,addr=127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def test_the_match_block_reaches_the_customers_and_ends_with_its_file(server: Server) -> None:
    config = server.base / "sshd_config"
    customer = _sshd_t(config, MAIN)
    for key, value in (("disableforwarding", "yes"), ("allowtcpforwarding", "no"),
                       ("allowagentforwarding", "no"), ("allowstreamlocalforwarding", "no"),
                       ("permittty", "no"), ("permitopen", "none"), ("permitlisten", "none"),
                       # Stock sshd_config says X11Forwarding yes after the Include:
                       # the Match block still wins for the customers.
                       ("x11forwarding", "no"), ("passwordauthentication", "yes")):  # fmt: skip
        assert customer[key] == [value], key
    # OpenSSH 10 has no DSA: the snippet's ssh-dss line stays commented out there.
    assert ("ssh-dss" in customer["pubkeyacceptedalgorithms"][0].split(",")) is DSA
    assert customer["subsystem"] == ["sftp /usr/lib/openssh/sftp-server"]

    # Without the snippet: the same stock file and server settings, nothing else.
    without = _sshd_config(server.base, server.port, None, "sshd_config-without-snippet")
    for user in ("root", OPERATOR):
        settings = _sshd_t(config, user)
        assert settings == _sshd_t(without, user), user
        # The stock lines after the Include apply to them (sshd's defaults differ).
        for key, value in (("x11forwarding", "yes"), ("printmotd", "no"),
                           ("kbdinteractiveauthentication", "no"), ("disableforwarding", "no"),
                           ("allowtcpforwarding", "yes"), ("permittty", "yes")):  # fmt: skip
            assert settings[key] == [value], (user, key)
        # Debian 12's stock file says "AcceptEnv LANG LC_*", Debian 13's adds COLORTERM NO_COLOR.
        assert settings["acceptenv"][:2] == ["LANG", "LC_*"]
        assert settings["acceptenv"] == _stock_accept_env()
        assert settings["subsystem"] == ["sftp /usr/lib/openssh/sftp-server"]
        assert "ssh-dss" not in settings["pubkeyacceptedalgorithms"][0].split(",")

    # The same block pasted where the Include was would swallow the rest of the file.
    pasted = server.base / "sshd_config-pasted"
    pasted.write_text(
        _stock_with_include(server.base / "sshd_config.d" / "00-login-test.conf")
        .replace(f"{server.base / 'sshd_config.d' / '00-login-test.conf'}\n",
                 f"{server.base / 'sshd_config.d' / '00-login-test.conf'}\n"
                 + _installed_snippet())
    )  # fmt: skip
    refused = subprocess.run([SSHD, "-t", "-f", str(pasted)], capture_output=True, text=True,
                             check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "not allowed within a Match block" in refused.stderr


def test_the_operator_keeps_forwarding_and_the_stock_settings(server: Server) -> None:
    """Through the running sshd: the lines after the Include hold for a non-customer."""
    operator = server.clients[OPERATOR]
    # AcceptEnv LANG LC_* comes after the Include in the stock file.
    kept = operator.ssh('printf %s "$LC_PROVBACKUP_TEST"')
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == ""
    sent = subprocess.run(
        [*operator.ssh_argv("-o", "SetEnv=LC_PROVBACKUP_TEST=kept"), operator.remote,
         'printf %s "$LC_PROVBACKUP_TEST"'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (sent.returncode, sent.stdout) == (0, "kept"), sent.stderr
    # Forwarding, switched off for the customers, still works for the operator.
    local = free_port()
    tunnel = subprocess.Popen(
        [*operator.ssh_argv("-o", "ExitOnForwardFailure=yes"), "-N",
         "-L", f"127.0.0.1:{local}:127.0.0.1:{server.port}", operator.remote],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        banner = b""
        deadline = time.monotonic() + 20
        while not banner.startswith(b"SSH-2.0") and time.monotonic() < deadline:
            assert tunnel.poll() is None, tunnel.stderr.read() if tunnel.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", local), 1) as connection:
                    connection.settimeout(5)
                    banner = connection.recv(64)
            except OSError:
                time.sleep(0.2)
        assert banner.startswith(b"SSH-2.0"), banner
    finally:
        tunnel.kill()
        tunnel.wait(10)


def _with_sshd_files(server: Server, main: Path, snippet: Path) -> tuple[str, str]:
    """Point the config's sshd_config and sshd_snippet at ``main`` and ``snippet``.

    Returns (the config text before, after).
    """
    text = server.setup.config.read_text()
    changed = text.replace(
        f"sshd_snippet = {server.base / 'sshd_config.d' / 'provbackup.conf'}\n",
        f"sshd_snippet = {snippet}\n",
    ).replace(f"sshd_config = {server.base / 'sshd_config'}\n", f"sshd_config = {main}\n")
    assert f"= {main}\n" in changed and f"= {snippet}\n" in changed
    return text, changed


def _check_with_snippet(server: Server, name: str, snippet: str) -> str:
    """``check``'s output with the snippet replaced by ``snippet`` (its own config copy)."""
    main = _sshd_config(server.base, server.port, snippet, name)
    text, changed = _with_sshd_files(server, main, server.base / f"{name}.d" / "provbackup.conf")
    server.setup.config.write_text(changed)
    try:
        return run(server.setup, "check").out
    finally:
        server.setup.config.write_text(text)


def test_check_passes_on_this_setup_and_names_what_breaks_it(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUDO_USER", OPERATOR)  # check then asks about the operator too
    good = run(server.setup, "check")
    assert "login:" not in good.out, good.out
    broken = server.base / "sshd_config-broken"
    broken.write_text(
        (server.base / "sshd_config").read_text()
        .replace(f"{server.base / 'sshd_config.d'}/*.conf",
                 str(server.base / "sshd_config.d" / "00-login-test.conf"))
        .replace("Subsystem\tsftp\t/usr/lib/openssh/sftp-server", "Subsystem sftp internal-sftp")
    )  # fmt: skip
    text, changed = _with_sshd_files(
        server, broken, server.base / "sshd_config.d" / "provbackup.conf"
    )
    server.setup.config.write_text(changed)
    saved_ini = CHROOTSH_INI.read_bytes()
    try:
        CHROOTSH_INI.write_text(saved_ini.decode().replace("relax_home_owner = 1", ""))
        bad = run(server.setup, "check")
    finally:
        CHROOTSH_INI.write_bytes(saved_ini)
        server.setup.config.write_text(text)
    assert bad.code == 2, bad.out
    assert "allowtcpforwarding" in bad.out
    assert "internal-sftp" in bad.out
    assert "relax_home_owner=1" in bad.out
    # The snippet is not included: its Match block applies to nobody.
    assert "the Match block of" in bad.out, bad.out
    assert "permittty no (sshd: yes)" in bad.out


def test_check_names_a_snippet_that_misses_the_customers(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    # Forwarding off for everyone elsewhere, so only the Match check can tell.
    misses = _installed_snippet().replace(
        "Match User 0*,1*,2*,3*,4*,5*,6*,7*,8*,9*", "DisableForwarding yes\nMatch User backup-*"
    )
    out = _check_with_snippet(server, "sshd_config-misses", misses)
    assert "ssh -N -D gets past the jail" not in out, out
    assert re.search(r"sshd -T for \d+ \(.*\): the Match block of", out), out
    assert "permittty no (sshd: yes)" in out
    assert ("pubkeyacceptedalgorithms +ssh-dss" in out) is DSA, out


def test_check_names_a_snippet_that_changes_root_or_the_operator(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUDO_USER", OPERATOR)
    above = _installed_snippet().replace("Match User", "PermitTTY no\nMatch User")
    out = _check_with_snippet(server, "sshd_config-above", above)
    assert "sshd -T for root" in out and f"sshd -T for {OPERATOR}" in out, out
    assert "changes its settings: permittty yes -> no" in out
    assert not re.search(r"sshd -T for \d+ ", out)  # the customers get what the snippet says

    wide = _installed_snippet().replace("9*\n", f"9*,{OPERATOR}\n", 1)
    out = _check_with_snippet(server, "sshd_config-wide", wide)
    assert "sshd -T for root" not in out, out
    assert f"sshd -T for {OPERATOR}" in out
    assert "disableforwarding no -> yes" in out
