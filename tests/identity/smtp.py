"""A real SMTP server for the tests: aiosmtpd (from PyPI) in its own process — the one `make up` runs —
delivering every message it accepts into a Maildir that the tests read as a person reads their inbox."""

from __future__ import annotations

import asyncio
import email
import mailbox
import re
import time
from email.message import Message
from pathlib import Path

from kizuna.devstack import MailServer


class SmtpInbox:
    """The developer stack's SMTP server (kizuna.devstack.MailServer), read as a person reads their inbox."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = MailServer(directory, directory.parent / "smtp.log")
        self.read: set[str] = set()

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> SmtpInbox:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def env(self) -> dict[str, str]:
        return {"KIZUNA_SMTP_HOST": "127.0.0.1", "KIZUNA_SMTP_PORT": str(self.port), "KIZUNA_SMTP_SECURITY": "none",
                "KIZUNA_SMTP_SENDER": "Kizuna <no-reply@kizuna.test>"}

    def messages_to(self, address: str) -> list[tuple[str, Message]]:
        box = mailbox.Maildir(self.directory, create=False)
        found = [(key, email.message_from_bytes(box.get_bytes(key))) for key in box.keys()]
        wanted = address.strip().lower()
        return [(key, m) for key, m in found if wanted in str(m.get("To", "")).lower()]

    async def next_message(self, address: str, timeout: float = 15) -> tuple[str, str]:
        """The subject and text of a message to ``address`` not read before (as a person opens their newest)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for key, message in self.messages_to(address):
                if key in self.read:
                    continue
                self.read.add(key)
                body = message.get_payload(decode=True)
                text = body.decode() if isinstance(body, bytes) else str(body)
                return str(message.get("Subject", "")), text
            await asyncio.sleep(0.05)
        raise AssertionError(f"no new email reached {address} within {timeout}s")

    async def next_link(self, address: str, timeout: float = 15) -> str:
        """The sign-in link in a message to ``address`` not read before."""
        _, text = await self.next_message(address, timeout)
        match = re.search(r"https?://\S+/sign-in/email/\S+", text)
        if match is None:
            raise AssertionError(f"no sign-in link in: {text!r}")
        return match.group(0)
