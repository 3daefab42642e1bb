"""The CRDs in crds/ and the pydantic models in flightdeck_operator.api.v1alpha1 must agree.

The CRD is what the API server enforces, the model is what the operator reads and writes: a field,
a required list, an enum, a default or a bound present on one side only is drift and fails here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from flightdeck_operator.api import v1alpha1 as api
from flightdeck_operator.api.conditions import ConditionType, Reason
from tests.unit.crd_schema_tools import (
    CRDS_DIR,
    DOCS_CRDS,
    all_cel_rules,
    load_crds,
    load_invalid_fixtures,
    model_schema,
    openapi_schema,
    schema_drift,
    schema_errors,
    served_version,
)

PARTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "AgentRelease": (api.AgentReleaseSpec, api.AgentReleaseStatus),
    "PricingTable": (api.PricingTableSpec, api.PricingTableStatus),
    "PromotionPolicy": (api.PromotionPolicySpec, api.PromotionPolicyStatus),
    "ReleasePointer": (api.ReleasePointerSpec, api.ReleasePointerStatus),
    "PromotionRequest": (api.PromotionRequestSpec, api.PromotionRequestStatus),
    "PromotionApproval": (api.PromotionApprovalSpec, api.PromotionApprovalStatus),
    "NotificationSubscription": (api.NotificationSubscriptionSpec, api.NotificationSubscriptionStatus),
}
KINDS = [model.KIND for model in api.RESOURCES]
CRDS = load_crds()


def test_one_crd_per_kind_named_after_its_plural() -> None:
    assert set(CRDS) == set(KINDS) == set(PARTS)
    files = sorted(p.name for p in CRDS_DIR.glob("*.yaml"))
    assert files == sorted(f"{model.INFO.crd_name}.yaml" for model in api.RESOURCES)


def test_api_constants() -> None:
    assert f"{api.GROUP}/{api.VERSION}" == api.API_VERSION == "flightdeck.dev/v1alpha1"
    assert len({model.INFO.short_names[0] for model in api.RESOURCES}) == len(api.RESOURCES)


@pytest.mark.parametrize("model", api.RESOURCES, ids=KINDS)
def test_crd_names_and_version(model: type[api.Resource]) -> None:
    crd = CRDS[model.KIND]
    info = model.INFO
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == info.crd_name
    spec = crd["spec"]
    assert spec["group"] == api.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "shortNames": list(info.short_names),
        "categories": [api.CATEGORY],
    }
    assert (info.kind, info.plural) == (model.KIND, model.PLURAL)
    version = served_version(crd)
    assert version["name"] == api.VERSION
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("model", api.RESOURCES, ids=KINDS)
def test_root_schema(model: type[api.Resource]) -> None:
    root = openapi_schema(CRDS[model.KIND])
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["required"] == ["spec"]
    assert schema_drift(root, model_schema(model)) == []


@pytest.mark.parametrize(("kind", "part"), [(k, p) for k in KINDS for p in ("spec", "status")])
def test_crd_and_model_agree(kind: str, part: str) -> None:
    crd_node = openapi_schema(CRDS[kind])["properties"][part]
    spec_model, status_model = PARTS[kind]
    drift = schema_drift(crd_node, model_schema(spec_model if part == "spec" else status_model), part)
    assert drift == [], "\n".join(drift)


def _mutations() -> Iterator[tuple[str, Any]]:
    def drop_property(s: dict[str, Any]) -> None:
        del s["properties"]["spec"]["properties"]["reason"]

    def add_property(s: dict[str, Any]) -> None:
        s["properties"]["spec"]["properties"]["approver"] = {"type": "string"}

    def change_required(s: dict[str, Any]) -> None:
        s["properties"]["spec"]["required"].remove("reason")

    def change_enum(s: dict[str, Any]) -> None:
        s["properties"]["spec"]["properties"]["action"]["enum"].append("cancel")

    def change_default(s: dict[str, Any]) -> None:
        s["properties"]["spec"]["properties"]["window"]["default"] = "1d"

    def change_bound(s: dict[str, Any]) -> None:
        s["properties"]["spec"]["properties"]["reason"]["maxLength"] = 2048

    def change_nested_status(s: dict[str, Any]) -> None:
        evidence = s["properties"]["status"]["properties"]["decision"]["properties"]["evidence"]
        evidence["properties"]["baseline"]["properties"]["runs"]["type"] = "number"

    def change_condition_enum(s: dict[str, Any]) -> None:
        s["properties"]["status"]["properties"]["conditions"]["items"]["properties"]["status"]["enum"].pop()

    for fn in (
        drop_property,
        add_property,
        change_required,
        change_enum,
        change_default,
        change_bound,
        change_nested_status,
        change_condition_enum,
    ):
        yield fn.__name__, fn


@pytest.mark.parametrize(("name", "mutate"), list(_mutations()), ids=[n for n, _ in _mutations()])
def test_drift_is_detected(name: str, mutate: Any) -> None:
    # The contract test is only worth something if it notices a change.
    schema = copy.deepcopy(openapi_schema(CRDS["PromotionRequest"]))
    mutate(schema)
    assert schema_drift(schema, model_schema(api.PromotionRequest)), name


def _walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path or "<root>", node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), Mapping):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural_and_strict(kind: str) -> None:
    for path, node in _walk(openapi_schema(CRDS[kind])):
        assert "type" in node, f"{path}: structural schemas need a type on every node"
        assert "$ref" not in node, path
        assert not node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: status and spec stay strict"
        if "properties" in node:
            assert "additionalProperties" not in node, f"{path}: properties and additionalProperties exclude"
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", ()))
            assert set(node["x-kubernetes-list-map-keys"]) <= required, (
                f"{path}: list-map keys must be required"
            )
        if node.get("type") == "string" and path.startswith("spec") and "enum" not in node:
            assert "maxLength" in node, f"{path}: bounded strings keep CEL costs and etcd objects small"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: bounded lists keep CEL costs and etcd objects small"


CANONICAL_CONDITIONS = openapi_schema(CRDS["AgentRelease"])["properties"]["status"]["properties"][
    "conditions"
]


@pytest.mark.parametrize("kind", KINDS)
def test_status_has_observed_generation_and_conditions(kind: str) -> None:
    status = openapi_schema(CRDS[kind])["properties"]["status"]["properties"]
    assert status["observedGeneration"] == {"type": "integer", "format": "int64", "minimum": 0}
    assert status["conditions"] == CANONICAL_CONDITIONS
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    item = status["conditions"]["items"]
    assert item["required"] == ["type", "status", "reason", "message", "lastTransitionTime"]


def _resolves(schema: Mapping[str, Any], json_path: str) -> bool:
    node: Mapping[str, Any] = schema
    # Filters such as [?(@.type=="Ready")] hold dots of their own: reduce them to a bare [] first.
    for step in re.sub(r"\[[^\]]*\]", "[]", json_path).lstrip(".").split("."):
        name, _, selector = step.partition("[")
        if name == "metadata":
            return True
        node = node.get("properties", {}).get(name, {})
        if not node:
            return False
        if selector:
            node = node["items"]
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_resolve(kind: str) -> None:
    schema = openapi_schema(CRDS[kind])
    columns = served_version(CRDS[kind])["additionalPrinterColumns"]
    for column in columns:
        assert _resolves(schema, column["jsonPath"]), column
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@pytest.mark.parametrize(
    ("kind", "wanted"),
    [
        ("PromotionRequest", ["Pointer", "Action", "Release", "Phase", "Reason", "Age"]),
        ("ReleasePointer", ["Agent", "Environment", "Release", "Age"]),
    ],
)
def test_default_printer_columns(kind: str, wanted: list[str]) -> None:
    columns = served_version(CRDS[kind])["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == wanted


def test_reason_column_reads_the_ready_condition() -> None:
    columns = {c["name"]: c for c in served_version(CRDS["PromotionRequest"])["additionalPrinterColumns"]}
    assert columns["Reason"]["jsonPath"] == f'.status.conditions[?(@.type=="{ConditionType.READY}")].reason'


def _rule(kind: str, path: str) -> list[tuple[str, str]]:
    return [(r.rule, r.message) for r in all_cel_rules() if r.kind == kind and r.path == path]


def test_cel_rules_mirror_the_models() -> None:
    assert _rule("PromotionRequest", "spec.window") == [
        (f"self.matches('{api.WINDOW_PATTERN}')", api.WINDOW_MESSAGE)
    ]
    assert _rule("PromotionRequest", "spec.reason") == [
        ("self.trim().size() > 0", api.REASON_NOT_BLANK_MESSAGE)
    ]
    spec_rules = _rule("PromotionRequest", "spec")
    assert ("self == oldSelf", "spec is immutable; create a new PromotionRequest instead") in spec_rules
    assert (
        "(has(self.action) && self.action == 'rollback') || has(self.release)",
        api.RELEASE_REQUIRED_MESSAGE,
    ) in spec_rules
    assert _rule("AgentRelease", "spec") == [
        ("self == oldSelf", "spec is immutable; create a new AgentRelease instead")
    ]


def test_every_cel_rule_has_a_message_and_an_invalid_fixture() -> None:
    fixtures = load_invalid_fixtures()
    for rule in all_cel_rules():
        assert rule.message, rule
        assert any(f.kind == rule.kind and f.expect in rule.message for f in fixtures), (
            f"no fixture breaks {rule}"
        )


@pytest.mark.parametrize("fixture", load_invalid_fixtures(), ids=lambda f: f.path.stem)
def test_invalid_fixture_is_rejected_offline(fixture: Any) -> None:
    model = api.RESOURCES_BY_KIND[fixture.kind]
    schema = openapi_schema(CRDS[fixture.kind])
    if fixture.operation == "update":
        # Both documents are valid objects; only the transition breaks an immutability rule.
        before, after = fixture.documents
        for doc in fixture.documents:
            assert schema_errors(doc, schema) == []
            model.model_validate(doc)
        assert before["metadata"]["name"] == after["metadata"]["name"]
        assert before["spec"] != after["spec"]
        return
    # The models mirror the schema and the create-time CEL rules, so they reject every fixture too.
    with pytest.raises(ValidationError):
        model.model_validate(fixture.invalid_object)
    cel_messages = [r.message for r in all_cel_rules() if r.kind == fixture.kind]
    if not any(fixture.expect in message for message in cel_messages):
        errors = schema_errors(fixture.invalid_object, schema)
        assert any(fixture.expect in e for e in errors), (fixture.expect, errors)


def test_docs_cover_every_rule_reason_and_name() -> None:
    doc = DOCS_CRDS.read_text()
    for rule in all_cel_rules():
        assert rule.message in doc, rule.message
    for reason in Reason:
        assert f"`{reason.value}`" in doc, reason
    for model in api.RESOURCES:
        assert f"`{model.INFO.short_names[0]}`" in doc
        for column in served_version(CRDS[model.KIND])["additionalPrinterColumns"]:
            assert column["name"] in doc


def test_statistical_gate_rules_mirror_the_models() -> None:
    from flightdeck_operator.api.v1alpha1 import statistics_types as stats

    base = "spec.statisticalGates"
    assert _rule("PromotionPolicy", f"{base}.confidence") == [
        ("self > 0.5 && self < 1.0", stats.CONFIDENCE_MESSAGE)
    ]
    assert _rule("PromotionPolicy", f"{base}.power") == [("self >= 0.5 && self < 1.0", stats.POWER_MESSAGE)]
    assert _rule("PromotionPolicy", f"{base}.latency[].quantile") == [
        ("self > 0.0 && self < 1.0", stats.QUANTILE_MESSAGE)
    ]
    assert _rule("PromotionPolicy", f"{base}.latency[]") == [
        ("has(self.maxMs) || has(self.maxRatio)", stats.LATENCY_LIMIT_MESSAGE)
    ]
    assert _rule("PromotionPolicy", f"{base}.latency") == [
        ("self.all(a, self.exists_one(b, b.quantile == a.quantile))", stats.UNIQUE_QUANTILES_MESSAGE)
    ]
    for path in (f"{base}.latency[].maxRatio", f"{base}.costPerRun.maxRatio"):
        assert _rule("PromotionPolicy", path) == [("self > 0.0", stats.RATIO_MESSAGE)]
    gates = openapi_schema(CRDS["PromotionPolicy"])["properties"]["spec"]["properties"]["statisticalGates"]
    assert gates["properties"]["latency"]["maxItems"] == stats.MAX_LATENCY_QUANTILES
    assert "default" not in gates  # absent means the policy as before
