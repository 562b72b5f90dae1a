"""Leaving and erasure in the member app (docs/data-rights.md), on a phone in Japanese: Ken leaves Hikari
Makers and asks to be erased from it as he goes; then, in no community any more, he erases his account from
"My data" and is signed out everywhere. Hana, still a member, is told to leave first and gets no erase form."""

from __future__ import annotations

import httpx

from kizuna.personal import ERASED_NAME
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually
from tests.webapp.phones import JSON, checked, hikari_makers, member_id_of, phones


async def test_a_member_leaves_erased_from_the_community_then_erases_his_account(
        export_stack: Ecosystem, inbox: SmtpInbox) -> None:
    gateway = export_stack.url("gateway")
    async with hikari_makers(export_stack, inbox) as (cid, hana, ken), \
            phones(export_stack, (ken, "ja"), (hana, "ja")) as (page, hanas):
        ken_id = await member_id_of(ken, cid)
        await page.goto(f"{gateway}/app/c/{cid}/profile")
        await page.get_by_label("抜ける理由（任意。ファシリテーターが読みます）").fill("北海道に引っ越します")
        await page.get_by_label("このコミュニティから私を消去する", exact=False).check()
        await checked(page)
        await page.get_by_role("button", name="このコミュニティを抜ける").click()
        await page.locator("#left").wait_for()
        await checked(page)
        assert "Hikari Makers" not in await page.locator("main").inner_text()

        async with httpx.AsyncClient(base_url=gateway, headers=export_stack.operator_headers(), timeout=30) as op:
            async def erased_there() -> bool:
                shown = (await op.get(f"/v1/communities/{cid}/members/{ken_id}")).json()
                return bool(shown.get("display_name") == ERASED_NAME and shown.get("status") != "active")

            await eventually(erased_there, timeout=30)

        # Hana is still in the community: the page lists it to leave first, and offers no erase button.
        await hanas.goto(f"{gateway}/app/my-data")
        await hanas.locator("#leave-first").wait_for()
        assert await hanas.get_by_role("button", name="アカウントを完全に消去する").count() == 0
        await checked(hanas)

        # Ken is in no community now: he erases his account; the box must be ticked first (the browser says so).
        await page.goto(f"{gateway}/app/my-data")
        await page.get_by_role("heading", name="私のアカウントを消去する").wait_for()
        await page.get_by_label("元に戻せないことを理解しました。").check()
        await page.get_by_role("button", name="アカウントを完全に消去する").click()
        await page.locator("#erased").wait_for()
        await checked(page)
        assert (await ken.get("/v1/me", headers=JSON)).status_code == 401  # signed out everywhere
        await page.goto(f"{gateway}/app")
        assert "/sign-in" in page.url
