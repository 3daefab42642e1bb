"""Evidence per hour (the dashboard's charts) against real SQLite and PostgreSQL: every run lands in
the hour it happened, and the hours add up to the window's evidence exactly."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.engine.evidence import merge_aggregates
from flightdeck_operator.store import Store
from tests.factories import NOW, event_dict

HOUR = dt.timedelta(hours=1)


def test_runs_land_in_their_hour_and_the_hours_add_up_to_the_window(store: Store) -> None:
    start = NOW.replace(minute=0, second=0, microsecond=0) - 5 * HOUR
    at = [
        start - dt.timedelta(minutes=10),  # before the window
        start + dt.timedelta(minutes=40),  # the ragged first hour
        start + HOUR + dt.timedelta(minutes=5),
        start + HOUR + dt.timedelta(minutes=50),
        start + 3 * HOUR,
        start + 4 * HOUR + dt.timedelta(minutes=20),  # the ragged last hour
        start + 4 * HOUR + dt.timedelta(minutes=45),  # after the window
    ]
    store.ingest(
        [event_dict(timestamp=t, latency_ms=100 * (n + 1), success=n != 3) for n, t in enumerate(at)]
    )
    store.ingest([event_dict(timestamp=at[2], release_id="other")])
    since, until = start + dt.timedelta(minutes=30), start + 4 * HOUR + dt.timedelta(minutes=30)

    hours = store.hourly_evidence("rel_base", "local", since, until)

    assert [h.hour for h in hours] == [start, start + HOUR, start + 3 * HOUR, start + 4 * HOUR]
    assert [sum(a.runs for a in h.aggregates) for h in hours] == [1, 2, 1, 1]
    second = hours[1].aggregates[0]
    assert (second.latency_ms_sum, second.latency_count, second.failures) == (300 + 400, 2, 1)
    window = store.evidence("rel_base", "local", since, until)
    assert merge_aggregates(a for h in hours for a in h.aggregates) == window.aggregates
    assert store.hourly_evidence("rel_base", "local", since, until, tenant_id="nobody") == []
