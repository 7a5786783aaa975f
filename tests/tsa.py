"""A real RFC 3161 time-stamping authority for tests: ``openssl ts -reply`` behind a
small loopback HTTP server.

:class:`LocalTsa` makes its own CA and a TSA certificate the CA signs (EC P-256,
the extended key usage ``timeStamping``, critical, as RFC 3161 section 2.3
requires), answers ``POST`` requests of ``application/timestamp-query`` with what
``openssl ts -reply`` makes of them, and counts the requests. ``mode`` turns it
hostile or broken for one test: ``ok``, ``garbage`` (random bytes), ``huge``
(megabytes of them), ``wrong_nonce`` (a genuine token for the same hash but
another request's nonce), ``other_imprint`` (a genuine token for another hash),
``rejection`` (a response whose status is not granted), ``http_error`` (500),
``hang`` (reads the request, never answers), ``slow`` (answers after
:data:`SLOW_SECONDS`), ``trickle_headers`` (a status line,
then one header byte per half second) and ``trickle_body`` (headers announcing
60,000 bytes, then one body byte per half second): a TSA that keeps every
socket read short of a per-read timeout.

:func:`closed_port_url` is a URL where nothing listens (a TSA that is down).
Every expected value a test compares with comes from openssl or from the
certificates made here, never from the code under test.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import _rust as rfc3161_rust

from audit_archiver.core.segment import SealedSegment, with_timestamp
from audit_archiver.core.timestamp import build_request, token_from_response
from tests.adversarial import kit
from tests.adversarial.archives import rel
from tests.adversarial.scenarios import Scenario

__all__ = [
    "SLOW_SECONDS",
    "LocalTsa",
    "closed_port_url",
    "make_tsa_certificates",
    "openssl_reply",
    "stamp",
    "timestamp_scenarios",
]

SLOW_SECONDS = 0.3
"""How long a ``slow`` TSA takes to answer."""
_CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {serial}
crypto_device = builtin
signer_cert = {cert}
signer_key = {key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tsa_certificates(
    folder: Path, name: str, *, eku: bool = True, eku_critical: bool = True
) -> tuple[Path, Path, Path]:
    """Write ``ca.pem``, ``tsa.pem`` and ``tsa.key`` in ``folder``: a CA and a TSA
    certificate it signs (valid from an hour ago for two days)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} CA"))
        .issuer_name(_name(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical
        )
    tsa = builder.sign(ca_key, hashes.SHA256())
    ca_pem = folder / "ca.pem"
    tsa_pem = folder / "tsa.pem"
    key_pem = folder / "tsa.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tsa_pem.write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_pem.chmod(0o600)
    return ca_pem, tsa_pem, key_pem


def openssl_reply(config: Path, query: bytes) -> bytes:
    """``openssl ts -reply`` to one DER query; returns the DER response."""
    with tempfile.TemporaryDirectory() as work:
        query_path = Path(work) / "q.tsq"
        reply_path = Path(work) / "r.tsr"
        query_path.write_bytes(query)
        subprocess.run(
            [
                "openssl",
                "ts",
                "-reply",
                "-config",
                str(config),
                "-queryfile",
                str(query_path),
                "-out",
                str(reply_path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return reply_path.read_bytes()


def _query_for_digest(digest: bytes) -> bytes:
    """A fresh query (new random nonce, certReq) for a SHA-256 digest, made by openssl."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "q.tsq"
        subprocess.run(
            ["openssl", "ts", "-query", "-sha256", "-digest", digest.hex(), "-cert", "-out", out],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return out.read_bytes()


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


class LocalTsa:
    """A time-stamping authority on a loopback port; use as a context manager."""

    def __init__(self, folder: Path, name: str = "Test TSA") -> None:
        self.folder = folder
        self.ca_pem, self.tsa_pem, key = make_tsa_certificates(folder, name)
        serial = folder / "serial"
        serial.write_text("01\n")
        self.config = folder / "tsa.cnf"
        self.config.write_text(_CONFIG.format(serial=serial, cert=self.tsa_pem, key=key))
        self.mode = "ok"
        self.requests = 0
        self.answered = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where the TSA answers."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def __enter__(self) -> LocalTsa:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def reply(self, query: bytes) -> bytes:
        """What the TSA answers to ``query`` in its current mode (no HTTP)."""
        mode = self.mode
        if mode == "garbage":
            return os.urandom(512)
        if mode == "huge":
            return os.urandom(8 * 1024 * 1024)
        if mode in ("wrong_nonce", "other_imprint"):
            digest = bytes(rfc3161_rust.parse_timestamp_request(query).message_imprint.message)
            if mode == "other_imprint":
                digest = hashlib.sha256(b"another seal" + digest).digest()
            return openssl_reply(self.config, _query_for_digest(digest))
        response = openssl_reply(self.config, query)
        if mode == "rejection":
            # PKIStatusInfo { status 2 (rejection) }: the same token, refused status.
            return _with_status(response, 2)
        return response

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with tsa._lock:
                    tsa.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                query = self.rfile.read(min(length, 1 << 16))
                if tsa.mode == "hang":
                    tsa._release.wait(60)
                    return
                if tsa.mode == "slow":
                    time.sleep(SLOW_SECONDS)
                if tsa.mode.startswith("trickle_"):
                    self._trickle(tsa.mode)
                    return
                if tsa.mode == "http_error":
                    self.send_error(500)
                    return
                body = tsa.reply(query)
                with tsa._lock:
                    tsa.answered += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/timestamp-reply")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a huge answer): expected

            def _trickle(self, mode: str) -> None:
                """One byte per half second until the client hangs up (or 60 s)."""
                start = b"HTTP/1.1 200 OK\r\n"
                if mode == "trickle_body":
                    start += b"Content-Length: 60000\r\n\r\n"
                try:
                    self.wfile.write(start)
                    self.wfile.flush()
                    for _ in range(120):
                        if tsa._release.wait(0.5):
                            return
                        self.wfile.write(b"X")
                        self.wfile.flush()
                except OSError:
                    pass  # the client gave up: expected
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _with_status(response: bytes, status: int) -> bytes:
    """``response`` with its PKIStatus integer changed (openssl's answers start
    ``30 len 30 03 02 01 00``: a granted status of one byte)."""
    offset = 2 if response[1] < 0x80 else 2 + (response[1] & 0x7F)
    assert response[offset : offset + 5] == b"\x30\x03\x02\x01\x00", response[:16].hex()
    return response[: offset + 4] + bytes([status]) + response[offset + 5 :]


# -- a scenario for tests/unit/verify/test_kinds_covered.py ------------------------


def stamp(tsa: LocalTsa, segment: SealedSegment) -> bytes:
    """A checked token of ``tsa`` over ``segment``'s seal (no HTTP: openssl directly)."""
    request = build_request(segment.seal_bytes)
    return token_from_response(tsa.reply(request.der), request)


def swapped_and_missing_tokens(endpoint: str, tmp: Path) -> kit.Verdict:
    """Segments 0 and 1 of a folder carry each other's token, segment 2 none; verify
    with ``--tsa-cert`` and ``--require-timestamps``."""
    del endpoint  # a folder is enough
    tsa = LocalTsa(tmp / "tsa")
    try:
        segments = kit.stream("billing", kit.KEY_A, 3)
        tokens = [stamp(tsa, s) for s in segments[:2]]
    finally:
        tsa.__exit__(None, None, None)
    written = [
        with_timestamp(segments[0], tokens[1]),
        with_timestamp(segments[1], tokens[0]),
        segments[2],
    ]
    root = tmp / "archive"
    kit.write_local(root, written)
    keys = kit.write_keys(tmp / "keys")
    return kit.verify(
        *kit.local(
            root,
            *kit.keys_args(keys["a"]),
            "--tsa-cert",
            tsa.ca_pem,
            "--require-timestamps",
        )
    )


def timestamp_scenarios() -> dict[str, Scenario]:
    """The scenarios of the time-stamp problem kinds, with their verdicts by hand."""
    return {
        "timestamp-tokens-swapped-and-missing": Scenario(
            swapped_and_missing_tokens,
            [
                ("timestamp_invalid", rel("billing", 0)),
                ("timestamp_invalid", rel("billing", 1)),
                ("timestamp_missing", rel("billing", 2)),
            ],
        )
    }
