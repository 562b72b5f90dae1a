"""Sending email over SMTP with an async client, as the operator set it up: server, port, TLS mode,
credentials, sender. Shared by the services that write to people (identity's sign-in links, notifications)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Literal

import aiosmtplib
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class MailNotSent(Exception):
    """The SMTP server could not be reached, or refused the message."""


async def send(settings: MailSettings, message: EmailMessage) -> None:
    """Sends one message (its From is the operator's sender); raises MailNotSent on any SMTP or network failure."""
    if "From" not in message:
        message["From"] = settings.sender
    try:
        await aiosmtplib.send(
            message, hostname=settings.host, port=settings.port, username=settings.username or None,
            password=settings.password or None, use_tls=settings.security == "tls",
            start_tls=True if settings.security == "starttls" else False, timeout=settings.timeout_seconds)
    except (aiosmtplib.SMTPException, OSError) as error:
        raise MailNotSent(repr(error)) from error
