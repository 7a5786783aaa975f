"""``plan_streams``: originals by stream and number; what the listing alone shows."""

from __future__ import annotations

from audit_archiver.storage.base import ObjectVersion
from audit_archiver.verify.listing import plan_streams


def _version(key: str, version_id: str = "v1", *, marker: bool = False) -> ObjectVersion:
    return ObjectVersion(key, version_id, True, marker, None, 10)


def test_originals_by_stream_and_number_and_the_listing_problems() -> None:
    listing = [
        _version("audit/app-1/000000000000.ndjson.zst", "new"),
        _version("audit/app-1/000000000000.ndjson.zst", "old"),  # newest first: old is original
        _version("audit/app-1/000000000001.ndjson.zst", "dm", marker=True),
        _version("audit/app-2/000000000000.ndjson.gz"),
    ]
    streams, problems = plan_streams(listing, "audit/")
    assert sorted(streams) == ["app-1", "app-2"]
    ((_, original),) = streams["app-1"].segments[0]
    assert original.version_id == "old"
    assert 1 not in streams["app-1"].segments  # only a delete marker
    assert sorted((p.kind, p.stream) for p in problems) == [
        ("delete_marker", "app-1"),
        ("extra_version", "app-1"),
    ]


def test_a_stray_object_in_a_stream_folder_is_that_streams_problem() -> None:
    listing = [
        _version("audit/app-1/notes.txt"),
        _version("audit/README"),
        _version("audit/app-1/sub/000000000000.ndjson.zst"),
        _version("audit/bad name/x"),
    ]
    _, problems = plan_streams(listing, "audit/")
    assert {(p.key, p.stream) for p in problems} == {
        ("audit/app-1/notes.txt", "app-1"),
        ("audit/README", None),
        ("audit/app-1/sub/000000000000.ndjson.zst", None),
        ("audit/bad name/x", None),
    }
    assert {p.kind for p in problems} == {"unexpected_object"}
