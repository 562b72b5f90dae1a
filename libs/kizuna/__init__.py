"""Kizuna's shared machinery: event store, outbox relay, bus, envelopes, telemetry, settings."""
