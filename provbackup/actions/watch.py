"""``watch``: follow the directory and run ``process`` batches when due entries appear.

:func:`watch` is the follower's main loop. A :class:`~provbackup.watch.follower.Follower`
thread keeps one refreshAndPersist search open and queues what it sees;
this loop, in the main thread, runs :func:`provbackup.actions.process.process`
(the same batch code as the timer's ``process``, a full selection through
the gate, the CAS claim deciding) under the run lifecycle's lock, one batch
at a time:

- after every refresh (each (re)connection: what changed while no search
  ran is found by the batch's own selection);
- when a due entry (or an invalid request) arrives; whatever arrives while
  a batch runs waits for the next one, so a burst is worked in a few large
  batches, never one process start per entry;
- at local midnight (entries scheduled for the new day), without a change.

A batch that fails as a whole (LDAP gone: 69, a fault: 78/79, the lock
held by the timer's run for more than 10 s: 75) is recorded by the lifecycle as a ``process``
run would be and tried again after a backoff. SIGTERM/SIGINT: the entry in
hand is finished, the loop ends, :func:`watch` returns 0. SIGHUP: the
configuration is reloaded and the search restarted (a full refresh).
The server refusing the search before it ever worked (no such base, a bad
filter, no syncprov) is ConfigError (78), not a loop.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from provbackup.actions.common import Clock, local_today, utc_now
from provbackup.actions.process import ProcessOptions, process
from provbackup.actions.report import RunReport
from provbackup.config import Config
from provbackup.errors import ConfigError, LockHeldError, ProvbackupError
from provbackup.watch.follower import Event, Follower, Kind
from provbackup.watch.health import HEARTBEAT_SECONDS, Health, health_file

if TYPE_CHECKING:
    from provbackup.cli.lifecycle import RunLifecycle

log = logging.getLogger(__name__)

STEP_SECONDS = 1.0  # the longest the loop sleeps: signals and midnight are seen within it
RETRY_FIRST, RETRY_LOCKED = 1.0, 2.0


def _iso(moment: float) -> str:
    """The wall-clock ISO time of a monotonic ``moment``."""
    return datetime.fromtimestamp(time.time() - (time.monotonic() - moment), UTC).isoformat()


class _Loop:
    """The state of one follower's life: the thread, the health, what is pending."""

    def __init__(self, config: Config, lifecycle: RunLifecycle, clock: Clock,
                 notify: Callable[[str], None]) -> None:  # fmt: skip
        import os

        self.config = config
        self.lifecycle = lifecycle
        self.clock = clock
        self.notify = notify
        self.health = Health(pid=os.getpid(), started=clock().isoformat())
        self.pending_since: float | None = None  # monotonic time of the first unserved event
        self.retry_at = 0.0
        self.retry_delay = RETRY_FIRST
        self.ever_refreshed = False
        self.ready = False
        self.events: queue.Queue[Event] = queue.Queue()
        self.follower = Follower(config, self.events)
        self.written = 0.0
        self.watchdog_seconds: float | None = None
        self.petted = time.monotonic()

    # -- the follower thread -------------------------------------------------

    def restart(self, config: Config) -> None:
        """Follow with ``config`` from now on: a new thread, a new queue, a full refresh."""
        self.follower.stop()
        self.config = config
        self.events = queue.Queue()
        self.follower = Follower(config, self.events)
        self.follower.start()
        self.health.connected = False

    def take(self, event: Event) -> None:
        """Note one event; raise ConfigError for a refusal before anything ever worked."""
        self.health.last_event = _iso(event.at)
        self.health.events += event.kind in (Kind.DUE, Kind.CHANGE)
        if event.kind is Kind.CONNECTED:
            log.info("following %s", event.detail)
            self.health.connected, self.health.uri, self.health.error = True, event.detail, None
            self.health.since = _iso(event.at)
            self.write()
        elif event.kind is Kind.REFRESHED:
            log.info("refresh complete")
            self.ever_refreshed = True
            self._want(event.at)
            self._ready()
        elif event.kind is Kind.DUE:
            log.debug("due: %s", event.detail)
            self._want(event.at)
        elif event.kind in (Kind.LOST, Kind.REFUSED):
            if event.kind is Kind.REFUSED and not self.ever_refreshed:
                raise ConfigError(f"{self.config.source}: [ldap] base_dn/filter or [watch] uri: "
                                  f"{event.detail}")  # fmt: skip
            log.warning("LDAP follower: %s; reconnecting", event.detail)
            if self.health.connected:
                self.health.reconnects += 1
                self.health.since = _iso(event.at)
            self.health.connected, self.health.error = False, event.detail
            self.write()
            self._ready()

    def _want(self, at: float) -> None:
        if self.pending_since is None:
            self.pending_since = at
            self.health.pending_since = _iso(at)

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.notify("READY=1\nSTATUS=following the directory")

    def pet(self) -> None:
        """Tell systemd's watchdog the follower lives (the loop, and each entry of a batch)."""
        if self.watchdog_seconds and time.monotonic() - self.petted >= self.watchdog_seconds / 2:
            self.notify("WATCHDOG=1")
            self.petted = time.monotonic()

    def write(self) -> None:
        self.written = time.monotonic()
        self.health.write(health_file(self.config.run.status_file), self.clock())

    # -- the batches ---------------------------------------------------------

    def batch(self) -> None:
        """Run one ``process`` batch under the lifecycle; on failure, retry after a backoff."""
        wanted = self.pending_since
        self.pending_since, self.health.pending_since = None, None
        report = RunReport(started=self.lifecycle.clock(), dry_run=False)
        try:
            with self.lifecycle.batch(report):
                process(self.config, ProcessOptions(), report, clock=self.clock,
                        stop_requested=self.lifecycle.stop_requested,
                        on_outcome=lambda outcome: self.pet())  # fmt: skip
        except LockHeldError as error:
            log.info("batch postponed: %s", error)
            self._retry(wanted, RETRY_LOCKED)
        except ProvbackupError as error:
            log.error("batch failed (exit %d): %s; trying again in %.0f s",
                      error.exit_code, error, self.retry_delay)  # fmt: skip
            self._retry(wanted, self.retry_delay)
            self.retry_delay = min(self.retry_delay * 2, self.config.watch.retry_max)
        else:
            self.retry_delay = RETRY_FIRST
            if report.outcomes:
                log.info("batch finished: %s", report.summary())
        self.health.batches += 1
        self.health.last_batch = (report.finished or report.started).isoformat()
        self.health.last_batch_exit = report.exit_code
        if wanted is not None and self.pending_since is None:
            self.health.lag_seconds = round(time.monotonic() - wanted, 3)
        self.write()

    def _retry(self, wanted: float | None, delay: float) -> None:
        self._want(wanted if wanted is not None else time.monotonic())
        self.retry_at = time.monotonic() + delay


def watch(
    config: Config,
    lifecycle: RunLifecycle,
    load_config: Callable[[], Config],
    *,
    clock: Clock = utc_now,
    notify: Callable[[str], None] = lambda message: None,
    watchdog_seconds: float | None = None,
) -> int:
    """Follow the directory until a stop signal; return the exit code (0).

    Takes the configuration, the lifecycle (in its ``command()``: signals,
    lock per batch, status file), ``load_config`` for SIGHUP, the clock,
    ``notify`` (sd_notify's messages: READY, WATCHDOG, STOPPING, STATUS)
    and the watchdog interval. Raises ConfigError (78) when the server
    refuses the search before it ever worked.
    """
    loop = _Loop(config, lifecycle, clock, notify)
    loop.watchdog_seconds = watchdog_seconds
    loop.follower.start()
    loop.write()
    today = local_today(clock)
    try:
        while lifecycle.stop_requested() is None:
            if lifecycle.reload_requested():
                try:
                    new = load_config()
                except ProvbackupError as error:
                    log.error("SIGHUP: the configuration is not reloaded: %s", error)
                else:
                    log.info("SIGHUP: configuration reloaded from %s; following again", new.source)
                    lifecycle.reconfigure(new)
                    loop.restart(new)
            if not loop.follower.is_alive():  # never expected: it catches everything
                log.error("the follower's thread ended; starting it again")
                loop.restart(loop.config)
            try:
                loop.take(loop.events.get(timeout=STEP_SECONDS))
                while True:  # whatever else has arrived, before a batch
                    loop.take(loop.events.get_nowait())
            except queue.Empty:
                pass
            now = time.monotonic()
            if local_today(clock) != today:
                today = local_today(clock)
                log.info("a new day (%s): scheduled entries may be due", today)
                loop._want(now)
            if loop.pending_since is not None and now >= loop.retry_at and loop.ever_refreshed:
                loop.batch()
            loop.pet()
            if now - loop.written >= HEARTBEAT_SECONDS:
                loop.write()
    finally:
        notify("STOPPING=1")
        loop.follower.stop()
        if lifecycle.stop_requested() is not None:
            health_file(loop.config.run.status_file).unlink(missing_ok=True)
        else:
            loop.health.connected, loop.health.error = False, "the follower ended"
            loop.write()
    log.info("stopped by %s", lifecycle.stop_requested())
    return 0
