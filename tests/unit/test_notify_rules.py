"""The pure parts of the customer warnings: the rules at every boundary, the gate, templates.

Expected values are written out by hand (days, bytes, keys), never computed
the way the rules compute them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provbackup.customer.rules import RECOVERY, WARNING, Facts, Sent, decide
from provbackup.customer.server import failed_accounts, server_fault
from provbackup.customer.templates import KINDS, load_templates
from provbackup.errors import ConfigError
from provbackup.ldapentry import LdapEntry
from provbackup.warnentry import WarnSettings, read_warnings

NOW = datetime(2026, 12, 3, 6, 0, 0, tzinfo=UTC)
ADDED = datetime(2026, 1, 1, tzinfo=UTC)
DAILY = (("daily", 7), ("weekly", 4))
WEEKLY_ONLY = (("weekly", 4),)
GIB = 1 << 30
REPOSITORY = Path(__file__).resolve().parents[2]


def settings(**changes: object) -> WarnSettings:
    base: dict[str, object] = {
        "schedule_on": True, "warning_days": 3, "warning_numbers": 0, "quota_on": True,
        "level": 85, "medium": "mail", "address": "customer@example.org",
        "last_backups": (("laptop", NOW - timedelta(hours=1)),),
    }  # fmt: skip
    base.update(changes)
    return WarnSettings(**base)  # type: ignore[arg-type]


def laptop(age: timedelta) -> tuple[tuple[str, datetime], ...]:
    return (("laptop", NOW - age),)


def run(
    warn: WarnSettings,
    recorded: dict[str, Sent] | None = None,
    *,
    retain: tuple[tuple[str, int], ...] = DAILY,
    quota: int | None = 10 * GIB,
    known: bool = True,
    repeat_days: int = 7,
    recovery: bool = True,
):  # type: ignore[no-untyped-def]
    facts = Facts(warn, quota, retain, ADDED, schedule_known=known)
    return decide(facts, recorded or {}, NOW, repeat_days=repeat_days, recovery=recovery)


def warned(decision) -> list[str]:  # type: ignore[no-untyped-def]
    return [due.key for due in decision.due if due.message == WARNING]


# --- schedule: days ---------------------------------------------------------------


def test_exactly_n_days_warns_and_a_second_less_does_not():
    at_three = run(settings(last_backups=laptop(timedelta(days=3))))
    just_before = run(settings(last_backups=laptop(timedelta(days=3) - timedelta(seconds=1))))

    assert warned(at_three) == ["schedule:laptop"]
    (due,) = at_three.due
    assert (due.template, due.host, due.condition.days) == ("schedule", "laptop", 3)
    assert warned(just_before) == []


def test_per_host_only_the_stopped_one_warns():
    hosts = (("desktop", NOW - timedelta(hours=20)), ("laptop", NOW - timedelta(days=5)))

    decision = run(settings(last_backups=hosts))

    assert warned(decision) == ["schedule:laptop"]


def test_days_zero_and_numbers_zero_is_off_and_forgets_the_record():
    recorded = {"schedule:laptop": Sent(NOW - timedelta(days=1))}

    decision = run(settings(warning_days=0, last_backups=laptop(timedelta(days=40))), recorded)

    assert decision.due == ()
    assert decision.forget == ("schedule:laptop",), "turned off: no 'all good' either"


def test_warning_on_false_is_off():
    decision = run(settings(schedule_on=False, last_backups=laptop(timedelta(days=40))))

    assert decision.due == ()


def test_future_timestamp_is_not_overdue():
    decision = run(settings(last_backups=(("laptop", NOW + timedelta(days=30)),)))

    assert decision.due == ()


# --- schedule: numbers (missed backups, counted against the interval) ----------------


def test_numbers_counts_days_for_a_daily_account():
    assert warned(run(settings(warning_days=0, warning_numbers=2,
                               last_backups=laptop(timedelta(days=2)))))  # fmt: skip
    just_before = laptop(timedelta(days=2, seconds=-1))
    assert not warned(run(settings(warning_days=0, warning_numbers=2, last_backups=just_before)))


def test_numbers_counts_weeks_for_a_weekly_only_account():
    at_two_weeks = settings(warning_days=0, warning_numbers=2,
                            last_backups=laptop(timedelta(days=14)))  # fmt: skip
    at_13_days = settings(warning_days=0, warning_numbers=2,
                          last_backups=laptop(timedelta(days=13)))  # fmt: skip

    decision = run(at_two_weeks, retain=WEEKLY_ONLY)

    assert warned(decision) == ["schedule:laptop"]
    assert decision.due[0].condition.missed == 2
    assert warned(run(at_13_days, retain=WEEKLY_ONLY)) == []


def test_numbers_alone_when_days_is_zero_and_days_alone_when_numbers_is_zero():
    assert warned(run(settings(warning_days=0, warning_numbers=4,
                               last_backups=laptop(timedelta(days=4)))))  # fmt: skip
    assert not warned(run(settings(warning_days=0, warning_numbers=4,
                                   last_backups=laptop(timedelta(days=3)))))  # fmt: skip


# --- never backed up -------------------------------------------------------------------


def test_never_backed_up_counts_from_when_it_was_added():
    never = settings(last_backups=())
    facts_recent = Facts(never, 10 * GIB, DAILY, NOW - timedelta(days=3) + timedelta(seconds=1))
    facts_due = Facts(never, 10 * GIB, DAILY, NOW - timedelta(days=3))

    assert decide(facts_recent, {}, NOW, repeat_days=7, recovery=True).due == ()
    (due,) = decide(facts_due, {}, NOW, repeat_days=7, recovery=True).due
    assert (due.key, due.template) == ("schedule:", "no-backup")


def test_first_backup_after_a_no_backup_warning_is_a_recovery():
    decision = run(settings(last_backups=laptop(timedelta(hours=2))),
                   {"schedule:": Sent(NOW - timedelta(days=1))})  # fmt: skip

    assert [(due.message, due.key, due.template) for due in decision.due] == [
        (RECOVERY, "schedule:", "schedule-ok")
    ]


# --- quota -------------------------------------------------------------------------------


def test_level_exactly_reached_warns_one_byte_less_does_not():
    quota = 1000 * GIB
    exactly = settings(used_bytes=850 * GIB)  # 85 % of 1000 GiB
    below = settings(used_bytes=850 * GIB - 1)

    (due,) = run(exactly, quota=quota).due
    assert (due.key, due.template, due.condition.percent) == ("quota", "quota", 85)
    assert run(below, quota=quota).due == ()


def test_level_zero_is_off_and_unknown_usage_decides_nothing():
    assert run(settings(level=0, used_bytes=10 * GIB)).due == ()
    recorded = {"quota": Sent(NOW - timedelta(days=1))}
    decision = run(settings(used_bytes=None), recorded)
    assert decision.due == () and decision.forget == () and decision.unknown == ("quota",)


def test_notification_warning_selects_the_kinds():
    only_quota = settings(schedule_on=False, used_bytes=10 * GIB,
                          last_backups=laptop(timedelta(days=9)))  # fmt: skip

    assert [due.key for due in run(only_quota).due] == ["quota"]


# --- once per condition, repeat, recovery --------------------------------------------


def test_a_warned_condition_is_not_sent_again_until_repeat_days():
    stopped = settings(last_backups=laptop(timedelta(days=20)))
    six_days = {"schedule:laptop": Sent(NOW - timedelta(days=7) + timedelta(seconds=1))}
    seven_days = {"schedule:laptop": Sent(NOW - timedelta(days=7))}

    assert run(stopped, six_days).due == ()
    (due,) = run(stopped, seven_days).due
    assert due.repeat is True
    assert run(stopped, seven_days, repeat_days=0).due == (), "0: once per condition"


def test_an_attempt_never_confirmed_is_sent_again():
    stopped = settings(last_backups=laptop(timedelta(days=20)))

    assert warned(run(stopped, {"schedule:laptop": Sent(None)})) == ["schedule:laptop"]


def test_recovery_when_the_host_backs_up_again_or_forget_without_recovery():
    recorded = {"schedule:laptop": Sent(NOW - timedelta(days=2))}
    good = settings(last_backups=laptop(timedelta(hours=1)))

    (due,) = run(good, recorded).due
    assert (due.message, due.template, due.host) == (RECOVERY, "schedule-ok", "laptop")
    quiet = run(good, recorded, recovery=False)
    assert quiet.due == () and quiet.forget == ("schedule:laptop",)


def test_a_host_that_no_longer_reports_is_forgotten_without_a_message():
    recorded = {"schedule:oldpc": Sent(NOW - timedelta(days=2))}

    decision = run(settings(last_backups=laptop(timedelta(hours=1))), recorded)

    assert decision.due == () and decision.forget == ("schedule:oldpc",)


def test_schedule_unknown_under_a_server_fault_keeps_the_record_and_sends_nothing():
    recorded = {"schedule:laptop": Sent(NOW - timedelta(days=30))}

    decision = run(settings(last_backups=laptop(timedelta(days=30))), recorded, known=False)

    assert decision.due == () and decision.forget == ()
    assert "schedule" in decision.unknown


# --- the gate ----------------------------------------------------------------------------


def entry(**attributes: list[str]) -> LdapEntry:
    base = {"sstBackupWarningOn": ["TRUE"], "sstBackupWarningDays": ["3"],
            "sstBackupWarningNumbers": ["0"], "sstNotificationWarningLevel": ["85"],
            "sstNotificationWarningMedium": ["mail"], "mail": ["a@example.org"]}  # fmt: skip
    base.update(attributes)
    return LdapEntry.from_values("uid=1,dc=x", base)


@pytest.mark.parametrize(
    "value",
    [
        ["a@example.org\r\nBcc: victim@example.com"],
        ["a@example.org, b@example.org"],
        ["a@example.org", "b@example.org"],
        ["Name <a@example.org>"],
        ["a" * 4990 + "@example.org"],
        [],
    ],
    ids=["crlf", "two-in-one", "two-values", "display-name", "5000-chars", "missing"],
)
def test_a_hostile_or_missing_mail_is_a_reason_never_an_address(value):
    warn = read_warnings(entry(mail=value))

    assert warn.address is None
    (problem,) = warn.problems
    assert problem.startswith("mail: ") and "no warning sent" in problem
    assert "\r\n" not in problem and len(problem) < 300


def test_a_plain_address_and_a_phone_number_pass():
    assert read_warnings(entry()).address == "a@example.org"
    sms = read_warnings(entry(sstNotificationWarningMedium=["SMS"],
                              mobileTelephoneNumber=["+41 79 123 45 67"]))  # fmt: skip
    assert (sms.medium, sms.address, sms.problems) == ("sms", "+41791234567", ())
    bad = read_warnings(entry(sstNotificationWarningMedium=["sms"],
                              mobileTelephoneNumber=["-rf /; 079"]))  # fmt: skip
    assert bad.address is None and bad.problems


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["de"], "de"), (["de-CH"], "de"), (["EN_gb"], "en"), (["../../etc"], None),
     (["de/../../etc"], None), (["x" * 100], None), ([], None)],
)  # fmt: skip
def test_preferred_language_is_a_tag_or_nothing(value, expected):
    assert read_warnings(entry(preferredLanguage=value)).language == expected


def test_last_backups_parsed_per_host_bad_values_are_reasons():
    warn = read_warnings(entry(sstBackupLastSuccessfulBackup=[
        "laptop:20261130T081500Z", "0", "Desktop.example.com:20261201T000000Z",
        "evil\nhost:20261201T000000Z", "laptop:garbage"]))  # fmt: skip

    assert warn.last_backups == (
        ("desktop.example.com", datetime(2026, 12, 1, tzinfo=UTC)),
        ("laptop", datetime(2026, 11, 30, 8, 15, tzinfo=UTC)),
    )
    assert len(warn.problems) == 2


def test_warning_values_off_and_bad():
    assert read_warnings(entry(sstBackupWarningOn=["FALSE"])).schedule_on is False
    assert read_warnings(entry(sstNotificationWarning=["quota"])).schedule_on is False
    assert read_warnings(entry(sstNotificationWarning=["schedule"])).quota_on is False
    bad = read_warnings(entry(sstBackupWarningDays=["9" * 50]))
    assert bad.warning_days == 0 and "sstBackupWarningDays" in bad.problems[0]


# --- server faults ------------------------------------------------------------------------


def daily(**changes: object) -> dict[str, object]:
    status: dict[str, object] = {"finished": (NOW - timedelta(hours=4)).isoformat(),
                                 "exit_code": 0, "counts": {"done": 40, "failed": 0}}  # fmt: skip
    status.update(changes)
    return status


def test_server_fault_rules():
    slack = 10800
    assert server_fault(daily(), NOW, slack) is None
    assert "never run" in server_fault(None, NOW, slack)
    assert "has not run since" in server_fault(
        daily(finished=(NOW - timedelta(hours=27, seconds=1)).isoformat()), NOW, slack
    )
    assert server_fault(daily(finished=(NOW - timedelta(hours=27)).isoformat()), NOW, slack) is None
    assert "exited 69" in server_fault(daily(exit_code=69), NOW, slack)
    assert "stopped by SIGTERM" in server_fault(daily(stopped_by_signal="SIGTERM", exit_code=143),
                                                NOW, slack)  # fmt: skip
    assert server_fault(daily(exit_code=1, counts={"done": 38, "failed": 2}), NOW, slack) is None
    assert "failed for 5 of 45" in server_fault(
        daily(exit_code=1, counts={"done": 40, "failed": 5}), NOW, slack
    )
    assert failed_accounts(daily(accounts=[{"uid": "1", "outcome": "failed"},
                                           {"uid": "2", "outcome": "done"}])) == {"1"}  # fmt: skip


# --- templates ---------------------------------------------------------------------------


def write_templates(top: Path, language: str = "en", **override: str) -> None:
    (top / language).mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        default = f"Subject: {kind} for {{uid}}\n\nBody {{host}}\n"
        text = override.get(kind.replace("-", "_"), default)
        (top / language / f"{kind}.txt").write_text(text)


def test_shipped_templates_load_in_both_languages():
    templates = load_templates(REPOSITORY / "etc" / "notify", "en")

    assert sorted(templates.languages) == ["de", "en"]
    assert templates.pick("../../etc") == "en" and templates.pick("fr") == "en"
    assert templates.pick("de") == "de"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("Subject: hi {user}\n\nbody\n", "{user}"),
     ("Subject: hi\n\nbody {uid.__class__}\n", "uid.__class__"),
     ("Subject: hi\n\nbody {percent:>10}\n", "{percent}"),
     ("Subject: hi\n\nbody { \n", "literal brace"),
     ("no subject line\n\nbody\n", "Subject:")],
    ids=["unknown", "attribute", "format-spec", "stray-brace", "no-subject"],
)  # fmt: skip
def test_a_template_error_is_a_config_error_naming_file_and_placeholder(tmp_path, text, needle):
    write_templates(tmp_path, quota=text)

    with pytest.raises(ConfigError) as raised:
        load_templates(tmp_path, "en")

    assert raised.value.exit_code == 78
    assert str(tmp_path / "en" / "quota.txt") in str(raised.value)
    assert needle in str(raised.value)


def test_missing_kind_and_missing_default_language(tmp_path):
    write_templates(tmp_path)
    (tmp_path / "en" / "quota-ok.txt").unlink()
    with pytest.raises(ConfigError, match=r"quota-ok\.txt"):
        load_templates(tmp_path, "en")
    write_templates(tmp_path)
    with pytest.raises(ConfigError, match="no templates in"):
        load_templates(tmp_path, "de")
