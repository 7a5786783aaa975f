"""The fast proto3 JSON paths against ``json_format`` itself (the oracle).

``_protojson`` promises exactly what ``MessageToDict`` (and ``ParseDict``)
give; the OTLP format promises the archived record the official functions give.
Both are checked on the fixture and on generated messages and JSON, canonical
and not.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from audit_archiver.core.formats import encode_format_body
from audit_archiver.core.formats._protojson import message_dict, normalized_dict
from audit_archiver.errors import EventValidationError

from .conftest import decoded, fixture

# -- the oracle: the archived records as json_format gives them -----------------


def _hex_to_base64(request: Any) -> Any:
    for resource_logs in request.get("resourceLogs") or []:
        for scope_logs in (resource_logs or {}).get("scopeLogs") or []:
            for log in (scope_logs or {}).get("logRecords") or []:
                for name in ("traceId", "spanId"):
                    if isinstance(log, dict) and isinstance(log.get(name), str):
                        log[name] = base64.b64encode(bytes.fromhex(log[name])).decode()
    return request


def oracle_records(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    records = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                record = json_format.MessageToDict(log)
                for name, field in (("traceId", "trace_id"), ("spanId", "span_id")):
                    if name in record:
                        record[name] = getattr(log, field).hex()
                records.append(
                    {
                        "resource": json_format.MessageToDict(resource_logs.resource),
                        "scope": json_format.MessageToDict(scope_logs.scope),
                        "logRecord": record,
                    }
                )
    return records


def oracle_json(body: bytes) -> list[dict[str, Any]] | None:
    """The records, or None when json_format refuses the request."""
    try:
        value = _hex_to_base64(json.loads(body))
        request = json_format.ParseDict(
            value, ExportLogsServiceRequest(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, ValueError, TypeError, AttributeError, OverflowError):
        return None
    return oracle_records(request)


def archived_records(body: bytes, content_type: str) -> list[dict[str, Any]] | None:
    try:
        batch = encode_format_body("otlp", body, content_type)
    except EventValidationError as e:
        if e.field in {"actor", "action", "resource"}:
            raise  # every generated record has them
        return None
    return [event["record"] for event in decoded(batch.events.data)]  # type: ignore[misc]


# -- generated OTLP/JSON: canonical values and the other forms json_format reads --

TEXT = st.text(max_size=6)
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
SCALAR_ANY = st.one_of(
    st.fixed_dictionaries({"stringValue": TEXT}),
    st.fixed_dictionaries({"boolValue": st.booleans()}),
    st.fixed_dictionaries({"intValue": INT64.map(str) | INT64 | st.sampled_from(["007", " 1"])}),
    st.fixed_dictionaries(
        {"doubleValue": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-9, 9)}
    ),
    st.fixed_dictionaries(
        {"bytesValue": st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode())}
    ),
    st.fixed_dictionaries({"bytesValue": st.sampled_from(["AP8", "AP-_", "A", "@@"])}),
    st.fixed_dictionaries({"stringValueStrindex": st.integers(0, 3)}),
    st.just({}),
    st.just({"stringValue": None}),
    st.just({"stringValue": "a", "boolValue": True}),
    st.just({"string_value": "alias"}),
    st.just({"unknown": 1}),
)


def any_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALAR_ANY,
        lambda inner: st.one_of(
            st.fixed_dictionaries(
                {"arrayValue": st.fixed_dictionaries({"values": st.lists(inner, max_size=3)})}
            ),
            st.fixed_dictionaries(
                {
                    "kvlistValue": st.fixed_dictionaries(
                        {"values": st.lists(key_value(inner), max_size=3)}
                    )
                }
            ),
            st.just({"arrayValue": {}}),
        ),
        max_leaves=8,
    )


def key_value(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"key": st.sampled_from(["user.id", "enduser.id", "event.name", "", "k"])},
        optional={"value": values, "keyStrindex": st.integers(0, 2)},
    )


LOG_RECORDS = st.fixed_dictionaries(
    {
        "attributes": st.lists(
            key_value(any_values()).map(lambda kv: kv) | st.just({"key": "user.id"}), max_size=4
        ).map(
            lambda attrs: [
                *attrs,
                {"key": "user.id", "value": {"stringValue": "u"}},
                {"key": "event.name", "value": {"stringValue": "e"}},
            ]
        ),
    },
    optional={
        "timeUnixNano": st.integers(0, (1 << 64) - 1).map(str)
        | st.integers(0, 1 << 62)
        | st.sampled_from(["0", "-1", "1e3", "12"]),
        "observedTimeUnixNano": st.sampled_from(["1544712660300000000", 0, "0"]),
        "severityNumber": st.sampled_from(
            ["SEVERITY_NUMBER_INFO", "SEVERITY_NUMBER_UNSPECIFIED", 9, 0, 99, "9", "NOPE"]
        ),
        "severityText": TEXT,
        "body": any_values(),
        "droppedAttributesCount": st.integers(-1, 1 << 33),
        "flags": st.integers(0, 3),
        "traceId": st.sampled_from(["5b8efff798038103d269b633813fc60c", "", "5B8E"]),
        "spanId": st.sampled_from(["eee19b7ec3c1b174", ""]),
        "eventName": TEXT.filter(lambda text: not text.isspace()),
        "somethingNew": st.just(1),
        "severity_text": st.just("alias"),
    },
)


def request_of(records: list[Any], resource: Any) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": resource,
                "scopeLogs": [{"scope": {"name": "s", "version": "1"}, "logRecords": records}],
            }
        ]
    }


RESOURCES = st.sampled_from(
    [
        {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        {"attributes": [{"key": "service.name", "value": {"intValue": 5}}]},
        {
            "droppedAttributesCount": 2,
            "attributes": [{"key": "service.name", "value": {"stringValue": "x"}}],
        },
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(LOG_RECORDS, min_size=1, max_size=3), resource=RESOURCES)
def test_json_requests_archive_what_json_format_gives(records: list[Any], resource: Any) -> None:
    body = json.dumps(request_of(records, resource)).encode()
    expected = oracle_json(body)
    assert archived_records(body, "application/json") == expected
    if expected is not None:  # the same request as protobuf
        request = json_format.ParseDict(
            _hex_to_base64(json.loads(body)), ExportLogsServiceRequest(), ignore_unknown_fields=True
        )
        protobuf = request.SerializeToString()
        assert archived_records(protobuf, "application/x-protobuf") == oracle_records(request)


@settings(max_examples=300, deadline=None)
@given(record=LOG_RECORDS)
def test_normalized_dict_is_parse_then_message_to_dict(record: dict[str, Any]) -> None:
    record = _hex_to_base64(request_of([record], {}))["resourceLogs"][0]["scopeLogs"][0][
        "logRecords"
    ][0]
    fast = normalized_dict(record, LogRecord.DESCRIPTOR)
    try:
        message = json_format.ParseDict(record, LogRecord(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError):
        assert fast is None
        return
    official = json_format.MessageToDict(message)
    assert fast in (None, official)
    assert message_dict(message) == official


def test_the_fixture_and_its_protobuf_match_the_oracle() -> None:
    body = fixture("otlp-logs.json")
    value = _hex_to_base64(json.loads(body))
    log = value["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    log["attributes"].append({"key": "user.id", "value": {"stringValue": "alice"}})
    log["eventName"] = "login"
    request = json_format.ParseDict(value, ExportLogsServiceRequest())
    expected = oracle_records(request)
    for message in (request.resource_logs[0].resource, log_message(request)):
        assert message_dict(message) == json_format.MessageToDict(message)
    assert normalized_dict(log, LogRecord.DESCRIPTOR) == json_format.MessageToDict(
        log_message(request)
    )
    assert archived_records(request.SerializeToString(), "application/x-protobuf") == expected
    as_otlp_json = json.loads(json.dumps(value))
    for name in ("traceId", "spanId"):
        as_otlp_json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0][name] = base64.b64decode(
            log[name]
        ).hex()
    assert archived_records(json.dumps(as_otlp_json).encode(), "application/json") == expected


def log_message(request: ExportLogsServiceRequest) -> LogRecord:
    return request.resource_logs[0].scope_logs[0].log_records[0]


@pytest.mark.parametrize("levels", [10, 30, 45])
def test_deep_values_decline_to_the_official_path(levels: int) -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(levels):
        value = {"arrayValue": {"values": [value]}}
    record = {"body": value}
    parsed = json_format.ParseDict(record, LogRecord())
    official = json_format.MessageToDict(parsed)
    assert message_dict(parsed) == official
    assert normalized_dict(record, LogRecord.DESCRIPTOR) in (None, official)
