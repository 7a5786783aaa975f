"""Real producers' payloads, as they send them, to the real agent against moto's S3 over HTTP.

Payloads come from tests/fixtures/producers/ (SOURCES.md names where each comes
from); headers, framing, compression and auth are each producer's own:

- kube-apiserver audit webhook: one ``EventList``, ``Content-Type: application/json``,
  a Bearer token (webhook kubeconfig ``token``), or a client certificate over TLS.
- the API server's log backend (``--audit-log-path``), tailed with ``--tail-format k8s-audit``.
- Vector ``http`` sink: JSON-array framing (``encoding.codec = "json"``), ``compression``
  ``zstd`` and ``snappy`` (a raw Snappy block, ``src/sinks/util/snappy.rs``), Bearer.
- Fluent Bit ``out_http``: ``Format json`` (an array) and ``json_lines``, Basic auth with
  ``http_User``/``http_Passwd`` (the token as password).
- CloudTrail: a log file ``{"Records": [...]}`` gzip'd; one EventBridge envelope per POST.
- GCP: ``LogEntry`` NDJSON and array, and a Pub/Sub push envelope (base64 ``message.data``).
- OpenTelemetry: OTLP/HTTP protobuf (the default) and JSON to ``/v1/logs``.
- ``curl -d @event.json``: one pretty-printed object without a final newline.

Expected mapped values are written by hand from the producers' records and the
issue's mapping table, never from the agent's output.
"""

from __future__ import annotations

import base64
import copy
import gzip
import http.client
import json
import ssl
import time
import zlib
from pathlib import Path
from typing import Any

import cramjam
import zstandard
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from tests.helpers import (
    CLOUDTRAIL_EXPECTED,
    GCP_EXPECTED,
    GCP_PRIVATE_EXPECTED,
    K8S_EXPECTED,
    mapped,
    wait_for,
)
from tests.integration.agent_process import TOKEN, AgentProcess, launch, verify_in_bucket
from tests.integration.test_agent import archived_events
from tests.tls import issue, write_pem

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "producers"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def k8s_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(fixture("k8s-eventlist.json"))["items"]
    return items


# OTLP example (opentelemetry-proto examples/logs.json) with the agent's
# --otlp-actor-attribute string.attribute and an event.name attribute added:
# resource service.name; timeUnixNano 1544712660300000000 in RFC 3339 with 9 digits.
OTLP_EXPECTED = {
    "actor": "some string",
    "action": "user.login",
    "resource": "my.service",
    "time": "2018-12-13T14:51:00.300000000Z",
    "outcome": "Information",
}


def otlp_request() -> ExportLogsServiceRequest:
    """The example with an ``event.name`` attribute, in the official classes."""
    value = json.loads(fixture("otlp-logs.json"))
    log = value["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    log["attributes"].append({"key": "event.name", "value": {"stringValue": "user.login"}})
    for name in ("traceId", "spanId"):  # OTLP/JSON writes hex, proto3 JSON base64
        log[name] = base64.b64encode(bytes.fromhex(log[name])).decode()
    return json_format.ParseDict(value, ExportLogsServiceRequest())


def otlp_json_body() -> bytes:
    value = json.loads(fixture("otlp-logs.json"))
    log = value["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    log["attributes"].append({"key": "event.name", "value": {"stringValue": "user.login"}})
    return json.dumps(value, indent=2).encode()


def post(
    agent: AgentProcess, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any], Any]:
    return agent.request("POST", path, body, headers)


def by_id(events: list[dict[str, Any]], fmt: str) -> dict[str, list[dict[str, Any]]]:
    field = {"k8s-audit": "auditID", "cloudtrail": "eventID", "gcp-audit": "insertId"}[fmt]
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("format") == fmt:
            found.setdefault(event["record"].get(field, ""), []).append(event)
    return found


def test_every_producer_is_archived_as_sent(  # one archive, every producer
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    audit_log = tmp_path / "audit.log"
    audit_log.write_bytes(fixture("k8s-audit.log"))
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        args=(
            "--tail",
            str(audit_log),
            "--tail-format",
            "k8s-audit",
            "--otlp-actor-attribute",
            "string.attribute",
            "--otlp-actor-attribute",
            "enduser.id",
        ),
    )
    agent.start().wait_ready()
    items = k8s_items()

    # Vector http sink (JSON array framing), zstd and snappy, Bearer: one item each.
    vector = {**BEARER, **JSON}
    status, _, answer = post(
        agent,
        "/v1/ingest/k8s-audit",
        zstandard.ZstdCompressor().compress(json.dumps([items[0]]).encode()),
        {**vector, "Content-Encoding": "zstd"},
    )
    assert (status, answer) == (200, {**answer, "accepted": 1, "deduplicated": 0}), answer
    snappy = bytes(cramjam.snappy.compress_raw(json.dumps([items[1]]).encode()))
    status, _, answer = post(
        agent, "/v1/ingest/k8s-audit", snappy, {**vector, "Content-Encoding": "snappy"}
    )
    assert (status, answer["accepted"], answer["deduplicated"]) == (200, 1, 0), answer

    # Fluent Bit out_http: Format json (array) and json_lines, Basic auth (token as password).
    basic = base64.b64encode(f"fluent-bit:{TOKEN}".encode()).decode()
    fluent = {"Authorization": f"Basic {basic}", "User-Agent": "Fluent-Bit"}
    status, _, answer = post(
        agent,
        "/v1/ingest/k8s-audit",
        json.dumps([items[2]]).encode(),
        {**fluent, "Content-Type": "application/json"},
    )
    assert (status, answer["accepted"], answer["deduplicated"]) == (200, 1, 0), answer
    status, _, answer = post(
        agent,
        "/v1/ingest/k8s-audit",
        json.dumps(items[3]).encode() + b"\n",
        {**fluent, "Content-Type": "application/x-ndjson"},
    )
    assert (status, answer["accepted"], answer["deduplicated"]) == (200, 1, 0), answer

    # kube-apiserver webhook: the EventList of all four (already archived: deduplicated),
    # then the same batch resent (the API server retries after a timeout).
    eventlist = fixture("k8s-eventlist.json")
    for _ in range(2):
        status, _, answer = post(agent, "/v1/ingest/k8s-audit", eventlist, {**BEARER, **JSON})
        assert status == 200, answer
        assert answer == {"accepted": 4, "deduplicated": 4, "first_seq": None, "last_seq": None}

    # A malformed optional field is stored, not refused.
    odd = copy.deepcopy(items[0])
    odd["auditID"] = "6c1a7a4e-0000-4000-8000-000000000001"
    odd["sourceIPs"] = ["not-an-address"]
    odd["stageTimestamp"] = "yesterday"
    status, _, answer = post(agent, "/v1/ingest/k8s-audit", json.dumps(odd).encode(), BEARER)
    assert (status, answer["accepted"]) == (200, 1), answer

    # CloudTrail: a gzip'd log file, and one EventBridge envelope.
    status, _, answer = post(
        agent,
        "/v1/ingest/cloudtrail",
        gzip.compress(fixture("cloudtrail-records.json")),
        {**BEARER, **JSON, "Content-Encoding": "gzip"},
    )
    assert (status, answer["accepted"]) == (200, 2), answer
    status, _, answer = post(
        agent, "/v1/ingest/cloudtrail", fixture("cloudtrail-eventbridge.json"), {**BEARER, **JSON}
    )
    assert (status, answer["accepted"]) == (200, 1), answer

    # GCP: LogEntry NDJSON (deflate, zlib-wrapped), a pretty-printed entry in an array,
    # and a Pub/Sub push envelope around the first entry (already archived: deduplicated).
    lines = fixture("gcp-entries.ndjson")
    status, _, answer = post(
        agent,
        "/v1/ingest/gcp-audit",
        zlib.compress(lines),
        {**BEARER, "Content-Type": "application/x-ndjson", "Content-Encoding": "deflate"},
    )
    assert (status, answer["accepted"]) == (200, 2), answer
    array = b"[\n" + fixture("gcp-entry-private.json") + b"\n]"
    status, _, answer = post(agent, "/v1/ingest/gcp-audit", array, {**BEARER, **JSON})
    assert (status, answer["accepted"]) == (200, 1), answer
    push = {
        "message": {
            "data": base64.b64encode(lines.splitlines()[0]).decode(),
            "messageId": "2070443601311540",
            "publishTime": "2021-02-26T19:13:55.749Z",
        },
        "subscription": "projects/myproject/subscriptions/mysubscription",
    }
    status, _, answer = post(agent, "/v1/ingest/gcp-audit", json.dumps(push).encode(), BEARER)
    assert (status, answer["accepted"], answer["deduplicated"]) == (200, 1, 1), answer

    # OTLP/HTTP: protobuf (gzip, the collector's default compression) and JSON.
    request = otlp_request()
    status, headers, answer = post(
        agent,
        "/v1/logs",
        gzip.compress(request.SerializeToString()),
        {**BEARER, "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/x-protobuf"
    response = ExportLogsServiceResponse()
    response.ParseFromString(answer)
    assert not response.HasField("partial_success")
    status, headers, answer = post(agent, "/v1/logs", otlp_json_body(), {**BEARER, **JSON})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    json_format.ParseDict(answer, ExportLogsServiceResponse())
    # An OTLP failure is a google.rpc.Status in the request's encoding.
    status, headers, answer = post(
        agent,
        "/v1/logs",
        b"\xff\xff not protobuf",
        {**BEARER, "Content-Type": "application/x-protobuf"},
    )
    assert status == 400
    assert headers["Content-Type"] == "application/x-protobuf"
    failure = Status()
    failure.ParseFromString(answer)
    assert failure.message

    # curl -d @event.json: one pretty-printed object, no final newline; a time that is
    # not RFC 3339 is stored as sent.
    event = {
        "actor": "alice@example.com",
        "action": "invoice.refund",
        "resource": {"id": "invoice/2026-0412", "tenant": "acme"},
        "time": "30/11/2026 09:14",
        "outcome": "success",
    }
    status, _, answer = post(
        agent,
        "/v1/events",
        json.dumps(event, indent=2).encode(),
        {**BEARER, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (status, answer["accepted"]) == (200, 1), answer

    # Refusals: an unknown coding (415, decided before the body), a zstd bomb (413).
    status, _, answer = post(
        agent, "/v1/ingest/k8s-audit", b"...", {**BEARER, "Content-Encoding": "br"}
    )
    assert status == 415
    assert "br" in answer["error"]
    bomb = zstandard.ZstdCompressor(level=19).compress(b" " * (11 << 20))
    status, _, answer = post(
        agent, "/v1/ingest/k8s-audit", bomb, {**BEARER, "Content-Encoding": "zstd"}
    )
    assert status == 413
    assert "decoded" in answer["error"]

    wait_for(lambda: metric(agent, "audit_archiver_events_accepted_total") >= 18, 30, "tail")
    assert metric(agent, 'audit_archiver_events_deduplicated_total{format="k8s-audit"}') == 8
    assert agent.terminate() == 0

    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert code == 0, report
    events = archived_events(endpoint, bucket, agent.public_key, tmp_path / "download")
    k8s = by_id(events, "k8s-audit")
    for audit_id, expected in K8S_EXPECTED.items():
        copies = k8s[audit_id]
        assert len(copies) == 2, audit_id  # once over HTTP (resends deduplicated), once tailed
        for archived in copies:
            assert mapped(archived) == expected
            assert archived["record"] == next(i for i in items if i["auditID"] == audit_id)
    odd_copy = k8s["6c1a7a4e-0000-4000-8000-000000000001"][0]
    assert "source_ip" not in odd_copy
    assert "time" not in odd_copy
    assert odd_copy["record"]["sourceIPs"] == ["not-an-address"]
    cloudtrail = by_id(events, "cloudtrail")
    for event_id, expected in CLOUDTRAIL_EXPECTED.items():
        [archived] = cloudtrail[event_id]
        assert mapped(archived) == expected
    envelope = json.loads(fixture("cloudtrail-eventbridge.json"))
    assert cloudtrail[envelope["detail"]["eventID"]][0]["record"] == envelope["detail"]
    gcp = by_id(events, "gcp-audit")
    for insert_id, expected in GCP_EXPECTED.items():
        [archived] = gcp[insert_id]
        assert mapped(archived) == expected
    [private] = gcp[""]
    assert mapped(private) == GCP_PRIVATE_EXPECTED
    assert private["record"] == json.loads(fixture("gcp-entry-private.json"))
    otlp = [e for e in events if e.get("format") == "otlp"]
    assert [mapped(e) for e in otlp] == [OTLP_EXPECTED, OTLP_EXPECTED]
    assert otlp[0]["record"]["logRecord"]["body"] == {"stringValue": "Example log record"}
    [plain] = [e for e in events if e.get("actor") == "alice@example.com"]
    assert {k: plain[k] for k in event} == event
    assert "format" not in plain


def metric(agent: AgentProcess, name: str) -> float:
    _, text = agent.get("/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


# --- kube-apiserver with a client certificate (webhook kubeconfig client-certificate) -----


def test_kube_apiserver_webhook_with_a_client_certificate(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key, ca_cert = issue("audit-ca", None, "audit-ca", ca=True)
    ca, _ = write_pem(pki / "ca", ca_key, ca_cert)
    server, server_key = write_pem(
        pki / "server", *issue("audit-archiver", ca_key, "audit-ca", san=True)
    )
    client, client_key = write_pem(
        pki / "client", *issue("kube-apiserver", ca_key, "audit-ca", san=True)
    )
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        listen=False,
        args=(
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(server),
            "--tls-key",
            str(server_key),
            "--tls-client-ca",
            str(ca),
        ),
    )
    agent.start()
    wait_for(lambda: agent.port is not None or agent.exited(), 30, "listening")
    assert agent.port is not None, agent.logs
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(client, client_key)

    def send(body: bytes) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", agent.port, context=context, timeout=30)
        try:
            conn.request("POST", "/v1/ingest/k8s-audit", body, JSON)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    deadline = time.monotonic() + 30
    while (answer := send(fixture("k8s-eventlist.json")))[0] == 503:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    assert answer == (200, {"accepted": 4, "deduplicated": 0, "first_seq": 0, "last_seq": 3})
    assert any(e.get("client") == "kube-apiserver" for e in agent.logs)
    assert agent.terminate() == 0
    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert code == 0, report
    events = archived_events(endpoint, bucket, agent.public_key, tmp_path / "download")
    assert {e["record"]["auditID"]: mapped(e) for e in events} == K8S_EXPECTED
