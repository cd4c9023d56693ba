"""Run ``provbackup`` and SIGKILL it just before its N-th step on disk or in LDAP.

A deterministic kill point for the fault tests: ``python tests/killpoint.py
--config PATH process`` runs the real command in this process, counting the
calls that change something (``os.unlink``, ``os.rmdir``, ``os.rename``,
``os.mkdir``, a started command and every LDAP modify) from the first LDAP
modify that got an answer (the claim) on. The one numbered ``KILL_AT`` (from
1) is never made: the process sends itself SIGKILL first, as an operator's
``kill -9`` or the OOM killer would, so nothing of Python's cleanup runs.
``KILL_TRACE`` (a file), when set, gets one line per counted call.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

KILL_AT = int(os.environ.get("KILL_AT", "0"))
TRACE = os.environ.get("KILL_TRACE")
_state = {"armed": False, "count": 0}


def _step(name: str, arguments: tuple[Any, ...]) -> None:
    if not _state["armed"]:
        return
    _state["count"] += 1
    if TRACE:
        with open(TRACE, "a", encoding="utf-8") as trace:
            trace.write(f"{_state['count']} {name} {arguments!r}\n")
    if _state["count"] == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def _counted(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def counted(*arguments: Any, **keywords: Any) -> Any:
        _step(name, arguments[:1])
        return function(*arguments, **keywords)

    return counted


def main() -> None:
    """Install the counters, then run ``provbackup`` with this process's arguments."""
    for name in ("unlink", "rmdir", "rename", "mkdir"):
        setattr(os, name, _counted(getattr(os, name), name))
    popen_init = subprocess.Popen.__init__
    subprocess.Popen.__init__ = _counted(popen_init, "command")  # type: ignore[method-assign]

    import provbackup.directory as directory

    modify = directory.LdapDirectory.modify

    def counted_modify(self: directory.LdapDirectory, dn: str, changes: Any) -> Any:
        _step("modify", (sorted(changes),))
        result = modify(self, dn, changes)
        _state["armed"] = True
        return result

    directory.LdapDirectory.modify = counted_modify  # type: ignore[method-assign]
    sys.argv = ["provbackup", *sys.argv[1:]]
    runpy.run_module("provbackup", run_name="__main__")


if __name__ == "__main__":
    main()
