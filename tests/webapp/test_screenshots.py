"""`make screenshots` keeps working: the same pages, taken into a temporary folder, are phone-sized PNGs."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem
from tests.webapp.screenshots import PAGES, take


async def test_the_screenshots_of_the_key_pages_are_taken_in_both_languages(
        community_stack: Ecosystem, inbox: SmtpInbox, tmp_path: Path) -> None:
    fonts = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, check=False).stdout
    assert fonts.strip(), "no Japanese font: `make browser` installs fonts-noto-cjk (else Japanese shows as boxes)"
    taken = await take(community_stack, inbox, tmp_path)
    assert sorted(p.name for p in taken) == sorted(f"{name}-{language}.png" for name, _, language, _ in PAGES)
    for shot in taken:
        header = shot.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", header[16:24])
        assert width == 390 and height >= 844, (shot.name, width, height)
