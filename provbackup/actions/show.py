"""``show``: one account's provisioning attributes and what is on the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from provbackup import state, work
from provbackup.actions.common import Clock, find_entries, local_today, utc_now
from provbackup.actions.holding import held_by
from provbackup.config import Config
from provbackup.directory import connect
from provbackup.engines import select_engine
from provbackup.entry import LdapEntry, read_request
from provbackup.errors import EntryError
from provbackup.lock import lock_is_held
from provbackup.reasons import read_reasons, reason_for, reasons_file


@dataclass(frozen=True)
class AccountView:
    """What ``show`` reports about one entry."""

    dn: str
    provisioning: dict[str, Any]
    server: dict[str, Any]
    warnings: dict[str, Any] = field(default_factory=dict)  # customer warnings (notify)

    def as_dict(self) -> dict[str, Any]:
        """The view as JSON-ready values."""
        return {"dn": self.dn, "provisioning": self.provisioning, "server": self.server,
                "warnings": self.warnings}  # fmt: skip


def show(
    config: Config, *, uid: str | None = None, dn: str | None = None, clock: Clock = utc_now
) -> list[AccountView]:
    """Describe the entries named by ``uid`` or ``dn``.

    Returns one :class:`AccountView` per matching entry. Raises
    NotFoundError (exit 1) when there is none, UsageError for a DN outside
    the base, LdapUnavailableError.
    """
    run_active = lock_is_held(config.run.lock_file)
    with connect(config.ldap) as directory:
        entries = find_entries(directory, config, dn=dn, uid=uid)
    today = local_today(clock)
    return [_view(entry, config, today, run_active) for entry in entries]


def _view(entry: LdapEntry, config: Config, today: date, run_active: bool) -> AccountView:
    request = read_request(entry, config.ldap.date_attribute)
    status = state.classify(request, today, run_active)
    provisioning: dict[str, Any] = {
        "uid": request.uid,
        "status": str(status),
        "mode": request.mode,
        "state": request.state,
        "date attribute": request.date_attribute,
        "date": request.date.strftime("%Y%m%d") if request.date else "0",
        "return value": request.return_value,
        "uidNumber": _one(entry, "uidNumber"),
        "gidNumber": _one(entry, "gidNumber"),
        "homeDirectory": _one(entry, "homeDirectory"),
        "sstQuota": _one(entry, "sstQuota"),
        "sstIsActive": _one(entry, "sstIsActive"),
    }
    problem = request.problem or reason_for(
        read_reasons(reasons_file(config.run.status_file)), request
    )
    if problem:
        provisioning["problem"] = problem
    try:
        engine = select_engine(config)
        server = work.inspect_entry(entry, config, engine=engine.title, inspect=engine.inspect)
    except EntryError as error:
        server = {"error": str(error)}
    # Where the account lives (README 'Many backup servers, one directory').
    where = held_by(entry, config)
    server = {"held": f"{where.shown}: {where.reason}", **server}
    from provbackup.customer.view import warnings_view

    return AccountView(entry.dn, provisioning, server, warnings_view(entry, request.uid, config))


def _one(entry: LdapEntry, name: str) -> str | None:
    values = entry.values(name)
    return ", ".join(values) if values else None
