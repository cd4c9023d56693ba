"""The LDAP filters of the commands: which entries each one asks the server for.

Date and mode are checked by the client (:mod:`provbackup.state`): the
stoney schema gives sstProvisioningExecutionDate no ORDERING rule, so the
server cannot compare dates.
"""

from __future__ import annotations

from provbackup.ldapnames import escape
from provbackup.model import MODE, STATE, Verb


def request_filter(user_filter: str | None) -> str:
    """The filter of entries ``process`` may work on: state 0, not in progress."""
    in_progress = "".join(f"({MODE}={verb.in_progress})" for verb in Verb)
    return f"(&({STATE}=0)(!(|{in_progress})){user_filter or ''})"


def attention_filter(user_filter: str | None) -> str:
    """The filter of every entry needing attention: all entries in state 0."""
    return f"(&({STATE}=0){user_filter or ''})"


def account_filter(user_filter: str | None, uid: str | None = None) -> str:
    """The filter of provisioned accounts, optionally one ``uid`` (escaped here)."""
    uid_part = f"(uid={escape(uid)})" if uid is not None else ""
    return f"(&({MODE}=*){uid_part}{user_filter or ''})"
