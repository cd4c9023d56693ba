"""``reset``: put an entry back to a request so the next ``process`` run does it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from provbackup import locality, state
from provbackup.actions.common import Clock, find_entries, local_today, utc_now
from provbackup.config import Config
from provbackup.directory import claim_directory, connect
from provbackup.entry import read_request
from provbackup.errors import EntriesFailedError, LockHeldError, UsageError
from provbackup.lock import holder_pid, lock_is_held
from provbackup.model import Request, Verb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResetResult:
    """The entry's provisioning attributes and status before and after the reset."""

    dn: str
    before: Request
    after: Request
    status_before: state.Status
    status_after: state.Status


def reset(
    config: Config,
    *,
    dn: str | None = None,
    uid: str | None = None,
    mode: str | None = None,
    force: bool = False,
    any_status: bool = False,
    now: bool = False,
    take_over: bool = False,
    clock: Clock = utc_now,
) -> ResetResult:
    """Reset one entry to request ``mode`` (default: the verb of its mode), state 0.

    Acts on a failed or interrupted entry; any other status (done, a pending
    or scheduled request, invalid) needs ``any_status``, so a recovery step
    never re-runs or changes a request by accident. The date is kept (a
    scheduled request stays scheduled) unless ``now`` sets it to 0.
    Refuses while a ``process`` run holds the lock unless ``force``.
    ``take_over`` makes this backup server the one holding the account
    (``[ldap] server_attribute`` replaced by ``[backup] server_name``; its
    own explicit flag, so it acts on any status): the operator's decision
    for an account held by no server, or the last step of a move. The
    write goes to ``[ldap] claim_uri`` where set. Returns the before/after
    view. Raises LockHeldError (75), UsageError
    (2: ambiguous uid, no mode to derive, a status reset does not act on
    without ``any_status``), NotFoundError (1), EntriesFailedError (1) when
    the entry changed concurrently.
    """
    if mode is not None and mode not in tuple(Verb):
        raise UsageError(f"--mode must be one of {', '.join(Verb)}")
    if not force and lock_is_held(config.run.lock_file):
        pid = holder_pid(config.run.lock_file)
        holder = f" (PID {pid})" if pid else ""
        raise LockHeldError(
            f"a process run holds the lock {config.run.lock_file}{holder}; "
            "not resetting (use --force to reset anyway)"
        )
    today = local_today(clock)
    with connect(config.ldap) as directory, claim_directory(config.ldap, directory) as writer:
        entries = find_entries(directory, config, dn=dn, uid=uid)
        if len(entries) > 1:
            names = ", ".join(entry.dn for entry in entries)
            raise UsageError(f"uid {uid!r} matches {len(entries)} entries ({names}); use --dn")
        entry = entries[0]
        before = read_request(entry, config.ldap.date_attribute)
        # With --force a run may hold the lock: an in-progress entry then counts as
        # interrupted, which is what --force asserts.
        status_before = state.classify(before, today)
        if status_before not in state.RESETTABLE and not (any_status or take_over):
            raise UsageError(
                f"{entry.dn}: is {status_before} (sstProvisioningMode {before.mode!r}), not "
                "failed or interrupted; reset only retries what a run left behind: give "
                "--any-status to reset it anyway"
                + ("" if mode else " (and --mode add|modify|delete to choose the request)")
            )
        new_mode = Verb(mode) if mode is not None else state.default_reset_mode(before)
        if new_mode is None:
            raise UsageError(
                f"{entry.dn}: sstProvisioningMode {before.mode!r} is not a known mode; "
                "give --mode add|modify|delete"
            )
        changes = state.reset_changes(before, new_mode, now=now)
        if take_over:
            changes.update(locality.take_over_changes(config))
        result = writer.modify(entry.dn, changes)
        if not result.ok:
            raise EntriesFailedError(
                f"{entry.dn}: reset refused: {result.message}"
                + (" (the entry changed meanwhile; look again)" if result.conflict else "")
            )
        after_entry = directory.read(entry.dn)
    after = read_request(after_entry, config.ldap.date_attribute) if after_entry else before
    status_after = state.classify(after, today)
    log.info(
        "%s: reset from %s (%s) to %s (%s)",
        entry.dn, before.mode, status_before, after.mode, status_after,
    )  # fmt: skip
    return ResetResult(entry.dn, before, after, status_before, status_after)
