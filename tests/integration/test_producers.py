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
import ipaddress
import json
import ssl
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cramjam
import pytest
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from tests.helpers import wait_for
from tests.integration.agent_process import TOKEN, AgentProcess
from tests.integration.cli import run_cli
from tests.integration.test_agent import archived_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "producers"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def k8s_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(fixture("k8s-eventlist.json"))["items"]
    return items


# From the four Events (k8s-eventlist.json) and the mapping table: actor user.username
# (impersonatedUser.username when present), verb, objectRef as
# [group/]resource[/namespace]/name (else requestURI), stageTimestamp, sourceIPs[0],
# "<authorization.k8s.io/decision> <responseStatus.code>".
K8S_EXPECTED = {
    "155b887c-c27c-4fdb-9667-999f74512d0a": {
        "actor": "minikube-user",
        "action": "create",
        "resource": "configmaps/default/my-config",
        "time": "2018-10-26T13:13:03.544952Z",
        "source_ip": "192.168.99.1",
        "outcome": "allow 201",
    },
    "abcde12345": {
        "actor": "system:serviceaccount:kube-system:elastic-agent",
        "action": "get",
        "resource": "coordination.k8s.io/leases/kube-system/elastic-agent-cluster-test",
        "time": "2025-07-16T10:12:56.563177Z",
        "source_ip": "67.43.156.1",
        "outcome": "allow 200",
    },
    "179a9171-e02e-4227-8c41-8b2575f8da7d": {
        "actor": "jane.doe@example.com",
        "action": "delete",
        "resource": "configmaps/default/my-config",
        "time": "2018-10-26T13:13:33.773884Z",
        "source_ip": "192.168.99.1",
        "outcome": "allow 200",
    },
    "19f44b1a-e4fb-4c9a-bc2f-068dc94be8fb": {
        "actor": "system:anonymous",
        "action": "get",
        "resource": "/",
        "time": "2021-07-06T08:26:58.687Z",
        "source_ip": "10.128.0.1",
        "outcome": "forbid 403",
    },
}
# CloudTrail: userIdentity.arn, else principalId, else invokedBy; eventSource:eventName;
# resources[0].ARN else eventSource; sourceIPAddress only when an IP; errorCode -> failure.
CLOUDTRAIL_EXPECTED = {
    "b7d4398e-b2f0-4faa-9c76-e2d316a8d67f": {
        "actor": "arn:aws:iam::123456789012:user/Alice",
        "action": "cloudtrail.amazonaws.com:UpdateTrail",
        "resource": "cloudtrail.amazonaws.com",
        "time": "2016-07-14T19:15:45Z",
        "source_ip": "205.251.233.182",
        "outcome": "failure",
    },
    "234f004b-EXAMPLE": {
        "actor": "AWS Internal",
        "action": "kms.amazonaws.com:RotateKey",
        "resource": "arn:aws:kms:us-east-2:123456789012:key/7944f0ec-EXAMPLE",
        "time": "2019-06-02T00:06:08Z",
        "outcome": "success",
    },
    "49d14f36-6450-44a5-a501-b0fdcdfaeb98": {
        "actor": "arn:aws:iam::123456789012:user/Bob",
        "action": "autoscaling.amazonaws.com:RegisterScalableTarget",
        "resource": "autoscaling.amazonaws.com",
        "time": "2022-07-13T16:50:15Z",
        "outcome": "success",
    },
}
# GCP: principalEmail, methodName, resourceName, timestamp, callerIp only when an IP,
# "success" without status (or code 0), else "failure <code>".
GCP_EXPECTED = {
    "yonau3dc2zi": {
        "actor": "xxx@xxx.xxx",
        "action": "beta.compute.instances.aggregatedList",
        "resource": "projects/elastic-beats/global/instances",
        "time": "2019-12-19T00:44:25.051Z",
        "source_ip": "192.168.1.1",
        "outcome": "failure 7",
    },
    "-c7ctxmd2zab": {
        "actor": "user@mycompany.com",
        "action": "beta.compute.instances.stop",
        "resource": "projects/foo/zones/us-central1-a/instances/win10-test",
        "time": "2020-08-05T16:56:40.428Z",
        "source_ip": "67.43.156.13",
        "outcome": "success",
    },
}
# The private entry has no insertId and no timestamp (no dedupe key, no typed time).
GCP_PRIVATE_EXPECTED = {
    "actor": "service@gcp-sa-scc-notification.iam.gserviceaccount.com",
    "action": "google.cloud.bigquery.v2.TableService.PatchTable",
    "resource": "projects/someproject/datasets/someds/tables/sometbl",
    "outcome": "success",
}
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
MAPPED = ("actor", "action", "resource", "time", "source_ip", "outcome")


def mapped(event: dict[str, Any]) -> dict[str, Any]:
    return {key: event[key] for key in MAPPED if key in event}


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


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop_quietly()


def post(
    agent: AgentProcess, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any], Any]:
    return agent.request("POST", path, body, headers)


def verify_bucket_cli(endpoint: str, bucket: str, public_key: Path) -> dict[str, Any]:
    result = run_cli(
        "verify",
        "--bucket",
        bucket,
        "--prefix",
        "audit",
        "--endpoint-url",
        endpoint,
        "--public-key",
        public_key,
        "--json",
        "--no-progress",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


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
    agent = AgentProcess(
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
    agents.append(agent)
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

    verify_bucket_cli(endpoint, bucket, agent.public_key)
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


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str, issuer_key: Any, issuer: str, *, ca: bool = False
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path = path.with_suffix(".crt")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def test_kube_apiserver_webhook_with_a_client_certificate(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key, ca_cert = _issue("audit-ca", None, "audit-ca", ca=True)
    ca, _ = _write(pki / "ca", ca_key, ca_cert)
    server, server_key = _write(pki / "server", *_issue("audit-archiver", ca_key, "audit-ca"))
    client, client_key = _write(pki / "client", *_issue("kube-apiserver", ca_key, "audit-ca"))
    agent = AgentProcess(
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
    agents.append(agent)
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
    verify_bucket_cli(endpoint, bucket, agent.public_key)
    events = archived_events(endpoint, bucket, agent.public_key, tmp_path / "download")
    assert {e["record"]["auditID"]: mapped(e) for e in events} == K8S_EXPECTED
