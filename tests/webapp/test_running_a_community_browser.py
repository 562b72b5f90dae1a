"""Running a community from a phone (issue 21): a facilitator schedules, moves and calls off sessions and takes
attendance; a member follows their sessions in a calendar app through a secret address; the owner decides how
people come in and partners with another community. Real services, Debian's Chromium at 390 px, axe-core on
every page; the calendar feed is fetched as a calendar app would, with no cookie and no token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from icalendar import Calendar

from tests.support import Ecosystem, eventually
from tests.webapp.phones import FULL_WIDTH, checked, given_role, member_id_of, phones

TOKYO = ZoneInfo("Asia/Tokyo")


async def _feed(address: str) -> Calendar | int:
    """The calendar as a calendar app fetches it (webcal:// is https:// or http:// on the wire), or the status."""
    async with httpx.AsyncClient(timeout=30) as calendar_app:
        answer = await calendar_app.get(address)
    if answer.status_code != 200:
        return answer.status_code
    assert answer.headers["content-type"].startswith("text/calendar")
    return Calendar.from_ical(answer.content)


def _events(calendar: Calendar | int) -> dict[str, dict[str, object]]:
    assert not isinstance(calendar, int), calendar
    return {str(e["summary"]): {"start": e.decoded("dtstart"), "status": str(e["status"]),
                                "sequence": int(str(e["sequence"]))} for e in calendar.walk("VEVENT")}


async def test_a_facilitator_schedules_moves_and_calls_off_sessions_and_a_member_follows_them_in_a_calendar(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    await given_role(community_stack, cid, await member_id_of(hana, cid), "facilitator")
    async with phones(community_stack, (hana, "en"), (ken, "ja")) as (hana_page, ken_page):
        await hana_page.goto(f"{gateway}/app/c/{cid}/sessions")
        await checked(hana_page)
        schedule = hana_page.locator("#schedule-form")
        await schedule.get_by_label("Title").fill("Evening circle")
        await schedule.get_by_label("Kind of session").select_option(label="group coaching")
        await schedule.get_by_label("Day", exact=True).fill("2031-06-01")
        await schedule.get_by_label("From (Asia/Tokyo)").fill("19:00")
        await schedule.get_by_label("Until", exact=True).fill("21:00")
        await schedule.get_by_label("Where", exact=True).fill("Kominka, Kamakura")
        await schedule.get_by_label("Places").fill(FULL_WIDTH["8"])
        await hana_page.get_by_role("button", name="Schedule the session").click()
        await hana_page.locator("#sessions", has_text="Evening circle").wait_for()
        assert "8 places left" in await hana_page.locator("#sessions").inner_text()
        # A session that ends before it starts is refused on the page, naming the field; nothing is scheduled.
        await schedule.get_by_label("Title").fill("Backwards")
        await schedule.get_by_label("Day", exact=True).fill("2031-06-02")
        await schedule.get_by_label("From (Asia/Tokyo)").fill("21:00")
        await schedule.get_by_label("Until", exact=True).fill("19:00")
        await hana_page.get_by_role("button", name="Schedule the session").click()
        await hana_page.locator("#problem", has_text="Please check").wait_for()
        assert "Backwards" not in await hana_page.locator("#sessions").inner_text()

        await ken_page.goto(f"{gateway}/app/c/{cid}/sessions")
        await ken_page.get_by_role("button", name="申し込む: Evening circle").click()
        await ken_page.get_by_text("参加が確定しています。").wait_for()
        await ken_page.get_by_role("link", name="セッションをカレンダーに入れる").click()
        await checked(ken_page)
        await ken_page.get_by_role("button", name="カレンダーのアドレスを作る").click()
        await ken_page.locator("#made").wait_for()
        await checked(ken_page)
        first = await ken_page.locator("#feed-address").input_value()
        webcal = await ken_page.locator("#webcal").get_attribute("href")
        assert webcal == "webcal://" + first.split("://", 1)[1]
        circle = _events(await _feed(first))["Evening circle"]
        assert circle["start"] == datetime(2031, 6, 1, 19, 0, tzinfo=TOKYO) and circle["status"] == "CONFIRMED"

        await hana_page.get_by_text("Move or call off: Evening circle").click()
        await hana_page.locator("#sessions form[action$='/reschedule'] input[name=start]").fill("20:00")
        await hana_page.locator("#sessions form[action$='/reschedule'] input[name=end]").fill("22:00")
        await hana_page.locator("#sessions form[action$='/reschedule'] input[name=reason]").fill("the room is late")
        await hana_page.get_by_role("button", name="Move the session").click()
        await hana_page.locator("#sessions", has_text="Jun 1, 2031 8:00 PM").wait_for()  # English, Tokyo time
        moved = _events(await _feed(first))["Evening circle"]
        assert moved["start"] == datetime(2031, 6, 1, 20, 0, tzinfo=TOKYO)
        assert int(str(moved["sequence"])) > int(str(circle["sequence"]))  # calendars take the newer one

        # A new address replaces the old one: whoever kept the old one sees nothing more.
        await ken_page.get_by_role("button", name="カレンダーのアドレスを作り直す").click()
        second = await ken_page.locator("#feed-address").input_value()
        assert second != first and await _feed(first) == 404
        assert "Evening circle" in _events(await _feed(second))

        await hana_page.get_by_text("Move or call off: Evening circle").click()
        await hana_page.locator("#sessions form[action$='/called-off'] input[name=reason]").fill("typhoon")
        await hana_page.get_by_role("button", name="Call off: Evening circle").click()
        await hana_page.get_by_text("No sessions scheduled.").wait_for()
        assert _events(await _feed(second))["Evening circle"]["status"] == "CANCELLED"
    async with httpx.AsyncClient(timeout=30) as stranger:  # a made-up address answers like a replaced one
        assert (await stranger.get(f"{gateway}/v1/calendar/{'x' * 43}.ics")).status_code == 404


async def test_a_facilitator_takes_attendance_and_the_members_have_ties(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    hana_id, ken_id = await member_id_of(hana, cid), await member_id_of(ken, cid)
    await given_role(community_stack, cid, hana_id, "facilitator")
    began = datetime.now(UTC) - timedelta(minutes=30)
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        scheduled = await operator.post(f"/v1/communities/{cid}/sessions", json={
            "kind": "share-meeting", "title": "Morning share", "starts_at": began.isoformat(),
            "ends_at": (began + timedelta(hours=1)).isoformat(), "time_zone": "Asia/Tokyo", "capacity": 10,
            "place": "Community kitchen"})
        assert scheduled.status_code == 201, scheduled.text
        sid = scheduled.json()["session_id"]
        for member in (hana_id, ken_id):
            registered = await operator.post(f"/v1/communities/{cid}/sessions/{sid}/registrations",
                                             json={"member_id": member})
            assert registered.status_code in (200, 201), registered.text
    async with phones(community_stack, (hana, "ja")) as (page,):
        await page.goto(f"{gateway}/app/c/{cid}/stewarding")
        assert "Ken" in await page.locator("#drifting").inner_text()
        await page.goto(f"{gateway}/app/c/{cid}/sessions")
        await checked(page)
        attendance = page.locator("#attendance")
        assert "Hana" in await attendance.inner_text() and "Ken" in await attendance.inner_text()
        await page.get_by_role("button", name="出席を保存する：Morning share").click()
        await page.wait_for_url("**#taken")
        assert await page.locator("#attendance").count() == 0  # taken once; nothing left to take

        async def tied() -> bool:
            await page.goto(f"{gateway}/app/c/{cid}/stewarding")
            drifting = await page.locator("#drifting").inner_text()
            return "Ken" not in drifting and "Hana" not in drifting and "Yui" in drifting  # Yui was not there

        await eventually(tied)


async def test_the_owner_decides_how_people_come_in_and_partners_with_another_community(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    from tests.federation.test_local_links import found, propose

    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    await given_role(community_stack, cid, await member_id_of(hana, cid), "owner")
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        kaki, kaki_owner = await found(http, community_stack, "Kaki growers")
        yuzu, _ = await found(http, community_stack, "Yuzu weavers")
        proposal = await propose(http, community_stack, kaki, kaki_owner, cid)
        assert (await ken.get(f"/app/c/{cid}/partners")).status_code == 403  # a member: not for him

        async with phones(community_stack, (hana, "ja")) as (page,):
            await page.goto(f"{gateway}/app/c/{cid}/stewarding")
            await checked(page)
            await page.get_by_label("申し込みを審査する").check()
            await page.get_by_label("申し込む人への質問（1行に1つ）").fill("参加したい理由\nつくっているもの")
            await page.locator("#offer_hours").fill(FULL_WIDTH["0"])
            await page.locator("#admission-reason").fill("知られてきたので")
            await page.get_by_role("button", name="参加のしかたを保存する").click()
            await page.locator(".problem", has_text="返事を待つ時間").wait_for()
            assert await page.get_by_label("申し込みを審査する").is_checked()  # what was typed is kept
            assert "つくっているもの" in await page.get_by_label("申し込む人への質問（1行に1つ）").input_value()
            await page.locator("#offer_hours").fill(FULL_WIDTH["48"])
            await page.locator("#admission-reason").fill("知られてきたので")
            await page.get_by_role("button", name="参加のしかたを保存する").click()
            await page.wait_for_url("**#admission")
            admission = (await http.get(f"/v1/join/{cid}")).json()
            assert admission["policy"] == "application" and admission["offer_ttl_seconds"] == 48 * 3600
            assert [q["text"] for q in admission["questions"]] == ["参加したい理由", "つくっているもの"]

            await page.get_by_role("link", name="提携コミュニティ").click()
            await page.locator(f"#partnership-{proposal}", has_text="提案が届いています").wait_for()
            await checked(page)
            await page.get_by_role("button", name="Kaki growersとの提携を受ける").click()
            await page.locator(f"#partnership-{proposal}", has_text="提携中").wait_for()
            await page.get_by_label("相手のコミュニティID").fill(yuzu)
            await page.locator("#sends-offerings").uncheck()
            await page.get_by_label("相手のオーナーへのひとこと").fill("織物と仕事を分かち合いましょう")
            await page.get_by_role("button", name="提携を提案する").click()
            await page.locator("#partnerships", has_text="Yuzu weavers").wait_for()
            assert "提案中" in await page.locator("#partnerships").inner_text()
            await page.locator(f"#partnership-{proposal} input[name=reason]").first.fill("季節が終わりました")
            await page.get_by_role("button", name="Kaki growersとの提携を終える").click()
            await page.locator(f"#partnership-{proposal}", has_text="終了").wait_for()
            await checked(page)
        listed = await http.get(f"/v1/communities/{yuzu}/partnerships",
                                headers=community_stack.operator_headers())
        [incoming] = listed.json()
        assert incoming["status"] == "requested" and incoming["receives"] == ["job_requests", "referrals"]


async def test_the_health_page_shows_how_the_community_is_doing_with_the_actions_in_reach(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    await given_role(community_stack, cid, await member_id_of(hana, cid), "owner")
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        capped = await operator.put(f"/v1/communities/{cid}/cap", json={"member_cap": 3, "reason": "a small room"})
        assert capped.status_code == 200, capped.text
    assert (await ken.get(f"/app/c/{cid}/health")).status_code == 403  # a member: not for him
    async with phones(community_stack, (hana, "en")) as (page,):
        async def full() -> bool:  # the cap reaches the gateway's read model over the bus
            await page.goto(f"{gateway}/app/c/{cid}/stewarding")
            await page.get_by_role("link", name="How the community is doing").click()
            return await page.locator("#near-cap").count() == 1

        await eventually(full)
        await checked(page)
        text = await page.locator("main").inner_text()
        assert "3 of 3 members" in text and "3 joined in the last 30 days" in text
        assert "1.5 members for each owner or facilitator" in text  # Hana owns; Yui, who handed it over, facilitates
        few = await page.locator("#few-ties").inner_text()
        assert "Ken" in few and "Hana" in few
        await page.get_by_role("link", name="Introduce them to someone").click()
        await page.get_by_role("heading", name="Introductions", exact=True).wait_for()
        await page.go_back()
        await page.locator("#near-cap").get_by_role("link", name="Change the member cap").click()
        await page.get_by_label("At most (now 3 members)").wait_for()
