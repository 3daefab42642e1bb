"""Which spec.follows can work (pure): same agent, not itself, no cycle."""

from __future__ import annotations

from flightdeck_operator.api.pipeline_rules import Node, follow_problem, followers

POINTERS = {
    "canary": Node("bot", None),
    "staging": Node("bot", "canary"),
    "production": Node("bot", "staging"),
    "other": Node("other-bot", None),
}


def test_a_chain_of_the_same_agent_is_fine() -> None:
    assert follow_problem("production", "bot", "staging", POINTERS) is None
    assert follow_problem("eu", "bot", "production", POINTERS) is None


def test_an_upstream_not_created_yet_is_not_refused() -> None:
    assert follow_problem("production", "bot", "later", POINTERS) is None


def test_itself() -> None:
    assert follow_problem("canary", "bot", "canary", POINTERS) == "a ReleasePointer cannot follow itself"


def test_another_agent() -> None:
    assert follow_problem("production", "bot", "other", POINTERS) == (
        'ReleasePointer "other" governs agent "other-bot", but "production" governs agent "bot": '
        "a pointer can only follow a pointer of the same agent"
    )


def test_a_cycle_names_its_path() -> None:
    # canary following production closes canary -> production -> staging -> canary.
    assert follow_problem("canary", "bot", "production", POINTERS) == (
        'following "production" would make a cycle: canary -> production -> staging -> canary'
    )
    assert follow_problem("canary", "bot", "staging", POINTERS) == (
        'following "staging" would make a cycle: canary -> staging -> canary'
    )


def test_an_existing_cycle_elsewhere_does_not_hang() -> None:
    looped = {"a": Node("bot", "b"), "b": Node("bot", "a")}
    assert follow_problem("c", "bot", "a", looped) is None


def test_the_spec_being_changed_wins_over_its_stored_copy() -> None:
    # An update: "canary" in the map still follows nothing; the new spec follows production.
    assert follow_problem("canary", "bot", "production", POINTERS) is not None


def test_followers() -> None:
    assert followers("canary", POINTERS) == ["staging"]
    assert followers("production", POINTERS) == []
