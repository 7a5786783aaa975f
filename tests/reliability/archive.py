"""What clients were told, what the bucket holds, and the check that compares them.

:class:`AckLog` records every POST a test client made: the unique ``eid`` of
each event and the answer (200 with seqs, 200 with null seqs during an
outage at start, a refusal, or no answer at all). :func:`read_archive` reads
every segment back from the bucket, as a verifier outside the project would:
the seal frame is split off (``open_segment``) and the body decompressed
(``decompress_body``); objects that are not segments are listed apart.
:func:`delivery_problems` is the check: every acknowledged event sealed exactly
once at the seq it was given, events without an answer at most once, nothing
refused or unknown, and seqs gap-free from 0. It is pure, so tests plant
losses and duplicates in a copy of the archive and see it report them.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_archiver.core.segment import decompress_body, open_segment
from audit_archiver.errors import MalformedSegmentError
from tests.integration.agent_process import TOKEN, verify_in_bucket
from tests.s3server import s3_client

ACKED, NULL_SEQ, REFUSED, UNANSWERED = "acked", "acked-null-seq", "refused", "unanswered"
DURABLE = "durable"  # no answer, but known to be fsync'd (killed at the before-ack failpoint)
MUST_ARRIVE = (ACKED, NULL_SEQ, DURABLE)


def event(eid: str, pad: str = "") -> dict[str, Any]:
    """A valid event carrying the unique id ``eid``."""
    return {"actor": "reliability", "action": "post", "resource": {"id": eid}, "eid": eid, "p": pad}


def body_of(eids: list[str]) -> bytes:
    return b"".join(json.dumps(event(eid)).encode() + b"\n" for eid in eids)


@dataclass
class Post:
    """One POST: its events and what came back."""

    eids: list[str]
    outcome: str
    status: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass
class AckLog:
    """Thread-safe record of every POST made by the test clients."""

    posts: list[Post] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, port: int, eids: list[str], timeout: float = 30) -> Post:
        """POST ``eids`` to the agent on ``port``; record and return the outcome.

        Connection refused means the request never reached an agent (recorded as
        refused). Any other transport error leaves the outcome unknown
        (``unanswered``: the events may be archived, at most once).
        """
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        post = Post(list(eids), UNANSWERED)
        try:
            conn.request(
                "POST",
                "/v1/events",
                body=body_of(eids),
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": "application/x-ndjson",
                },
            )
            response = conn.getresponse()
            raw = response.read()
            post.status = response.status
            if response.status == 200:
                answer = json.loads(raw)
                assert answer["accepted"] == len(eids), answer
                post.first_seq, post.last_seq = answer["first_seq"], answer["last_seq"]
                post.outcome = ACKED if post.first_seq is not None else NULL_SEQ
                if post.first_seq is not None:
                    assert post.last_seq - post.first_seq + 1 == len(eids), answer
            else:
                post.outcome = REFUSED
        except ConnectionRefusedError:
            post.outcome = REFUSED
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        with self._lock:
            self.posts.append(post)
        return post

    def count(self, *outcomes: str) -> int:
        with self._lock:
            return sum(len(p.eids) for p in self.posts if p.outcome in outcomes)

    def snapshot(self) -> list[Post]:
        with self._lock:
            return list(self.posts)


@dataclass(frozen=True)
class Sealed:
    """One event line read back from the bucket."""

    key: str
    seq: int
    eid: str | None


@dataclass
class Archive:
    """Every event line of every segment under a stream prefix, in key order."""

    events: list[Sealed]
    keys: list[str]
    foreign: list[str]  # objects that are not segments
    versions: dict[str, int]  # key -> number of versions (delete markers excluded)

    def without_key(self, key: str) -> Archive:
        """A copy with one object's events removed (to plant a loss)."""
        return Archive(
            [e for e in self.events if e.key != key],
            [k for k in self.keys if k != key],
            self.foreign,
            self.versions,
        )


def read_archive(endpoint: str, bucket: str, prefix: str = "audit/web-1/") -> Archive:
    """Read every object's ORIGINAL (oldest) version under ``prefix`` and its event lines."""
    client = s3_client(endpoint)
    originals: dict[str, tuple[Any, str]] = {}
    versions: Counter[str] = Counter()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            key = item["Key"]
            versions[key] += 1
            # S3 lists the versions of a key newest first: the last one listed is the original
            originals[key] = (item["LastModified"], item["VersionId"])
    events: list[Sealed] = []
    foreign: list[str] = []
    for key in sorted(originals):
        data = client.get_object(Bucket=bucket, Key=key, VersionId=originals[key][1])["Body"].read()
        try:
            opened = open_segment(data)
            raw = decompress_body(opened.body, opened.container)
        except MalformedSegmentError:
            foreign.append(key)
            continue
        for line in raw.splitlines():
            sealed = json.loads(line)
            events.append(Sealed(key, sealed["seq"], sealed.get("eid")))
    return Archive(events, sorted(originals), foreign, dict(versions))


def delivery_problems(log: AckLog | list[Post], archive: Archive) -> list[str]:
    """Everything wrong between what clients were told and what the bucket holds."""
    posts = log.snapshot() if isinstance(log, AckLog) else log
    problems: list[str] = []
    found: dict[str, list[Sealed]] = {}
    for sealed in archive.events:
        found.setdefault(str(sealed.eid), []).append(sealed)
    expected: dict[str, Post] = {}
    for post in posts:
        for offset, eid in enumerate(post.eids):
            expected[eid] = post
            copies = found.get(eid, [])
            if post.outcome in MUST_ARRIVE and not copies:
                problems.append(f"lost: acknowledged event {eid} is not in the bucket")
            if len(copies) > 1:
                keys = [c.key for c in copies]
                problems.append(f"duplicate: event {eid} stored {len(copies)} times ({keys})")
            if post.outcome == REFUSED and copies:
                problems.append(f"refused event {eid} (status {post.status}) was archived")
            if post.outcome == ACKED and copies:
                assert post.first_seq is not None
                if copies[0].seq != post.first_seq + offset:
                    problems.append(
                        f"moved: event {eid} acknowledged as seq {post.first_seq + offset}, "
                        f"stored as seq {copies[0].seq}"
                    )
    unknown = sorted(eid for eid in found if eid not in expected)
    if unknown:
        problems.append(f"{len(unknown)} archived events nobody sent: {unknown[:5]}")
    seqs = sorted(sealed.seq for sealed in archive.events)
    if seqs != list(range(len(seqs))):
        problems.append(f"seqs are not 0..{len(seqs) - 1} exactly once")
    return problems


def verify_bucket(endpoint: str, bucket: str, public_key: Path) -> tuple[int, dict[str, Any]]:
    """Run ``audit-archiver verify --bucket --json``; return its exit code and report."""
    return verify_in_bucket(endpoint, bucket, "--public-key", public_key)
