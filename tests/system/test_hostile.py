"""Hostile and malformed directory input, end to end against a real slapd.

The directory is written by other systems (a web shop, operators, scripts),
so provbackup treats every value in it as hostile. These tests load a corpus
of broken entries next to good ones, some of them breaking the LDAP schema
(loaded with ``slapadd -s``, as a damaged or hand-edited directory would hold
them), run one real ``process`` and check that each bad entry fails alone,
with a message naming the entry, the attribute and the value, that the good
entries succeed, and that nothing outside the backup root changed. Then
symlinks a user plants in their home, and LDAP filter injection through the
command-line arguments.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    Setup,
    fingerprint,
    load_offline,
    modify_entry,
    read_entry,
    run,
    write_config,
)

from sandbox import Slapd, account_entry

GOOD = ("good-a", "good-b")
FULLWIDTH = "\uff16\uff10\uff10\uff10"  # "6000" in fullwidth digits: str.isdigit() says yes
UNCHANGED_OUTSIDE = ("backup", "run", "status", "quota.log")


@dataclass(frozen=True)
class Hostile:
    """One bad entry: what to change in a good entry, and what the message must name.

    ``changes`` maps attribute names to their new values (None removes the
    attribute). The entry's failure message must contain ``attribute: shown``
    (``shown`` is the value as the message quotes it, control characters
    escaped); where the problem is on disk (``attribute`` None), ``shown`` is
    the path and what stands there;
    ``claimed`` tells whether the entry is claimed (``adding``) before it
    fails, or refused unclaimed because its provisioning attributes are bad.
    """

    label: str
    changes: dict[str, list[str] | None]
    attribute: str | None
    shown: str
    mode: str = "add"
    claimed: bool = True

    @property
    def uid(self) -> str:
        return f"h-{self.label}"


def corpus(root: Path, decoy: Path) -> list[Hostile]:
    """The bad entries (more than 40), each with one problem, as the issue lists them."""
    bad_uids = {
        "uid-slash": "a/b",
        "uid-dotdot": "..",
        "uid-dot": ".",
        "uid-nul": "x\0y",
        "uid-newline": "x\ny",
        "uid-tab": "x\ty",
        "uid-dash": "-rf",
        "uid-unicode": "ünïcødé",
        "uid-long": "a" * 300,
        "uid-escape": "u\x1b[2J",
        "uid-space": " lead",
    }
    items = [
        Hostile(label, {"uid": [value]}, "uid", repr(value)) for label, value in bad_uids.items()
    ]
    items += [
        # Missing attributes.
        Hostile("no-uid", {"uid": None}, "uid", "(missing)", claimed=False),
        Hostile("no-uidnumber", {"uidNumber": None}, "uidNumber", "(missing)"),
        Hostile("no-gidnumber", {"gidNumber": None}, "gidNumber", "(missing)"),
        Hostile(
            "no-mode",
            {"sstProvisioningMode": None},
            "sstProvisioningMode",
            "(missing)",
            claimed=False,
        ),
        Hostile(
            "no-date",
            {"sstProvisioningExecutionDate": None},
            "sstProvisioningExecutionDate or sstProvisioningDate",
            "(missing)",
            claimed=False,
        ),
        # Several values where one is expected. slapd refuses to modify (so to claim)
        # an entry with two values of a SINGLE-VALUE attribute; the failure still
        # names the attribute and the values.
        Hostile("two-uids", {"uid": ["x1", "x2"]}, "uid", "['x1', 'x2']", claimed=False),
        Hostile(
            "two-uidnumbers",
            {"uidNumber": ["6001", "6002"]},
            "uidNumber",
            "['6001', '6002']",
            claimed=False,
        ),
        Hostile(
            "two-gidnumbers",
            {"gidNumber": ["6001", "0"]},
            "gidNumber",
            "['6001', '0']",
            claimed=False,
        ),
        Hostile(
            "two-modes",
            {"sstProvisioningMode": ["add", "delete"]},
            "sstProvisioningMode",
            "['add', 'delete']",
            claimed=False,
        ),
        Hostile(
            "two-homes",
            {"homeDirectory": ["/a", "/b"]},
            "homeDirectory",
            "['/a', '/b']",
            claimed=False,
        ),
        Hostile("two-quotas", {"sstQuota": ["1", "2"]}, "sstQuota", "['1', '2']", claimed=False),
        Hostile(
            "two-dates",
            {"sstProvisioningExecutionDate": ["0", "20250101"]},
            "sstProvisioningExecutionDate",
            "['0', '20250101']",
            claimed=False,
        ),
        # Numbers that are not, negative or out of range.
        Hostile("uidnumber-text", {"uidNumber": ["abc"]}, "uidNumber", "'abc'"),
        Hostile("uidnumber-negative", {"uidNumber": ["-5"]}, "uidNumber", "'-5'"),
        Hostile("uidnumber-fullwidth", {"uidNumber": [FULLWIDTH]}, "uidNumber", repr(FULLWIDTH)),
        Hostile("uidnumber-huge", {"uidNumber": ["4294967296"]}, "uidNumber", "'4294967296'"),
        Hostile("gidnumber-text", {"gidNumber": ["x1"]}, "gidNumber", "'x1'"),
        Hostile("quota-negative", {"sstQuota": ["-1"]}, "sstQuota", "'-1'"),
        Hostile("quota-text", {"sstQuota": ["lots"]}, "sstQuota", "'lots'"),
        # 0 means "unlimited" to setquota; 5,000 digits are refused by their length.
        Hostile("quota-zero", {"sstQuota": ["0"]}, "sstQuota", "'0'"),
        Hostile(
            "quota-5000-digits",
            {"sstQuota": ["9" * 5000]},
            "sstQuota",
            repr("9" * 20 + "... (5000 characters)"),
        ),
        # IDs of the system's own accounts: nobody/nogroup.
        Hostile("uidnumber-nobody", {"uidNumber": ["65534"]}, "uidNumber", "'65534'"),
        Hostile("gidnumber-nogroup", {"gidNumber": ["65534"]}, "gidNumber", "'65534'"),
        Hostile("quota-huge", {"sstQuota": ["1" + "0" * 30]}, "sstQuota", repr("1" + "0" * 30)),
        Hostile(
            "daily-negative", {"sstBackupIntervalDaily": ["-1"]}, "sstBackupIntervalDaily", "'-1'"
        ),
        Hostile(
            "weekly-text",
            {"sstBackupIntervalWeekly": ["four"]},
            "sstBackupIntervalWeekly",
            "'four'",
        ),
        Hostile(
            "daily-huge", {"sstBackupIntervalDaily": ["1000"]}, "sstBackupIntervalDaily", "'1000'"
        ),
        Hostile(
            "no-interval",
            {
                name: ["0"]
                for name in (
                    "sstBackupIntervalHourly",
                    "sstBackupIntervalDaily",
                    "sstBackupIntervalWeekly",
                    "sstBackupIntervalMonthly",
                    "sstBackupIntervalYearly",
                )
            },
            "sstBackupInterval*",
            "[('0',), ('0',), ('0',), ('0',), ('0',)]",
        ),
        Hostile("active-maybe", {"sstIsActive": ["maybe"]}, "sstIsActive", "'maybe'"),
        # Root and system ids.
        Hostile("uidnumber-root", {"uidNumber": ["0"]}, "uidNumber", "'0'"),
        Hostile("gidnumber-root", {"gidNumber": ["0"]}, "gidNumber", "'0'"),
        Hostile("uidnumber-system", {"uidNumber": ["999"]}, "uidNumber", "'999'"),
        Hostile("gidnumber-system", {"gidNumber": ["500"]}, "gidNumber", "'500'"),
        # homeDirectory elsewhere.
        Hostile("home-etc", {"homeDirectory": ["/etc/hostile"]}, "homeDirectory", "'/etc/hostile'"),
        Hostile(
            "home-dotdot",
            {"homeDirectory": [f"{root}/h-home-dotdot/chroot/./home/../../../../etc"]},
            "homeDirectory",
            f"'{root}/h-home-dotdot/chroot/./home/../../../../etc'",
        ),
        Hostile(
            "home-symlink",
            {"homeDirectory": [f"{root}/escape/chroot/./home/h-home-symlink"]},
            "homeDirectory",
            f"'{root}/escape/chroot/./home/h-home-symlink'",
        ),
        Hostile(
            "home-relative",
            {"homeDirectory": ["home/h-home-relative"]},
            "homeDirectory",
            "'home/h-home-relative'",
        ),
        Hostile(
            "home-of-another",
            {"homeDirectory": [f"{root}/good-a/chroot/./home/good-a"]},
            "homeDirectory",
            f"'{root}/good-a/chroot/./home/good-a'",
        ),
        # Modes and dates that are not.
        Hostile(
            "mode-frobnicate",
            {"sstProvisioningMode": ["frobnicate"]},
            "sstProvisioningMode",
            "'frobnicate'",
            claimed=False,
        ),
        # ADD is add (caseIgnoreMatch); remove is no mode at all.
        Hostile(
            "mode-remove",
            {"sstProvisioningMode": ["remove"]},
            "sstProvisioningMode",
            "'remove'",
            claimed=False,
        ),
        Hostile(
            "mode-empty", {"sstProvisioningMode": [""]}, "sstProvisioningMode", "''", claimed=False
        ),
        Hostile(
            "date-month-13",
            {"sstProvisioningExecutionDate": ["20261341"]},
            "sstProvisioningExecutionDate",
            "'20261341'",
            claimed=False,
        ),
        Hostile(
            "date-tomorrow",
            {"sstProvisioningExecutionDate": None, "sstProvisioningDate": ["tomorrow"]},
            "sstProvisioningDate",
            "'tomorrow'",
            claimed=False,
        ),
        Hostile(
            "return-value-text",
            {"sstProvisioningReturnValue": ["oops"]},
            "sstProvisioningReturnValue",
            "'oops'",
            claimed=False,
        ),
        # The account directory exists, but not as a directory (planted by `plant`).
        Hostile("dir-symlink", {}, None, f"{root}/h-dir-symlink: is a symbolic link"),
        Hostile("dir-file", {}, None, f"{root}/h-dir-file: is a regular file"),
        # Deletes are where a bad path would do the most harm.
        Hostile("delete-dotdot", {"uid": [".."]}, "uid", "'..'", mode="delete"),
        Hostile("delete-dot", {"uid": ["."]}, "uid", "'.'", mode="delete"),
        Hostile(
            "delete-home-outside",
            {"homeDirectory": [f"{decoy}/chroot/./home/x"]},
            "homeDirectory",
            f"'{decoy}/chroot/./home/x'",
            mode="delete",
        ),
        Hostile(
            "delete-dir-symlink",
            {},
            None,
            f"{root}/h-delete-dir-symlink: is a symbolic link",
            mode="delete",
        ),
        Hostile("delete-uidnumber-root", {"uidNumber": ["0"]}, "uidNumber", "'0'", mode="delete"),
    ]
    return items


def hostile_entry(item: Hostile, base_dn: str, index: int) -> tuple[str, dict[str, list[str]]]:
    """Build the LDAP entry of ``item`` (RDN cn=<uid>, so any uid value can be tried)."""
    dn, attributes = account_entry(
        item.uid, base_dn=base_dn, uid_number=6000 + index, mode=item.mode
    )
    dn = f"cn={item.uid},{base_dn}"
    attributes["cn"] = [item.uid]
    for name, values in item.changes.items():
        for existing in [key for key in attributes if key.lower() == name.lower()]:
            del attributes[existing]
        if values is not None:
            attributes[name] = values
    # slapadd -s skips the schema, and with it this operational attribute, without
    # which slapd refuses every later modify of the entry.
    attributes["structuralObjectClass"] = ["account"]
    return dn, attributes


def outside_fingerprint(tmp_path: Path) -> dict[str, tuple]:
    """Everything around the backup root: the test's directory minus what a run writes,
    and a shallow look at /etc (names, types, owners, modes, times)."""
    prints = {
        path: value
        for path, value in fingerprint(tmp_path).items()
        if path.split(os.sep)[0] not in UNCHANGED_OUTSIDE
    }
    for name in sorted(os.listdir("/etc")):
        info = os.lstat(os.path.join("/etc", name))
        prints[f"/etc/{name}"] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
    return prints


def make_decoy(tmp_path: Path) -> Path:
    """A directory outside the backup root that hostile input points at."""
    decoy = tmp_path / "decoy"
    (decoy / "daily.0").mkdir(parents=True)
    (decoy / "secret.txt").write_text("not the customer's\n")
    os.chmod(decoy / "secret.txt", 0o600)
    os.chmod(decoy, 0o700)
    return decoy


def line_of(output: str, dn: str) -> str:
    """The one output line about ``dn``."""
    lines = [line for line in output.splitlines() if dn in line]
    assert len(lines) == 1, (dn, lines)
    return lines[0]


def test_a_corpus_of_bad_entries_fails_entry_by_entry_and_touches_nothing_outside(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server, "[backup]\nlayout = flat\n")
    root = setup.root
    decoy = make_decoy(tmp_path)
    items = corpus(root, decoy)
    assert len(items) >= 40
    # What the corpus finds on disk: an account directory that is a symlink or a file,
    # a symlink the "through a symlink" homeDirectory goes through.
    for name in ("h-dir-symlink", "h-delete-dir-symlink", "escape"):
        (root / name).symlink_to(decoy)
    (root / "h-dir-file").write_text("a file where an account directory should be\n")
    base = ldap_server.accounts_dn
    good = [
        account_entry(uid, base_dn=base, uid_number=5001 + index) for index, uid in enumerate(GOOD)
    ]
    bad = [hostile_entry(item, base, index) for index, item in enumerate(items)]
    load_offline(ldap_server, bad)
    ldap_server.add_entries(good)
    inside_before = fingerprint(root)
    outside_before = outside_fingerprint(tmp_path)

    result = run(setup, "process")
    assert result.code == 1
    assert f"{len(GOOD)} done, {len(items)} failed, 0 skipped" in result.out
    status = json.loads(setup.status_file.read_text())
    by_dn = {entry["dn"]: entry for entry in status["entries"]}
    for (dn, _), item in zip(bad, items, strict=True):
        line = line_of(result.out, dn)
        assert line.startswith("failed"), line
        # The message names the attribute and quotes the value (control characters
        # escaped), on stdout, in the status file and in the error log.
        named = item.shown if item.attribute is None else f"{item.attribute}: {item.shown}"
        assert named in line, line
        assert by_dn[dn]["outcome"] == "failed"
        assert item.shown in by_dn[dn]["message"]
        assert any(dn in error and item.shown in error for error in result.err.splitlines())
        entry = read_entry(ldap_server, dn)
        if item.claimed:
            assert entry["sstprovisioningmode"] == [
                {"add": "adding", "delete": "deleting"}[item.mode]
            ]
            assert entry["sstprovisioningreturnvalue"][0] not in ("", "0"), dn
        else:
            assert "adding" not in entry.get("sstprovisioningmode", []), dn
        assert entry["sstprovisioningstate"] == ["0"], dn
    for dn, _ in good:
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]
    # No output line is split by a newline, and no terminal escape reaches the terminal.
    assert "\x1b" not in result.out + result.err
    assert "\0" not in result.out + result.err
    for line in result.err.splitlines():
        assert re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL): ", line), line
    # Inside the root: the good accounts appeared, all planted things are as they were.
    inside_after = fingerprint(root)
    new = {path for path in inside_after if path not in inside_before}
    assert {path.split(os.sep)[0] for path in new} == set(GOOD)
    assert {path: inside_after[path] for path in inside_before} == inside_before
    assert outside_fingerprint(tmp_path) == outside_before

    # Failed entries are not retried by the next run. An unclaimable one is reported
    # once and recorded (return value 10); only those the server refuses even that
    # (they break its schema) are reported again. Nothing is done for any of them.
    again = run(setup, "process")
    unclaimed = {dn for (dn, _), item in zip(bad, items, strict=True) if not item.claimed}
    recorded = {dn for dn in unclaimed if "recorded as return value 10" in line_of(result.out, dn)}
    unrecordable = unclaimed - recorded
    assert {"h-mode-remove", "h-mode-frobnicate", "h-date-month-13"} <= {
        dn.split(",")[0].removeprefix("cn=") for dn in recorded
    }
    for dn in recorded:
        assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["10"], dn
    reported = {dn for dn in by_dn if dn in again.out}
    assert reported == unrecordable
    assert f"0 done, {len(unrecordable)} failed" in again.out
    assert fingerprint(root) == inside_after


# -- symlinks a user plants in their home ------------------------------------------


PLANTS = {
    # name: (what is planted, outcome of a modify: None = done, else the path named)
    "etc-link": ("incoming/etc -> /etc", None),
    "decoy-link": ("incoming/decoy -> decoy", None),
    "hard-link": ("incoming/secret.txt = hard link of decoy/secret.txt", None),
    "snapshots-link": (".snapshots -> decoy", ".snapshots"),
    "incoming-link": ("incoming -> decoy", "incoming"),
    "ssh-link": (".ssh -> decoy", ".ssh"),
}


def plant(home: Path, kind: str, decoy: Path) -> None:
    """Plant ``kind`` (a key of PLANTS) in the user's ``home``."""
    if kind == "etc-link":
        (home / "incoming" / "etc").symlink_to("/etc")
    elif kind == "decoy-link":
        (home / "incoming" / "decoy").symlink_to(decoy)
    elif kind == "hard-link":
        os.link(decoy / "secret.txt", home / "incoming" / "secret.txt")
    else:
        name = {"snapshots-link": ".snapshots", "incoming-link": "incoming", "ssh-link": ".ssh"}[
            kind
        ]
        os.rmdir(home / name)
        (home / name).symlink_to(decoy)


def provisioned_with_plants(
    tmp_path: Path, server: Slapd, extra: str = ""
) -> tuple[Setup, Path, dict[str, str]]:
    """Add one account per plant, plant it; returns setup, decoy and uid → DN."""
    setup = write_config(tmp_path, server, "[backup]\nlayout = flat\n" + extra)
    decoy = make_decoy(tmp_path)
    dns = {}
    for index, kind in enumerate(PLANTS):
        dn, attributes = account_entry(
            f"p-{kind}", base_dn=server.accounts_dn, uid_number=7001 + index
        )
        server.add_entries([(dn, attributes)])
        dns[kind] = dn
    assert run(setup, "process").code == 0
    for kind in PLANTS:
        plant(setup.root / f"p-{kind}" / "chroot" / "home" / f"p-{kind}", kind, decoy)
    return setup, decoy, dns


def request(server: Slapd, dn: str, mode: str, **attributes: list[str]) -> None:
    """Put a request on ``dn`` as the web shop would."""
    modify_entry(
        server, dn, {"sstProvisioningMode": [mode], "sstProvisioningState": ["0"], **attributes}
    )


def test_planted_symlinks_never_lead_a_modify_outside_the_account(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup, decoy, dns = provisioned_with_plants(tmp_path, ldap_server)
    decoy_before = fingerprint(decoy)
    decoy_owner = os.lstat(decoy)
    etc_before = outside_fingerprint(tmp_path)
    for dn in dns.values():
        # Deactivation chowns incoming/ to root and changes its mode: the most
        # dangerous modify to have follow a link.
        request(ldap_server, dn, "modify", sstIsActive=["FALSE"], sstQuota=["5000"])

    result = run(setup, "process")

    for kind, (_, named) in PLANTS.items():
        line = line_of(result.out, dns[kind])
        if named is None:
            assert line.startswith("done"), line
        else:
            assert line.startswith("failed"), line
            assert f"/p-{kind}/chroot/home/p-{kind}/{named}: is a symbolic link" in line
            assert read_entry(ldap_server, dns[kind])["sstprovisioningreturnvalue"] == ["11"]
    assert fingerprint(decoy) == decoy_before
    assert (os.lstat(decoy).st_uid, os.lstat(decoy).st_mode) == (
        decoy_owner.st_uid,
        decoy_owner.st_mode,
    )
    assert outside_fingerprint(tmp_path) == etc_before
    incoming = setup.root / "p-etc-link" / "chroot" / "home" / "p-etc-link" / "incoming"
    assert os.readlink(incoming / "etc") == "/etc", "the user's link is left as it is"
    # show reads no further than the link either: the decoy's daily.0 is not reported.
    shown = json.loads(run(setup, "show", "--json", "p-snapshots-link").out)[0]["server"]
    assert shown["newest_snapshot"] is None
    assert shown["entries"]["snapshots"]["type"] == "symbolic link"


@pytest.mark.parametrize("quarantine_days", [0, 7])
def test_planted_symlinks_never_lead_a_delete_outside_the_account(
    tmp_path: Path, ldap_server: Slapd, quarantine_days: int
) -> None:
    setup, decoy, dns = provisioned_with_plants(
        tmp_path, ldap_server, f"[delete]\nquarantine_days = {quarantine_days}\n"
    )
    decoy_before = fingerprint(decoy)
    etc_before = outside_fingerprint(tmp_path)
    for dn in dns.values():
        request(ldap_server, dn, "delete")

    result = run(setup, "process")

    assert result.code == 0, result.out + result.err
    assert fingerprint(decoy) == decoy_before
    assert (decoy / "secret.txt").read_text() == "not the customer's\n"
    assert outside_fingerprint(tmp_path) == etc_before
    assert sorted(os.listdir(setup.root)) == ([] if quarantine_days == 0 else [".deleted"])
    if quarantine_days:
        # The quarantined tree still holds the links as links.
        (moved,) = (setup.root / ".deleted").glob("p-etc-link.*")
        assert os.readlink(moved / "chroot/home/p-etc-link/incoming/etc") == "/etc"


# -- LDAP filter injection through arguments ---------------------------------------

INJECTIONS = (
    "*",
    "*)(uid=*",
    "i-1)(|(uid=*",
    "i-1)(sstProvisioningMode=*",
    "i-*",
    "\\2a",
    "i-1\0",
    "i-1)\0(uid=*",
)


def directory_state(server: Slapd, dns: list[str]) -> dict[str, dict[str, list[str]]]:
    """Every entry's attributes, to prove nothing changed."""
    return {dn: read_entry(server, dn) for dn in dns}


def test_filter_injection_through_arguments_finds_and_changes_nothing(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server, "[backup]\nlayout = flat\n")
    entries = [
        account_entry(
            "i-1",
            base_dn=ldap_server.accounts_dn,
            uid_number=8001,
            mode="added",
            state="20260101T000000Z",
        ),
        account_entry(
            "i-2",
            base_dn=ldap_server.accounts_dn,
            uid_number=8002,
            mode="adding",
            extra={"sstProvisioningReturnValue": ["20"]},
        ),
        account_entry("i-3", base_dn=ldap_server.accounts_dn, uid_number=8003),
    ]
    ldap_server.add_entries(entries)
    dns = [dn for dn, _ in entries]
    before = directory_state(ldap_server, dns)

    for hostile in INJECTIONS:
        for arguments in (
            ("show", hostile),
            ("show", "--json", hostile),
            ("reset", "--uid", hostile),
            ("reset", "--uid", hostile, "--mode", "delete", "--force"),
            ("process", "--uid", hostile),
        ):
            result = run(setup, *arguments)
            if arguments[0] == "process":
                assert result.out == "", (arguments, result.out)
            assert result.code == 1, (arguments, result.out)
            assert "no provisioned entry" in result.err, arguments
    for hostile_dn in (
        f"uid=*,{ldap_server.accounts_dn}",
        f"uid=i-1)(uid=*,{ldap_server.accounts_dn}",
        ldap_server.accounts_dn,
    ):
        # Not found (1), or not even a DN (2).
        assert run(setup, "show", "--dn", hostile_dn).code in (1, 2), hostile_dn
        reset = run(setup, "reset", "--dn", hostile_dn, "--mode", "delete", "--force")
        assert reset.code in (1, 2), hostile_dn
        assert run(setup, "process", "--dn", hostile_dn).out == "", hostile_dn

    assert directory_state(ldap_server, dns) == before
    assert not any(setup.root.iterdir()), "no account was created"
    # The same commands with the real uid do work: the refusals above were not
    # just a broken command.
    assert run(setup, "show", "i-1").code == 0
    assert run(setup, "reset", "--uid", "i-2").code == 0
    assert read_entry(ldap_server, dns[1])["sstprovisioningmode"] == ["add"]


def test_a_dn_with_a_newline_cannot_forge_log_or_output_lines(
    tmp_path: Path, ldap_server: Slapd
) -> None:
    setup = write_config(tmp_path, ldap_server, "[backup]\nlayout = flat\n")
    forged = "ERROR: uid 4711: add failed"
    dn, attributes = account_entry("n-1", base_dn=ldap_server.accounts_dn, uid_number=8101)
    dn = f"cn=x\n{forged}\r\x1b[1A,{ldap_server.accounts_dn}"
    attributes["cn"] = [f"x\n{forged}\r\x1b[1A"]
    attributes["structuralObjectClass"] = ["account"]
    load_offline(ldap_server, [(dn, attributes)])

    results = [run(setup, "scan"), run(setup, "-v", "process"), run(setup, "show", "n-1")]

    assert results[1].code == 0, results[1].err
    assert os.path.isdir(setup.root / "n-1")
    for result in results:
        text = result.out + result.err
        assert "\x1b" not in text and "\r" not in text
        assert not any(line.startswith(forged) for line in text.splitlines()), text
        assert "\\n" + forged in text, "the DN is shown, its newline escaped"
    for line in results[1].err.splitlines():
        assert re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL): ", line), line
