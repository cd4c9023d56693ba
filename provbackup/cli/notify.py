"""``provbackup notify``: the customer warnings, under the run lifecycle.

:class:`~provbackup.cli.lifecycle.RunLifecycle` owns the lock
(``notify.lock`` beside ``[run] lock_file``: two notify runs never send the
same message at once), SIGTERM/SIGINT (no account is started after them),
the status file (``status-notify.json`` beside ``[run] status_file``,
written whatever ends the run, an unexpected exception as exit 70) and the
operator's failure mail when messages were held back or failed. This module
only prints.
"""

from __future__ import annotations

import json
import logging
import socket

import click

from provbackup.cli.options import Settings, json_option, pass_settings

log = logging.getLogger(__name__)


@click.command("notify")
@click.option("--dry-run", is_flag=True, help="Send and record nothing; print what would be sent.")
@click.option("--uid", metavar="UID", help="Only this account.")
@json_option
@pass_settings
def notify_command(settings: Settings, dry_run: bool, uid: str | None, as_json: bool) -> int:
    """Send the customer warnings that are due (schedule and quota), once per condition.

    Prints one line per message and a summary (or JSON), writes the status
    file, and exits 1 when a message failed, a server fault held them back
    or more were due than [notify] max_warnings_per_run.
    """
    from provbackup.actions.notify import COMMAND, NotifyReport, notify
    from provbackup.cli.lifecycle import RunLifecycle

    config = settings.load()
    hostname = socket.gethostname()
    lifecycle = RunLifecycle(config, COMMAND, dry_run=dry_run)
    with lifecycle.command():
        report = NotifyReport(started=lifecycle.clock(), dry_run=dry_run)
        with lifecycle.batch(report):
            notify(config, report, uid=uid, hostname=hostname,
                   stop_requested=lifecycle.stop_requested)  # fmt: skip
        if as_json:
            click.echo(json.dumps(report.to_status(hostname), indent=2, sort_keys=True))
        else:
            for item in report.messages:
                target = f"{item.medium or '-'} {item.to or '-'}"
                line = f"{item.uid}: {item.template} {item.message} -> {target}: {item.outcome}"
                click.echo(line + (f" ({item.reason})" if item.reason else ""))
            for name, reasons in sorted(report.reasons.items()):
                for reason in reasons:
                    click.echo(f"{name}: {reason}")
            click.echo(report.summary())
        log.info("notify run finished: %s", report.summary())
    return lifecycle.exit_code(report)
