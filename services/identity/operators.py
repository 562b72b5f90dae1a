"""``python -m services.identity.operators grant|withdraw|list [EMAIL]``: who may act as the operator.

The bootstrap of operators who are people: run where the identity service runs (its
``KIZUNA_DATABASE_URL``), e.g. ``docker compose exec identity python -m services.identity.operators grant
you@example.org``. The person must have signed in once with that address. Once granted, they exchange
their browser session for a 15-minute operator token (``POST /v1/me/operator-token``), which ends with the
session; the shared operator token stays for automation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute
from kizuna.service import create_pool, migrate
from kizuna.settings import ServiceSettings

from .domain import Person, normalise_email
from .projections import INLINE_PROJECTIONS, MIGRATIONS


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.identity.operators", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["grant", "withdraw", "list"])
    parser.add_argument("email", nargs="?")
    args = parser.parse_args(argv)
    settings = ServiceSettings(service_name="identity")
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool, MIGRATIONS)
        if args.action == "list":
            rows = await pool.fetch("SELECT o.person_id, string_agg(e.email, ', ' ORDER BY e.email) AS emails "
                                    "FROM operators o LEFT JOIN person_emails e USING (person_id) GROUP BY o.person_id")
            for row in rows:
                print(f"{row['person_id']}\t{row['emails'] or ''}")
            return 0
        if not args.email:
            parser.error("an email address is needed")
        email = normalise_email(args.email)
        person_id = await pool.fetchval("SELECT person_id FROM person_emails WHERE email = $1", email)
        if person_id is None:
            print(f"nobody has signed in with {email} yet: sign in once, then run this again", file=sys.stderr)
            return 1
        store = EventStore(pool, INLINE_PROJECTIONS)
        ctx = CommandContext(actor="system:operators-command")
        await execute(store, f"person-{person_id}", Person,
                      (lambda p: p.grant_operator("command")) if args.action == "grant"
                      else (lambda p: p.withdraw_operator("command")), ctx)
        print(f"{args.action}: {email} ({person_id})")
        return 0
    finally:
        await pool.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
