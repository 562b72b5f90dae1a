"""Kubernetes manifests, checked statically: they parse, kustomize's list resolves, and every
cross-reference (selectors, scale targets, config) points at something that exists."""

from __future__ import annotations

from typing import Any

import yaml

from kizuna.settings import ServiceSettings
from tests.support import ROOT

K8S = ROOT / "deploy" / "kubernetes"


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = K8S / resource
        assert path.exists(), resource
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _documents() if doc["kind"] == kind]


def test_every_manifest_has_the_basics() -> None:
    for doc in _documents():
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


def test_deployments_have_probes_resources_and_replicas() -> None:
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert set(deployments) == {"members", "referrals", "sessions", "gateway"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, name
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        [container] = spec["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["args"] == [f"services.{name}"]


def test_selectors_and_targets_resolve() -> None:
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind("Deployment") + by_kind("StatefulSet")]
    for kind in ("Service", "PodDisruptionBudget"):
        for doc in by_kind(kind):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= labels.items() for labels in pod_labels), doc["metadata"]["name"]
    deployments = {d["metadata"]["name"] for d in by_kind("Deployment")}
    for hpa in by_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


def test_nats_is_a_three_node_jetstream_cluster_and_streams_replicate() -> None:
    [nats] = by_kind("StatefulSet")
    assert nats["spec"]["replicas"] == 3
    config = next(d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "nats-config")["data"]["nats.conf"]
    assert "sync_interval: always" in config and "cluster" in config
    kizuna = next(d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "kizuna-config")["data"]
    assert kizuna["KIZUNA_JETSTREAM_REPLICAS"] == "3"
    known = {f"KIZUNA_{field.upper()}" for field in ServiceSettings.model_fields}
    [secret] = by_kind("Secret")
    assert set(kizuna) | set(secret["stringData"]) <= known
