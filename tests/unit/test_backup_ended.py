"""parse_backup_ended on what a customer may write (issue 22, items 2 and 3), and check's
reading of a snapshot run that skipped the usage write-back (item 1).

The end-to-end forms, through a real snapshot run and slapd, are in
tests/system/test_customer_data.py; these pin the parser's answers.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provbackup.actions.snapshot_check import evaluate_runs
from provbackup.work.usage import parse_backup_ended, read_usage_file

DOCUMENT = (
    '<?xml version="1.0" encoding="{encoding}"?>{doctype}'
    "<backup_ended><enddate>{date}</enddate><success>{success}</success></backup_ended>"
)


def document(date: str = "2014-01-02T03:04:05Z", *, success: str = "1", doctype: str = "",
             codec: str = "utf-8") -> bytes:  # fmt: skip
    encoding = "UTF-16" if "16" in codec else "UTF-32" if "32" in codec else "UTF-8"
    text = DOCUMENT.format(encoding=encoding, doctype=doctype, date=date, success=success)
    return text.encode(codec)


@pytest.mark.parametrize(
    "date",
    [
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "99999-01-01T00:00:00Z",
        "2013-09-23T08:35:54+24:00",
        "2013-09-23T08:35:54-99:99",
        "2013-09-23T08:35:54+1" + "0" * 5000,
        "1" * 5000,
        "\uff12\uff10\uff11\uff13-09-23T08:35:54Z",
        "2013-09-23T08:35:54+\u0660\u0662:00",
        "2013-02-30T08:35:54Z",
        "2013-09-23T24:00:00Z",
        "2013-09-23T08:35:60Z",
        "2013-09-23T08:35:54",
        "2013-09-23",
        "20130923T083554Z",
        "",
    ],
)
def test_an_enddate_that_is_no_plausible_time_is_a_value_error(date):
    with pytest.raises(ValueError, match="enddate"):
        parse_backup_ended(document(date))


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2013-09-23T08:35:54+02:00", datetime(2013, 9, 23, 6, 35, 54, tzinfo=UTC)),
        ("2013-09-23T08:35:54+23:59", datetime(2013, 9, 22, 8, 36, 54, tzinfo=UTC)),
        ("2013-09-23T08:35:54-2359", datetime(2013, 9, 24, 8, 34, 54, tzinfo=UTC)),
        ("2013-09-23T08:35:54.123Z", datetime(2013, 9, 23, 8, 35, 54, 123000, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_valid_enddates_are_read_in_utc(date, expected):
    assert parse_backup_ended(document(date)) == expected


@pytest.mark.parametrize("success", ["0", "", "1" * 5000, "\u0661", "true"])
def test_anything_but_success_1_is_not_a_success(success):
    assert parse_backup_ended(document(success=success)) is None


CODECS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
          "utf-32", "utf-32-le", "utf-32-be"]  # fmt: skip
DOCTYPES = {
    "internal-entity": '<!DOCTYPE backup_ended [<!ENTITY a "1">]>',
    "billion-laughs": '<!DOCTYPE backup_ended [<!ENTITY l0 "1">'
    + "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    + "]>",
    "external-entity": '<!DOCTYPE backup_ended [<!ENTITY a SYSTEM "file:///etc/shadow">]>',
    "external-dtd": '<!DOCTYPE backup_ended SYSTEM "file:///etc/shadow">',
    "public-dtd": '<!DOCTYPE backup_ended PUBLIC "-//x//y" "http://127.0.0.1:9/x.dtd">',
    "parameter-entity": '<!DOCTYPE backup_ended [<!ENTITY % p SYSTEM "file:///etc/shadow"> %p;]>',
}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("doctype", DOCTYPES, ids=list(DOCTYPES))
def test_doctypes_and_entities_are_refused_in_every_encoding(codec, doctype):
    # &a; would be "1" if it were expanded: the success the customer is not owed.
    success = "&a;" if "entity" in doctype and doctype != "parameter-entity" else "1"
    data = document(success=success, doctype=DOCTYPES[doctype], codec=codec)

    with pytest.raises(ValueError) as refused:
        parse_backup_ended(data)

    expected = "not well-formed" if "32" in codec else "refused, nothing expanded or fetched"
    assert expected in str(refused.value)


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_a_plain_file_is_read_in_the_encodings_expat_reads(codec):
    assert parse_backup_ended(document(codec=codec)) == datetime(2014, 1, 2, 3, 4, 5, tzinfo=UTC)


NOT_XML = {
    "nul": b"<backup_ended>\0</backup_ended>",
    "nul-reference": b"<backup_ended>&#0;</backup_ended>",
    "two-boms": b"\xff\xfe\xff\xfe",
    "empty": b"",
    "lone-surrogate": "<backup_ended>\udcff</backup_ended>".encode("utf-8", "surrogatepass"),
}


@pytest.mark.parametrize("data", NOT_XML.values(), ids=list(NOT_XML))
def test_bytes_no_xml_parser_takes_are_a_value_error(data):
    with pytest.raises(ValueError, match="not well-formed"):
        parse_backup_ended(data)


def test_a_usage_file_with_non_ascii_or_giant_digits_is_unreadable_not_a_crash(tmp_path):
    from provbackup.work.safe import open_root

    directory = tmp_path / "chroot" / "etc" / "provbackup"
    directory.mkdir(parents=True)
    with open_root(tmp_path) as account:
        for text in ("1 \u00b2 3\n", "1 2 " + "3" * 5000 + "\n", "1 2 \u0663\n"):
            (directory / "usage").write_text(text)
            assert read_usage_file(account) is None, text
        (directory / "usage").write_text("1 2 3\n")
        assert read_usage_file(account) == (1, 2, 3)


def test_a_snapshot_run_that_skipped_the_usage_write_back_warns_with_its_reason():
    warnings, problems = evaluate_runs(
        {
            "daily": {"exit_code": 78, "ldap_error": "base DN 'ou=x' does not exist"},
            "weekly": {"exit_code": 69, "ldap_error": "LDAP unavailable after 1 attempt(s)"},
            "monthly": {"exit_code": 78, "error": "[backup] root: missing"},
        }
    )
    assert warnings == [
        "last daily snapshot run could not write usage to LDAP: base DN 'ou=x' does not exist",
        "last weekly snapshot run could not write usage to LDAP: "
        "LDAP unavailable after 1 attempt(s)",
    ]
    assert problems == ["last monthly snapshot run exited 78: [backup] root: missing"]
