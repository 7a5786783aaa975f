"""Builders shared by the tests: a fixed key, deterministic events and streams."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.config import AgentSettings, BatchLimits
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.event import seal_event
from audit_archiver.core.segment import (
    SealedSegment,
    assemble_segment,
    compress_body,
    decompress_body,
    open_segment,
)
from audit_archiver.core.signing import Ed25519Signer, TrustedKey, load_trusted_key
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.report import Report
from audit_archiver.verify.verifier import Verifier, VerifyOptions

FIXED_SEED = bytes(range(32))
OTHER_SEED = bytes(range(32, 64))
BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def fixed_signer(seed: bytes = FIXED_SEED) -> Ed25519Signer:
    """A signer with a fixed Ed25519 key (signatures are deterministic)."""
    return Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def trusted_keys(*signers: Ed25519Signer) -> dict[str, TrustedKey]:
    """Trusted-key map for the given signers."""
    keys = [load_trusted_key(s.public_pem()) for s in signers]
    return {k.key_id: k for k in keys}


def sample_event(n: int) -> dict[str, Any]:
    """A deterministic, valid producer event."""
    return {
        "actor": f"user-{n % 5}",
        "action": ["read", "update", "delete"][n % 3],
        "resource": {"id": f"doc/{n}", "type": "document"},
        "time": "2026-01-02T03:04:05Z",
        "outcome": "success",
        "details": {"n": n, "note": "é ✓"},
    }


def agent_settings(
    spool: Path, *, grace_period: float = 5.0, **batch: float | None
) -> AgentSettings:
    """The unit tests' agent: stream ``s1`` under ``audit/`` in ``bkt``, 3 days' retention;
    batches of 10 events or 30 s unless ``batch`` overrides a :class:`BatchLimits` field."""
    limits = BatchLimits(**{"max_events": 10, "max_age": 30.0, **batch})  # type: ignore[arg-type]
    return AgentSettings(
        bucket="bkt",
        prefix="audit",
        stream="s1",
        signing_key=Path("k"),
        retention_days=3,
        spool=spool,
        batch=limits,
        grace_period=grace_period,
    )


def tick(n: int) -> str:
    """The n-th deterministic archiver timestamp (one millisecond apart)."""
    return format_timestamp(BASE_TIME + timedelta(milliseconds=n))


def build_stream(
    root: Path | None,
    stream: str,
    *,
    segments: int = 3,
    per_segment: int = 4,
    prefix: str = "audit",
    signer: Ed25519Signer | None = None,
    compression: str = "zstd",
    empty_segments: tuple[int, ...] = (),
) -> list[SealedSegment]:
    """Seal a deterministic stream; write it under ``root`` as a synced prefix."""
    sealer = StreamSealer(
        prefix=prefix,
        stream=stream,
        signer=signer or fixed_signer(),
        head=ChainHead(),
        compression=compression,
    )
    built = []
    for index in range(segments):
        count = 0 if index in empty_segments else per_segment
        first = sealer.head.next_seq
        lines = [
            seal_event(sample_event(first + i), first + i, tick(first + i)) for i in range(count)
        ]
        built.append(sealer.seal(lines, tick(first + count + 1000 * index)))
    if root is not None:
        store = LocalDirectoryStore(root)
        for segment in built:
            relative = segment.key[len(prefix) + 1 :] if prefix else segment.key
            store.put_new(relative, segment.data, retain_until=None)
    return built


def trust_policy(*signers: Ed25519Signer) -> TrustPolicy:
    """A policy trusting each signer's key for every stream (``--public-key`` mode)."""
    keys = trusted_keys(*signers)
    return TrustPolicy.every_stream((key, f"test key {n}") for n, key in enumerate(keys.values()))


def verify_dir(root: Path, *signers: Ed25519Signer, prefix: str | None = "audit") -> Report:
    """Verify a folder with the given trusted signers (default: the fixed key)."""
    options = VerifyOptions(seal_prefix=prefix, workers=2)
    policy = trust_policy(*(signers or (fixed_signer(),)))
    return Verifier(LocalDirectoryStore(root), policy, options, source=str(root)).run()


def kinds(report: Report) -> list[tuple[str, str]]:
    """Sorted (kind, key) pairs of a report's problems."""
    return sorted((p.kind, p.key) for p in report.problems)


def forge(
    segment: SealedSegment,
    signer: Ed25519Signer,
    *,
    raw_body: bytes | None = None,
    **seal_changes: Any,
) -> bytes:
    """Re-sign a segment after changing its seal and/or its body (an attacker with a key)."""
    seal = segment.seal
    if raw_body is None:
        body = open_segment(segment.data).body
    else:
        body = compress_body(raw_body, seal.compression)
        seal_changes.setdefault("body_hash", hashlib.sha256(body).hexdigest())
        seal_changes.setdefault("body_size", len(body))
    seal_changes.setdefault("key_id", signer.key_id)
    return assemble_segment(dataclasses.replace(seal, **seal_changes), body, signer).data


def body_lines(segment: SealedSegment) -> list[bytes]:
    """The event lines of a segment (no newlines)."""
    opened = open_segment(segment.data)
    return decompress_body(opened.body, opened.container).splitlines()


def wait_for(
    condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- producers' fixtures (tests/fixtures/producers/), mapped by hand from the issue's table --

MAPPED = ("actor", "action", "resource", "time", "source_ip", "outcome")


def mapped(event: dict[str, Any]) -> dict[str, Any]:
    """The mapped (typed) fields of an archived event line."""
    return {key: event[key] for key in MAPPED if key in event}


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
