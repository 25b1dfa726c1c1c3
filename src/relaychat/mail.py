"""Outgoing mail over SMTP (stdlib ``smtplib``): the :class:`~relaychat.protocol.mailer.Mailer`
the driver gives the core. Blocking: called from an Op on a worker thread,
one connection per mail (verification mails are rare). The password comes from
``[email] password_file``, read at each send, so it is never in the config
object or a log line; the mail's body is never logged nor put in an error."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from relaychat.config import EmailConfig
from relaychat.protocol.mailer import MailError

__all__ = ["SmtpMailer"]


class SmtpMailer:
    def send(self, settings: EmailConfig, to: str, subject: str, body: str) -> None:
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        msg = EmailMessage()
        msg["From"] = settings.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=settings.from_address.rpartition("@")[2] or None)
        msg.set_content(body)
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.timeout
            ) as smtp:
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.username:
                    smtp.login(settings.username, _password(settings.password_file))
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused:
            raise MailError(f"{where}: the recipient was refused") from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"{where}: SMTP error {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            raise MailError(f"{where}: {type(exc).__name__}: {exc}") from None


def _password(path: str) -> str:
    if not path:
        raise MailError("[email] username is set but password_file is not")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MailError(f"{path}: cannot read the SMTP password: {exc.strerror}") from None
    return lines[0] if lines else ""
