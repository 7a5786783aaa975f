"""Test helpers for docs/PRODUCERS.md: fenced snippets, parsers, and what each snippet configures.

Every fenced snippet is parsed with a real parser for its language (PyYAML, tomllib,
json, :mod:`shlex`, the agent's own token-file parser, and a strict parser for Fluent
Bit's classic format written here, since no Python package reads it). Then
:func:`endpoint_uses` reads, per producer, where the snippet sends events, how it
authenticates and which ``Content-Encoding`` it sends, using the producer's own
option names (from its reference documentation, cited in PRODUCERS.md).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from audit_archiver.agent.auth import TokenSet, parse_token_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "PRODUCERS.md"

LANGUAGES = ("yaml", "toml", "json", "fluentbit", "sh", "text")
"""Info strings allowed on PRODUCERS.md fences (``text`` is the token file)."""

AGENT_CONTENT_ENCODINGS = frozenset({"gzip", "deflate", "zstd", "snappy"})
"""What the agent decodes (issue 11, "What to build"); anything else is a 415."""

# Producer option value -> the Content-Encoding header it sends.
VECTOR_ENCODING = {"gzip": "gzip", "zlib": "deflate", "zstd": "zstd", "snappy": "snappy"}
FLUENT_BIT_ENCODING = {"gzip": "gzip", "zstd": "zstd", "snappy": "snappy"}
# The collector sends the option's name as the header (config/confighttp/compression.go).
OTEL_ENCODING = {
    name: name for name in ("gzip", "zlib", "deflate", "snappy", "x-snappy-framed", "zstd", "lz4")
}

FLUENT_BIT_SECTIONS = frozenset(
    {"SERVICE", "INPUT", "FILTER", "OUTPUT", "PARSER", "MULTILINE_PARSER", "PLUGINS", "UPSTREAM"}
)
_FENCE = re.compile(r"^```(\S*)\s*$")
_ENV = re.compile(r"\$(\{(env:)?[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*$)")


@dataclass(frozen=True)
class Snippet:
    lang: str
    text: str
    line: int
    """1-based line of the opening fence in PRODUCERS.md."""

    def __str__(self) -> str:
        return f"PRODUCERS.md:{self.line} ({self.lang})"


def extract_snippets(markdown: str) -> list[Snippet]:
    """Every fenced block of ``markdown``, in order (an unclosed fence is an error)."""
    snippets: list[Snippet] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"PRODUCERS.md:{start + 1}: fence never closed")
        snippets.append(Snippet(match.group(1), "\n".join(body) + "\n", start + 1))
        i += 1
    return snippets


def doc_snippets() -> list[Snippet]:
    return extract_snippets(DOC.read_text(encoding="utf-8"))


# --- Fluent Bit classic format -------------------------------------------------------------


class FluentBitSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class FluentBitSection:
    name: str
    entries: tuple[tuple[str, str], ...]
    line: int

    def get(self, key: str) -> str | None:
        """The last value of ``key`` (keys are case-insensitive in Fluent Bit)."""
        found = None
        for k, v in self.entries:
            if k.lower() == key.lower():
                found = v
        return found


def parse_fluent_bit_classic(text: str) -> list[FluentBitSection]:
    """Parse Fluent Bit's classic ("INI-like") format strictly.

    Rules from the format schema (classic-mode/format-schema.md): a section is
    ``[NAME]`` at column 0; its entries and comments are indented, all with the
    same indentation; an entry is ``Key Value`` (a value is required); a section
    cannot be empty; blank lines are free. ``@INCLUDE``/``@SET`` and comments
    before the first section sit at column 0.
    """
    sections: list[FluentBitSection] = []
    current: tuple[str, int, list[tuple[str, str]]] | None = None
    indent: str | None = None

    def close() -> None:
        if current is not None:
            name, line, entries = current
            if not entries:
                raise FluentBitSyntaxError(f"line {line}: section [{name}] is empty")
            sections.append(FluentBitSection(name, tuple(entries), line))

    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if "\t" in raw:
            raise FluentBitSyntaxError(f"line {number}: tab character (indent with spaces)")
        stripped = raw.lstrip(" ")
        lead = raw[: len(raw) - len(stripped)]
        if not lead:
            if stripped.startswith("["):
                match = re.fullmatch(r"\[([A-Z_]+)\]\s*", stripped)
                if match is None or match.group(1) not in FLUENT_BIT_SECTIONS:
                    raise FluentBitSyntaxError(f"line {number}: bad section header {stripped!r}")
                close()
                current = (match.group(1), number, [])
            elif stripped.startswith(("@INCLUDE ", "@SET ")):
                if current is not None:
                    raise FluentBitSyntaxError(f"line {number}: command inside a section")
            elif stripped.startswith("#") and current is None:
                continue
            else:
                raise FluentBitSyntaxError(f"line {number}: not indented: {stripped!r}")
            continue
        if current is None:
            raise FluentBitSyntaxError(f"line {number}: indented line outside a section")
        if indent is None:
            indent = lead
        elif lead != indent:
            raise FluentBitSyntaxError(f"line {number}: indentation differs from the file's")
        if stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise FluentBitSyntaxError(f"line {number}: entry {parts[0]!r} has no value")
        current[2].append((parts[0], parts[1].strip()))
    close()
    if not sections:
        raise FluentBitSyntaxError("no section")
    return sections


# --- Parsing every snippet -----------------------------------------------------------------


def parse(snippet: Snippet) -> Any:
    """Parse ``snippet`` with the real parser for its language (raises on bad syntax)."""
    match snippet.lang:
        case "yaml":
            return yaml.safe_load(snippet.text)
        case "toml":
            return tomllib.loads(snippet.text)
        case "json":
            return json.loads(snippet.text)
        case "fluentbit":
            return parse_fluent_bit_classic(snippet.text)
        case "sh":
            return shlex.split(snippet.text, comments=True)
        case "text":
            return parse_token_file(snippet.text.encode(), str(snippet))
        case _:
            raise ValueError(f"{snippet}: unknown snippet language {snippet.lang!r}")


# --- What each snippet configures ----------------------------------------------------------


@dataclass
class EndpointUse:
    """One place a snippet sends events to the agent."""

    snippet: Snippet
    producer: str
    scheme: str
    host: str
    path: str
    bearer: list[str] = field(default_factory=list)
    """Bearer tokens as written (literal or ``${ENV}``)."""
    basic: list[tuple[str, str]] = field(default_factory=list)
    client_cert: bool = False
    content_encoding: str | None = None
    """The Content-Encoding header the producer sends (None: uncompressed)."""
    unknown_auth: list[str] = field(default_factory=list)
    """Credentials the agent does not accept (must stay empty)."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.bearer or self.basic)


def _split(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.path


def _header_auth(use: EndpointUse, value: str) -> None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        use.bearer.append(rest.strip())
    elif scheme.lower() == "basic" and rest.strip():
        use.basic.append(("<encoded>", rest.strip()))
    else:
        use.unknown_auth.append(f"Authorization: {value}")


def _kubeconfig(s: Snippet, doc: dict[str, Any]) -> Iterator[EndpointUse]:
    users = {u["name"]: u.get("user", {}) for u in doc["users"]}
    clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
    contexts = {c["name"]: c["context"] for c in doc["contexts"]}
    context = contexts[doc["current-context"]]
    cluster, user = clusters[context["cluster"]], users[context["user"]]
    use = EndpointUse(s, "kube-apiserver", *_split(cluster["server"]))
    for key, value in user.items():
        if key == "token":
            use.bearer.append(value)
        elif key in {"client-certificate", "client-key"}:
            use.client_cert = True
        else:
            use.unknown_auth.append(f"user.{key}")
    yield use


def _vector(s: Snippet, doc: dict[str, Any]) -> Iterator[EndpointUse]:
    for sink in doc.get("sinks", {}).values():
        if sink["type"] != "http":
            continue
        use = EndpointUse(s, "vector", *_split(sink["uri"]))
        auth = sink.get("auth", {})
        match auth.get("strategy"):
            case "bearer":
                use.bearer.append(auth["token"])
            case "basic":
                use.basic.append((auth["user"], auth["password"]))
            case None:
                pass
            case other:
                use.unknown_auth.append(f"auth.strategy = {other}")
        for name, value in sink.get("request", {}).get("headers", {}).items():
            if name.lower() == "authorization":
                _header_auth(use, value)
        tls = sink.get("tls", {})
        use.client_cert = "crt_file" in tls and "key_file" in tls
        compression = sink.get("compression", "none")
        use.content_encoding = None if compression == "none" else VECTOR_ENCODING.get(compression)
        if compression != "none" and use.content_encoding is None:
            use.content_encoding = f"<vector {compression}>"
        yield use


def _fluent_bit_output(s: Snippet, get: Any) -> EndpointUse:
    on = {"on", "true", "yes", "1"}
    tls = str(get("tls") or "off").lower() in on
    use = EndpointUse(s, "fluent-bit", "https" if tls else "http", str(get("host")), get("uri"))
    if get("http_user") is not None or get("http_passwd") is not None:
        use.basic.append((str(get("http_user")), str(get("http_passwd"))))
    use.client_cert = get("tls.crt_file") is not None and get("tls.key_file") is not None
    compress = get("compress")
    if compress is not None:
        use.content_encoding = FLUENT_BIT_ENCODING.get(compress, f"<fluent-bit {compress}>")
    return use


def _fluent_bit_classic(s: Snippet, sections: list[FluentBitSection]) -> Iterator[EndpointUse]:
    for section in sections:
        if section.name == "OUTPUT" and (section.get("name") or "").lower() == "http":
            yield _fluent_bit_output(s, section.get)


def _fluent_bit_yaml(s: Snippet, doc: dict[str, Any]) -> Iterator[EndpointUse]:
    for output in doc["pipeline"].get("outputs", []):
        if output["name"] == "http":
            lowered = {k.lower(): v for k, v in output.items()}
            yield _fluent_bit_output(s, lowered.get)


def _cloudformation(s: Snippet, doc: dict[str, Any]) -> Iterator[EndpointUse]:
    resources = doc["Resources"]
    for resource in resources.values():
        if resource["Type"] != "AWS::Events::ApiDestination":
            continue
        props = resource["Properties"]
        use = EndpointUse(s, "eventbridge", *_split(props["InvocationEndpoint"]))
        (connection_name,) = props["ConnectionArn"]["Fn::GetAtt"][:1]
        _connection_auth(use, resources[connection_name]["Properties"])
        yield use


def _connection_auth(use: EndpointUse, props: dict[str, Any]) -> None:
    params = props["AuthParameters"]
    match props["AuthorizationType"]:
        case "API_KEY":
            key = params["ApiKeyAuthParameters"]
            value = key["ApiKeyValue"]
            if isinstance(value, dict):  # Fn::Sub
                value = value["Fn::Sub"]
            if key["ApiKeyName"].lower() == "authorization":
                _header_auth(use, value)
            else:
                use.unknown_auth.append(f"API key header {key['ApiKeyName']}")
        case "BASIC":
            basic = params["BasicAuthParameters"]
            use.basic.append((basic["Username"], basic["Password"]))
        case other:
            use.unknown_auth.append(f"AuthorizationType {other}")


def _otel(s: Snippet, doc: dict[str, Any]) -> Iterator[EndpointUse]:
    for name, exporter in doc.get("exporters", {}).items():
        if name.split("/")[0] not in {"otlphttp", "otlp_http"}:
            continue
        url = exporter.get("logs_endpoint") or exporter["endpoint"].rstrip("/") + "/v1/logs"
        use = EndpointUse(s, "otel-collector", *_split(url))
        for header, value in exporter.get("headers", {}).items():
            if header.lower() == "authorization":
                _header_auth(use, value)
        tls = exporter.get("tls", {})
        use.client_cert = "cert_file" in tls and "key_file" in tls
        compression = exporter.get("compression", "gzip")  # the exporter's default
        if compression != "none":
            use.content_encoding = OTEL_ENCODING.get(compression, f"<otel {compression}>")
        if "auth" in exporter:
            use.unknown_auth.append("auth extension (check it sends Bearer or Basic)")
        yield use


def _shell(s: Snippet, words: list[str]) -> Iterator[EndpointUse]:
    urls = [w for w in words if w.startswith(("http://", "https://"))]
    for url in urls:
        use = EndpointUse(s, "curl", *_split(url))
        for i, word in enumerate(words[:-1]):
            if word in {"-H", "--header"} and words[i + 1].lower().startswith("authorization:"):
                _header_auth(use, words[i + 1].split(":", 1)[1])
            if word in {"-u", "--user"}:
                user, _, password = words[i + 1].partition(":")
                use.basic.append((user, password))
        yield use


def classify(snippet: Snippet, parsed: Any) -> str:
    """What ``snippet`` is; every snippet on the page must be one of these."""
    if snippet.lang == "text":
        return "token-file"
    if snippet.lang == "fluentbit":
        names = {s.name for s in parsed}
        return "fluent-bit-parsers" if names == {"PARSER"} else "fluent-bit-classic"
    if snippet.lang == "sh":
        return "shell"
    if snippet.lang == "toml":
        return "vector" if "sinks" in parsed else "unknown"
    if not isinstance(parsed, dict):
        return "unknown"
    if snippet.lang == "json":
        if "AuthorizationType" in parsed:
            return "eventbridge-connection"
        if "InvocationEndpoint" in parsed:
            return "eventbridge-api-destination"
        if "format" in parsed and "record" in parsed:
            return "archived-event"
        return "event" if "actor" in parsed else "unknown"
    if parsed.get("kind") == "Config":
        return "kubeconfig"
    if parsed.get("kind") == "Policy":
        return "audit-policy"
    if "AWSTemplateFormatVersion" in parsed:
        return "cloudformation"
    if "pipeline" in parsed:
        return "fluent-bit-yaml"
    if "exporters" in parsed:
        return "otel-collector"
    if "spec" in parsed:
        return "kube-apiserver-manifest"
    return "unknown"


def endpoint_uses(
    snippet: Snippet, parsed: Any, kind: str, connections: dict[str, Any] | None = None
) -> list[EndpointUse]:
    """Where ``snippet`` sends events; ``connections``: EventBridge connections by name."""
    readers = {
        "kubeconfig": _kubeconfig,
        "vector": _vector,
        "fluent-bit-classic": _fluent_bit_classic,
        "fluent-bit-yaml": _fluent_bit_yaml,
        "cloudformation": _cloudformation,
        "otel-collector": _otel,
        "shell": _shell,
    }
    if kind == "eventbridge-api-destination":
        use = EndpointUse(snippet, "eventbridge", *_split(parsed["InvocationEndpoint"]))
        # arn:aws:events:REGION:ACCOUNT:connection/NAME/UUID
        name = parsed["ConnectionArn"].split(":connection/", 1)[1].split("/")[0]
        connection = (connections or {}).get(name)
        if connection is None:
            use.unknown_auth.append(f"connection {name!r} is not shown on the page")
        else:
            _connection_auth(use, connection)
        return [use]
    reader = readers.get(kind)
    return list(reader(snippet, parsed)) if reader else []


def is_placeholder(secret: str) -> bool:
    """``${NAME}``, ``${env:NAME}`` or a shell's ``$NAME``: filled in where it runs."""
    return _ENV.search(secret) is not None


def token_set(snippets: list[Snippet]) -> TokenSet:
    """The agent's token file shown on the page, read by the agent's own parser."""
    (tokens,) = [s for s in snippets if s.lang == "text"]
    result = parse(tokens)
    assert isinstance(result, TokenSet)
    return result
