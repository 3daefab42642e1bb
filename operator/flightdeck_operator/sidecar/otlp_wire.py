"""The bodies OTLP/HTTP answers with, in the request's encoding (protobuf or JSON).

- Success: an ``ExportTraceServiceResponse``; with ``partial_success`` when spans were rejected
  (``rejected_spans`` and an English ``error_message``), empty otherwise.
- Failure (4xx/5xx): a ``google.rpc.Status`` with a gRPC code and the message.

OTLP/JSON writes int64 as a decimal string (``"rejectedSpans": "2"``), as proto3 JSON does.
"""

from __future__ import annotations

import json
from typing import Final

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from flightdeck_operator.otlp.decode import JSON_MEDIA_TYPE, PROTOBUF_MEDIA_TYPE, media_type
from flightdeck_operator.otlp.rejections import RejectionSummary

TRACES_PATH: Final = "/v1/traces"

# google.rpc.Code for each HTTP status the route answers with.
GRPC_CODES: Final = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    413: 8,  # RESOURCE_EXHAUSTED
    415: 12,  # UNIMPLEMENTED
    500: 13,  # INTERNAL
    503: 14,  # UNAVAILABLE
}


def answer_media_type(content_type: str | None) -> str:
    """The answer's media type: JSON for JSON requests, protobuf for everything else."""
    return JSON_MEDIA_TYPE if media_type(content_type) == JSON_MEDIA_TYPE else PROTOBUF_MEDIA_TYPE


def success_body(rejections: RejectionSummary, kind: str) -> bytes:
    rejected = rejections.rejected_spans
    if kind == JSON_MEDIA_TYPE:
        if not rejected:
            return b"{}"
        partial = {"rejectedSpans": str(rejected), "errorMessage": rejections.error_message()}
        return json.dumps({"partialSuccess": partial}).encode()
    if not rejected:
        return b""
    response = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(
            rejected_spans=rejected, error_message=rejections.error_message()
        )
    )
    return response.SerializeToString()


def status_body(status: int, message: str, kind: str) -> bytes:
    code = GRPC_CODES.get(status, 2)  # 2: UNKNOWN
    if kind == JSON_MEDIA_TYPE:
        return json.dumps({"code": code, "message": message}).encode()
    return bytes(Status(code=code, message=message).SerializeToString())
