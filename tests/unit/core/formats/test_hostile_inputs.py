"""Every input is hostile: a result or EventValidationError, bounded in time and memory."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_archiver.core.event import MAX_DEPTH, MAX_EVENT_BYTES, encode_request_body
from audit_archiver.core.formats import FORMATS, encode_format_body
from audit_archiver.errors import EventValidationError

from .conftest import decoded, fixture

NATIVE = ("k8s-audit", "cloudtrail", "gcp-audit")
CONTENT_TYPES = ("application/json", "application/x-protobuf", None)


def malformed_optionals(name: str) -> bytes:
    """A real record whose time and address fields are of another form."""
    if name == "k8s-audit":
        item = json.loads(fixture("k8s-audit.log").splitlines()[0])
        item.update(stageTimestamp="yesterday", sourceIPs=["not-an-ip"], responseStatus="x")
    elif name == "cloudtrail":
        item = json.loads(fixture("cloudtrail-eventbridge.json"))["detail"]
        item.update(eventTime=1657731015, sourceIPAddress="autoscaling.amazonaws.com")
    else:
        item = json.loads(fixture("gcp-entries.ndjson").splitlines()[0])
        item.update(timestamp="2019-13-45T99:00:00Z")
        item["protoPayload"]["requestMetadata"]["callerIp"] = "gce-internal-ip"
        item["protoPayload"]["status"] = {"code": "seven"}
    return json.dumps(item).encode()


@pytest.mark.parametrize("name", NATIVE)
def test_malformed_optional_fields_are_stored_not_refused(name: str) -> None:
    body = malformed_optionals(name)
    (event,) = decoded(encode_format_body(name, body, None).events.data)
    assert "time" not in event
    assert "source_ip" not in event
    assert event["record"] == json.loads(body)


def test_events_keep_an_untyped_time_and_address_as_sent() -> None:
    body = b'{"actor":"a","action":"b","resource":"c","time":"noon","source_ip":"AWS Internal"}'
    assert encode_request_body(body).data == (
        b'{"action":"b","actor":"a","resource":"c","source_ip":"AWS Internal","time":"noon"}\n'
    )


@pytest.mark.parametrize(
    ("name", "body", "field", "line"),
    [
        (
            "k8s-audit",
            b'{"kind":"EventList","items":[{"verb":"get","requestURI":"/"}]}',
            "actor",
            1,
        ),
        ("k8s-audit", b'{"verb":"get","user":{"username":"u"}}', "resource", 1),
        ("k8s-audit", b'{"user":{"username":"u"},"requestURI":"/"}\n\n{}', "action", 1),
        (
            "cloudtrail",
            b'{"Records":[{"eventSource":"s","eventName":"n","userIdentity":{}}]}',
            "actor",
            1,
        ),
        ("cloudtrail", b'[{"eventSource":"s","userIdentity":{"arn":"a"}}]', "action", 1),
        ("gcp-audit", b'{"protoPayload":{"methodName":"m","resourceName":"r"}}', "actor", 1),
        (
            "gcp-audit",
            b'{"protoPayload":{"authenticationInfo":{"principalEmail":"e"}}}',
            "action",
            1,
        ),
    ],
)
def test_missing_required_fields_name_the_item(
    name: str, body: bytes, field: str, line: int
) -> None:
    with pytest.raises(EventValidationError) as info:
        encode_format_body(name, body, None)
    assert (info.value.field, info.value.line) == (field, line)


def test_the_second_bad_item_is_named() -> None:
    items = json.loads(fixture("k8s-eventlist.json"))["items"]
    items.insert(1, {"verb": "get"})
    with pytest.raises(EventValidationError) as info:
        encode_format_body(
            "k8s-audit", json.dumps({"kind": "EventList", "items": items}).encode(), None
        )
    assert info.value.line == 2
    ndjson = fixture("k8s-audit.log") + b"\n\n" + b'{"verb":"get"}\n'
    with pytest.raises(EventValidationError) as info:
        encode_format_body("k8s-audit", ndjson, None)
    assert info.value.line == 7


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


HOSTILE = [
    b"",
    b"   \n",
    b"[]",
    b"{}",
    b"null",
    b"[1,2]",
    b"\xff\xfe{",
    b"{not json",
    b"[" + b"[" * 200_000,
    b"{" * 200_000,
    deep(MAX_DEPTH + 5),
    b'{"kind":"EventList","items":[' + deep(MAX_DEPTH) + b"]}",
    b'{"kind":"EventList","items":[' + deep(1100) + b"]}",
    b'{"kind":"EventList","items":5}',
    b'{"Records":{"a":1}}',
    b'{"message":{"data":"%%%not base64%%%"}}',
    b'{"message":{"data":"' + base64.b64encode(b"\xff\x00garbage") + b'"}}',
    b'{"message":{"data":"' + base64.b64encode(deep(500)) + b'"}}',
    b'{"message":{"data":12}}',
    b'{"a":' + b"9" * 40 + b"}",
    b"[" + b"{}," * 10 + b"{}",
    b'{"verb":"get","x":"' + b"a" * (MAX_EVENT_BYTES + 10) + b'"}\n',
    b"\x0a\x05\x0a\x03\x0a\x01",  # protobuf: truncated nested messages
    b"\x12\xff\xff\xff\xff\x0f",
    b"\x0a" + b"\x80" * 20,
]


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_raise_only_validation_errors(name: str, body: bytes) -> None:
    for content_type in CONTENT_TYPES:
        try:
            encode_format_body(name, body, content_type)
        except EventValidationError:
            pass


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_million_empty_objects_is_refused_quickly_and_bounded(name: str) -> None:
    array = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"
    wrapped = {
        "k8s-audit": b'{"kind":"EventList","items":' + array + b"}",
        "cloudtrail": b'{"Records":' + array + b"}",
    }.get(name, array)
    for body in {array, wrapped}:
        tracemalloc.start()
        started = time.perf_counter()
        with pytest.raises(EventValidationError):
            encode_format_body(name, body, "application/json")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 10
        assert peak < 80 * len(body) + (64 << 20)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_random_bytes_give_a_result_or_a_validation_error(name: str, data: bytes) -> None:
    for content_type in CONTENT_TYPES:
        try:
            batch = encode_format_body(name, data, content_type)
        except EventValidationError:
            continue
        assert batch.events.event_count == len(batch.dedupe_keys) > 0


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "items",
                    "Records",
                    "detail",
                    "detail-type",
                    "message",
                    "data",
                    "verb",
                    "user",
                    "username",
                    "objectRef",
                    "protoPayload",
                    "userIdentity",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("name", NATIVE)
@settings(max_examples=150, deadline=None)
@given(value=JSONISH)
def test_random_json_gives_a_result_or_a_validation_error(name: str, value: object) -> None:
    try:
        encode_format_body(name, json.dumps(value).encode(), None)
    except EventValidationError:
        pass
