"""A throwaway S3 endpoint on loopback: moto's server, in this process.

For demos, scripts and tests, never for evidence: everything lives in memory
and is gone when the server stops, and moto accepts any credentials
(:data:`DUMMY_ENVIRONMENT` lists the ones clients should use). moto enforces
Object Lock (a COMPLIANCE version cannot be deleted), conditional puts and
versioning like S3 does, which is what the agent and the verifier rely on.

Needs the optional extra ``local-s3`` (``pip install 'audit-archiver[local-s3]'``).
It listens on loopback addresses only. Usage::

    with start_local_s3(LocalS3Settings(bucket="audit-archive")) as server:
        store = S3Store.connect("audit-archive", region="us-east-1",
                                endpoint_url=server.endpoint_url)
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from audit_archiver.errors import ConfigurationError, StorageUnavailableError

__all__ = [
    "DUMMY_ENVIRONMENT",
    "LocalS3Server",
    "LocalS3Settings",
    "create_locked_bucket",
    "local_client",
    "start_local_s3",
    "start_server",
]

#: Credentials and region for clients of the local server (moto accepts any).
DUMMY_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_SECONDS = 10.0
_POLL_INTERVAL_SECONDS = 0.02


@dataclass(frozen=True)
class LocalS3Settings:
    """Where to listen and which bucket to create (None: no bucket).

    ``port`` 0 picks a free port.
    """

    host: str = "127.0.0.1"
    port: int = 0
    bucket: str | None = "audit-archive"
    retention_days: int = 1


class LocalS3Server:
    """A running moto server; :meth:`stop` (or leaving the ``with`` block) ends it."""

    def __init__(self, server: Any, endpoint_url: str) -> None:
        self._server = server
        self._stopped = False
        self.endpoint_url = endpoint_url

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 and the AWS CLI at this server."""
        return {**DUMMY_ENVIRONMENT, "AWS_ENDPOINT_URL_S3": self.endpoint_url}

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        # ThreadedMotoServer.stop() shuts the loop down but leaves the socket open.
        listener = getattr(self._server, "_server", None)
        if listener is not None:
            listener.server_close()

    def __enter__(self) -> LocalS3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_local_s3(settings: LocalS3Settings) -> LocalS3Server:
    """Start a server and create the settings' Object Lock bucket on it.

    Raises:
        ConfigurationError: moto is missing, the host is not loopback, the
            port is taken, or the bucket cannot be created.
    """
    server = start_server(settings.host, settings.port)
    if settings.bucket is None:
        return server
    try:
        create_locked_bucket(
            local_client(server.endpoint_url),
            settings.bucket,
            retention_days=settings.retention_days,
        )
    except BaseException:
        server.stop()
        raise
    return server


def start_server(
    host: str = "127.0.0.1", port: int = 0, *, timeout: float = START_TIMEOUT_SECONDS
) -> LocalS3Server:
    """Start moto's S3 server on ``host``:``port`` and return once it answers HTTP.

    Raises:
        ConfigurationError: moto is missing, the host is not loopback, the
            port is taken, or the server does not answer within ``timeout``.
    """
    _require_loopback(host)
    server_class = _moto_server_class()
    _require_free_port(host, port)
    server = server_class(ip_address=host, port=port, verbose=False)
    # start() waits forever if the server thread cannot bind: wait in a helper thread.
    starter = threading.Thread(target=server.start, name="local-s3-start", daemon=True)
    starter.start()
    starter.join(timeout)
    if starter.is_alive():
        raise ConfigurationError(f"local S3 server did not start on {host}:{port}")
    bound_host, bound_port = server.get_host_and_port()
    running = LocalS3Server(server, _endpoint_url(bound_host, bound_port))
    try:
        _wait_until_answering(bound_host, bound_port, time.monotonic() + timeout)
    except BaseException:
        running.stop()
        raise
    return running


def local_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the local server, with the dummy credentials."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=DUMMY_ENVIRONMENT["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
    )


def create_locked_bucket(
    client: Any, bucket: str, *, retention_days: int, mode: str = "COMPLIANCE"
) -> None:
    """Create ``bucket`` with Object Lock (hence versioning) and a default retention rule.

    Raises:
        ConfigurationError: the bucket cannot be created (bad name, exists, ...).
        StorageUnavailableError: the endpoint cannot be reached.
    """
    rule = {"DefaultRetention": {"Mode": mode, "Days": retention_days}}
    try:
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
        )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(f"cannot create Object Lock bucket {bucket!r}: {code}") from e
    except BotoCoreError as e:
        raise StorageUnavailableError(f"cannot create bucket {bucket!r}: {e}") from e


def _moto_server_class() -> Any:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise ConfigurationError(
            "local-s3 needs moto: pip install 'audit-archiver[local-s3]'"
        ) from e
    return ThreadedMotoServer


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"local-s3 listens on loopback only (127.0.0.1, ::1 or localhost), not {host!r}"
        )


def _require_free_port(host: str, port: int) -> None:
    """Fail early and clearly when ``port`` is taken (0 always finds a free port)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {e.strerror}") from e


def _endpoint_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _wait_until_answering(host: str, port: int, deadline: float) -> None:
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise ConfigurationError(f"local S3 server on {host}:{port} does not answer")
        time.sleep(_POLL_INTERVAL_SECONDS)


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("HEAD", "/")
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()
