"""Helpers shared by the end-to-end tests: configs for the sandbox slapd, running
the CLI (in process through click's CliRunner, or as a real subprocess),
reading entries back and fingerprinting a directory tree."""

from __future__ import annotations

import hashlib
import inspect
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from click.testing import CliRunner

from provbackup.__main__ import cli
from provbackup.config import BackupConfig, Config, DeleteConfig, LdapConfig, RsnapshotConfig
from provbackup.model import Account, Verb
from provbackup.paths import account_paths
from provbackup.plan import AccountPlan, build_plan
from sandbox import Slapd, account_entry, entries_to_ldif, jailkit_home_directory

REPOSITORY = Path(__file__).resolve().parent.parent
RSNAPSHOT = "/usr/bin/rsnapshot"
TEST_UID = "3723707"
TEST_USER = 5001
TEST_GROUP = 5002
TEST_ROOT = Path("/var/backup")


# -- accounts, configurations and plans without a directory (unit and work tests) --


def make_account(uid: str = TEST_UID, *, root: Path = TEST_ROOT, **changes: object) -> Account:
    """An account as the gate would admit it: uidNumber 5001, gidNumber 5002, stoney layout.

    ``changes`` replace fields. The paths are under ``root``; :func:`plan_of`
    re-derives them for the configuration it is given.
    """
    account = Account(
        dn=f"uid={uid},ou=accounts,dc=example,dc=com",
        uid=uid,
        uid_number=TEST_USER,
        gid_number=TEST_GROUP,
        home_directory=None,
        quota_bytes=None,
        retain=(("daily", 7), ("weekly", 4), ("monthly", 3)),
        active=True,
        paths=account_paths(root, "stoney", uid),
    )
    return replace(account, **changes)


def make_config(root: Path = TEST_ROOT, **sections: object) -> Config:
    """A configuration with the backup root ``root``, the real rsnapshot (configtest on)
    and no quarantine; ``sections`` replace whole sections."""
    config = Config(
        source=Path("test"),
        ldap=LdapConfig(uris=("ldap://x",), base_dn="dc=x"),
        backup=BackupConfig(root=root),
        rsnapshot=RsnapshotConfig(command=RSNAPSHOT, configtest="yes"),
        delete=DeleteConfig(quarantine_days=0),
    )
    return replace(config, **sections)


def plan_of(account: Account, verb: str = "add", config: Config | None = None) -> AccountPlan:
    """The plan of ``verb`` for ``account`` under ``config`` (paths re-derived from it)."""
    config = config or make_config()
    paths = account_paths(config.backup.root, config.backup.layout, account.uid)
    retain = () if verb == "delete" else account.retain
    return build_plan(replace(account, paths=paths, retain=retain), Verb(verb), config)


@dataclass
class Setup:
    """A test's configuration file and the paths it names."""

    config: Path
    root: Path
    lock_file: Path
    status_file: Path
    quota_log: Path


def write_config(tmp_path: Path, server: Slapd | None, extra: str = "", **ldap: str) -> Setup:
    """Write a configuration for ``server`` with everything else under ``tmp_path``.

    ``extra`` is appended verbatim (more sections); ``ldap`` overrides
    ``[ldap]`` keys. The quota command is a recording script that appends
    its arguments to ``quota.log``.
    """
    root = tmp_path / "backup"
    root.mkdir(exist_ok=True)
    quota_log = tmp_path / "quota.log"
    recorder = tmp_path / "record-quota"
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {quota_log}\n')
    recorder.chmod(0o755)
    settings = dict(server.ldap_settings()) if server else {}
    settings.update({"attempts": "1", "retry_delay": "0", "timeout": "5"})
    settings.update(ldap)
    ldap_text = "".join(f"{key} = {value}\n" for key, value in settings.items())
    lock_file = tmp_path / "run" / "provbackup.lock"
    status_file = tmp_path / "status" / "status.json"
    sections = {
        "backup": f"root = {root}\n",
        "quota": f"command = {recorder} {{uid}} {{uidnumber}} {{gidnumber}} "
        f"{{quota_bytes}} {{quota_kib}} {{filesystem}}\nfilesystem = /srv\n",
        "delete": "quarantine_days = 0\n",
        "run": f"lock_file = {lock_file}\nstatus_file = {status_file}\n",
    }
    text = f"[ldap]\n{ldap_text}"
    extra_sections = {}
    current = None
    for line in extra.splitlines():
        if line.startswith("["):
            current = line.strip()[1:-1]
            extra_sections[current] = ""
        elif current is not None:
            extra_sections[current] += line + "\n"
    for name, body in extra_sections.items():
        if name in sections:
            keys = {line.split("=")[0].strip() for line in body.splitlines() if "=" in line}
            kept = [
                line
                for line in sections[name].splitlines()
                if line.split("=")[0].strip() not in keys
            ]
            sections[name] = "".join(line + "\n" for line in kept) + body
        else:
            sections[name] = body
    for name, body in sections.items():
        text += f"[{name}]\n{body}"
    config = tmp_path / "provbackup.conf"
    config.write_text(text)
    config.chmod(0o600)  # it holds the bind password
    return Setup(config, root, lock_file, status_file, quota_log)


@dataclass
class Result:
    """What a command did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def make_runner() -> CliRunner:
    """A CliRunner keeping stderr apart from stdout, on click 8.1 (Debian 12) and 8.2+.

    Click 8.1 mixes stderr into stdout unless told ``mix_stderr=False``;
    8.2 removed the argument and always keeps them apart.
    """
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def run(setup: Setup | Path, *arguments: str) -> Result:
    """Run ``provbackup --config ... ARGUMENTS`` in this process with click's CliRunner."""
    config = setup.config if isinstance(setup, Setup) else setup
    runner = make_runner()
    result = runner.invoke(cli, ["--config", str(config), *arguments], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(setup: Setup | Path, *arguments: str, timeout: float = 120) -> Result:
    """Run ``python -m provbackup --config ... ARGUMENTS`` as a real subprocess."""
    config = setup.config if isinstance(setup, Setup) else setup
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("PROVBACKUP_CONFIG", None)
    completed = subprocess.run(
        [sys.executable, "-m", "provbackup", "--config", str(config), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def read_entry(server: Slapd, dn: str) -> dict[str, list[str]]:
    """Return the entry's attributes (lower-cased names, string values); {} when absent."""
    connection = server.connection()
    try:
        if not connection.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["*"]):
            return {}
        entry = connection.response[0]
        return {
            name.lower(): [value.decode() for value in values]
            for name, values in entry["raw_attributes"].items()
        }
    finally:
        connection.unbind()


def modify_entry(server: Slapd, dn: str, replace: dict[str, list[str]]) -> None:
    """Replace attributes of ``dn`` as the directory's administrator would."""
    import ldap3

    connection = server.connection()
    try:
        changes = {name: [(ldap3.MODIFY_REPLACE, values)] for name, values in replace.items()}
        assert connection.modify(dn, changes), connection.result
    finally:
        connection.unbind()


def fingerprint(top: Path) -> dict[str, tuple]:
    """Map every path below ``top`` to (type, mode, uid, gid, content hash or link target).

    Never follows symlinks; used to prove a tree is unchanged or identical.
    """
    result: dict[str, tuple] = {}
    if not os.path.lexists(top):
        return result
    for directory, names, files in os.walk(top, followlinks=False):
        for name in sorted(names + files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                content = ""
            relative = os.path.relpath(path, top)
            result[relative] = (
                stat.S_IFMT(info.st_mode),
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                content,
            )
    return result


def load_offline(server: Slapd, entries: list[tuple[str, dict[str, list[str]]]]) -> None:
    """Add entries that may break the schema, with slapadd -s while slapd is stopped."""
    server.stop()
    try:
        server.load_ldif_offline(entries_to_ldif(entries), check_schema=False)
    finally:
        server.start()


def hold_lock(lock_file: Path) -> subprocess.Popen[str]:
    """A real process holding the run lock ``lock_file`` (it says 'held') until killed."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from provbackup.lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock_file)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def account_dir(root: Path, uid: str) -> Path:
    """The stoney-layout account directory of ``uid`` (ROOT/1/031/000/2000031 for 2000031).

    Written out here from the layout's definition, not taken from
    provbackup.paths: the tests check the code against it.
    """
    padded = uid.zfill(6)
    return root / padded[-1] / padded[-3:] / padded[-6:-3] / uid


def home_of(root: Path, uid: str) -> Path:
    """The customer's home inside the jail of ``uid``'s account."""
    return account_dir(root, uid) / "chroot" / "home" / uid


def provision_account(server: Slapd, setup: Setup, root: Path, uid: str, **options: object) -> str:
    """Add ``uid``'s entry (sandbox.account_entry ``options``), run a real ``process``; its DN."""
    dn, attributes = account_entry(
        uid, base_dn=server.accounts_dn,
        home_directory=jailkit_home_directory(root, uid), **options,
    )  # fmt: skip
    server.add_entries([(dn, attributes)])
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    return dn
