"""Who holds an account, and what each server may claim (provbackup.locality, pure)."""

from __future__ import annotations

import dataclasses

import pytest
from support import make_config

from provbackup import locality
from provbackup.errors import UsageError
from provbackup.ldapentry import LdapEntry
from provbackup.model import Operation, Verb

CONFIG = make_config()
HERE = dataclasses.replace(CONFIG, backup=dataclasses.replace(CONFIG.backup, server_name="b1"))


def entry(*hosts: str) -> LdapEntry:
    values = {"uid": ["3723707"], **({"host": list(hosts)} if hosts else {})}
    return LdapEntry.from_values("uid=3723707,dc=x", values)


def test_the_directory_decides_where_it_names_a_server() -> None:
    assert locality.holder(entry("B1"), HERE, tree_here=False).holder is locality.Holder.THIS
    other = locality.holder(entry("b2"), HERE, tree_here=True)
    assert other.holder is locality.Holder.OTHER and other.shown == "held by another server (b2)"
    assert locality.holder(entry("b2", "b1"), HERE, tree_here=False).holder is locality.Holder.THIS


def test_without_a_name_the_disk_decides() -> None:
    assert locality.holder(entry(), HERE, tree_here=True).holder is locality.Holder.THIS
    none = locality.holder(entry(), HERE, tree_here=False)
    assert none.holder is locality.Holder.NONE and none.shown == "held by no server"


@pytest.mark.parametrize("verb", list(Verb))
def test_only_an_add_is_claimed_when_no_server_holds_it(verb: Verb) -> None:
    none = locality.holder(entry(), HERE, tree_here=False)
    refused = locality.may_claim(verb, none)
    assert (refused is None) is (verb is Verb.ADD)
    other = locality.holder(entry("b2"), HERE, tree_here=False)
    assert "held by another server (b2)" in (locality.may_claim(verb, other) or "")
    mine = locality.holder(entry("b1"), HERE, tree_here=False)
    assert locality.may_claim(verb, mine) is None


def test_an_add_records_this_server_and_a_delete_removes_it() -> None:
    assert locality.claim_extra(Verb.ADD, entry(), HERE) == {"host": [(Operation.ADD, ["b1"])]}
    assert locality.claim_extra(Verb.ADD, entry("b1"), HERE) == {}
    assert locality.claim_extra(Verb.DELETE, entry(), HERE) == {}
    assert locality.release_changes(entry("B1", "x"), HERE) == {
        "host": [(Operation.DELETE, ["B1"])]
    }
    assert locality.release_changes(entry("x"), HERE) == {}


def test_an_empty_server_attribute_records_nothing() -> None:
    off = dataclasses.replace(HERE, ldap=dataclasses.replace(HERE.ldap, server_attribute=""))
    assert locality.holder(entry("b2"), off, tree_here=True).holder is locality.Holder.THIS
    assert locality.claim_extra(Verb.ADD, entry(), off) == {}
    with pytest.raises(UsageError):
        locality.take_over_changes(off)
    assert locality.take_over_changes(HERE) == {"host": [(Operation.REPLACE, ["b1"])]}
