"""Decoding OTLP/HTTP trace bodies: protobuf and OTLP/JSON from the real SDK and exporter encoder,
hand-built JSON variants the spec allows, compression, and bad input with clear errors."""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from flightdeck_operator.otlp.decode import (
    OtlpDecodeError,
    OtlpTooLargeError,
    OtlpUnsupportedError,
    decode_json,
    decode_protobuf,
    decode_traces,
    decompress,
)
from flightdeck_operator.otlp.spans import SpanKind as DecodedKind
from flightdeck_operator.otlp.spans import StatusCode, id_problem
from tests.unit.otlp_payloads import MS, T0, SpanCapture, to_otlp_json, to_otlp_json_document, to_protobuf

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "eee19b7ec3c1b173"


def _two_spans() -> SpanCapture:
    capture = SpanCapture()
    with capture.span(
        "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}, start_ms=0, end_ms=900
    ) as run:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.response.finish_reasons": ["stop"],
            "app.flag": True,
            "app.ints": [1, 2],
        }
        with capture.span("chat gpt-4o-mini", attributes, start_ms=10, end_ms=400, kind=SpanKind.CLIENT):
            pass
        capture.fail(run, TimeoutError("model too slow"), at_ms=850)
    return capture


def test_protobuf_from_the_exporter_decodes_every_field() -> None:
    capture = _two_spans()
    chat_sdk, run_sdk = capture.spans
    chat, run = decode_protobuf(to_protobuf(capture.spans))

    assert chat.trace_id == run.trace_id == format(run_sdk.context.trace_id, "032x")
    assert (chat.span_id, run.span_id) == (
        format(chat_sdk.context.span_id, "016x"),
        format(run_sdk.context.span_id, "016x"),
    )
    assert chat.parent_span_id == run.span_id
    assert run.parent_span_id is None
    assert (chat.name, chat.kind, run.kind) == ("chat gpt-4o-mini", DecodedKind.CLIENT, DecodedKind.INTERNAL)
    assert (chat.start_ns, chat.end_ns) == (T0 + 10 * MS, T0 + 400 * MS)
    assert chat.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.response.finish_reasons": ("stop",),
        "app.flag": True,
        "app.ints": (1, 2),
    }
    assert (run.status_code, run.status_message) == (StatusCode.ERROR, "model too slow")
    assert chat.status_code == StatusCode.UNSET
    [exception] = run.events
    assert (exception.name, exception.time_ns) == ("exception", T0 + 850 * MS)
    assert exception.attributes["exception.type"] == "TimeoutError"
    assert run.resource_attributes["service.name"] == "support"
    assert run.resource_attributes["telemetry.sdk.language"] == "python"
    assert (run.scope_name, run.scope_version) == ("flightdeck.tests", "1.0")
    assert chat.parent_is_remote is False  # the exporter sets the flags: the parent is local
    assert id_problem(chat) is None


def test_a_remote_parent_is_flagged() -> None:
    capture = SpanCapture()
    remote = SpanContext(int(TRACE_HEX, 16), int(PARENT_HEX, 16), is_remote=True, trace_flags=TraceFlags(1))
    with capture.span("invoke_agent support", start_ms=0, end_ms=5, parent=trace.NonRecordingSpan(remote)):
        pass
    [span] = decode_protobuf(to_protobuf(capture.spans))
    assert (span.trace_id, span.parent_span_id, span.parent_is_remote) == (TRACE_HEX, PARENT_HEX, True)


def test_otlp_json_decodes_to_the_same_records_as_protobuf() -> None:
    capture = _two_spans()
    assert decode_json(to_otlp_json(capture.spans)) == decode_protobuf(to_protobuf(capture.spans))


def test_json_format_alone_reads_hex_ids_as_base64() -> None:
    # Why OTLP/JSON is decoded by hand: the library parser accepts the hex and returns other bytes.
    document = to_otlp_json_document(_two_spans().spans)
    parsed = json_format.ParseDict(document, ExportTraceServiceRequest())
    span = parsed.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() != document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    assert (
        decode_json(json.dumps(document))[0].trace_id
        == document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    )


def _json_request(span: Any, **resource_spans: Any) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}], **resource_spans}]}).encode()


def test_json_variants_the_spec_allows() -> None:
    body = json.dumps(
        {
            "resource_spans": [  # snake_case keys, as protobuf's JSON parsers accept
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "support"}}]
                    },
                    "scope_spans": [
                        {
                            "scope": {"name": "manual"},
                            "spans": [
                                {
                                    "trace_id": TRACE_HEX.upper(),  # hex is case-insensitive
                                    "spanId": SPAN_HEX,
                                    "parentSpanId": "",  # empty means root
                                    "name": "chat x",
                                    "kind": "SPAN_KIND_CLIENT",  # an enum name
                                    "startTimeUnixNano": T0,  # int64 as a number
                                    "endTimeUnixNano": str(T0 + 5 * MS),  # and as a string
                                    "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                                    "attributes": [
                                        {"key": "i", "value": {"intValue": "-7"}},
                                        {"key": "d", "value": {"doubleValue": "NaN"}},
                                        {"key": "d2", "value": {"doubleValue": 3}},
                                        {
                                            "key": "b",
                                            "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()},
                                        },
                                        {
                                            "key": "kv",
                                            "value": {
                                                "kvlistValue": {
                                                    "values": [{"key": "a", "value": {"boolValue": False}}]
                                                }
                                            },
                                        },
                                        {
                                            "key": "arr",
                                            "value": {"arrayValue": {"values": [{"stringValue": "x"}, {}]}},
                                        },
                                        {"key": "empty", "value": {}},
                                    ],
                                    "someFutureField": {"ignored": True},  # unknown keys are ignored
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
    [span] = decode_json(body)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_HEX, SPAN_HEX, None)
    assert (span.kind, span.status_code, span.status_message) == (
        DecodedKind.CLIENT,
        StatusCode.ERROR,
        "boom",
    )
    assert (span.start_ns, span.end_ns) == (T0, T0 + 5 * MS)
    attributes = dict(span.attributes)
    nan = attributes.pop("d")
    assert isinstance(nan, float)
    assert math.isnan(nan)
    assert attributes == {
        "i": -7,
        "d2": 3.0,
        "b": b"\x00\x01",
        "kv": {"a": False},
        "arr": ("x", None),
        "empty": None,
    }
    assert span.resource_attributes == {"service.name": "support"}
    assert span.scope_name == "manual"
    assert id_problem(span) is None


def test_unknown_enum_numbers_decode_as_unspecified() -> None:
    [span] = decode_json(
        _json_request({"traceId": TRACE_HEX, "spanId": SPAN_HEX, "kind": 42, "status": {"code": 9}})
    )
    assert (span.kind, span.status_code) == (DecodedKind.UNSPECIFIED, StatusCode.UNSET)


def test_an_empty_body_is_an_empty_request() -> None:
    assert decode_protobuf(b"") == []
    assert decode_json(b"{}") == []


def test_every_truncation_of_a_protobuf_body_is_a_clear_error() -> None:
    body = to_protobuf(_two_spans().spans)  # one resource: every proper prefix cuts a field short
    for length in range(1, len(body)):
        with pytest.raises(
            OtlpDecodeError, match=r"not a valid protobuf ExportTraceServiceRequest \(truncated or corrupt\)"
        ):
            decode_protobuf(body[:length])


def test_bytes_that_are_not_protobuf_are_a_clear_error() -> None:
    with pytest.raises(OtlpDecodeError, match="12 bytes"):
        decode_protobuf(b"not protobuf")


def test_bad_ids_are_kept_for_the_mapper_to_reject() -> None:
    # A span with bad ids must not fail the request: decoding keeps them, id_problem says why.
    base64_ids = to_otlp_json_document(_two_spans().spans)
    span_doc = base64_ids["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span_doc["traceId"] = base64.b64encode(bytes.fromhex(span_doc["traceId"])).decode()
    decoded = decode_json(json.dumps(base64_ids))
    assert "is not 32 hex digits" in (id_problem(decoded[0]) or "")
    assert id_problem(decoded[1]) is None

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id = bytes(15), bytes.fromhex(SPAN_HEX)
    [short] = decode_protobuf(request.SerializeToString())
    assert short.trace_id == "00" * 15
    assert "trace id" in (id_problem(short) or "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[]", "request body: expected an object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array"),
        (_json_request("span"), r"resourceSpans\[0\].scopeSpans\[0\].spans\[0\]: expected an object"),
        (_json_request({"startTimeUnixNano": "soon"}), r"spans\[0\].startTimeUnixNano: expected an integer"),
        (_json_request({"endTimeUnixNano": -1}), r"spans\[0\].endTimeUnixNano: expected an unsigned 64-bit"),
        (
            _json_request({"kind": "SPAN_KIND_BOGUS"}),
            r"spans\[0\].kind: expected an enum number or one of SPAN_KIND_UNSPECIFIED",
        ),
        (_json_request({"traceId": 12}), r"spans\[0\].traceId: expected a string"),
        (
            _json_request({"attributes": [{"key": "a", "value": {"boolValue": "yes"}}]}),
            r"attributes\[0\].value.boolValue: expected true or false",
        ),
        (_json_request({"attributes": [{"key": "a", "value": {"bytesValue": "%%"}}]}), "expected base64"),
        (
            _json_request({}, resource={"attributes": {"service.name": "x"}}),
            r"resource.attributes: expected an array",
        ),
    ],
)
def test_wrong_json_shapes_are_clear_errors(body: bytes, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        decode_json(body)


def test_deeply_nested_attribute_values_are_refused() -> None:
    value: dict[str, Any] = {"stringValue": "bottom"}
    for _ in range(40):
        value = {"arrayValue": {"values": [value]}}
    with pytest.raises(OtlpDecodeError, match="nested deeper than 32 levels"):
        decode_json(_json_request({"attributes": [{"key": "deep", "value": value}]}))


# --- compression and content type -------------------------------------------------------------------


def test_gzip_and_deflate_bodies_decompress() -> None:
    body = to_protobuf(_two_spans().spans)
    assert decompress(gzip.compress(body), "gzip", max_bytes=len(body)) == body
    assert decompress(zlib.compress(body), "deflate", max_bytes=len(body)) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompress(raw.compress(body) + raw.flush(), "Deflate", max_bytes=len(body)) == body
    assert (
        decompress(body, None, max_bytes=len(body))
        == decompress(body, "identity", max_bytes=len(body))
        == body
    )


def test_the_size_cap_applies_after_decompression_and_stops_a_bomb_early() -> None:
    bomb = gzip.compress(bytes(50 * 2**20))  # 50 MiB of zeros, about 50 KiB compressed
    with pytest.raises(OtlpTooLargeError, match="over the 1048576-byte limit once decompressed"):
        decompress(bomb, "gzip", max_bytes=2**20)
    with pytest.raises(OtlpTooLargeError, match="11 bytes, over the 10-byte limit"):
        decompress(b"x" * 11, None, max_bytes=10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"definitely not gzip", "not valid gzip data"),
        (gzip.compress(b"x" * 1000)[:-12], "truncated gzip data"),
        (gzip.compress(b"x") + b"trailing", "data after the end of the gzip stream"),
    ],
)
def test_broken_gzip_is_a_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        decompress(body, "gzip", max_bytes=2**20)


def test_unsupported_encodings_and_content_types() -> None:
    with pytest.raises(OtlpUnsupportedError, match="Content-Encoding 'br'"):
        decompress(b"", "br", max_bytes=10)
    capture = _two_spans()
    body = to_protobuf(capture.spans)
    assert decode_traces(body, "application/x-protobuf") == decode_traces(
        to_otlp_json(capture.spans), "Application/JSON; charset=utf-8"
    )
    for content_type in ("text/plain", None, "application/protobuf"):
        with pytest.raises(OtlpUnsupportedError, match="Unsupported Content-Type"):
            decode_traces(body, content_type)
