"""Send one customer message: a mail over ``[mail]``'s SMTP server, or an sms by command.

The mail's headers are made with the standard library's email API
(:class:`email.message.EmailMessage`, default policy): the address is the
gate's validated single address and the subject one line, and the API
itself refuses a header value holding CR or LF, so nothing from the
directory can add a header. STARTTLS, login and timeout are those of the
operator's mail (:func:`provbackup.notify.deliver`).

The sms goes through ``[notify] sms_command``: an argv template (no shell)
whose ``{number}`` is replaced by the validated number (digits and a
leading +), the text on stdin, the whole run bounded by ``[notify]
sms_timeout`` through :func:`provbackup.work.commands.run_command`; exit 0
means sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from provbackup.config import Config
from provbackup.errors import RETURN_HOOK, WorkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One message for one customer: medium, address, language, subject and body."""

    medium: str
    address: str
    language: str
    subject: str
    body: str


def build_mail(config: Config, message: Outgoing, hostname: str) -> EmailMessage:
    """The mail of ``message``, headers through the email API (raises ValueError on CR/LF)."""
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = config.mail.sender
    mail["To"] = message.address
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid("provbackup-notify", domain=hostname or "localhost")
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.body)
    mail["Content-Language"] = message.language  # after set_content, which drops Content-*
    return mail


def send(config: Config, message: Outgoing, hostname: str) -> str | None:
    """Send ``message``; None when the server or command took it, else why not (one line).

    Never raises for a delivery problem.
    """
    if message.medium == "sms":
        return _sms(config, message)
    from provbackup.notify import deliver, describe

    try:
        mail = build_mail(config, message, hostname)
        if deliver(config.mail, mail, what="customer warning"):
            return None
        return "the mail server does not offer STARTTLS, and the login is only sent encrypted"
    except Exception as error:
        log.debug("customer warning", exc_info=True)
        return f"via {config.mail.host}:{config.mail.port}: {describe(error)}"


def _sms(config: Config, message: Outgoing) -> str | None:
    from provbackup.work.commands import run_command, tail

    template = config.notify.sms_command
    if template is None:
        return "[notify] sms_command is not set"
    argv = [word.replace("{number}", message.address) for word in template]
    try:
        result = run_command(
            argv, timeout=config.notify.sms_timeout, what="sms command",
            return_value=RETURN_HOOK, stdin_data=message.subject.encode("utf-8"),
        )  # fmt: skip
    except WorkError as error:
        return str(error)
    if result.returncode != 0:
        output = tail(result.stdout + result.stderr)
        return f"sms command {result.status_text()}" + (f": {output}" if output else "")
    log.info("customer warning sent by sms to %s", message.address)
    return None
