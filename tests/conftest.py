"""Fixtures shared by every test directory: moto's S3 server and fresh buckets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.agent_process import AgentProcess
from tests.s3server import (
    create_locked_bucket,
    dummy_aws_environment,
    moto_server,
    s3_client,
    unique_bucket_name,
)

_LONG_FIRST = ("tests/reliability/", "tests/integration/test_agent_body.py")
_LAST = ("tests/terraform/test_terraform_checkov.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest tests (crash loops, fault mixes, the memory bound) first, so that
    with ``-n 3`` (scripts/test) they overlap the many short ones instead of running
    alone at the end, and the checkov test last, by which time ``scripts/test`` has
    built its venv in the background. Without xdist only the order changes."""
    items.sort(
        key=lambda item: (
            item.nodeid.startswith(_LAST),
            not item.nodeid.startswith(_LONG_FIRST),
        )
    )


@pytest.fixture(scope="session")
def aws_test_environment() -> Iterator[None]:
    """Dummy AWS credentials and region for the session (restored at the end)."""
    with dummy_aws_environment():
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_test_environment: None) -> Iterator[str]:
    """The URL of moto's S3 server, started once per session on a free loopback port.

    While it runs, the environment holds dummy AWS credentials and region.
    """
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def locked_bucket(moto_endpoint: str) -> tuple[str, str]:
    """(endpoint, name) of a fresh Object Lock bucket: versioned, COMPLIANCE 1 day by default."""
    name = create_locked_bucket(s3_client(moto_endpoint), unique_bucket_name("locked"))
    return moto_endpoint, name


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agents a test starts; each is killed (if still running) at teardown."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop_quietly()
