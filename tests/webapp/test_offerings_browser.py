"""Offerings from a phone (issue 21): a producer publishes shares of what she makes, members sign up to help at
the busy time and read her news; after the deadline she records each delivery (a short harvest is a smaller
portion) and a member who received one gives lead-user feedback she then reads. Real services, Debian's
Chromium at 390 px, axe-core on every page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.identity.journey import community_token, csrf
from tests.support import Ecosystem, eventually
from tests.webapp.phones import FULL_WIDTH, checked, phones


async def test_a_producer_publishes_members_help_and_after_the_harvest_she_records_deliveries_and_reads_feedback(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    async with phones(community_stack, (hana, "ja"), (ken, "en")) as (hana_page, ken_page):
        await hana_page.goto(f"{gateway}/app/c/{cid}/offerings")
        await hana_page.get_by_role("link", name="つくるものを予約販売する").click()
        await checked(hana_page)
        await hana_page.get_by_label("タイトル").fill("秋の新米")
        await hana_page.get_by_label("シーズン").fill("2031年秋")
        await hana_page.get_by_label("シェア数", exact=True).fill("10")
        await hana_page.locator("#minimum_shares").fill("20")  # more than there are: refused, naming the field
        await hana_page.get_by_label("1シェアの値段").fill("5000")
        await hana_page.get_by_label("申し込みの締め切り日").fill("2031-09-01")
        await hana_page.locator("#delivery_dates").fill("2031-10-01、2031-10-15")
        await hana_page.locator("#shift_day").fill("2031-09-20")
        await hana_page.locator("#shift_place").fill("棚田")
        await hana_page.locator("#shift_hands").fill("2")
        await hana_page.locator("#shift_what").fill("稲刈り")
        await hana_page.get_by_role("button", name="予約販売を始める").click()
        await hana_page.locator("#problem", has_text="最低シェア数").wait_for()
        assert await hana_page.locator("#shift_what").input_value() == "稲刈り"  # what was typed is kept
        await hana_page.locator("#minimum_shares").fill("2")
        await hana_page.get_by_role("button", name="予約販売を始める").click()
        await hana_page.get_by_role("heading", name="秋の新米").wait_for()
        assert await hana_page.locator("#offering-status").inner_text() == "受付中"
        assert "あと2人（全2人）" in await hana_page.locator("#shifts").inner_text()
        await checked(hana_page)
        await hana_page.get_by_label("いまの様子").fill("苗を植えました")
        await hana_page.get_by_role("button", name="様子を伝える").click()
        await hana_page.locator("#progress", has_text="苗を植えました").wait_for()
        rice_page = hana_page.url

        await ken_page.goto(rice_page)
        assert "苗を植えました" in await ken_page.locator("#progress").inner_text()
        await ken_page.get_by_role("button", name="I will help on Sep 20, 2031").click()
        await ken_page.get_by_text("You are helping.").wait_for()
        await checked(ken_page)
        await ken_page.get_by_role("button", name="I cannot help on Sep 20, 2031 after all").click()
        await ken_page.get_by_role("button", name="I will help on Sep 20, 2031").click()
        await ken_page.get_by_text("You are helping.").wait_for()
        await hana_page.reload()
        assert "Ken" in await hana_page.locator("#coverage").inner_text()

    # A second offering closes in a few seconds; Ken commits before it does.
    token = (await community_token(hana, cid)).json()["token"]
    published = await hana.post(f"/v1/communities/{cid}/offerings", headers={"authorization": f"Bearer {token}"},
                                json={"title": "Persimmon box", "season": "Autumn 2031", "shares": 5,
                                      "minimum_shares": 1, "commitment_deadline":
                                          (datetime.now(UTC) + timedelta(seconds=4)).isoformat(),
                                      "delivery_dates": ["2031-11-01"]})
    assert published.status_code == 201, published.text
    oid = published.json()["offering_id"]
    committed = await ken.post(f"/app/c/{cid}/offerings/{oid}/commitments",
                               data={"csrf_token": await csrf(ken), "shares": FULL_WIDTH["2"]})
    assert committed.status_code == 303, committed.text
    early = await hana.post(f"/app/c/{cid}/offerings/{oid}/settlement", data={"csrf_token": await csrf(hana)},
                            headers={"accept-language": "en"})
    assert early.status_code == 409 and "has not passed" in early.text  # before the deadline, on the page

    async with phones(community_stack, (hana, "en"), (ken, "ja")) as (hana_page, ken_page):
        async def confirmed() -> bool:  # the deadline passes; the referrals service settles it by itself
            await hana_page.goto(f"{gateway}/app/c/{cid}/offerings/{oid}")
            return await hana_page.locator("#offering-status").inner_text() == "going ahead"

        await eventually(confirmed, timeout=30)
        await checked(hana_page)
        await hana_page.get_by_label("Portion of a full share (%)").fill("80")
        await hana_page.get_by_label("A note (optional)").fill("A dry summer: 80% of a box")
        await hana_page.get_by_role("button", name="Delivered to Ken on Nov 1, 2031").click()
        await hana_page.get_by_text("Deliveries to record").wait_for(state="detached")

        await ken_page.goto(f"{gateway}/app/c/{cid}/offerings/{oid}")
        delivered = await ken_page.locator("#my-deliveries").inner_text()
        assert "2シェア" in delivered and "80%" in delivered and "A dry summer" in delivered
        await checked(ken_page)
        await ken_page.get_by_label("よかったこと").fill("甘くておいしかった")
        await ken_page.get_by_role("button", name="感想を送る").click()
        await ken_page.locator("#thanked").wait_for()
        await ken_page.get_by_role("button", name="感想を送る").click()  # twice: refused, said on the page
        await ken_page.locator("#problem").wait_for()

        await hana_page.reload()
        assert "1 of 1 would commit again" in await hana_page.locator("main").inner_text()
        assert "甘くておいしかった" in await hana_page.locator("#feedback").inner_text()
