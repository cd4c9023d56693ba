"""The failure mail: one message per ``process`` run that had failed entries.

Mail is a courtesy on top of the exit code, the status file and the logs:
nothing here ever raises or changes the run's exit code. A mail server
that is down, refuses the login or the recipients is logged as a warning.

The password is only ever sent over TLS: with ``[mail] username`` set, a
server that does not offer STARTTLS (or ``starttls = no``) gets no mail at
all rather than the credentials in clear.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime
    from email.message import EmailMessage

    from provbackup.config import MailConfig

log = logging.getLogger(__name__)


class FailedEntry(Protocol):
    """What the mail needs of a failed entry (:class:`provbackup.outcomes.EntryOutcome`)."""

    dn: str
    uid: str | None
    verb: str | None
    message: str
    return_value: int | None


class FailureReport(Protocol):
    """What the mail needs of a run (``process.RunReport``)."""

    started: datetime
    finished: datetime | None
    dry_run: bool

    @property
    def failed(self) -> Sequence[Any]:
        """The items that failed: the failure mail lists them."""

    def summary(self) -> str:
        """One line: what the run did, the mail's first line."""


def subject_of(mail: MailConfig, failed: int, hostname: str) -> str:
    """Fill ``[mail] subject`` with ``{failed}`` and ``{hostname}``.

    A template with another placeholder or a stray brace falls back to the
    default subject with a warning, rather than losing the mail.
    """
    from provbackup.config import MailConfig

    try:
        return mail.subject.format(failed=failed, hostname=hostname)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        log.warning(
            "[mail] subject %r: cannot fill it in (%s: %s); only {failed} and {hostname} "
            "are known; using the default subject",
            mail.subject,
            type(error).__name__,
            error,
        )
        return MailConfig.subject.format(failed=failed, hostname=hostname)


def failure_body(report: FailureReport, hostname: str) -> str:
    """The plain-text body: the run's summary and every failed entry."""
    failed = list(report.failed)
    lines = [
        f"provbackup on {hostname}: {len(failed)} "
        f"{'entry' if len(failed) == 1 else 'entries'} failed.",
        "",
        f"Run started:  {report.started.isoformat()}",
        f"Run finished: {(report.finished or report.started).isoformat()}",
        f"Summary:      {report.summary()}",
        "",
    ]
    from provbackup.logs import escape_control

    for number, item in enumerate(failed, start=1):
        # uid, DN and message come from the directory: one line each, whatever they hold.
        lines += [
            f"{number}. uid {escape_control(item.uid or '(unknown)')}",
            f"   DN:           {escape_control(item.dn)}",
            f"   action:       {item.verb or '(none)'}",
            f"   error:        {escape_control(item.message)}",
        ]
        if item.return_value is not None:
            lines.append(f"   return value: {item.return_value}")
        lines.append("")
    # A report may say itself what to do about its failures (a snapshot run does).
    advice = getattr(report, "advice", None)
    lines += list(advice) if advice else [
        "A failed entry is not retried on its own. For each one:",
        "  provbackup show UID            inspect the entry and the account on disk",
        "  (fix the cause)",
        "  provbackup reset --uid UID     put the request back",
        "  provbackup process --uid UID   or wait for the next run",
        "",
        "See provbackup(1).",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def send_failure_mail(mail: MailConfig, report: FailureReport, hostname: str) -> bool:
    """Send ONE mail summarising the failed entries of ``report``.

    Takes the ``[mail]`` configuration, the run's report (``RunReport``)
    and this host's name (for the subject and the body). Sends nothing for
    a run without failures, a dry run, or when no recipient is configured.
    Returns True when the server accepted the mail for at least one
    recipient. Never raises: every SMTP, TLS or OS error is a WARNING in
    the log (never with the password) and gives False.
    """
    failed = list(report.failed)
    if not failed or report.dry_run:
        return False
    if not mail.enabled:
        log.debug("%d entries failed; no mail sent: [mail] to is not set", len(failed))
        return False
    try:
        return deliver(mail, _message(mail, report, failed, hostname))
    except Exception as error:
        # The mail must never turn a run into a crash, whatever went wrong.
        log.warning(
            "failure mail not sent via %s:%d: %s",
            mail.host,
            mail.port,
            describe(error),
        )
        log.debug("failure mail", exc_info=True)
        return False


def _message(
    mail: MailConfig, report: FailureReport, failed: list[Any], hostname: str
) -> EmailMessage:
    """Build the mail: headers from ``[mail]``, the body from :func:`failure_body`."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = subject_of(mail, len(failed), hostname)
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.to)
    message["Date"] = formatdate(localtime=True)
    # make_msgid() would look up this host's FQDN, which may hang on a broken resolver.
    message["Message-ID"] = make_msgid("provbackup", domain=hostname or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(failure_body(report, hostname))
    return message


def deliver(mail: MailConfig, message: EmailMessage, what: str = "failure mail") -> bool:
    """Deliver ``message`` over the ``[mail]`` SMTP server; returns True when a recipient took it.

    ``what`` names the mail in log lines. Recipients are the message's
    To header. Raises smtplib.SMTPException or OSError (ssl.SSLError
    included) for the caller to log (:func:`describe` words it); returns
    False itself only when it refuses to log in without TLS.
    """
    import smtplib
    import ssl
    from email.utils import getaddresses

    where = f"{mail.host}:{mail.port}"
    with smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout) as smtp:
        smtp.ehlo()
        if mail.starttls and smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()  # the capabilities (AUTH) may differ once encrypted
            encrypted = True
        else:
            encrypted = False
        if mail.username:
            if not encrypted:
                reason = "the server does not offer STARTTLS" if mail.starttls else "starttls = no"
                log.warning(
                    "%s not sent via %s: %s, and the [mail] username and password "
                    "are only ever sent encrypted",
                    what,
                    where,
                    reason,
                )
                return False
            smtp.login(mail.username, mail.password or "")
        elif mail.starttls and not encrypted:
            log.warning(
                "%s does not offer STARTTLS: sending the %s unencrypted "
                "(set [mail] starttls = no if that is expected)",
                where,
                what,
            )
        refused = smtp.send_message(message)
    if refused:
        log.warning(
            "%s refused for %s by %s",
            what,
            ", ".join(
                f"{address} ({code} {_text(reply)})" for address, (code, reply) in refused.items()
            ),
            where,
        )
    recipients = [address for _name, address in getaddresses(message.get_all("To", []))]
    log.info("%s sent to %s via %s", what, ", ".join(sorted(set(recipients) - set(refused))), where)
    return True


def describe(error: BaseException) -> str:
    """A one-line reason for ``error``, from the server's reply where there is one."""
    import smtplib

    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + ", ".join(
            f"{address} ({code} {_text(reply)})"
            for address, (code, reply) in error.recipients.items()
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


def _text(reply: bytes | str) -> str:
    """A server reply as one line of text."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    return " ".join(reply.split())
