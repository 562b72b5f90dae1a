"""The member app in Debian's Chromium on a 390-px phone screen (issue 21, first slice): two signed-in people
in two browser contexts — Hana in Japanese, Ken in English — meet on their community's home page; Hana asks
for help, Ken offers, Hana asks Ken to do it. Every page fits the screen and axe-core finds no serious or
critical violation on it. A refusal comes back on the page, in the person's language, naming the field.
Real members, referrals, sessions, identity and gateway processes and a real SMTP server."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.identity.journey import csrf
from tests.support import Ecosystem, eventually
from tests.webapp.phones import FULL_WIDTH, JSON, by_keyboard, checked, phones


async def test_two_members_ask_offer_and_assign_on_phones_in_japanese_and_english(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    deadline = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    async with phones(community_stack, (hana, "ja"), (ken, "en")) as (hana_page, ken_page):
        await hana_page.goto(f"{gateway}/app")
        await checked(hana_page)
        await hana_page.get_by_role("link", name="Hikari Makers").click()
        await hana_page.get_by_role("heading", name="Hikari Makers").wait_for()
        assert "Makers helping makers" in await hana_page.content()
        await checked(hana_page)
        await hana_page.get_by_role("link", name="コミュニティに依頼する").click()
        await checked(hana_page)
        await hana_page.get_by_label("タイトル").fill("絵本の挿絵")
        await hana_page.get_by_label("内容").fill("水彩で6見開き")
        await hana_page.get_by_label("必要なスキル").fill("illustration, watercolour")
        await hana_page.get_by_label("期限").fill(deadline)
        await hana_page.get_by_role("button", name="依頼を投稿する").click()
        await hana_page.get_by_role("heading", name="絵本の挿絵").wait_for()
        assert await hana_page.locator("#state").inner_text() == "募集中"
        await checked(hana_page)
        job_url = hana_page.url

        async def on_ken_home() -> bool:  # the job reaches the referrals read model
            await ken_page.goto(f"{gateway}/app/c/{cid}")
            return await ken_page.get_by_role("link", name="絵本の挿絵").count() == 1

        await eventually(on_ken_home)
        await checked(ken_page)
        await ken_page.get_by_role("link", name="絵本の挿絵").click()
        await ken_page.get_by_label("Why this is your next step (optional)").fill("I paint every day")
        await ken_page.get_by_role("button", name="Offer to help").click()
        await ken_page.get_by_text("You offered to help.").wait_for()
        await ken_page.get_by_label("Who").select_option(label="Yui")
        await ken_page.get_by_label("Why them (optional)").fill("She bound books for years")
        await ken_page.get_by_role("button", name="Refer", exact=True).click()
        await ken_page.locator("#referred", has_text="Yui").wait_for()
        await checked(ken_page)

        await hana_page.goto(job_url)
        await hana_page.get_by_role("button", name="Ken さんにお願いする").click()
        await hana_page.locator("#state", has_text="担当決定").wait_for()
        await checked(hana_page)
        await ken_page.reload()
        assert await ken_page.locator("#state").inner_text() == "assigned"

        # The work goes on, ends, and each gives the other 360° feedback.
        await hana_page.get_by_role("button", name="作業が始まった").click()
        await hana_page.locator("#state", has_text="進行中").wait_for()
        await hana_page.get_by_role("button", name="完了にする").click()
        await hana_page.locator("#state", has_text="完了").wait_for()
        await hana_page.get_by_label("期待以上の働き (1〜5)").select_option("5")
        await hana_page.get_by_label("ひとこと(任意)").fill("早くて丁寧でした")
        await hana_page.get_by_role("button", name="フィードバックを送る").click()
        await hana_page.get_by_text("フィードバックを記録しました").wait_for()
        await checked(hana_page)
        await ken_page.reload()
        await ken_page.get_by_label("Collaboration").select_option("4")
        await ken_page.get_by_role("button", name="Give feedback").click()
        await ken_page.get_by_text("your feedback was recorded").wait_for()
        await ken_page.goto(f"{gateway}/app/c/{cid}/profile")
        assert "Beyond what was asked (1" in await ken_page.locator("#reputation").inner_text()
        await ken_page.go_back()
        # The same feedback twice is refused on the page, in Hana's language.
        await hana_page.get_by_role("button", name="フィードバックを送る").click()
        await hana_page.locator(".problem", has_text="今はできません").wait_for()


async def test_a_refused_form_comes_back_in_the_persons_language_naming_the_field(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    token = await csrf(hana)
    refused = await hana.post(f"/app/c/{cid}/jobs", data={"csrf_token": token, "title": "Logo",
                                                          "deadline": "someday"},
                              headers={"accept-language": "ja"})
    assert refused.status_code == 422, refused.text
    for page in (refused, await hana.get("/sign-in")):  # the app's pages and the identity pages alike
        policy = page.headers["content-security-policy"]
        assert "unsafe-inline" not in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "入力を確認してください" in refused.text and "期限" in refused.text and 'value="Logo"' in refused.text
    refused_en = await ken.post(f"/app/c/{cid}/jobs", data={"csrf_token": await csrf(ken), "title": "",
                                                            "deadline": "2031-01-01"},
                                headers={"accept-language": "en"})
    assert refused_en.status_code == 422 and "Please check: Title." in refused_en.text, refused_en.text
    # Without the session's CSRF token, or from another site, nothing is posted.
    forged = await hana.post(f"/app/c/{cid}/jobs", data={"title": "Forged", "deadline": "2031-01-01"})
    assert forged.status_code == 403, forged.text
    cross_site = await hana.post(f"/app/c/{cid}/jobs", data={"csrf_token": token, "title": "Forged",
                                                             "deadline": "2031-01-01"},
                                 headers={"sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403, cross_site.text
    jobs = await hana.get(f"/app/c/{cid}", headers={"accept-language": "en"})
    assert "Forged" not in jobs.text and "Logo" not in jobs.text
    # A goal let go, with its reason, without a script (a plain form post and a redirect).
    owner = (await hana.get(f"/app/c/{cid}/goals/new", headers={"accept-language": "en"})).text
    facilitator = owner.split('name="facilitator_id">')[1].split('value="')[1].split('"')[0]
    goal = await ken.post(f"/app/c/{cid}/goals", data={
        "csrf_token": await csrf(ken), "motivation": "health", "statement": "Run more", "facilitator_id": facilitator,
        "due_date": "2031-01-01", "kpi_name_0": "km", "kpi_baseline_0": "0", "kpi_target_0": "10"})
    assert goal.status_code == 303, goal.text
    let_go = await ken.post(f"{goal.headers['location']}/abandonment",
                            data={"csrf_token": await csrf(ken), "reason": "knee injury"})
    assert let_go.status_code == 303, let_go.text
    shown = await ken.get(goal.headers["location"], headers={"accept-language": "en"})
    assert '<span id="goal-status">let go</span>' in shown.text
    # Not signed in: to the sign-in page, and back here afterwards.
    async with httpx.AsyncClient(base_url=community_stack.url("gateway")) as stranger:
        page = await stranger.get(f"/app/c/{cid}")
        assert page.status_code == 303 and page.headers["location"].startswith("/sign-in?next=")


async def test_a_member_shapes_their_profile_chooses_what_partners_see_and_takes_a_session_place(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        scheduled = await operator.post(f"/v1/communities/{cid}/sessions", json={
            "kind": "group-coaching", "title": "Cohort A", "starts_at": "2031-05-01T19:00:00",
            "ends_at": "2031-05-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kominka, Kamakura",
            "capacity": 1, "cohort": "A"})
        assert scheduled.status_code == 201, scheduled.text
    async with phones(community_stack, (ken, "en"), (hana, "ja")) as (ken_page, hana_page):
        await ken_page.goto(f"{gateway}/app/c/{cid}")
        await ken_page.get_by_role("link", name="My profile").click()
        await checked(ken_page)
        await ken_page.get_by_role("textbox", name="Vector").fill("Publish my first picture book")
        await ken_page.get_by_role("textbox", name="Skills").fill("illustration, video editing")
        await ken_page.get_by_role("button", name="Save my profile").click()
        await ken_page.get_by_text("Saved.").wait_for()
        preview = ken_page.locator("#partner-preview")
        assert "illustration" not in await preview.inner_text()  # shared: the name alone, by default
        await ken_page.locator("#share-skills").check()
        await ken_page.get_by_role("button", name="Save what I share").click()
        await ken_page.get_by_text("Saved.").wait_for()
        text = await ken_page.locator("#partner-preview").inner_text()
        assert "illustration" in text and "picture book" not in text  # skills shared, the vector not
        await checked(ken_page)

        await hana_page.goto(f"{gateway}/app/c/{cid}/members?skill=illustration")
        await hana_page.locator("#members", has_text="Ken").wait_for()
        assert "Yui" not in await hana_page.locator("#members").inner_text()
        await checked(hana_page)

        await hana_page.goto(f"{gateway}/app/c/{cid}/sessions")
        await hana_page.get_by_role("button", name="申し込む: Cohort A").click()
        await hana_page.get_by_text("参加が確定しています。").wait_for()
        assert "2031/05/01 19:00" in await hana_page.content()  # Tokyo time, Japanese format
        await checked(hana_page)
        await ken_page.goto(f"{gateway}/app/c/{cid}/sessions")
        await ken_page.get_by_role("button", name="Join the waitlist: Cohort A").click()
        await ken_page.get_by_text("You are number 1 on the waitlist.").wait_for()
        await checked(ken_page)
        await hana_page.get_by_role("button", name="キャンセルする: Cohort A").click()
        await hana_page.get_by_text("残り 0 席").wait_for()  # Ken took the freed place at once
        await ken_page.reload()
        await ken_page.get_by_text("You have a place.").wait_for()


async def test_a_facilitator_welcomes_an_applicant_and_sees_who_has_no_ties_yet(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    hana_id = next(m["member_id"] for m in (await hana.get("/v1/me", headers=JSON)).json()["memberships"]
                   if m["community_id"] == cid)
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        made = await operator.put(f"/v1/communities/{cid}/members/{hana_id}/role",
                                  json={"role": "facilitator", "reason": "runs cohort A"})
        assert made.status_code == 200, made.text
        policy = await operator.put(f"/v1/communities/{cid}/admission", json={
            "policy": "application", "questions": [{"id": "why", "text": "Why join?", "required": True}],
            "reason": "we screen newcomers"})
        assert policy.status_code == 200, policy.text
        applied = await operator.post(f"/v1/join/{cid}/applications",
                                      json={"display_name": "Mio", "answers": {"why": "I love making books"}})
        assert applied.status_code == 201, applied.text
        # Ken, a member, is not a steward: the page is refused to him.
        assert (await ken.get(f"/app/c/{cid}/stewarding")).status_code == 403

        async with phones(community_stack, (hana, "ja")) as (page,):
            async def stewarding_link() -> bool:  # Hana's new role reaches identity over the bus
                await page.goto(f"{gateway}/app/c/{cid}")
                return await page.get_by_role("link", name="運営").count() == 1

            async def stewarding_page() -> bool:  # ... and the sessions service, which answers "no ties yet"
                await page.goto(f"{gateway}/app/c/{cid}")
                await page.get_by_role("link", name="運営").click()
                return await page.locator("#applications", has_text="I love making books").count() == 1

            await eventually(stewarding_link)
            await eventually(stewarding_page)
            await checked(page)
            await page.get_by_label("理由(申請者に伝わります)").fill("本づくりの仲間です")
            await page.get_by_role("button", name="Mio さんを迎える").click()
            await page.get_by_text("判断を待っている申請はありません。").wait_for()
            assert "Ken" in await page.locator("#drifting").inner_text()  # no session with anyone yet
            await checked(page)

        members = (await operator.get(f"/v1/communities/{cid}/members")).json()["items"]
        assert "Mio" in {m["display_name"] for m in members}


async def test_an_offer_appears_on_the_open_job_page_without_a_reload(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Hana keeps her job page open; Ken offers from his phone; Hana's page says so without a reload (the
    community's event stream, read as Hana, relayed by the app), and shows the offer when she asks."""
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    posted = await hana.post(f"/app/c/{cid}/jobs", data={"csrf_token": await csrf(hana), "title": "Book cover",
                                                         "deadline": "2031-01-01"})
    assert posted.status_code == 303, posted.text
    job_path = posted.headers["location"]
    async with phones(community_stack, (hana, "en")) as (page,):
        await page.goto(f"{gateway}{job_path}")
        notice = page.locator("#live-notice")
        assert not await notice.is_visible()

        async def ken_offered() -> bool:  # the job reaches the referrals read model first
            answer = await ken.post(f"{job_path}/offers", data={"csrf_token": await csrf(ken),
                                                                "why_next_step": "covers are my thing"})
            return answer.status_code == 303

        await eventually(ken_offered)
        await notice.get_by_role("link", name="Something changed on this request: show it").click()
        await page.locator("#offers", has_text="covers are my thing").wait_for()
        await checked(page)


async def test_a_member_sets_a_goal_from_what_matters_and_checks_in_with_full_width_digits(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, _ = member_pair
    gateway = community_stack.url("gateway")
    due = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    async with phones(community_stack, (hana, "ja")) as (page,):
        await page.goto(f"{gateway}/app/c/{cid}")
        await page.get_by_role("link", name="私の目標").click()
        await page.get_by_role("link", name="目標を立てる").click()
        await page.get_by_label("目標をひとことで").wait_for()
        await checked(page)
        await page.get_by_label("大切にしていること(この目標の理由)").fill("子どもたちに絵本を届けたい")
        await page.get_by_label("目標をひとことで").fill("絵本を一冊描き上げる")
        await page.get_by_label("伴走してくれる人").select_option(label="Yui")
        await page.get_by_label("いつまでに").fill(due)
        await page.locator("#kpi_name_0").fill("描いたページ")
        await page.locator("#kpi_unit_0").fill("ページ")
        await page.locator("#kpi_baseline_0").fill(FULL_WIDTH["0"])
        await page.locator("#kpi_target_0").fill(FULL_WIDTH["32"])
        await page.get_by_role("button", name="この目標を立てる").click()
        await page.get_by_role("heading", name="絵本を一冊描き上げる").wait_for()
        assert await page.locator("#goal-status").inner_text() == "取り組み中"
        await page.get_by_label("描いたページ (ページ)", exact=True).fill(FULL_WIDTH["8"])
        await page.get_by_role("button", name="記録する").click()
        await page.locator("#check-ins", has_text="描いたページ: 8").wait_for()
        assert "25%" in await page.locator("main").inner_text()  # 8 of 32 pages
        assert await page.locator("#kpis svg polyline").count() == 1  # the progress chart
        await checked(page)
        # The goal grows: a new target, with what changed; the earlier version stays in its story.
        await page.get_by_text("この目標を見直す").click()
        await page.get_by_label("新しい目標値：描いたページ (ページ)").fill("40")
        await page.get_by_label("何が変わったか（ファシリテーターに伝わります）").fill("見開きを増やした")
        await page.get_by_role("button", name="見直した目標を保存する").click()
        await page.locator("#revisions", has_text="見直した理由：見開きを増やした").wait_for()
        assert "20%" in await page.locator("main").inner_text()  # 8 of 40 pages now
        await checked(page)
        await page.get_by_role("button", name="達成した").click()
        await page.locator("#goal-status", has_text="達成").wait_for()


async def test_the_owner_makes_a_facilitator_and_changes_the_cap(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, _ = member_pair
    gateway = community_stack.url("gateway")
    hana_id = next(m["member_id"] for m in (await hana.get("/v1/me", headers=JSON)).json()["memberships"]
                   if m["community_id"] == cid)
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        handed = await operator.post(f"/v1/communities/{cid}/ownership",
                                     json={"to_member_id": hana_id, "reason": "Yui steps back"})
        assert handed.status_code == 200, handed.text
        async with phones(community_stack, (hana, "en")) as (page,):
            async def owner_sections() -> bool:  # Hana's new role reaches identity over the bus
                await page.goto(f"{gateway}/app/c/{cid}/stewarding")
                return await page.get_by_role("heading", name="Roles").count() == 1

            await eventually(owner_sections)
            await checked(page)
            await page.get_by_role("button", name="Make Ken a facilitator").click()
            await page.get_by_role("button", name="Make Ken a member again").wait_for()
            await page.get_by_label("At most (now 3 members)").fill("40")
            await page.get_by_role("button", name="Change the member cap").click()
            await page.wait_for_url("**#cap")
            await page.get_by_label("At most (now 3 members)").fill("2")  # below the members: refused
            await page.get_by_role("button", name="Change the member cap").click()
            await page.locator(".problem", has_text="Please check: Member cap.").wait_for()
            community = (await operator.get(f"/v1/communities/{cid}")).json()
            assert community["member_cap"] == 40
            members = (await operator.get(f"/v1/communities/{cid}/members")).json()["items"]
            roles = {m["display_name"]: m["role"] for m in members}
            assert roles["Ken"] == "facilitator" and roles["Hana"] == "owner"
            # Hana hands the community to Ken and stays on as a facilitator.
            await page.locator("#to_member_id").select_option(label="Ken")
            await page.locator("#ownership-reason").fill("Ken has the time now")
            await page.get_by_role("button", name="Hand the community over").click()
            await page.wait_for_url(f"**/app/c/{cid}/stewarding")  # from …/stewarding#cap: the post has answered
        members = (await operator.get(f"/v1/communities/{cid}/members")).json()["items"]
        roles = {m["display_name"]: m["role"] for m in members}
        assert roles["Ken"] == "owner" and roles["Hana"] == "facilitator"


async def test_a_member_offers_to_help_with_a_partner_communitys_job(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Kaki growers (another community here) link with Hikari Makers and share a job; Ken finds it under "From
    partner communities" and offers; the partner's requester receives his offer with his card."""
    from tests.federation.test_local_links import found, propose

    cid, _, ken = member_pair
    gateway = community_stack.url("gateway")
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        listed_members = await http.get(f"/v1/communities/{cid}/members?role=owner",
                                        headers=community_stack.operator_headers())
        [yui] = listed_members.json()["items"]
        as_yui = community_stack.headers(cid, yui["member_id"], "owner")
        kaki, kaki_owner = await found(http, community_stack, "Kaki growers")
        as_kaki = community_stack.headers(kaki, kaki_owner, "owner")
        pid = await propose(http, community_stack, kaki, kaki_owner, cid)

        async def accepted() -> bool:
            answer = await http.post(f"/v1/communities/{cid}/partnerships/{pid}/acceptance", headers=as_yui)
            return answer.status_code == 200

        await eventually(accepted)

        async def shared_job() -> httpx.Response | None:  # 403 until referrals has learned Kaki's owner
            answer = await http.post(f"/v1/communities/{kaki}/jobs", headers=as_kaki, json={
                "title": "Persimmon harvest", "deadline": "2031-10-01", "visibility": "partners"})
            return answer if answer.status_code == 201 else None

        job = await eventually(shared_job)
        async with phones(community_stack, (ken, "en")) as (page,):
            async def listed() -> bool:  # the shared job crosses the partnership, then the bus
                await page.goto(f"{gateway}/app/c/{cid}/partner-jobs")
                return await page.locator("#partner-jobs", has_text="Kaki growers").count() == 1

            await eventually(listed, timeout=30)
            await checked(page)
            await page.get_by_label("A word to them (optional)").fill("I grew up on a persimmon farm")
            await page.get_by_role("button", name="Offer to help: Persimmon harvest").click()

            async def offered() -> bool:
                await page.goto(f"{gateway}/app/c/{cid}/partner-jobs")
                return await page.get_by_text("You offered to help.").count() == 1

            await eventually(offered, timeout=30)

        async def received() -> list[dict[str, Any]]:
            answer = await http.get(f"/v1/communities/{kaki}/jobs/{job.json()['job_id']}", headers=as_kaki)
            offers: list[dict[str, Any]] = answer.json()["partner_offers"]
            return offers

        [offer] = await eventually(received, timeout=30)
        assert offer["card"]["display_name"] == "Ken" and offer["note"] == "I grew up on a persimmon farm"


async def test_a_member_commits_to_shares_of_an_offering_and_withdraws(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    from tests.identity.journey import community_token

    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    token = (await community_token(hana, cid)).json()["token"]
    published = await hana.post(f"/v1/communities/{cid}/offerings", headers={"authorization": f"Bearer {token}"},
                                json={"title": "Summer vegetable share", "season": "Summer 2031", "shares": 5,
                                      "minimum_shares": 2, "price": {"kind": "money", "amount": 12000,
                                                                     "currency": "JPY"},
                                      "commitment_deadline": "2031-05-01T00:00:00+09:00",
                                      "delivery_dates": ["2031-07-05"]})
    assert published.status_code == 201, published.text
    async with phones(community_stack, (ken, "en")) as (page,):
        async def listed() -> bool:
            await page.goto(f"{gateway}/app/c/{cid}/offerings")
            return await page.locator("#offerings", has_text="Summer vegetable share").count() == 1

        await eventually(listed)
        assert "0 of 2 shares needed committed; 5 left" in await page.locator("#offerings").inner_text()
        await checked(page)
        await page.get_by_label("Shares").fill("2")
        await page.get_by_role("button", name="Commit to Summer vegetable share").click()
        await page.get_by_text("You hold 2 shares.").wait_for()
        assert "2 of 2 shares needed committed; 3 left" in await page.locator("#offerings").inner_text()
        await page.get_by_role("button", name="Withdraw from Summer vegetable share").click()
        await page.get_by_role("button", name="Commit to Summer vegetable share").wait_for()
        await checked(page)


async def test_an_introduction_is_made_answered_and_its_outcome_counts_for_the_introducer(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Hana introduces Ken to Yui; Ken, on his own phone, says yes; afterwards he records that it worked, and
    Hana is listed among the introducers whose introductions work. A second introduction Ken declines."""
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    async with phones(community_stack, (hana, "ja"), (ken, "en")) as (hana_page, ken_page):
        await hana_page.goto(f"{gateway}/app/c/{cid}")
        await hana_page.get_by_role("link", name="紹介", exact=True).click()
        await checked(hana_page)
        await hana_page.get_by_label("信頼している人").select_option(label="Ken")
        await hana_page.get_by_label("紹介先").select_option(label="Yui")
        await hana_page.get_by_label("会ってほしい理由").fill("製本の相談ができます")
        await hana_page.get_by_role("button", name="紹介する", exact=True).click()
        await hana_page.locator("#introductions", has_text="HanaさんがKenさんをYuiさんに紹介").wait_for()
        assert "返事待ち" in await hana_page.locator("#introductions").inner_text()
        # Introducing Ken to himself is refused on the page, naming the field.
        await hana_page.get_by_label("信頼している人").select_option(label="Ken")
        await hana_page.get_by_label("紹介先").select_option(label="Ken")
        await hana_page.get_by_role("button", name="紹介する", exact=True).click()
        await hana_page.locator("#problem", has_text="紹介先").wait_for()

        await ken_page.goto(f"{gateway}/app/c/{cid}/introductions")
        await ken_page.locator("#to-answer", has_text="Hana would like to introduce you to Yui.").wait_for()
        await checked(ken_page)
        await by_keyboard(ken_page, "Yes, introduce me to Yui")  # Tab to it from the top, then Enter
        await ken_page.locator("#introductions", has_text="accepted").wait_for()
        await ken_page.get_by_label("How did it go? (optional)").fill("She bound my first book")
        await ken_page.get_by_role("button", name="It worked").click()
        await ken_page.locator("#introductions", has_text="it worked").wait_for()
        introducers = await ken_page.locator("#introducers").inner_text()
        assert "Hana" in introducers and "1 introductions, 1 worked" in introducers and "100%" in introducers
        await checked(ken_page)

        await hana_page.get_by_label("信頼している人").select_option(label="Ken")
        await hana_page.get_by_label("紹介先").select_option(label="Yui")
        await hana_page.get_by_role("button", name="紹介する", exact=True).click()
        await hana_page.wait_for_url("**#mine")
        await ken_page.reload()
        await ken_page.get_by_label("Why not (optional; Hana sees this)").fill("Not this month")
        await ken_page.get_by_role("button", name="No, thank you").click()
        await ken_page.locator("#introductions", has_text="declined").wait_for()
    made = (await hana.get(f"/app/c/{cid}/introductions", headers={"accept-language": "en"})).text
    assert "Hana introduced Ken to Yui" in made and "declined" in made


async def test_a_phone_reports_any_request_to_another_host_or_against_the_content_security_policy(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """The guard every browser test here runs under can fail: a request to another host, or a script the
    page's policy refuses, fails the test that caused it."""
    cid, hana, _ = member_pair
    gateway = community_stack.url("gateway")
    with pytest.raises(AssertionError, match="left the deployment"):
        async with phones(community_stack, (hana, "en")) as (page,):
            with contextlib.suppress(Exception):  # the request is stopped: the navigation fails
                await page.goto("http://kizuna.invalid/tracker.js")
    with pytest.raises(AssertionError, match="Content Security Policy"):
        async with phones(community_stack, (hana, "en")) as (page,):
            await page.goto(f"{gateway}/app/c/{cid}")
            async with page.expect_event("console", lambda m: "Content Security Policy" in m.text):
                await page.evaluate("document.body.insertAdjacentHTML('beforeend', "
                                    "'<img src=x onerror=\"document.title=1\">')")


async def test_the_home_and_introductions_pages_say_what_is_new_without_a_reload(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Hana keeps the home page open while Ken asks for help; Ken keeps his introductions open while Hana
    introduces him to Yui. Each page says so by itself (the stream, read as that person) and shows it."""
    from tests.webapp.phones import member_id_of

    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    async with phones(community_stack, (hana, "en"), (ken, "ja")) as (hana_page, ken_page):
        await hana_page.goto(f"{gateway}/app/c/{cid}")
        await ken_page.goto(f"{gateway}/app/c/{cid}/introductions")
        assert not await hana_page.locator("#live-notice").is_visible()

        async def ken_asked() -> bool:  # as soon as referrals knows Ken
            answer = await ken.post(f"/app/c/{cid}/jobs", data={"csrf_token": await csrf(ken),
                                                                "title": "Bookbinding", "deadline": "2031-01-01"})
            return answer.status_code == 303

        await eventually(ken_asked)
        await hana_page.get_by_role("link", name="Something new in the community: show it").click()
        await hana_page.locator("#jobs", has_text="Bookbinding").wait_for()

        token = await csrf(hana)
        introduced = await hana.post(f"/app/c/{cid}/introductions", data={
            "csrf_token": token, "referred_id": await member_id_of(ken, cid),
            "to_member_id": await _yui(community_stack, cid), "note": "製本仲間"})
        assert introduced.status_code == 303, introduced.text
        await ken_page.get_by_role("link", name="あなたの紹介に動きがあります：表示する").click()
        await ken_page.locator("#to-answer", has_text="製本仲間").wait_for()
        await checked(ken_page)


async def _yui(eco: Ecosystem, cid: str) -> str:
    async with httpx.AsyncClient(base_url=eco.url("gateway"), headers=eco.operator_headers()) as operator:
        [owner] = (await operator.get(f"/v1/communities/{cid}/members?role=owner")).json()["items"]
    return str(owner["member_id"])


async def test_a_member_reads_her_notifications_opens_one_and_chooses_how_she_hears_about_things(
        community_stack: Ecosystem, member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, ken = member_pair
    gateway = community_stack.url("gateway")
    posted = await hana.post(f"/app/c/{cid}/jobs", data={"csrf_token": await csrf(hana), "title": "Zine layout",
                                                         "deadline": "2031-01-01"})
    job_path = posted.headers["location"]

    async def ken_offered() -> bool:  # the job reaches the referrals read model first
        answer = await ken.post(f"{job_path}/offers", data={"csrf_token": await csrf(ken), "why_next_step": "zines!"})
        return answer.status_code == 303

    async with phones(community_stack, (hana, "ja")) as (page,):
        await page.goto(f"{gateway}/app/c/{cid}")
        assert await page.locator("#unread").inner_text() == "お知らせ"
        await eventually(ken_offered)
        # The count changes in place while her home page is open (the offer reaches notifications over the bus).
        await page.locator("#unread", has_text="未読1件").wait_for(timeout=30_000)
        await page.locator("#unread").click()
        await page.get_by_text("Kenさんが手伝いを申し出ています。").wait_for()
        await checked(page)
        await page.get_by_role("button", name="開く：[Hikari Makers] 「Zine layout」に申し出がありました").click()
        await page.get_by_role("heading", name="Zine layout").wait_for()
        assert page.url.endswith(job_path)
        await page.goto(f"{gateway}/app/notifications")
        assert "未読0件" in await page.locator("main").inner_text()
        await page.get_by_label("依頼への申し出や紹介").select_option("off")
        await page.get_by_label("メールの言語").select_option("en")
        await page.get_by_role("button", name="受け取り方を保存する").click()
        await page.locator("#saved").wait_for()
        await checked(page)
        assert await page.get_by_label("依頼への申し出や紹介").input_value() == "off"
        # Feedback once a day in a digest at 07:30, and quiet evenings — first with one end of them forgotten:
        # the page names it in her language and keeps what was saved before.
        await page.get_by_label("フィードバックが届いたとき").select_option("digest")
        await page.get_by_label("まとめ便が届く時刻").fill("07:30")
        await page.get_by_label("静かな時間の始まり").fill("22:00")
        await page.get_by_role("button", name="受け取り方を保存する").click()
        assert "静かな時間の終わり" in await page.locator("#problem").inner_text()
        assert await page.get_by_label("フィードバックが届いたとき").input_value() == "immediately"
        await page.get_by_label("フィードバックが届いたとき").select_option("digest")
        await page.get_by_label("まとめ便が届く時刻").fill("07:30")
        await page.get_by_label("静かな時間の始まり").fill("22:00")
        await page.get_by_label("静かな時間の終わり").fill("06:30")
        await page.get_by_role("button", name="受け取り方を保存する").click()
        await page.locator("#saved").wait_for()
        assert await page.get_by_label("フィードバックが届いたとき").input_value() == "digest"
        assert await page.get_by_label("静かな時間の終わり").input_value() == "06:30"
        assert await page.get_by_label("私のタイムゾーン").input_value() == "Asia/Tokyo"
        await checked(page)
