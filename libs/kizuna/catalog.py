"""The event catalogue as an AsyncAPI 3 document, generated from the services' event models.

``python -m kizuna.catalog`` rewrites ``docs/asyncapi.yaml``; a test fails when the committed
file and the models disagree, so the document cannot drift from the code.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
from pathlib import Path
from typing import Any

import yaml

from .domain import DomainEvent

SERVICES = ("members", "referrals", "sessions", "identity", "notifications", "gateway")
DEFAULT_OUTPUT = Path("docs/asyncapi.yaml")

CLOUDEVENT_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 structured-mode envelope shared by every Kizuna event.",
    "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype",
                 "communityid", "streamversion", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": "Event id; also the Nats-Msg-Id header."},
        "source": {"type": "string", "examples": ["kizuna/members"]},
        "type": {"type": "string", "description": "The event type, e.g. MemberJoined."},
        "subject": {"type": "string", "description": "The aggregate stream, e.g. community-<id>."},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "communityid": {"type": "string", "description": "Community the event belongs to, or 'ecosystem'."},
        "streamversion": {"type": "integer", "minimum": 1, "description": "Position in its stream."},
        "sequence": {"type": "integer", "description": "Global position in the producer's event store."},
        "dataversion": {"type": "integer", "minimum": 1, "default": 1,
                        "description": "Schema version of data; absent (1) on events published before versions "
                                       "existed. A consumer holds a version newer than it knows."},
        "correlationid": {"type": "string"},
        "causationid": {"type": "string"},
        "actor": {"type": "string", "examples": ["operator", "member:6a1f…"]},
        "traceparent": {"type": "string", "description": "W3C trace context of the producing span."},
    },
}


def events_by_service() -> dict[str, list[type[DomainEvent]]]:
    """Every service's event models, in the order their modules define them (a copy: callers may change it)."""
    return {service: list(events) for service, events in _events_by_service().items()}


@functools.cache
def _events_by_service() -> dict[str, list[type[DomainEvent]]]:
    # Cached: ordering by source line parses each module, about two seconds for the whole catalogue.
    return {service: [event for module in modules for event in _events_of(module)]
            for service, modules in import_event_modules().items()}


@functools.cache
def import_event_modules() -> dict[str, list[Any]]:
    """Every service's domain modules, imported (which registers their events and upcasters): the service's
    own, then its sub-packages' with their own domain (services/<name>/<part>/domain.py), which publish under
    the service's name too."""
    found: dict[str, list[Any]] = {}
    for service in SERVICES:
        try:
            module = importlib.import_module(f"services.{service}.domain")
        except ModuleNotFoundError:
            continue
        found[service] = [module, *(importlib.import_module(f"services.{service}.{path.parent.name}.domain")
                                    for path in sorted(Path(str(module.__file__)).parent.glob("*/domain.py")))]
    return found


def _events_of(module: Any) -> list[type[DomainEvent]]:
    events = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
              if issubclass(obj, DomainEvent) and obj is not DomainEvent and obj.__module__ == module.__name__]
    return sorted(events, key=lambda cls: inspect.getsourcelines(cls)[1])


def build_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"CloudEvent": CLOUDEVENT_ENVELOPE}
    for service, events in events_by_service().items():
        for event in events:
            name = event.__name__
            key = f"{service}.{name}"
            data_schema = event.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in data_schema.pop("$defs", {}).items():
                schemas.setdefault(def_name, definition)
            schemas[f"{key}.data"] = data_schema
            messages[key] = {
                "name": name,
                "title": name,
                "summary": inspect.getdoc(event) or f"{name} from the {service} service.",
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/NatsHeaders"},
                "payload": {"allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {"type": "object", "properties": {
                        "type": {"const": name}, "source": {"const": f"kizuna/{service}"},
                        "dataversion": {"const": event.schema_version},
                        "data": {"$ref": f"#/components/schemas/{key}.data"}}},
                ]},
            }
            channels[key] = {
                "address": f"kizuna.{{communityId}}.{service}.{name}",
                "parameters": {"communityId": {"$ref": "#/components/parameters/communityId"}},
                "messages": {name: {"$ref": f"#/components/messages/{key}"}},
            }
            operations[f"receive.{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"Consume {name} events (durable JetStream consumer on stream KIZUNA).",
            }
    schemas["NatsHeaders"] = {"type": "object", "properties": {
        "Nats-Msg-Id": {"type": "string", "description": "Event id; JetStream drops duplicates within 2 minutes."},
        "traceparent": {"type": "string", "description": "W3C trace context of the relay's publish span."},
    }}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kizuna events",
            "version": "1.0.0",
            "description": (
                "Every event Kizuna's services publish on NATS JetStream (stream KIZUNA, subjects "
                "`kizuna.<community id>.<service>.<EventType>`), as CloudEvents 1.0 in structured JSON "
                "mode. Generated from the event models by `python -m kizuna.catalog`; do not edit by hand. "
                "Dashboards may subscribe to `kizuna.<community id>.>` or use the gateway's SSE stream."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats",
                              "description": "NATS with JetStream as started by `make up` or compose."}},
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {"communityId": {"description": "Community id, or 'ecosystem' for deployment-wide events."}},
            "messages": messages,
            "schemas": schemas,
        },
    }


def render() -> str:
    return yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        raise SystemExit(0 if current == text else "docs/asyncapi.yaml is out of date: run python -m kizuna.catalog")
    args.output.write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
