"""Sending email over SMTP with an async client: the operator's server, port, TLS mode and credentials."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

import aiosmtplib
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.errors import Problem

log = logging.getLogger("kizuna.identity.mail")


class MailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_SMTP_", extra="ignore")
    host: str = Field("127.0.0.1", description="SMTP server that sends Kizuna's email.")
    port: int = Field(25, ge=1, le=65535, description="Its port: 25 or 587 (starttls), 465 (tls).")
    security: Literal["none", "starttls", "tls"] = Field(
        "starttls",
        description="none: plain (a local relay only); starttls: upgrade after connecting; tls: implicit TLS.")
    username: str = Field("", description="Login, if the server wants one.")
    password: str = Field("", description="Password for the login.")
    sender: str = Field("Kizuna <kizuna@localhost>", description="The From: of every message.")
    timeout_seconds: float = Field(15.0, gt=0)


class Mailer:
    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="kizuna")
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a sign-in link
        message.set_content(text)
        s = self.settings
        try:
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, username=s.username or None, password=s.password or None,
                use_tls=s.security == "tls", start_tls=True if s.security == "starttls" else False,
                timeout=s.timeout_seconds)
        except (aiosmtplib.SMTPException, OSError) as error:
            log.warning("email not sent", extra={"smtp_host": s.host, "error": repr(error)})
            raise Problem("the email could not be sent just now; try again in a minute", status=503,
                          slug="mail-unavailable", title="Email unavailable") from error
