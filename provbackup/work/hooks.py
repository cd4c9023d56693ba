"""Site hooks run around the work on an entry (``[hooks] pre_add`` ...)."""

from __future__ import annotations

import os

from provbackup.config import HooksConfig
from provbackup.errors import RETURN_HOOK, WorkError
from provbackup.plan import AccountPlan
from provbackup.work.commands import run_command, tail


def hook_environment(plan: AccountPlan) -> dict[str, str]:
    """Return the environment of a hook: ours plus the PROVBACKUP_* variables of the entry."""
    account = plan.account
    environment = dict(os.environ)
    environment.update(
        PROVBACKUP_ACTION=plan.verb.value,
        PROVBACKUP_UID=account.uid,
        PROVBACKUP_DN=account.dn,
        PROVBACKUP_UIDNUMBER=str(account.uid_number),
        PROVBACKUP_GIDNUMBER=str(account.gid_number),
        PROVBACKUP_ACCOUNT_DIR=str(plan.paths.account),
        PROVBACKUP_HOME=str(plan.paths.home),
        PROVBACKUP_ACTIVE="TRUE" if account.active else "FALSE",
    )
    return environment


def run_hook(name: str, plan: AccountPlan, hooks: HooksConfig) -> str | None:
    """Run the hook ``name`` (e.g. ``pre_add``) for ``plan`` if one is configured.

    Returns a line for the step log, or None when no such hook is set.
    Raises WorkError (RETURN_HOOK) with the hook's output when it exits
    non-zero, cannot be run or exceeds ``hooks.timeout``.
    """
    argv = hooks.commands.get(name)
    if not argv:
        return None
    result = run_command(
        argv,
        timeout=hooks.timeout,
        what=f"hook {name}",
        return_value=RETURN_HOOK,
        environment=hook_environment(plan),
        merge_output=True,
    )
    if result.returncode != 0:
        raise WorkError(
            f"hook {name} ({argv[0]}) {result.status_text()}: {tail(result.stdout)}",
            return_value=RETURN_HOOK,
        )
    return f"hook {name} ran: {argv[0]}"
