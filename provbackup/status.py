"""The status file: what the last ``process`` run did, for monitoring.

Written atomically (a temporary file in the same directory, fsync, then
rename), so a reader never sees half a file even if the run is killed. The
file holds DNs, errors and hook output: it is mode 0640, owned by root
(group root), set on the temporary file before the rename so the file is
never readable by others, not even for a moment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from provbackup.jsonfile import write_json

log = logging.getLogger(__name__)

STATUS_VERSION = 1
STATUS_MODE = 0o640


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace ``path`` with ``status`` as JSON, atomically (mode 0640, root).

    Failing to write is logged as an error and not raised: the work is done
    and recorded in LDAP; the status file only reports it.
    """
    write_json(path, {"version": STATUS_VERSION, **status}, STATUS_MODE, "the status file")


def read_status(path: Path) -> dict[str, Any] | None:
    """Return the last run's status, or None when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
