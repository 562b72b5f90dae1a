"""The member app's catalogues (``locales/``) and its words for a request; the machinery is ``kizuna.i18n``,
which the sign-in pages share."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from kizuna import i18n
from kizuna.i18n import Words, time_zone_of

LOCALES = Path(__file__).parent / "locales"

__all__ = ["LOCALES", "Words", "catalogue", "time_zone_of", "words_for"]


def catalogue(language: str) -> dict[str, str]:
    return i18n.read_catalogue(LOCALES, language)


def words_for(request: Request) -> Words:
    return i18n.words_for(request, LOCALES)
