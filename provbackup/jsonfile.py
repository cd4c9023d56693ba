"""One way to replace a small root-owned JSON file atomically.

The status file, the failure reasons and the lasting-fault record all go
through :func:`write_json`: a temporary file in the same directory, owned
by root and given its final mode before anything is written into it, then
fsync and rename. A reader never sees half a file, even if the run is
killed, and the file is never readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_json(path: Path, data: Any, mode: int, what: str) -> bool:
    """Replace ``path`` with ``data`` as indented JSON, atomically.

    Takes the file's ``path``, the JSON-serialisable ``data``, its ``mode``
    (e.g. 0o640) and ``what`` it is, for the error message. Returns True
    when the file was replaced; a failure to write is logged as an error
    naming ``what`` and returns False, never raises OSError: these files
    report work that is already done and recorded in LDAP.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent)
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                if os.geteuid() == 0:
                    os.fchown(handle.fileno(), 0, 0)
                os.fchmod(handle.fileno(), mode)
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        log.error("cannot write %s %s: %s", what, path, error.strerror or error)
        return False
    return True
