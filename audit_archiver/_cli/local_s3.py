"""``audit-archiver local-s3``: an in-memory S3 endpoint with an Object Lock bucket."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click


@click.command("local-s3")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--bucket", default="audit-archive", show_default=True, help="Object Lock bucket to create."
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The bucket's default COMPLIANCE retention.",
)
def local_s3(host: str, port: int, bucket: str, retention_days: int) -> None:
    """Serve an in-memory S3 endpoint (moto) on loopback, for demos and tests.

    Creates BUCKET with Object Lock (versioning on, default COMPLIANCE
    retention), prints "local-s3: serving URL bucket=BUCKET" and the
    environment for clients, then runs until SIGTERM or SIGINT. Nothing is
    kept when it stops. Needs: pip install 'audit-archiver[local-s3]'.
    """
    from audit_archiver.storage.local_s3 import LocalS3Settings, start_local_s3

    settings = LocalS3Settings(host=host, port=port, bucket=bucket, retention_days=retention_days)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    stop = threading.Event()
    with _stop_on_signals(stop), start_local_s3(settings) as server:
        click.echo(f"local-s3: serving {server.endpoint_url} bucket={bucket}")
        environment = " ".join(f"{name}={value}" for name, value in server.environment().items())
        click.echo(f"local-s3: env {environment} (dummy credentials: moto accepts any)")
        sys.stdout.flush()
        stop.wait()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM and SIGINT; restore the previous handlers afterwards."""
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
