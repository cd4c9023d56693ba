"""Behaviour kept, or fixed, by the performance work of issue 5 (docs/performance.md).

- ldap3 no longer re-parses DNs on the client (``check_names`` off): a
  ``--dn`` written with spaces after the commas, or in upper case, names the
  entry as slapd reads it, instead of failing as "LDAP unavailable".
- ``is_within`` and ``layout_directories`` were rewritten without building
  every parent Path: the same answers as the definitions they replace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import read_entry, run, write_config

from provbackup.paths import account_paths, is_within
from sandbox import account_entry


def _spaced(dn: str) -> str:
    return ", ".join(dn.split(","))


@pytest.mark.parametrize("written", [_spaced, str.upper], ids=["spaces", "upper case"])
def test_a_dn_written_differently_names_the_same_entry(tmp_path, ldap_server, written):
    setup = write_config(tmp_path, ldap_server)
    dn, attributes = account_entry("4100001", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    shown = run(setup, "show", "--dn", written(dn))
    assert shown.code == 0, shown.err
    assert "4100001" in shown.out
    processed = run(setup, "process", "--dn", written(dn))
    assert processed.code == 0, processed.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/var/backup", "/var/backup", True),
        ("/var/backup/7/707/723/3723707", "/var/backup", True),
        ("/var/backupx/7", "/var/backup", False),
        ("/var", "/var/backup", False),
        ("/srv/other", "/var/backup", False),
        ("/", "/var/backup", False),
        ("/var/backup/a", "/", True),
    ],
)
def test_is_within_says_whether_a_path_is_the_root_or_below_it(path, root, inside):
    assert is_within(Path(path), Path(root)) is inside


@pytest.mark.parametrize(
    ("layout", "uid", "expected"),
    [
        ("stoney", "3723707", ("7", "7/707", "7/707/723")),
        # Zero-padded to six digits first: 000007.
        ("stoney", "7", ("7", "7/007", "7/007/000")),
        ("flat", "alice", ()),
    ],
)
def test_layout_directories_are_the_account_parents_below_the_root(layout, uid, expected):
    paths = account_paths(Path("/var/backup"), layout, uid)
    assert paths.layout_directories == tuple(Path("/var/backup", part) for part in expected)
