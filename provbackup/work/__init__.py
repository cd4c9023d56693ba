"""Apply account plans on the backup server's filesystem, safely.

Nothing here follows a symlink below the backup root: see
:mod:`provbackup.work.safe`. The public entry points:

- :class:`WorkSession` is one run's work (``apply``, ``purge_quarantine``);
- :func:`apply_plan` does an add, modify or delete plan;
- :func:`purge_quarantine` removes quarantined accounts past their days;
- :class:`ConfigTester` configtests rsnapshot configurations once per shape
  for a run; :func:`configtest_file` tests one file;
- :func:`run_hook` runs one ``[hooks]`` command;
- :func:`inspect_account` / :func:`inspect_entry` describe an account for ``show``.
"""

from __future__ import annotations

from provbackup.work.apply import apply_plan
from provbackup.work.hooks import hook_environment, run_hook
from provbackup.work.inspect import inspect_account, inspect_entry
from provbackup.work.ownership import account_directory_exists, check_owner
from provbackup.work.purge import Purge, purge_quarantine
from provbackup.work.rsnapshot import ConfigTester, configtest_file
from provbackup.work.session import WorkSession, root_problem

__all__ = [
    "ConfigTester",
    "Purge",
    "WorkSession",
    "account_directory_exists",
    "apply_plan",
    "check_owner",
    "configtest_file",
    "hook_environment",
    "inspect_account",
    "inspect_entry",
    "purge_quarantine",
    "root_problem",
    "run_hook",
]
