"""``scan --warnings`` against the real slapd: the accounts whose customer warnings cannot go out.

Real entries provisioned by a real ``process``, a real snapshot run, a real
``notify`` whose mail server is down; the listing must name each entry,
attribute and value, and nothing for an account whose warnings work.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from support import run, write_config
from test_mail import free_port
from test_notify import customer, ended_at, mail_section, notify_section, provision, snapshot_daily

from sandbox import account_entry, jailkit_home_directory

NOW = datetime.now(UTC)


def rows(setup) -> list[dict]:  # type: ignore[no-untyped-def]
    result = run(setup, "scan", "--warnings", "--json")
    assert result.code == 0, result.out + result.err
    return json.loads(result.out)


def test_scan_warnings_names_each_entry_attribute_and_value(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, mail_section(free_port()) + notify_section())
    dns = provision(ldap_server, setup, {
        "2000301": customer("2000301"),  # works: no row
        "2000302": {"sstBackupWarningDays": ["3"]},  # mail medium, no mail attribute
        "2000303": customer("2000303", mail=["a@example.org", "b@example.org"]),
        "2000304": customer("2000304", sstNotificationWarningMedium=["pigeon"]),
        "2000305": customer("2000305", sstNotificationWarningMedium=["sms"]),  # no number
        "2000306": customer("2000306", sstNotificationWarningLevel=["1000"]),
    })  # fmt: skip
    # A request not yet provisioned is plain scan's, not a warned account.
    dn, attributes = account_entry(
        "2000307", base_dn=ldap_server.accounts_dn,
        home_directory=jailkit_home_directory(setup.root, "2000307"),
        date="29991231", extra={"mail": ["not an address"]},
    )  # fmt: skip
    ldap_server.add_entries([(dn, attributes)])

    found = {(row["uid"], row["attribute"], row["value"]) for row in rows(setup)}

    assert found == {
        ("2000302", "mail", None),
        ("2000303", "mail", "['a@example.org', 'b@example.org']"),
        ("2000304", "sstNotificationWarningMedium", "pigeon"),
        ("2000305", "mobileTelephoneNumber", None),
        ("2000306", "sstNotificationWarningLevel", "1000"),
    }
    listed = rows(setup)
    assert {row["uid"]: row["dn"] for row in listed}["2000304"] == dns["2000304"]
    assert "several addresses: no warning sent" in " ".join(row["problem"] for row in listed)
    table = run(setup, "scan", "--warnings")
    assert table.code == 0, table.err
    assert "sstNotificationWarningMedium" in table.out and dns["2000304"] in table.out
    assert "2000301" not in table.out
    plain = run(setup, "scan")
    assert "2000307" in plain.out and "sstNotificationWarningMedium" not in plain.out


def test_scan_warnings_shows_a_warning_that_could_not_be_sent(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, mail_section(free_port()) + notify_section())
    dns = provision(ldap_server, setup, {"2000311": customer("2000311")})
    ended_at(setup.root, "2000311", "laptop", NOW - timedelta(days=5))
    snapshot_daily(setup)
    assert rows(setup) == []  # the settings are fine until a sending fails

    assert run(setup, "notify").code == 1  # the mail server is down

    [row] = rows(setup)
    assert (row["uid"], row["dn"], row["attribute"], row["value"]) == (
        "2000311", dns["2000311"], "mail", "customer2000311@example.org"
    )
    assert row["problem"].startswith("schedule:laptop: the last warning was not sent: ")
    assert "Connection refused" in row["problem"]


def test_scan_warnings_shows_an_account_whose_record_notify_cannot_use(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, mail_section(free_port()) + notify_section())
    dns = provision(ldap_server, setup, {"2000321": customer("2000321")})
    records = setup.status_file.parent / "notify"
    records.mkdir(mode=0o700, exist_ok=True)
    (records / "2000321.json").write_text("{not json")

    [row] = rows(setup)

    assert (row["uid"], row["dn"], row["attribute"], row["value"]) == (
        "2000321", dns["2000321"], "-", str(records / "2000321.json")
    )
    assert "unusable record" in row["problem"]
