"""Someone without the signing key writes to the bucket; the agent alerts and goes on.

Cases: a segment signed by another key at the stream's next key (same and
fresh spool) and garbage there with a fresh spool; AccessDenied on uploads
through an IAM policy (moto's IAM checks), then lifted. In every case every
acknowledged event ends in the bucket exactly once and the chain stays
verifiable around the foreign object (which ``verify`` still reports).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.core.layout import segment_key
from tests.helpers import build_stream, fixed_signer, wait_for
from tests.integration.agent_process import AgentProcess, launch, metric_value
from tests.reliability import figures
from tests.reliability.archive import (
    ACKED,
    AckLog,
    delivery_problems,
    read_archive,
    verify_bucket,
)
from tests.s3server import s3_client

FIRST_EVENTS = 12  # three segments of 4 (--batch-max-events 4)


def _first_run(
    tmp_path: Path, endpoint: str, bucket: str, agents: list[AgentProcess], log: AckLog
) -> list[str]:
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--batch-max-events", "4"))
    agent.start().wait_ready()
    assert agent.port is not None
    for n in range(3):
        assert log.send(agent.port, [f"first-{n}-{i}" for i in range(4)]).outcome == ACKED
    assert agent.terminate() == 0
    return sorted(o["Key"] for o in s3_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"])


def _junk(kind: str, number: int) -> bytes:
    if kind == "garbage":
        return b"\x28\xb5\x2f\xfd" + secrets.token_bytes(300)
    # a well-formed segment at the right key and seq, signed by a key the agent does not know
    other = fixed_signer(bytes(range(64, 96)))
    return build_stream(None, "web-1", segments=number + 1, per_segment=4, signer=other)[-1].data


def _second_run(
    tmp_path: Path,
    endpoint: str,
    bucket: str,
    agents: list[AgentProcess],
    log: AckLog,
    *,
    spool: Path | None,
) -> AgentProcess:
    agent = launch(
        agents, tmp_path, endpoint, bucket, spool=spool, args=("--batch-max-events", "4")
    )
    agent.start().wait_ready()
    assert agent.port is not None
    for n in range(3):
        post = log.send(agent.port, [f"second-{n}-{i}" for i in range(4)])
        assert post.outcome == ACKED, post
        assert post.first_seq == FIRST_EVENTS + 4 * n, post
    return agent


def _check(
    endpoint: str,
    bucket: str,
    agent: AgentProcess,
    log: AckLog,
    tampered: set[str],
    *,
    foreign_original: bool = False,
) -> dict[str, Any]:
    """``verify`` names no key but the tampered ones; every acknowledged event is
    sealed exactly once (the tampered keys' original versions are read unless
    ``foreign_original``: then the junk is the original and is left out)."""
    code, report = verify_bucket(endpoint, bucket, agent.public_key)
    named = {p.get("key") for p in report["problems"]}
    assert named <= tampered, report["problems"]
    assert code == (1 if report["problems"] else 0)
    archive = read_archive(endpoint, bucket)
    for key in tampered if foreign_original else ():
        archive = archive.without_key(key)
    assert delivery_problems(log, archive) == []
    return report


# Garbage at the next key with the same spool, newer junk versions and delete
# markers with a fresh spool: tests/integration/test_agent_store_faults.py.
@pytest.mark.parametrize(
    ("junk", "fresh_spool"),
    [("other-key", False), ("other-key", True), ("garbage", True)],
    ids=["other-key-same-spool", "other-key-fresh-spool", "garbage-fresh-spool"],
)
def test_junk_at_the_next_key(
    junk: str,
    fresh_spool: bool,
    tmp_path: Path,
    locked_bucket: tuple[str, str],
    agents: list[AgentProcess],
) -> None:
    endpoint, bucket = locked_bucket
    log = AckLog()
    keys = _first_run(tmp_path, endpoint, bucket, agents, log)
    assert len(keys) == 3
    next_key = segment_key("audit", "web-1", 3, "zstd")
    s3_client(endpoint).put_object(Bucket=bucket, Key=next_key, Body=_junk(junk, 3))
    agent = _second_run(
        tmp_path, endpoint, bucket, agents, log, spool=tmp_path / "fresh" if fresh_spool else None
    )
    wait_for(
        lambda: metric_value(agent, "audit_archiver_foreign_objects_total") >= 1 or agent.exited(),
        30,
        "the foreign-object alert",
    )
    assert not agent.exited(), agent.logs[-10:]
    status, ready = agent.get("/readyz")
    assert status == 200 and ready["alerts"], ready
    assert agent.terminate() == 0, agent.logs[-10:]
    alerts = [e for e in agent.logs if e.get("key") == next_key]
    assert alerts, "no JSON log line names the foreign object"
    report = _check(endpoint, bucket, agent, log, {next_key}, foreign_original=True)
    assert report["problems"], "verify must still report the foreign object"
    figures.record(f"junk_next_key_{junk}_{'fresh' if fresh_spool else 'same'}", hostile_inputs=1)


DENY_UPLOADS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
    ],
}
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@contextlib.contextmanager
def _iam_enforced(endpoint: str) -> Iterator[dict[str, str]]:
    """Turn on moto's IAM checks (in this process); yield credentials of a user
    whose inline policy the test can change; turn them off again afterwards."""
    import boto3
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    user = f"writer-{secrets.token_hex(4)}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(DENY_UPLOADS))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    saved = (settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "user": user,
        }
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = saved


def test_access_denied_on_uploads_is_surfaced_and_events_are_kept(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    log = AckLog()
    with _iam_enforced(endpoint) as credentials:
        user = credentials.pop("user")
        agent = launch(
            agents, tmp_path, endpoint, bucket, env=credentials, args=("--batch-max-events", "4")
        )
        agent.start()
        wait_for(lambda: agent.port is not None or agent.exited(), 30, "the listening log")
        assert not agent.exited(), agent.logs[-10:]
        assert agent.port is not None
        for n in range(3):
            post = log.send(agent.port, [f"denied-{n}-{i}" for i in range(4)])
            assert post.outcome == ACKED, post
        wait_for(
            lambda: (
                metric_value(agent, "audit_archiver_storage_errors_total", kind="permanent") >= 1
            ),
            30,
            "a permanent storage error",
        )
        # The contract says 200 with the reason under "alerts"; OPERATIONS.md says
        # 503 with the reason. Either way the reason is there and events still go in.
        status, ready = agent.get("/readyz")
        assert "AccessDenied" in json.dumps(ready), (status, ready)
        assert status in (200, 503), (status, ready)
        post = log.send(agent.port, ["while-denied"])
        assert post.outcome == ACKED, post
        assert any("AccessDenied" in json.dumps(e) for e in agent.logs), agent.logs[-10:]
        import boto3

        iam = boto3.client(  # as the user itself: the test's dummy keys are unknown to IAM
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(ALLOW_ALL))
        assert agent.terminate(timeout=90) == 0, agent.logs[-10:]
    _check(endpoint, bucket, agent, log, set())
    figures.record("access_denied", hostile_inputs=1, lost=0)
