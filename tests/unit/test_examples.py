"""examples/ must be objects the API server accepts and a coherent scenario the operator can run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flightdeck_operator.api import v1alpha1 as api
from tests.unit.crd_schema_tools import (
    EXAMPLES_DIR,
    load_crds,
    load_examples,
    load_yaml_documents,
    openapi_schema,
    schema_errors,
)

EXAMPLES = load_examples()
OBJECTS = [api.parse_resource(doc) for _, doc in EXAMPLES]


def of(kind: type[api.Resource]) -> dict[str, Any]:
    return {str(obj.metadata.name): obj for obj in OBJECTS if isinstance(obj, kind)}


@pytest.mark.parametrize(
    ("path", "doc"), EXAMPLES, ids=[f"{p.name}:{d['metadata']['name']}" for p, d in EXAMPLES]
)
def test_example_matches_its_crd_schema(path: Path, doc: dict[str, Any]) -> None:
    assert schema_errors(doc, openapi_schema(load_crds()[doc["kind"]])) == []
    # Namespace-free, so tests and users apply them with `kubectl apply -n NS -f examples/`.
    assert "namespace" not in doc["metadata"]
    assert "status" not in doc


def test_examples_cover_every_kind() -> None:
    kinds = Counter(type(obj).KIND for obj in OBJECTS)
    assert kinds == {
        "PricingTable": 2,
        "AgentRelease": 2,
        "PromotionPolicy": 1,
        "ReleasePointer": 1,
        "PromotionRequest": 3,
    }
    actions = {obj.spec.action for obj in of(api.PromotionRequest).values()}
    assert actions == {api.Action.PROMOTE, api.Action.ROLLBACK}


def test_examples_reference_each_other() -> None:
    tables = {(t.spec.provider, t.spec.pricing_version): t.spec for t in of(api.PricingTable).values()}
    releases = of(api.AgentRelease)
    pointers = of(api.ReleasePointer)
    policies = of(api.PromotionPolicy)
    for release in releases.values():
        ref = release.spec.pricing_reference
        table = tables[(ref.provider, ref.pricing_version)]
        assert table.entry(release.spec.runtime.model) is not None, release.metadata.name
    for pointer in pointers.values():
        assert pointer.spec.policy_ref is not None
        assert pointer.spec.policy_ref.name in policies
    for request in of(api.PromotionRequest).values():
        pointer = pointers[request.spec.pointer]
        if request.spec.release is not None:
            assert releases[request.spec.release].spec.agent_id == pointer.spec.agent_id
    assert len({r.spec.checksum for r in releases.values()}) == len(releases)


def test_files_sort_in_dependency_order() -> None:
    # `kubectl apply -f examples/` goes file by file in name order; requests come last, oldest first.
    order = [type(api.parse_resource(doc)).KIND for _, doc in EXAMPLES]
    assert order.index("PromotionRequest") > max(i for i, k in enumerate(order) if k != "PromotionRequest")


GATES_DIR = Path(__file__).resolve().parents[2] / "examples" / "gates"


def test_gate_examples_are_valid_objects() -> None:
    from tests.unit.crd_schema_tools import load_yaml_documents

    crds = load_crds()
    flightdeck = [doc for path in sorted(GATES_DIR.glob("*.yaml")) for doc in load_yaml_documents(path)]
    kinds = Counter(doc["kind"] for doc in flightdeck)
    assert kinds == {
        "PromotionPolicy": 1,
        "ReleasePointer": 1,
        "PromotionRequest": 2,
        "Role": 2,
        "RoleBinding": 2,
    }
    names = {doc["metadata"]["name"] for doc in flightdeck}
    for doc in flightdeck:
        assert "namespace" not in doc["metadata"]
        if doc["apiVersion"] != api.API_VERSION:
            continue
        assert schema_errors(doc, openapi_schema(crds[doc["kind"]])) == []
        resource = api.parse_resource(doc)  # includes the cron and time-zone checks
        if isinstance(resource, api.ReleasePointer):
            assert resource.spec.policy_ref is not None
            assert resource.spec.policy_ref.name in names
        if isinstance(resource, api.PromotionRequest):
            assert resource.spec.pointer in names
            assert resource.spec.release in of(api.AgentRelease)


NOTIFICATIONS_DIR = GATES_DIR.parent / "notifications"


def test_notification_examples_are_valid_objects() -> None:
    from tests.unit.crd_schema_tools import load_yaml_documents

    crds = load_crds()
    documents = [
        doc for path in sorted(NOTIFICATIONS_DIR.glob("*.yaml")) for doc in load_yaml_documents(path)
    ]
    assert Counter(doc["kind"] for doc in documents) == {"Secret": 1, "NotificationSubscription": 2}
    secrets = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "Secret"}
    for doc in documents:
        assert "namespace" not in doc["metadata"]
        if doc["kind"] != "NotificationSubscription":
            continue
        assert schema_errors(doc, openapi_schema(crds[doc["kind"]])) == []
        resource = api.parse_resource(doc)  # includes the URL refusals
        assert isinstance(resource, api.NotificationSubscription)
        assert resource.spec.secret_ref.name in secrets


STATISTICAL = sorted((EXAMPLES_DIR / "statistical-gates").glob("*.yaml"))


@pytest.mark.parametrize("path", STATISTICAL, ids=[p.name for p in STATISTICAL])
def test_statistical_gate_examples_are_valid(path: Path) -> None:
    from flightdeck_operator.api.to_engine import engine_policy

    for doc in load_yaml_documents(path):
        assert schema_errors(doc, openapi_schema(load_crds()[doc["kind"]])) == []
        obj = api.parse_resource(doc)
        if isinstance(obj, api.PromotionPolicy):
            gates = engine_policy(obj.metadata.name, obj.spec).statistical_gates
            assert gates is not None
            assert [name for name, _ in gates.gates()] == [
                "errorRate.max",
                "errorRate.maxIncrease",
                "latency.p95.maxMs",
                "latency.p95.maxRatio",
                "latency.p99.maxMs",
                "costPerRun.maxRatio",
            ]


PIPELINES = sorted((EXAMPLES_DIR / "pipelines").glob("*.yaml"))


def test_pipeline_examples_are_valid_and_production_follows_the_canary() -> None:
    documents = [doc for path in PIPELINES for doc in load_yaml_documents(path)]
    objects = [api.parse_resource(doc) for doc in documents]
    for doc in documents:
        assert "namespace" not in doc["metadata"]
        assert schema_errors(doc, openapi_schema(load_crds()[doc["kind"]])) == []
    policies = {o.metadata.name: o.spec for o in objects if isinstance(o, api.PromotionPolicy)}
    pointers = {o.metadata.name: o.spec for o in objects if isinstance(o, api.ReleasePointer)}
    canary, production = pointers["support-bot-canary"], pointers["support-bot-production"]
    assert production.follows is not None
    assert production.follows.pointer == "support-bot-canary"
    assert production.follows.auto_promote
    assert canary.agent_id == production.agent_id
    for spec in pointers.values():
        assert spec.policy_ref is not None
        assert policies[spec.policy_ref.name].verification is not None  # upstream must verify
    (request,) = [o for o in objects if isinstance(o, api.PromotionRequest)]
    assert request.spec.pointer == "support-bot-canary"
    assert request.spec.release in of(api.AgentRelease)
