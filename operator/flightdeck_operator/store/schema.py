"""The schema: versioned, forward-only migrations for SQLite and PostgreSQL, and the SQL text and
column lists the queries share.

- Timestamps are UTC integer microseconds (``ts_us``), never text. A naive timestamp is taken as UTC.
- Run events are idempotent on ``run_id`` (``INSERT ... ON CONFLICT DO NOTHING``).
- Triggers (PostgreSQL) or the insert path (SQLite) keep hourly per-(release, environment, agent,
  model, tenant, task) sums in ``run_event_buckets`` for every event actually inserted.
- The ledger is append-only: triggers refuse UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

from dataclasses import dataclass

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


SQLITE_BUCKET_UPSERT = (
    f"INSERT INTO run_event_buckets ({_BUCKET_KEY}, {', '.join(BUCKET_SUMS)}) "
    f"VALUES ({', '.join('?' for _ in range(14))}) ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in BUCKET_SUMS)
)


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
)
LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version

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
