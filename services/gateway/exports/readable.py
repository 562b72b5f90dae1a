"""The export as a document a person can read: one self-contained HTML page in their language (Japanese or
English), every section of the JSON with its rows and events, nothing loaded from anywhere (its one style is
inline and allowed by its hash, so the page needs no 'unsafe-inline')."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

STYLE = ("body{font-family:system-ui,'Hiragino Sans','Noto Sans CJK JP',sans-serif;margin:0 auto;max-width:48rem;"
         "padding:1rem;line-height:1.6;color:#1d1d1f}h1{font-size:1.5rem}h2{font-size:1.25rem;margin-top:2rem;"
         "border-bottom:2px solid #c8553d}h3{font-size:1.1rem;margin-top:1.5rem}h4{font-size:1rem;margin:1rem 0 .25rem}"
         "dl{display:grid;grid-template-columns:minmax(6rem,max-content) 1fr;gap:.1rem .75rem;margin:.25rem 0 .75rem;"
         "padding:.5rem;background:#f6f3ee;border-radius:.4rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}"
         "ol{padding-left:1.25rem}.note{color:#555}")
STYLE_CSP = "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"
CONTENT_SECURITY_POLICY = f"default-src 'none'; style-src {STYLE_CSP}; frame-ancestors 'none'"

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "What Kizuna holds about you", "generated": "Made on", "export": "Export",
        "intro": "Everything this Kizuna deployment holds about you: your account, and in each community you "
                 "belong or belonged to, what each part of Kizuna keeps about you and the recorded events that "
                 "name you. The same data is in the JSON file of this export.",
        "account": "Your account", "emails": "Email addresses", "identities": "Sign-in providers",
        "passkeys": "Passkeys", "signed_in": "Where you are signed in", "operator": "Operator rights",
        "community_accounts": "Your accounts in communities", "yes": "yes", "no": "no", "none": "none",
        "community": "Community", "member_id": "Your member id there", "standing": "Standing",
        "records": "What is kept", "events": "Recorded events that name you",
        "withheld": "Events that name you but show others' data, not included (ask the operator)",
        "account_events": "Recorded events of your account", "at": "at",
        "service:identity": "Account", "service:members": "Membership", "service:referrals":
        "Jobs, introductions, feedback and offerings", "service:sessions": "Sessions and goals",
        "service:notifications": "Notifications", "service:gateway": "Tokens and partner communities",
        "active": "member", "left": "left", "waiting": "waiting for a place",
        "person_parts": "About you (in every community)", "preferences": "How you hear about things",
        "unsubscribe_links": "Unsubscribe links", "digest_waiting": "Waiting for your daily digest",
        "digests_sent": "Daily digests sent",
    },
    "ja": {
        "title": "絆があなたについて保存しているデータ", "generated": "作成日時", "export": "エクスポート",
        "intro": "この絆があなたについて保存しているすべてのデータです。あなたのアカウントと、参加している"
                 "（または参加していた）各コミュニティで、絆の各部分が保存しているデータと、あなたの名前が出てくる"
                 "記録済みイベント。同じデータがこのエクスポートの JSON ファイルにも入っています。",
        "account": "あなたのアカウント", "emails": "メールアドレス", "identities": "サインインに使うプロバイダー",
        "passkeys": "パスキー", "signed_in": "サインイン中の端末", "operator": "運営者の権限",
        "community_accounts": "コミュニティごとのアカウント", "yes": "あり", "no": "なし", "none": "なし",
        "community": "コミュニティ", "member_id": "そこでのメンバー ID", "standing": "状態",
        "records": "保存しているデータ", "events": "あなたの名前が出てくる記録済みイベント",
        "withheld": "あなたの名前が出てくるが他の人のデータを含むため、ここに入れていないイベント"
                    "（運営者にお問い合わせください）",
        "account_events": "アカウントの記録済みイベント", "at": "日時",
        "service:identity": "アカウント", "service:members": "メンバーシップ",
        "service:referrals": "仕事の依頼・紹介・フィードバック・予約販売", "service:sessions": "セッションと目標",
        "service:notifications": "お知らせ", "service:gateway": "トークンとパートナーコミュニティ",
        "active": "メンバー", "left": "退会済み", "waiting": "空き待ち",
        "membership": "メンバー情報", "applications": "参加申請", "waitlist": "空き待ち",
        "place_offers": "空きの案内",
        "invitations": "招待", "jobs": "仕事の依頼", "feedback_given": "送ったフィードバック",
        "feedback_received": "受け取ったフィードバック", "introductions": "紹介",
        "offerings_published": "出品した予約販売", "commitments": "予約",
        "offering_feedback": "予約販売へのフィードバック",
        "partner_job_offers": "パートナーの仕事への申し出", "partner_pledges": "パートナーの予約販売への予約",
        "roster": "名簿の写し", "sessions": "セッション",
        "attendance": "出席", "goals": "目標", "calendar_links": "カレンダーのアドレス", "notifications": "お知らせ",
        "email_address": "メールアドレス", "directory": "名簿の写し",
        "person_parts": "あなた個人について（コミュニティを問わず）", "preferences": "お知らせの受け取り方",
        "unsubscribe_links": "配信停止リンク", "digest_waiting": "まとめ便を待っているお知らせ",
        "digests_sent": "送ったまとめ便",
    },
}

_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _shown(value: Any) -> str:
    """A value as a line of text: words as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(document: dict[str, Any], language: str) -> str:
    words = WORDS.get(language, WORDS["en"])

    def word(key: str) -> str:
        return words.get(key) or WORDS["en"].get(key) or key.replace("_", " ")

    return _templates.get_template("export.html").render(
        doc=document, identity=document.get("identity") or {}, w=word, shown=_shown, style=STYLE, lang=language)
