"""Which pointer governs, from a whole-namespace snapshot and from one (agentId, environment)'s
pointers only: the watch handler uses the second, the sweep and the decisions the first, and they
must never disagree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.v1alpha1 import PromotionPolicySpec, ReleasePointerSpec
from flightdeck_operator.controller.pointer_health import pointer_problem, problem_among
from flightdeck_operator.controller.view import NamespaceView, PointerTarget

NAMESPACE = "team-a"
pointer_fields = st.tuples(
    st.sampled_from(["support-bot", "triage"]),  # agentId
    st.sampled_from(["staging", "production"]),  # environment
    st.sampled_from(["2026-12-01T00:00:00Z", "2026-12-01T00:00:01Z", "2026-12-02T10:00:00Z"]),
    st.sampled_from([None, "default", "strict"]),  # policyRef
)


def snapshot(pointers: dict[str, tuple[str, str, str, str | None]], policies: set[str]) -> NamespaceView:
    return NamespaceView(
        namespace=NAMESPACE,
        pointers={
            name: ReleasePointerSpec.model_validate(
                {"agentId": agent, "environment": env} | ({"policyRef": {"name": policy}} if policy else {})
            )
            for name, (agent, env, _, policy) in pointers.items()
        },
        pointer_created={name: created for name, (_, _, created, _) in pointers.items()},
        releases={},
        policies={name: PromotionPolicySpec() for name in policies},
        pricing_tables={},
    )


def targets(pointers: dict[str, tuple[str, str, str, str | None]]) -> list[PointerTarget]:
    return [
        PointerTarget(name, created, agent, env, policy, ready_reason=None)
        for name, (agent, env, created, policy) in pointers.items()
    ]


@given(
    st.dictionaries(st.sampled_from([f"p{i}" for i in range(8)]), pointer_fields, max_size=8),
    st.sets(st.sampled_from(["default", "strict"])),
)
def test_one_targets_pointers_say_what_the_whole_namespace_says(
    pointers: dict[str, tuple[str, str, str, str | None]], policies: set[str]
) -> None:
    view = snapshot(pointers, policies)
    everyone = targets(pointers)
    for target in everyone:
        siblings = [
            s for s in everyone if (s.agent_id, s.environment) == (target.agent_id, target.environment)
        ]
        assert problem_among(target, siblings, policies, NAMESPACE) == pointer_problem(view, target.name)


def test_the_oldest_pointer_governs_then_the_smallest_name() -> None:
    pointers = {
        "b-first": ("support-bot", "production", "2026-12-01T00:00:00Z", None),
        "a-same-second": ("support-bot", "production", "2026-12-01T00:00:00Z", None),
        "older-elsewhere": ("support-bot", "staging", "2026-11-01T00:00:00Z", None),
        "late": ("support-bot", "production", "2026-12-03T00:00:00Z", "missing"),
    }
    view = snapshot(pointers, set())
    assert view.governing == {
        ("support-bot", "production"): "a-same-second",
        ("support-bot", "staging"): "older-elsewhere",
    }
    assert pointer_problem(view, "a-same-second") is None
    duplicate = pointer_problem(view, "late")
    assert duplicate is not None
    assert duplicate.reason is Reason.DUPLICATE_POINTER  # a duplicate before a missing policy
    assert '"a-same-second" already governs' in duplicate.message
