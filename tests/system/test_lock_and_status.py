"""The run lock and the status file never write through a symlink; the status file is 0640 root.

Issue 11, findings 7 and 8: the lock's PID was written with ``Path.write_text``
(through a symlink planted in its place) and the status file, which holds
DNs, errors and hook output, was readable by every local user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from support import hold_lock, run, run_process, write_config

from provbackup.lock import holder_pid, run_lock
from provbackup.status import write_status

VICTIM_TEXT = "root:x:0:0:do not touch\n"


def test_the_holder_writes_its_pid_into_the_lock_file_itself(tmp_path):
    lock_file = tmp_path / "run" / "provbackup.lock"
    holder = hold_lock(lock_file)
    try:
        assert lock_file.read_text().strip() == str(holder.pid)
        assert holder_pid(lock_file) == holder.pid
        assert not lock_file.with_name("provbackup.lock.pid").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_symlink_planted_as_the_pid_file_is_never_written_through(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    setup.lock_file.parent.mkdir(parents=True, exist_ok=True)
    (setup.lock_file.parent / "provbackup.lock.pid").symlink_to(victim)

    result = run_process(setup, "process")

    assert result.code == 0, result.err
    assert victim.read_text() == VICTIM_TEXT


def test_a_symlink_planted_as_the_lock_file_is_refused_and_its_target_kept(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    setup.lock_file.parent.mkdir(parents=True, exist_ok=True)
    setup.lock_file.symlink_to(victim)

    result = run_process(setup, "process")

    assert result.code != 0
    assert "symbolic link" in result.err
    assert victim.read_text() == VICTIM_TEXT
    assert not setup.status_file.exists(), "a refused run claims and writes nothing"


def test_the_lock_is_free_again_and_empty_after_a_run(tmp_path):
    lock_file = tmp_path / "provbackup.lock"
    with run_lock(lock_file):
        assert lock_file.read_text().strip() == str(os.getpid())
    assert lock_file.read_text() == ""
    with run_lock(lock_file):  # free again
        pass


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_the_status_file_is_0640_root_and_stays_so_when_replaced(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    setup.status_file.parent.mkdir(parents=True)
    setup.status_file.write_text("{}\n")
    setup.status_file.chmod(0o644)  # as the first release left it

    assert run(setup, "process").code == 0
    assert owner_and_mode(setup.status_file) == (0, 0, 0o640)
    assert run(setup, "process").code == 0
    assert owner_and_mode(setup.status_file) == (0, 0, 0o640)


def test_the_status_file_is_never_readable_by_others_even_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    seen: list[int] = []
    real_replace = os.replace

    def watching_replace(source, target, *arguments, **options):
        seen.append(stat.S_IMODE(os.stat(source).st_mode))
        return real_replace(source, target, *arguments, **options)

    monkeypatch.setattr(os, "replace", watching_replace)
    write_status(path, {"exit_code": 0})
    assert seen == [0o640]
    assert owner_and_mode(path) == (0, 0, 0o640)
