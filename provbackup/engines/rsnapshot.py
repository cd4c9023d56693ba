"""Set an account's quota with the configured ``[quota] command``."""

from __future__ import annotations

from provbackup.errors import RETURN_QUOTA, WorkError
from provbackup.plan import AccountPlan
from provbackup.work.commands import run_command, tail

QUOTA_TIMEOUT = 120.0


def set_quota(plan: AccountPlan, timeout: float = QUOTA_TIMEOUT) -> str:
    """Run the plan's quota command, if any.

    Returns a line for the step log (the plan's note when no command runs).
    Raises WorkError (RETURN_QUOTA) with the command's stderr tail when it
    exits non-zero, is missing, or is not over (with everything it started)
    after ``timeout`` seconds (``[quota] timeout``).
    """
    if plan.quota_argv is None:
        return plan.quota_note
    result = run_command(
        plan.quota_argv, timeout=timeout, what="quota command", return_value=RETURN_QUOTA
    )
    if result.returncode != 0:
        raise WorkError(
            f"quota command {plan.quota_argv[0]} {result.status_text()}: "
            f"{tail(result.stderr or result.stdout)}",
            return_value=RETURN_QUOTA,
        )
    return f"{plan.quota_note}: {' '.join(plan.quota_argv)}"
