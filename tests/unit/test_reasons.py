"""reasons.json: the reason of a failed or interrupted entry, kept until the entry changes."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

from provbackup.model import Outcome, Request, Verb
from provbackup.outcomes import EntryOutcome
from provbackup.reasons import read_reasons, reason_for, reasons_file, remember

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DN = "uid=4200001,ou=accounts,dc=example,dc=org"


def request(mode: str, return_value: int | None, state: str = "0", dn: str = DN) -> Request:
    return Request(dn, "4200001", mode, state, "sstProvisioningExecutionDate", None, return_value)


def test_an_interrupted_entry_keeps_its_reason_while_it_stays_interrupted(tmp_path):
    path = reasons_file(tmp_path / "status.json")
    message = "LDAP was lost while claiming it"
    remember(path, [EntryOutcome(DN, "4200001", Verb.ADD, Outcome.INTERRUPTED, message)], NOW)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reasons = read_reasons(path)
    # The DN as the server may spell it, with other case and spaces.
    shown = reason_for(reasons, request("adding", None, dn=DN.upper().replace(",", ", ")))
    assert shown is not None and shown.startswith(message)
    for changed in (request("add", None), request("adding", 20), request("adding", None, "x")):
        assert reason_for(reasons, changed) is None, changed


def test_a_failure_replaces_the_reason_and_a_finished_entry_drops_it(tmp_path):
    path = reasons_file(tmp_path / "status.json")
    remember(path, [EntryOutcome(DN, "4200001", Verb.DELETE, Outcome.FAILED, "quota", 40)], NOW)
    assert reason_for(read_reasons(path), request("deleting", 40)).startswith("quota")
    # Failures that left nothing in LDAP (no return value) are not kept.
    other = "uid=4200002,ou=accounts,dc=example,dc=org"
    remember(path, [EntryOutcome(other, "4200002", Verb.ADD, Outcome.FAILED, "claim refused")], NOW)
    assert set(read_reasons(path)) == {DN.lower()}
    remember(path, [EntryOutcome(DN, "4200001", Verb.DELETE, Outcome.DONE, "")], NOW)
    assert read_reasons(path) == {}


def test_an_unreadable_file_shows_no_reason(tmp_path):
    path = reasons_file(tmp_path / "status.json")
    path.write_text("{not json")
    assert read_reasons(path) == {}
