"""Human output on stdout: tables (tabulate), one line per processed entry, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from provbackup.logs import escape_control
from provbackup.model import Request


def _tabulate(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    # Cells hold directory values: a newline or escape sequence in one must not
    # break the table or drive the terminal.
    rows = [
        [escape_control(cell) if isinstance(cell, str) else cell for cell in row] for row in rows
    ]
    return tabulate(rows, headers=headers, tablefmt="simple", missingval="-")


def outcome_line(outcome: Any) -> str:
    """One line for a processed entry: outcome, verb, uid, DN, and why if not done."""
    # uid, DN and message come from the directory: escaped so each stays on its line.
    uid, dn = escape_control(outcome.uid or "-"), escape_control(outcome.dn)
    line = f"{outcome.outcome:<8} {outcome.verb or '-':<7} {uid:<12} {dn}"
    if outcome.outcome in ("failed", "skipped", "interrupted") and outcome.message:
        line += f": {escape_control(outcome.message)}"
    elif outcome.outcome == "would" and outcome.message:
        line += "\n" + "\n".join(
            f"    {escape_control(part)}" for part in outcome.message.split("; ")
        )
    return line


def snapshot_line(result: Any) -> str:
    """One line for an account of a snapshot run: outcome, uid, account directory, why."""
    line = f"{result.outcome:<8} {escape_control(result.uid):<12} {escape_control(result.account)}"
    if result.outcome != "done" and result.message:
        line += f": {escape_control(result.message)}"
    elif result.newest:
        line += f" (newest snapshot {result.newest})"
    return line


SCAN_HEADERS = ["uid", "mode", "date", "status", "dn"]


def scan_table(rows: Iterable[Any]) -> str:
    """The scan listing as a table; an empty listing says so."""
    table = []
    for row in rows:
        status = str(row.status)
        if row.status == "failed" and row.return_value is not None:
            status += f" ({row.return_value})"
        if row.problem:
            status += f": {row.problem}"
        held = getattr(row, "held", None)
        if held and held != "held by this server":
            status += f" ({held})"
        table.append([row.uid, row.mode, row.date, status, row.dn])
    if not table:
        return "no entries need attention"
    return _tabulate(table, SCAN_HEADERS)


WARNING_HEADERS = ["uid", "attribute", "value", "problem", "dn"]


def warnings_table(rows: Iterable[Any]) -> str:
    """The ``scan --warnings`` listing as a table; an empty listing says so.

    Takes the rows (uid, attribute, value, problem, dn); returns the text.
    """
    table = [[row.uid, row.attribute, row.value, row.problem, row.dn] for row in rows]
    if not table:
        return "no account has a customer-warning problem"
    return _tabulate(table, WARNING_HEADERS)


def write_json_array(items: Iterator[dict[str, Any]], stream: IO[str]) -> int:
    """Write ``items`` as one JSON array, element by element (nothing held in memory).

    Returns how many items were written.
    """
    count = 0
    stream.write("[")
    for item in items:
        stream.write(",\n  " if count else "\n  ")
        stream.write(json.dumps(item, sort_keys=True))
        count += 1
    stream.write("\n]\n" if count else "]\n")
    return count


def show_table(view: Any) -> str:
    """One account: provisioning attributes, then the server side and its paths."""
    provisioning = _tabulate([[key, value] for key, value in view.provisioning.items()], [])
    server = dict(view.server)
    paths = server.pop("entries", None)
    text = f"{escape_control(view.dn)}\n\nprovisioning\n{provisioning}\n\nserver\n"
    text += _tabulate([[key, _plain(value)] for key, value in server.items()], [])
    if isinstance(paths, dict) and paths:
        rows = []
        for name, item in paths.items():
            if not isinstance(item, dict):
                rows.append([name, _plain(item), None, None, None])
                continue
            owner = (
                f"{item['owner']}:{item['group']}" if "owner" in item and "group" in item else None
            )
            rows.append([name, item.get("type"), owner, item.get("mode"), item.get("path")])
        text += "\n\n" + _tabulate(rows, ["path", "type", "owner", "mode", "location"])
    warnings = dict(getattr(view, "warnings", None) or {})
    states = warnings.pop("states", None)
    if warnings:
        rows = [[key, escape_control(str(_plain(value)))] for key, value in warnings.items()]
        text += "\n\nwarnings\n" + _tabulate(rows, [])
        if isinstance(states, dict):
            text += "\n" + _tabulate([[key, value] for key, value in states.items()], [])
        elif states:
            text += f"\nstates: {states}"
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return value


def reset_table(
    dn: str, before: Request, after: Request, statuses: tuple[str, str] | None = None
) -> str:
    """The entry's provisioning attributes (and status, if given) before and after a reset."""

    def values(request: Request) -> list[Any]:
        return [
            request.mode,
            request.state,
            request.date.strftime("%Y%m%d") if request.date else "0",
            request.return_value,
        ]

    names = ["sstProvisioningMode", "sstProvisioningState", before.date_attribute or "date",
             "sstProvisioningReturnValue"]  # fmt: skip
    rows = [
        [name, old, new]
        for name, old, new in zip(names, values(before), values(after), strict=True)
    ]
    if statuses is not None:
        rows.insert(0, ["status", *statuses])
    return f"{escape_control(dn)}\n" + _tabulate(rows, ["attribute", "before", "after"])


class Progress:
    """``done/total`` on one rewritten line of a terminal; silent anywhere else.

    Takes the stream (stderr) and whether it may show at all (not with
    ``-q``). Under cron or a timer the stream is no terminal, so nothing is
    written and logs stay clean.
    """

    def __init__(self, stream: IO[str], enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.total: int | None = None
        self.done = 0
        self.shown = False

    def start(self, total: int | None) -> None:
        """Set how many items are expected (None: unknown, count only)."""
        self.total = total

    def step(self, count: int = 1) -> None:
        """Count ``count`` more items done and redraw, at most every 1% or 100 items."""
        self.done += count
        if not self.enabled:
            return
        every = max(1, min(100, (self.total or 0) // 100))
        if self.done % every and self.done != self.total:
            return
        of_total = f"/{self.total}" if self.total else ""
        self.stream.write(f"\r\033[K{self.done}{of_total}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the progress line, so what follows starts on a clean line."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


MIGRATION_HEADERS = ["uid", "outcome", "layout", "snapshots", "quota", "what"]


def migration_table(results: Iterable[Any]) -> str:
    """``migrate-engine``'s accounts as a table (the plan, with ``--dry-run``)."""
    rows = [
        [item.uid, item.outcome, item.layout, " ".join(item.snapshots) or "-",
         "none" if item.quota is None else item.quota, item.message]
        for item in results
    ]  # fmt: skip
    if not rows:
        return "no accounts on the backup root"
    return _tabulate(rows, MIGRATION_HEADERS)
