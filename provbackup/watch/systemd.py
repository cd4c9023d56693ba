"""sd_notify(3) in a few lines: one datagram to ``$NOTIFY_SOCKET``, no new dependency."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> None:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ...) to systemd; nothing without a socket.

    An abstract socket (``@name``) is supported; a failure to send is
    logged at debug level and never raised.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.connect(target)
            sender.sendall(message.encode())
    except OSError as error:
        log.debug("sd_notify %r: %s", message, error)


def watchdog_seconds() -> float | None:
    """The watchdog interval systemd asks for (``$WATCHDOG_USEC`` for this process), or None."""
    value = os.environ.get("WATCHDOG_USEC", "")
    owner = os.environ.get("WATCHDOG_PID", "")
    if not value.isdigit() or (owner and owner != str(os.getpid())):
        return None
    return int(value) / 1_000_000 or None
