"""The ledger's actor for a policy or pricing change: who last wrote the spec, not whoever wrote last."""

from __future__ import annotations

from flightdeck_operator.controller.records import last_manager


def field(
    manager: str, time: str, fields: dict[str, object], subresource: str | None = None
) -> dict[str, object]:
    entry: dict[str, object] = {"manager": manager, "operation": "Update", "time": time, "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


def test_the_spec_writer_is_the_actor_even_when_the_operator_wrote_later() -> None:
    metadata = {
        "managedFields": [
            field("kubectl-client-side-apply", "2026-11-25T10:00:00Z", {"f:spec": {}}),
            field("flightdeck-cli", "2026-11-25T10:05:00Z", {"f:metadata": {}, "f:spec": {"f:entries": {}}}),
            # The operator's status write and kopf's annotation patch come after, but own no spec field.
            field("OpenAPI-Generator", "2026-11-25T10:05:01Z", {"f:status": {}}, subresource="status"),
            field("kopf", "2026-11-25T10:05:02Z", {"f:metadata": {"f:annotations": {}}}),
        ]
    }
    assert last_manager(metadata) == "flightdeck-cli"


def test_without_spec_writers_the_newest_entry_counts() -> None:
    metadata = {
        "managedFields": [field("a", "2026-11-25T10:00:00Z", {}), field("b", "2026-11-25T10:00:01Z", {})]
    }
    assert last_manager(metadata) == "b"
    assert last_manager({}) == "unknown"
