"""OTLP/HTTP trace ingestion: decode OTLP payloads and map GenAI spans to run events; pure, no I/O.

- ``decode``: OTLP/HTTP bodies (protobuf or OTLP/JSON, gzip or deflate) to ``SpanRecord``s.
- ``mapping``: the spans of one trace to ``RunEventData`` (what ``POST /v1/events`` stores), with
  the spans that cannot become evidence counted by reason (``rejections``).

See docs/opentelemetry.md for the mapping table, the attribute aliases and the rejections.

May import: the engine (run-event shapes). Pure: no HTTP, database or cluster library; the
sidecar serves it and the store stages its spans.
"""
