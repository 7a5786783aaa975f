"""Mapped fields per the issue's table, written by hand from the fixtures (see SOURCES.md)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from audit_archiver.core.formats import FORMATS, FormatOptions, encode_format_body
from audit_archiver.errors import EventValidationError
from tests.helpers import (
    CLOUDTRAIL_EXPECTED,
    GCP_EXPECTED,
    GCP_PRIVATE_EXPECTED,
    mapped,
)
from tests.helpers import K8S_EXPECTED as K8S_BY_AUDIT_ID

from .conftest import decoded, fixture

K8S_EXPECTED = list(K8S_BY_AUDIT_ID.values())
K8S_KEYS = (
    "155b887c-c27c-4fdb-9667-999f74512d0a|ResponseComplete",
    "abcde12345|ResponseComplete",
    "179a9171-e02e-4227-8c41-8b2575f8da7d|ResponseComplete",
    "19f44b1a-e4fb-4c9a-bc2f-068dc94be8fb|ResponseComplete",
)


def k8s_items() -> list[object]:
    return list(json.loads(fixture("k8s-eventlist.json"))["items"])


@pytest.mark.parametrize(
    "body",
    [
        fixture("k8s-eventlist.json"),
        fixture("k8s-audit.log"),
        json.dumps(k8s_items()).encode(),
        json.dumps([json.loads(fixture("k8s-eventlist.json"))]).encode(),
    ],
    ids=["EventList", "log-ndjson", "array-of-events", "array-of-eventlists"],
)
def test_k8s_framings_map_as_the_table_says(body: bytes) -> None:
    batch = encode_format_body("k8s-audit", body, "application/json")
    events = decoded(batch.events.data)
    assert [mapped(e) for e in events] == K8S_EXPECTED
    assert [e["record"] for e in events] == k8s_items()
    assert {e["format"] for e in events} == {"k8s-audit"}
    assert batch.dedupe_keys == K8S_KEYS
    assert batch.events.event_count == 4
    assert batch.response is None


def test_k8s_single_event_and_impersonation_keeps_the_real_user() -> None:
    item = k8s_items()[2]
    batch = encode_format_body("k8s-audit", json.dumps(item, indent=2).encode(), None)
    (event,) = decoded(batch.events.data)
    assert event["actor"] == "jane.doe@example.com"
    assert event["record"]["user"]["username"] == "minikube-user"  # type: ignore[index]


def test_k8s_subresource_and_missing_code() -> None:
    item = {
        "kind": "Event",
        "auditID": "x",
        "stage": "RequestReceived",
        "verb": "create",
        "user": {"username": "alice"},
        "objectRef": {"resource": "pods", "namespace": "ns", "name": "p", "subresource": "exec"},
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    (event,) = decoded(encode_format_body("k8s-audit", json.dumps(item).encode(), None).events.data)
    assert event["resource"] == "pods/ns/p/exec"
    assert event["outcome"] == "allow"
    assert "time" not in event
    assert "source_ip" not in event


def test_cloudtrail_records_file() -> None:
    batch = encode_format_body("cloudtrail", fixture("cloudtrail-records.json"), None)
    events = decoded(batch.events.data)
    assert [mapped(e) for e in events] == [
        CLOUDTRAIL_EXPECTED["b7d4398e-b2f0-4faa-9c76-e2d316a8d67f"],
        CLOUDTRAIL_EXPECTED["234f004b-EXAMPLE"],
    ]
    assert [e["record"] for e in events] == json.loads(fixture("cloudtrail-records.json"))[
        "Records"
    ]
    assert batch.dedupe_keys == (
        "b7d4398e-b2f0-4faa-9c76-e2d316a8d67f",
        "234f004b-EXAMPLE",
    )


def test_cloudtrail_eventbridge_envelope_and_bare_records() -> None:
    envelope = fixture("cloudtrail-eventbridge.json")
    detail = json.loads(envelope)["detail"]
    expected = CLOUDTRAIL_EXPECTED["49d14f36-6450-44a5-a501-b0fdcdfaeb98"]
    for body in (envelope, json.dumps(detail).encode(), json.dumps([detail, detail]).encode()):
        batch = encode_format_body("cloudtrail", body, None)
        for event in decoded(batch.events.data):
            assert mapped(event) == expected
            assert event["record"] == detail
        assert set(batch.dedupe_keys) == {"49d14f36-6450-44a5-a501-b0fdcdfaeb98"}


def test_cloudtrail_resource_arn_and_principal_fallback() -> None:
    record = {
        "userIdentity": {"principalId": "AIDAEXAMPLE"},
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "resources": [{"ARN": "arn:aws:s3:::bucket/key", "type": "AWS::S3::Object"}],
    }
    (event,) = decoded(
        encode_format_body("cloudtrail", json.dumps(record).encode(), None).events.data
    )
    assert (event["actor"], event["resource"]) == ("AIDAEXAMPLE", "arn:aws:s3:::bucket/key")


GCP_DENIED = GCP_EXPECTED["yonau3dc2zi"]


def test_gcp_entries() -> None:
    batch = encode_format_body("gcp-audit", fixture("gcp-entries.ndjson"), None)
    events = decoded(batch.events.data)
    assert [mapped(e) for e in events] == [
        GCP_DENIED,
        GCP_EXPECTED["-c7ctxmd2zab"],
    ]
    assert [e["record"] for e in events] == decoded(fixture("gcp-entries.ndjson"))
    assert batch.dedupe_keys == (
        "projects/elastic-beats/logs/cloudaudit.googleapis.com%2Fdata_access|yonau3dc2zi",
        "projects/foo/logs/cloudaudit.googleapis.com%2Factivity|-c7ctxmd2zab",
    )


def test_gcp_private_caller_is_stored_not_typed() -> None:
    body = fixture("gcp-entry-private.json")
    (event,) = decoded(encode_format_body("gcp-audit", body, None).events.data)
    assert mapped(event) == GCP_PRIVATE_EXPECTED  # no timestamp in this entry: no typed time
    assert event["record"] == json.loads(body)
    assert event["record"]["protoPayload"]["requestMetadata"]["callerIp"] == "private"  # type: ignore[index]
    array = b"[" + body + b"," + body + b"]"
    assert encode_format_body("gcp-audit", array, None).events.event_count == 2


def test_gcp_pubsub_push_envelope() -> None:
    line = fixture("gcp-entries.ndjson").splitlines()[0]
    envelope = {
        "message": {
            "attributes": {"logging.googleapis.com/timestamp": "2019-12-19T00:44:25.051Z"},
            "data": base64.b64encode(line).decode(),
            "messageId": "2070443601311540",
            "publishTime": "2019-12-19T00:44:26.101Z",
        },
        "subscription": "projects/elastic-beats/subscriptions/audit-push",
    }
    batch = encode_format_body("gcp-audit", json.dumps(envelope).encode(), None)
    (event,) = decoded(batch.events.data)
    assert mapped(event) == GCP_DENIED
    assert event["record"] == orjson.loads(line)


def otlp_request() -> ExportLogsServiceRequest:
    """The example as the official classes hold it (OTLP/JSON ids are hex, proto3 JSON's base64)."""
    value = json.loads(fixture("otlp-logs.json"))
    log = value["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    for name in ("traceId", "spanId"):
        log[name] = base64.b64encode(bytes.fromhex(log[name])).decode()
    return json_format.ParseDict(value, ExportLogsServiceRequest())


def otlp_json(request: ExportLogsServiceRequest) -> bytes:
    value = json_format.MessageToDict(request)
    log = value["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    for name in ("traceId", "spanId"):
        log[name] = base64.b64decode(log[name]).hex()
    return json.dumps(value, indent=2).encode()


OTLP_RECORD_ATTRIBUTES = [
    {"key": "string.attribute", "value": {"stringValue": "some string"}},
    {"key": "boolean.attribute", "value": {"boolValue": True}},
    {"key": "int.attribute", "value": {"intValue": "10"}},
    {"key": "double.attribute", "value": {"doubleValue": 637.704}},
    {
        "key": "array.attribute",
        "value": {"arrayValue": {"values": [{"stringValue": "many"}, {"stringValue": "values"}]}},
    },
    {
        "key": "map.attribute",
        "value": {
            "kvlistValue": {
                "values": [{"key": "some.map.key", "value": {"stringValue": "some value"}}]
            }
        },
    },
]


def with_audit_attributes(request: ExportLogsServiceRequest) -> ExportLogsServiceRequest:
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    for key, value in (
        ("enduser.id", "alice"),
        ("event.name", "user.login"),
        ("client.address", "2001:db8::7"),
    ):
        added = log.attributes.add()
        added.key = key
        added.value.string_value = value
    status = log.attributes.add()
    status.key = "http.response.status_code"
    status.value.int_value = 401
    return request


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "protobuf"])
def test_otlp_example_needs_an_actor(as_json: bool) -> None:
    body = fixture("otlp-logs.json") if as_json else otlp_request().SerializeToString()
    content_type = "application/json" if as_json else "application/x-protobuf"
    with pytest.raises(EventValidationError) as info:
        encode_format_body("otlp", body, content_type)
    assert (info.value.field, info.value.line) == ("actor", 1)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "protobuf"])
def test_otlp_maps_as_the_table_says(as_json: bool) -> None:
    request = with_audit_attributes(otlp_request())
    body = otlp_json(request) if as_json else request.SerializeToString()
    content_type = "application/json; charset=utf-8" if as_json else "application/x-protobuf"
    batch = encode_format_body("otlp", body, content_type)
    (event,) = decoded(batch.events.data)
    assert mapped(event) == {
        "actor": "alice",
        "action": "user.login",
        "resource": "my.service",
        "time": "2018-12-13T14:51:00.300000000Z",
        "source_ip": "2001:db8::7",
        "outcome": "401",
    }
    record = event["record"]
    assert record["resource"] == {  # type: ignore[index]
        "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
    }
    assert record["scope"]["name"] == "my.library"  # type: ignore[index]
    log = record["logRecord"]  # type: ignore[index]
    assert log["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert log["spanId"] == "eee19b7ec3c1b174"
    assert log["severityText"] == "Information"
    assert log["body"] == {"stringValue": "Example log record"}
    assert log["attributes"][: len(OTLP_RECORD_ATTRIBUTES)] == OTLP_RECORD_ATTRIBUTES
    assert batch.dedupe_keys == (None,)
    if as_json:
        assert batch.response_content_type == "application/json"
        assert json.loads(batch.response or b"") == {}
    else:
        assert batch.response_content_type == "application/x-protobuf"
        assert batch.response is not None
        assert ExportLogsServiceResponse.FromString(batch.response) == ExportLogsServiceResponse()


def test_otlp_options_choose_actor_and_resource() -> None:
    request = otlp_request()
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    log.event_name = "export"
    options = FormatOptions(
        otlp_actor_attributes=("string.attribute",), otlp_resource_attribute="int.attribute"
    )
    batch = encode_format_body("otlp", request.SerializeToString(), None, options)
    (event,) = decoded(batch.events.data)
    assert (event["actor"], event["action"], event["resource"]) == ("some string", "export", "10")
    assert event["outcome"] == "Information"


@pytest.mark.parametrize(
    ("kind", "value", "actor"),
    [
        ("string_value", "alice", "alice"),
        ("int_value", 10, "10"),
        ("bytes_value", b"\x00\xff", "AP8="),
        ("bool_value", True, None),
        ("double_value", 1.5, None),
    ],
)
def test_otlp_attribute_values_as_text(kind: str, value: object, actor: str | None) -> None:
    request = with_audit_attributes(otlp_request())
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    added = log.attributes.add()
    added.key = "user.id"
    setattr(added.value, kind, value)
    body = request.SerializeToString()
    if actor is None:  # not text: the next attribute (enduser.id) is tried
        actor = "alice"
    (event,) = decoded(encode_format_body("otlp", body, None).events.data)
    assert event["actor"] == actor


def test_events_format_keeps_the_events_path() -> None:
    body = b'{\n  "actor": "a",\n  "action": "b",\n  "resource": "c"\n}\n'
    batch = encode_format_body("events", body, None)
    assert batch.events.data == b'{"action":"b","actor":"a","resource":"c"}\n'
    assert batch.dedupe_keys == (None,)
    assert set(FORMATS) == {"events", "k8s-audit", "cloudtrail", "gcp-audit", "otlp"}
