"""``python -m tests.notifications.receiver PORT SECRETS OUT``: a dashboard's webhook endpoint, in its own
process. Every delivery is verified with the Standard Webhooks reference library (never Kizuna's code)
against each secret in the file SECRETS (one per line, read at every request, so a test can rotate), and
appended to OUT as a JSON line: the webhook-id, the event's id and type, and which secret verified it.
An unverifiable delivery is refused (400) and recorded as such."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def app(secrets: Path, out: Path) -> Starlette:
    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items()}
        verified = None
        for index, secret in enumerate(line.strip() for line in secrets.read_text().splitlines() if line.strip()):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified = index
            break
        event = json.loads(body) if verified is not None else {}
        # The last delivery as it came (for the docs' example verifier in another language).
        (out.parent / "last-delivery.json").write_text(json.dumps({"headers": headers, "body": body.decode()}))
        with out.open("a") as log:
            log.write(json.dumps({"webhook_id": headers.get("webhook-id"), "verified_with": verified,
                                  "event_id": event.get("id"), "type": event.get("type"),
                                  "data": event.get("data")}) + "\n")
        return Response(status_code=204 if verified is not None else 400)

    return Starlette(routes=[Route("/hook", receive, methods=["POST"])])


if __name__ == "__main__":
    port, secrets_file, out_file = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(app(secrets_file, out_file), host="127.0.0.1", port=port, log_level="warning")
