"""What each notification says, in Japanese or English, in the person's time zone: a subject, a few lines and
the link that acts on it. The same words serve the email and the member app's inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, dates


@dataclass(frozen=True)
class Message:
    subject: str
    lines: list[str]
    path: str


def compose(kind: str, facts: dict[str, Any], language: str, zone: str) -> Message:
    ja = language == "ja"
    words = _Words(ja, zone)
    subject, lines = WRITERS[kind](facts, words)
    return Message(subject=f"[{facts.get('community') or 'Kizuna'}] {subject}", lines=lines,
                   path=str(facts.get("path") or "/app"))


class _Words:
    def __init__(self, ja: bool, zone: str) -> None:
        self.ja, self.zone, self.locale = ja, ZoneInfo(zone), Locale.parse("ja" if ja else "en")

    def __call__(self, ja: str, en: str) -> str:
        return ja if self.ja else en

    def when(self, value: str | None) -> str:
        if not value:
            return ""
        local = datetime.fromisoformat(value).astimezone(self.zone)
        return (f"{dates.format_date(local, format='medium', locale=self.locale)} "
                f"{dates.format_time(local, format='short', locale=self.locale)}")

    def day(self, value: str | None) -> str:
        """A day with no time (a delivery day, a help shift), as people say it: with its weekday."""
        return dates.format_date(date.fromisoformat(value), format="full", locale=self.locale) if value else ""


Writer = Callable[[dict[str, Any], _Words], tuple[str, list[str]]]


def _place_offered(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    until = t.when(f.get("expires_at"))
    return (t("空きが出ました：参加できます", "A place is yours if you want it"),
            [t(f"{f['community']}に空きが出て、あなたに案内されています。",
               f"A place in {f['community']} is offered to you."),
             t(f"{until}までに、参加するかどうかを答えてください。", f"Please say yes or no by {until}.")])


def _application_decided(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    reason = [t(f"ひとこと：{f['reason']}", f"They wrote: {f['reason']}")] if f.get("reason") else []
    if f.get("approved"):
        return t("参加が決まりました", "You are in"), [
            t(f"{f['community']}への申し込みが承認されました。ようこそ。", f"Your application to {f['community']} was "
              "approved. Welcome."), *reason]
    return t("申し込みの結果", "About your application"), [
        t(f"{f['community']}への申し込みは、今回は見送られました。", f"Your application to {f['community']} was "
          "declined this time."), *reason]


def _application_received(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t(f"{f['name']}さんから参加の申し込み", f"{f['name']} applied to join"),
            [t("答えを読んで、迎えるか見送るかを決めてください。", "Read their answers and welcome them or decline.")])


def _job_offer(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    if f.get("referred_by"):
        return (t(f"「{f['title']}」に{f['name']}さんが紹介されました", f"{f['name']} was referred to “{f['title']}”"),
                [t(f"{f['referred_by']}さんが、{f['name']}さんを紹介しました。",
                   f"{f['referred_by']} thinks {f['name']} is right for it.")])
    return (t(f"「{f['title']}」に申し出がありました", f"An offer to help with “{f['title']}”"),
            [t(f"{f['name']}さんが手伝いを申し出ています。", f"{f['name']} offered to help.")])


def _job_assigned(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t(f"「{f['title']}」をお願いされました", f"You were asked to do “{f['title']}”"),
            [t("依頼した人があなたにお願いしました。", "The person who asked chose you.")])


def _introduced(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    note = [f["note"]] if f.get("note") else []
    return (t(f"{f['referrer']}さんからの紹介", f"{f['referrer']} would like to introduce you"),
            [t(f"{f['referrer']}さんが、あなたを{f['to']}さんに紹介したいそうです。",
               f"{f['referrer']} would like to introduce you to {f['to']}."), *note])


def _feedback_received(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t("フィードバックが届きました", "You received feedback"),
            [t(f"「{f['title']}」についてのフィードバックが届きました。",
               f"Someone gave you feedback on “{f['title']}”.")])


def _session_promoted(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t(f"「{f['title']}」に参加できます", f"You have a place in “{f['title']}”"),
            [t(f"キャンセル待ちから繰り上がりました：{t.when(f.get('starts_at'))}",
               f"A place freed up for you: {t.when(f.get('starts_at'))}")])


def _session_changed(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    reason = [t(f"理由：{f['reason']}", f"Why: {f['reason']}")] if f.get("reason") else []
    if f.get("cancelled"):
        return t(f"「{f['title']}」は中止になりました", f"“{f['title']}” is called off"), reason
    where = f" · {f['place']}" if f.get("place") else ""
    return (t(f"「{f['title']}」の日時が変わりました", f"“{f['title']}” has moved"),
            [t(f"新しい日時：{t.when(f.get('starts_at'))}{where}", f"Now: {t.when(f.get('starts_at'))}{where}"),
             *reason])


def _webhook_disabled(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t("Webhookを停止しました", "A webhook was disabled"),
            [t(f"{f['url']} への送信が続けて失敗したため停止しました。", f"Deliveries to {f['url']} kept failing, "
               "so they were stopped."), f.get("reason", ""),
             t("直ったら、再開するとたまった分から順に届きます。", "Once it is fixed, enable it again: what waited "
               "is delivered in order.")])


def _session_reminder(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    where = f" · {f['place']}" if f.get("place") else ""
    return (t(f"もうすぐ「{f['title']}」です", f"“{f['title']}” is coming up"),
            [t(f"{t.when(f.get('starts_at'))}{where}", f"{t.when(f.get('starts_at'))}{where}"),
             t("来られなくなったら、キャンセルすると待っている人に席が回ります。",
               "If you cannot come, cancel: your place goes to the next person waiting.")])


def _offer_reminder(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    until = t.when(f.get("expires_at"))
    return (t("案内された空きの期限が近づいています", "The place offered to you lapses soon"),
            [t(f"{f['community']}の空きは{until}まであなたのものです。答えがないと次の人に回ります。",
               f"The place in {f['community']} is yours until {until}; without an answer it goes to the next "
               "person.")])


def _session_registered(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    where = f" · {f['place']}" if f.get("place") else ""
    when = f"{t.when(f.get('starts_at'))}{where}"
    if f.get("position"):
        return (t(f"「{f['title']}」のキャンセル待ち（{f['position']}番目）",
                  f"You are number {f['position']} on the waitlist for “{f['title']}”"),
                [when, t("席が空いたら、お知らせします。", "If a place frees up, you will hear of it.")])
    return (t(f"「{f['title']}」の席を取りました", f"A place for you in “{f['title']}”"),
            [when, t("来られなくなったら、キャンセルすると待っている人に席が回ります。",
                     "If you cannot come, cancel: your place goes to the next person waiting.")])


def _job_status(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    if f.get("state") == "started":
        return (t(f"「{f['title']}」が始まりました", f"“{f['title']}” has started"),
                [t("依頼が進行中になりました。", "The job is under way.")])
    if f.get("state") == "completed":
        return (t(f"「{f['title']}」が完了しました", f"“{f['title']}” is done"),
                [t("おつかれさまでした。一緒に取り組んだ人へのフィードバックをどうぞ。",
                   "Thank you. You can now give feedback to the people you worked with.")])
    reason = [t(f"理由：{f['reason']}", f"Why: {f['reason']}")] if f.get("reason") else []
    return (t(f"「{f['title']}」は取りやめになりました", f"“{f['title']}” was called off"),
            [t("依頼した人が取りやめました。", "The person who asked called it off."), *reason])


def _introduction_outcome(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    to_ja, to_en = (f"{f['to']}さんへの", f" to {f['to']}") if f.get("to") else ("", "")
    note = [f["note"]] if f.get("note") else []
    outcome = f.get("outcome")
    if outcome == "accepted":
        return (t(f"{f['name']}さんが紹介を受けました", f"{f['name']} accepted your introduction"),
                [t(f"{f['name']}さんが、あなたからの{to_ja}紹介を受けました。",
                   f"{f['name']} accepted your introduction{to_en}.")])
    if outcome == "declined":
        return (t(f"{f['name']}さんは紹介を見送りました", f"{f['name']} declined your introduction"),
                [t(f"{f['name']}さんは、あなたからの{to_ja}紹介を今回は見送りました。",
                   f"{f['name']} declined your introduction{to_en} this time."), *note])
    if outcome == "worked":
        return (t(f"{f['name']}さんの紹介はうまくいきました", f"Your introduction of {f['name']} worked out"),
                [t("紹介の結果が記録されました：うまくいきました。", "How it went was recorded: it worked."), *note])
    return (t(f"{f['name']}さんの紹介の結果", f"How your introduction of {f['name']} went"),
            [t("紹介の結果が記録されました：今回はうまくいきませんでした。",
               "How it went was recorded: it did not work out this time."), *note])


def _goal_checkin_due(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    since = t.when(f.get("quiet_since"))
    return (t(f"「{f['statement']}」の進み具合はいかがですか", f"How is “{f['statement']}” going?"),
            [t(f"最後の記録は{since}です。", f"Your last check-in was {since}.") if f.get("checked_in") else
             t(f"目標を立てたのは{since}です。", f"You set this goal on {since}."),
             t("数字をひとつ記録するだけでも、いまの位置が見えます。",
               "Recording a number or two is enough to see where you are.")])


def _offering_deadline(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    until = t.when(f.get("deadline"))
    standing = t(f"いま{f['committed']}口です（最低{f['minimum_shares']}口で実施）。",
                 f"{f['committed']} shares are committed; it goes ahead at {f['minimum_shares']}.")
    if f.get("producer"):
        return (t(f"「{f['title']}」の申し込みは{until}に締め切ります", f"Commitments to “{f['title']}” close {until}"),
                [standing])
    return (t(f"「{f['title']}」の申し込みは{until}に締め切ります", f"Commitments to “{f['title']}” close {until}"),
            [standing, t("締め切りまでは取り消せます。締め切ると、申し込みは約束になります。",
                         "Until then you can still withdraw; after it, your commitment holds.")])


def _offering_decided(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    if f.get("confirmed"):
        return (t(f"「{f['title']}」は実施が決まりました", f"“{f['title']}” goes ahead"),
                [t(f"締め切りまでに{f['committed']}口が集まりました（最低{f['minimum_shares']}口）。",
                   f"{f['committed']} shares were committed by the deadline (the minimum was "
                   f"{f['minimum_shares']}).")])
    return (t(f"「{f['title']}」は見送りになりました", f"“{f['title']}” will not go ahead"),
            [t(f"締め切りまでに最低{f['minimum_shares']}口に届きませんでした（{f['committed']}口）。",
               f"It fell short of the {f['minimum_shares']} shares it needed ({f['committed']}) by the deadline."),
             t("申し込みはすべて解除されました。", "Every commitment is released.")])


def _offering_coming(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    day = t.day(f.get("day"))
    if f.get("shift"):
        what = [f["what"]] if f.get("what") else []
        return (t(f"{day}は「{f['title']}」のお手伝いの日です", f"Your help shift for “{f['title']}” is on {day}"),
                [t(f"場所：{f['place']}", f"Where: {f['place']}"), *what,
                 t("行けなくなったら、早めに取り消してください。", "If you cannot come, cancel it soon.")])
    return (t(f"{day}は「{f['title']}」のお届け日です", f"“{f['title']}” is delivered on {day}"),
            [t("受け取りの準備をお願いします。", "Please be ready to receive your share.")])


def _partner_job_match(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    skills = t("、", ", ").join(f.get("skills") or [])
    return (t(f"{f['partner']}から、あなたのスキルに合う依頼", f"A job from {f['partner']} that needs your skills"),
            [t(f"「{f['title']}」（{skills}）", f"“{f['title']}” ({skills})"),
             t("手伝えそうなら、パートナーの依頼のページから申し出てください。",
               "If you can help, offer from the partner jobs page.")])


def _community_near_cap(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    return (t("メンバーが上限の90%に達しました", "The community is at 90 % of its member cap"),
            [t(f"メンバー{f['members']}人（上限{f['cap']}人）。", f"{f['members']} members of {f['cap']}."),
             t("上限を上げるか、姉妹コミュニティを作るか、話し合うときかもしれません。",
               "It may be time to talk about raising the cap or founding a sister community.")])


def _partnership_proposed(f: dict[str, Any], t: _Words) -> tuple[str, list[str]]:
    note = [f["note"]] if f.get("note") else []
    if f.get("by_us"):
        return (t(f"{f['partner']}にパートナー提携を提案しました", f"A link with {f['partner']} was proposed"),
                [t(f"{f['community']}から{f['partner']}への提携の提案が送られ、返事を待っています。",
                   f"{f['community']} proposed to link with {f['partner']}; it waits for their answer."), *note])
    return (t(f"{f['partner']}からパートナー提携の申し込み", f"{f['partner']} would like to link with you"),
            [t(f"{f['partner']}が{f['community']}との提携を申し込んでいます。受けるかどうかを決めてください。",
               f"{f['partner']} proposed to link with {f['community']}. Accept or decline it."), *note])


WRITERS: dict[str, Writer] = {
    "place-offered": _place_offered, "application-decided": _application_decided,
    "application-received": _application_received, "job-offer": _job_offer, "job-assigned": _job_assigned,
    "introduced": _introduced, "feedback-received": _feedback_received, "session-promoted": _session_promoted,
    "session-changed": _session_changed, "webhook-disabled": _webhook_disabled,
    "session-reminder": _session_reminder, "offer-reminder": _offer_reminder,
    "session-registered": _session_registered, "job-status": _job_status,
    "introduction-outcome": _introduction_outcome, "goal-checkin-due": _goal_checkin_due,
    "offering-deadline": _offering_deadline, "offering-decided": _offering_decided,
    "offering-coming": _offering_coming, "partner-job-match": _partner_job_match,
    "community-near-cap": _community_near_cap, "partnership-proposed": _partnership_proposed,
}
