"""Property: no mutation of signed bytes crashes verify or passes it.

A small valid archive (a zstd stream and a gzip stream with a heartbeat) is
mutated in a local copy: bytes flipped, inserted, deleted or cut off, the seal
frame moved behind the body, two objects swapped. Whatever the result, the
library run returns a report (no exception: the CLI would exit 1, never 2 on a
readable folder, never a traceback) and that report is not ok, since the bytes
differ from what was signed. A few mutations also go through the real CLI.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_archiver.verify.run import VerifySettings, run_verify
from tests.adversarial import kit
from tests.adversarial.kit import KEY_A

FILES = [
    ("app-1", 0, "zst"),
    ("app-1", 1, "zst"),
    ("app-2", 0, "gz"),
    ("app-2", 1, "gz"),
]


def _original() -> dict[str, bytes]:
    segments = kit.stream("app-1", KEY_A, 2, per_segment=2)
    segments += kit.stream("app-2", KEY_A, 1, per_segment=3, compression="gzip")
    segments += kit.extend("app-2", segments[2:], KEY_A, per_segment=0, compression="gzip")
    return {s.key.removeprefix("audit/"): s.data for s in segments}


ORIGINAL = _original()
NAMES = sorted(ORIGINAL)


def _seal_frame_length(data: bytes) -> int:
    if data[:4] == b"\x5a\x2a\x4d\x18":
        return 8 + struct.unpack_from("<I", data, 4)[0]
    (xlen,) = struct.unpack_from("<H", data, 10)
    return 12 + xlen + 10


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, dict[str, bytes]]:
    """One mutation of the archive: (description, the mutated files)."""
    files = dict(ORIGINAL)
    name = draw(st.sampled_from(NAMES))
    data = files[name]
    how = draw(st.sampled_from(["flip", "insert", "delete", "cut", "reorder", "swap"]))
    if how == "flip":
        at = draw(st.integers(0, len(data) - 1))
        mask = draw(st.integers(1, 255))
        files[name] = data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]
    elif how == "insert":
        at = draw(st.integers(0, len(data)))
        extra = draw(st.binary(min_size=1, max_size=8))
        files[name] = data[:at] + extra + data[at:]
    elif how == "delete":
        at = draw(st.integers(0, len(data) - 1))
        size = draw(st.integers(1, 16))
        files[name] = data[:at] + data[at + size :]
    elif how == "cut":
        files[name] = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "reorder":
        split = _seal_frame_length(data)
        files[name] = data[split:] + data[:split]
    else:
        other = draw(st.sampled_from([n for n in NAMES if n != name]))
        files[name], files[other] = files[other], files[name]
    assert files != ORIGINAL
    return f"{how} {name}", files


def _write(root: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture(scope="module")
def public_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit.write_keys(tmp_path_factory.mktemp("keys"))["a"]


def test_the_unmutated_archive_passes(tmp_path: Path, public_key: Path) -> None:
    _write(tmp_path / "archive", ORIGINAL)
    settings_ = VerifySettings(
        public_keys=(public_key,), local_dir=tmp_path / "archive", prefix="audit", progress=False
    )
    report = run_verify(settings_)
    assert report.ok, report.problems
    assert (report.segments, report.events) == (4, 7)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutation=mutations())
def test_no_mutation_crashes_or_passes(
    mutation: tuple[str, dict[str, bytes]], public_key: Path
) -> None:
    what, files = mutation
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "archive"
        _write(root, files)
        report = run_verify(
            VerifySettings(
                public_keys=(public_key,), local_dir=root, prefix="audit", progress=False, workers=1
            )
        )
    assert not report.ok, what
    assert all(p.kind for p in report.problems)


CLI_MUTATIONS = {
    "seal-frame-behind-body": lambda d: d[_seal_frame_length(d) :] + d[: _seal_frame_length(d)],
    "one-byte-left": lambda d: d[:1],
    "seal-size-field-huge": lambda d: d[:4] + b"\xff\xff\xff\x7f" + d[8:],
    "flip-in-signature": lambda d: d.replace(b'{"signature":"', b'{"signature":"/', 1),
}


@pytest.mark.parametrize("mutation", sorted(CLI_MUTATIONS))
def test_cli_on_mutated_archive(tmp_path: Path, public_key: Path, mutation: str) -> None:
    files = dict(ORIGINAL)
    target = "app-1/000000000001.ndjson.zst"
    files[target] = CLI_MUTATIONS[mutation](files[target])
    _write(tmp_path / "archive", files)
    verdict = kit.verify(*kit.local(tmp_path / "archive", "--public-key", public_key))
    assert verdict.code == 1
    assert verdict.report["ok"] is False
    assert [key for _, key in verdict.problems if key != target] == []
    assert verdict.counts("app-2") == (2, 3)
