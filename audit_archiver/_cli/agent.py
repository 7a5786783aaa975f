"""``audit-archiver agent``: options (flag > AUDIT_ARCHIVER_* env > TOML file) to settings."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from audit_archiver.config import (
    LINE_FORMATS,
    AgentSettings,
    BatchLimits,
    load_config_file,
    parse_listen,
)
from audit_archiver.core.formats import FormatOptions
from audit_archiver.errors import ConfigurationError

_DEFAULTS = BatchLimits()
_SETTING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AgentSettings)}
_F = TypeVar("_F", bound=Callable[..., Any])


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is None:
        return
    known = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    try:
        ctx.default_map = load_config_file(value, known)
    except ConfigurationError as e:
        raise click.BadParameter(str(e)) from e


def _opt(*names: str, **kwargs: Any) -> Callable[[_F], _F]:
    name = names[0].lstrip("-").replace("-", "_").upper()
    return click.option(*names, envvar=f"AUDIT_ARCHIVER_{name}", show_envvar=True, **kwargs)


_PATH = click.Path(path_type=Path)


def _default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


@click.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    envvar="AUDIT_ARCHIVER_CONFIG",
    help="TOML file with any of these settings (keys: long flag names).",
)
@_opt("--bucket", help="S3 bucket with Object Lock enabled.")
@_opt("--prefix", help="Key prefix for this archive, e.g. audit/prod.")
@_opt("--stream", help="Stream id: one per agent (A-Z a-z 0-9 . _ -).")
@_opt("--signing-key", type=_PATH, help="Ed25519 private key PEM (mode 0600).")
@_opt(
    "--kms-key-id",
    help="Sign with this AWS KMS key (ECC_NIST_P256) instead of"
    " --signing-key; KMS endpoint and credentials come the usual boto3 way.",
)
@_opt(
    "--previous-public-key",
    type=_PATH,
    multiple=True,
    help="Public key that signed this stream before --signing-key/--kms-key-id"
    " (key rotation; repeatable): the chain continues from a head it signed.",
)
@_opt("--retention-days", type=int, help="COMPLIANCE retention applied to every segment.")
@_opt("--spool", type=_PATH, help="Spool directory (persistent volume).")
@_opt("--listen", help="HOST:PORT for the HTTP API, or unix:/path (a socket, mode 0660).")
@_opt(
    "--token-file",
    type=_PATH,
    help="Client tokens: lines `name token` (# comments), or one bare token named"
    " default. Sent as Bearer, or Basic with the name as user.",
)
@_opt("--tls-cert", type=_PATH, help="Serve HTTPS with this certificate chain (PEM).")
@_opt("--tls-key", type=_PATH, help="Private key of --tls-cert (PEM, mode 0600).")
@_opt(
    "--tls-client-ca",
    type=_PATH,
    help="Require client certificates issued by this CA (PEM); the subject CN names"
    " the client. With --token-file, both are required.",
)
@_opt(
    "--header-timeout",
    type=float,
    default=_SETTING_DEFAULTS["header_timeout"],
    show_default=True,
    help="Seconds a connection may take to send complete request headers (and TLS handshake).",
)
@_opt(
    "--idle-timeout",
    type=float,
    default=_SETTING_DEFAULTS["idle_timeout"],
    show_default=True,
    help="Seconds an idle keep-alive connection, or a stalled request body, is kept.",
)
@_opt(
    "--max-connections",
    type=int,
    default=_SETTING_DEFAULTS["max_connections"],
    show_default=True,
    help="Open connections above this are closed at once.",
)
@_opt("--endpoint-url", help="S3-compatible endpoint (default: AWS).")
@_opt("--region", help="AWS region of the bucket.")
@_opt(
    "--s3-read-timeout",
    type=float,
    default=_SETTING_DEFAULTS["s3_read_timeout"],
    show_default=True,
    help="Seconds one S3 socket read may stall before that try fails (and is retried).",
)
@_opt("--batch-max-events", type=int, default=_DEFAULTS.max_events, show_default=True)
@_opt("--batch-max-bytes", type=int, default=_DEFAULTS.max_bytes, show_default=True)
@_opt(
    "--batch-max-age",
    type=float,
    default=_DEFAULTS.max_age,
    show_default=True,
    help="Seconds the oldest unsealed event may wait.",
)
@_opt(
    "--heartbeat",
    type=float,
    default=None,
    help="Seal an empty segment after this many idle seconds.",
)
@_opt(
    "--spool-max-bytes",
    type=int,
    default=_SETTING_DEFAULTS["spool_max_bytes"],
    show_default=True,
    help="Above this the API answers 503 (backpressure).",
)
@_opt("--max-body-bytes", type=int, default=_SETTING_DEFAULTS["max_body_bytes"], show_default=True)
@_opt(
    "--max-inflight-bytes",
    type=int,
    default=None,
    help="Request-body bytes read, encoded or committed at once; later requests"
    " wait (503 after --idle-timeout). Default: 4 x --max-body-bytes.",
)
@_opt(
    "--grace-period",
    type=float,
    default=_SETTING_DEFAULTS["grace_period"],
    show_default=True,
    help="Seconds to keep uploading after SIGTERM.",
)
@_opt(
    "--compression",
    type=click.Choice(["zstd", "gzip"]),
    default=_SETTING_DEFAULTS["compression"],
    show_default=True,
)
@_opt("--stdin", is_flag=True, default=False, help="Also read NDJSON events from stdin.")
@_opt(
    "--stdin-format",
    type=click.Choice(LINE_FORMATS),
    default="events",
    show_default=True,
    help="What each --stdin line holds: an event, or a producer's record"
    " (k8s-audit Event, CloudTrail record, GCP LogEntry).",
)
@_opt("--tail", type=_PATH, help="Also follow this NDJSON file (survives rotation).")
@_opt(
    "--tail-format",
    type=click.Choice(LINE_FORMATS),
    default="events",
    show_default=True,
    help="What each --tail line holds, as --stdin-format (k8s-audit: the API"
    " server's --audit-log-path file).",
)
@_opt(
    "--otlp-actor-attribute",
    multiple=True,
    help="/v1/logs: log record attribute giving actor, tried in order (repeatable;"
    " default: user.id, then enduser.id).",
)
@_opt(
    "--otlp-resource-attribute",
    help="/v1/logs: attribute giving resource (record, then resource attributes);"
    " default and fallback: the resource's service.name.",
)
@_opt(
    "--max-line-bytes",
    type=int,
    default=_SETTING_DEFAULTS["max_line_bytes"],
    show_default=True,
    help="--stdin/--tail: a longer line is skipped (counted and logged), never held whole.",
)
@_opt(
    "--ingest-workers",
    type=int,
    default=_default_workers(),
    show_default=True,
    help="Processes that parse and validate request bodies and compress and hash"
    " segments (0: none, in-process).",
)
@_opt(
    "--tsa-url",
    help="RFC 3161 Time-Stamping Authority (http or https): each seal hash is"
    " time-stamped and the token stored with the segment (format v1.1: upgrade"
    " verifiers first). A TSA that fails never blocks ingest: the segment is"
    " sealed without a token.",
)
@_opt(
    "--tsa-timeout",
    type=float,
    default=_SETTING_DEFAULTS["tsa_timeout"],
    show_default=True,
    help="Seconds the whole exchange with the TSA may take (connect, TLS, answer).",
)
@_opt(
    "--tsa-cert",
    type=_PATH,
    multiple=True,
    help="Trust anchor for the TSA's tokens (PEM: its CA; repeatable). Each token is"
    " then fully verified (signature, chain, key usage, time) before it is stored;"
    " without it only the imprint and the nonce are checked.",
)
@_opt("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--check-config", is_flag=True, help="Validate the settings and exit.")
def agent(check_config: bool, log_level: str, **options: Any) -> None:
    """Accept audit events, seal them into signed segments and upload them under
    S3 Object Lock (COMPLIANCE).

    Exit status: 0 clean shutdown, 1 the stream was forked by another writer,
    2 configuration, bucket or spool error.
    """
    settings = _settings(options)
    from audit_archiver.agent.logs import configure_logging
    from audit_archiver.agent.run import load_listener_config, run_agent

    if check_config:
        settings.validate()
        load_listener_config(settings)
        if settings.tsa_certs:
            from audit_archiver.config import load_tsa_trust

            load_tsa_trust(settings.tsa_certs)
        from audit_archiver.keys import load_public_key, load_signer

        key_id = (
            f"KMS {settings.kms_key_id}"
            if settings.signing_key is None
            else load_signer(settings.signing_key).key_id
        )
        previous = [load_public_key(path).key_id for path in settings.previous_public_keys]
        click.echo(
            f"configuration OK: stream {settings.stream} -> s3://{settings.bucket}/"
            f"{settings.prefix}/{settings.stream}/ (key id {key_id}"
            + "".join(f", continues from previous key {k}" for k in previous)
            + ")"
        )
        return
    configure_logging(log_level)
    sys.exit(run_agent(settings))


_REQUIRED = ("bucket", "prefix", "stream", "retention_days", "spool")


def _settings(options: dict[str, Any]) -> AgentSettings:
    missing = [name for name in _REQUIRED if options.get(name) is None]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigurationError(
            f"missing setting(s): {flags} (flag, AUDIT_ARCHIVER_* variable or config file)"
        )
    batch = BatchLimits(
        options["batch_max_events"],
        options["batch_max_bytes"],
        options["batch_max_age"],
        options["heartbeat"],
    )
    return AgentSettings(
        bucket=options["bucket"],
        prefix=options["prefix"],
        stream=options["stream"],
        signing_key=Path(options["signing_key"]) if options.get("signing_key") else None,
        kms_key_id=options.get("kms_key_id"),
        previous_public_keys=tuple(Path(p) for p in options.get("previous_public_key") or ()),
        retention_days=options["retention_days"],
        spool=Path(options["spool"]),
        listen=parse_listen(options["listen"]) if options.get("listen") else None,
        token_file=Path(options["token_file"]) if options.get("token_file") else None,
        tls_cert=Path(options["tls_cert"]) if options.get("tls_cert") else None,
        tls_key=Path(options["tls_key"]) if options.get("tls_key") else None,
        tls_client_ca=Path(options["tls_client_ca"]) if options.get("tls_client_ca") else None,
        header_timeout=options["header_timeout"],
        idle_timeout=options["idle_timeout"],
        max_connections=options["max_connections"],
        max_line_bytes=options["max_line_bytes"],
        endpoint_url=options.get("endpoint_url"),
        region=options.get("region"),
        s3_read_timeout=options["s3_read_timeout"],
        batch=batch,
        spool_max_bytes=options["spool_max_bytes"],
        max_body_bytes=options["max_body_bytes"],
        max_inflight_bytes=options.get("max_inflight_bytes"),
        grace_period=options["grace_period"],
        stdin=options["stdin"],
        tail=Path(options["tail"]) if options.get("tail") else None,
        tail_format=options.get("tail_format") or "events",
        stdin_format=options.get("stdin_format") or "events",
        otlp_actor_attributes=tuple(options.get("otlp_actor_attribute") or ())
        or FormatOptions().otlp_actor_attributes,
        otlp_resource_attribute=options.get("otlp_resource_attribute"),
        compression=options["compression"],
        ingest_workers=options["ingest_workers"],
        tsa_url=options.get("tsa_url") or None,
        tsa_timeout=options["tsa_timeout"],
        tsa_certs=tuple(Path(p) for p in options.get("tsa_cert") or ()),
    )
