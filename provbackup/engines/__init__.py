"""The snapshot engines behind one interface, chosen in one place from ``[backup] engine``.

:class:`~provbackup.engines.base.Engine` is what an engine does for an
account; :func:`select_engine` the one place that reads ``[backup] engine``.
``rsnapshot`` (:mod:`provbackup.engines.rsnapshot`) and the experimental
``btrfs`` (:mod:`provbackup.engines.btrfs_engine`). An engine's module is
imported when it is first asked for: the engines sit above
:mod:`provbackup.work` (their primitives), which the pure plan feeds, so the
plan can ask the engine for its part without importing the work.
"""

from __future__ import annotations

import importlib

from provbackup.config import Config
from provbackup.engines.base import Engine, SnapshotTask

# [backup] engine -> the module whose ENGINE it is (config/values.py lists the same names).
ENGINES = {
    "rsnapshot": "provbackup.engines.rsnapshot",
    "btrfs": "provbackup.engines.btrfs_engine",
}

__all__ = ["ENGINES", "Engine", "SnapshotTask", "engine_named", "select_engine"]


def engine_named(name: str) -> Engine:
    """Return the engine called ``name`` (a key of :data:`ENGINES`); raises KeyError."""
    engine: Engine = importlib.import_module(ENGINES[name]).ENGINE
    return engine


def select_engine(config: Config) -> Engine:
    """Return the engine ``[backup] engine`` names (validated when the config was loaded)."""
    return engine_named(config.backup.engine)
