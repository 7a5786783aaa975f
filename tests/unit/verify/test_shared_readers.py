"""The helpers every reading command shares (verify, query, prove): the seal search,
the total object check with a line hook, the archive source, the problem line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from audit_archiver.core.merkle import leaf_hash
from audit_archiver.errors import ConfigurationError, StorageError
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.storage.specs import LocalSpec, S3Spec
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import render_problem
from audit_archiver.verify.run import archive_source
from audit_archiver.verify.seal_reader import SealRead, SealUnreadableError, read_seal
from audit_archiver.verify.seal_search import MAX_STEPS, CachedReads, first_where
from audit_archiver.verify.worker import CheckSettings, SegmentTask, check_object
from tests.helpers import body_lines, build_stream, fixed_signer, trust_policy

# -- first_where -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> list[SealRead]:
    """Twenty real authenticated seals (first_seq 0, 2, 4, ...)."""
    root = tmp_path_factory.mktemp("stream")
    build_stream(root, "s1", segments=20, per_segment=2)
    store = LocalDirectoryStore(root)
    versions = sorted(store.list_versions(""), key=lambda v: v.key)
    return [
        read_seal(
            store,
            v,
            trust_policy(fixed_signer()),
            stream="s1",
            segment_seq=n,
            expected_object_key=f"audit/{v.key}",
        )
        for n, v in enumerate(versions)
    ]


def test_first_where_finds_the_first_true_with_logarithmic_reads(reads: list[SealRead]) -> None:
    numbers = list(range(20))
    for seq in range(40):
        lookup = CachedReads(lambda n: reads[n])
        position = first_where(
            numbers,
            lookup,
            lambda r, seq=seq: r.seal.last_seq is not None and r.seal.last_seq >= seq,
        )
        assert position == seq // 2  # by hand: segment n holds seqs 2n and 2n + 1
        assert len(lookup.seen) <= 6  # ceil(log2(20)) + 1


def test_first_where_steps_over_unreadable_objects_a_bounded_number_of_times(
    reads: list[SealRead],
) -> None:
    numbers = list(range(20))
    broken = set(range(6, 14))  # the middle, where the first probes land
    asked: list[int] = []

    def lookup(n: int) -> SealRead | None:
        asked.append(n)
        return None if n in broken else reads[n]

    position = first_where(numbers, lookup, lambda r: r.seal.first_seq >= 30)
    assert position == 15
    everything_broken = first_where(numbers, lambda n: None, lambda r: True, unknown=False)
    assert everything_broken == 20
    assert first_where(numbers, lambda n: None, lambda r: True, unknown=True) == 0
    # Nothing readable: each probe tries at most 2 * MAX_STEPS + 1 objects, never a scan.
    calls: list[int] = []

    def unreadable(n: int) -> SealRead | None:
        calls.append(n)
        return None

    assert first_where(list(range(1000)), unreadable, lambda r: True) == 0
    assert len(calls) <= (2 * MAX_STEPS + 1) * 11  # ceil(log2(1000)) + 1 probes


def test_first_where_takes_listed_numbers_with_gaps(reads: list[SealRead]) -> None:
    numbers = [0, 3, 4, 9, 12]
    position = first_where(numbers, lambda n: reads[n], lambda r: r.seal.segment_seq >= 5)
    assert position == 3


# -- check_object ----------------------------------------------------------------------------


def test_check_object_hands_every_line_to_on_line(tmp_path: Path) -> None:
    (segment,) = build_stream(tmp_path, "s1", segments=1, per_segment=5)
    store = LocalDirectoryStore(tmp_path)
    seen: list[tuple[int, bytes | None, bytes]] = []
    task = SegmentTask(
        "s1/000000000000.ndjson.zst", None, "s1", 0, "audit/s1/000000000000.ndjson.zst"
    )
    settings = CheckSettings(
        spec=store,
        policy=trust_policy(fixed_signer()),
        check_retention=False,
        min_retention_days=None,
    )
    result = check_object(store, task, settings, on_line=lambda *a: seen.append(a))
    assert result.problems == ()
    lines = body_lines(segment)
    assert [s[1] for s in seen] == lines
    assert [s[0] for s in seen] == list(range(5))
    assert [s[2] for s in seen] == [leaf_hash(line) for line in lines]
    assert result.object_sha256 == hashlib.sha256(segment.data).hexdigest()


def test_check_object_is_total_except_for_the_store(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=1)
    store = LocalDirectoryStore(tmp_path)
    settings = CheckSettings(
        spec=store,
        policy=trust_policy(fixed_signer()),
        check_retention=False,
        min_retention_days=None,
    )
    missing = SegmentTask("s1/000000000009.ndjson.zst", None, "s1", 9, None)
    result = check_object(store, missing, settings)
    assert [p.kind for p in result.problems] == ["malformed_segment"]

    def boom(*_args: object) -> None:
        raise RuntimeError("a bug in a sink")

    task = SegmentTask("s1/000000000000.ndjson.zst", None, "s1", 0, None)
    result = check_object(store, task, settings, on_line=boom)
    assert [p.kind for p in result.problems] == ["malformed_segment"]
    assert "RuntimeError: a bug in a sink" in result.problems[0].detail

    class Failing(LocalDirectoryStore):
        def open_object(self, *_a: object, **_k: object) -> object:  # type: ignore[override]
            raise StorageError("disk gone")

    with pytest.raises(StorageError):
        check_object(Failing(tmp_path), task, settings)


def test_read_seal_refuses_another_key(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=1, signer=fixed_signer(bytes(32)))
    store = LocalDirectoryStore(tmp_path)
    (version,) = store.list_versions("")
    with pytest.raises(SealUnreadableError) as caught:
        read_seal(
            store,
            version,
            trust_policy(fixed_signer()),
            stream="s1",
            segment_seq=0,
            expected_object_key=None,
        )
    assert caught.value.problem.kind == "unknown_key"


# -- archive_source --------------------------------------------------------------------------


def test_archive_source_of_a_bucket_and_of_a_folder(tmp_path: Path) -> None:
    bucket = archive_source(
        local_dir=None, bucket="b", endpoint_url="http://x", region="r", prefix="audit"
    )
    assert bucket.spec == S3Spec("b", "r", "http://x")
    assert (bucket.label, bucket.key_base, bucket.seal_prefix, bucket.in_bucket) == (
        "s3://b/audit",
        "audit/",
        "audit",
        True,
    )
    assert bucket.stream_base("app") == "audit/app/"
    plain = archive_source(local_dir=None, bucket="b")
    assert (plain.key_base, plain.seal_prefix, plain.stream_base("app")) == ("", "", "app/")
    folder = archive_source(local_dir=tmp_path, bucket=None)
    assert folder.spec == LocalSpec(tmp_path, max_depth=2)
    assert (folder.key_base, folder.seal_prefix, folder.in_bucket) == ("", None, False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"local_dir": None, "bucket": None}, "give either --local-dir DIR or --bucket NAME"),
        ({"local_dir": Path("/"), "bucket": "b"}, "give either --local-dir DIR or --bucket NAME"),
        ({"local_dir": None, "bucket": "b", "prefix": "../x"}, "prefix"),
        ({"local_dir": Path("/nonexistent-q"), "bucket": None}, "is not a directory"),
    ],
)
def test_archive_source_refusals(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        archive_source(**options)  # type: ignore[arg-type]


# -- render_problem --------------------------------------------------------------------------


def test_render_problem_is_one_escaped_line() -> None:
    problem = Problem(
        "chain_broken",
        "app/0\n\x1b[2Jfake PASSED",
        "detail\u202e\r",
        stream="app",
        expected="a\\x0a",
        found=None,
    )
    line = render_problem(problem, command="query")
    assert line == (
        "query: problem [chain_broken] app/0\\x0a\\x1b[2Jfake PASSED: detail\\u202e\\x0d"
        " (expected a\\\\x0a, found -)"
    )
    plain = Problem("sequence_gap", "k", "d")
    assert render_problem(plain, command="prove") == "prove: problem [sequence_gap] k: d"
