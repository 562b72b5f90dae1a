"""The sign-in pages' words in Japanese and English, and which language a request gets.

A small catalogue of its own until the member app brings Babel catalogues (issue 21): the person's
choice (``?lang=`` or the ``kizuna-lang`` cookie) wins, else the browser's ``Accept-Language``, else Japanese
— most of Kizuna's communities are in Japan.
"""

from __future__ import annotations

from fastapi import Request

LANGUAGES = ("ja", "en")

WORDS: dict[str, dict[str, str]] = {
    "title_sign_in": {"ja": "サインイン", "en": "Sign in"},
    "email_label": {"ja": "メールアドレス", "en": "Email address"},
    "send_link": {"ja": "サインイン用リンクを送る", "en": "Email me a sign-in link"},
    "or_with": {"ja": "または次でサインイン", "en": "Or sign in with"},
    "no_password": {"ja": "パスワードは不要です。届いたリンクを開くだけでサインインできます。",
                    "en": "No password: open the link we email you and you are in."},
    "check_inbox": {"ja": "メールを確認してください", "en": "Check your inbox"},
    "link_sent": {"ja": "{email} にサインイン用リンクを送りました。{minutes} 分以内に開いてください。",
                  "en": "We sent a sign-in link to {email}. Open it within {minutes} minutes."},
    "confirm_title": {"ja": "サインインを続ける", "en": "Continue signing in"},
    "confirm_button": {"ja": "サインイン", "en": "Sign in"},
    "confirm_text": {"ja": "このブラウザでサインインします。", "en": "You are signing in on this browser."},
    "link_invalid": {"ja": "このリンクは使用済みか期限切れです。もう一度リンクを送ってください。",
                     "en": "This link was already used or has expired. Ask for a new one."},
    "my_account": {"ja": "マイアカウント", "en": "My account"},
    "my_communities": {"ja": "参加しているコミュニティ", "en": "My communities"},
    "no_communities": {"ja": "まだどのコミュニティにも参加していません。招待リンクから参加できます。",
                       "en": "You are not in any community yet. Join one with its join link."},
    "waiting": {"ja": "参加待ち", "en": "waiting for a place"},
    "left": {"ja": "退会済み", "en": "left"},
    "role_owner": {"ja": "オーナー", "en": "owner"},
    "role_facilitator": {"ja": "ファシリテーター", "en": "facilitator"},
    "role_member": {"ja": "メンバー", "en": "member"},
    "emails": {"ja": "確認済みのメールアドレス", "en": "Verified email addresses"},
    "where_signed_in": {"ja": "サインイン中の端末", "en": "Where I am signed in"},
    "this_device": {"ja": "この端末", "en": "this device"},
    "since": {"ja": "開始", "en": "since"},
    "revoke": {"ja": "サインアウトさせる", "en": "Sign out there"},
    "sign_out": {"ja": "サインアウト", "en": "Sign out"},
    "passkeys": {"ja": "パスキー", "en": "Passkeys"},
    "add_passkey": {"ja": "この端末のパスキーを追加", "en": "Add a passkey on this device"},
    "passkey_sign_in": {"ja": "パスキーでサインイン", "en": "Sign in with a passkey"},
    "passkey_failed": {"ja": "パスキーを使えませんでした", "en": "The passkey did not work"},
    "remove": {"ja": "削除", "en": "Remove"},
    "see_place": {"ja": "待機状況を見る", "en": "See my place"},
    "invite_by_email": {"ja": "メールで招待する", "en": "Invite someone by email"},
    "invite_email": {"ja": "招待する人のメールアドレス", "en": "Their email address"},
    "invite_send": {"ja": "招待メールを送る", "en": "Send the invitation"},
    "invite_sent": {"ja": "招待メールを送りました。", "en": "Invitation sent."},
    "invite_failed": {"ja": "招待を送れませんでした", "en": "Could not send the invitation"},
    "language": {"ja": "English", "en": "日本語"},
}


def language_of(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get("kizuna-lang")
    if chosen in LANGUAGES:
        return str(chosen)
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "ja"


def words_for(language: str) -> dict[str, str]:
    return {key: texts[language] for key, texts in WORDS.items()}
