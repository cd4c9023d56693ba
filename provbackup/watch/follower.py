"""The follower's thread: one sync search at a time, reconnected with backoff, failing over.

:class:`Follower` runs in a daemon thread and tells the command's main
thread what happens through a queue of :class:`Event`: ``connected``,
``refreshed`` (the refresh of a new search is complete: everything that
changed while no search ran has been seen), ``due`` (an entry ``process``
would work on now, or an invalid request it would record), ``change``
(any other entry or delete), ``lost`` and ``refused``. It keeps nothing
between connections: each one begins with a full refresh.

After a connection that got through its refresh ends, the URIs are tried
again at once from the first; a round in which none could be followed is
followed by a wait that doubles from :data:`FIRST_DELAY` up to ``[watch]
retry_max``.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import date

from provbackup import state
from provbackup.config import Config
from provbackup.entry import READ_ATTRIBUTES, read_request
from provbackup.filters import request_filter
from provbackup.ldapentry import LdapEntry
from provbackup.watch.syncsearch import ConnectionLost, SearchRefused, close, follow, open_sync

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
POLL_SECONDS = 5.0  # how long one wait for a message lasts; a stop is seen within it


class Kind(enum.StrEnum):
    """What an :class:`Event` says."""

    CONNECTED = "connected"
    REFRESHED = "refreshed"
    DUE = "due"
    CHANGE = "change"
    LOST = "lost"
    REFUSED = "refused"


@dataclass(frozen=True)
class Event:
    """One thing the follower saw: its kind, a detail (a DN, a URI, an error), when (monotonic)."""

    kind: Kind
    detail: str
    at: float


def follow_uris(config: Config) -> tuple[str, ...]:
    """The URIs the follower follows: ``[watch] uri``, else ``[ldap] uri``."""
    return config.watch.uris or config.ldap.uris


class _Sink:
    """Classifies each entry the search sends (as ``process`` will) and queues an event."""

    def __init__(self, config: Config, events: queue.Queue[Event]) -> None:
        self.config = config
        self.events = events
        self.complete = False  # the current search's refresh is done

    def _put(self, kind: Kind, detail: str) -> None:
        self.events.put(Event(kind, detail, time.monotonic()))

    def entry(self, dn: str, attributes: dict[str, list[bytes]]) -> None:
        values = {
            name: [value.decode("utf-8", "replace") for value in found]
            for name, found in attributes.items()
        }
        request = read_request(LdapEntry.from_values(dn, values), self.config.ldap.date_attribute)
        status = state.classify(request, date.today())  # the local date, as process uses
        wanted = state.is_due(status) or status is state.Status.INVALID
        self._put(Kind.DUE if wanted else Kind.CHANGE, dn)

    def gone(self, count: int) -> None:
        self._put(Kind.CHANGE, f"{count} left the search")

    def refreshed(self) -> None:
        self.complete = True
        self._put(Kind.REFRESHED, "")


class Follower(threading.Thread):
    """Follow the configured base and filter, queueing :class:`Event` values, until stopped.

    Takes the configuration and the queue. :meth:`stop` asks it to end; it
    does within :data:`POLL_SECONDS` (it is a daemon thread: it never
    holds a process exiting).
    """

    def __init__(self, config: Config, events: queue.Queue[Event]) -> None:
        super().__init__(name="provbackup-watch-follower", daemon=True)
        self.config = config
        self.events = events
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end (it closes its connection)."""
        self._stopping.set()

    def _put(self, kind: Kind, detail: str) -> None:
        self.events.put(Event(kind, detail, time.monotonic()))

    def run(self) -> None:
        """Follow until stopped: every URI in turn, then back off; never raises."""
        delay = FIRST_DELAY
        sink = _Sink(self.config, self.events)
        search_filter = request_filter(self.config.ldap.filter)
        attributes = list(READ_ATTRIBUTES)
        while not self._stopping.is_set():
            followed = False
            for uri in follow_uris(self.config):
                if self._stopping.is_set():
                    return
                try:
                    connection = open_sync(self.config.ldap, uri, sink)
                except (ConnectionLost, SearchRefused) as error:
                    self._lost(error)
                    continue
                self._put(Kind.CONNECTED, uri)
                sink.complete = False
                try:
                    follow(connection, self.config.ldap, search_filter, attributes,
                           self._stopping.is_set, POLL_SECONDS)  # fmt: skip
                except (ConnectionLost, SearchRefused) as error:
                    self._lost(error)
                except Exception as error:  # a bug must not end the thread silently
                    log.exception("the follower's search failed")
                    self._put(Kind.LOST, f"{uri}: internal error: {error}")
                finally:
                    close(connection)
                if sink.complete:
                    followed = True
                    delay = FIRST_DELAY
                    break  # start again from the first URI, at once
            if not followed and self._stopping.wait(delay):
                return
            if not followed:
                delay = min(delay * 2, self.config.watch.retry_max)

    def _lost(self, error: Exception) -> None:
        kind = Kind.REFUSED if isinstance(error, SearchRefused) else Kind.LOST
        self._put(kind, str(error))
