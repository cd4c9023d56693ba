"""``scan --warnings``: the accounts whose customer warnings cannot go out, read-only.

The same two gates as ``notify``: an entry is a warned account when
:func:`warned_account` admits it (provisioned, not being deleted, its
account readable through :func:`provbackup.entry.read_account`, active),
and its warning attributes are read by
:func:`provbackup.warnentry.read_warnings`. Each unusable value is one
row naming the entry, the attribute and the value; where the settings are
usable but the last attempt to send a warning failed (the record of
:mod:`provbackup.customer.records` holds its error), that is one row too,
and so is a record ``notify`` cannot use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provbackup.actions.common import search_named
from provbackup.config import Config
from provbackup.customer.records import RecordError, load_record, record_path
from provbackup.entry import LdapEntry, Rules, read_account, read_request
from provbackup.errors import EntryError
from provbackup.model import Account, Phase, Verb
from provbackup.warnentry import WarnSettings, read_warnings

log = logging.getLogger(__name__)

# Where each medium's address is read from (the attribute a failed send names).
ADDRESS_ATTRIBUTE = {"mail": "mail", "sms": "mobileTelephoneNumber"}


@dataclass(frozen=True)
class WarningRow:
    """One reason an account's warnings cannot go out: entry, attribute, value, why."""

    uid: str
    dn: str
    attribute: str
    value: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {
            "uid": self.uid,
            "dn": self.dn,
            "attribute": self.attribute,
            "value": self.value,
            "problem": self.problem,
        }


def warned_account(entry: LdapEntry, config: Config, rules: Rules) -> Account | None:
    """The account ``notify`` warns for ``entry``, or None when it warns none.

    Takes the entry, the configuration and the gate's rules; returns the
    Account of a provisioned (not deleted), active entry the gate admits;
    raises nothing (an entry the gate refuses is ``scan``'s and ``show``'s).
    """
    request = read_request(entry, config.ldap.date_attribute)
    if request.phase is not Phase.DONE or request.verb is Verb.DELETE:
        return None
    try:
        account = read_account(entry, Verb.MODIFY, rules)
    except EntryError as error:
        log.debug("%s: not an account notify can read: %s", entry.dn, error)
        return None
    return account if account.active else None


def warning_rows(config: Config) -> Iterator[WarningRow]:
    """Yield a row for every reason a warned account's warnings cannot go out.

    Takes the configuration; streams the accounts page by page; raises
    LdapUnavailableError (69) when the directory cannot be reached.
    """
    from provbackup.directory import connect

    rules = Rules.from_config(config)
    with connect(config.ldap) as directory:
        for entry in search_named(directory, config, dn=None, uid=None):
            account = warned_account(entry, config, rules)
            if account is not None:
                yield from rows_of(entry.dn, account.uid, read_warnings(entry), config)


def rows_of(dn: str, uid: str, settings: WarnSettings, config: Config) -> Iterator[WarningRow]:
    """The rows of one account: each fault, else each recorded failed send.

    Takes the entry's DN, the uid, its warning settings and the
    configuration (where the records are); raises nothing. An unusable
    record is a row too (attribute ``-``, the file as its value): ``notify``
    leaves that account alone, so no warning of it goes out.
    """
    for fault in settings.faults:
        yield WarningRow(uid, dn, fault.attribute, fault.value, fault.message)
    path = record_path(config, uid)
    try:
        record = load_record(path, uid, None)
    except RecordError as error:
        yield WarningRow(uid, dn, "-", str(path), f"{error}: notify sends this account nothing")
        return
    if settings.faults or settings.medium is None:
        return
    for key, state in sorted(record.conditions.items()):
        if state.error:
            yield WarningRow(
                uid, dn, ADDRESS_ATTRIBUTE[settings.medium], settings.address,
                f"{key}: the last warning was not sent: {state.error}",
            )  # fmt: skip
