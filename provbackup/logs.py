"""Configure logging once, at the entry point: stderr, and syslog when configured."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys

TAG = "provbackup"


def escape_control(text: str) -> str:
    """Return ``text`` with every non-printable character as a Python escape (``\\n``, ``\\x1b``).

    Directory values are hostile input: a newline in a DN would start a
    forged log line, an escape sequence would drive the operator's terminal.
    Printable text (the usual case) is returned unchanged.
    """
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else ascii(character)[1:-1] for character in text
    )


class LineFormatter(logging.Formatter):
    """``LEVEL: message``, the message kept on one line (see :func:`escape_control`).

    A traceback (``-v``) still follows on its own lines: it is ours, not the directory's.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (``--log-json``)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("dn", "uid", "action", "outcome"):
            if hasattr(record, key):
                document[key] = getattr(record, key)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, sort_keys=True)


def setup_logging(verbosity: int, *, json_lines: bool = False) -> None:
    """Send logs to stderr at a level set by ``-v``/``-q``.

    ``verbosity`` is 0 for warnings and the summary (info), each ``-v``
    adds detail, each ``-q`` removes it. Safe to call again (tests do).
    """
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        verbosity, logging.DEBUG if verbosity > 0 else logging.CRITICAL
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_provbackup", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._provbackup = True  # type: ignore[attr-defined]
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(LineFormatter())
    handler.setLevel(level)
    root.addHandler(handler)
    # The root level is the lowest any handler wants (add_syslog lowers it): a
    # record no handler takes is then never built. Under cron (-q) a burst would
    # otherwise build, and drop, two records per entry (docs/performance.md).
    root.setLevel(level)


def add_syslog(facility: str, level: str = "info", address: str = "/dev/log") -> None:
    """Also log to the syslog socket ``address`` with the tool's name as tag.

    Takes the facility name, the lowest level sent and the socket path. A
    missing socket (a container, a test machine) is reported on stderr once
    and otherwise ignored: logging must never stop a run.
    """
    logger = logging.getLogger(__name__)
    if not os.path.exists(address):
        logger.warning("syslog requested but %s does not exist", address)
        return
    try:
        handler = logging.handlers.SysLogHandler(
            address=address,
            facility=logging.handlers.SysLogHandler.facility_names[facility],
        )
    except OSError as error:
        logger.warning("cannot open syslog at %s: %s", address, error)
        return
    handler._provbackup = True  # type: ignore[attr-defined]
    handler.ident = f"{TAG}[{os.getpid()}]: "
    handler.setFormatter(LineFormatter())
    handler.setLevel(getattr(logging, level.upper()))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > handler.level:  # syslog wants what stderr was spared (-q)
        root.setLevel(handler.level)
