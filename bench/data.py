"""Generated directories, their slapd and the provbackup configuration for one phase."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sandbox import (
    DEFAULT_INDEXES,
    Slapd,
    account_entry,
    entries_to_ldif,
    jailkit_home_directory,
)

FIRST_UID = 1_000_000
DONE_STATE = "20240101T000000Z"
LDIF_CHUNK = 2_000
# The equality indexes the benchmark's slapd uses, and an operator should
# configure (README: index sstProvisioningState,sstProvisioningMode,uid,gidNumber
# eq): the server-side filters of process and scan test exactly these. gidNumber
# is the per-run shared-ID search's: without its index slapd tests every account
# against the whole filter (1.7 s instead of 0.2 s for 1000 due among 10,000).
INDEXES = (*DEFAULT_INDEXES, "gidNumber eq")


@dataclass
class Phase:
    """One generated directory served by its own slapd, and a config pointing at it.

    ``root`` is the backup root, ``config`` the provbackup configuration,
    ``status_file`` where ``process`` reports, ``ldif`` the generated
    directory (kept to reload it with slapadd).
    """

    name: str
    directory: Path
    slapd: Slapd
    root: Path
    config: Path
    status_file: Path
    lock_file: Path
    ldif: Path


def entry_uuid(uid: str) -> str:
    """The entryUUID of the generated entry ``uid``: the same at every reload."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"provbackup-bench:{uid}"))


def write_ldif(path: Path, slapd: Slapd, root: Path, *, accounts: int, due: int) -> None:
    """Write a directory of ``accounts`` accounts, ``due`` of them due ``add`` requests.

    The due entries are spread evenly (every ``accounts // due``-th), the
    others are provisioned (``added``, state a timestamp). Entries are
    written in chunks, so 100,000 of them never sit in memory as one text.
    Each entry carries its :func:`entry_uuid` (slapadd keeps a given
    entryUUID): the ownership record holds it, and a UUID slapadd made up
    at each reload would make provbackup's tree differ from the floor's.
    """
    step = accounts // due if due else 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write(entries_to_ldif(slapd.base_entries()))
        for start in range(0, accounts, LDIF_CHUNK):
            chunk = []
            for index in range(start, min(start + LDIF_CHUNK, accounts)):
                uid = str(FIRST_UID + index)
                is_due = step and index % step == 0 and index // step < due
                chunk.append(
                    account_entry(
                        uid,
                        base_dn=slapd.accounts_dn,
                        mode="add" if is_due else "added",
                        state="0" if is_due else DONE_STATE,
                        home_directory=jailkit_home_directory(root, uid),
                        extra={
                            "entryUUID": [entry_uuid(uid)],
                            **({} if is_due else {"sstProvisioningReturnValue": ["0"]}),
                        },
                    )
                )
            handle.write("\n" + entries_to_ldif(chunk))


def write_config(phase_directory: Path, slapd: Slapd, root: Path) -> tuple[Path, Path, Path]:
    """Write the provbackup configuration of a phase; returns (config, status file, lock file).

    Plain LDAP on loopback (no TLS: the same for provbackup and the floor),
    quota disabled, configtest on (rsnapshot must be installed), no quarantine.
    """
    settings = slapd.ldap_settings()
    status_file = phase_directory / "run" / "status.json"
    lock_file = phase_directory / "run" / "provbackup.lock"
    text = (
        "[ldap]\n"
        f"uri = {settings['uri']}\n"
        f"bind_dn = {settings['bind_dn']}\n"
        f"bind_password = {settings['bind_password']}\n"
        f"base_dn = {settings['base_dn']}\n"
        "start_tls = no\nattempts = 1\nretry_delay = 0\ntimeout = 60\n"
        f"[backup]\nroot = {root}\nlayout = stoney\n"
        "[rsnapshot]\nconfigtest = yes\n"
        "[quota]\ncommand =\n"
        "[delete]\nquarantine_days = 0\n"
        f"[run]\nlock_file = {lock_file}\nstatus_file = {status_file}\n"
    )
    config = phase_directory / "provbackup.conf"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o600)
    return config, status_file, lock_file


def prepare(
    work: Path,
    name: str,
    *,
    accounts: int,
    due: int,
    indexes: tuple[str, ...] = INDEXES,
    syncprov: bool = False,
) -> Phase:
    """Generate the phase's directory, slapadd it into a fresh slapd and start it.

    ``indexes`` are the slapd ``index`` lines; ``syncprov`` loads the overlay
    ``provbackup watch`` follows. Returns the running
    :class:`Phase`; the caller stops ``phase.slapd``.
    """
    directory = work / name
    directory.mkdir(parents=True)
    root = directory / "backup"
    root.mkdir()
    slapd = Slapd(directory / "slapd", indexes=indexes, syncprov=syncprov)
    ldif = directory / "directory.ldif"
    write_ldif(ldif, slapd, root, accounts=accounts, due=due)
    slapd.load_ldif_offline(ldif)
    config, status_file, lock_file = write_config(directory, slapd, root)
    slapd.start()
    os.sync()
    return Phase(name, directory, slapd, root, config, status_file, lock_file, ldif)


def reset(phase: Phase) -> None:
    """Put the directory and the backup root back as generated.

    slapd is stopped, its database thrown away and the generated LDIF
    loaded again with ``slapadd -q`` (10,000 entries in about 0.3 s; copying
    the database file instead would write the whole, sparse, mdb map). The
    last run's backup root is moved aside, not removed: removing 10,000
    directories made the filesystem work of the next ten seconds or so twice
    as slow on the machine of docs/performance.md (floor 9-11 s instead of
    5), whatever sync() was done, and the run measured next would pay for
    it. :func:`discard_trees` removes them once the phase is measured.
    """
    phase.slapd.stop()
    phase.slapd.reset_database()  # stopped: only removes the database files
    phase.slapd.load_ldif_offline(phase.ldif)
    phase.slapd.start()
    garbage = phase.directory / "old-roots"
    garbage.mkdir(exist_ok=True)
    os.rename(phase.root, garbage / str(len(os.listdir(garbage))))
    phase.root.mkdir()
    phase.status_file.unlink(missing_ok=True)
    os.sync()


def discard_trees(phase: Phase) -> None:
    """Remove the backup roots :func:`reset` moved aside (after the phase's measurements)."""
    shutil.rmtree(phase.directory / "old-roots", ignore_errors=True)
    os.sync()
