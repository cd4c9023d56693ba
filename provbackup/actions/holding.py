"""Keep the due entries this backup server may claim (many servers, one directory).

See :mod:`provbackup.locality` for who holds an account. A modify or
delete of an account another server holds is left to that server (logged
at debug level, no outcome: it is not this server's work); one no server
holds is reported skipped with the reason, every run, until an operator
decides; an add another server holds is left alone too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from provbackup import locality, work
from provbackup.actions.entrywork import Due
from provbackup.config import Config
from provbackup.entry import LdapEntry
from provbackup.errors import EntryError
from provbackup.model import Outcome
from provbackup.outcomes import EntryOutcome
from provbackup.paths import account_paths

log = logging.getLogger(__name__)


def locality_of(item: Due, config: Config) -> locality.Locality:
    """Who holds ``item``'s account, reading this server's disk read-only.

    An entry the gate refused is treated as if its tree were here: it is
    claimed and failed with its reason, as before, unless the directory
    names another server.
    """
    tree_here = item.account is None or work.account_directory_exists(item.account.paths)
    return locality.holder(item.entry, config, tree_here=tree_here)


def held_by(entry: LdapEntry, config: Config) -> locality.Locality:
    """Who holds ``entry``'s account, for scan and show (read-only; never raises).

    An entry whose uid names no account directory counts as having none here.
    """
    try:
        uid = entry.single("uid")
        paths = account_paths(config.backup.root, config.backup.layout, uid)
    except EntryError:
        return locality.holder(entry, config, tree_here=False)
    return locality.holder(entry, config, tree_here=work.account_directory_exists(paths))


def keep_held(due: list[Due], config: Config, record: Callable[[EntryOutcome], None]) -> list[Due]:
    """Return the entries of ``due`` this server may claim; report the rest as above."""
    kept: list[Due] = []
    for item in due:
        where = locality_of(item, config)
        refusal = locality.may_claim(item.verb, where)
        if refusal is None:
            kept.append(item)
        elif where.holder is locality.Holder.OTHER:
            log.debug("%s: %s", item.dn, refusal)
        else:
            log.warning("%s: %s", item.dn, refusal)
            record(EntryOutcome(item.dn, item.request.uid, item.verb, Outcome.SKIPPED, refusal))
    return kept
