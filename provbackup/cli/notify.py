"""``provbackup notify``: the customer warnings, under their own run lock.

Here, not in the action: the lock (``notify.lock`` beside ``[run]
lock_file``: two notify runs never send the same message at once), the
status file (``status-notify.json`` beside ``[run] status_file``, written
whatever ends the run, an unexpected exception as exit 70) and the
operator's mail when messages were held back or failed.
"""

from __future__ import annotations

import json
import logging
import socket
from contextlib import nullcontext

import click

from provbackup.cli.options import Settings, json_option, pass_settings
from provbackup.errors import EXIT_SOFTWARE, ProvbackupError

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
    from provbackup.actions.common import utc_now
    from provbackup.actions.notify import NotifyReport, notify, notify_status_path
    from provbackup.lock import run_lock
    from provbackup.status import write_status

    config = settings.load()
    hostname = socket.gethostname()
    lock = nullcontext() if dry_run else run_lock(config.run.lock_file.with_name("notify.lock"))
    report: NotifyReport | None = None
    with lock:
        started = utc_now()
        try:
            report = notify(config, uid=uid, dry_run=dry_run, hostname=hostname)
        except BaseException as error:
            if not dry_run:
                failed = NotifyReport(started=started, dry_run=False, finished=utc_now())
                if isinstance(error, ProvbackupError):
                    failed.exit_code, failed.error = error.exit_code, str(error)
                else:
                    failed.exit_code = EXIT_SOFTWARE
                    failed.error = f"internal error: {type(error).__name__}: {error}"
                write_status(notify_status_path(config), failed.to_status(hostname))
            raise
        report.finished = utc_now()
        if not dry_run:
            write_status(notify_status_path(config), report.to_status(hostname))
            if report.failed:
                from provbackup.notify import send_failure_mail

                send_failure_mail(config.mail, report, hostname)
    if as_json:
        click.echo(json.dumps(report.to_status(hostname), indent=2, sort_keys=True))
    else:
        for item in report.messages:
            target = f"{item.medium or '-'} {item.to or '-'}"
            line = f"{item.uid}: {item.template} {item.message} -> {target}: {item.outcome}"
            click.echo(line + (f" ({item.reason})" if item.reason else ""))
        for uid_shown, reasons in sorted(report.reasons.items()):
            for reason in reasons:
                click.echo(f"{uid_shown}: {reason}")
        click.echo(report.summary())
    log.info("notify run finished: %s", report.summary())
    return report.exit_code
