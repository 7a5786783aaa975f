"""The real CLI on local folders: keygen, seal, verify, and its error handling."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from tests.integration.cli import run_cli
from tests.vectors.generate import HERE as VECTORS


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    result = run_cli("keygen", "--out", tmp_path / "keys")
    assert result.returncode == 0, result.stderr
    return tmp_path / "keys"


def _events(path: Path, count: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"actor": f"u{i}", "action": "read", "resource": {"id": f"r{i}"}}) + "\n"
            for i in range(count)
        )
    )
    return path


def test_keygen_file_modes_and_refusal(keys: Path) -> None:
    assert stat.S_IMODE((keys / "signing.key").stat().st_mode) == 0o600
    again = run_cli("keygen", "--out", keys)
    assert again.returncode == 2
    assert again.stderr.strip().endswith("already exists; refusing to overwrite a key")
    assert "Traceback" not in again.stderr


def test_seal_then_verify_json(tmp_path: Path, keys: Path) -> None:
    events = _events(tmp_path / "e.ndjson", 250)
    archive = tmp_path / "archive"
    for _ in range(2):
        sealed = run_cli(
            "seal",
            "--input",
            events,
            "--out-dir",
            archive,
            "--stream",
            "web",
            "--signing-key",
            keys / "signing.key",
            "--batch-max-events",
            "100",
        )
        assert sealed.returncode == 0, sealed.stderr
    assert "seq 250..499" in sealed.stdout
    result = run_cli(
        "verify",
        "--local-dir",
        archive,
        "--prefix",
        "audit",
        "--public-key",
        keys / "signing.pub",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("ok", "streams", "segments", "events", "problems")} == {
        "ok": True,
        "streams": 1,
        "segments": 6,
        "events": 500,
        "problems": [],
    }
    text = run_cli("verify", "--local-dir", archive, "--public-key", keys / "signing.pub")
    assert text.returncode == 0
    assert "PASSED" in text.stdout
    assert "stream web: 6 segment(s), 500 event(s)" in text.stdout


def test_verify_reports_tampering_with_exit_1(tmp_path: Path) -> None:
    archive = tmp_path / "a"
    shutil.copytree(VECTORS / "cases" / "spliced-stream" / "archive", archive)
    result = run_cli(
        "verify", "--local-dir", archive, "--public-key", VECTORS / "public.pem", "--json"
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {p["kind"] for p in report["problems"]} == {"chain_broken", "key_mismatch"}
    assert all(set(p) >= {"kind", "key", "detail"} for p in report["problems"])
    text = run_cli("verify", "--local-dir", archive, "--public-key", VECTORS / "public.pem")
    assert text.returncode == 1
    assert "[chain_broken] app-1/000000000001.ndjson.zst" in text.stdout


@pytest.fixture(scope="module")
def bad_input_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A folder with a key pair, an event file, a world-readable key and a garbage file.

    Shared by the cases below, which only read it (each fails before writing).
    """
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "garbage").write_text("garbage")
    keygen = run_cli("keygen", "--out", tmp / "k")
    assert keygen.returncode == 0, keygen.stderr
    shutil.copy(tmp / "k" / "signing.key", tmp / "open.key")
    (tmp / "open.key").chmod(0o644)
    _events(tmp / "e", 1)
    return {"tmp": str(tmp), "pub": str(tmp / "k" / "signing.pub"), "garbage": str(tmp / "garbage")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["verify", "--local-dir", "{tmp}", "--public-key", "{tmp}/nope.pem"],
            "cannot read public key",
        ),
        (["verify", "--local-dir", "{tmp}/absent", "--public-key", "{pub}"], "is not a directory"),
        (["verify", "--local-dir", "{tmp}", "--public-key", "{garbage}"], "not a PEM"),
        (
            ["verify", "--local-dir", "{tmp}", "--public-key", "{pub}", "--stream", "a/b"],
            "invalid stream id",
        ),
        (["verify", "--public-key", "{pub}"], "give either --local-dir DIR or --bucket NAME"),
        (
            [
                "seal",
                "--input",
                "{tmp}/e",
                "--out-dir",
                "{tmp}/o",
                "--stream",
                "s",
                "--signing-key",
                "{tmp}/open.key",
            ],
            "chmod 600",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    bad_input_files: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli(*[a.format(**bad_input_files) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_event_line_is_named_and_nothing_is_written(tmp_path: Path, keys: Path) -> None:
    events = tmp_path / "e.ndjson"
    events.write_text('{"actor":"a","action":"b","resource":"c"}\n{"actor":"a","action":"b"}\n')
    out = tmp_path / "out"
    result = run_cli(
        "seal",
        "--input",
        events,
        "--out-dir",
        out,
        "--stream",
        "s",
        "--signing-key",
        keys / "signing.key",
    )
    assert result.returncode == 2
    assert "line 2: field 'resource': is required" in result.stderr
    assert not out.exists()


def test_verbose_shows_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "--verbose", "verify", "--local-dir", tmp_path, "--public-key", tmp_path / "nope"
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr
