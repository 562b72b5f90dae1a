"""Identity's email (sign-in links, invitations) over the operator's SMTP server (kizuna.mail)."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from kizuna.errors import Problem
from kizuna.mail import MailNotSent, MailSettings, send

log = logging.getLogger("kizuna.identity.mail")


class Mailer:
    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="kizuna")
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a sign-in link
        message.set_content(text)
        try:
            await send(self.settings, message)
        except MailNotSent as error:
            log.warning("email not sent", extra={"smtp_host": self.settings.host, "error": str(error)})
            raise Problem("the email could not be sent just now; try again in a minute", status=503,
                          slug="mail-unavailable", title="Email unavailable") from error


__all__ = ["MailSettings", "Mailer"]
