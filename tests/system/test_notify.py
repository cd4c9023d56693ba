"""``provbackup notify``: customer warnings from real snapshot records, to a real SMTP server.

Accounts are made by a real ``process`` run from entries in the real slapd
(our schema and the stoney cloud's); a client's finished backup is the
``backupEnded.xml`` Sepiola writes, read by the real ``provbackup snapshot
daily`` (real rsnapshot), which writes ``sstBackupLastSuccessfulBackup`` and
the usage into the directory. A laptop that "stopped 3 days ago" is one whose
last ``backupEnded.xml`` says so. Where time must pass (repeat, a
never-backed-up account), the snapshot run and the notify run get the same
injected clock. Mail goes to aiosmtpd on a loopback port with STARTTLS and
AUTH (the fixtures of test_mail.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import REPOSITORY, Setup, modify_entry, run, run_process, write_config
from test_mail import PASSWORD, Recorder, authenticator, certificate, free_port, server_tls
from test_mail import start_server as start_server
from test_snapshot import home_of

from provbackup.config import load_config
from sandbox import account_entry, jailkit_home_directory

TEMPLATES = REPOSITORY / "etc" / "notify"
ENDED = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    "<backup_ended><enddate>{date}</enddate><id>1</id><success>1</success>"
    "<client><identifier>Sepiola</identifier></client></backup_ended>\n"
)
__all__ = ["certificate"]  # a fixture used by name


def ended_at(root: Path, uid: str, host: str, moment: datetime) -> None:
    """What Sepiola leaves after a finished backup of ``host`` at ``moment``."""
    metadata = home_of(root, uid) / "incoming" / host / ".sepiola_backup"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "backupEnded.xml").write_text(
        ENDED.format(date=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    )
    (metadata / "backupTime").write_text("TODAY")


def mail_section(port: int, **extra: str) -> str:
    settings = {"host": "127.0.0.1", "port": str(port), "starttls": "yes",
                "username": "provbackup", "password": PASSWORD, "from": "backup@provider.example",
                "to": "ops@provider.example", "timeout": "5"}  # fmt: skip
    settings.update(extra)
    return "[mail]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())


def notify_section(**extra: str) -> str:
    settings = {"templates": str(TEMPLATES)}
    settings.update(extra)
    return "[notify]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())


@pytest.fixture
def smtp(start_server, certificate, monkeypatch) -> tuple[Recorder, int]:
    """aiosmtpd with STARTTLS and AUTH required; its certificate trusted through SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return start_server(
        tls_context=server_tls(certificate), require_starttls=True,
        authenticator=authenticator, auth_required=True,
    )  # fmt: skip


def customer(uid: str, **extra: list[str]) -> dict[str, list[str]]:
    attributes = {"mail": [f"customer{uid}@example.org"], "sstBackupWarningDays": ["3"],
                  "sstBackupWarningNumbers": ["0"]}  # fmt: skip
    attributes.update(extra)
    return attributes


def provision(
    server, setup: Setup, accounts: dict[str, dict[str, list[str]]], **options
) -> dict[str, str]:
    """Add one entry per uid (``extra`` attributes each) and run a real ``process``."""
    dns = {}
    for uid, extra in accounts.items():
        dn, attributes = account_entry(
            uid, base_dn=server.accounts_dn, home_directory=jailkit_home_directory(setup.root, uid),
            extra=extra, **options,
        )  # fmt: skip
        server.add_entries([(dn, attributes)])
        dns[uid] = dn
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    return dns


def snapshot_daily(setup: Setup, clock=None) -> None:
    """The real snapshot runner: ``provbackup snapshot daily`` (in-process with a clock)."""
    if clock is None:
        result = run(setup, "snapshot", "daily")
        assert result.code == 0, result.out + result.err
        return
    from provbackup.actions.snapshot import prepare, snapshot
    from provbackup.actions.snapshotreport import SnapshotReport, command_name
    from provbackup.cli.lifecycle import RunLifecycle

    config = load_config(setup.config)
    lifecycle = RunLifecycle(config, command_name("daily"), clock=clock)
    with lifecycle.command():
        job = prepare(config, "daily", clock=clock)
        report = SnapshotReport(interval="daily", started=clock(), dry_run=False)
        with lifecycle.batch(report):
            snapshot(job, report)
    assert report.exit_code == 0, report.summary()


def notify_at(setup: Setup, moment: datetime):  # type: ignore[no-untyped-def]
    """The notify action with an injected clock (what the command runs)."""
    from provbackup.actions.notify import COMMAND, NotifyReport, notify
    from provbackup.cli.lifecycle import RunLifecycle

    config = load_config(setup.config)
    report = NotifyReport(started=moment, dry_run=False)
    lifecycle = RunLifecycle(config, COMMAND, clock=lambda: moment)
    with lifecycle.command(), lifecycle.batch(report):
        notify(config, report, hostname="backup1")
    return report


def to_customers(recorder: Recorder) -> list:
    return [item for item in recorder.messages if item.recipients != ["ops@provider.example"]]


def to_operator(recorder: Recorder) -> list:
    return [item for item in recorder.messages if item.recipients == ["ops@provider.example"]]


def status_of(setup: Setup) -> dict:
    return json.loads((setup.status_file.parent / "status-notify.json").read_text())


NOW = datetime.now(UTC)  # at import: every age below only grows while the suite runs


# --- the "done when" of the issue -------------------------------------------------------


def test_one_mail_for_the_stopped_laptop_none_for_running_backups_and_none_again(
    tmp_path, ldap_server, smtp
):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    provision(ldap_server, setup, {
        "2000001": customer("2000001"),                                  # laptop stopped
        "2000002": customer("2000002"),                                  # backs up daily
        "2000003": customer("2000003", sstBackupWarningOn=["FALSE"]),    # warnings off
        "2000004": customer("2000004", sstBackupWarningDays=["0"]),      # criterion 0: off
    })  # fmt: skip
    stopped = NOW - timedelta(days=3, minutes=5)
    ended_at(setup.root, "2000001", "laptop", stopped)
    ended_at(setup.root, "2000001", "desktop", NOW - timedelta(hours=3))
    ended_at(setup.root, "2000002", "laptop", NOW - timedelta(hours=20))
    ended_at(setup.root, "2000003", "laptop", NOW - timedelta(days=10))
    ended_at(setup.root, "2000004", "laptop", NOW - timedelta(days=10))
    snapshot_daily(setup)

    first = run(setup, "notify")

    assert first.code == 0, first.out + first.err
    (mail,) = to_customers(recorder)
    assert mail.recipients == ["customer2000001@example.org"]
    assert mail.encrypted and mail.login == b"provbackup"
    assert mail.message["To"] == "customer2000001@example.org"
    assert mail.message["From"] == "backup@provider.example"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.message["Subject"] == (
        f"Your backup of laptop has stopped: last backup {stopped:%Y-%m-%d %H:%M} UTC"
    )
    body = mail.message.get_content()
    assert '"laptop"' in body and "3 days ago" in body and "desktop" not in body
    assert to_operator(recorder) == [], "nothing for the operator when all went well"
    assert "2000001: schedule warning -> mail customer2000001@example.org: sent" in first.out

    again = run(setup, "notify")

    assert again.code == 0, again.out + again.err
    assert len(recorder.messages) == 1, "the same run again sends nothing new"
    record_file = setup.status_file.parent / "notify" / "2000001.json"
    info = os.lstat(record_file)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    record = json.loads(record_file.read_text())
    assert record["conditions"]["schedule:laptop"]["to"] == "customer2000001@example.org"
    assert record["conditions"]["schedule:laptop"]["count"] == 1
    shown = run(setup, "show", "2000001")
    assert shown.code == 0
    assert "schedule:laptop" in shown.out and "to customer2000001@example.org (1x)" in shown.out
    assert "OK" in run(setup, "check").out.split(" - ")[0]


def test_stoney_schema_too(tmp_path, stoney_ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, stoney_ldap_server, mail_section(port) + notify_section())
    provision(stoney_ldap_server, setup, {"2000011": customer("2000011")})
    ended_at(setup.root, "2000011", "laptop", NOW - timedelta(days=4))
    snapshot_daily(setup)

    assert run(setup, "notify").code == 0

    assert [item.recipients for item in to_customers(recorder)] == [["customer2000011@example.org"]]


# --- server faults and the guard -------------------------------------------------------


def test_snapshot_timer_off_tells_the_operator_not_the_customers(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    provision(ldap_server, setup, {"2000021": customer("2000021"), "2000022": customer("2000022")})
    for uid in ("2000021", "2000022"):
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=5))
    # The last daily run was two days ago: the timer is off since.
    snapshot_daily(setup, clock=lambda: NOW - timedelta(days=2))

    result = run(setup, "notify")

    assert result.code == 1, result.out + result.err
    assert to_customers(recorder) == []
    (mail,) = to_operator(recorder)
    assert "the daily snapshot run has not run since" in mail.message.get_content()
    assert "2 customer messages held back" in result.out
    assert (
        not (setup.status_file.parent / "notify" / "2000021.json").exists()
        or json.loads((setup.status_file.parent / "notify" / "2000021.json").read_text())[
            "conditions"
        ]
        == {}
    )
    check = run(setup, "check")
    assert check.code == 2 and "notify: customer warnings held back" in check.out

    # The timer back on: the next run tells the customers after all.
    snapshot_daily(setup)
    assert run(setup, "notify").code == 0
    assert sorted(item.recipients[0] for item in to_customers(recorder)) == [
        "customer2000021@example.org", "customer2000022@example.org"]  # fmt: skip
    assert "notify:" not in run(setup, "check").out


def failing_rsnapshot_config(tmp_path: Path, setup: Setup) -> Path:
    script = tmp_path / "failing-rsnapshot"
    script.write_text("#!/bin/sh\necho 'rsnapshot: disk full' >&2\nexit 1\n")
    script.chmod(0o755)
    config = tmp_path / "failing.conf"
    config.write_text(
        setup.config.read_text() + f"[rsnapshot]\ncommand = {script}\nconfigtest = no\n"
    )
    config.chmod(0o600)
    return config


def test_snapshot_failed_for_many_accounts_is_a_server_fault(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    uids = ("2000031", "2000032", "2000033")
    provision(ldap_server, setup, {uid: customer(uid) for uid in uids})
    for uid in uids:
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=5))
    snapshot_daily(setup)  # the last backups are in the directory
    assert run(failing_rsnapshot_config(tmp_path, setup), "snapshot", "daily").code == 1

    result = run(setup, "notify")

    assert result.code == 1
    assert to_customers(recorder) == []
    (mail,) = [item for item in to_operator(recorder) if "notify" in item.message.get_content()]
    assert "failed for 3 of 3 accounts" in mail.message.get_content()


def test_an_account_whose_own_snapshot_failed_is_not_warned(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    provision(ldap_server, setup, {"2000041": customer("2000041"), "2000042": customer("2000042")})
    for uid in ("2000041", "2000042"):
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=5))
    snapshot_daily(setup)
    # Today's daily run: 2000042's snapshot fails (the server's fault), 2000041's works.
    switch = tmp_path / "switch"
    switch.write_text(
        '#!/bin/sh\ncase "$*" in *2000042*) exit 1;; esac\nexec /usr/bin/rsnapshot "$@"\n'
    )
    switch.chmod(0o755)
    failing = tmp_path / "switch.conf"
    failing.write_text(setup.config.read_text() + f"[rsnapshot]\ncommand = {switch}\n")
    failing.chmod(0o600)
    assert run(failing, "snapshot", "daily").code == 1

    assert run(setup, "notify").code == 0

    assert [item.recipients for item in to_customers(recorder)] == [["customer2000041@example.org"]]


def test_the_guard_sends_nothing_above_max_warnings_per_run(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(
        tmp_path, ldap_server, mail_section(port) + notify_section(max_warnings_per_run="1")
    )
    provision(ldap_server, setup, {"2000051": customer("2000051"), "2000052": customer("2000052")})
    for uid in ("2000051", "2000052"):
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=5))
    snapshot_daily(setup)

    result = run(setup, "notify")

    assert result.code == 1
    assert to_customers(recorder) == []
    (mail,) = to_operator(recorder)
    assert "2 customer messages due, more than [notify] max_warnings_per_run 1" in (
        mail.message.get_content()
    )
    check = run(setup, "check")
    assert check.code == 2 and "max_warnings_per_run" in check.out


# --- SMTP down, SIGKILL: never a lost warning, at most one duplicate -------------------------


def test_smtp_down_records_nothing_as_sent_and_the_next_run_sends(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    closed = free_port()
    setup = write_config(tmp_path, ldap_server, mail_section(closed) + notify_section())
    provision(ldap_server, setup, {"2000061": customer("2000061")})
    ended_at(setup.root, "2000061", "laptop", NOW - timedelta(days=5))
    snapshot_daily(setup)

    result = run(setup, "notify")

    assert result.code == 1, result.out + result.err
    assert "failed" in result.out and "Connection refused" in result.out
    record = json.loads((setup.status_file.parent / "notify" / "2000061.json").read_text())
    assert record["conditions"]["schedule:laptop"]["sent"] is None
    assert status_of(setup)["counts"]["failed"] == 1
    check = run(setup, "check")
    assert check.code == 1 and "notify: 1 customer warnings not sent" in check.out

    setup.config.write_text(setup.config.read_text().replace(f"port = {closed}", f"port = {port}"))
    assert run(setup, "notify").code == 0
    assert [item.recipients for item in to_customers(recorder)] == [["customer2000061@example.org"]]


class KillingRecorder(Recorder):
    """Takes the message, then SIGKILLs the sending run before it can hear the 250."""

    victim: subprocess.Popen[str] | None = None

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.victim is not None and self.victim.poll() is None:
            os.kill(self.victim.pid, signal.SIGKILL)
            self.victim.wait()
        return answer


def test_sigkill_between_send_and_record_gives_one_duplicate_never_a_loss(
    tmp_path, ldap_server, certificate, monkeypatch
):
    from aiosmtpd.controller import Controller

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    recorder = KillingRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port,
                            tls_context=server_tls(certificate), require_starttls=True,
                            authenticator=authenticator, auth_required=True)  # fmt: skip
    controller.start()
    try:
        setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
        provision(ldap_server, setup, {"2000071": customer("2000071")})
        ended_at(setup.root, "2000071", "laptop", NOW - timedelta(days=5))
        snapshot_daily(setup)
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
        recorder.victim = subprocess.Popen(
            [sys.executable, "-m", "provbackup", "--config", str(setup.config), "notify"],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        recorder.victim.communicate(timeout=60)
        assert recorder.victim.returncode == -signal.SIGKILL
        recorder.victim = None
        assert len(recorder.messages) == 1, "the server took the mail before the kill"
        record = json.loads((setup.status_file.parent / "notify" / "2000071.json").read_text())
        state = record["conditions"]["schedule:laptop"]
        assert state["sent"] is None and state["attempt"] is not None, "attempt, not confirmed"
        assert "not confirmed" in run(setup, "show", "2000071").out

        second = run_process(setup, "notify")
        third = run_process(setup, "notify")

        assert (second.code, third.code) == (0, 0), second.err + third.err
        assert len(recorder.messages) == 2, "exactly one duplicate, then nothing"
        assert {tuple(item.recipients) for item in recorder.messages} == {
            ("customer2000071@example.org",)}  # fmt: skip
    finally:
        controller.stop()


# --- once per condition over time: repeat, recovery, never backed up ---------------------


def test_repeat_after_repeat_days_then_all_good_again(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(
        tmp_path, ldap_server, mail_section(port) + notify_section(repeat_days="7")
    )
    provision(ldap_server, setup, {"2000081": customer("2000081")})
    ended_at(setup.root, "2000081", "laptop", NOW - timedelta(days=3, hours=1))
    snapshot_daily(setup)
    assert notify_at(setup, NOW).exit_code == 0
    assert len(to_customers(recorder)) == 1

    six_days = NOW + timedelta(days=6, hours=23)
    snapshot_daily(setup, clock=lambda: six_days)
    assert notify_at(setup, six_days).exit_code == 0
    assert len(to_customers(recorder)) == 1, "not again before repeat_days"

    seven_days = NOW + timedelta(days=7, minutes=1)
    snapshot_daily(setup, clock=lambda: seven_days)
    assert notify_at(setup, seven_days).exit_code == 0
    assert len(to_customers(recorder)) == 2, "again after repeat_days"
    assert "10 days ago" in to_customers(recorder)[1].message.get_content()

    # The laptop backs up again: one short "all good again", then nothing.
    ended_at(setup.root, "2000081", "laptop", seven_days - timedelta(minutes=30))
    snapshot_daily(setup, clock=lambda: seven_days + timedelta(minutes=5))
    assert notify_at(setup, seven_days + timedelta(minutes=6)).exit_code == 0
    assert notify_at(setup, seven_days + timedelta(minutes=7)).exit_code == 0
    mails = to_customers(recorder)
    assert len(mails) == 3
    assert mails[2].message["Subject"] == "Your backup of laptop is working again"
    record = json.loads((setup.status_file.parent / "notify" / "2000081.json").read_text())
    assert record["conditions"] == {}
    assert [line["message"] for line in record["history"]] == ["warning", "warning", "recovery"]


def test_never_backed_up_warns_once_its_first_backup_is_overdue(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    provision(ldap_server, setup, {"2000091": customer("2000091")})
    added = datetime.now(UTC)  # process just finished: the account's added time
    snapshot_daily(setup)
    assert notify_at(setup, added + timedelta(minutes=1)).exit_code == 0
    assert to_customers(recorder) == []

    later = added + timedelta(days=3, minutes=1)
    snapshot_daily(setup, clock=lambda: later)
    assert notify_at(setup, later).exit_code == 0

    (mail,) = to_customers(recorder)
    assert mail.message["Subject"] == "No backup has reached your backup account 2000091 yet"
    assert "3 days ago" in mail.message.get_content()


# --- languages, addresses, kinds, media -----------------------------------------------------


def test_language_and_its_fallback(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    languages = {"2000101": "de-CH", "2000102": "fr", "2000103": "../../etc"}
    provision(ldap_server, setup, {uid: customer(uid, preferredLanguage=[value])
                                   for uid, value in languages.items()})  # fmt: skip
    for uid in languages:
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=4))
    snapshot_daily(setup)

    assert run(setup, "notify").code == 0

    subjects = {item.recipients[0]: item.message["Subject"] for item in to_customers(recorder)}
    assert subjects["customer2000101@example.org"].startswith("Die Sicherung von laptop")
    assert subjects["customer2000102@example.org"].startswith("Your backup of laptop")
    assert subjects["customer2000103@example.org"].startswith("Your backup of laptop")
    german = next(item for item in to_customers(recorder) if "2000101" in item.recipients[0])
    assert german.message["Content-Language"] == "de"


def test_hostile_mail_values_are_reasons_never_a_mail_elsewhere(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    hostile = {
        "2000111": ["c@example.org\r\nBcc: victim@evil.example"],
        "2000112": ["c@example.org, victim@evil.example"],
        "2000113": ["c@example.org", "victim@evil.example"],
        "2000114": ["v" * 4988 + "@evil.example"],
    }
    provision(
        ldap_server, setup, {uid: customer(uid, mail=value) for uid, value in hostile.items()}
    )
    for uid in hostile:
        ended_at(setup.root, uid, "laptop", NOW - timedelta(days=4))
    snapshot_daily(setup)

    dry = run(setup, "notify", "--dry-run")
    result = run(setup, "notify")

    assert result.code == 0, result.out + result.err
    assert to_customers(recorder) == []
    assert not any("evil" in " ".join(item.recipients) for item in recorder.messages)
    for uid in hostile:
        assert f"{uid}: mail: " in dry.out and f"{uid}: mail: " in result.out
        shown = run(setup, "show", uid).out
        assert "no warning sent" in shown
        assert "\r" not in shown
    assert "several addresses" in run(setup, "show", "2000113").out
    assert "5001 characters" in run(setup, "show", "2000114").out


def test_quota_warning_at_the_level_and_recovery_not_where_it_is_off(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    dns = provision(ldap_server, setup, {
        "2000121": customer("2000121"),
        "2000122": customer("2000122", sstNotificationWarning=["schedule"]),
    })  # fmt: skip
    for uid in dns:
        ended_at(setup.root, uid, "laptop", NOW - timedelta(hours=2))
        (home_of(setup.root, uid) / "incoming" / "laptop" / "data").write_bytes(os.urandom(200_000))
    snapshot_daily(setup)
    from support import read_entry

    for dn in dns.values():
        entry = read_entry(ldap_server, dn)
        used = int(entry["sstbackupsize"][0]) + int(entry["sstincrementsize"][0])
        assert used > 200_000
        modify_entry(ldap_server, dn, {"sstQuota": [str(used)]})  # 100 % full

    assert run(setup, "notify").code == 0

    (mail,) = to_customers(recorder)
    assert mail.recipients == ["customer2000121@example.org"]
    assert mail.message["Subject"] == "Your backup space is 100% full"
    assert "you asked to be told at 85%" in mail.message.get_content()

    modify_entry(ldap_server, dns["2000121"], {"sstQuota": [str(10**12)]})
    assert run(setup, "notify").code == 0
    assert [item.message["Subject"] for item in to_customers(recorder)][1:] == [
        "Your backup space is below 85% again"]  # fmt: skip


def sms_setup(tmp_path, ldap_server, script: str, **notify: str) -> Setup:
    command = tmp_path / "send-sms"
    command.write_text(script)
    command.chmod(0o755)
    notify_text = notify_section(sms_command=f"{command} --to {{number}}", **notify)
    setup = write_config(tmp_path, ldap_server, mail_section(free_port()) + notify_text)
    provision(ldap_server, setup, {"2000131": customer(
        "2000131", sstNotificationWarningMedium=["sms"], mobileTelephoneNumber=["+41 79 123 45 67"],
    )})  # fmt: skip
    ended_at(setup.root, "2000131", "laptop", NOW - timedelta(days=4))
    snapshot_daily(setup)
    return setup


def test_sms_command_gets_the_number_as_one_word_and_the_text_on_stdin(tmp_path, ldap_server):
    out = tmp_path / "sms.out"
    setup = sms_setup(
        tmp_path, ldap_server, f'#!/bin/sh\nprintf "[%s]" "$@" >> {out}\ncat >> {out}\n'
    )

    result = run(setup, "notify")

    assert result.code == 0, result.out + result.err
    assert out.read_text().startswith("[--to][+41791234567]Your backup of laptop has stopped")
    assert run(setup, "notify").code == 0
    assert out.read_text().count("[--to]") == 1, "once per condition, by sms too"
    record = json.loads((setup.status_file.parent / "notify" / "2000131.json").read_text())
    assert record["conditions"]["schedule:laptop"]["medium"] == "sms"
    assert record["conditions"]["schedule:laptop"]["count"] == 1


def test_sms_command_timeout_is_a_failure_not_a_send(tmp_path, ldap_server):
    setup = sms_setup(tmp_path, ldap_server, "#!/bin/sh\nsleep 60\n", sms_timeout="1")

    result = run(setup, "notify")

    assert result.code == 1
    assert "timed out after 1 s" in result.out
    record = json.loads((setup.status_file.parent / "notify" / "2000131.json").read_text())
    assert record["conditions"]["schedule:laptop"]["sent"] is None


# --- configuration and dry run ------------------------------------------------------------


def test_a_template_error_is_exit_78_naming_file_and_placeholder(tmp_path, ldap_server):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "de" / "quota.txt").write_text("Subject: voll {prozent}\n\nText\n")
    setup = write_config(tmp_path, ldap_server, notify_section(templates=str(templates)))

    result = run(setup, "notify")

    assert result.code == 78
    assert str(templates / "de" / "quota.txt") in result.err and "{prozent}" in result.err
    assert status_of(setup)["exit_code"] == 78, "the status file says so"
    assert "notify: last run exited 78" in run(setup, "check").out


def test_dry_run_sends_and_records_nothing(tmp_path, ldap_server, smtp):
    recorder, port = smtp
    setup = write_config(tmp_path, ldap_server, mail_section(port) + notify_section())
    provision(ldap_server, setup, {"2000141": customer("2000141")})
    ended_at(setup.root, "2000141", "laptop", NOW - timedelta(days=4))
    snapshot_daily(setup)

    result = run(setup, "notify", "--dry-run", "--json")

    assert result.code == 0
    document = json.loads(result.out)
    assert [item["outcome"] for item in document["messages"]] == ["would"]
    assert recorder.messages == []
    assert not (setup.status_file.parent / "notify").exists()
    assert not (setup.status_file.parent / "status-notify.json").exists()
