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
    "join_title": {"ja": "{name} に参加", "en": "Join {name}"},
    "join_title_unknown": {"ja": "コミュニティに参加", "en": "Join a community"},
    "display_name": {"ja": "コミュニティでの表示名", "en": "Your name in this community"},
    "join_button": {"ja": "参加する", "en": "Join"},
    "joined": {"ja": "参加しました。", "en": "You joined."},
    "waitlisted": {"ja": "満員のため待機リストに登録しました。順番が来たらお知らせします。",
                   "en": "The community is full: you are on its waitlist and will be offered a place in turn."},
    "join_failed": {"ja": "参加できませんでした", "en": "Could not join"},
    "claim_title": {"ja": "{name} のメンバーとしてサインイン", "en": "Sign in as your member of {name}"},
    "claim_text": {"ja": "オーナーから受け取ったコードで、このアカウントをあなたのメンバーに結び付けます。",
                   "en": "The code your owner gave you ties this account to your member."},
    "claim_button": {"ja": "これは私です", "en": "This is me"},
    "claimed": {"ja": "結び付けました。", "en": "Done: this account is your member now."},
    "passkeys": {"ja": "パスキー", "en": "Passkeys"},
    "add_passkey": {"ja": "この端末のパスキーを追加", "en": "Add a passkey on this device"},
    "passkey_sign_in": {"ja": "パスキーでサインイン", "en": "Sign in with a passkey"},
    "passkey_failed": {"ja": "パスキーを使えませんでした", "en": "The passkey did not work"},
    "remove": {"ja": "削除", "en": "Remove"},
    "invite_title": {"ja": "{name} への招待", "en": "An invitation to {name}"},
    "invite_title_unknown": {"ja": "コミュニティへの招待", "en": "An invitation to a community"},
    "invite_text": {"ja": "メンバーから招待されています。コミュニティで使う名前を決めて参加してください。",
                    "en": "A member invited you. Choose the name you go by there, and join."},
    "accept_invitation": {"ja": "招待を受けて参加する", "en": "Accept and join"},
    "waiting_title": {"ja": "参加待ちの状況", "en": "My place in the queue"},
    "loading": {"ja": "読み込み中…", "en": "Loading…"},
    "place_position": {"ja": "待機リストの {position} 番目です（{waiting} 人が待っています）。",
                       "en": "You are number {position} of {waiting} waiting."},
    "place_offered": {"ja": "参加枠が提供されています。{until} までに受けるか辞退してください。",
                      "en": "A place is offered to you: take it or decline it by {until}."},
    "place_member": {"ja": "参加しました。", "en": "You are a member now."},
    "take_place": {"ja": "参加枠を受ける", "en": "Take the place"},
    "decline_place": {"ja": "辞退する", "en": "Decline"},
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
