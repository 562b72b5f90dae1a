"""The AsyncAPI catalogue is generated from the event models and must match the committed file."""

from __future__ import annotations

from pathlib import Path

import yaml

from kizuna.catalog import build_document, events_by_service, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_asyncapi_matches_the_event_models() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == render(), "docs/asyncapi.yaml is stale: run `.venv/bin/python -m kizuna.catalog`"


def test_every_event_has_a_channel_message_and_schema() -> None:
    document = build_document()
    assert document["asyncapi"].startswith("3.")
    events = events_by_service()
    assert events.get("members")
    for service, models in events.items():
        for model in models:
            key = f"{service}.{model.__name__}"
            channel = document["channels"][key]
            assert channel["address"] == f"kizuna.{{communityId}}.{service}.{model.__name__}"
            assert key in document["components"]["messages"]
            assert set(model.model_fields) <= set(document["components"]["schemas"][f"{key}.data"]["properties"])
    yaml.safe_load(render())
