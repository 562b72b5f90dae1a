"""The member app's words: every message has its Japanese, keyed ids their English, both keep the same
{placeholders}; the catalogues hold every sentence the pages and the API use (`make messages` was run); and a
refusal reads in the person's language — the API's reason translated, the schema's errors said from their type."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.pofile import read_po

from kizuna.errors import Conflict, Invalid, Problem
from services.webapp.i18n import Words, catalogue
from services.webapp.refusals import framed

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "services/webapp/locales"
PLACEHOLDER = re.compile(r"\{(\w*)\}")


IDENTITY_LOCALES = ROOT / "services/identity/locales"  # the sign-in and account pages'


def _catalogue(language: str, locales: Path = LOCALES) -> dict[str, str]:
    with (locales / language / "LC_MESSAGES/messages.po").open("rb") as po:
        return {str(m.id): str(m.string) for m in read_po(po) if m.id and not m.fuzzy}


def test_the_sign_in_pages_have_every_message_in_japanese_and_all_they_use(tmp_path: Path) -> None:
    japanese, english = _catalogue("ja", IDENTITY_LOCALES), _catalogue("en", IDENTITY_LOCALES)
    assert japanese and set(japanese) == set(english) and all(japanese.values())
    extracted = tmp_path / "identity.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "services/identity/babel.cfg",
                    "--no-location", "--omit-header", "-o", str(extracted), "."], cwd=ROOT, check=True,
                   capture_output=True)
    with extracted.open("rb") as pot:
        assert {str(m.id) for m in read_po(pot) if m.id} <= set(japanese), "run make messages, then translate"


def test_every_message_has_its_japanese_and_every_keyed_id_its_english_with_the_same_placeholders() -> None:
    japanese, english = _catalogue("ja"), _catalogue("en")
    assert set(japanese) == set(english)
    assert not [m for m, text in japanese.items() if not text], "untranslated: run make messages, then translate"
    keyed = [m for m in english if re.fullmatch(r"[a-z]+:[a-z0-9_-]+", m)]
    assert keyed and not [m for m in keyed if not english[m]], "a keyed id needs its English"
    for message, text in japanese.items():
        wanted = set(PLACEHOLDER.findall(english[message] or message))
        assert set(PLACEHOLDER.findall(text)) == wanted, (message, text)


def test_the_catalogues_hold_every_sentence_the_pages_and_the_api_use(tmp_path: Path) -> None:
    """What `make messages` would extract now is all in the template: nobody added a sentence and forgot."""
    makefile = (ROOT / "Makefile").read_text()
    keywords = re.search(r"API_SENTENCES = (.*?)\nmessages:", makefile, re.S)
    assert keywords is not None
    extracted = tmp_path / "now.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    "services/webapp/babel.cfg", "-k", "gettext", "-k", "N_",
                    *keywords.group(1).replace("\\\n", " ").split(), "--no-location", "--omit-header",
                    "-o", str(extracted), "."], cwd=ROOT, check=True, capture_output=True)
    with extracted.open("rb") as pot:
        now = {str(m.id) for m in read_po(pot) if m.id}
    assert now - set(_catalogue("ja")) == set(), "run make messages and translate the new sentences"


def _words(language: str) -> Words:
    return Words(language, ZoneInfo("Asia/Tokyo"), catalogue(language))


def _schema_refusal(**error: object) -> Problem:
    return Problem("invalid", status=422, slug="validation-error", errors=[error])


def test_a_refusal_says_the_api_reason_in_the_person_language() -> None:
    too_long = _schema_refusal(field="title", message="String should have at most 200 characters",
                               type="string_too_long", ctx={"max_length": 200})
    assert framed(_words("ja"), too_long)["message"] == ("入力を確認してください: タイトル。"
                                                         "200 文字以内で入力してください。")
    assert framed(_words("en"), too_long)["message"] == "Please check: Title. At most 200 characters."
    unknown = _schema_refusal(field="colour", message="Extra inputs are not permitted", type="extra_forbidden")
    assert "この項目は受け付けていません。" in framed(_words("ja"), unknown)["message"]

    rule = Invalid("answers.why", "a required answer is missing")
    said = framed(_words("ja"), rule, {"why": "なぜ参加したいですか"})
    assert said["fields"] == ["why"] and said["message"].startswith("入力を確認してください: なぜ参加したいですか")
    assert said["message"] == "入力を確認してください: なぜ参加したいですか。必須の回答が空欄です。"
    assert framed(_words("en"), rule)["message"].endswith("A required answer is missing.")

    conflict = Conflict("this member has already offered", slug="already-offered")
    assert "this member" not in framed(_words("ja"), conflict)["message"]
    assert framed(_words("en"), conflict)["message"] == "That cannot be done now: This member has already offered."
    # A reason with values is a template the problem fills from its body members; the page finds the template
    # and says it with the same values.
    full = Conflict("the community is full: {size} of {member_cap} places taken", slug="community-full", size=150,
                    member_cap=150)
    assert full.detail == "the community is full: 150 of 150 places taken" and full.extensions["size"] == 150
    assert framed(_words("ja"), full)["message"] == ("今はできません: コミュニティは満員です。"
                                                     "定員 150 人のうち 150 人が参加しています。")
    cap = Invalid("member_cap", "cannot be below the current size of {size} members", size=12)
    assert cap.detail == "member_cap: cannot be below the current size of 12 members"
    assert framed(_words("ja"), cap)["message"] == ("入力を確認してください: メンバーの上限。"
                                                    "現在のメンバー数 12 人を下回る定員にはできません。")
    # One still made with an f-string has no entry: a conflict keeps it in English inside the Japanese frame.
    made = Conflict("the job request is completed", slug="invalid-transition")
    assert framed(_words("ja"), made)["message"] == "今はできません: the job request is completed"
