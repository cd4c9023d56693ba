"""The files one command's runs own: the run lock, the status file, the fault record.

``process`` keeps the configured ``[run] lock_file`` and ``[run]
status_file`` (monitoring, ``scan``, ``show``, ``reset`` and the units read
them there) and ``last-fault.json`` beside the status file. Every other
command with a run lifecycle is named (``snapshot-daily``, ``notify``) and
gets its own files beside those: ``NAME.lock``, ``status-NAME.json`` and
``last-fault-NAME.json``, so two commands never share a lock or overwrite
each other's status. A command that must exclude ``process`` (``watch``
runs process batches) uses the name ``process``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provbackup.faults import fault_file

if TYPE_CHECKING:
    from provbackup.config import Config

PROCESS = "process"
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class RunFiles:
    """Where the runs of ``command`` keep their lock, status file and fault record."""

    command: str
    lock: Path
    status: Path
    faults: Path


def run_files(config: Config, command: str) -> RunFiles:
    """Return the files of ``command``'s runs (see the module docstring).

    Takes the configuration (``[run] lock_file`` and ``status_file``) and
    the command's name: lower-case letters, digits and dashes. Raises
    ValueError for any other name (a name is never taken from input).
    """
    if not _NAME.fullmatch(command):
        raise ValueError(f"not a command name for run files: {command!r}")
    lock_file, status_file = config.run.lock_file, config.run.status_file
    if command == PROCESS:
        return RunFiles(command, lock_file, status_file, fault_file(status_file))
    return RunFiles(
        command,
        lock_file.with_name(f"{command}.lock"),
        status_file.with_name(f"status-{command}.json"),
        status_file.with_name(f"last-fault-{command}.json"),
    )
