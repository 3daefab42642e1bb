"""The schema: versioned, forward-only migrations for SQLite and PostgreSQL, and the SQL text and
column lists the queries share.

- Timestamps are UTC integer microseconds (``ts_us``), never text. A naive timestamp is taken as UTC.
- Run events are idempotent on ``run_id`` (``INSERT ... ON CONFLICT DO NOTHING``).
- Triggers (PostgreSQL) or the insert path (SQLite) keep hourly per-(release, environment, agent,
  model, tenant, task) sums in ``run_event_buckets`` for every event actually inserted.
- The ledger is append-only: triggers refuse UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flightdeck_operator.engine.statistics.latency_bins import (
    INTEGER_BIN_INDEX,
    ZERO_BIN,
    largest_integer_in_bin,
)

BUCKET_US = 3_600_000_000
"""Width of a pre-aggregated evidence bucket: one hour, in microseconds."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


def bucket_of(column: str) -> str:
    # Floor to the hour, also correct for timestamps before 1970 (SQL % truncates toward zero).
    return f"{column} - ((({column} % {BUCKET_US}) + {BUCKET_US}) % {BUCKET_US})"


_RUN_EVENTS_SQLITE = """
CREATE TABLE run_events (
    run_id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    latency_ms INTEGER,
    success INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    event_json TEXT NOT NULL
)"""

LEDGER_COLUMNS = (
    "seq",
    "idempotency_key",
    "request_uid",
    "kind",
    "actor",
    "namespace",
    "pointer",
    "agent_id",
    "environment",
    "release_id",
    "baseline_release_id",
    "pointer_changed",
    "reason",
    "policy_result_json",
    "evidence_json",
    "policy_digest",
    "details_json",
    "created_at_us",
    "prev_hash",
    "hash",
    "request_name",
    "spec_digest",
    "epoch",
    "pointer_seq",
)

_LEDGER_SQL = """
CREATE TABLE ledger_entries (
    seq BIGINT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_uid TEXT UNIQUE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    namespace TEXT NOT NULL,
    pointer TEXT,
    agent_id TEXT,
    environment TEXT,
    release_id TEXT,
    baseline_release_id TEXT,
    pointer_changed INTEGER NOT NULL,
    reason TEXT NOT NULL,
    policy_result_json TEXT,
    evidence_json TEXT,
    policy_digest TEXT,
    details_json TEXT,
    created_at_us BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    CHECK (seq >= 1)
)"""

_BUCKETS_SQL = """
CREATE TABLE run_event_buckets (
    release_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    bucket_start_us BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    runs BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    latency_ms_sum BIGINT NOT NULL,
    latency_count BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id)
)"""
_BUCKET_KEY = "release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id"
BUCKET_SUMS = (
    "runs",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "latency_ms_sum",
    "latency_count",
    "failures",
)
_EVENT_SUMS = (  # per-event contributions, in BUCKET_SUMS order
    "1",
    "{e}.input_tokens",
    "{e}.output_tokens",
    "{e}.cached_input_tokens",
    "COALESCE({e}.latency_ms, 0)",
    "CASE WHEN {e}.latency_ms IS NULL THEN 0 ELSE 1 END",
    "1 - {e}.success",
)


def _sqlite_bucket_delete_trigger() -> str:
    # Inserts maintain buckets in Python (see SqliteStore); a delete (retention, forensics clean-up)
    # is rare, so a row trigger keeps the buckets right without code on every path.
    subtract = ", ".join(
        f"{c} = {c} - ({s.format(e='OLD')})" for c, s in zip(BUCKET_SUMS, _EVENT_SUMS, strict=True)
    )
    return f"""CREATE TRIGGER run_events_bucket_delete AFTER DELETE ON run_events BEGIN
            UPDATE run_event_buckets SET {subtract}
            WHERE release_id = OLD.release_id AND environment = OLD.environment
              AND bucket_start_us = {bucket_of("OLD.ts_us")} AND agent_id = OLD.agent_id
              AND model = OLD.model AND tenant_id = OLD.tenant_id AND task_id = OLD.task_id;
        END"""


def _pg_bucket_functions() -> tuple[str, ...]:
    def statement(transition: str, sign: str) -> str:
        sums = ", ".join(
            [
                "COUNT(*)",
                "SUM(input_tokens)",
                "SUM(output_tokens)",
                "SUM(cached_input_tokens)",
                "COALESCE(SUM(latency_ms), 0)",
                "COUNT(latency_ms)",
                "COUNT(*) - SUM(success)",
            ]
        )
        update = ", ".join(f"{c} = b.{c} {sign} EXCLUDED.{c}" for c in BUCKET_SUMS)
        # One set-based upsert per statement; ORDER BY keeps lock order stable across writers.
        return f"""
            INSERT INTO run_event_buckets AS b ({_BUCKET_KEY}, {", ".join(BUCKET_SUMS)})
            SELECT release_id, environment, {bucket_of("ts_us")}, agent_id, model, tenant_id, task_id, {sums}
            FROM {transition} GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
            ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET {update}"""

    return (
        f"""CREATE FUNCTION run_events_bucket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("inserted_events", "+")}; RETURN NULL; END $$""",
        f"""CREATE FUNCTION run_events_bucket_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("deleted_events", "-")}; RETURN NULL; END $$""",
        """CREATE TRIGGER run_events_bucket_insert AFTER INSERT ON run_events
            REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_bucket_insert()""",
        """CREATE TRIGGER run_events_bucket_delete AFTER DELETE ON run_events
            REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_bucket_delete()""",
    )


_BUCKET_BACKFILL = f"""
INSERT INTO run_event_buckets ({_BUCKET_KEY}, {", ".join(BUCKET_SUMS)})
SELECT release_id, environment, {bucket_of("ts_us")}, agent_id, model, tenant_id, task_id,
       COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       COALESCE(SUM(latency_ms), 0), COUNT(latency_ms), COUNT(*) - SUM(success)
FROM run_events GROUP BY 1, 2, 3, 4, 5, 6, 7"""

_APPEND_ONLY_MESSAGE = "ledger_entries is append-only"


def _fence_and_replay(bigint: str) -> tuple[str, ...]:
    return (
        # The fence: the epoch of the operator allowed to append, checked in every append's
        # transaction (docs/operations.md, "High availability").
        f"""CREATE TABLE leader_fence (name TEXT PRIMARY KEY, epoch {bigint} NOT NULL,
            holder TEXT NOT NULL, claimed_at_us {bigint} NOT NULL)""",
        "ALTER TABLE ledger_entries ADD COLUMN request_name TEXT",
        "ALTER TABLE ledger_entries ADD COLUMN spec_digest TEXT",
        f"ALTER TABLE ledger_entries ADD COLUMN epoch {bigint}",
        f"ALTER TABLE ledger_entries ADD COLUMN pointer_seq {bigint}",
        # Two moves of one pointer from the same head cannot both commit, whoever believes to lead.
        """CREATE UNIQUE INDEX ledger_pointer_head ON ledger_entries (namespace, pointer, pointer_seq)
            WHERE pointer_seq IS NOT NULL""",
        """CREATE INDEX ledger_request_name ON ledger_entries (namespace, request_name, spec_digest)
            WHERE request_name IS NOT NULL""",
        # Who deleted a ReleasePointer, as any replica's admission webhook saw it, until the
        # leader ledgers the retirement.
        f"""CREATE TABLE pointer_deletion_notes (namespace TEXT NOT NULL, name TEXT NOT NULL,
            uid TEXT NOT NULL, username TEXT NOT NULL, noted_at_us {bigint} NOT NULL,
            PRIMARY KEY (namespace, name, uid))""",
    )


# --- Run forensics (GET /v1/runs): the request ids as columns, so that filters use indexes ---------

REQUEST_ID_COLUMNS = ("trace_id", "session_id", "span_id")
"""``request.<name>`` of ``event_json``, copied into columns of the same name at insert."""


def _request_id_backfill(extract: str) -> str:
    sets = ", ".join(f"{name} = {extract.format(name=name)}" for name in REQUEST_ID_COLUMNS)
    return f"UPDATE run_events SET {sets}"


_FORENSICS_INDEXES = (
    # A trace, session or span holds few events: the id alone narrows a page to a handful of rows.
    # Partial: events without the id (most of them, for spans) cost no index entry.
    *(
        f"CREATE INDEX run_events_{name} ON run_events ({name}, ts_us) WHERE {name} IS NOT NULL"
        for name in REQUEST_ID_COLUMNS
    ),
    # tenant + task: the page and its edge counts without reading rows of other tenants.
    "CREATE INDEX run_events_release_env_tenant_task_ts "
    "ON run_events (release_id, environment, tenant_id, task_id, ts_us)",
)
# ... and the whole hours of its count, from the buckets of that tenant and task only. On SQLite
# the index holds runs too, so it answers alone and the planner picks it without statistics; on
# PostgreSQL it does not, so bucket updates (runs changes on every insert) stay HOT updates.
_BUCKETS_BY_TENANT_TASK = (
    "CREATE INDEX run_event_buckets_tenant_task "
    "ON run_event_buckets (release_id, environment, tenant_id, task_id, bucket_start_us{runs})"
)

# --- Counters for GET /v1/metrics: kept on every insert, delete and append, never COUNT(*) --------

RUN_EVENTS_COUNTER = "run_events"
# PostgreSQL writers add to one of these rows each (by backend pid), so concurrent ingest
# transactions do not queue on a single counter row; readers sum the shards.
COUNTER_SHARDS = 16

_COUNTER_TABLES = (
    """CREATE TABLE store_counters (
        name TEXT NOT NULL,
        shard INTEGER NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (name, shard)
    )""",
    f"INSERT INTO store_counters (name, shard, value) SELECT '{RUN_EVENTS_COUNTER}', 0, COUNT(*) FROM run_events",
    """CREATE TABLE ledger_counts (
        namespace TEXT NOT NULL,
        kind TEXT NOT NULL,
        entries BIGINT NOT NULL,
        PRIMARY KEY (namespace, kind)
    )""",
    "INSERT INTO ledger_counts (namespace, kind, entries) "
    "SELECT namespace, kind, COUNT(*) FROM ledger_entries GROUP BY namespace, kind",
)


def _pg_counter_triggers() -> tuple[str, ...]:
    def function(name: str, transition: str, sign: str) -> str:
        return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO store_counters AS c (name, shard, value)
                SELECT '{RUN_EVENTS_COUNTER}', pg_backend_pid() % {COUNTER_SHARDS}, {sign}COUNT(*)
                FROM {transition}
                ON CONFLICT (name, shard) DO UPDATE SET value = c.value + EXCLUDED.value;
                RETURN NULL;
            END $$"""

    return (
        function("run_events_count_insert", "inserted_events", ""),
        function("run_events_count_delete", "deleted_events", "-"),
        """CREATE TRIGGER run_events_count_insert AFTER INSERT ON run_events
            REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_count_insert()""",
        """CREATE TRIGGER run_events_count_delete AFTER DELETE ON run_events
            REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_count_delete()""",
    )


SQLITE_COUNT_INSERTED = (
    f"UPDATE store_counters SET value = value + ? WHERE name = '{RUN_EVENTS_COUNTER}' AND shard = 0"
)
LEDGER_COUNT_UPSERT = (
    "INSERT INTO ledger_counts (namespace, kind, entries) VALUES (?, ?, 1) "
    "ON CONFLICT (namespace, kind) DO UPDATE SET entries = ledger_counts.entries + 1"
)

# --- The notification outbox: one delivery per (subscription, ledger entry, event) -----------------

_OUTBOX_TABLES = (
    # The delivery state of one NotificationSubscription (by UID): how far it has read the ledger,
    # its backoff, and counters that survive restarts (the Prometheus counters and its status).
    """CREATE TABLE notification_subscriptions (
        uid TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        cursor_seq BIGINT NOT NULL,
        next_attempt_at_us BIGINT NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        delivered_total BIGINT NOT NULL,
        failed_attempts_total BIGINT NOT NULL,
        expired_total BIGINT NOT NULL,
        last_success_at_us BIGINT,
        last_failure_at_us BIGINT,
        last_error TEXT,
        created_at_us BIGINT NOT NULL
    )""",
    # state: pending (due, retried with backoff), delivered, expired (retryFor passed).
    """CREATE TABLE notification_deliveries (
        subscription_uid TEXT NOT NULL,
        ledger_seq BIGINT NOT NULL,
        event TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        due_at_us BIGINT NOT NULL,
        last_attempt_at_us BIGINT,
        finished_at_us BIGINT,
        last_error TEXT,
        PRIMARY KEY (subscription_uid, ledger_seq, event)
    )""",
    "CREATE INDEX notification_deliveries_pending "
    "ON notification_deliveries (subscription_uid, ledger_seq) WHERE state = 'pending'",
    "CREATE INDEX notification_deliveries_finished "
    "ON notification_deliveries (finished_at_us) WHERE state <> 'pending'",
)

# OTLP staging (docs/opentelemetry.md): request bodies as received (decompressed), the traces they
# carry and when each trace is due to become run events, and the traces already finalised (so
# spans arriving late are counted instead of being mapped a second time).
_OTLP_BATCHES = """
CREATE TABLE otlp_batches (
    batch_id TEXT PRIMARY KEY,
    received_us BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    pending_traces BIGINT NOT NULL
)"""
_OTLP_TRACES = """
CREATE TABLE otlp_traces (
    trace_id TEXT PRIMARY KEY,
    first_us BIGINT NOT NULL,
    last_us BIGINT NOT NULL,
    root_seen INTEGER NOT NULL,
    spans BIGINT NOT NULL,
    due_us BIGINT NOT NULL
)"""
_OTLP_TRACE_BATCHES = """
CREATE TABLE otlp_trace_batches (
    trace_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    PRIMARY KEY (trace_id, batch_id)
)"""
_OTLP_FINALIZED = """
CREATE TABLE otlp_finalized_traces (
    trace_id TEXT PRIMARY KEY,
    finalized_us BIGINT NOT NULL
)"""
_OTLP_INDEXES = (
    "CREATE INDEX otlp_traces_due ON otlp_traces (due_us)",
    "CREATE INDEX otlp_finalized_at ON otlp_finalized_traces (finalized_us)",
)


# --- statistical gates: second moments and the latency histogram (issue 16) -----------------------
# Doubles, not integers: Σ tokens² overflows a BIGINT after ~9 M runs of 10⁶ tokens, and a double
# is exact to 2⁵³ per term and loses about 1e-16 relative per addition.
BUCKET_MOMENTS = (
    "latency_ms_sq",
    "input_tokens_sq",
    "output_tokens_sq",
    "cached_input_tokens_sq",
    "input_output_tokens",
    "input_cached_tokens",
    "output_cached_tokens",
)
_EVENT_MOMENTS = (  # per-event contributions, in BUCKET_MOMENTS order (NULL latency adds 0)
    "COALESCE(CAST({e}.latency_ms AS DOUBLE PRECISION) * {e}.latency_ms, 0)",
    "CAST({e}.input_tokens AS DOUBLE PRECISION) * {e}.input_tokens",
    "CAST({e}.output_tokens AS DOUBLE PRECISION) * {e}.output_tokens",
    "CAST({e}.cached_input_tokens AS DOUBLE PRECISION) * {e}.cached_input_tokens",
    "CAST({e}.input_tokens AS DOUBLE PRECISION) * {e}.output_tokens",
    "CAST({e}.input_tokens AS DOUBLE PRECISION) * {e}.cached_input_tokens",
    "CAST({e}.output_tokens AS DOUBLE PRECISION) * {e}.cached_input_tokens",
)
_BIN_KEY = f"{_BUCKET_KEY}, latency_bin"
# Every bin a latency can fall in, with the integers it holds: ``above_ms < ms <= max_ms`` (empty
# when equal). Looked up exactly by integer comparison, so SQL bins equal the engine's everywhere.
_LIMITS_BINS = (ZERO_BIN, *range(-1, INTEGER_BIN_INDEX[-1] + 3))
_LATENCY_BIN_LIMITS = (
    "CREATE TABLE latency_bin_limits (latency_bin SMALLINT PRIMARY KEY, above_ms BIGINT NOT NULL, "
    "max_ms BIGINT NOT NULL)",
    "CREATE INDEX latency_bin_limits_max ON latency_bin_limits (max_ms)",
    "INSERT INTO latency_bin_limits (latency_bin, above_ms, max_ms) VALUES "
    + ", ".join(
        f"({index}, {-1 if index == ZERO_BIN else largest_integer_in_bin(index - 1)}, "
        f"{largest_integer_in_bin(index)})"
        for index in _LIMITS_BINS
    ),
)
# Portable lookup (SQLite's backfill and delete trigger): the bin whose integers include ``ms``.
_LATENCY_BIN_OF = (
    "(SELECT b.latency_bin FROM latency_bin_limits b WHERE b.max_ms >= {ms} AND b.above_ms < {ms} LIMIT 1)"
)
# Fast lookup for PostgreSQL's statement trigger: the logarithm guesses the bin (off by at most one
# near an edge), an equality join on the guess fetches its integer limits and they settle it.
_BINS_PER_LN = 16 / math.log(2)
_GUESSED_BIN = (
    f"CASE WHEN {{e}}.latency_ms = 0 THEN {ZERO_BIN} ELSE CAST(CEIL(LN(CAST({{e}}.latency_ms AS "
    f"DOUBLE PRECISION)) * {_BINS_PER_LN!r}) AS INTEGER) - 1 END"
)
_LATENCY_BINS_SQL = """
CREATE TABLE run_event_latency_bins (
    release_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    bucket_start_us BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    latency_bin SMALLINT NOT NULL,
    runs BIGINT NOT NULL,
    PRIMARY KEY (release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id, latency_bin)
)"""


def _binned(source: str) -> str:
    """``(key..., latency_bin, runs)`` of the events in ``source``, by the portable lookup: grouped
    by exact latency first, so each distinct value is looked up once."""
    return f"""
        SELECT release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id,
               {_LATENCY_BIN_OF.format(ms="g.latency_ms")} AS latency_bin, runs
        FROM (SELECT release_id, environment, {bucket_of("ts_us")} AS bucket_start_us, agent_id, model,
                     tenant_id, task_id, latency_ms, COUNT(*) AS runs
              FROM {source} WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) g"""


def _binned_by_guess(source: str) -> str:
    """``_binned`` by the fast lookup (PostgreSQL): one hash join, one grouping."""
    return f"""
        SELECT e.release_id, e.environment, {bucket_of("e.ts_us")} AS bucket_start_us, e.agent_id,
               e.model, e.tenant_id, e.task_id,
               l.latency_bin + CASE WHEN e.latency_ms > l.max_ms THEN 1
                                    WHEN e.latency_ms <= l.above_ms THEN -1 ELSE 0 END AS latency_bin,
               COUNT(*) AS runs
        FROM {source} e JOIN latency_bin_limits l ON l.latency_bin = {_GUESSED_BIN.format(e="e")}
        WHERE e.latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""


def _statistics_columns() -> tuple[str, ...]:
    return tuple(
        f"ALTER TABLE run_event_buckets ADD COLUMN {column} DOUBLE PRECISION NOT NULL DEFAULT 0"
        for column in BUCKET_MOMENTS
    )


_MOMENT_SUMS = ", ".join(
    f"SUM({expression.format(e='run_events')}) AS {column}"
    for column, expression in zip(BUCKET_MOMENTS, _EVENT_MOMENTS, strict=True)
)
_SAME_BUCKET = " AND ".join(f"run_event_buckets.{k} = s.{k}" for k in _BUCKET_KEY.split(", "))
_MOMENTS_BACKFILL = f"""
UPDATE run_event_buckets SET {", ".join(f"{c} = s.{c}" for c in BUCKET_MOMENTS)}
FROM (SELECT release_id, environment, {bucket_of("ts_us")} AS bucket_start_us, agent_id, model, tenant_id,
             task_id, {_MOMENT_SUMS}
      FROM run_events GROUP BY 1, 2, 3, 4, 5, 6, 7) AS s
WHERE {_SAME_BUCKET}"""
_BINS_BACKFILL = f"""
INSERT INTO run_event_latency_bins ({_BIN_KEY}, runs)
SELECT {_BIN_KEY}, SUM(runs) FROM ({_binned("run_events")}) binned GROUP BY {_BIN_KEY}"""
_PG_BINS_BACKFILL = f"""
INSERT INTO run_event_latency_bins ({_BIN_KEY}, runs)
SELECT {_BIN_KEY}, SUM(runs) FROM ({_binned_by_guess("run_events")}) binned GROUP BY {_BIN_KEY}"""


def _sqlite_statistics_delete_trigger() -> str:
    subtract = ", ".join(
        f"{c} = {c} - ({s.format(e='OLD')})"
        for c, s in zip(BUCKET_SUMS + BUCKET_MOMENTS, _EVENT_SUMS + _EVENT_MOMENTS, strict=True)
    )
    same_key = (
        f"release_id = OLD.release_id AND environment = OLD.environment AND bucket_start_us = "
        f"{bucket_of('OLD.ts_us')} AND agent_id = OLD.agent_id AND model = OLD.model "
        "AND tenant_id = OLD.tenant_id AND task_id = OLD.task_id"
    )
    return f"""CREATE TRIGGER run_events_bucket_delete AFTER DELETE ON run_events BEGIN
            UPDATE run_event_buckets SET {subtract} WHERE {same_key};
            UPDATE run_event_latency_bins SET runs = runs - 1
            WHERE {same_key} AND latency_bin = {_LATENCY_BIN_OF.format(ms="OLD.latency_ms")};
        END"""


def _pg_statistics_functions() -> tuple[str, ...]:
    def statement(transition: str, sign: str) -> str:
        columns = BUCKET_SUMS + BUCKET_MOMENTS
        sums = ", ".join(
            [
                "COUNT(*)",
                "SUM(input_tokens)",
                "SUM(output_tokens)",
                "SUM(cached_input_tokens)",
                "COALESCE(SUM(latency_ms), 0)",
                "COUNT(latency_ms)",
                "COUNT(*) - SUM(success)",
                *(f"SUM({e.format(e=transition)})" for e in _EVENT_MOMENTS),
            ]
        )
        update = ", ".join(f"{c} = b.{c} {sign} EXCLUDED.{c}" for c in columns)
        return f"""
            INSERT INTO run_event_buckets AS b ({_BUCKET_KEY}, {", ".join(columns)})
            SELECT release_id, environment, {bucket_of("ts_us")}, agent_id, model, tenant_id, task_id, {sums}
            FROM {transition} GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
            ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET {update};
            INSERT INTO run_event_latency_bins AS h ({_BIN_KEY}, runs)
            SELECT {_BIN_KEY}, SUM(runs) FROM ({_binned_by_guess(transition)}) binned
            GROUP BY {_BIN_KEY} ORDER BY {_BIN_KEY}
            ON CONFLICT ({_BIN_KEY}) DO UPDATE SET runs = h.runs {sign} EXCLUDED.runs"""

    return (
        f"""CREATE OR REPLACE FUNCTION run_events_bucket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("inserted_events", "+")}; RETURN NULL; END $$""",
        f"""CREATE OR REPLACE FUNCTION run_events_bucket_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("deleted_events", "-")}; RETURN NULL; END $$""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "run events",
        sqlite=(
            _RUN_EVENTS_SQLITE,
            "CREATE INDEX run_events_release_env_ts ON run_events (release_id, environment, ts_us)",
        ),
        postgresql=(
            _RUN_EVENTS_SQLITE.replace("INTEGER", "BIGINT"),
            "CREATE INDEX run_events_release_env_ts ON run_events (release_id, environment, ts_us)",
        ),
    ),
    Migration(
        2,
        "hash-chained ledger",
        sqlite=(
            _LEDGER_SQL.replace("BIGINT", "INTEGER"),
            "CREATE INDEX ledger_pointer_seq ON ledger_entries (namespace, pointer, seq)",
            "CREATE INDEX ledger_agent_env_seq ON ledger_entries (agent_id, environment, seq)",
            f"""CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END""",
            f"""CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END""",
        ),
        postgresql=(
            _LEDGER_SQL,
            "CREATE INDEX ledger_pointer_seq ON ledger_entries (namespace, pointer, seq)",
            "CREATE INDEX ledger_agent_env_seq ON ledger_entries (agent_id, environment, seq)",
            f"""CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$""",
            """CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entries
                FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""",
            """CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger_entries
                FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()""",
        ),
    ),
    Migration(
        3,
        "hourly evidence buckets",
        sqlite=(_BUCKETS_SQL + " WITHOUT ROWID", _sqlite_bucket_delete_trigger(), _BUCKET_BACKFILL),
        postgresql=(_BUCKETS_SQL, *_pg_bucket_functions(), _BUCKET_BACKFILL),
    ),
    Migration(
        4,
        "run forensics: request ids and filter indexes",
        sqlite=(
            *(f"ALTER TABLE run_events ADD COLUMN {column} TEXT" for column in REQUEST_ID_COLUMNS),
            _request_id_backfill("json_extract(event_json, '$.request.{name}')"),
            *_FORENSICS_INDEXES,
            _BUCKETS_BY_TENANT_TASK.format(runs=", runs"),
        ),
        postgresql=(
            "ALTER TABLE run_events "
            + ", ".join(f"ADD COLUMN {column} TEXT" for column in REQUEST_ID_COLUMNS),
            _request_id_backfill("(event_json::jsonb #>> '{{request,{name}}}')"),
            *_FORENSICS_INDEXES,
            _BUCKETS_BY_TENANT_TASK.format(runs=""),
        ),
    ),
    Migration(
        5,
        "counters for the JSON metrics",
        sqlite=(
            *_COUNTER_TABLES,
            f"""CREATE TRIGGER run_events_count_delete AFTER DELETE ON run_events BEGIN
                UPDATE store_counters SET value = value - 1
                WHERE name = '{RUN_EVENTS_COUNTER}' AND shard = 0; END""",
        ),
        postgresql=(*_COUNTER_TABLES, *_pg_counter_triggers()),
    ),
    Migration(
        6,
        "notification outbox",
        sqlite=_OUTBOX_TABLES,
        postgresql=_OUTBOX_TABLES,
    ),
    Migration(
        7,
        "otlp span staging",
        sqlite=(
            _OTLP_BATCHES,
            _OTLP_TRACES,
            _OTLP_TRACE_BATCHES + " WITHOUT ROWID",
            _OTLP_FINALIZED,
            *_OTLP_INDEXES,
        ),
        postgresql=(
            _OTLP_BATCHES.replace("BLOB", "BYTEA"),
            _OTLP_TRACES,
            _OTLP_TRACE_BATCHES,
            _OTLP_FINALIZED,
            *_OTLP_INDEXES,
        ),
    ),
    Migration(
        8,
        "latency histogram and second moments for statistical gates",
        sqlite=(
            *_LATENCY_BIN_LIMITS,
            *_statistics_columns(),
            _LATENCY_BINS_SQL + " WITHOUT ROWID",
            "DROP TRIGGER run_events_bucket_delete",
            _sqlite_statistics_delete_trigger(),
            _MOMENTS_BACKFILL,
            _BINS_BACKFILL,
        ),
        postgresql=(
            *_LATENCY_BIN_LIMITS,
            *_statistics_columns(),
            _LATENCY_BINS_SQL,
            *_pg_statistics_functions(),
            _MOMENTS_BACKFILL,
            _PG_BINS_BACKFILL,
        ),
    ),
    Migration(
        9,
        "leader fence, pointer sequence, replay keys, deletion notes",
        sqlite=_fence_and_replay("INTEGER"),
        postgresql=_fence_and_replay("BIGINT"),
    ),
)

LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version

SQLITE_BUCKET_UPSERT = (
    f"INSERT INTO run_event_buckets ({_BUCKET_KEY}, {', '.join(BUCKET_SUMS + BUCKET_MOMENTS)}) "
    f"VALUES ({', '.join('?' for _ in range(21))}) ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in BUCKET_SUMS + BUCKET_MOMENTS)
)
SQLITE_LATENCY_BIN_UPSERT = (
    f"INSERT INTO run_event_latency_bins ({_BIN_KEY}, runs) VALUES ({', '.join('?' for _ in range(9))}) "
    f"ON CONFLICT ({_BIN_KEY}) DO UPDATE SET runs = runs + excluded.runs"
)

EVENT_COLUMNS = (
    "run_id",
    "release_id",
    "agent_id",
    "environment",
    "tenant_id",
    "task_id",
    "ts_us",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "latency_ms",
    "success",
    "received_at_us",
    "event_json",
    *REQUEST_ID_COLUMNS,
)
INSERT_EVENT_SQL = (
    f"INSERT INTO run_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)
