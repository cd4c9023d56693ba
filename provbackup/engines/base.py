"""The one interface of a snapshot engine: what it does for an account.

An engine is chosen once from ``[backup] engine`` by
:func:`provbackup.engines.select_engine`; everything else calls it through
:class:`Engine` and never asks which one it is. The operations, by what
they are for:

- **check**: :meth:`Engine.check_root` before a ``process`` or ``snapshot``
  run, :meth:`Engine.check_tools` before a ``snapshot`` run (ConfigError,
  78), :meth:`Engine.findings` for ``check``;
- **create** and **change** (add and modify converge the same way):
  :meth:`Engine.create` makes ``incoming/`` what the engine needs before the
  work gives it its owner and mode, :meth:`Engine.quota` sets the quota;
- **delete**: :meth:`Engine.delete` releases the quota before the tree goes
  (the tree and any subvolume in it are removed by the work, whatever the
  engine: :mod:`provbackup.work.subvolumes`);
- **snapshot** and **usage**: :meth:`Engine.snapshot` of one open account,
  :meth:`Engine.usage` its figures afterwards;
- **inspect**: :attr:`Engine.title` and :meth:`Engine.inspect` for ``show``;
- the plan's part (pure): :meth:`Engine.plan_quota` and the lines of
  :meth:`Engine.describe` / :meth:`Engine.would` for ``--dry-run``.

Each operation works on one account and takes what it needs, so a command
can call one engine's operation on an account whatever ``[backup] engine``
says (:data:`provbackup.engines.ENGINES` by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from provbackup.config import Config
    from provbackup.model import Account, Verb
    from provbackup.paths import AccountPaths
    from provbackup.plan import AccountPlan
    from provbackup.work.accountconf import AccountConf
    from provbackup.work.safe import OpenDirectory
    from provbackup.work.usage import Usage


@dataclass(frozen=True)
class SnapshotTask:
    """One account's snapshot as an engine takes it.

    ``account`` and ``home`` are the account directory and home, open;
    ``conf`` its rsnapshot.conf as read; ``interval`` one it retains;
    ``moment`` the snapshot's time (aware); ``config`` the run's settings.
    """

    paths: AccountPaths
    account: OpenDirectory
    home: OpenDirectory
    conf: AccountConf
    interval: str
    moment: datetime
    config: Config


class Engine(Protocol):
    """What a snapshot engine does for an account (see the module docstring)."""

    name: str  # its [backup] engine value
    title: str  # how show names it

    def check_root(self, root: Path) -> None:
        """Raise ConfigError (78) when the engine cannot work on the (openable) backup root."""

    def check_tools(self, config: Config) -> None:
        """Raise ConfigError (78) when a program the snapshots run is not installed."""

    def findings(self, root: Path) -> tuple[list[str], list[str], list[str]]:
        """Return ``check``'s (problems, warnings, notes) about the backup root; never raises."""

    def plan_quota(
        self, account: Account, verb: Verb, quota_bytes: int | None, config: Config
    ) -> tuple[tuple[str, ...] | None, str]:
        """Return the plan's quota command (None: none runs) and its note; pure."""

    def describe(self, paths: AccountPaths) -> list[str]:
        """Return what the engine adds to an add or modify ``--dry-run``."""

    def create(self, home: OpenDirectory, steps: list[str]) -> None:
        """Make ``incoming/`` of the open home what the engine needs (idempotent; add, modify)."""

    def quota(self, plan: AccountPlan, home: OpenDirectory, timeout: float) -> str:
        """Set the account's quota to the plan's (add, modify); return the step."""

    def delete(self, plan: AccountPlan, timeout: float) -> str:
        """Release the account's quota before its tree is removed; return the step."""

    def would(self, task: SnapshotTask) -> str:
        """Say what :meth:`snapshot` would do (``snapshot --dry-run``)."""

    def snapshot(self, task: SnapshotTask) -> list[str]:
        """Take ``task.interval``'s snapshot; return the steps, raise EntryError/OSError."""

    def usage(self, home: OpenDirectory) -> Usage:
        """Return the account's figures (backup and snapshot bytes) below the open home."""

    def inspect(self, paths: AccountPaths) -> dict[str, Any]:
        """Return what ``show`` adds about the account (never raises)."""
