"""Every setting a Kizuna service reads, from environment variables prefixed ``KIZUNA_``.

The same names are used by `make up`, by the test fixtures and by docker compose, so the three
cannot drift apart (tests/deploy checks the compose file against this class).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_", extra="ignore")

    service_name: str = Field("service", description="Which service this process runs (members, referrals, ...).")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/kizuna", description="This service's own PostgreSQL database."
    )
    keys_database_url: str = Field(
        "", description="The deployment's key vault (one database for every service, e.g. kizuna_keys): the keys "
        "personal fields of events are sealed with; erasing a member deletes theirs (docs/data-rights.md). Empty: "
        "no vault — events are stored as they come and nobody can be erased (a warning says so at start).")
    database_pool_size: int = Field(
        10, ge=1, description="Most connections this process's pool opens; the relay and the gateway's listener "
        "hold one more each (docs/operations.md budgets them against PostgreSQL's max_connections).")
    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server with JetStream enabled.")
    subject_prefix: str = Field("kizuna", description="First token of every event subject; one per ecosystem.")
    stream_name: str = Field("KIZUNA", description="JetStream stream holding every event of the ecosystem.")
    http_host: str = Field("127.0.0.1", description="Interface the HTTP API binds to.")
    http_port: int = Field(8000, description="Port the HTTP API binds to.")
    log_level: str = Field("INFO", description="Python log level for the JSON logs on stderr.")
    otel_exporter: Literal["none", "console", "otlp", "jsonl"] = Field(
        "none", description="Where spans go: nowhere, stderr, an OTLP/HTTP collector, or a JSON-lines file."
    )
    otel_endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint (otel_exporter=otlp)."
    )
    otel_file: str = Field("spans.jsonl", description="File the jsonl exporter appends spans to.")
    relay_batch_size: int = Field(500, description="Events the outbox relay publishes per round trip.")
    relay_idle_seconds: float = Field(0.2, description="How long the relay sleeps when there is nothing new.")
    consumer_max_deliver: int = Field(5, description="Attempts before a message goes to the dead-letter subject.")
    consumer_ack_wait_seconds: float = Field(30.0, description="Redelivery delay for an unacknowledged message.")
    jetstream_replicas: int = Field(1, description="Stream replicas (3 on a NATS cluster).")
    operator_token: str = Field("", description="Secret bearer token of the deployment's operator.")
    jwt_private_key: str = Field("", description="PEM Ed25519 key the gateway signs member tokens with.")
    jwt_public_keys: str = Field(
        "", description="PEM Ed25519 public keys (concatenated) that services accept member tokens from."
    )
    service_urls: str = Field(
        "members=http://127.0.0.1:8101,referrals=http://127.0.0.1:8102,sessions=http://127.0.0.1:8103",
        description="Where the gateway finds the internal services, as name=url pairs.",
    )
    identity_url: str = Field("http://127.0.0.1:8104",
                              description="Gateway: where the identity service (sign-in, people) listens; "
                              "replicas separated by `|`, as in service_urls.")
    public_url: str = Field("http://127.0.0.1:8000", description="The gateway's public base URL (federation).")
    federation_private_key: str = Field("", description="PEM Ed25519 key this deployment signs federation with.")
    federation_retry_base_seconds: float = Field(2.0, description="Gateway: first federation retry delay.")
    federation_retry_cap_seconds: float = Field(
        300.0, description="Gateway: longest wait between federation retries (a returning partner is caught up "
        "within this).")
    federation_give_up_hours: float = Field(72.0, description="Gateway: a federation message is dead after this.")
    federation_allow_private_addresses: bool = Field(
        False, description="Gateway: let federation fetch from and deliver to private, loopback and link-local "
        "addresses (tests and single-host demos only; a public deployment leaves this off).")
    federation_retired_keys: str = Field(
        "", description="Gateway: federation keys still published after a rotation, as a JSON list of "
        '{"public_key": "<PEM or base64url>", "expires_at": "<ISO time>", "status": "retired"|"revoked"}; '
        "partners accept a retired key until expires_at and a revoked one never.")
    federation_key_valid_hours: float = Field(
        24.0, gt=0, description="Gateway: how long partners may trust this deployment's current federation key "
        "before fetching its document again (a withdrawn key stops working within this).")
    health_cache_seconds: float = Field(
        30.0, ge=0, allow_inf_nan=False,
        description="Gateway: the longest a community's health answer is kept in memory (it is dropped sooner when "
        "the read model changes); 0 turns the cache off.")
    upstream_timeout_seconds: float = Field(10.0, description="Gateway: how long a service may take to answer.")
    rate_limit_per_second: float = Field(20.0, description="Gateway: sustained requests per second per token.")
    rate_limit_burst: int = Field(100, description="Gateway: requests a token may make in a burst.")
    stream_heartbeat_seconds: float = Field(
        15.0, gt=0, description="Gateway: the event stream sends a `: heartbeat` comment after this long without data.")
    trusted_proxies: str = Field(
        "", description="Gateway: comma-separated addresses or CIDR networks of the reverse proxies in front of "
        "it; only from these is X-Forwarded-For believed (the client address keys visitors' rate limits).")
    default_member_cap: int = Field(150, description="Member cap of a newly founded community.")
    retention_sweep_seconds: float = Field(3600.0, gt=0, description="How often old rows are swept.")
    retention_inbox_days: float = Field(
        14.0, gt=0, description="Days a consumer remembers which bus messages it applied (redeliveries come "
        "within minutes).")
    retention_idempotency_hours: float = Field(
        24.0, gt=0, description="Gateway: hours a write's answer is kept for a retry with the same Idempotency-Key.")
    retention_federation_received_days: float = Field(
        7.0, gt=0, description="Gateway: days a received federation message id is remembered (partners retry "
        "for KIZUNA_FEDERATION_GIVE_UP_HOURS, 72 by default).")
    retention_revoked_tokens_days: float = Field(
        31.0, gt=0, description="Gateway: days a revocation is kept; longer than the longest token life (30 "
        "days), after which the token has expired anyway.")
    metrics_token: str = Field(
        "", description="Bearer token GET /metrics wants (Prometheus' `authorization` setting); empty: open.")

    def service_replicas(self) -> dict[str, list[str]]:
        """Every address of each service: ``members=http://a:8101|http://b:8101`` lists two replicas, which
        the gateway takes turns with and fails over between (one address, e.g. a Kubernetes Service, is one)."""
        pairs = (item.split("=", 1) for item in self.service_urls.split(",") if "=" in item)
        return {name.strip(): [url.strip().rstrip("/") for url in urls.split("|") if url.strip()]
                for name, urls in pairs}

    def identity_replicas(self) -> list[str]:
        return [url.strip().rstrip("/") for url in self.identity_url.split("|") if url.strip()]

    def service_url_map(self) -> dict[str, str]:
        """The first address of each service (where one answer is enough: its OpenAPI document)."""
        return {name: urls[0] for name, urls in self.service_replicas().items() if urls}
