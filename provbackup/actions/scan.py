"""``scan``: list every entry needing attention, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provbackup import state
from provbackup.actions.common import Clock, local_today, utc_now
from provbackup.actions.holding import held_by
from provbackup.config import Config
from provbackup.directory import connect
from provbackup.entry import read_request
from provbackup.filters import attention_filter
from provbackup.lock import lock_is_held
from provbackup.model import Request
from provbackup.reasons import read_reasons, reason_for, reasons_file


@dataclass(frozen=True)
class ScanRow:
    """One entry needing attention and how it stands."""

    uid: str | None
    mode: str | None
    date: str
    status: state.Status
    return_value: int | None
    dn: str
    problem: str | None
    held: str | None = None  # "held by another server (backup2)", ...: who holds the account

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {
            "uid": self.uid,
            "mode": self.mode,
            "date": self.date,
            "status": str(self.status),
            "return_value": self.return_value,
            "dn": self.dn,
            "problem": self.problem,
            "held": self.held,
        }


def row_of(
    request: Request, status: state.Status, reason: str | None = None, held: str | None = None
) -> ScanRow:
    """Build the row shown for ``request``; ``reason`` is its recorded failure reason,
    ``held`` who holds its account."""
    return ScanRow(
        uid=request.uid,
        mode=request.mode,
        date=request.date.strftime("%Y%m%d") if request.date else "0",
        status=status,
        return_value=request.return_value,
        dn=request.dn,
        problem=request.problem or reason,
        held=held,
    )


def scan(config: Config, *, clock: Clock = utc_now) -> Iterator[ScanRow]:
    """Yield a row for every entry in state 0, streamed page by page.

    Takes the configuration and the clock. Raises LdapUnavailableError
    when the directory cannot be reached (also midway through the listing).
    """
    today = local_today(clock)
    run_active = lock_is_held(config.run.lock_file)
    reasons = read_reasons(reasons_file(config.run.status_file))
    with connect(config.ldap) as directory:
        for entry in directory.search(attention_filter(config.ldap.filter)):
            request = read_request(entry, config.ldap.date_attribute)
            status = state.classify(request, today, run_active)
            yield row_of(
                request, status, reason_for(reasons, request), held_by(entry, config).shown
            )
