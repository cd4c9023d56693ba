"""The demo behind bin/demo: a private slapd, sample accounts, one provbackup run.

Shows the entries before and after ``provbackup process`` and what appeared
on disk. Works in ``demo-run/`` of the checkout; stops its slapd at the end.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from sandbox import Slapd, account_entry, jailkit_home_directory  # noqa: E402

WORK = REPOSITORY / "demo-run"
PROVBACKUP = [sys.executable, "-m", "provbackup"]


def heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def provbackup(config: Path, *arguments: str, show: bool = True) -> int:
    command = [*PROVBACKUP, "--config", str(config), *arguments]
    if show:
        print(f"$ provbackup --config {config.relative_to(REPOSITORY)} {' '.join(arguments)}")
    completed = subprocess.run(
        command,
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        stdout=None if show else subprocess.DEVNULL,
        stderr=None if show else subprocess.DEVNULL,
        check=False,
    )
    if show:
        print(f"(exit code {completed.returncode})")
    return completed.returncode


def write_config(server: Slapd, root: Path) -> Path:
    secret = WORK / "ldap.secret"
    secret.write_text(server.bind_password + "\n")
    secret.chmod(0o600)
    quota_log = WORK / "quota.log"
    recorder = WORK / "setquota-stand-in"
    recorder.write_text(f'#!/bin/sh\necho "setquota $*" >> {quota_log}\n')
    recorder.chmod(0o755)
    config = WORK / "provbackup.conf"
    config.write_text(
        f"""# Written by bin/demo for its throwaway slapd.
[ldap]
uri = {server.uri}
start_tls = yes
ca_file = {server.ca_file}
bind_dn = {server.bind_dn}
bind_password_file = {secret}
base_dn = {server.accounts_dn}

[backup]
root = {root}
layout = stoney

[quota]
# A stand-in for setquota that records its arguments in quota.log.
command = {recorder} -g {{gidnumber}} {{quota_kib}} {{quota_kib}} 0 0 {{filesystem}}
filesystem = {root}

[delete]
quarantine_days = 7

[run]
lock_file = {WORK / "provbackup.lock"}
status_file = {WORK / "status.json"}
"""
    )
    config.chmod(0o600)
    return config


def show_entries(server: Slapd) -> None:
    from tabulate import tabulate

    connection = server.connection()
    connection.search(
        server.accounts_dn,
        "(uid=*)",
        attributes=[
            "uid", "uidNumber", "sstProvisioningMode", "sstProvisioningState",
            "sstProvisioningExecutionDate", "sstProvisioningReturnValue", "sstIsActive",
        ],
    )  # fmt: skip
    rows = []
    for entry in sorted(connection.response, key=lambda item: item["dn"]):
        values = {name.lower(): value for name, value in entry["raw_attributes"].items()}

        def one(name: str, values=values) -> str:
            found = values.get(name.lower())
            return found[0].decode() if found else "-"

        rows.append([
            one("uid"), one("uidNumber"), one("sstProvisioningMode"), one("sstProvisioningState"),
            one("sstProvisioningExecutionDate"), one("sstProvisioningReturnValue"),
            one("sstIsActive"),
        ])  # fmt: skip
    connection.unbind()
    print(tabulate(rows, headers=["uid", "uidNumber", "mode", "state", "date", "return", "active"]))


def show_tree(root: Path) -> None:
    for directory, names, files in os.walk(root):
        names.sort()
        for name in sorted(names + files):
            path = Path(directory) / name
            info = path.lstat()
            kind = "d" if stat.S_ISDIR(info.st_mode) else "-"
            relative = path.relative_to(root.parent)
            owner = f"{info.st_uid}:{info.st_gid}"
            print(f"{kind}{stat.filemode(info.st_mode)[1:]} {owner:>17} {relative}")


def main() -> int:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir()
    root = WORK / "backup"
    root.mkdir()
    today = date.today()
    tomorrow = (today + timedelta(days=1)).strftime("%Y%m%d")
    yesterday = (today - timedelta(days=1)).strftime("%Y%m%d")

    with Slapd(WORK / "slapd", tls=True, acl=True) as server:
        server.add_base()
        config = write_config(server, root)
        base = server.accounts_dn

        def entry(uid: str, **options):
            options.setdefault("home_directory", jailkit_home_directory(root, uid))
            return account_entry(uid, base_dn=base, **options)

        # An account that already exists, so that its delete has something to remove.
        server.add_entries([entry("3723711")])
        provbackup(config, "-qq", "process", show=False)
        connection = server.connection()
        connection.modify(
            f"uid=3723711,{base}",
            {
                "sstProvisioningMode": [("MODIFY_REPLACE", ["delete"])],
                "sstProvisioningState": [("MODIFY_REPLACE", ["0"])],
            },
        )
        connection.unbind()
        server.add_entries([
            entry("3723707", quota=10 * 2**30),             # add now: the documented example
            entry("3723708", date=tomorrow),                # add tomorrow: scheduled
            entry("3723709", date=yesterday),               # add yesterday: overdue, done now
            entry("3723710", mode="modify", active=False),  # modify: deactivate
            entry("3723712", uid_number=0),                 # invalid: uidNumber 0 (root)
        ])  # fmt: skip

        heading(f"The directory: a throwaway slapd on {server.uri}, accounts under {base}")
        print(f"provbackup binds as {server.bind_dn}, with only the rights examples/slapd-acl.conf "
              "grants it.\n")  # fmt: skip
        show_entries(server)
        heading("What needs attention")
        provbackup(config, "scan")
        heading("One run")
        provbackup(config, "process")
        heading("The directory afterwards")
        show_entries(server)
        heading(f"On disk under {root.relative_to(REPOSITORY)} (mode, uid:gid, path)")
        show_tree(root)
        heading("demo-run/backup/7/707/723/3723707/rsnapshot.conf")
        print((root / "7/707/723/3723707/rsnapshot.conf").read_text())
        heading("Quota commands run (demo-run/quota.log)")
        print((WORK / "quota.log").read_text())
        heading("One account in detail")
        provbackup(config, "show", "3723707")
        heading("A failed entry, after the operator fixed it, is reset and done")
        connection = server.connection()
        connection.modify(
            f"uid=3723712,{base}",
            {
                "uidNumber": [("MODIFY_REPLACE", ["3723712"])],
                "gidNumber": [("MODIFY_REPLACE", ["3723712"])],
            },
        )
        connection.unbind()
        provbackup(config, "reset", "--uid", "3723712")
        provbackup(config, "process")
    print(
        f"\n\nThe demo's slapd is stopped; its files, the config and the backup root stay in "
        f"{WORK.relative_to(REPOSITORY)}/."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
