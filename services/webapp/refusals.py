"""A refusal as a page shows it, in the person's language: a frame that says what kind of refusal it is (its
status and type), the fields it names, and the API's own reason where the catalogue has it in their words.

The API's reasons are English sentences written next to each rule (``Invalid("deadline", "must be in the
future")``); `make messages` extracts them (the Makefile's API_SENTENCES) so they are translated like the pages'
words. A reason with values is written as a template the problem fills from its body members
(``Conflict("the community is full: {size} of {member_cap} places taken", size=…, member_cap=…)``): the page
finds the template its reason fits and says it with the same values. A reason with no entry (an f-string left in
a domain) shows as the frame alone on a Japanese page — or, for a conflict, with the English inside the frame,
since that reason is the whole point of the message.
Input the schema refused (a missing field, a text too long) is said from the error's ``type`` and limits.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from kizuna.errors import Problem

from .i18n import Words, catalogue


def framed(words: Words, problem: Problem, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The refusal for a page: ``message`` (what the page says), ``fields`` (the names the form marks invalid;
    ``labels`` are the page's own names for some, e.g. a community's questions)."""
    errors = [e for e in problem.extensions.get("errors") or [] if isinstance(e, dict)]
    fields = [str(e.get("field", "")).rsplit(".", 1)[-1] for e in errors]
    labels = labels or {}
    sentences = {
        "validation-error": words.gettext("Please check: {fields}.", fields=", ".join(
            labels.get(f) or words.gettext(f"field:{f}") for f in fields) or "—"),
        "not-a-member": words.gettext("You are not a member of this community."),
        "forbidden": words.gettext("You may not do that here."),
        "not-found": words.gettext("That is not here any more."),
        "rate-limited": words.gettext("Too many requests: wait a minute and try again."),
    }
    reason = said(words, problem.detail)
    gap = "" if words.language == "ja" else " "  # between sentences: Japanese puts none after 。
    if problem.status == 422:
        reasons = list(dict.fromkeys(r for r in (_reason(words, e) for e in errors) if r))
        message = gap.join([sentences["validation-error"], *reasons])
    elif problem.status in (409, 410):
        message = words.gettext("That cannot be done now: {detail}", detail=reason or problem.detail)
    elif problem.slug in sentences or problem.status in (403, 404):
        frame = sentences.get(problem.slug) or sentences["forbidden" if problem.status == 403 else "not-found"]
        message = f"{frame}{gap}{reason}" if reason and problem.slug not in ("not-a-member", "rate-limited") else frame
    elif problem.status == 429:
        message = sentences["rate-limited"]
    else:
        message = reason or problem.detail
    return {"status": problem.status, "slug": problem.slug, "fields": fields, "message": message}


def said(words: Words, text: str) -> str | None:
    """The API's sentence in the person's words, or None when the catalogue does not have it (a sentence made
    with values, or one not translated yet) and the person does not read English."""
    if not text:
        return None
    if words.language != "ja":
        return _as_sentence(text)
    translated = catalogue("ja").get(text)
    if translated is not None:
        return translated
    for pattern, template in _templates():
        found = pattern.fullmatch(text)
        if found is not None:
            return catalogue("ja")[template].format(**found.groupdict())
    return None


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Each sentence of the catalogue with ``{placeholders}`` as a pattern that finds its values in a reason
    the API filled (``the community is full: {size} of {member_cap}…`` → size, member_cap)."""
    found = []
    for template in catalogue("ja"):
        parts = re.split(r"(\{\w+\})", template)
        if len(parts) == 1:
            continue
        seen: set[str] = set()
        pattern = ""
        for part in parts:
            name = part[1:-1] if re.fullmatch(r"\{\w+\}", part) else None
            if name is None:
                pattern += re.escape(part)
            elif name in seen:
                pattern += f"(?P={name})"
            else:
                pattern += f"(?P<{name}>.+?)"
                seen.add(name)
        found.append((re.compile(pattern, re.S), template))
    return found


def _reason(words: Words, error: dict[str, Any]) -> str | None:
    kind, message = str(error.get("type") or ""), str(error.get("message") or "")
    if kind == "value_error":  # a model's own check: pydantic puts its frame before the sentence
        return said(words, message.removeprefix("Value error, "))
    key = f"invalid:{kind}"
    if kind and key in words.messages:
        try:
            return words.gettext(key, **(error.get("ctx") or {}))
        except (KeyError, IndexError, ValueError):
            return None
    return said(words, message)


def _as_sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!", "。")) else text + "."
