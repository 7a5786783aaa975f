"""docs/PRODUCERS.md: every snippet parses, and sends to real endpoints in ways the agent accepts.

The routes come from the real aiohttp application (``build_app``), not from a copy, so a
snippet naming an endpoint the agent does not serve fails, and so does an endpoint of
issue 11 that the agent does not register.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import re
from typing import Any, cast

import pytest
import yaml

from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.server import ClientAuth, build_app
from audit_archiver.config import AgentSettings
from audit_archiver.core.event import validate_event
from tests.docs.snippets import (
    AGENT_CONTENT_ENCODINGS,
    DOC,
    LANGUAGES,
    EndpointUse,
    FluentBitSyntaxError,
    Snippet,
    classify,
    doc_snippets,
    endpoint_uses,
    extract_snippets,
    is_placeholder,
    parse,
    parse_fluent_bit_classic,
    token_set,
)

INGEST_ENDPOINTS = frozenset(
    {
        "/v1/events",
        "/v1/ingest/k8s-audit",
        "/v1/ingest/cloudtrail",
        "/v1/ingest/gcp-audit",
        "/v1/logs",
    }
)
"""The public interface of issue 11 ("What to build")."""

SNIPPETS = doc_snippets()
PARSED = {s.line: parse(s) for s in SNIPPETS if s.lang in LANGUAGES}
KINDS = {s.line: classify(s, PARSED[s.line]) for s in SNIPPETS if s.line in PARSED}
CONNECTIONS = {
    PARSED[line]["Name"]: PARSED[line] for line, k in KINDS.items() if k == "eventbridge-connection"
}
USES = [
    use
    for s in SNIPPETS
    if s.line in KINDS
    for use in endpoint_uses(s, PARSED[s.line], KINDS[s.line], CONNECTIONS)
]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _ids(items: list[Any]) -> list[str]:
    return [str(i.snippet if isinstance(i, EndpointUse) else i) for i in items]


def agent_post_routes() -> set[str]:
    """Paths the real application answers POST on (the agent object is never called)."""
    options: dict[str, Any] = {}
    if "max_inflight_bytes" in inspect.signature(build_app).parameters:
        options["max_inflight_bytes"] = 4096  # so build_app needs nothing from the agent
    app = build_app(cast(Agent, object()), ClientAuth(), 1024, **options)
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "POST" and route.resource is not None
    }


# --- Parsing ---------------------------------------------------------------------------


def test_the_page_has_a_snippet_for_every_configuration() -> None:
    kinds = set(KINDS.values())
    assert {
        "kubeconfig",
        "audit-policy",
        "kube-apiserver-manifest",
        "vector",
        "fluent-bit-classic",
        "fluent-bit-yaml",
        "cloudformation",
        "eventbridge-connection",
        "eventbridge-api-destination",
        "otel-collector",
    } <= kinds


@pytest.mark.parametrize("snippet", SNIPPETS, ids=_ids(SNIPPETS))
def test_every_snippet_parses_and_is_checked(snippet: Snippet) -> None:
    assert snippet.lang in LANGUAGES, f"{snippet}: give the fence one of {LANGUAGES}"
    assert KINDS[snippet.line] != "unknown", f"{snippet}: no check knows this snippet"


# --- URL paths against the real routes -------------------------------------------------


def test_the_agent_registers_every_endpoint_of_issue_11() -> None:
    """Fails (not skips) while an endpoint is missing from server.build_app."""
    missing = INGEST_ENDPOINTS - agent_post_routes()
    assert not missing, f"build_app registers no POST route for {sorted(missing)}"


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_every_url_path_is_a_real_endpoint(use: EndpointUse) -> None:
    assert use.path in agent_post_routes(), f"{use.snippet}: {use.path} is not served"


def test_every_endpoint_has_a_producer_configuration() -> None:
    assert {u.path for u in USES} >= INGEST_ENDPOINTS


def test_kubeconfigs_and_vector_name_the_format_their_producer_sends() -> None:
    expected = {
        "kube-apiserver": {"/v1/ingest/k8s-audit"},
        "eventbridge": {"/v1/ingest/cloudtrail"},
    }
    expected["otel-collector"] = {"/v1/logs"}
    for use in USES:
        if use.producer in expected:
            assert use.path in expected[use.producer], str(use.snippet)


# --- Authentication --------------------------------------------------------------------


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_every_auth_option_is_one_the_agent_accepts(use: EndpointUse) -> None:
    assert not use.unknown_auth, f"{use.snippet}: the agent does not accept {use.unknown_auth}"
    assert use.has_credentials or use.client_cert, f"{use.snippet}: no credentials"


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_literal_credentials_pass_the_agents_own_check(use: EndpointUse) -> None:
    """Literal tokens and Basic users are checked by TokenSet against the page's token file."""
    tokens = token_set(SNIPPETS)
    for token in use.bearer:
        if not is_placeholder(token):
            assert tokens.authenticate([b"Bearer " + token.encode()]), str(use.snippet)
    for user, password in use.basic:
        if user == "<encoded>":
            continue
        assert user in tokens.names, f"{use.snippet}: Basic user {user!r} names no token"
        if not is_placeholder(password):
            header = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
            assert tokens.authenticate([header]) == user, str(use.snippet)


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_a_client_certificate_goes_over_https(use: EndpointUse) -> None:
    if use.client_cert:
        assert use.scheme == "https", f"{use.snippet}: client certificate over {use.scheme}"


def test_the_certificate_kubeconfig_uses_https() -> None:
    cert_uses = [u for u in USES if u.producer == "kube-apiserver" and u.client_cert]
    assert cert_uses, "the page shows no kubeconfig with a client certificate"
    assert all(u.scheme == "https" for u in cert_uses)
    token_uses = [u for u in USES if u.producer == "kube-apiserver" and u.bearer]
    assert token_uses, "the page shows no kubeconfig with a token"


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_credentials_never_cross_the_network_in_clear(use: EndpointUse) -> None:
    if use.has_credentials and use.host not in LOOPBACK:
        assert use.scheme == "https", f"{use.snippet}: credentials over {use.scheme}"


def test_eventbridge_endpoints_are_https() -> None:
    uses = [u for u in USES if u.producer == "eventbridge"]
    assert uses
    assert all(u.scheme == "https" for u in uses)


# --- Compression -----------------------------------------------------------------------


@pytest.mark.parametrize("use", USES, ids=_ids(USES))
def test_compression_is_one_the_agent_decodes(use: EndpointUse) -> None:
    if use.content_encoding is not None:
        assert use.content_encoding in AGENT_CONTENT_ENCODINGS, (
            f"{use.snippet}: Content-Encoding {use.content_encoding} would be a 415"
        )


def test_the_page_lists_the_decoded_codings() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"\*\*Content-Encoding\*\*: (.+?) are decoded", text)
    assert match is not None
    assert set(re.findall(r"`([a-z-]+)`", match.group(1))) == AGENT_CONTENT_ENCODINGS


# --- Producer-specific checks ----------------------------------------------------------


def _only(kind: str) -> list[Any]:
    return [PARSED[line] for line, k in KINDS.items() if k == kind]


def test_the_audit_policy_is_valid() -> None:
    (policy,) = _only("audit-policy")
    assert policy["apiVersion"] == "audit.k8s.io/v1"
    assert policy["rules"], "a policy without rules is refused by the API server"
    levels = {"None", "Metadata", "Request", "RequestResponse"}
    assert all(rule["level"] in levels for rule in policy["rules"])
    stages = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
    assert set(policy.get("omitStages", [])) <= stages


def test_kube_apiserver_batches_fit_the_agents_body_limit() -> None:
    (manifest,) = _only("kube-apiserver-manifest")
    (container,) = manifest["spec"]["containers"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in container["command"][1:])
    default = {f.name: f.default for f in dataclasses.fields(AgentSettings)}["max_body_bytes"]
    assert flags["audit-webhook-truncate-enabled"] == "true"
    assert int(flags["audit-webhook-truncate-max-batch-size"]) <= cast(int, default)
    assert int(flags["audit-webhook-batch-max-size"]) <= 400
    shown = {s.text.splitlines()[0].removeprefix("# ") for s in SNIPPETS if s.lang == "yaml"}
    assert flags["audit-webhook-config-file"] in shown
    assert flags["audit-policy-file"] in shown


def test_vector_keeps_batches_through_503() -> None:
    for config in _only("vector"):
        for sink in config["sinks"].values():
            assert sink["buffer"]["type"] == "disk"
            assert sink["buffer"]["when_full"] == "block"
            assert "retry_attempts" not in sink.get("request", {})  # default: no limit
            assert sink["encoding"]["codec"] == "json"
            assert sink.get("batch", {}).get("max_bytes", 10_000_000) < 10 * 1024 * 1024


def test_fluent_bit_classic_and_yaml_outputs_agree() -> None:
    (classic,) = _only("fluent-bit-classic")
    (yaml_doc,) = _only("fluent-bit-yaml")
    (output,) = [s for s in classic if s.name == "OUTPUT"]
    (yaml_output,) = yaml_doc["pipeline"]["outputs"]
    from_classic = _normalised(dict(output.entries))
    assert from_classic == _normalised(yaml_output)
    assert from_classic["retry_limit"] == "no_limits"
    assert from_classic["format"] in {"json", "json_lines"}


def _normalised(settings: dict[str, Any]) -> dict[str, str]:
    """Fluent Bit keys are case-insensitive; on/true/yes and off/false/no are the same."""
    words = {"true": "on", "yes": "on", "false": "off", "no": "off"}
    result = {}
    for key, value in settings.items():
        text = ("on" if value else "off") if isinstance(value, bool) else str(value).lower()
        result[key.lower()] = words.get(text, text)
    return result


def test_otel_collector_retries_and_queues_on_disk() -> None:
    (config,) = _only("otel-collector")
    exporters = [v for k, v in config["exporters"].items() if k.startswith("otlphttp")]
    assert exporters
    for exporter in exporters:
        assert exporter["retry_on_failure"]["enabled"] is True
        storage = exporter["sending_queue"]["storage"]
        assert storage in config["extensions"]
        assert storage in config["service"]["extensions"]
        assert exporter.get("encoding", "proto") in {"proto", "json"}


def test_eventbridge_rule_keeps_what_it_cannot_deliver() -> None:
    (template,) = _only("cloudformation")
    rules = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    for rule in rules:
        for target in rule["Properties"]["Targets"]:
            assert "DeadLetterConfig" in target
            assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
            assert target["RetryPolicy"]["MaximumRetryAttempts"] <= 185


def test_event_examples_are_valid_events() -> None:
    events = _only("event")
    assert events
    for event in events:
        validate_event(event)


def test_the_archived_event_shape_matches_the_contract() -> None:
    (shape,) = _only("archived-event")
    assert set(shape) == {
        "actor",
        "action",
        "resource",
        "time",
        "source_ip",
        "outcome",
        "format",
        "record",
    }
    assert shape["format"] in {"k8s-audit", "cloudtrail", "gcp-audit", "otlp"}
    assert isinstance(shape["record"], dict)


# --- The helpers themselves -------------------------------------------------------------


def test_fences_are_extracted_with_their_language_and_line() -> None:
    text = "intro\n```yaml\na: 1\n```\n\n```toml\nb = 2\n```\n"
    assert extract_snippets(text) == [Snippet("yaml", "a: 1\n", 2), Snippet("toml", "b = 2\n", 6)]
    with pytest.raises(ValueError, match="never closed"):
        extract_snippets("```json\n{}\n")


GOOD_CLASSIC = "# top comment\n[OUTPUT]\n    Name http\n    # a comment\n    Uri  /v1/events\n"


def test_the_classic_parser_reads_sections_and_entries() -> None:
    (section,) = parse_fluent_bit_classic(GOOD_CLASSIC)
    assert section.name == "OUTPUT"
    assert section.entries == (("Name", "http"), ("Uri", "/v1/events"))
    assert section.get("URI") == "/v1/events"


@pytest.mark.parametrize(
    "text",
    [
        "[OUTPUT]\nName http\n",  # entry not indented
        "[OUTPUTS]\n    Name http\n",  # unknown section
        "[OUTPUT]\n",  # empty section
        "[OUTPUT]\n    Name http\n  Match *\n",  # indentation differs
        "[OUTPUT]\n    Name\n",  # entry without a value
        "[OUTPUT]\n\tName http\n",  # tab
        "    Name http\n",  # entry outside a section
        "[OUTPUT]\n    Name http\n# comment at column 0 inside a section\n",
        "",  # nothing
    ],
)
def test_the_classic_parser_rejects_what_fluent_bit_rejects(text: str) -> None:
    with pytest.raises(FluentBitSyntaxError):
        parse_fluent_bit_classic(text)


def test_yaml_snippets_are_single_documents() -> None:
    for snippet in SNIPPETS:
        if snippet.lang == "yaml":
            assert len(list(yaml.safe_load_all(snippet.text))) == 1, str(snippet)
