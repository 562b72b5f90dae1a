"""A real SMTP server for the tests: aiosmtpd (from PyPI) in its own process, delivering every message it
accepts into a Maildir that the tests read as a person reads their inbox."""

from __future__ import annotations

import asyncio
import email
import mailbox
import re
import socket
import subprocess
import sys
import time
from email.message import Message
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpInbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.read: set[str] = set()

    def start(self) -> SmtpInbox:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.directory, create=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    if conn.recv(3) == b"220":
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the SMTP server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

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
