"""The state machine's pure rules: due, overdue, scheduled, failed, interrupted."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from provbackup import state
from provbackup.actions.common import local_today
from provbackup.entry import LdapEntry, Rules, read_account, read_request
from provbackup.errors import InvalidEntryError, UnsafePathError
from provbackup.model import Verb
from provbackup.systemids import SystemIds

TODAY = date(2026, 11, 26)


def request(**attributes):
    base = {
        "uid": ["3723707"],
        "sstProvisioningMode": ["add"],
        "sstProvisioningState": ["0"],
        "sstProvisioningExecutionDate": ["0"],
    }
    base.update({key: value for key, value in attributes.items() if value is not None})
    for key, value in attributes.items():
        if value is None:
            base.pop(key, None)
    return read_request(LdapEntry.from_values("uid=3723707,dc=x", base))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("0", state.Status.DUE),
        ("20261126", state.Status.DUE),
        ("20261125", state.Status.OVERDUE),
        ("20200101", state.Status.OVERDUE),
        ("20261127", state.Status.SCHEDULED),
    ],
)
def test_date_rules(when, expected):
    assert state.classify(request(sstProvisioningExecutionDate=[when]), TODAY) is expected


def test_documented_date_attribute_name_works_too():
    entry = request(sstProvisioningExecutionDate=None, sstProvisioningDate=["20261127"])
    assert entry.date_attribute == "sstProvisioningDate"
    assert state.classify(entry, TODAY) is state.Status.SCHEDULED


@pytest.mark.parametrize("mode", ["add", "modify", "delete"])
def test_every_request_mode_is_due(mode):
    assert state.is_due(state.classify(request(sstProvisioningMode=[mode]), TODAY))


def test_done_entries_are_not_due():
    entry = request(sstProvisioningMode=["added"], sstProvisioningState=["20261126T101500Z"])
    assert state.classify(entry, TODAY) is state.Status.DONE


def test_in_progress_is_failed_with_return_value_else_interrupted_or_running():
    failed = request(sstProvisioningMode=["adding"], sstProvisioningReturnValue=["11"])
    assert state.classify(failed, TODAY) is state.Status.FAILED
    interrupted = request(sstProvisioningMode=["deleting"])
    assert state.classify(interrupted, TODAY) is state.Status.INTERRUPTED
    assert state.classify(interrupted, TODAY, run_active=True) is state.Status.RUNNING


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [
        ({"sstProvisioningMode": ["frobnicate"]}, None),
        ({"sstProvisioningMode": ["remove"]}, "'remove': unknown mode"),
        ({"sstProvisioningExecutionDate": ["20261341"]}, "20261341"),
        ({"sstProvisioningExecutionDate": ["tomorrow"]}, "tomorrow"),
        ({"sstProvisioningExecutionDate": None}, "is missing"),
        ({"sstProvisioningState": ["soon"]}, "soon"),
        ({"sstProvisioningMode": ["add", "delete"]}, "2 values"),
    ],
)
def test_malformed_provisioning_attributes_are_invalid(attributes, fragment):
    entry = request(**attributes)
    assert state.classify(entry, TODAY) is state.Status.INVALID
    if fragment:
        assert fragment in entry.problem


def test_timestamp_is_utc_in_the_stoney_form():
    moment = datetime(2026, 11, 26, 23, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert state.timestamp(moment) == "20261126T213005Z"


def test_claim_asserts_the_old_values():
    changes = state.claim_changes(request(sstProvisioningMode=["modify"]))
    assert changes["sstProvisioningMode"] == [("delete", ["modify"]), ("add", ["modifying"])]
    assert changes["sstProvisioningState"] == [("delete", ["0"]), ("add", ["0"])]
    # The value as stored is asserted: ADD is deleted as ADD.
    upper = state.claim_changes(request(sstProvisioningMode=["ADD"]))
    assert upper["sstProvisioningMode"] == [("delete", ["ADD"]), ("add", ["adding"])]


def test_an_invalid_request_is_recorded_with_10_and_nothing_else_changes():
    invalid = request(sstProvisioningMode=["remove"])
    changes = state.invalid_changes(invalid)
    assert changes == {
        "sstProvisioningMode": [("delete", ["remove"]), ("add", ["remove"])],
        "sstProvisioningState": [("delete", ["0"]), ("add", ["0"])],
        "sstProvisioningReturnValue": [("replace", ["10"])],
    }
    assert not state.is_recorded_invalid(invalid)
    assert state.is_recorded_invalid(
        request(sstProvisioningMode=["remove"], sstProvisioningReturnValue=["10"])
    )


def test_finish_writes_done_mode_timestamp_date_and_return_value():
    moment = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
    changes = state.finish_changes(Verb.DELETE, "sstProvisioningDate", moment)
    assert changes["sstProvisioningMode"] == [("delete", ["deleting"]), ("add", ["deleted"])]
    assert changes["sstProvisioningState"] == [("replace", ["20261126T090000Z"])]
    assert changes["sstProvisioningDate"] == [("replace", ["0"])]
    assert changes["sstProvisioningReturnValue"] == [("replace", ["0"])]


def test_default_reset_mode_is_the_verb():
    mode = "sstProvisioningMode"
    assert state.default_reset_mode(request(**{mode: ["adding"]})) == "add"
    assert state.default_reset_mode(request(**{mode: ["deleted"]})) == "delete"
    assert state.default_reset_mode(request(**{mode: ["modify"]})) == "modify"
    assert state.default_reset_mode(request(**{mode: ["frobnicate"]})) is None


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-11-25 23:59:59", date(2026, 11, 25)),
        ("2026-11-26 00:00:00", date(2026, 11, 26)),
    ],
)
def test_today_at_midnight_edges(instant, expected):
    with freeze_time(instant, tz_offset=0):
        today = local_today(lambda: datetime.now(UTC))
    assert today == expected
    entry = request(sstProvisioningExecutionDate=["20261126"])
    assert state.is_due(state.classify(entry, today)) is (expected >= date(2026, 11, 26))


def test_today_is_the_local_date_not_the_utc_date(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Europe/Zurich")
    time.tzset()
    try:
        # 23:30 UTC on the 25th is already the 26th in Zurich.
        moment = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
        assert local_today(lambda: moment) == date(2026, 11, 26)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


ACCOUNT = {
    "uid": ["3723707"],
    "uidNumber": ["3723707"],
    "gidNumber": ["3723707"],
    "homeDirectory": ["/var/backup/7/707/723/3723707/chroot/./home/3723707"],
    "sstQuota": ["1073741824"],
    "sstIsActive": ["TRUE"],
    "sstBackupIntervalHourly": ["0"],
    "sstBackupIntervalDaily": ["7"],
    "sstBackupIntervalWeekly": ["4"],
    "sstBackupIntervalMonthly": ["3"],
    "sstBackupIntervalYearly": ["1"],
}
DEFAULT_RETAIN = (("daily", 7), ("weekly", 4), ("monthly", 3))


# What the gate checks against: the local files' IDs are replaced by a known set.
RULES = Rules(
    min_uid=1000,
    max_uid=4294967294,
    default_retain=DEFAULT_RETAIN,
    root=Path("/var/backup"),
    layout="stoney",
    system_ids=SystemIds(uids=frozenset({1000, 65534}), gids=frozenset({1001, 65534})),
)


def account(verb=Verb.ADD, rules=RULES, **changes):
    attributes = dict(ACCOUNT)
    for key, value in changes.items():
        if value is None:
            attributes.pop(key)
        else:
            attributes[key] = value
    return read_account(LdapEntry.from_values("uid=x,dc=x", attributes), verb, rules)


def test_valid_account_is_read():
    result = account()
    assert result.uid_number == 3723707
    assert result.quota_bytes == 2**30
    assert result.retain == (("daily", 7), ("weekly", 4), ("monthly", 3), ("yearly", 1))
    assert result.active is True


def test_missing_intervals_come_from_the_config():
    result = account(sstBackupIntervalDaily=None, sstBackupIntervalYearly=None)
    assert result.retain == (("daily", 7), ("weekly", 4), ("monthly", 3))


@pytest.mark.parametrize(
    ("attribute", "value", "fragment"),
    [
        ("uidNumber", ["0"], "0 (root)"),
        ("gidNumber", ["0"], "0 (root)"),
        ("uidNumber", ["999"], "below [backup] min_uid"),
        ("uidNumber", ["-5"], "not a non-negative integer"),
        ("uidNumber", ["12a"], "not a non-negative integer"),
        ("uidNumber", None, "is missing"),
        ("uidNumber", ["1001", "1002"], "2 values"),
        ("uid", ["../etc"], "not a safe account name"),
        ("uid", ["a/b"], "not a safe account name"),
        ("uid", ["-rf"], "not a safe account name"),
        ("uid", ["a\nb"], "not a safe account name"),
        ("uid", ["x" * 300], "not a safe account name"),
        ("uid", ["ünïcode"], "not a safe account name"),
        ("sstQuota", [str(10**30)], "larger than the maximum"),
        ("sstQuota", ["-1"], "not a non-negative integer"),
        ("sstIsActive", ["maybe"], "expected TRUE or FALSE"),
        ("sstBackupIntervalDaily", ["seven"], "not a non-negative integer"),
        ("homeDirectory", ["relative/path"], "not an absolute path"),
    ],
)
def test_invalid_account_names_attribute_and_value(attribute, value, fragment):
    with pytest.raises(InvalidEntryError) as raised:
        account(**{attribute: value})
    message = str(raised.value)
    assert message.startswith(attribute)
    assert fragment in message
    if value:
        assert repr(value[0])[:20] in message or "values" in message


def test_several_problems_are_reported_together():
    with pytest.raises(InvalidEntryError) as raised:
        account(uidNumber=["0"], sstQuota=["lots"])
    assert "uidNumber" in str(raised.value) and "sstQuota" in str(raised.value)


def test_all_zero_intervals_are_invalid():
    zero = {name: ["0"] for name in ACCOUNT if name.startswith("sstBackupInterval")}
    with pytest.raises(InvalidEntryError, match="no interval is above 0"):
        account(**zero)


@pytest.mark.parametrize(
    ("attribute", "value", "fragment"),
    [
        # 0 means "unlimited" to setquota (issue 11.4).
        ("sstQuota", ["0"], "0 would mean 'unlimited'"),
        # Refused by its length, named by its start: never int() of 5,000 digits (11.6).
        ("sstQuota", ["9" * 5000], "'99999999999999999999... (5000 characters)'"),
        ("uidNumber", ["9" * 5000], "larger than the maximum"),
        ("sstBackupIntervalDaily", ["7" * 5000], "larger than the maximum 999"),
        # IDs of the system's own accounts (the rules' stand-in for /etc/passwd, /etc/group).
        ("uidNumber", ["1000"], "belongs to the system (/etc/passwd"),
        ("gidNumber", ["1001"], "belongs to the system (/etc/group"),
        ("uidNumber", ["65534"], "belongs to the system"),
    ],
)
def test_values_that_mean_something_else_on_the_server_are_refused(attribute, value, fragment):
    with pytest.raises(InvalidEntryError) as raised:
        account(**{attribute: value})
    assert str(raised.value).startswith(attribute)
    assert fragment in str(raised.value)
    assert raised.value.return_value == 10


def test_max_uid_bounds_uid_and_gid_numbers():
    rules = replace(RULES, max_uid=3723706)
    with pytest.raises(InvalidEntryError) as raised:
        account(rules=rules)
    assert "uidNumber: '3723707': above [backup] max_uid 3723706" in str(raised.value)
    assert "gidNumber: '3723707': above [backup] max_uid 3723706" in str(raised.value)
    assert account(rules=replace(RULES, max_uid=3723707)).uid_number == 3723707


def test_a_delete_ignores_what_it_does_not_use():
    """Quota, intervals and activation are not read for a delete (issue 10.6)."""
    unusable = {"sstQuota": ["lots"], "sstIsActive": ["maybe"], "sstBackupIntervalDaily": ["x"]}
    with pytest.raises(InvalidEntryError):
        account(**unusable)
    deleted = account(Verb.DELETE, **unusable)
    assert (deleted.uid, deleted.quota_bytes, deleted.retain) == ("3723707", None, ())
    # The IDs are still checked: a delete runs the quota command for them.
    with pytest.raises(InvalidEntryError, match="belongs to the system"):
        account(Verb.DELETE, uidNumber=["65534"])


def test_mode_is_read_ignoring_case():
    """The stoney schema compares sstProvisioningMode with caseIgnoreMatch (issue 10.4)."""
    upper = request(sstProvisioningMode=["ADD"])
    assert (upper.verb, upper.problem) == (Verb.ADD, None)
    assert state.classify(upper, TODAY) is state.Status.DUE
    unknown = request(sstProvisioningMode=["remove"])
    assert unknown.verb is None
    assert unknown.problem == (
        "sstProvisioningMode: 'remove': unknown mode (expected one of add, modify, delete)"
    )
    assert state.classify(unknown, TODAY) is state.Status.INVALID


# ------------------------------------------------------------------ homeDirectory with a jail

JAILED = replace(RULES, jailed=True)
PLAIN_HOME = "/var/backup/7/707/723/3723707/chroot/home/3723707"


def test_with_a_jail_the_home_directory_needs_the_jail_marker():
    # Without a jail the plain form is accepted ...
    assert account(homeDirectory=[PLAIN_HOME]).home_directory == PLAIN_HOME
    # ... with one, jk_chrootsh could not log the account in: invalid (10), naming the value.
    for value in (PLAIN_HOME, "/var/backup/7/707/723/3723707/./chroot/home/3723707"):
        with pytest.raises(InvalidEntryError, match="jail marker") as caught:
            account(rules=JAILED, homeDirectory=[value])
        assert caught.value.return_value == 10
        assert caught.value.attribute == "homeDirectory"
    marked = account(rules=JAILED, verb=Verb.MODIFY)
    assert marked.home_directory == ACCOUNT["homeDirectory"][0]
    # A delete goes through whatever the entry says.
    assert account(Verb.DELETE, JAILED, homeDirectory=[PLAIN_HOME]).uid == "3723707"


def test_with_a_jail_a_missing_home_directory_is_invalid():
    assert account(homeDirectory=None).home_directory is None
    with pytest.raises(InvalidEntryError, match="homeDirectory") as caught:
        account(rules=JAILED, homeDirectory=None)
    assert caught.value.return_value == 10


def test_with_a_jail_a_home_elsewhere_is_still_unsafe():
    with pytest.raises(UnsafePathError):
        account(rules=JAILED, homeDirectory=["/etc/./home/3723707"])


def test_the_rules_know_a_jail_from_the_configuration(tmp_path):
    from provbackup.config import BackupConfig, Config, LdapConfig

    config = Config(source=tmp_path, ldap=LdapConfig(uris=("ldap://x",), base_dn="dc=x"))
    ids = RULES.system_ids
    assert Rules.from_config(config, ids).jailed is False
    jailed = replace(config, backup=BackupConfig(jail_template=tmp_path))
    assert Rules.from_config(jailed, ids).jailed is True
