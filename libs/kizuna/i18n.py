"""Kizuna's pages speak Japanese and English, from Babel message catalogues — the member app's and the sign-in
pages' (each service that serves pages keeps its own ``locales/``).

Catalogues are the ``.po`` files under a ``locales/`` folder (Babel's layout; ``make messages`` extracts new
strings into them), read once — there is no compile step a newcomer must run. Message ids are the English
text, so English needs no catalogue and a string not yet translated shows in English rather than as a key.

Which language: the person's choice (``?lang=`` sets the ``kizuna-lang`` cookie), else the browser's
``Accept-Language``, else Japanese — most of Kizuna's communities are in Japan. Dates and times are formatted
for that locale in the person's time zone (the ``kizuna-tz`` cookie, else Asia/Tokyo).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, dates, numbers
from babel.core import negotiate_locale
from babel.messages.pofile import read_po
from fastapi import Request

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"
DEFAULT_TIME_ZONE = "Asia/Tokyo"


@cache
def read_catalogue(locales: Path, language: str) -> dict[str, str]:
    """msgid → msgstr for a language from a ``locales/`` folder (empty for English, whose ids are the text)."""
    path = locales / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as po:
        messages = read_po(po, locale=language)
    return {str(m.id): str(m.string) for m in messages if m.id and m.string and not m.fuzzy}


def language_of(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get("kizuna-lang")
    if chosen in LANGUAGES:
        return str(chosen)
    wanted = [part.split(";")[0].strip().replace("-", "_")
              for part in request.headers.get("accept-language", "").split(",") if part.strip()]
    return negotiate_locale([w.split("_")[0].lower() for w in wanted], list(LANGUAGES)) or DEFAULT_LANGUAGE


def time_zone_of(request: Request) -> ZoneInfo:
    try:
        return ZoneInfo(request.cookies.get("kizuna-tz") or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


Moment = datetime  # the type, by a name the formatter method ``Words.datetime`` does not hide


class Words:
    """What a template needs to speak the person's language: ``_`` (gettext with ``{name}`` fields), and
    formatters for dates, times and numbers."""

    def __init__(self, language: str, zone: ZoneInfo, messages: dict[str, str]) -> None:
        self.language, self.zone = language, zone
        self.locale = Locale.parse(language)
        self.messages = messages

    def gettext(self, message: str, **fields: Any) -> str:
        text = self.messages.get(message, message)
        return text.format(**fields) if fields else text

    def date(self, value: date | str) -> str:
        day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
        return dates.format_date(day, format="medium", locale=self.locale)

    def datetime(self, value: datetime | str) -> str:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(self.zone)  # a day and a time to the minute: seconds are noise to a person
        return (f"{dates.format_date(local, format='medium', locale=self.locale)} "
                f"{dates.format_time(local, format='short', locale=self.locale)}")

    def local(self, value: Moment | str) -> Moment:
        """A moment as the person's wall clock shows it."""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(self.zone)

    def number(self, value: float) -> str:
        return numbers.format_decimal(value, locale=self.locale)

    def plain(self, value: float) -> str:
        """A number to edit in a form field: no grouping, no needless ".0"."""
        return str(int(value)) if float(value).is_integer() else repr(float(value))

    def percent(self, share: float) -> str:
        return numbers.format_percent(share, locale=self.locale)


def words_for(request: Request, locales: Path) -> Words:
    """The request's words: its language (the person's choice, else the browser's) and time zone, from the
    catalogues in ``locales``."""
    language = language_of(request)
    return Words(language, time_zone_of(request), read_catalogue(locales, language))
