"""The reference diff computed from stored events is unchanged, byte for byte, on both backends:
tests/golden/store-diff.* were rendered from SQLite before statistical gates (and their schema
migration) existed (see tests/golden_outputs.py)."""

from __future__ import annotations

from flightdeck_operator.store import Store
from tests.golden_outputs import GOLDEN_DIR, store_diff, store_scenario_events


def test_stored_evidence_gives_the_same_diff_bytes(store: Store) -> None:
    store.ingest(store_scenario_events())
    rendered = store_diff(store.diff_evidence)
    on_disk = {p.name for p in GOLDEN_DIR.glob("store-diff.*")}
    assert set(rendered) == on_disk
    for name, text in rendered.items():
        assert text == (GOLDEN_DIR / name).read_text(), name
