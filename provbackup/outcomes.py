"""The result types shared across layers: what happened to one entry.

Below ``actions/``, ``reasons.py``, ``notify.py`` and ``output.py`` so
that none of them imports upward: the entry worker produces an
:class:`EntryOutcome`, the run's report (:mod:`provbackup.actions.report`)
collects them, and the reasons file, the failure mail and the output lines
read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provbackup.model import Outcome, Verb


@dataclass
class EntryOutcome:
    """What happened to one entry: its verb (add/modify/delete, None if unknown) and outcome."""

    dn: str
    uid: str | None
    verb: Verb | None
    outcome: Outcome
    message: str = ""
    return_value: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The entry as the status file holds it (the verb under its public name ``action``)."""
        return {
            "dn": self.dn,
            "uid": self.uid,
            "action": None if self.verb is None else self.verb.value,
            "outcome": self.outcome.value,
            "message": self.message,
            "return_value": self.return_value,
            "seconds": self.seconds,
        }
