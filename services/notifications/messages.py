"""What each notification says, in Japanese or English, in the person's time zone: a subject, a few lines and
the link that acts on it. The same words serve the email and the member app's inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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


WRITERS: dict[str, Writer] = {
    "place-offered": _place_offered, "application-decided": _application_decided,
    "application-received": _application_received, "job-offer": _job_offer, "job-assigned": _job_assigned,
    "introduced": _introduced, "feedback-received": _feedback_received, "session-promoted": _session_promoted,
    "session-changed": _session_changed, "webhook-disabled": _webhook_disabled,
    "session-reminder": _session_reminder, "offer-reminder": _offer_reminder,
}
