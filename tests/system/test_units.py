"""The shipped cron.d file and systemd units (cron/).

systemd-analyze verify checks the service and timer as systemd would load
them (skipped only where systemd-analyze is not installed); the cron line is
checked for cron.d syntax and run through /bin/sh the way cron runs it, to
prove it is silent on exit 0 and 75 and prints everything otherwise.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provbackup.config import BackupConfig, RunConfig

REPOSITORY = Path(__file__).resolve().parents[2]
UNITS = REPOSITORY / "cron"
MAN = REPOSITORY / "man"
INSTALLED_BINARY = "/usr/bin/provbackup"
# The cron job does nothing where this exists (systemd runs the timer there).
SYSTEMD_MARKER = "/run/systemd/system"


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key`` → every value it is given in the unit file (sections ignored)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def words(settings: dict[str, list[str]], key: str) -> list[str]:
    """Every space-separated word given to ``key``."""
    return [word for value in settings.get(key, []) for word in value.split()]


def test_service_is_a_sandboxed_oneshot_that_can_write_what_provbackup_writes():
    service = unit_settings(UNITS / "provbackup.service")

    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} -q process"]
    assert "75" in words(service, "SuccessExitStatus"), "a held lock is not a failure"
    assert "79" in words(service, "SuccessExitStatus"), "a fault already reported"
    assert service["ProtectSystem"] == ["strict"]
    for key in ("PrivateTmp", "NoNewPrivileges", "ProtectHome", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID"):  # fmt: skip
        assert service[key] == ["yes"], key
    assert set(words(service, "RestrictAddressFamilies")) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    capabilities = set(words(service, "CapabilityBoundingSet"))
    assert {"CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN"} <= capabilities
    assert "quotactl" in words(service, "SystemCallFilter")
    # Everything the default configuration writes must be writable in the sandbox.
    writable = {Path(path.lstrip("-")) for path in words(service, "ReadWritePaths")}
    writable |= {Path("/var/lib") / name for name in words(service, "StateDirectory")}
    writable |= {Path("/run") / name for name in words(service, "RuntimeDirectory")}
    assert BackupConfig().root in writable
    assert RunConfig().lock_file.parent in writable
    assert RunConfig().status_file.parent in writable


def test_timer_runs_the_service_every_15_seconds_and_is_not_coalesced():
    timer = unit_settings(UNITS / "provbackup.timer")

    assert timer["OnCalendar"] == ["*:*:0/15"]
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"] == ["5"]
    # The default accuracy (1 minute) would let systemd delay runs by that much.
    assert timer["AccuracySec"] == ["1s"]
    assert timer["Unit"] == ["provbackup.service"]
    assert timer["WantedBy"] == ["timers.target"]


def test_venv_drop_in_replaces_exec_start():
    drop_in = unit_settings(UNITS / "provbackup.service.d" / "opt-provbackup.conf")

    assert drop_in["ExecStart"] == ["", "/opt/provbackup/bin/provbackup -q process"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verify_accepts_service_and_timer(tmp_path):
    # verify insists that ExecStart's binary exists: point it at the checkout's.
    binary = REPOSITORY / "bin" / "provbackup"
    assert binary.stat().st_mode & stat.S_IXUSR
    units = tmp_path / "units"
    units.mkdir()
    service = (UNITS / "provbackup.service").read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in service
    (units / "provbackup.service").write_text(
        service.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} ")
    )
    shutil.copy(UNITS / "provbackup.timer", units / "provbackup.timer")
    # Documentation=man:... is checked too, against the pages in man/.
    manpath = tmp_path / "manpath"
    for page in MAN.glob("provbackup*.[0-9]"):
        section = manpath / f"man{page.suffix[1:]}"
        section.mkdir(parents=True, exist_ok=True)
        (section / page.name).symlink_to(page)
    options = [] if shutil.which("man") else ["--man=no"]

    result = subprocess.run(
        ["systemd-analyze", "verify", *options,
         str(units / "provbackup.service"), str(units / "provbackup.timer")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPATH": str(manpath)},
        timeout=120,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "no warnings either"


# A job line, commented out or not: five time fields, then the user.
_JOB = re.compile(r"(?P<disabled>#)?(?P<line>(\S+\s+){5}root\s.*)")


def cron_jobs() -> tuple[dict[str, str], list[list[str]], list[list[str]]]:
    """The cron.d file's variables, active and disabled job lines (5 times, user, command)."""
    variables: dict[str, str] = {}
    active: list[list[str]] = []
    disabled: list[list[str]] = []
    for line in (UNITS / "provbackup.cron").read_text().splitlines():
        job = _JOB.fullmatch(line)
        if job:
            (disabled if job["disabled"] else active).append(job["line"].split(None, 6))
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.fullmatch(r"[A-Z_]+=.*", line):
            name, _, value = line.partition("=")
            variables[name] = value
            continue
        active.append(line.split(None, 6))
    return variables, active, disabled


def test_cron_file_syntax_and_shipped_disabled():
    variables, active, disabled = cron_jobs()

    assert variables["SHELL"] == "/bin/sh"
    assert active == [], "shipped disabled: the admin uncomments the job once configured"
    assert len(disabled) == 1
    (fields,) = disabled
    assert len(fields) == 7, "5 time fields, the user and the command"
    assert fields[:5] == ["*", "*", "*", "*", "*"]
    assert fields[5] == "root"
    command = fields[6]
    assert f"{INSTALLED_BINARY} -q process" in command
    assert command.startswith(f"[ -d {SYSTEMD_MARKER} ] || ")
    # A bare % ends cron's command line; every one must be escaped.
    assert re.search(r"(?<!\\)%", command) is None


def cron_command(binary: str, systemd_marker: str = "/nonexistent/systemd/system") -> str:
    """The job's command as cron hands it to the shell, running ``binary`` instead.

    ``systemd_marker`` replaces /run/systemd/system (default: a path that does
    not exist, so the job runs here whether or not this machine runs systemd).
    """
    _, _, [fields] = cron_jobs()
    command = fields[6].replace("\\%", "%").replace(INSTALLED_BINARY, binary)
    return command.replace(SYSTEMD_MARKER, systemd_marker)


def run_like_cron(command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as cron does: /bin/sh -c, stdout and stderr both mailed."""
    variables, _, _ = cron_jobs()
    return subprocess.run(
        [variables["SHELL"], "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": variables["PATH"], "HOME": "/root", "LANG": "C"},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("exit_code", "mailed"),
    [(0, False), (75, False), (79, False), (1, True), (69, True), (70, True), (78, True)],
)
def test_cron_line_is_quiet_unless_the_run_went_wrong(tmp_path, exit_code, mailed):
    program = tmp_path / "provbackup"
    program.write_text(
        "#!/bin/sh\n"
        'echo "args: $*"\n'
        'echo "failed  add  3723707  uid=3723707,dc=example,dc=org: 100% disk"\n'
        'echo "provbackup: error: something" >&2\n'
        f"exit {exit_code}\n"
    )
    program.chmod(0o755)

    result = run_like_cron(cron_command(str(program)))

    if mailed:
        assert result.stdout == (
            "args: -q process\n"
            "failed  add  3723707  uid=3723707,dc=example,dc=org: 100% disk\n"
            "provbackup: error: something\n"
            f"provbackup process exited with status {exit_code}\n"
        )
    else:
        assert result.stdout == ""


def test_cron_line_does_nothing_where_systemd_runs_the_timer(tmp_path):
    marker = tmp_path / "systemd-system"
    marker.mkdir()
    started = tmp_path / "started"
    program = tmp_path / "provbackup"
    program.write_text(f"#!/bin/sh\ntouch {started}\necho ran\nexit 69\n")
    program.chmod(0o755)

    result = run_like_cron(cron_command(str(program), systemd_marker=str(marker)))

    assert result.returncode == 0
    assert result.stdout == ""
    assert not started.exists(), "provbackup is not even started under systemd"
    # The same line without the marker does run it (and mails the failure).
    assert "exited with status 69" in run_like_cron(cron_command(str(program))).stdout
    assert started.exists()


def real_provbackup(tmp_path: Path, config: Path) -> str:
    """A wrapper running this checkout's provbackup with ``config``."""
    wrapper = tmp_path / "provbackup"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH={REPOSITORY} exec {sys.executable} -m provbackup "
        f'--config {config} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def config_file(tmp_path: Path) -> Path:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = tmp_path / "provbackup.conf"
    config.write_text(
        f"[ldap]\nuri = ldap://127.0.0.1:{closed_port}\nbase_dn = dc=example,dc=org\n"
        "start_tls = no\nattempts = 1\nretry_delay = 0\ntimeout = 2\n"
        f"[backup]\nroot = {tmp_path / 'backup'}\n"
        f"[run]\nlock_file = {tmp_path / 'provbackup.lock'}\n"
        f"status_file = {tmp_path / 'status.json'}\n"
    )
    return config


def test_cron_line_with_the_real_program_silences_a_held_lock(tmp_path):
    config = config_file(tmp_path)
    command = cron_command(real_provbackup(tmp_path, config))

    # Held the way another provbackup run holds it: a flock on the lock file.
    with open(tmp_path / "provbackup.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        direct = subprocess.run(
            [real_provbackup(tmp_path, config), "-q", "process"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        through_cron = run_like_cron(command)

    # provbackup itself does say so (stderr, exit 75) ...
    assert direct.returncode == 75
    assert "holds the lock" in direct.stderr
    # ... and the cron line keeps it out of root's mailbox.
    assert through_cron.stdout == ""
    assert not (tmp_path / "status.json").exists(), "a locked-out run changes nothing"


def test_cron_line_with_the_real_program_mails_an_unreachable_directory(tmp_path):
    config = config_file(tmp_path)

    result = run_like_cron(cron_command(real_provbackup(tmp_path, config)))

    assert "LDAP unavailable" in result.stdout
    assert result.stdout.rstrip().endswith("provbackup process exited with status 69")


def test_cron_line_with_the_real_program_mails_a_lasting_fault_once(tmp_path):
    config = config_file(tmp_path)
    command = cron_command(real_provbackup(tmp_path, config))

    first = run_like_cron(command)
    second = run_like_cron(command)

    assert first.stdout.rstrip().endswith("provbackup process exited with status 69")
    assert second.returncode == 0
    assert second.stdout == "", "the same fault, already mailed: exit 79, silent"


SNAPSHOT_INTERVALS = ("hourly", "daily", "weekly", "monthly", "yearly")


def test_snapshot_service_template_runs_the_interval_of_its_instance():
    service = unit_settings(UNITS / "provbackup-snapshot@.service")

    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} -q snapshot %i"]
    assert words(service, "SuccessExitStatus") == ["75", "143"], "1 and 69 must show as failed"
    assert service["KillMode"] == ["mixed"], "the rsnapshot runs in hand may finish"
    assert service["ProtectSystem"] == ["strict"]
    # Shared with provbackup.service: neither may remove the other's locks.
    assert service["RuntimeDirectory"] == ["provbackup"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]
    writable = {Path(path.lstrip("-")) for path in words(service, "ReadWritePaths")}
    writable |= {Path("/var/lib") / name for name in words(service, "StateDirectory")}
    writable |= {Path("/run") / name for name in words(service, "RuntimeDirectory")}
    assert BackupConfig().root in writable
    assert RunConfig().lock_file.parent in writable
    assert RunConfig().status_file.parent in writable
    capabilities = set(words(service, "CapabilityBoundingSet"))
    assert {"CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER"} <= capabilities


def next_elapses(calendar: str, base: str, count: int) -> list[str]:
    result = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", f"--base-time={base}",
         calendar],
        capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip
    # systemd 252 says "Iter. #2", 257 "Iteration #2".
    return re.findall(r"(?:Next elapse|Iter(?:\.|ation) #\d+): \w+ (\S+ \S+)", result.stdout)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_snapshot_timers_one_per_interval_bigger_intervals_first():
    calendars = {}
    for interval in SNAPSHOT_INTERVALS:
        timer = unit_settings(UNITS / f"provbackup-snapshot-{interval}.timer")
        assert timer["Unit"] == [f"provbackup-snapshot@{interval}.service"]
        assert timer["WantedBy"] == ["timers.target"]
        assert timer["Persistent"] == ["true"]
        (calendars[interval],) = timer["OnCalendar"]
    # 1 January 2029 is a Monday and the 1st of a month: every interval runs that night.
    base = "2028-12-31 23:59:00 UTC"
    first = {interval: next_elapses(calendars[interval], base, 1)[0]
             for interval in SNAPSHOT_INTERVALS}  # fmt: skip
    assert first["yearly"] < first["monthly"] < first["weekly"] < first["daily"]
    assert first["daily"].startswith("2029-01-01 ")
    hourly = set(next_elapses(calendars["hourly"], base, 24))
    assert len(hourly) == 24
    assert not hourly & {first[name] for name in ("yearly", "monthly", "weekly", "daily")}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verify_accepts_the_snapshot_units(tmp_path):
    binary = REPOSITORY / "bin" / "provbackup"
    units = tmp_path / "units"
    units.mkdir()
    template = (UNITS / "provbackup-snapshot@.service").read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in template
    (units / "provbackup-snapshot@.service").write_text(
        template.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} ")
    )
    checked = []
    for interval in SNAPSHOT_INTERVALS:
        shutil.copy(UNITS / f"provbackup-snapshot-{interval}.timer", units)
        checked += [str(units / f"provbackup-snapshot@{interval}.service"),
                    str(units / f"provbackup-snapshot-{interval}.timer")]  # fmt: skip

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *checked],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "no warnings either"


def snapshot_cron_jobs() -> dict[str, list[str]]:
    """The snapshot cron.d file's job lines by interval (all shipped commented out)."""
    jobs = {}
    for line in (UNITS / "provbackup-snapshot.cron").read_text().splitlines():
        job = _JOB.fullmatch(line)
        if job:
            assert job["disabled"], f"shipped enabled: {line}"
            fields = job["line"].split(None, 6)
            interval = re.search(r"-q snapshot (\w+)", fields[6])
            assert interval, line
            jobs[interval[1]] = fields
        elif line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_]+=.*", line), line
    return jobs


@pytest.mark.parametrize(("exit_code", "mailed"), [(0, False), (75, False), (1, True),
                                                   (69, True), (78, True)])  # fmt: skip
def test_snapshot_cron_lines_are_quiet_unless_the_run_went_wrong(tmp_path, exit_code, mailed):
    jobs = snapshot_cron_jobs()
    assert set(jobs) == set(SNAPSHOT_INTERVALS)
    program = tmp_path / "provbackup"
    program.write_text(f'#!/bin/sh\necho "args: $*"\nexit {exit_code}\n')
    program.chmod(0o755)
    for interval, fields in jobs.items():
        assert re.search(r"(?<!\\)%", fields[6]) is None
        command = fields[6].replace("\\%", "%").replace(INSTALLED_BINARY, str(program))
        command = command.replace(SYSTEMD_MARKER, "/nonexistent/systemd/system")

        result = run_like_cron(command)

        expected = (
            f"args: -q snapshot {interval}\n"
            f"provbackup snapshot {interval} exited with status {exit_code}\n"
        )
        assert result.stdout == (expected if mailed else ""), interval


def test_snapshot_venv_drop_in_replaces_exec_start():
    drop_in = unit_settings(UNITS / "provbackup-snapshot@.service.d" / "opt-provbackup.conf")

    assert drop_in["ExecStart"] == ["", "/opt/provbackup/bin/provbackup -q snapshot %i"]


def test_watch_service_is_a_sandboxed_notify_service_that_restarts_but_not_on_78():
    service = unit_settings(UNITS / "provbackup-watch.service")
    process = unit_settings(UNITS / "provbackup.service")

    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} -q watch"]
    assert service["Restart"] == ["on-failure"]
    assert "78" in words(service, "RestartPreventExitStatus"), "a refused search is not a loop"
    assert service["WatchdogSec"] and service["NotifyAccess"] == ["main"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # The same batches as provbackup.service: the same sandbox, line for line.
    for key in ("ProtectSystem", "ReadWritePaths", "RuntimeDirectory", "StateDirectory",
                "ProtectHome", "PrivateTmp", "NoNewPrivileges", "CapabilityBoundingSet",
                "RestrictAddressFamilies", "SystemCallFilter", "RestrictSUIDSGID",
                "ProtectKernelTunables", "ProtectControlGroups"):  # fmt: skip
        assert service[key] == process[key], key
    assert service["WantedBy"] == ["multi-user.target"]


def test_watch_venv_drop_in_replaces_exec_start():
    drop_in = unit_settings(UNITS / "provbackup-watch.service.d" / "opt-provbackup.conf")

    assert drop_in["ExecStart"] == ["", "/opt/provbackup/bin/provbackup -q watch"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verify_accepts_the_watch_service(tmp_path):
    binary = REPOSITORY / "bin" / "provbackup"
    units = tmp_path / "units"
    units.mkdir()
    service = (UNITS / "provbackup-watch.service").read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in service
    (units / "provbackup-watch.service").write_text(
        service.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} ")
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(units / "provbackup-watch.service")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "no warnings either"


def test_notify_service_and_timer_run_daily_after_the_daily_snapshots():
    service = unit_settings(UNITS / "provbackup-notify.service")
    timer = unit_settings(UNITS / "provbackup-notify.timer")

    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} -q notify"]
    assert words(service, "SuccessExitStatus") == ["75", "143"], "1 (held back, failed) shows"
    assert service["ProtectSystem"] == ["strict"]
    writable = {Path(path.lstrip("-")) for path in words(service, "ReadWritePaths")}
    writable |= {Path("/var/lib") / name for name in words(service, "StateDirectory")}
    writable |= {Path("/run") / name for name in words(service, "RuntimeDirectory")}
    assert RunConfig().status_file.parent in writable, "status file and records"
    assert RunConfig().lock_file.parent in writable, "notify.lock"
    assert BackupConfig().root not in writable, "it only reads the backup root"
    assert timer["Unit"] == ["provbackup-notify.service"]
    assert timer["Persistent"] == ["true"]
    assert timer["WantedBy"] == ["timers.target"]
    if shutil.which("systemd-analyze") is None:
        return
    (notify,) = timer["OnCalendar"]
    (daily,) = unit_settings(UNITS / "provbackup-snapshot-daily.timer")["OnCalendar"]
    base = "2028-12-31 23:59:00 UTC"
    notify_times = next_elapses(notify, base, 2)
    daily_times = next_elapses(daily, base, 2)
    for snapshot_at, notify_at in zip(daily_times, notify_times, strict=True):
        assert snapshot_at.split()[0] == notify_at.split()[0], "once a day, the same day"
        assert snapshot_at < notify_at, "after the daily snapshots"
    delay = timer["RandomizedDelaySec"][0]
    assert delay.endswith("min") and int(delay.removesuffix("min")) <= 60, "staggered, bounded"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verify_accepts_the_notify_units(tmp_path):
    binary = REPOSITORY / "bin" / "provbackup"
    units = tmp_path / "units"
    units.mkdir()
    service = (UNITS / "provbackup-notify.service").read_text()
    (units / "provbackup-notify.service").write_text(
        service.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} ")
    )
    shutil.copy(UNITS / "provbackup-notify.timer", units)

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no",
         str(units / "provbackup-notify.service"), str(units / "provbackup-notify.timer")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "no warnings either"


@pytest.mark.parametrize(("exit_code", "mailed"), [(0, False), (75, False), (1, True),
                                                   (69, True), (78, True)])  # fmt: skip
def test_notify_cron_line_is_disabled_daily_after_the_snapshots_and_quiet_unless_wrong(
    tmp_path, exit_code, mailed
):
    jobs = []
    for line in (UNITS / "provbackup-notify.cron").read_text().splitlines():
        job = _JOB.fullmatch(line)
        if job:
            assert job["disabled"], f"shipped enabled: {line}"
            jobs.append(job["line"].split(None, 6))
        elif line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_]+=.*", line), line
    (fields,) = jobs
    minute, hour = int(fields[0]), int(fields[1])
    assert fields[2:5] == ["*", "*", "*"], "daily"
    assert (hour, minute) > (2, 15), "after the daily snapshots (02:15)"
    assert minute not in (0, 15, 30, 45), "off the busy minutes"
    program = tmp_path / "provbackup"
    program.write_text(f'#!/bin/sh\necho "args: $*"\nexit {exit_code}\n')
    program.chmod(0o755)
    assert re.search(r"(?<!\\)%", fields[6]) is None
    command = fields[6].replace("\\%", "%").replace(INSTALLED_BINARY, str(program))
    command = command.replace(SYSTEMD_MARKER, "/nonexistent/systemd/system")

    result = run_like_cron(command)

    expected = f"args: -q notify\nprovbackup notify exited with status {exit_code}\n"
    assert result.stdout == (expected if mailed else "")


def test_notify_venv_drop_in_replaces_exec_start():
    drop_in = unit_settings(UNITS / "provbackup-notify.service.d" / "opt-provbackup.conf")

    assert drop_in["ExecStart"] == ["", "/opt/provbackup/bin/provbackup -q notify"]
